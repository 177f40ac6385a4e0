"""What fine-tuning trains: full, a linear probe, the last stages, or only the biases."""

from __future__ import annotations

from pathlib import Path

import torch

from model_lifecycle.errors import LifecycleError
from model_lifecycle.models.classifier import Classifier


def apply_strategy(model: Classifier, strategy: str, *, frozen_stages: int = 0
                   ) -> dict[str, int]:
    """Freeze parameters in place for ``strategy``; return trainable and total counts.

    - ``full``: everything trains.
    - ``linear_probe``: only the head trains (the encoder, batch norms included, is frozen).
    - ``partial``: the first ``frozen_stages`` encoder stages are frozen.
    - ``bitfit``: only biases (batch-norm shifts included) and the head train
      (Ben Zaken et al. 2022, https://arxiv.org/abs/2106.10199).
    - ``lora``: only the LoRA adapters and the head train; the adapters must already be
      in the model (:func:`model_lifecycle.models.lora.add_lora`).
    """
    stages = len(model.encoder.stages)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    if strategy == "linear_probe":
        model.encoder.requires_grad_(False)
    elif strategy == "partial":
        if not 0 <= frozen_stages <= stages:
            raise LifecycleError(f"finetune.frozen_stages = {frozen_stages} but the encoder "
                                 f"has {stages} stages: choose 0 … {stages}.")
        for stage in model.encoder.stages[:frozen_stages]:
            stage.requires_grad_(False)
    elif strategy == "bitfit":
        for name, parameter in model.encoder.named_parameters():
            parameter.requires_grad_(name.endswith(".bias"))
    elif strategy == "lora":
        if not any("lora_" in name for name, _ in model.named_parameters()):
            raise LifecycleError("finetune.strategy 'lora' but the model holds no LoRA "
                                 "adapters: add them with add_lora first.")
        for name, parameter in model.named_parameters():
            parameter.requires_grad_("lora_" in name or name.startswith("head."))
    elif strategy != "full":
        raise LifecycleError(f"Unknown finetune.strategy '{strategy}': choose full, "
                             "linear_probe, partial, bitfit or lora.")
    return {"trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total_params": sum(p.numel() for p in model.parameters())}


def load_torchvision_weights(model: Classifier, path: str | Path) -> dict[str, int]:
    """Copy a torchvision checkpoint (a local file: no downloads) into the encoder.

    Supported: ``resnet18_small`` from ``resnet18`` weights, ``mobilenet_v3_small`` from
    ``mobilenet_v3_small`` weights. Tensors whose shape differs (the adapted stems, a
    1-channel input) keep their fresh initialisation; the counts say how many moved.
    """
    path = Path(path)
    if not path.is_file():
        raise LifecycleError(f"finetune.weights_path {path} is not a file: point it at a "
                             "torchvision .pth weights file on this machine.")
    arch = model.spec["arch"]
    rename = _RENAMES.get(arch)
    if rename is None:
        raise LifecycleError(f"No torchvision weights map to architecture "
                             f"'{arch}': use resnet18_small or "
                             "mobilenet_v3_small, or finetune.init: pretrained | scratch.")
    source = _SOURCES[arch]
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure: not a weights file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise LifecycleError(
            f"{path} is not a torchvision weights file ({reason}): save the weights of "
            f"torchvision's {source} with torch.save(model.state_dict(), path).") from None
    if isinstance(weights, dict) and isinstance(weights.get("state_dict"), dict):
        weights = weights["state_dict"]  # the wrapper training scripts often save
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor)
                                                for v in weights.values()):
        raise LifecycleError(
            f"{path} holds a {type(weights).__name__}, not a state_dict of tensors: save "
            f"torchvision's {source} with torch.save(model.state_dict(), path).")
    own = model.encoder.state_dict()
    loaded, alien = 0, []
    for key, tensor in weights.items():
        target = rename(key)
        if target is None:
            continue  # the classifier head, which the model replaces
        if target not in own or (own[target].shape != tensor.shape
                                 and not target.startswith(_STEM)):
            alien.append(key)  # another network's layer: mixing it in would be silent
        elif own[target].shape == tensor.shape:
            own[target] = tensor
            loaded += 1
    if alien or loaded == 0:
        example = f" (e.g. {alien[0]})" if alien else ""
        width = model.spec.get("width", 1.0)
        fix = (f"torchvision's weights fit width 1, and this model has "
               f"arch_kwargs.width {width:g}: set it to 1" if width != 1 else
               f"give the weights file of torchvision's {source}")
        raise LifecycleError(f"The tensors in {path} do not fit '{arch}'{example}: {fix}.")
    model.encoder.load_state_dict(own)
    return {"loaded_tensors": loaded, "encoder_tensors": len(own)}


def _resnet_key(key: str) -> str | None:
    # torchvision: conv1/bn1 (stem), layer1..4.N.*, fc.* → ours: stages.0 (stem), stages.1..4
    if key.startswith("layer"):
        return f"stages.{key[5]}{key[6:]}"
    if key.startswith("bn1."):
        return "stages.0.1." + key[4:]
    if key.startswith("conv1."):
        return "stages.0.0." + key[6:]
    return None


def _mobilenet_key(key: str) -> str | None:
    return "stages." + key.removeprefix("features.") if key.startswith("features.") else None


_RENAMES = {"resnet18_small": _resnet_key, "mobilenet_v3_small": _mobilenet_key}
# The torchvision model whose weights each architecture takes.
_SOURCES = {"resnet18_small": "resnet18", "mobilenet_v3_small": "mobilenet_v3_small"}
# The stem, adapted to small images and any channel count: its tensors may differ.
_STEM = "stages.0."
