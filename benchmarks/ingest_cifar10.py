"""Ingest of the real CIFAR-10 training set: 50,000 JPEGs in ImageFolder layout.

Runs ``kedro run --pipelines=ingest`` exactly as a user would (in a scratch copy of
the project, outside the repository), three times, and records wall time and the
peak resident memory of the whole process tree (Kedro, MLflow and the decoding
workers together). Goal: ≤ 60 s and ≤ 2 GB on 2 cores.

    python -m benchmarks.ingest_cifar10 [--archive cifar10-train-jpg.tar.gz] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from benchmarks.common import (
    DEFAULT_WORK,
    SHARED_CIFAR,
    cifar_jpeg_folder,
    run_measured,
    scratch_project,
    write_result,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=SHARED_CIFAR)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    images = cifar_jpeg_folder(args.archive, args.work)
    project = scratch_project(args.work)
    params = (f"ingest.source=image_folder,ingest.path={images},ingest.image_size=32,"
              "ingest.channels=3,ingest.labeled_fraction=1.0")
    cmd = [sys.executable, "-m", "kedro", "run", "--pipelines=ingest", "--params", params]
    env = {"DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "true", "MPLBACKEND": "Agg"}
    walls, peaks = [], []
    for i in range(args.repeats):
        wall, peak = run_measured(cmd, cwd=project, env=env)
        walls.append(wall)
        peaks.append(peak)
        print(f"run {i + 1}: {wall:.1f} s, peak {peak / 2**30:.2f} GiB", flush=True)
    n_images = sum(1 for p in images.rglob("*") if p.is_file() and p.suffix == ".jpg")
    path = write_result("ingest_cifar10", {
        "command": " ".join(["kedro", "run", "--pipelines=ingest", "--params", params]),
        "images": n_images,
        "wall_s": [round(w, 2) for w in walls],
        "median_wall_s": round(statistics.median(walls), 2),
        "images_per_s": round(n_images / statistics.median(walls)),
        "peak_rss_gib": [round(p / 2**30, 3) for p in peaks],
        "max_peak_rss_gib": round(max(peaks) / 2**30, 3),
        "goal": "<= 60 s and <= 2 GB",
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
