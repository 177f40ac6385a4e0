"""A model of the registry as one file: its spec (architecture and arguments), its layer
sizes (which pruning changes), its quantization (if any) and its weights."""

from __future__ import annotations

import warnings
from typing import IO, Any

from kedro.io.core import DatasetError

from model_lifecycle.io.base import AtomicFileDataset

# torch and the model code are imported when a model is saved or loaded, not when the
# catalog is built: a run that touches no model (ingest) never pays for torch.


class TorchModelDataset(AtomicFileDataset[Any]):
    """Saves ``{"spec", "layer_sizes", "quantization", "trained_on", "state_dict"}`` with
    ``torch.save``; loads with ``weights_only=True`` (tensors and plain values only: a
    file cannot run code), rebuilds the architecture from the spec, gives pruned layers
    their recorded sizes, re-applies the same quantization, and loads the weights
    strictly. Pruned
    and quantized models therefore reload to identical outputs.

    Example (``catalog.yml``)::

        finetuned_model:
          type: model_lifecycle.io.TorchModelDataset
          filepath: data/06_models/finetuned_model.pt
          versioned: true
    """

    def _write(self, data: Any, handle: IO[bytes]) -> None:
        import torch  # noqa: PLC0415

        from model_lifecycle.models.structure import layer_sizes  # noqa: PLC0415

        quantization = getattr(data, "quantization", None)
        sizes = data.layer_sizes if quantization else layer_sizes(data)
        state = data.state_dict()  # keeps its _metadata: quantized layers need the version
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                state[key] = value.detach().cpu()
        torch.save({"spec": data.spec, "layer_sizes": sizes, "quantization": quantization,
                    "trained_on": getattr(data, "trained_on", None), "state_dict": state},
                   handle)

    def _read(self, handle: IO[bytes], path: str) -> Any:
        import torch  # noqa: PLC0415

        from model_lifecycle.compression.quantize import quantize  # noqa: PLC0415
        from model_lifecycle.models.registry import build_from_spec  # noqa: PLC0415
        from model_lifecycle.models.structure import float_shell, resize_layers  # noqa: PLC0415

        try:
            with warnings.catch_warnings():
                # torch's own unpickling of quantized tensors goes through TypedStorage
                # and warns about it; nothing a user of the file can act on
                warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
                saved = torch.load(handle, map_location="cpu", weights_only=True)
            model = build_from_spec(saved["spec"])
            quantization = saved.get("quantization")
            if quantization:
                model = float_shell(model, saved["layer_sizes"])
                example = torch.zeros(1, *quantization["example_shape"])
                # a QAT model converts to the static model's structure
                rebuild = "dynamic" if quantization["mode"] == "dynamic" else "static"
                model = quantize(model, example, mode=rebuild,
                                 backend=quantization.get("backend", "x86"))
            elif saved.get("layer_sizes"):  # absent in files saved before pruning existed
                resize_layers(model, saved["layer_sizes"], saved["state_dict"])
                model.encoder.feature_dim = model.head.in_features
            model.load_state_dict(saved["state_dict"])
            if saved.get("trained_on"):  # the images it was made from (hooks.TrainedOnHook)
                model.trained_on = saved["trained_on"]
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{path} is not a model saved by this project ({exc}); "
                               "re-create it with the pipeline that writes it.") from None
        return model.eval()
