"""CIFAR-style data sets: read once, cache as .npy, split, augment and batch.

Three source formats are accepted:

* CIFAR-10 / CIFAR-100 binary version: a ``cifar-10-batches-bin`` or ``cifar-100-binary`` folder
  (or a folder holding one), or its ``.tar.gz``. Records of label byte(s) then 3,072 channel-planar
  pixel bytes; lossless, the default data set (``cifar-10-binary.tar.gz``).
* CIFAR-10 python batches: a ``cifar-10-batches-py`` folder (or a folder holding one), or the
  official ``cifar-10-python.tar.gz``. The batches are pickles; they are read with a restricted
  unpickler that only rebuilds numpy arrays, never arbitrary objects.
* Image-folder trees: ``train/<class>/*`` and ``test/<class>/*`` as a folder or a ``.tar.gz`` /
  ``.tgz`` (optionally wrapped in one top-level folder). Classes are the sorted folder names and must
  be the same in ``train`` and ``test``. Images that are not 32x32 RGB are converted to RGB and
  resized to 32x32 (bilinear, aspect ratio not kept).

The decoded set is stored under ``<cache_dir>/data/<key>/`` as uint8 NHWC images, int64 labels and
``classes.json``; the key covers the source's resolved path, size and modification time and the
cache format version, so a changed source is decoded again.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import io
import json
import logging
import os
import pickle
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .errors import DataError
from .models.spec import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)

#: Per-channel mean and std of [0, 1] RGB pixels that the CIFAR ResNets expect (ImageNet's; their
#: model spec holds the same constants).
MEAN, STD = IMAGENET_MEAN, IMAGENET_STD

IMAGE_SIZE = 32
#: Bumped whenever the cache layout or decoding changes, so old caches are not reused.
CACHE_FORMAT_VERSION = 1

_SPLITS = ("train", "test")
_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_FILES = (*_CIFAR_TRAIN_BATCHES, "test_batch", "batches.meta")
_EXPECTED = (
    "expected a cifar-10-batches-bin / cifar-100-binary folder or its .tar.gz, a "
    f"{_CIFAR_FOLDER} folder, cifar-10-python.tar.gz, or an image-folder tree "
    "train/<class>/* + test/<class>/* (folder or .tar.gz)"
)
#: Below this many images a process pool costs more than it saves.
_PARALLEL_MIN_IMAGES = 4000


@dataclass
class Split:
    """Images (uint8, N x 32 x 32 x 3, RGB) and their labels (int64, N)."""

    images: np.ndarray
    labels: np.ndarray
    name: str

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, limit: int = 0) -> "Split":
        """The first ``limit`` images (all of them when ``limit`` is 0 or larger than the split)."""
        if not limit or limit >= len(self):
            return self
        return Split(self.images[:limit], self.labels[:limit], self.name)


@dataclass
class DataSplits:
    """Train (for fitting), validation (held out of train, for search decisions) and test
    (for final reporting) splits, with the class names in label order."""

    train: Split
    val: Split
    test: Split
    classes: list[str]

    def split(self, name: str, limit: int = 0) -> Split:
        """The split called ``name`` (train, val or test), cut to its first ``limit`` images."""
        if name not in ("train", "val", "test"):
            raise DataError(f"unknown split {name!r}: use train, val or test")
        return getattr(self, name).head(limit)

    def calibration_images(self, count: int = 300, seed: int = 0) -> np.ndarray:
        """A seeded random sample of the TRAIN split, normalised: INT8 calibration never sees
        the images accuracy is measured on."""
        pick = np.random.default_rng(seed).permutation(len(self.train))[:count]
        return to_tensor_batch(self.train.images[np.sort(pick)])


# --------------------------------------------------------------------------------------------
# Public entry points


def load_data(
    path: Path,
    cache_dir: Path,
    val_fraction: float = 0.1,
    subset: int | None = None,
    seed: int = 0,
) -> DataSplits:
    """Load a data set (decoding it into ``cache_dir`` the first time) and split it.

    ``val_fraction`` of train is held out as validation, stratified by class and fixed by ``seed``.
    ``subset`` keeps only the first N of the remaining train images. Every split is in
    class-interleaved order, so any prefix (``subset``, ``Split.head``, ``--eval-limit``) keeps
    every class's share; the test split keeps all its images.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction} is outside [0, 1): use e.g. 0.1")
    if subset is not None and subset < 1:
        raise DataError(f"subset={subset} must be a positive number of images, e.g. 2000")
    decoded = _load_cached(Path(path), Path(cache_dir))
    train_idx, val_idx = _stratified_split(decoded["train_labels"], val_fraction, seed)
    if subset is not None:
        train_idx = train_idx[:subset]
    return DataSplits(
        train=_take(decoded, "train", train_idx, "train"),
        val=_take(decoded, "train", val_idx, "val"),
        test=_take(decoded, "test", _interleaved(decoded["test_labels"], np.arange(len(decoded["test_labels"]))),
                   "test"),
        classes=decoded["classes"],
    )


