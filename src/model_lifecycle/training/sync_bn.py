"""Batch norm over the global batch of a CPU (gloo) DistributedDataParallel run.

torch's ``nn.SyncBatchNorm`` is the one to use on GPUs, but it refuses CPU tensors: its
kernels (``batch_norm_stats``, ``batch_norm_gather_stats_with_counts``, …) exist for
CUDA only. Without it every rank normalises with the statistics of its own shard (64
images instead of 128 on two ranks), which changes what the network learns: 1.2 points
on the CIFAR-10 subset of ``benchmarks/distributed.py``.

``GlobalBatchNorm`` computes the same thing from plain tensor operations: the per-channel
sum, sum of squares and count of every rank are added with
``torch.distributed.nn.functional.all_reduce``, whose backward pass is itself an
all-reduce, so the gradient reaching each rank's inputs through the shared mean and
variance is the one the whole batch would give (DDP then averages the parameters'
gradients, as it does for every layer). The sums are taken around the running mean
(the same on every rank), so the variance does not lose its digits to a large mean. The
running statistics follow ``nn.BatchNorm``: exponential average with ``momentum`` and
the unbiased variance of the global batch. Tested end to end
(``tests/training/test_distributed.py``): two gloo ranks fine-tune a batch-normed
network to one process's weights, running statistics and losses on the same global
batch, and without it they do not.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):  # noqa: SLF001 — torch's own base
    """A ``BatchNorm{1,2,3}d`` whose training statistics span every rank's batch."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        synced = (self.training and dist.is_available() and dist.is_initialized()
                  and dist.get_world_size() > 1)
        if not synced:
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        channels = x.shape[1]
        shape = [1, channels] + [1] * (x.dim() - 2)
        # the same on every rank: DDP broadcasts rank 0's buffers before each forward pass
        # statistics in float32 whatever x is (bfloat16 under autocast): the count and,
        # without running statistics, the centre would otherwise be bfloat16 (a count of
        # 4,900 rounds to 4,896)
        centre = (self.running_mean.detach().float().clone() if self.track_running_stats
                  else x.new_zeros(channels, dtype=torch.float32))
        shifted = x.float() - centre.view(shape)
        count = shifted.new_full((1,), x.numel() / channels)
        totals = all_reduce(torch.cat([shifted.sum(dims), (shifted * shifted).sum(dims),
                                       count]))
        total, squares, n = totals[:channels], totals[channels:-1], totals[-1]
        offset = total / n
        mean = centre + offset
        var = (squares / n - offset * offset).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (1 / self.num_batches_tracked.item() if self.momentum is None
                          else self.momentum)
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp_min(1), factor)
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_global_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every batch norm replaced by a ``GlobalBatchNorm`` holding the same
    parameters and buffers (the state-dict keys are unchanged)."""
    if isinstance(module, BATCH_NORMS) and not isinstance(module, GlobalBatchNorm):
        synced = GlobalBatchNorm(module.num_features, module.eps, module.momentum,
                                 module.affine, module.track_running_stats)
        synced.load_state_dict(module.state_dict())
        synced.train(module.training)
        if module.affine:
            synced.weight.requires_grad_(module.weight.requires_grad)
            synced.bias.requires_grad_(module.bias.requires_grad)
        return synced
    for name, child in module.named_children():
        module.add_module(name, convert_global_batchnorm(child))
    return module
