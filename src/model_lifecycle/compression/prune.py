"""Structured pruning with Torch-Pruning, and unstructured magnitude pruning.

Structured: whole channels leave along the dependency graph (residual connections
included), ranked by magnitude or first-order Taylor importance, in small steps until
the MACs (or parameter) reduction reaches the target, with a recovery fine-tune at
``steps`` evenly spaced milestones. The model really shrinks, so it really runs faster.

Unstructured: the smallest weights over all convolutions and linears are zeroed and
the masks made permanent. Dense kernels still multiply the zeros: no speed-up.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune as torch_prune

from model_lifecycle.errors import LifecycleError
from model_lifecycle.models.classifier import Classifier
from model_lifecycle.models.structure import cost, sparsity

log = logging.getLogger(__name__)

# recover(model, milestone) fine-tunes the model in place after a pruning milestone
Recover = Callable[[Classifier, int], None]
# batch() -> (images, labels) for Taylor importance
Batch = Callable[[], tuple[torch.Tensor, torch.Tensor]]
_SMALL_STEPS = 100  # each pruner step removes ~1% of the channels still prunable


def prune_structured(model: Classifier, example: torch.Tensor, *, target: float,
                     metric: str = "macs", importance: str = "magnitude", steps: int = 3,
                     recover: Recover | None = None, batch: Batch | None = None,
                     round_to: int | None = None, keep_stem: bool = False,
                     layer_ratios: dict[str, float] | None = None,
                     max_channel_ratio: float = 0.9) -> tuple[Classifier, dict[str, float]]:
    """A pruned copy of ``model`` whose ``metric`` is at least ``target``× smaller
    (``model`` itself is left as it was). Returns the copy and a cost report.

    ``round_to`` keeps every pruned layer's channel count a multiple of it (vectorised
    CPU kernels run faster on such counts); it is ignored when some prunable layer has
    fewer than twice as many channels, which rounding could empty.

    ``keep_stem`` leaves the encoder's first convolution with all its channels (the rest
    of the network is pruned harder to reach the target). Meant for a frozen whitened
    stem (``whiten_stem``): the sizes of its filters were set by the data, not learned,
    and the smallest are the directions of most pixel variance, so a magnitude ranking
    would drop the wrong ones.

    ``layer_ratios`` maps module names (``encoder.stages.1``) to the share of their
    channels the pruner's schedule reaches where every other layer reaches
    ``max_channel_ratio`` (Torch-Pruning's ``pruning_ratio_dict``): all layers shrink
    step by step until the target, the named ones at ``ratio / max_channel_ratio`` of the
    others' pace (0.45 against 0.9: half as fast)."""
    if target <= 1:
        raise ValueError(f"target must be > 1 (a reduction factor), got {target}")
    if any(isinstance(m, nn.MultiheadAttention) for m in model.modules()):
        # Torch-Pruning's channel groups split attention heads unevenly, and a pruned
        # attention layer could not be rebuilt from the recorded layer sizes
        raise LifecycleError(f"Structured pruning cannot shrink the attention layers of "
                             f"'{model.spec['arch']}': set compress.prune.method: "
                             "unstructured and compress.prune.structured: null for a "
                             "transformer.")
    pruned = copy.deepcopy(model).eval()
    example = example[:1]
    before = cost(pruned, example)
    if importance == "taylor":
        scorer = tp.importance.GroupTaylorImportance()
        if batch is None:
            raise ValueError("Taylor importance needs labeled batches")
    else:
        scorer = tp.importance.GroupMagnitudeImportance(p=2)
    convs = [m for m in pruned.encoder.modules() if isinstance(m, nn.Conv2d)]
    widths = [m.out_channels for m in convs]
    if round_to and min(widths) < 2 * round_to:
        log.info("round_to=%d ignored: the narrowest layer has %d channels", round_to,
                 min(widths))
        round_to = None
    # with keep_stem, layers tied to the stem's channels (a residual path) keep them too
    ignored = [pruned.head, *(convs[:1] if keep_stem else [])]
    modules = dict(pruned.named_modules())
    unknown = sorted(set(layer_ratios or {}) - set(modules))
    if unknown:
        stages = ", ".join(name for name in modules if name.count(".") == 2
                           and name.startswith("encoder.stages."))
        raise LifecycleError(f"compress.prune.structured.layer_ratios names no layer of "
                             f"'{model.spec['arch']}': {', '.join(unknown)}; name modules "
                             f"of the model, e.g. {stages or 'encoder.stages.0'}.")
    pruner = tp.pruner.MetaPruner(pruned, example, importance=scorer,
                                  pruning_ratio=max_channel_ratio,
                                  pruning_ratio_dict={modules[name]: ratio for name, ratio
                                                      in (layer_ratios or {}).items()},
                                  iterative_steps=_SMALL_STEPS, round_to=round_to,
                                  ignored_layers=ignored)
    milestones = [target ** ((k + 1) / steps) for k in range(steps)]
    reached, now = 0, before
    for _ in range(_SMALL_STEPS):
        if importance == "taylor":
            _taylor_gradients(pruned, batch)
        pruner.step()
        now = cost(pruned, example)
        if before[metric] / now[metric] >= milestones[reached]:
            log.info("pruning milestone %d/%d: %.2fx fewer %s", reached + 1, steps,
                     before[metric] / now[metric], metric)
            if recover is not None:
                recover(pruned, reached)
            reached += 1
            if reached == steps:
                break
    pruned.zero_grad(set_to_none=True)
    pruned.encoder.feature_dim = pruned.head.in_features
    return pruned.eval(), _report(before, now, metric, target)


def _report(before: dict[str, float], now: dict[str, float], metric: str,
            target: float) -> dict[str, float]:
    if before[metric] / now[metric] < target:
        log.warning("structured pruning stopped at %.2f× fewer %s, short of "
                    "compress.prune.structured.target %g: the layers reached their least "
                    "width (round_to, keep_stem, layer_ratios); lower the target",
                    before[metric] / now[metric], metric, target)
    return {
        "macs_before": before["macs"], "macs_after": now["macs"],
        "params_before": before["params"], "params_after": now["params"],
        "macs_reduction": before["macs"] / now["macs"],
        "params_reduction": before["params"] / now["params"],
        "target_reached": float(before[metric] / now[metric] >= target),
    }


def _taylor_gradients(model: Classifier, batch: Batch) -> None:
    model.zero_grad(set_to_none=True)
    images, labels = batch()
    nn.functional.cross_entropy(model(images), labels).backward()


def prune_unstructured(model: Classifier, *, amount: float, permanent: bool = True
                       ) -> tuple[Classifier, dict[str, float]]:
    """A copy of ``model`` with the ``amount`` smallest-magnitude weights (globally, over
    every convolution and linear layer) set to zero, masks made permanent — or, with
    ``permanent=False``, kept on (torch's ``weight = weight_orig * weight_mask``), so that
    training the copy (recovery) cannot bring the zeros back; :func:`make_permanent`
    after it."""
    if not 0 < amount < 1:
        raise ValueError(f"amount must be in (0, 1), got {amount}")
    # torch's global pruning flattens each weight with .view(-1), which a channels-last
    # convolution weight (how training leaves them) refuses
    pruned = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    targets = [(m, "weight") for m in pruned.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured,
                                    amount=amount)
    if permanent:
        make_permanent(pruned)
    else:
        for attention in (m for m in pruned.modules() if isinstance(m, nn.MultiheadAttention)):
            # it reads out_proj.weight without calling out_proj, so the mask's forward hook
            # would never recompute it: plain weights there, the zeros put back afterwards
            out = attention.out_proj
            mask = out.weight_mask.detach().clone()
            torch_prune.remove(out, "weight")
            out.register_buffer("zeros_after_recovery", mask)
    return pruned.eval(), {"sparsity": sparsity(pruned)}


def make_permanent(model: nn.Module) -> nn.Module:
    """Turn the masks of unstructured pruning into plain weights (zeros where masked)."""
    for module in model.modules():
        if hasattr(module, "weight_mask"):
            torch_prune.remove(module, "weight")
        if hasattr(module, "zeros_after_recovery"):
            with torch.no_grad():
                module.weight.mul_(module.zeros_after_recovery)
            del module._buffers["zeros_after_recovery"]
    return model
