"""pipeline.data: formats, cache, splits, augmentation and the errors for bad data sets."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import data
from pipeline.data import MEAN, STD, Split, batches, load_data, random_crop_flip, to_tensor_batch
from pipeline.errors import DataError

CLASSES = ["cat", "dog", "frog"]


# --------------------------------------------------------------------------------------------
# Builders for small data sets in the accepted formats


def _images(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)


def _write_cifar_batches(folder: Path, per_batch: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A cifar-10-batches-py folder in the official layout (planar rows, bytes keys, protocol 2)."""
    folder.mkdir(parents=True)
    train_images, train_labels = [], []
    for index, name in enumerate([*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]):
        images = _images(per_batch, seed=index)
        labels = [i % len(CLASSES) for i in range(per_batch)]
        planar = images.transpose(0, 3, 1, 2).reshape(per_batch, -1)
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": planar,
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        if name == "test_batch":
            test_images, test_labels = images, np.array(labels)
        else:
            train_images.append(images)
            train_labels.extend(labels)
    meta = {b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return np.concatenate(train_images), np.array(train_labels), test_images, test_labels


def _write_image_tree(root: Path, per_class: int = 4, classes: list[str] = CLASSES) -> None:
    for split in ("train", "test"):
        for label, cls in enumerate(classes):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(_images(1, seed=label * 100 + i)[0]).save(folder / f"{i}.png")


def _tar(source: Path, target: Path, arcname: str) -> Path:
    with tarfile.open(target, "w:gz") as archive:
        archive.add(source, arcname=arcname)
    return target


# --------------------------------------------------------------------------------------------
# The shared mini sets


@pytest.mark.parametrize("fixture", ["mini_data", "jpeg_mini_data"])  # binary version, image-folder tree
def test_mini_set_splits_are_stratified_and_cached(fixture: str, request, tmp_path: Path, monkeypatch) -> None:
    mini_data = request.getfixturevalue(fixture)
    splits = load_data(mini_data, tmp_path, val_fraction=0.1, seed=0)
    classes = splits.classes
    assert classes == sorted(classes) and len(classes) == 10
    total_train = len(splits.train) + len(splits.val)
    assert len(splits.val) == round(total_train * 0.1)
    per_class_val = np.bincount(splits.val.labels, minlength=len(classes))
    assert (per_class_val == len(splits.val) // len(classes)).all()
    assert np.bincount(splits.test.labels).tolist() == [len(splits.test) // len(classes)] * len(classes)
    assert splits.train.images.shape[1:] == (32, 32, 3) and splits.train.images.dtype == np.uint8
    assert splits.train.labels.dtype == np.int64

    # Second load comes from the cache: decoding again would fail.
    monkeypatch.setattr(data, "_decode", lambda path: pytest.fail("decoded twice"))
    again = load_data(mini_data, tmp_path, val_fraction=0.1, seed=0)
    assert np.array_equal(again.val.images, splits.val.images)
    assert np.array_equal(again.train.labels, splits.train.labels)
    other_seed = load_data(mini_data, tmp_path, val_fraction=0.1, seed=1)
    assert not np.array_equal(other_seed.val.images, splits.val.images)
    assert np.array_equal(other_seed.test.images, splits.test.images)


def test_subset_keeps_a_stratified_prefix_and_leaves_val_alone(mini_data: Path, cache_dir: Path) -> None:
    full = load_data(mini_data, cache_dir)
    small = load_data(mini_data, cache_dir, subset=50)
    num_classes = len(full.classes)
    assert len(small.train) == 50
    counts = np.bincount(small.train.labels, minlength=num_classes)
    assert counts.max() - counts.min() <= 1
    assert np.array_equal(small.train.images, full.train.images[:50])
    assert np.array_equal(small.val.labels, full.val.labels)
    assert len(small.test) == len(full.test)


@pytest.mark.parametrize("val_fraction, subset", [(1.0, None), (-0.1, None), (0.1, 0)])
def test_bad_split_arguments_are_user_errors(mini_data: Path, cache_dir: Path, val_fraction, subset) -> None:
    with pytest.raises(DataError, match="val_fraction|subset"):
        load_data(mini_data, cache_dir, val_fraction=val_fraction, subset=subset)


# --------------------------------------------------------------------------------------------
# CIFAR python batches


@pytest.mark.parametrize("form", ["batches_folder", "parent_folder", "official_tar"])
def test_cifar_python_batches_decode_to_nhwc(tmp_path: Path, form: str) -> None:
    batches_dir = tmp_path / "src" / "cifar-10-batches-py"
    train_images, train_labels, test_images, test_labels = _write_cifar_batches(batches_dir)
    source = {
        "batches_folder": batches_dir,
        "parent_folder": batches_dir.parent,
        "official_tar": _tar(batches_dir, tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py"),
    }[form]
    splits = load_data(source, tmp_path / "cache", val_fraction=0.0)
    assert splits.classes == CLASSES
    assert np.array_equal(splits.test.images, test_images)
    assert np.array_equal(splits.test.labels, test_labels)
    # Train comes back in class-interleaved order: compare as sets of (image, label) pairs.
    expected = sorted(zip(map(bytes, train_images), train_labels.tolist()))
    assert sorted(zip(map(bytes, splits.train.images), splits.train.labels.tolist())) == expected
    assert len(splits.val) == 0


class _Payload:
    """Unpickling this runs a command: the loader must refuse it before it runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_batches_refuse_anything_but_numpy(tmp_path: Path) -> None:
    batches_dir = tmp_path / "cifar-10-batches-py"
    _write_cifar_batches(batches_dir)
    marker = tmp_path / "pwned"
    (batches_dir / "data_batch_3").write_bytes(pickle.dumps({b"data": _Payload(marker)}, protocol=2))
    with pytest.raises(DataError, match="data_batch_3.*refusing"):
        load_data(batches_dir, tmp_path / "cache")
    assert not marker.exists()


def test_cifar_batch_with_wrong_shape_is_a_data_error(tmp_path: Path) -> None:
    batches_dir = tmp_path / "cifar-10-batches-py"
    _write_cifar_batches(batches_dir)
    bad = {b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 0]}
    (batches_dir / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match=r"test_batch needs b'data' uint8 N x 3072 \(N > 0\)"):
        load_data(batches_dir, tmp_path / "cache")


# --------------------------------------------------------------------------------------------
# CIFAR binary version

#: (folder, train files, test files, class-names file, label bytes) of the two official layouts.
BINARY = {
    "cifar10": ("cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)], ["test_batch.bin"],
                "batches.meta.txt", 1),
    "cifar100": ("cifar-100-binary", ["train.bin"], ["test.bin"], "fine_label_names.txt", 2),
}
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _write_binary_set(parent: Path, kind: str, per_file: int = 9) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """An official binary layout under ``parent``; returns {split: (NHWC images, labels)}."""
    folder_name, train, test, names_file, label_bytes = BINARY[kind]
    folder = parent / folder_name
    folder.mkdir(parents=True)
    # Class names in an order that is not sorted: labels must follow the file, not the alphabet.
    (folder / names_file).write_text("\n".join(reversed(CLASSES)) + "\n\n\n")
    expected = {}
    for split, files in (("train", train), ("test", test)):
        images_all, labels_all = [], []
        for index, name in enumerate(files):
            images = _images(per_file, seed=len(images_all) + 10 * (split == "test") + index)
            labels = np.arange(per_file) % len(CLASSES)
            header = np.stack([labels + 7, labels], axis=1)[:, -label_bytes:]  # CIFAR-100: coarse, fine
            planar = images.transpose(0, 3, 1, 2).reshape(per_file, -1)
            (folder / name).write_bytes(np.concatenate([header, planar], axis=1).astype(np.uint8).tobytes())
            images_all.append(images)
            labels_all.append(labels)
        expected[split] = (np.concatenate(images_all), np.concatenate(labels_all))
    return expected


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
@pytest.mark.parametrize("form", ["set_folder", "parent_folder", "tar"])
def test_cifar_binary_version_decodes_to_nhwc(tmp_path: Path, kind: str, form: str) -> None:
    expected = _write_binary_set(tmp_path / "src", kind)
    folder = tmp_path / "src" / BINARY[kind][0]
    source = {"set_folder": folder, "parent_folder": folder.parent,
              "tar": _tar(folder, tmp_path / f"{kind}-binary.tar.gz", folder.name)}[form]
    splits = load_data(source, tmp_path / "cache", val_fraction=0.0)
    assert splits.classes == list(reversed(CLASSES))
    test_images, test_labels = expected["test"]
    assert len(splits.test) == len(test_labels)
    # Splits come back class-interleaved: compare as sets of (image, label) pairs.
    for split, got in (("train", splits.train), ("test", splits.test)):
        images, labels = expected[split]
        assert sorted(zip(map(bytes, got.images), got.labels.tolist())) == sorted(
            zip(map(bytes, images), labels.tolist()))


def test_shared_binary_mini_set_reads_in_label_order(shared_dir: Path, tmp_path: Path, monkeypatch) -> None:
    source = shared_dir / "data" / "cifar-10-binary-mini.tar.gz"
    splits = load_data(source, tmp_path, val_fraction=0.1)
    assert splits.classes == CIFAR10_NAMES
    assert len(splits.train) + len(splits.val) == 400 * 5 and len(splits.test) == 1000
    assert np.bincount(splits.test.labels).tolist() == [100] * 10
    assert np.bincount(np.concatenate([splits.train.labels, splits.val.labels])).tolist() == [200] * 10
    # The first test record, decoded by hand: its label and its planar pixels.
    with tarfile.open(source) as archive:
        record = archive.extractfile("cifar-10-batches-bin/test_batch.bin").read(3073)
    first = np.frombuffer(record[1:], np.uint8).reshape(3, 32, 32).transpose(1, 2, 0)
    assert any(np.array_equal(image, first) for image in splits.test.images[splits.test.labels == record[0]])
    monkeypatch.setattr(data, "_decode", lambda path: pytest.fail("decoded twice"))
    assert np.array_equal(load_data(source, tmp_path, val_fraction=0.1).test.images, splits.test.images)


def _binary_folder(tmp_path: Path) -> Path:
    _write_binary_set(tmp_path, "cifar10")
    return tmp_path / "cifar-10-batches-bin"


def _make_binary_truncated(tmp_path: Path) -> Path:
    folder = _binary_folder(tmp_path)
    blob = (folder / "data_batch_2.bin").read_bytes()
    (folder / "data_batch_2.bin").write_bytes(blob[:-1])
    return folder


def _make_binary_empty(tmp_path: Path) -> Path:
    folder = _binary_folder(tmp_path)
    (folder / "test_batch.bin").write_bytes(b"")
    return folder


def _make_binary_bad_label(tmp_path: Path) -> Path:
    folder = _binary_folder(tmp_path)
    blob = bytearray((folder / "test_batch.bin").read_bytes())
    blob[4 * 3073] = 3  # three class names: labels 0..2
    (folder / "test_batch.bin").write_bytes(bytes(blob))
    return _tar(folder, tmp_path / "bad-label.tar.gz", folder.name)


def _make_binary_missing(tmp_path: Path) -> Path:
    folder = _binary_folder(tmp_path)
    (folder / "data_batch_3.bin").unlink()
    return _tar(folder, tmp_path / "missing.tar.gz", folder.name)


def _make_binary_no_names(tmp_path: Path) -> Path:
    folder = _binary_folder(tmp_path)
    (folder / "batches.meta.txt").write_text("\n\n")
    return folder


@pytest.mark.parametrize("make, message", [
    (_make_binary_truncated, r"data_batch_2.bin holds 27,656 bytes, not a whole number of 3,073-byte records"),
    (_make_binary_empty, r"test_batch.bin holds 0 bytes, not a whole number of 3,073-byte records"),
    (_make_binary_bad_label, r"bad-label.tar.gz: test_batch.bin record 4 has label 3, outside 0..2 "
                             r"\(batches.meta.txt names 3 classes\)"),
    (_make_binary_missing, r"missing.tar.gz: cifar-10-batches-bin/data_batch_3.bin missing from the "
                           r"cifar-10-batches-bin set: restore"),
    (_make_binary_no_names, r"batches.meta.txt must hold the class names"),
])
def test_bad_binary_sets_give_one_line_errors(tmp_path: Path, make, message: str) -> None:
    source = make(tmp_path)
    with pytest.raises(DataError, match=message) as error:
        load_data(source, tmp_path / "cache")
    assert "\n" not in str(error.value)
    assert not list((tmp_path / "cache").glob("data/*/classes.json"))  # nothing half-written


# --------------------------------------------------------------------------------------------
# Image-folder trees


def test_image_tree_in_wrapped_tar_with_odd_images(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    _write_image_tree(tree)
    Image.new("L", (48, 40), color=200).save(tree / "train" / "dog" / "big_gray.png")
    (tree / "train" / "dog" / ".DS_Store").write_bytes(b"not an image")
    archive = _tar(tree, tmp_path / "tree.tgz", "wrapper")
    splits = load_data(archive, tmp_path / "cache", val_fraction=0.0)
    assert splits.classes == CLASSES
    assert len(splits.train) == 3 * 4 + 1 and len(splits.test) == 3 * 4
    gray = splits.train.images[splits.train.labels == CLASSES.index("dog")]
    assert any((image == 200).all() for image in gray)  # resized to 32x32, converted to RGB
    folder = load_data(tree, tmp_path / "cache", val_fraction=0.0)
    assert np.array_equal(np.sort(folder.test.images, axis=0), np.sort(splits.test.images, axis=0))


def test_parallel_decoding_matches_serial(tmp_path: Path, monkeypatch) -> None:
    tree = tmp_path / "tree"
    _write_image_tree(tree)
    serial = load_data(tree, tmp_path / "serial", val_fraction=0.0)
    monkeypatch.setattr(data, "_PARALLEL_MIN_IMAGES", 0)
    parallel = load_data(tree, tmp_path / "parallel", val_fraction=0.0)
    assert np.array_equal(parallel.train.images, serial.train.images)
    assert np.array_equal(parallel.test.labels, serial.test.labels)
    (tree / "test" / "dog" / "bad.png").write_bytes(b"PNG? no")
    with pytest.raises(DataError, match="test/dog/bad.png: unreadable image"):
        load_data(tree, tmp_path / "parallel")


def test_changed_source_is_decoded_again(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    _write_image_tree(tree)
    assert len(load_data(tree, tmp_path / "cache").test) == 12
    Image.fromarray(_images(1, seed=7)[0]).save(tree / "test" / "cat" / "extra.png")
    assert len(load_data(tree, tmp_path / "cache").test) == 13


def _make_missing(tmp_path: Path) -> Path:
    return tmp_path / "nowhere"


def _make_no_layout(tmp_path: Path) -> Path:
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "images" / "a.png").write_bytes(b"x")
    return tmp_path / "d"


def _make_empty_class(tmp_path: Path) -> Path:
    _write_image_tree(tmp_path / "t")
    for file in (tmp_path / "t" / "test" / "frog").iterdir():
        file.unlink()
    return tmp_path / "t"


def _make_unreadable(tmp_path: Path) -> Path:
    _write_image_tree(tmp_path / "t")
    (tmp_path / "t" / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    return _tar(tmp_path / "t", tmp_path / "t.tar.gz", ".")


def _make_not_tar(tmp_path: Path) -> Path:
    (tmp_path / "data.tar.gz").write_text("hello")
    return tmp_path / "data.tar.gz"


def _make_class_mismatch(tmp_path: Path) -> Path:
    _write_image_tree(tmp_path / "t")
    (tmp_path / "t" / "test" / "frog").rename(tmp_path / "t" / "test" / "toad")
    return tmp_path / "t"


@pytest.mark.parametrize("make, message", [
    (_make_missing, r"nowhere: data set not found: expected"),
    (_make_no_layout, r"/d: no CIFAR batches and no train/ \+ test/ class folders"),
    (_make_empty_class, r"empty class folder\(s\) test/\['frog'\]"),
    (_make_unreadable, r"t.tar.gz: .*train/cat/broken.jpg: unreadable image"),
    (_make_not_tar, r"data.tar.gz: not a tar archive"),
    (_make_class_mismatch, r"only in train: \['frog'\], only in test: \['toad'\]"),
])
def test_bad_data_sets_give_one_line_errors(tmp_path: Path, make, message: str) -> None:
    source = make(tmp_path)
    with pytest.raises(DataError, match=message) as error:
        load_data(source, tmp_path / "cache")
    assert "\n" not in str(error.value)
    assert not list((tmp_path / "cache").glob("data/*/classes.json"))  # nothing half-written


# --------------------------------------------------------------------------------------------
# Bounded probe: no source makes the loader hang or walk an unrelated folder

REPO = Path(__file__).resolve().parent.parent


def _fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "pipe")
    return tmp_path / "pipe"


@pytest.mark.parametrize("make, kind", [(lambda tmp_path: Path("/dev/zero"), "character device"),
                                        (_fifo, r"FIFO \(named pipe\)")])
def test_run_refuses_a_device_or_pipe_as_data_at_once(tmp_path: Path, make, kind: str) -> None:
    source = make(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGEPRUNE_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "edgeprune", "run", "--schedule", str(REPO / "schedules" / "resnet20_filter_rank.yaml"),
         "--model", "resnet20_cifar", "--data", str(source), "--out", str(tmp_path / "out")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert errors == done.stderr.splitlines() and not done.stdout  # no banner before it
    assert re.search(rf"{re.escape(str(source))} is a {kind}, not a data set file or folder", errors[0])


def test_a_folder_that_is_no_data_set_is_refused_without_walking_it(tmp_path: Path, monkeypatch) -> None:
    deep = tmp_path / "home" / "projects" / "photos"
    deep.mkdir(parents=True)
    (deep / "a.png").write_bytes(b"x")
    monkeypatch.setattr(Path, "rglob", lambda *args: pytest.fail("walked the whole folder"))
    with pytest.raises(DataError, match=r"/home: no CIFAR batches and no train/ \+ test/ class folders"):
        load_data(tmp_path / "home", tmp_path / "cache")


def test_a_data_set_with_another_class_count_than_the_network_is_one_line(tmp_path: Path) -> None:
    _write_image_tree(tmp_path / "three")  # 3 classes; the pretrained ResNet20 has a 10-class head
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGEPRUNE_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "edgeprune", "run", "--schedule", str(REPO / "schedules" / "resnet20_filter_rank.yaml"),
         "--model", "resnet20_cifar", "--data", str(tmp_path / "three"), "--out", str(tmp_path / "out")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert "the data set has 3 classes but checkpoint" in errors[0]
    assert "head has 10" in errors[0] and "--shortcut" not in errors[0]


# --------------------------------------------------------------------------------------------
# Tensors, batches, augmentation


def test_to_tensor_batch_normalises_to_nchw() -> None:
    mean_pixel = np.round(np.array(MEAN) * 255).astype(np.uint8)
    images = np.zeros((2, 32, 32, 3), np.uint8)
    images[0] = mean_pixel
    images[1] = 255
    tensor = to_tensor_batch(images)
    assert tensor.shape == (2, 3, 32, 32) and tensor.dtype == np.float32
    assert np.abs(tensor[0]).max() < 0.5 / 255 / min(STD)
    expected_white = (1 - np.array(MEAN)) / np.array(STD)
    assert np.allclose(tensor[1, :, 5, 7], expected_white, atol=1e-5)


def test_batches_cover_the_split_once() -> None:
    split = Split(_images(10, seed=1), np.arange(10, dtype=np.int64), "t")
    shuffled = list(batches(split, 4, shuffle=True, seed=3))
    assert [len(labels) for _, labels in shuffled] == [4, 4, 2]
    labels = np.concatenate([labels.numpy() for _, labels in shuffled])
    assert sorted(labels) == list(range(10)) and labels.tolist() != list(range(10))
    images = np.concatenate([x.numpy() for x, _ in shuffled])
    assert np.allclose(images, to_tensor_batch(split.images[labels]))


def test_random_crop_flip_is_a_shifted_or_mirrored_window() -> None:
    images = _images(16, seed=2)
    out = random_crop_flip(images, np.random.default_rng(0))
    assert out.shape == images.shape and out.dtype == np.uint8
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
    flipped = 0
    for original, crop in zip(padded, out):
        windows = [(original[t:t + 32, l:l + 32], f) for t in range(9) for l in range(9) for f in (False, True)]
        matches = [f for window, f in windows if np.array_equal(window[:, ::-1] if f else window, crop)]
        assert matches, "crop is not a window of the padded image"
        flipped += matches[0]
    assert 0 < flipped < len(images)


def test_every_split_prefix_is_stratified(mini_data, cache_dir) -> None:
    from pipeline.data import load_data

    data = load_data(mini_data, cache_dir)
    classes = len(data.classes)
    for name in ("train", "val", "test"):
        head = data.split(name, 3 * classes)
        counts = np.bincount(head.labels, minlength=classes)
        assert counts.min() == counts.max() == 3, (name, counts)
    assert len(data.test) == 1000 and np.bincount(data.test.labels).tolist() == [100] * classes
