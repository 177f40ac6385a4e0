"""A data set does not have to fit in memory: ingest, save, load, a training epoch and an
evaluation on a memory-mapped ``images`` keep the peak RSS far below the pixels' size."""

import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

BATCH = 12_000  # images per CIFAR batch: 6 batches, 72,000 images, 221 MB of pixels
PIXEL_BYTES = 6 * BATCH * 3072

CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    from kedro.io.core import Version
    from model_lifecycle.data.cifar10 import load_cifar10
    from model_lifecycle.data.config import SplitFractions
    from model_lifecycle.data.splits import checked_splits, make_splits
    from model_lifecycle.io import ImageSetDataset
    from model_lifecycle.models.predict import predict
    from model_lifecycle.training.data import BatchStream

    import threading
    import time

    def anonymous():  # bytes of anonymous memory (the page cache of a mapped file is not)
        with open("/proc/self/status") as status:
            line = next(l for l in status if l.startswith("RssAnon:"))
        return int(line.split()[1]) * 1024

    def sample(peak):  # the kernel keeps no anonymous peak: sample it every 2 ms
        while True:
            peak[0] = max(peak[0], anonymous())
            time.sleep(0.002)

    source, target, in_memory_below = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 10))
    # torch maps its kernels in at first use: warm them up, then watch the growth
    predict(model, torch.zeros((600, 3, 32, 32), dtype=torch.uint8).numpy(), np.arange(600))
    start = anonymous()
    peak = [start]
    threading.Thread(target=sample, args=(peak,), daemon=True).start()
    images = load_cifar10(source, (32, 32), in_memory_below=in_memory_below)
    splits = make_splits(images, SplitFractions(), labeled_fraction=1.0, seed=0)
    ImageSetDataset(filepath=target, version=Version(None, None)).save(images)
    del images
    images = ImageSetDataset(filepath=target, version=Version(None, None),
                             in_memory_below=in_memory_below).load()
    splits = checked_splits(images, splits)
    assert isinstance(images.images, np.memmap) == (in_memory_below == 0)
    stream = BatchStream(images.images, images.labels, splits["train_labeled"],
                         batch_size=512, augment=None)
    seen = sum(len(labels) for _views, labels in stream.epoch(0))
    assert seen == len(stream) * 512 > len(splits["train_labeled"]) - 512, seen
    logits = predict(model, images.images, splits["test"])
    assert logits.shape == (len(splits["test"]), 10)
    time.sleep(0.01)
    print(peak[0] - start)  # the slice's own peak above where it started
""")


def _peak_growth(*args: str) -> int:
    """Run CHILD in a fresh process; the bytes its anonymous memory grew by at its peak
    (sampled every 2 ms: an array of the pixels' size lives far longer than that)."""
    done = subprocess.run([sys.executable, "-c", CHILD, *args], check=True,
                          capture_output=True, text=True)
    return int(done.stdout.split()[-1])


@pytest.fixture(scope="module")
def cifar_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        batch = {b"data": rng.integers(0, 256, (BATCH, 3072), dtype=np.uint8),
                 b"labels": [int(label) for label in (np.arange(BATCH) + i) % 10]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=4))
    return folder


@pytest.mark.skipif(sys.platform != "linux", reason="RssAnon of /proc/self/status: Linux")
def test_a_memory_mapped_pipeline_slice_stays_far_below_the_size_of_its_pixels(
        cifar_folder, tmp_path):
    mapped = _peak_growth(str(cifar_folder), str(tmp_path / "mapped.npz"), "0")
    in_memory = _peak_growth(str(cifar_folder), str(tmp_path / "memory.npz"), str(2**40))
    # the same slice with the pixels in memory holds them all: the measure can fail
    assert in_memory > PIXEL_BYTES, in_memory
    # mapped, ingest holds a few CIFAR batch files' worth at once (one is a sixth of the
    # pixels: the pickle, its array, a chunk), never the whole set
    bound = 4 * PIXEL_BYTES / 6
    assert mapped < bound, (
        f"the memory-mapped slice grew by {mapped / 2**20:.0f} MiB at its peak, over "
        f"{bound / 2**20:.0f} MiB (4 of its 6 batch files; in memory: "
        f"{in_memory / 2**20:.0f} MiB)")
