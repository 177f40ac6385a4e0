"""Memory-mapped ``images``: ingest of up to 1,000,000 generated 32×32 RGB images with
bounded memory, and training throughput from the memory map against memory.

The source is a CIFAR-10 python-batch folder (``cifar-10-batches-py/``: data_batch_1 …
data_batch_5, test_batch, batches.meta) of generated images, the realistic large case
that ingest reads without decoding: a million PNG files would take longer to write than
the ingest takes to read, and it would measure Pillow, not the image store. Each size
runs ``kedro run --pipelines=ingest`` as a user would (a scratch project outside the
repository) and records the wall time and the peak resident memory of the whole process
tree (sampled from /proc). Training: the same loop (BatchStream + the supervised
augmentation + small_cnn, forward and backward, a fixed number of steps) on 50,000
images loaded memory-mapped and loaded into memory, alternated, medians.

Goals: peak ≤ 2 GB at 1M images; seconds per image at 1M no worse than at 50k; training
from the map ≥ 90% of the in-memory throughput.

    python -m benchmarks.memmap_ingest [--sizes 50000 250000 1000000] [--work /tmp/…]
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (
    DEFAULT_WORK,
    latest_version,
    run_measured,
    scratch_project,
    write_result,
)

BATCHES = (*(f"data_batch_{k}" for k in range(1, 6)), "test_batch")
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")


def generate_cifar_folder(root: Path, n_images: int, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py`` with ``n_images`` random images in six batches, written
    one batch at a time (each batch is 1/6 of the pixels in memory, once)."""
    folder = root / "cifar-10-batches-py"
    if (folder / ".complete").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    sizes = np.diff(np.linspace(0, n_images, len(BATCHES) + 1).astype(int))
    for name, size in zip(BATCHES, sizes, strict=True):
        batch = {b"data": rng.integers(0, 256, (size, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, size).tolist()}
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=4)
        del batch
    (folder / "batches.meta").write_bytes(pickle.dumps(
        {b"label_names": [c.encode() for c in CLASSES]}, protocol=2))
    (folder / ".complete").touch()
    return folder


def ingest(work: Path, n_images: int) -> dict:
    folder = generate_cifar_folder(work / f"source-{n_images}", n_images)
    project = scratch_project(work / f"run-{n_images}")
    params = f"ingest.source=cifar10,ingest.path={folder},ingest.image_size=32"
    cmd = [sys.executable, "-m", "kedro", "run", "--pipelines=ingest", "--params", params]
    env = {"DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "true",
           "MLFLOW_DISABLE_TELEMETRY": "true", "MPLBACKEND": "Agg"}
    wall, peak = run_measured(cmd, cwd=project, env=env)
    stored = latest_version(project, "data/03_primary/images.npz")
    result = {"images": n_images, "wall_s": round(wall, 2),
              "us_per_image": round(wall / n_images * 1e6, 2),
              "peak_tree_rss_gib": round(peak / 2**30, 3),
              "pixel_gib": round(n_images * 3072 / 2**30, 3),
              "stored_file_gib": round(stored.stat().st_size / 2**30, 3)}
    print(result, flush=True)
    return result


def training_throughput(work: Path, n_images: int = 50_000, steps: int = 30,
                        repeats: int = 3) -> dict:
    """Images/s of the same training loop from the memory map and from memory."""
    import torch  # noqa: PLC0415

    from model_lifecycle.augment.augmenter import BatchAugmenter  # noqa: PLC0415
    from model_lifecycle.augment.config import SupervisedPolicy  # noqa: PLC0415
    from model_lifecycle.data.imageset import ImageSet  # noqa: PLC0415
    from model_lifecycle.io import ImageSetDataset  # noqa: PLC0415
    from model_lifecycle.models.registry import build_model  # noqa: PLC0415
    from model_lifecycle.training.data import BatchStream  # noqa: PLC0415

    rng = np.random.default_rng(1)
    path = str(work / "throughput" / "images.npz")
    ImageSetDataset(filepath=path).save(ImageSet(
        rng.integers(0, 256, (n_images, 3, 32, 32), dtype=np.uint8),
        rng.integers(0, 10, n_images), CLASSES, "cifar10"))
    loaded = {"memmap": ImageSetDataset(filepath=path, in_memory_below=0).load(),
              "memory": ImageSetDataset(filepath=path, in_memory_below=2**40).load()}
    assert isinstance(loaded["memmap"].images, np.memmap)
    assert not isinstance(loaded["memory"].images, np.memmap)
    augment = BatchAugmenter(SupervisedPolicy.model_validate(
        {"random_crop": {"padding": 4}, "horizontal_flip": {"p": 0.5}}))

    def run(data: ImageSet) -> float:
        torch.manual_seed(0)
        model = build_model("small_cnn", 10)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        stream = BatchStream(data.images, data.labels, np.arange(n_images), batch_size=256,
                             augment=augment, seed=0)
        start, done = time.perf_counter(), 0
        for (views, labels), _step in zip(stream.epoch(0), range(steps), strict=False):
            loss = torch.nn.functional.cross_entropy(model(views[0]), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += len(labels)
        return done / (time.perf_counter() - start)

    rates: dict[str, list[float]] = {"memmap": [], "memory": []}
    run(loaded["memory"])  # warm-up: torch's one-off costs, the file in the page cache
    for _ in range(repeats):
        for kind in ("memmap", "memory"):
            rates[kind].append(run(loaded[kind]))
    medians = {kind: statistics.median(values) for kind, values in rates.items()}
    result = {"images": n_images, "steps": steps, "batch_size": 256, "model": "small_cnn",
              "images_per_s": {k: [round(v, 1) for v in values] for k, values in rates.items()},
              "median_images_per_s": {k: round(v, 1) for k, v in medians.items()},
              "memmap_over_memory": round(medians["memmap"] / medians["memory"], 3)}
    print(result, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 250_000, 1_000_000])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK / "memmap")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    try:
        runs = [ingest(args.work, n) for n in args.sizes]
        training = training_throughput(args.work)
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    first, last = runs[0], runs[-1]
    path = write_result("memmap", {
        "command": "python -m benchmarks.memmap_ingest --sizes "
                   + " ".join(str(n) for n in args.sizes),
        "source": "CIFAR-10 python batches (6 files) of generated 32×32 RGB images",
        "ingest": runs,
        "training": training,
        "goals": {
            "peak_at_largest_le_2gb": last["peak_tree_rss_gib"] * 2**30 <= 2e9,
            "per_image_largest_le_smallest": last["us_per_image"] <= first["us_per_image"],
            "training_memmap_ge_90pct": training["memmap_over_memory"] >= 0.9,
        },
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