def measured_on(source: Path, split: str, count: int | None) -> str:
    """Which images an accuracy was measured on, as shown beside it: the split, how many images and
    the data set's file name ("the test split (10,000 images) of cifar-10-binary.tar.gz")."""
    images = f" ({count:,} images)" if isinstance(count, int) else ""
    return f"the {split} split{images} of {Path(source).name}"


def to_tensor_batch(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC images -> float32 NCHW, scaled to [0, 1] and normalised with MEAN/STD."""
    return _normalise(torch.from_numpy(np.ascontiguousarray(images))).numpy()


def batches(
    split: Split,
    batch_size: int,
    shuffle: bool = False,
    augment: bool = False,
    seed: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(images, labels)`` tensors: normalised float32 NCHW and int64.

    ``shuffle`` draws a new order from ``seed``; ``augment`` applies the standard CIFAR training
    augmentation (random 32x32 crop of the image zero-padded by 4 pixels, random horizontal flip).
    The last batch may be smaller.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(split)) if shuffle else np.arange(len(split))
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        if shuffle:
            images = split.images[index]
        else:  # a plain slice avoids a copy of a contiguous range
            images = split.images[start:start + len(index)]
        if augment:
            images = random_crop_flip(images, rng)
        labels = torch.from_numpy(np.ascontiguousarray(split.labels[index]))
        yield _normalise(torch.from_numpy(np.ascontiguousarray(images))), labels


def random_crop_flip(images: np.ndarray, rng: np.random.Generator, padding: int = 4) -> np.ndarray:
    """Random ``H x W`` crops of the zero-padded uint8 NHWC batch, each flipped left-right with p=0.5."""
    count, height, width, _ = images.shape
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    top = rng.integers(0, 2 * padding + 1, size=(count,))
    left = rng.integers(0, 2 * padding + 1, size=(count,))
    rows = top[:, None] + np.arange(height)
    cols = left[:, None] + np.arange(width)
    flip = rng.random(count) < 0.5
    cols[flip] = cols[flip, ::-1]  # reading columns backwards is the horizontal flip
    return padded[np.arange(count)[:, None, None], rows[:, :, None], cols[:, None, :]]


# --------------------------------------------------------------------------------------------
# Splitting


def _stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of (train, val). Train is ordered round-robin over classes so any prefix is
    stratified; both are deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    train_parts, val_parts = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(round(len(members) * val_fraction))
        val_parts.append(np.sort(members[:n_val]))
        train_parts.append(members[n_val:])
    val = _interleaved(labels, np.sort(np.concatenate(val_parts)))
    train = _interleaved(labels, np.concatenate(train_parts))
    return train.astype(np.int64), val.astype(np.int64)


def _interleaved(labels: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``index`` reordered round-robin over classes (every class's 1st image, then 2nd, ...),
    keeping the order within each class, so any prefix is stratified."""
    ranks = np.empty(len(index), dtype=np.int64)
    for label in np.unique(labels[index]):
        members = labels[index] == label
        ranks[members] = np.arange(members.sum())
    return index[np.lexsort((labels[index], ranks))]


def _take(decoded: dict[str, Any], source: str, index: np.ndarray, name: str) -> Split:
    return Split(decoded[f"{source}_images"][index], decoded[f"{source}_labels"][index], name)


def _normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC tensor -> normalised float32 NCHW tensor."""
    mean = torch.tensor(MEAN).mul_(255.0).view(1, 3, 1, 1)
    scale = (1.0 / (torch.tensor(STD) * 255.0)).view(1, 3, 1, 1)
    return images.permute(0, 3, 1, 2).float().sub_(mean).mul_(scale).contiguous()


# --------------------------------------------------------------------------------------------
# Cache


def _load_cached(path: Path, cache_dir: Path) -> dict[str, Any]:
    """The decoded set from the cache, decoding and storing it first when absent."""
    probe_source(path)
    entry = cache_dir / "data" / _cache_key(path)
    if not (entry / "classes.json").is_file():
        decoded = _decode(path)
        _write_cache(entry, decoded)
        log.info("decoded %s into %s", path, entry)
    return _read_cache(entry)


def _cache_key(path: Path) -> str:
    """Readable stem + hash of the resolved path, its size and mtime (every file's for a folder)."""
    resolved = path.resolve()
    parts = [f"v{CACHE_FORMAT_VERSION}", str(resolved)]
    files = sorted(p for p in resolved.rglob("*") if p.is_file()) if resolved.is_dir() else [resolved]
    for file in files:
        stat = file.stat()
        parts.append(f"{file.relative_to(resolved.parent)}:{stat.st_size}:{stat.st_mtime_ns}")
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    stem = resolved.name.split(".")[0] or "data"
    return f"{stem}-{digest}"


def _write_cache(entry: Path, decoded: dict[str, Any]) -> None:
    """Write into a temporary folder and rename it into place, so a cache entry is never partial."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
    try:
        for split in _SPLITS:
            np.save(staging / f"{split}_images.npy", decoded[f"{split}_images"])
            np.save(staging / f"{split}_labels.npy", decoded[f"{split}_labels"])
        (staging / "classes.json").write_text(json.dumps(decoded["classes"]))
        try:
            os.replace(staging, entry)
        except OSError:
            if not (entry / "classes.json").is_file():  # not a concurrent writer's finished entry
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _read_cache(entry: Path) -> dict[str, Any]:
    decoded: dict[str, Any] = {"classes": json.loads((entry / "classes.json").read_text())}
    for split in _SPLITS:
        decoded[f"{split}_images"] = np.load(entry / f"{split}_images.npy")
        decoded[f"{split}_labels"] = np.load(entry / f"{split}_labels.npy")
    return decoded


# --------------------------------------------------------------------------------------------
# Bounded probe: what a source is, decided from its type and the top two levels of a folder


_NOT_DATA_KINDS = ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                   (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISSOCK, "socket"))


def probe_source(path: Path) -> None:
    """A DataError, without reading any content, for a source that is not a regular file or a
    folder laid out as a data set: a device or a pipe would block a reader forever, a large
    unrelated folder would be walked file by file. ``load_data`` calls it first; commands may call
    it before they print anything."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: data set not found: {_EXPECTED}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror}): {_EXPECTED}") from None
    if stat.S_ISDIR(mode):
        if not _looks_like_data_folder(path):
            raise DataError(f"{path}: no CIFAR batches and no train/ + test/ class folders: {_EXPECTED}")
        return
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _NOT_DATA_KINDS if test(mode)), "special file")
        raise DataError(f"{path} is a {kind}, not a data set file or folder: {_EXPECTED}")


