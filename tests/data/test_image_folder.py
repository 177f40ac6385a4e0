import numpy as np
import pytest
from PIL import Image

from model_lifecycle.data import image_folder
from model_lifecycle.data.image_folder import load_image_folder
from model_lifecycle.errors import LifecycleError
from tests.conftest import CLASSES, make_image


def test_reads_every_image_into_one_array(image_tree):
    data = load_image_folder(image_tree, (8, 8), channels=3)
    assert data.images.shape == (30, 3, 8, 8)
    assert data.images.dtype == np.uint8
    assert data.class_names == CLASSES
    assert np.bincount(data.labels).tolist() == [10, 10, 10]
    assert data.source_test is None


def test_pixels_match_a_direct_decode(image_tree):
    data = load_image_folder(image_tree, (8, 8), channels=1)
    with Image.open(image_tree / "dog" / "00.png") as image:
        expected = np.asarray(image.convert("L").resize((8, 8), Image.Resampling.BILINEAR))
    first_dog = int(np.flatnonzero(data.labels == 1)[0])
    # ImageOps.fit crops to the target aspect before resizing: compare loosely
    assert np.abs(data.images[first_dog, 0].astype(int) - expected.astype(int)).mean() < 60
    assert data.images[first_dog].std() > 0


def test_worker_processes_give_the_same_array(image_tree, monkeypatch):
    serial = load_image_folder(image_tree, (8, 8), num_workers=1)
    monkeypatch.setattr(image_folder, "_SERIAL_BELOW", 0)
    monkeypatch.setattr(image_folder, "_CHUNK", 7)
    parallel = load_image_folder(image_tree, (8, 8), num_workers=2)
    np.testing.assert_array_equal(serial.images, parallel.images)
    np.testing.assert_array_equal(serial.labels, parallel.labels)


def test_train_test_layout_marks_the_source_test_split(image_tree, tmp_path):
    root = tmp_path / "split"
    root.mkdir()
    image_tree.rename(root / "train")
    for name in CLASSES[:2]:
        (root / "test" / name).mkdir(parents=True)
        make_image("RGB", (9, 9), 7).save(root / "test" / name / "t.png")
    data = load_image_folder(root, (8, 8))
    assert len(data) == 32
    assert data.source_test.sum() == 2
    assert sorted(data.labels[data.source_test].tolist()) == [0, 1]


