"""The processes of a distributed training launch (docs/distributed.md).

Two commands:

``python -m model_lifecycle.training.distributed_worker rank --job FILE --out DIR``
    One rank, started by the elastic launcher (never by hand): joins the process group
    the launcher set up (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` … in its
    environment), reads the job (node 0's ranks from ``FILE``, other machines' ranks
    from rank 0 over the process group), trains, and on rank 0 writes the result to
    ``DIR``.

``python -m model_lifecycle.training.distributed_worker --nnodes N --node-rank R
--nproc-per-node P --rdzv-endpoint HOST:PORT``
    What every machine but node 0 runs while node 0 runs ``kedro run`` with the same
    ``runtime.distributed``: it starts this machine's ``P`` ranks for one training
    launch (one training stage) and exits when it ends.

Neither imports Kedro or starts an MLflow run: only the node's own process writes
datasets and talks to MLflow.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import random
import signal
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.elastic.multiprocessing.errors import ErrorHandler, record

from model_lifecycle.errors import LifecycleError
from model_lifecycle.training.config import DistributedParams
from model_lifecycle.training.distributed import (
    FAULT_ENV,
    RESULT,
    Job,
    RankResult,
    run_ranks,
    state_digest,
)
from model_lifecycle.training.sync_bn import convert_global_batchnorm

log = logging.getLogger(__name__)

# A rank inherits the node process's environment; MLflow would log into its run.
MLFLOW_ENV = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")


class _AtomicErrorHandler(ErrorHandler):
    """torch's handler, with the error file written whole or not at all. torch writes it
    in place, and a rank stopped by the launcher (SIGTERM, once another rank has failed)
    while it writes leaves an empty file, on which the launcher itself fails with a
    JSONDecodeError instead of reporting the ranks' failures."""

    def record_exception(self, e: BaseException) -> None:
        final = super()._get_error_file_path()
        if not final:
            super().record_exception(e)
            return
        partial = f"{final}.{os.getpid()}.partial"
        self._get_error_file_path = lambda: partial  # type: ignore[method-assign]
        try:
            super().record_exception(e)
        finally:
            del self._get_error_file_path
        os.replace(partial, final)


@functools.partial(record, error_handler=_AtomicErrorHandler())
def rank_main(job_file: Path | None, out: Path | None, backend: str | None = None) -> None:
    """One rank: train the job on this rank's shard; rank 0 writes the result."""
    for name in MLFLOW_ENV:
        os.environ.pop(name, None)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    world, local_world = int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_WORLD_SIZE"])
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"[rank {rank}] %(name)s: %(message)s")
    job: Job | None = torch.load(job_file, weights_only=False) if job_file else None
    # node 0's ranks know the backend from the job; another machine's from its command
    backend = job.backend if job else backend or ("nccl" if torch.cuda.is_available()
                                                  else "gloo")
    device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend)
    try:
        if world > local_world:  # ranks on other machines have no job file
            shared = [job]
            dist.broadcast_object_list(shared, src=0, device=device)
            job = shared[0]
        result = _train(job, rank, world, device)
        if rank == 0 and out is not None:
            torch.save(result, out / RESULT)
    finally:
        dist.destroy_process_group()


def _train(job: Job, rank: int, world: int, device: torch.device) -> RankResult:
    torch.set_num_threads(job.threads)
    random.seed(job.seed)
    np.random.seed(job.seed)
    torch.manual_seed(job.seed)
    model = job.model
    if job.sync_batchnorm:
        # the node's own model keeps its plain batch norms; only weights go back. torch's
        # SyncBatchNorm runs on CUDA only: on the CPU the same statistics come from gloo
        model = (nn.SyncBatchNorm.convert_sync_batchnorm(model) if device.type == "cuda"
                 else convert_global_batchnorm(model))
    _arm_fault(model, rank)
    value = job.train(model, *job.args, device=device, **job.kwargs)
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    digests: list[str | None] = [None] * world
    dist.all_gather_object(digests, state_digest(state))
    return RankResult(state=state if rank == 0 else {}, value=value if rank == 0 else None,
                      digests=digests, world_size=world)


def _arm_fault(model: nn.Module, rank: int) -> None:
    """The test hook of ``FAULT_ENV`` ("<rank>:<n>"): SIGKILL at the n-th forward pass."""
    spec = os.environ.get(FAULT_ENV)
    if not spec or int(spec.split(":")[0]) != rank:
        return
    calls = {"n": 0}

    def die(*_: object) -> None:
        calls["n"] += 1
        if calls["n"] >= int(spec.split(":")[1]):
            os.kill(os.getpid(), signal.SIGKILL)

    model.register_forward_pre_hook(die)


def agent_main(argv: list[str]) -> int:
    """Another machine's part of a multi-node launch."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {__name__}",
        description="Run this machine's ranks of one distributed training launch of a "
                    "`kedro run` on node 0 (docs/distributed.md).")
    parser.add_argument("--nnodes", type=int, required=True)
    parser.add_argument("--node-rank", type=int, required=True)
    parser.add_argument("--nproc-per-node", type=int, default=1)
    parser.add_argument("--rdzv-endpoint", required=True, help="node 0's host:port")
    parser.add_argument("--backend", choices=["auto", "gloo", "nccl"], default="auto",
                        help="node 0's runtime.distributed.backend")
    parser.add_argument("--max-restarts", type=int, default=0)
    # longer than node 0's: between two launches node 0 saves, logs and starts the next
    # stage, while this machine's next worker (a loop, docs/distributed.md) already waits
    parser.add_argument("--rdzv-timeout", type=int, default=900,
                        help="seconds to wait for node 0's next launch (default 900)")
    args = parser.parse_args(argv)
    if args.node_rank == 0:
        parser.error("node 0 is the machine running `kedro run`; give this one's rank")
    try:
        config = DistributedParams(nnodes=args.nnodes, node_rank=args.node_rank,
                                   nproc_per_node=args.nproc_per_node,
                                   rdzv_endpoint=args.rdzv_endpoint,
                                   backend=args.backend, max_restarts=args.max_restarts,
                                   rdzv_timeout=args.rdzv_timeout)
    except ValueError as exc:
        parser.error(str(exc).splitlines()[-1])
    try:
        run_ranks(config, [] if config.backend == "auto" else ["--backend", config.backend])
    except LifecycleError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["rank"]:
        parser = argparse.ArgumentParser(prog=f"python -m {__name__} rank")
        parser.add_argument("--job", type=Path)
        parser.add_argument("--out", type=Path)
        parser.add_argument("--backend", choices=["gloo", "nccl"])
        args = parser.parse_args(argv[1:])
        rank_main(args.job, args.out, args.backend)
        return 0
    return agent_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