def _looks_like_data_folder(path: Path) -> bool:
    """Whether ``path`` holds a known CIFAR folder or its files, or ``train/`` + ``test/``, at its
    top level or inside one of its sub-folders: the same layouts the decoders accept."""
    markers = {_CIFAR_FOLDER, *_CIFAR_FILES}
    for layout in _BINARY_LAYOUTS:
        markers.update((layout.folder, *layout.files))
    try:
        top = list(path.iterdir())
        if any(entry.name in markers for entry in top) or _has_splits(path):
            return True
        return any(entry.is_dir() and _has_splits(entry) for entry in top)
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror}): {_EXPECTED}") from None


def _has_splits(folder: Path) -> bool:
    return all((folder / split).is_dir() for split in _SPLITS)


# --------------------------------------------------------------------------------------------
# Format detection


def _decode(path: Path) -> dict[str, Any]:
    """Decode ``path`` (any accepted format) into images, labels and classes per split."""
    if path.is_dir():
        return _decode_folder(path)
    if not tarfile.is_tarfile(path):
        raise DataError(f"{path}: not a tar archive: {_EXPECTED}")
    try:
        with tarfile.open(path, "r:*") as archive:
            listing = archive.getmembers()
            members = {m.name.removeprefix("./"): m for m in listing if m.isfile()}
            binary = _binary_root(members.keys(), path)
            if binary is not None:
                layout, root = binary
                return _decode_binary(
                    layout, lambda name: _read(_member_file(archive, members[f"{root}{name}"]).read, name, path), path)
            cifar_root = _cifar_root(members.keys())
            if cifar_root is not None:
                return _decode_cifar(lambda name: _member_file(archive, members[f"{cifar_root}{name}"]), path)
            folders = [m.name.removeprefix("./").rstrip("/") for m in listing if m.isdir()]
            tree = _image_tree(members.keys(), folders, path)
            files = {name: _tar_reader(archive, member) for name, member in members.items()}
            return _decode_images(tree, files, path)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{path}: damaged tar archive ({exc}): {_EXPECTED}") from None


