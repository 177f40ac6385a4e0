"""The one exception type users see: a single sentence that says what to fix."""


class LifecycleError(ValueError):
    """Bad input, reported as one sentence naming the file, key or value and the fix.

    Raised by the library code for every problem a user can correct (a missing path,
    a corrupt image, an impossible split, an unknown parameter). The project's CLI
    prints the sentence alone instead of a traceback.
    """


class ImageSizeError(LifecycleError):
    """An architecture cannot take images of this size (a side its patches do not divide):
    the checks before a run name ``ingest.image_size`` with it."""


class ArchitectureArgumentsError(LifecycleError):
    """An architecture refused the keyword arguments it was given (an unknown name, a
    width of 0): the checks before a run name the parameter key that holds them."""

    def __init__(self, arch: str, reason: str) -> None:
        super().__init__(f"Architecture '{arch}' cannot be built with these arguments "
                         f"({reason}): fix arch_kwargs.")
        self.arch, self.reason = arch, reason
