"""Training images per second on this CPU in float32 and under bfloat16 autocast
(``runtime.cpu_bfloat16``), side by side: the training loop every stage uses
(``training.loop.fit``) on the fine-tuning model and batch size of each environment,
on random images of its size and channel count, without augmentation (what precision
changes is the model's step). The two settings alternate over ``--rounds`` rounds and
each figure is the median over rounds of ``fit``'s own images per second.

On a CPU without bfloat16 instructions the library trains in float32 whatever the
setting says (``training.device.cpu_bfloat16``); the benchmark then forces the
autocast itself so that the emulated cost is measured, and says so in the result.

    python -m benchmarks.cpu_bfloat16 [--rounds 3] [--images 1536]
"""

from __future__ import annotations

import argparse
import statistics
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import conf_parameters, write_result
from model_lifecycle.models import build_model
from model_lifecycle.training import device as device_module
from model_lifecycle.training.config import FinetuneParams, ScheduleParams
from model_lifecycle.training.data import BatchStream
from model_lifecycle.training.loop import fit

ENVS = ("base", "cifar10")


def case(env: str) -> dict:
    """What ``env`` fine-tunes: architecture, its arguments, batch size, image shape."""
    params = conf_parameters(env)
    finetune = FinetuneParams.model_validate(params["finetune"])
    size, channels = params["ingest"]["image_size"], params["ingest"]["channels"]
    return {"arch": finetune.arch, "arch_kwargs": dict(finetune.arch_kwargs),
            "batch_size": finetune.batch_size, "optimizer": finetune.optimizer,
            "image_size": int(size), "channels": int(channels or 1)}


def images_per_second(spec: dict, n_images: int, *, bfloat16: bool) -> float:
    rng = np.random.default_rng(0)
    shape = (n_images, spec["channels"], spec["image_size"], spec["image_size"])
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    labels = rng.integers(0, 10, n_images)
    torch.manual_seed(0)
    model = build_model(spec["arch"], 10, spec["channels"], **spec["arch_kwargs"])
    model.to(memory_format=torch.channels_last)
    stream = BatchStream(images, labels, np.arange(n_images), batch_size=spec["batch_size"],
                         augment=None, seed=0, channels_last=True)
    result = fit(model, lambda m, views, y: (F.cross_entropy(m(views[0]).float(), y), {}),
                 stream, epochs=1, optimizer=spec["optimizer"],
                 schedule=ScheduleParams(kind="constant"), cpu_bfloat16=bfloat16)
    return result.images_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=1536, help="training images per round")
    args = parser.parse_args()
    native = device_module.cpu_bfloat16()
    rows = {}
    # without the instructions the library would fall back to float32: measure the
    # emulated autocast anyway, since that is what the setting would cost
    with mock.patch.object(device_module, "_cpu_autocast", lambda: True):
        for env in ENVS:
            spec = case(env)
            for bfloat16 in (False, True):  # first-call costs of each setting's kernels
                images_per_second(spec, spec["batch_size"] * 2, bfloat16=bfloat16)
            seen: dict[str, list[float]] = {"float32": [], "bfloat16": []}
            for _ in range(args.rounds):
                for name, values in seen.items():
                    values.append(images_per_second(spec, args.images,
                                                    bfloat16=name == "bfloat16"))
            median = {name: round(statistics.median(v)) for name, v in seen.items()}
            rows[env] = {"arch": spec["arch"], "arch_kwargs": spec["arch_kwargs"],
                         "batch_size": spec["batch_size"],
                         "image": [spec["channels"], spec["image_size"], spec["image_size"]],
                         "images_per_s": median,
                         "speedup": round(median["bfloat16"] / median["float32"], 2),
                         "samples": seen}
            print(env, rows[env]["images_per_s"], rows[env]["speedup"], flush=True)
    path = write_result("cpu_bfloat16", {
        "command": f"python -m benchmarks.cpu_bfloat16 --rounds {args.rounds} "
                   f"--images {args.images}",
        "bfloat16_instructions": native,
        "note": "" if native else "no bfloat16 instructions: bfloat16 is emulated here, "
                                  "and runtime.cpu_bfloat16 would train in float32",
        "environments": rows,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