def _decode_folder(path: Path) -> dict[str, Any]:
    entries = list(path.rglob("*"))
    names = [p.relative_to(path).as_posix() for p in entries if p.is_file()]
    binary = _binary_root(names, path)
    if binary is not None:
        layout, root = binary
        return _decode_binary(layout, lambda name: _read((path / f"{root}{name}").read_bytes, name, path), path)
    cifar_root = _cifar_root(names)
    if cifar_root is not None:
        return _decode_cifar(lambda name: open(path / f"{cifar_root}{name}", "rb"), path)
    folders = [p.relative_to(path).as_posix() for p in entries if p.is_dir()]
    tree = _image_tree(names, folders, path)
    return _decode_images(tree, {name: (path / name).read_bytes for name in names}, path)


def _cifar_root(names: Iterable[str]) -> str | None:
    """The prefix under which all CIFAR batch files lie ('' or 'cifar-10-batches-py/'), if any."""
    names = set(names)
    for root in ("", f"{_CIFAR_FOLDER}/"):
        if all(f"{root}{name}" in names for name in _CIFAR_FILES):
            return root
    return None


def _image_tree(files: Iterable[str], folders: Iterable[str], source: Path) -> dict[str, dict[str, list[str]]]:
    """{split: {class: [file names]}} of an image-folder tree, with or without one wrapping folder.

    ``folders`` lets an empty class folder be reported instead of silently dropped."""
    files = [n for n in files if not _hidden(n)]
    folders = [n for n in folders if not _hidden(n)]
    for depth in (0, 1):  # 1: everything sits inside one wrapping folder
        tree: dict[str, dict[str, list[str]]] = {split: {} for split in _SPLITS}
        for name in folders:
            parts = name.split("/")[depth:]
            if len(parts) == 2 and parts[0] in _SPLITS:
                tree[parts[0]].setdefault(parts[1], [])
        for name in files:
            parts = name.split("/")[depth:]
            if len(parts) == 3 and parts[0] in _SPLITS:
                tree[parts[0]].setdefault(parts[1], []).append(name)
        if all(tree.values()):
            _check_classes(tree, source)
            return tree
    raise DataError(f"{source}: no CIFAR batches and no train/ + test/ class folders: {_EXPECTED}")