def test_corrupt_image_names_the_file(image_tree):
    (image_tree / "cat" / "04.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(LifecycleError, match=r"cat/04.png.*on_bad_image: skip"):
        load_image_folder(image_tree, (8, 8))


def test_truncated_jpeg_names_the_file(image_tree):
    good = (image_tree / "fox" / "01.jpg").read_bytes()
    (image_tree / "fox" / "01.jpg").write_bytes(good[: len(good) // 2])
    with pytest.raises(LifecycleError, match=r"fox/01.jpg"):
        load_image_folder(image_tree, (8, 8))


def test_an_image_format_it_cannot_read_names_the_file(image_tree):
    (image_tree / "dog" / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    with pytest.raises(LifecycleError, match=r"dog/photo.heic \(not an image format ingest "
                       r"reads \(expected .*\): convert it or leave it out\)"):
        load_image_folder(image_tree, (8, 8))


def test_a_gif_and_a_jfif_are_read_as_inference_reads_them(image_tree):
    make_image("RGB", (9, 9), 0).save(image_tree / "dog" / "clip.gif")
    make_image("RGB", (9, 9), 1).save(image_tree / "cat" / "photo.jfif", format="JPEG")
    assert len(load_image_folder(image_tree, (8, 8))) == 32


def test_files_that_are_never_images_are_left_out_with_a_log_line(image_tree, caplog):
    """What operating systems and people leave in photo folders stops nothing."""
    for name in ("Thumbs.db", "desktop.ini", "README.txt", "labels.csv"):
        (image_tree / "dog" / name).write_text("not an image")
    (image_tree / "cat" / ".DS_Store").write_text("hidden")
    with caplog.at_level("INFO"):
        data = load_image_folder(image_tree, (8, 8))
    assert len(data) == 30 and not data.skipped
    assert "Left out 4 file(s) that are not images" in caplog.text


def test_skip_counts_and_reports_bad_files(image_tree):
    (image_tree / "cat" / "04.png").write_bytes(b"garbage")
    (image_tree / "dog" / "photo").write_text("no extension: maybe an image, not readable")
    (image_tree / ".DS_Store").write_text("hidden files are ignored")
    data = load_image_folder(image_tree, (8, 8), on_bad_image="skip")
    assert len(data) == 29  # 04.png replaced by garbage; photo (no suffix) unreadable
    assert len(data.skipped) == 2
    assert any("cat/04.png" in item for item in data.skipped)
    assert np.bincount(data.labels).tolist() == [9, 10, 10]


def test_images_in_sub_folders_belong_to_their_class_folder(image_tree, caplog):
    (image_tree / "fox" / "2019" / "june").mkdir(parents=True)
    for i in range(3):
        make_image("RGB", (9, 9), 50 + i).save(image_tree / "fox" / "2019" / "june" / f"{i}.png")
    # a class whose images all sit one level down is a class, not an empty folder
    (image_tree / "owl" / "batch1").mkdir(parents=True)
    make_image("RGB", (9, 9), 60).save(image_tree / "owl" / "batch1" / "o.png")
    with caplog.at_level("INFO"):
        data = load_image_folder(image_tree, (8, 8))
    assert data.class_names == (*CLASSES, "owl")
    assert np.bincount(data.labels).tolist() == [10, 10, 13, 1]
    assert "4 image file(s) in sub-folders of class folders" in caplog.text


def test_a_data_set_one_folder_too_deep_says_where_to_point(image_tree, tmp_path):
    root = tmp_path / "unzipped"
    root.mkdir()
    image_tree.rename(root / "images")
    with pytest.raises(LifecycleError, match=r"unzipped holds one folder, images, which holds "
                       r"the folders cat, dog, fox: if those are your classes, point "
                       r"ingest.path at .*unzipped/images\.$"):
        load_image_folder(root, (8, 8))


def test_a_validation_folder_joins_the_training_images(image_tree, tmp_path):
    root = tmp_path / "split"
    root.mkdir()
    image_tree.rename(root / "train")
    for split in ("valid", "test"):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            make_image("RGB", (9, 9), 7).save(root / split / name / f"{split}.png")
    data = load_image_folder(root, (8, 8))
    assert len(data) == 36
    assert data.source_test.sum() == 3  # only test/ is the source's test split


def test_class_names_match_whatever_their_unicode_form(image_tree, tmp_path):
    root = tmp_path / "split"
    root.mkdir()
    (root / "train").mkdir()
    for name, target in (("cafe\u0301", "train"), ("tea", "train")):  # decomposed é
        (root / target / name).mkdir()
        make_image("RGB", (9, 9), 1).save(root / target / name / "a.png")
    (root / "test" / "caf\u00e9").mkdir(parents=True)  # composed é
    make_image("RGB", (9, 9), 2).save(root / "test" / "caf\u00e9" / "b.png")
    data = load_image_folder(root, (8, 8))
    assert data.class_names == ("caf\u00e9", "tea")
    assert data.labels[data.source_test].tolist() == [0]


def test_a_link_to_nothing_is_a_bad_image_not_a_silent_gap(image_tree):
    (image_tree / "dog" / "gone.png").symlink_to(image_tree / "nowhere.png")
    with pytest.raises(LifecycleError, match=r"dog/gone.png"):
        load_image_folder(image_tree, (8, 8))
    assert len(load_image_folder(image_tree, (8, 8), on_bad_image="skip").skipped) == 1


@pytest.mark.parametrize(
    ("setup", "pattern"),
    [
        (lambda root: None, r"holds no class folders"),
        (lambda root: (root / "only").mkdir() or make_image("RGB", (4, 4), 0).save(
            root / "only" / "a.png"), r"single class \('only'\)"),
        (lambda root: [(root / n).mkdir() for n in ("a", "b")] and make_image(
            "RGB", (4, 4), 0).save(root / "a" / "x.png"), r"Class folder .*/b holds no image"),
        (lambda root: [(root / n).mkdir() for n in ("a", "b")] and make_image(
            "RGB", (4, 4), 0).save(root / "loose.png"), r"loose.png is not inside a class folder"),
    ],
    ids=["empty", "single-class", "empty-class", "loose-image"],
)
def test_bad_layouts_are_one_sentence(tmp_path, setup, pattern):
    root = tmp_path / "root"
    root.mkdir()
    setup(root)
    with pytest.raises(LifecycleError, match=pattern):
        load_image_folder(root, (8, 8))


def test_missing_path(tmp_path):
    with pytest.raises(LifecycleError, match=r"ingest.path .*/nowhere is not a folder"):
        load_image_folder(tmp_path / "nowhere", (8, 8))


def test_test_class_without_training_folder(image_tree, tmp_path):
    root = tmp_path / "split"
    root.mkdir()
    image_tree.rename(root / "train")
    (root / "test" / "wolf").mkdir(parents=True)
    make_image("RGB", (4, 4), 0).save(root / "test" / "wolf" / "w.png")
    with pytest.raises(LifecycleError, match=r"test/wolf has no matching folder"):
        load_image_folder(root, (8, 8))


def test_a_lone_train_folder_is_a_split_layout_without_test(image_tree, tmp_path):
    root = tmp_path / "only-train"
    root.mkdir()
    image_tree.rename(root / "train")
    data = load_image_folder(root, (8, 8))
    assert data.class_names == CLASSES
    assert data.source_test is None


@pytest.mark.parametrize(("train", "test"), [("Training", "Testing"), ("Train", "Test"),
                                             ("training_set", "test_set")])
def test_split_folders_are_known_under_the_names_data_sets_ship(image_tree, tmp_path,
                                                                  train, test):
    root = tmp_path / "kaggle"
    root.mkdir()
    image_tree.rename(root / train)
    for name in CLASSES:
        (root / test / name).mkdir(parents=True)
        make_image("RGB", (9, 9), 7).save(root / test / name / "t.png")
    data = load_image_folder(root, (8, 8))
    assert data.class_names == CLASSES  # not (test, train): those are the splits
    assert data.source_test.sum() == 3


def test_a_split_folder_beside_other_folders_is_refused(image_tree, tmp_path):
    """Kaggle's dogs-vs-cats ships train/ beside test1/: read as two classes, a model
    would learn which folder an image came from."""
    root = tmp_path / "dogs-vs-cats"
    root.mkdir()
    image_tree.rename(root / "train")
    (root / "test1").mkdir()
    make_image("RGB", (9, 9), 7).save(root / "test1" / "1.png")
    with pytest.raises(LifecycleError, match=r"holds the split folder\(s\) 'train' beside "
                       r"'test1', which is not a split name: lay the images out as "):
        load_image_folder(root, (8, 8))


def test_folders_that_look_like_unnamed_splits_are_warned_of(image_tree, tmp_path, caplog):
    root = tmp_path / "folds"
    root.mkdir()
    for fold in ("fold1", "fold2"):
        for name in CLASSES:
            (root / fold / name).mkdir(parents=True)
            make_image("RGB", (9, 9), 7).save(root / fold / name / "a.png")
    with caplog.at_level("WARNING"):
        data = load_image_folder(root, (8, 8))
    assert data.class_names == ("fold1", "fold2")
    assert "each hold the same folders (cat, dog, fox)" in caplog.text
    assert "name them train, val and test" in caplog.text


def test_a_macos_archive_folder_is_left_out(image_tree):
    (image_tree / "__MACOSX" / "cat").mkdir(parents=True)
    (image_tree / "__MACOSX" / "cat" / "._01.png").write_bytes(b"\x00\x05\x16\x07")
    (image_tree / "cat" / "__MACOSX").mkdir()
    (image_tree / "cat" / "__MACOSX" / "x.png").write_bytes(b"resource fork")
    data = load_image_folder(image_tree, (8, 8))
    assert data.class_names == CLASSES and len(data) == 30


def test_an_archive_is_told_to_be_extracted(tmp_path):
    archive = tmp_path / "flowers.zip"
    archive.write_bytes(b"PK\x03\x04")
    with pytest.raises(LifecycleError, match=r"flowers.zip is an archive: extract it"):
        load_image_folder(archive, (8, 8))


def test_every_bad_file_is_counted_in_one_sentence(image_tree):
    for name in ("cat/01.jpg", "dog/02.png", "fox/03.png", "fox/05.jpg"):
        (image_tree / name).write_bytes(b"not an image")
    with pytest.raises(LifecycleError, match=r"^Cannot read 4 of the 30 image files: "
                       r".*cat/01.jpg \(.*\); .*dog/02.png \(.*\); .*fox/03.png \(.*\), and 1 "
                       r"more: replace or delete them, or set ingest.on_bad_image: skip"):
        load_image_folder(image_tree, (8, 8))


@pytest.mark.parametrize("names", [("bus", "car", "train", "truck"), ("invalid", "valid"),
                                   ("control", "test")])
def test_classes_named_like_a_split_are_classes(tmp_path, names, caplog):
    """A vehicle set has a class `train`, a document set `valid` and `invalid`: their
    folders hold images, so they are classes (with a warning), not splits."""
    root = tmp_path / "classes"
    for i, name in enumerate(names):
        (root / name).mkdir(parents=True)
        make_image("RGB", (9, 9), i).save(root / name / "a.png")
    with caplog.at_level("WARNING"):
        data = load_image_folder(root, (8, 8))
    assert data.class_names == tuple(sorted(names))
    assert "named like a split of a data set, are read as classes" in caplog.text


def test_dogs_vs_cats_as_it_ships_is_warned_of(tmp_path, caplog):
    """train/cat.0.jpg … beside test1/1.jpg: labels in file names, which ingest does not
    read: two classes, `test1` and `train`, with a warning saying what a split is."""
    root = tmp_path / "dogs-vs-cats"
    for folder, name in (("train", "cat.0.png"), ("train", "dog.0.png"), ("test1", "1.png")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        make_image("RGB", (9, 9), 0).save(root / folder / name)
    with caplog.at_level("WARNING"):
        load_image_folder(root, (8, 8))
    assert "the folder(s) train, named like a split" in caplog.text


def test_a_bad_image_stops_decoding_at_its_chunk(image_tree, monkeypatch):
    """One corrupt file early in a large folder: the run stops there, not after decoding
    every other image, and says how far it read."""
    monkeypatch.setattr(image_folder, "_CHUNK", 10)
    for name in ("cat/01.jpg", "fox/05.jpg"):
        (image_tree / name).write_bytes(b"not an image")
    with pytest.raises(LifecycleError, match=r"^Cannot read 1 of the first 10 of 30 image "
                       r"files \(the rest not read yet\): .*cat/01.jpg \(.*\): replace or "
                       r"delete them"):
        load_image_folder(image_tree, (8, 8))
