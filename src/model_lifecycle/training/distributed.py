"""DistributedDataParallel training launched from inside a training node.

``kedro run`` runs the pipeline once; a training function (``finetune``, ``pretrain``,
``distill``) that finds ``runtime.distributed`` asking for more than one process hands
itself to :func:`launch`, which starts the ranks with torch's own elastic launcher
(``elastic_launch``). Each rank is a fresh ``python -m
model_lifecycle.training.distributed_worker`` process: it imports neither Kedro nor
MLflow, trains its shard inside a ``torch.distributed`` process group (``fit`` wraps the
model in ``DistributedDataParallel``), and rank 0 writes its final weights and the
function's return value to a private temporary folder. The node's own process loads
them into its model and returns to Kedro, which alone saves datasets and talks to
MLflow. (``torchrun … kedro run`` would instead run every node once per rank.)

Other machines (``nnodes`` > 1) run the same worker module as an agent
(docs/distributed.md); their ranks receive the job from rank 0.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from torch.distributed.elastic.multiprocessing import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from model_lifecycle.errors import LifecycleError
from model_lifecycle.training.config import DistributedParams, RuntimeParams

log = logging.getLogger(__name__)
# the signals torch elastic's launcher handles (its TORCHELASTIC_SIGNALS_TO_HANDLE default)
_LAUNCHER_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP",
                                                             "SIGQUIT") if hasattr(signal, name))

R = TypeVar("R")
WORKER = "model_lifecycle.training.distributed_worker"
RUN_ID = "model-lifecycle"  # static rendezvous: node 0 and the other machines share it
RESULT = "rank0.pt"  # rank 0's result, in the launch's temporary folder
# Test hook: "<rank>:<n>" makes that rank kill itself (SIGKILL) at its n-th forward
# pass, i.e. mid-epoch, the way a machine or a process dies.
FAULT_ENV = "MODEL_LIFECYCLE_DISTRIBUTED_FAULT"


@dataclasses.dataclass
class Job:
    """What every rank runs: ``train(model, *args, device=<the rank's>, **kwargs)``."""

    train: Callable[..., Any]
    model: nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    backend: str  # gloo | nccl
    threads: int  # torch CPU threads per rank
    sync_batchnorm: bool
    seed: int


@dataclasses.dataclass
class RankResult:
    """What rank 0 hands back: its weights, the function's return value, and every
    rank's weight digest (SHA-256 of the state dict)."""

    state: dict[str, torch.Tensor]
    value: Any
    digests: list[str]
    world_size: int


def fans_out(runtime: RuntimeParams) -> bool:
    """True in the node's process when ``runtime.distributed`` asks for more than one
    rank; False inside a rank (a process group is already running) and when off."""
    return (runtime.distributed.world_size > 1
            and not (torch.distributed.is_available() and torch.distributed.is_initialized()))


def launch(runtime: RuntimeParams, train: Callable[..., R], model: nn.Module, *args: Any,
           **kwargs: Any) -> R:
    """Run ``train(model, *args, device=…, **kwargs)`` on every rank of
    ``runtime.distributed`` and return rank 0's return value; ``model`` ends with rank
    0's final weights, as if ``train`` had trained it in this process. A training
    function starts with ``if fans_out(runtime): return launch(runtime, itself, …)``.

    A rank that fails stops the launch: the error names the rank and its error, and
    nothing is returned (so the node saves nothing).
    """
    config = runtime.distributed
    backend = resolve_backend(config, runtime.device)
    where = next(model.parameters()).device
    model.cpu()
    with tempfile.TemporaryDirectory(prefix="model-lifecycle-ddp-") as folder:
        job_file = Path(folder) / "job.pt"
        torch.save(Job(train=train, model=model, args=args, kwargs=kwargs, backend=backend,
                       threads=threads_per_rank(runtime), sync_batchnorm=config.sync_batchnorm,
                       seed=runtime.seed), job_file)
        tic = time.perf_counter()
        run_ranks(config, ["--job", str(job_file), "--out", folder])
        result: RankResult = torch.load(Path(folder) / RESULT, weights_only=False)
    if len(set(result.digests)) != 1:  # DDP keeps them equal; anything else is a bug
        raise RuntimeError(f"ranks ended with different weights: {result.digests}")
    model.load_state_dict(result.state)
    model.to(where)
    log.info("%s: %d ranks (%s) in %.1f s, weights identical on every rank (sha256 %s…)",
             getattr(train, "__name__", "train"), result.world_size, backend,
             time.perf_counter() - tic, result.digests[0][:12])
    return result.value


def run_ranks(config: DistributedParams, worker_args: list[str], *,
              node_rank: int | None = None) -> None:
    """Start this machine's ``nproc_per_node`` ranks (``python -m …distributed_worker
    rank <worker_args>``) with ``elastic_launch`` and wait for all of them."""
    launch_config = launch_config_for(config, node_rank=node_rank)
    # The launcher replaces the process's handlers of these signals with its own, which
    # raise its SignalException, and leaves them there: Ctrl-C or SIGTERM, during the
    # launch or after it, would end the run FAILED instead of KILLED (model_lifecycle.cli).
    handlers = {sig: signal.getsignal(sig) for sig in _LAUNCHER_SIGNALS}
    if config.nnodes > 1 and (config.node_rank if node_rank is None else node_rank) == 0:
        log.info("distributed: waiting up to %d s (runtime.distributed.rdzv_timeout) for "
                 "all %d machines to join at %s; on each other machine: %s (Ctrl-C takes "
                 "effect when the wait ends)", config.rdzv_timeout, config.nnodes,
                 config.rdzv_endpoint, worker_command(config))
    try:
        elastic_launch(launch_config, sys.executable)("-m", WORKER, "rank", *worker_args)
    except SignalException as exc:  # the launcher has stopped the ranks
        raise KeyboardInterrupt(signal.Signals(exc.sigval).name) from None
    except torch.distributed.DistStoreError as exc:  # the machines did not all join
        raise LifecycleError(
            f"Distributed training stopped: not every machine joined at "
            f"{config.rdzv_endpoint} within {config.rdzv_timeout} s "
            f"(runtime.distributed.rdzv_timeout; {str(exc).splitlines()[0]}): start the "
            f"worker command on the other machines (docs/distributed.md), or raise "
            "rdzv_timeout; nothing of this node was saved.") from None
    except ChildFailedError as exc:
        rank, failure = _root_failure(exc)
        raise LifecycleError(
            f"Distributed training stopped: rank {rank} failed ({_reason(failure)}); "
            "nothing of this node was saved, and earlier versions are as they were."
        ) from None
    finally:
        for sig, handler in handlers.items():
            if handler is not None and handler is not signal.getsignal(sig):
                signal.signal(sig, handler)


def worker_command(config: DistributedParams) -> str:
    """The command another machine runs to join ``config``'s launches (its rank left to
    fill in), with every setting that must match node 0's."""
    parts = [f"python -m {WORKER} --nnodes {config.nnodes} --node-rank <its rank>",
             f"--nproc-per-node {config.nproc_per_node}",
             f"--rdzv-endpoint {config.rdzv_endpoint}"]
    if config.backend != "auto":
        parts.append(f"--backend {config.backend}")
    if config.max_restarts:
        parts.append(f"--max-restarts {config.max_restarts}")
    return " ".join(parts)


def _root_failure(exc: ChildFailedError) -> tuple[int, ProcessFailure]:
    """The rank that caused the others to fail. One killed from outside (a signal other
    than the launcher's own SIGTERM, e.g. SIGKILL from the OOM killer, with no error of
    its own recorded) is the cause: its peers then fail on a broken connection, and the
    launcher stops them with SIGTERM. Otherwise torch's first failure by time. (A killed
    rank leaves no error file, so torch stamps it when the launcher notices, often after
    its peers' errors, and would name a peer.)"""
    killed = sorted(rank for rank, failure in exc.failures.items()
                    if failure.exitcode < 0 and failure.exitcode != -signal.SIGTERM
                    and not Path(failure.error_file).is_file())
    if killed:
        return killed[0], exc.failures[killed[0]]
    return exc.get_first_failure()


def launch_config_for(config: DistributedParams, *, node_rank: int | None = None
                      ) -> LaunchConfig:
    """One machine on a free local port (c10d rendezvous, as ``torchrun --standalone``),
    or, for ``nnodes`` > 1, the static rendezvous at ``rdzv_endpoint`` where node 0
    hosts the store and global ranks follow node ranks."""
    common = {"min_nodes": config.nnodes, "max_nodes": config.nnodes,
              "nproc_per_node": config.nproc_per_node, "max_restarts": config.max_restarts,
              "start_method": "spawn", "monitor_interval": 0.1}
    if config.nnodes == 1:
        return LaunchConfig(**common, run_id=f"{RUN_ID}-{os.getpid()}",
                            rdzv_backend="c10d", rdzv_endpoint="localhost:0")
    rank = config.node_rank if node_rank is None else node_rank
    return LaunchConfig(**common, run_id=RUN_ID, rdzv_backend="static",
                        rdzv_endpoint=config.rdzv_endpoint,
                        rdzv_configs={"rank": rank, "timeout": config.rdzv_timeout})


def resolve_backend(config: DistributedParams, device: str) -> str:
    """``auto``: nccl when the ranks train on CUDA, gloo on the CPU."""
    if config.backend != "auto":
        return config.backend
    return "nccl" if _trains_on_cuda(device) else "gloo"


def threads_per_rank(runtime: RuntimeParams) -> int:
    """The node's CPU threads (``runtime.num_threads``, else its processors) shared by its
    ranks."""
    return max(1, (runtime.num_threads or processors()) // runtime.distributed.nproc_per_node)


def processors() -> int:
    """Processors this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def check_launch(runtime: RuntimeParams, stages: dict[str, Any]) -> None:
    """Refuse, before anything runs, a distributed set-up this run cannot train with:
    ``stages`` maps a parameter group's key (``finetune``, ``compress.distill`` …) to its
    validated parameters, whose ``batch_size`` must be divisible by the world size and
    whose ``budget_seconds`` must be unset."""
    config = runtime.distributed
    if config.world_size == 1:
        return
    if config.node_rank != 0:
        raise LifecycleError(
            f"runtime.distributed.node_rank is {config.node_rank}, but `kedro run` is node "
            f"0 of the job: run `python -m {WORKER} --node-rank {config.node_rank} …` on "
            "that machine instead (docs/distributed.md).")
    cuda = _trains_on_cuda(runtime.device)
    have, kind = ((torch.cuda.device_count(), "GPU(s)") if cuda else (processors(), "processors"))
    if config.nproc_per_node > have:
        raise LifecycleError(
            f"runtime.distributed.nproc_per_node is {config.nproc_per_node}, but this "
            f"machine has {have} {kind}: set it to {have} or fewer.")
    if config.backend == "nccl" and not cuda:
        raise LifecycleError("runtime.distributed.backend is nccl, which needs CUDA, but "
                             "the ranks train on the CPU: set backend: auto or gloo.")
    for key, params in stages.items():
        batch = getattr(params, "batch_size", None)
        if batch is not None and batch % config.world_size:
            raise LifecycleError(
                f"{key}.batch_size {batch} is the global batch and must be divisible by "
                f"the world size {config.world_size} (runtime.distributed): set it to "
                f"{batch - batch % config.world_size or config.world_size}.")
        if getattr(params, "budget_seconds", None) is not None:
            raise LifecycleError(
                f"{key}.budget_seconds cannot be used with runtime.distributed (the ranks "
                "would have to agree on a measured epoch count): set epochs instead.")


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names and raw bytes."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy()
                      .tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _trains_on_cuda(device: str) -> bool:
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def _reason(failure: Any) -> str:
    """The first line of a failed rank's error (an exception's message, or the signal
    that killed it)."""
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message", "")
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    no_message = not lines or lines[0].startswith("To enable traceback")
    reason = f"exit code {failure.exitcode}" if no_message else lines[0]
    return reason.rstrip(".")