def _hidden(name: str) -> bool:
    """Dot files and folders (.DS_Store, ._x.jpg, .git) are not data."""
    return any(part.startswith(".") for part in name.split("/"))


def _check_classes(tree: dict[str, dict[str, list[str]]], source: Path) -> None:
    train, test = sorted(tree["train"]), sorted(tree["test"])
    if train != test:
        only_train = sorted(set(train) - set(test))
        only_test = sorted(set(test) - set(train))
        raise DataError(
            f"{source}: train and test class folders differ (only in train: {only_train}, only in "
            f"test: {only_test}): give both splits the same class folders"
        )
    for split in _SPLITS:
        empty = [cls for cls in train if not tree[split][cls]]
        if empty:
            raise DataError(f"{source}: empty class folder(s) {split}/{empty}: put images in every class folder")


# --------------------------------------------------------------------------------------------
# Image-folder decoding


def _member_file(archive: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    """A regular file's contents (``extractfile`` gives None for any other kind of member)."""
    file = archive.extractfile(member)
    if file is None:
        raise DataError(f"{member.name}: not a regular file in the archive: repack it")
    return file


def _tar_reader(archive: tarfile.TarFile, member: tarfile.TarInfo) -> Callable[[], bytes]:
    return lambda: _member_file(archive, member).read()


def _decode_images(tree: dict[str, dict[str, list[str]]], files: dict[str, Any], source: Path) -> dict[str, Any]:
    """Read every image's bytes (in archive order, so a .tar.gz is streamed once) and decode them."""
    classes = sorted(tree["train"])
    label_of = {name: (split, label) for split in _SPLITS for label, cls in enumerate(classes)
                for name in tree[split][cls]}
    wanted = [name for name in files if name in label_of]  # archive order: sequential reads
    blobs = [_read(files[name], name, source)
             for name in tqdm(wanted, desc=f"reading {source.name}", unit="img", disable=None, leave=False)]
    images = _decode_all(blobs, wanted, source)
    decoded: dict[str, Any] = {"classes": classes}
    for split in _SPLITS:
        picks = [i for i, name in enumerate(wanted) if label_of[name][0] == split]
        decoded[f"{split}_images"] = images[picks]
        decoded[f"{split}_labels"] = np.array([label_of[wanted[i]][1] for i in picks], dtype=np.int64)
    return decoded


def _read(reader, name: str, source: Path) -> bytes:
    try:
        return reader()
    except OSError as exc:
        raise DataError(f"{source}: {name}: cannot be read ({exc}): replace the file (or the archive)") from None


def _decode_all(blobs: list[bytes], names: list[str], source: Path) -> np.ndarray:
    """Decode JPEG/PNG/... bytes to one uint8 NHWC array, over 2 processes for large sets."""
    chunk = 2000
    starts = range(0, len(blobs), chunk)
    out = np.empty((len(blobs), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    with contextlib.ExitStack() as stack:
        mapper: Callable[..., Iterator[Any]] = map
        if len(blobs) >= _PARALLEL_MIN_IMAGES and (os.cpu_count() or 1) >= 2:
            mapper = stack.enter_context(ProcessPoolExecutor(max_workers=2)).map
        progress = stack.enter_context(
            tqdm(total=len(blobs), desc=f"decoding {source.name}", unit="img", disable=None))
        for start, (images, failed) in zip(starts, mapper(_decode_chunk, [blobs[i:i + chunk] for i in starts])):
            if failed is not None:
                name = names[start + failed[0]]
                raise DataError(f"{source}: {name}: unreadable image ({failed[1]}): replace or remove the file")
            out[start:start + len(images)] = images
            progress.update(len(images))
    return out


def _decode_chunk(blobs: list[bytes]) -> tuple[np.ndarray, tuple[int, str] | None]:
    """Decode a chunk; on failure return the index and reason instead of raising (pool-friendly)."""
    out = np.empty((len(blobs), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    for i, blob in enumerate(blobs):
        try:
            out[i] = _decode_image(blob)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            return out[:i], (i, str(exc) or type(exc).__name__)
    return out, None


def _decode_image(blob: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(blob)) as opened:
        opened.draft("RGB", (IMAGE_SIZE, IMAGE_SIZE))  # JPEG: decode larger images at reduced scale
        image: Image.Image = opened
        if image.mode != "RGB":
            image = image.convert("RGB")
        if image.size != (IMAGE_SIZE, IMAGE_SIZE):
            image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
        return np.asarray(image)


# --------------------------------------------------------------------------------------------
# CIFAR binary version


@dataclass(frozen=True)
class _BinaryLayout:
    """One official binary version: its folder, its files and the layout of its records."""

    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    #: Class names, one a line, in label order.
    names: str
    #: Label bytes before each record's pixels; the class is the last of them (CIFAR-100: coarse, fine).
    label_bytes: int

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train, *self.test, self.names)

    @property
    def record_bytes(self) -> int:
        return self.label_bytes + 3 * IMAGE_SIZE * IMAGE_SIZE


_BINARY_LAYOUTS = (
    _BinaryLayout("cifar-10-batches-bin", tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
                  ("test_batch.bin",), "batches.meta.txt", label_bytes=1),
    _BinaryLayout("cifar-100-binary", ("train.bin",), ("test.bin",), "fine_label_names.txt", label_bytes=2),
)


def _binary_root(names: Iterable[str], source: Path) -> tuple[_BinaryLayout, str] | None:
    """The binary layout whose files ``names`` hold (directly or under its folder) and that prefix.

    One file of a layout is enough to recognise it, so a set with a file missing is reported as
    such instead of as an unknown format."""
    names = set(names)
    for layout in _BINARY_LAYOUTS:
        for root in ("", f"{layout.folder}/"):
            present = [name for name in layout.files if f"{root}{name}" in names]
            if not present:
                continue
            missing = [f"{root}{name}" for name in layout.files if name not in present]
            if missing:
                raise DataError(f"{source}: {', '.join(missing)} missing from the {layout.folder} set: "
                                f"restore the file(s); the set needs {', '.join(layout.files)}")
            return layout, root
    return None


def _decode_binary(layout: _BinaryLayout, read: Callable[[str], bytes], source: Path) -> dict[str, Any]:
    """Decode the train and test files of a binary version; ``read(name)`` returns a file's bytes."""
    classes = _binary_class_names(read(layout.names), layout, source)
    decoded: dict[str, Any] = {"classes": classes}
    for split, names in (("train", layout.train), ("test", layout.test)):
        parts = [_binary_records(read(name), name, layout, source, len(classes)) for name in names]
        decoded[f"{split}_images"] = np.concatenate([images for images, _ in parts])
        decoded[f"{split}_labels"] = np.concatenate([labels for _, labels in parts])
    return decoded


def _binary_class_names(blob: bytes, layout: _BinaryLayout, source: Path) -> list[str]:
    """One name a line; trailing blank lines (the official files end with some) are dropped."""
    try:
        names = [line.strip() for line in blob.decode("utf-8").splitlines()]
    except UnicodeDecodeError:
        names = [""]
    while names and not names[-1]:
        names.pop()
    if not names or "" in names:
        raise DataError(f"{source}: {layout.names} must hold the class names as UTF-8 text, one a line "
                        "in label order, without blank lines between them: replace the file")
    return names


def _binary_records(blob: bytes, name: str, layout: _BinaryLayout, source: Path,
                    num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 NHWC images, int64 labels) of one ``.bin`` file, checked for size and label range."""
    record = layout.record_bytes
    if not blob or len(blob) % record:
        raise DataError(
            f"{source}: {name} holds {len(blob):,} bytes, not a whole number of {record:,}-byte records "
            f"({layout.label_bytes} label byte(s) + 3,072 pixel bytes): the file is truncated or not "
            f"from {layout.folder}; replace it")
    records = np.frombuffer(blob, np.uint8).reshape(-1, record)
    labels = records[:, layout.label_bytes - 1].astype(np.int64)
    bad = np.flatnonzero(labels >= num_classes)
    if len(bad):
        raise DataError(
            f"{source}: {name} record {bad[0]} has label {labels[bad[0]]}, outside 0..{num_classes - 1} "
            f"({layout.names} names {num_classes} classes): replace the file, or name every class in "
            f"{layout.names}")
    # Pixels are planar (1024 R, 1024 G, 1024 B): reshape to NCHW, then to NHWC.
    images = records[:, layout.label_bytes:].reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


# --------------------------------------------------------------------------------------------
# CIFAR python batches


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Python 3 pickles (protocol <= 2) store bytes as _codecs.encode(text, 'latin1')."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _numpy_allowlist() -> dict[tuple[str, str], Any]:
    """The callables numpy arrays pickle themselves with, under numpy 1 and numpy 2 module names."""
    sample = np.zeros(1, np.uint8)
    reconstruct = sample.__reduce_ex__(2)[0]
    frombuffer = sample.__reduce_ex__(5)[0]
    scalar = np.float64(0).__reduce__()[0]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds plain containers and numpy arrays, and refuses any other class."""

    _allowed = _numpy_allowlist()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def _read_batch(handle: BinaryIO, name: str, source: Path) -> dict[bytes, Any]:
    try:
        with handle:
            batch = _NumpyOnlyUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{source}: {name} is not a CIFAR-10 python batch ({exc}): {_EXPECTED}") from None
    if not isinstance(batch, dict):
        raise DataError(f"{source}: {name} holds a {type(batch).__name__}, not a dict: {_EXPECTED}")
    return batch


def _decode_cifar(open_file, source: Path) -> dict[str, Any]:
    """Decode data_batch_1..5 (train) and test_batch from the python pickles."""
    meta = _read_batch(open_file("batches.meta"), "batches.meta", source)
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(b"label_names", [])]
    if not classes:
        raise DataError(f"{source}: batches.meta has no label_names: {_EXPECTED}")
    decoded: dict[str, Any] = {"classes": classes}
    for split, names in (("train", _CIFAR_TRAIN_BATCHES), ("test", ("test_batch",))):
        parts = [_cifar_arrays(_read_batch(open_file(name), name, source), name, source, len(classes))
                 for name in names]
        decoded[f"{split}_images"] = np.concatenate([images for images, _ in parts])
        decoded[f"{split}_labels"] = np.concatenate([labels for _, labels in parts])
    return decoded


def _cifar_arrays(batch: dict[bytes, Any], name: str, source: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    data = np.asarray(batch.get(b"data", ()), dtype=np.uint8)
    labels = np.asarray(batch.get(b"labels", ()), dtype=np.int64)
    pixels = 3 * IMAGE_SIZE * IMAGE_SIZE
    if data.ndim != 2 or data.shape[1] != pixels or len(labels) != len(data) or not len(data):
        raise DataError(
            f"{source}: {name} needs b'data' uint8 N x {pixels} (N > 0) and N b'labels', got data "
            f"{data.shape} and {len(labels)} labels: {_EXPECTED}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{source}: {name} has labels outside 0..{num_classes - 1}: {_EXPECTED}")
    # Rows are planar (1024 R, 1024 G, 1024 B): reshape to NCHW, then to NHWC.
    images = data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels
