"""LoRA (Hu et al. 2022, https://arxiv.org/abs/2106.09685) on the registry's models with
Hugging Face peft: low-rank adapters beside chosen convolutions, linears and attention
layers of the encoder, the rest frozen, the head trained fully; merged back into a
plain :class:`Classifier` of the same architecture after training.

    tuner = add_lora(model, rank=4, alpha=8)   # in place: adapters injected, base frozen
    ...train model...
    adapter = adapter_state_dict(model)        # LoRA weights + head: a few KiB
    model = merge_lora(tuner)                  # plain Classifier, same outputs
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from model_lifecycle.errors import LifecycleError
from model_lifecycle.models.classifier import Classifier

if TYPE_CHECKING:
    from peft.tuners.lora import LoraModel

# peft is imported inside the functions: it imports transformers (seconds), which a run
# without LoRA never needs.

log = logging.getLogger(__name__)

ADAPTER = "default"
# layer types peft's LoRA wraps (nn.MultiheadAttention: in_proj and out_proj together)
_LORA_LAYERS = (nn.Linear, nn.Conv2d, nn.MultiheadAttention)
_VIT_TARGETS = ["self_attention", "mlp.0", "mlp.3"]


def default_targets(model: Classifier) -> list[str]:
    """The targets when ``finetune.lora.target_modules`` is null: a transformer's
    attention and MLP linears (``self_attention``, ``mlp.0``, ``mlp.3``), else every
    ungrouped convolution of the encoder (by its full name)."""
    if any(isinstance(m, nn.MultiheadAttention) for m in model.encoder.modules()):
        return list(_VIT_TARGETS)
    # grouped (depthwise) convolutions are left out: peft adapts one only when the rank
    # divides its groups, which differ from layer to layer (mobilenet_v3_small: 16 … 576)
    return [f"encoder.{name}" for name, module in model.encoder.named_modules()
            if isinstance(module, nn.Conv2d) and module.groups == 1]


def matched_modules(model: Classifier, patterns: Sequence[str]) -> dict[str, list[str]]:
    """``{pattern: encoder modules it targets}`` with peft's own matching (a pattern is a
    module's full name or a dotted suffix of it, e.g. ``mlp.0``). A pattern matching no
    convolution, linear or attention layer of the encoder is refused in one sentence,
    naming some that exist; so is ``out_proj`` of an attention layer, which its
    attention calls without its forward (target the attention layer instead)."""
    from peft import LoraConfig  # noqa: PLC0415
    from peft.tuners.tuners_utils import check_target_module_exists  # noqa: PLC0415

    encoder = {f"encoder.{name}": module for name, module in model.encoder.named_modules()
               if name}
    found: dict[str, list[str]] = {}
    for pattern in patterns:
        config = LoraConfig(target_modules=[pattern])
        names = [name for name in encoder if check_target_module_exists(config, name)]
        adaptable = [name for name in names if isinstance(encoder[name], _LORA_LAYERS)]
        if not adaptable:
            raise LifecycleError(
                f"finetune.lora.target_modules pattern '{pattern}' matches no convolution, "
                f"linear or attention layer of '{model.spec['arch']}': use module names "
                f"such as {', '.join(_examples(encoder))}.")
        inside = [name for name in adaptable
                  if isinstance(encoder.get(name.rpartition(".")[0]), nn.MultiheadAttention)]
        if inside:
            raise LifecycleError(
                f"finetune.lora.target_modules pattern '{pattern}' matches {inside[0]}, which "
                "its attention layer uses without calling it: target the attention layer "
                f"('{inside[0].rpartition('.')[0].rpartition('.')[2]}') instead.")
        others = [name for name in names if name not in adaptable]
        if others:
            other = encoder[others[0]]
            fix = ("name the layers inside it" if any(True for _ in other.children())
                   else "give full names of the layers to adapt")  # a pool, an activation
            raise LifecycleError(
                f"finetune.lora.target_modules pattern '{pattern}' also matches "
                f"{others[0]}, a {type(other).__name__} that LoRA cannot adapt: {fix}, "
                f"e.g. {adaptable[0]}.")
        found[pattern] = adaptable
    return found


def check_targets(arch: str, arch_kwargs: dict, patterns: Sequence[str]) -> None:
    """:func:`matched_modules` on ``arch`` built without weights (on the meta device):
    the preflight check of ``finetune.lora.target_modules``, before anything trains."""
    from model_lifecycle.models.registry import shape_only  # noqa: PLC0415

    try:
        model = shape_only(arch, 3, **arch_kwargs)
    except LifecycleError:
        return  # an architecture the images decide (e.g. a vit's size): the node checks
    matched_modules(model, patterns)


def add_lora(model: Classifier, *, rank: int, alpha: float, dropout: float = 0.0,
             target_modules: Sequence[str] | None = None) -> LoraModel:
    """Inject LoRA adapters into ``model`` in place (``target_modules`` null: the
    :func:`default_targets`); only the adapters and the head stay trainable. Returns
    peft's tuner, which :func:`merge_lora` merges with.

    An attention layer gets one adapter on its query/key/value projection
    (``in_proj_weight``, Hu et al.'s W_q, W_k, W_v), through peft's parameter targets.
    peft's ``MultiheadAttention`` layer instead merges its adapter into the frozen
    weights before every forward and subtracts it after, which leaves float rounding in
    weights that must stay frozen; a parameter target adds the update without touching
    them.
    """
    from peft import LoraConfig  # noqa: PLC0415
    from peft.tuners.lora import LoraModel  # noqa: PLC0415

    if rank < 1:
        raise LifecycleError(f"finetune.lora.rank = {rank}: the rank must be at least 1.")
    patterns = list(target_modules) if target_modules else default_targets(model)
    modules = dict(model.named_modules())
    layers, parameters = [], []
    matched = matched_modules(model, patterns)
    for pattern, names in matched.items():
        if any(isinstance(modules[name], nn.MultiheadAttention) for name in names):
            parameters.append(f"{pattern}.in_proj_weight")
            layers += [n for n in names if not isinstance(modules[n], nn.MultiheadAttention)]
        else:
            layers.append(pattern)
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=layers or None, target_parameters=parameters or None,
                        exclude_modules=["head"])
    _warn_of_full_rank(rank, [name for names in matched.values() for name in names], modules)
    tuner = LoraModel(model, config, ADAPTER)  # replaces the targets in place
    model.head.requires_grad_(True)
    return tuner


def _full_rank(layer: nn.Module) -> int:
    """The largest rank an update of ``layer``'s weight can have."""
    if isinstance(layer, nn.Linear):
        return min(layer.in_features, layer.out_features)
    if isinstance(layer, nn.Conv2d):  # peft's A: a convolution in → r, B: 1×1 r → out
        kernel = layer.kernel_size[0] * layer.kernel_size[1]
        return min(layer.in_channels // layer.groups * kernel, layer.out_channels)
    return layer.embed_dim  # attention's q, k, v projection: embed_dim → 3 × embed_dim


def _warn_of_full_rank(rank: int, names: list[str], modules: dict[str, nn.Module]) -> None:
    full = [(name, _full_rank(modules[name])) for name in names]
    over = [(name, limit) for name, limit in full if rank >= limit]
    if over:
        log.warning("finetune.lora.rank = %d is at least the full rank of %d of the %d "
                    "adapted layers (e.g. %s: %d): their adapters are no smaller than the "
                    "layers and LoRA's saving is gone; lower finetune.lora.rank (below %d)",
                    rank, len(over), len(full), over[0][0], over[0][1],
                    min(limit for _, limit in full))


def adapter_state_dict(model: Classifier) -> dict[str, torch.Tensor]:
    """The adapter alone: LoRA weights (peft's names, adapter name removed) and the head
    (``head.weight``, ``head.bias``), detached on the CPU."""
    from peft import get_peft_model_state_dict  # noqa: PLC0415

    state = dict(get_peft_model_state_dict(model, adapter_name=ADAPTER))
    state.update({f"head.{key}": value for key, value in model.head.state_dict().items()})
    return {key: value.detach().cpu().contiguous() for key, value in state.items()}


def load_adapter(model: Classifier, state: dict[str, torch.Tensor], *, rank: int,
                 alpha: float, target_modules: Sequence[str], dropout: float = 0.0
                 ) -> LoraModel:
    """Put a saved adapter back on ``model`` (the base it was trained on: same
    architecture and weights) in place; returns the tuner to merge with."""
    from peft import set_peft_model_state_dict  # noqa: PLC0415

    tuner = add_lora(model, rank=rank, alpha=alpha, dropout=dropout,
                     target_modules=target_modules)
    head = {key.removeprefix("head."): value for key, value in state.items()
            if key.startswith("head.")}
    model.head = nn.Linear(head["weight"].shape[1], head["weight"].shape[0])
    model.head.load_state_dict(head)
    model.spec["num_classes"] = model.head.out_features
    result = set_peft_model_state_dict(
        model, {k: v for k, v in state.items() if not k.startswith("head.")},
        adapter_name=ADAPTER)
    missing = [key for key in result.missing_keys if "lora_" in key]
    if missing or result.unexpected_keys:
        raise LifecycleError(f"The adapter does not fit '{model.spec['arch']}' "
                             f"({(missing or result.unexpected_keys)[0]}): load it on the "
                             "model it was trained from.")
    return tuner


def merge_lora(tuner: LoraModel) -> Classifier:
    """Merge the adapters into the weights they adapt and remove them: a plain
    ``Classifier`` of the original architecture (same module names, same outputs up to
    float rounding), everything trainable again."""
    model = tuner.merge_and_unload()
    model.requires_grad_(True)
    return model


def _examples(modules: dict[str, nn.Module], count: int = 6) -> list[str]:
    # not an attention layer's out_proj, which the attention uses without calling it
    names = [name for name, module in modules.items() if isinstance(module, _LORA_LAYERS)
             and not isinstance(modules.get(name.rpartition(".")[0]), nn.MultiheadAttention)]
    return names[:count] if len(names) <= count else [*names[:count - 1], "…"]
