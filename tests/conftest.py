"""Shared fixtures: tiny real image files, tiny CIFAR-format batches, a Kedro project
copy whose data and MLflow store live in a temporary folder."""

from __future__ import annotations

import atexit
import io
import os
import pickle
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from PIL import Image

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MPLBACKEND", "Agg")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# torch threads for a test's own runs: the cores shared among pytest-xdist's workers
# (`make test`), so that two workers' threads do not fight over the same cores
THREADS = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
CLASSES = ("cat", "dog", "fox")


def make_image(mode: str, size: tuple[int, int], seed: int) -> Image.Image:
    """A random image in any PIL mode (L, RGB, RGBA, P, I;16 …), ``size`` = (w, h)."""
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    if mode == "P":
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (size[1], size[0]), dtype=np.uint16))
    return rgb.convert(mode)


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A PNG of a few hundred bytes whose header says ``width`` × ``height`` pixels (a
    decompression bomb): a small real PNG with its IHDR size rewritten, CRC fixed."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    return bytes(data)


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """``<root>/<class>/<image>``: 3 classes × 10 images, PNG and JPEG, mixed modes and
    sizes (no corrupt file; tests add their own)."""
    root = tmp_path / "images"
    modes = ("RGB", "L", "RGBA", "P", "RGB")
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(10):
            image = make_image(modes[i % len(modes)], (20 + i, 12 + 2 * i), seed=100 * c + i)
            if i % 2 and image.mode in ("RGB", "L"):
                image.save(root / name / f"{i:02d}.jpg", quality=90)
            else:
                image.save(root / name / f"{i:02d}.png")
    return root


def write_cifar_batch(path: Path, n: int, seed: int, override: dict[bytes, Any] | None = None
                      ) -> None:
    """A batch in the exact format of ``cifar-10-batches-py/data_batch_*``."""
    rng = np.random.default_rng(seed)
    batch = {
        b"batch_label": b"training batch",
        b"labels": [int(i % 10) for i in range(n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    batch.update(override or {})
    path.write_bytes(pickle.dumps(batch, protocol=2))


@pytest.fixture
def cifar_dir(tmp_path: Path) -> Path:
    """``cifar-10-batches-py/`` with two tiny training batches, a test batch and the meta."""
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    write_cifar_batch(root / "data_batch_1", 40, seed=1)
    write_cifar_batch(root / "data_batch_2", 40, seed=2)
    write_cifar_batch(root / "test_batch", 20, seed=3)
    names = [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog",
                                  "frog", "horse", "ship", "truck")]
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    return root


def pytest_configure(config: pytest.Config) -> None:
    import torch  # noqa: PLC0415

    torch.set_num_threads(min(torch.get_num_threads(), THREADS))


# How `make test` (pytest-xdist, --dist loadfile) hands out its test files. The tests of
# these files share the session's `lifecycle` fixture: one work unit, so the tiny
# lifecycle is built once, not once on each worker.
SHARED_LIFECYCLE = ("tests/pipelines/test_lifecycle_run.py", "tests/ui/test_browser.py")


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's, absent without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling  # noqa: PLC0415

    class SharedLifecycle(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return SHARED_LIFECYCLE[0] if path in SHARED_LIFECYCLE else path

    return SharedLifecycle(config, log)


_EMPTY_STORE: list[Path] = []


def _empty_store() -> Path:
    """An MLflow SQLite store with its tables made and nothing in them, made once per
    test session: a new store spends a second or two creating its tables, and some
    forty tests each start a project of their own."""
    if not _EMPTY_STORE:
        import mlflow  # noqa: PLC0415

        folder = Path(tempfile.mkdtemp(prefix="mlflow-empty-store-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db").search_experiments()
        _EMPTY_STORE.append(folder / "mlflow.db")
    return _EMPTY_STORE[0]


def scratch_project(work: Path, *, store: bool = True) -> Path:
    """A copy of the project's pyproject.toml and conf/ (not conf/local) in ``work``.

    Kedro resolves relative catalog paths against the project path, so data lands in
    ``work/data``; MLflow goes to ``work/mlflow.db`` (with or without ``env=``), as an
    absolute URI because MLflow caches stores by URI and a relative one would keep
    pointing at the first test's folder. ``store``: that file starts as an empty store
    with its tables made (as MLflow makes them on first use; ``False``: no file, for a
    test that checks nothing wrote one). The package itself is imported from the
    installed project.
    """
    shutil.copytree(PROJECT_ROOT / "conf", work / "conf",
                    ignore=shutil.ignore_patterns("local"))
    (work / "conf" / "local").mkdir()
    settings = (f"server:\n  mlflow_tracking_uri: sqlite:///{work}/mlflow.db\n"
                f"  mlflow_registry_uri: sqlite:///{work}/mlflow.db\n")
    # `local` is read only without --env; a run with env=<name> reads conf/<name>, which
    # gets the same store unless it names its own (`server`)
    for env in (work / "conf").iterdir():
        if env.name != "base" and not any(env.glob("mlflow*.yml")):
            (env / "mlflow.yml").write_text(settings)
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT_ROOT / name, work / name)
    (work / "src").mkdir()
    if store:
        shutil.copy(_empty_store(), work / "mlflow.db")
    return work


def project_runner(work: Path) -> Callable[..., dict]:
    """``run(pipelines, params=None, env=None, load_versions=None)``: one KedroSession of
    the project in ``work`` (a :func:`scratch_project`); ``run.work`` is the folder."""
    bootstrap_project(work)

    def run(pipelines: list[str] | None = None, params: dict | None = None,
            env: str | None = None, load_versions: dict[str, str] | None = None) -> dict:
        with KedroSession.create(project_path=work, env=env,
                                 runtime_params=params or {}) as session:
            return session.run(pipeline_names=pipelines, load_versions=load_versions)

    run.work = work  # type: ignore[attr-defined]
    return run


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict]:
    """Run pipelines of the real project with its real conf, in a scratch folder.

    Returns ``run(pipelines, params=None)``; data lands in ``tmp_path/work/data`` and
    MLflow in ``tmp_path/work/mlflow.db``.
    """
    work = scratch_project(tmp_path / "work")
    monkeypatch.chdir(work)
    return project_runner(work)


@pytest.fixture(scope="session")
def lifecycle(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., dict]:
    """``kedro run`` (the default pipeline) once per test session, with tiny parameters,
    in a project copy (``lifecycle.work``); the lifecycle and browser tests share it.
    Calling it runs more pipelines there (from inside ``lifecycle.work``: MLflow writes
    artifacts relative to the working directory)."""
    from tests.pipelines.test_pretrain_finetune_run import TINY  # noqa: PLC0415

    work = scratch_project(tmp_path_factory.mktemp("lifecycle") / "work")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        run = project_runner(work)
        run(None, TINY)
    return run
