"""Tests of effzoo.data: datasets, splits, transforms, loaders, downloads, errors."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from effzoo.data import (
    ClassificationDataModule,
    ImageFileDataset,
    create_datamodule,
    download_fashion_mnist,
    download_file,
    eval_resize_size,
    eval_transform,
    read_idx,
    stratified_split,
    train_transform,
    write_idx,
)
from effzoo.data.fashion_mnist import SYSTEM_DIR, FashionMNISTSource
from effzoo.data.transforms import rand_augment_fill
from effzoo.training.config import TrainConfig


def first_batch(loader):
    return next(iter(loader))


# --------------------------------------------------------------------------- synthetic
@pytest.mark.parametrize("in_chans", [1, 3])
def test_synthetic_batches(in_chans):
    dm = create_datamodule(
        "synthetic", batch_size=16, num_workers=0, in_chans=in_chans, num_classes=3, size=12
    )
    # Metadata is there before setup(): the model is built from it.
    assert (dm.num_classes, dm.in_chans, dm.base_resolution) == (3, in_chans, 12)
    assert len(dm.mean) == len(dm.std) == in_chans
    x, y = first_batch(dm.train_dataloader())
    assert x.shape == (16, in_chans, 12, 12) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and int(y.max()) < 3
    x, _ = first_batch(dm.val_dataloader())
    assert x.shape[1:] == (in_chans, 12, 12)


def test_synthetic_is_learnable_and_seeded():
    dm = create_datamodule("synthetic", num_workers=0, rand_augment=None)
    dm.setup()
    splits = dm._splits

    # Phase-invariant features (FFT magnitude) + nearest class mean: far above chance.
    def feats(ds):
        return np.abs(np.fft.fft2(ds.images.astype(float) / 255)).reshape(len(ds), -1)

    ftr, fva = feats(splits.train), feats(splits.val)
    means = np.stack([ftr[splits.train.labels == c].mean(0) for c in range(dm.num_classes)])
    pred = np.argmin(((fva[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (pred == splits.val.labels).mean() > 0.9

    again = create_datamodule("synthetic", num_workers=0)
    again.setup()
    assert np.array_equal(again._splits.train.images, splits.train.images)


# --------------------------------------------------------------------------- digits
def test_digits_batches_and_split_sizes():
    dm = create_datamodule("digits", batch_size=32, num_workers=0)
    assert dm.num_classes == 10 and dm.in_chans == 1
    assert dm.class_names == [str(i) for i in range(10)]
    assert dm.image_size == dm.base_resolution
    x, y = first_batch(dm.train_dataloader())
    assert x.shape == (32, 1, dm.image_size, dm.image_size)
    sizes = dm.split_sizes()
    assert sum(sizes.values()) == 1797
    assert abs(sizes["test"] / 1797 - 0.15) < 0.01 and abs(sizes["val"] / 1797 - 0.15) < 0.01


def _ids(dm, split):
    dm.setup()
    return set(getattr(dm._splits, split).ids.tolist())


def test_digits_splits_are_seeded_disjoint_and_test_is_fixed():
    a, b = create_datamodule("digits", seed=0), create_datamodule("digits", seed=0)
    c = create_datamodule("digits", seed=1)
    assert _ids(a, "val") == _ids(b, "val") and _ids(a, "train") == _ids(b, "train")
    assert _ids(a, "val") != _ids(c, "val")  # the seed changes the validation draw...
    assert _ids(a, "test") == _ids(c, "test")  # ...but never the test split
    for dm in (a, c):
        train, val, test = _ids(dm, "train"), _ids(dm, "val"), _ids(dm, "test")
        assert not (train & val) and not (train & test) and not (val & test)
        assert len(train | val | test) == 1797


def test_stratified_split_balances_classes():
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    kept, held = stratified_split(labels, 0.1, seed=3)
    assert np.bincount(labels[held]).tolist() == [10, 5, 3, 2]
    assert len(np.intersect1d(kept, held)) == 0 and len(kept) + len(held) == 200


def test_train_limit_is_seeded_and_stratified():
    dm = create_datamodule("digits", train_limit=100, num_workers=0)
    assert dm.split_sizes()["train"] == 100
    counts = np.bincount(dm.split_labels("train"), minlength=10)
    assert counts.min() >= 9 and counts.max() <= 11
    assert _ids(dm, "train") == _ids(create_datamodule("digits", train_limit=100), "train")


# --------------------------------------------------------------------------- transforms
def test_eval_transform_size_and_determinism():
    assert eval_resize_size(28, 0.875) == 32 and eval_resize_size(224, 0.875) == 256
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 40), np.uint8))
    tf = eval_transform(24, 0.875, "bicubic", (0.5,), (0.25,))
    out = tf(img)
    assert out.shape == (1, 24, 24)
    assert torch.equal(out, tf(img))


def test_eval_dataloader_resolution_and_crop():
    dm = create_datamodule("digits", num_workers=0, batch_size=8)
    for res in (24, 40):
        x, _ = first_batch(dm.eval_dataloader("val", res))
        assert x.shape == (8, 1, res, res)
    a, _ = first_batch(dm.eval_dataloader("train", 32, crop_pct=1.0))
    b, _ = first_batch(dm.eval_dataloader("train", 32, crop_pct=1.0))
    assert torch.equal(a, b)  # unshuffled eval loaders are deterministic
    with pytest.raises(ValueError, match="split must be one of"):
        dm.eval_dataloader("holdout", 32)


def test_rand_augment_on_grayscale():
    # PIL rejects timm's default (128, 128, 128) fill on 'L' images; ours must be an int.
    assert isinstance(rand_augment_fill((0.3,)), int)
    assert rand_augment_fill((0.5, 0.5, 0.5)) == (128, 128, 128)
    tf = train_transform(
        32, 1, (0.3,), (0.4,), "bicubic", "rand-m9-mstd0.5-n3-p1.0", 0.5, scale=(0.35, 1.0)
    )
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), np.uint8))
    for _ in range(200):  # enough draws to hit every geometric op
        assert tf(img).shape == (1, 32, 32)


def test_bad_options_give_clear_errors():
    with pytest.raises(ValueError, match="digits.*fashion-mnist.*synthetic.*folder"):
        create_datamodule("imagenet-typo")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_datamodule("./no/such/folder")
    with pytest.raises(ValueError, match="interpolation"):
        create_datamodule("digits", interpolation="cubic")
    with pytest.raises(ValueError, match="rand_augment"):
        create_datamodule("digits", rand_augment="rnd-m9")
    with pytest.raises(ValueError, match="only 'synthetic'"):
        create_datamodule("digits", num_classes=3)
    with pytest.raises(ValueError, match="crop_pct"):
        create_datamodule("digits", crop_pct=1.5)


def test_mixup_fn_and_full_training_batches():
    dm = create_datamodule("synthetic", num_workers=0, batch_size=30, mixup=0.2, cutmix=1.0)
    x, y = first_batch(dm.train_dataloader())
    mx, my = dm.mixup_fn(x, y)
    assert mx.shape == x.shape and my.shape == (30, dm.num_classes)
    assert torch.allclose(my.sum(1), torch.ones(30))
    assert all(len(b[1]) == 30 for b in dm.train_dataloader())  # no ragged last batch
    assert create_datamodule("synthetic").mixup_fn is None


# --------------------------------------------------------------------------- image folders
def _save(path: Path, mode: str, seed: int, fmt: str = "PNG") -> None:
    rng = np.random.default_rng(seed)
    shape = (20, 24) if mode == "L" else (20, 24, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, np.uint8)).save(path, fmt)


def make_folder(root: Path, splits=("train", "val", "test"), classes=("cat", "dog"), n=3,
                mode: str = "RGB") -> Path:  # fmt: skip
    for split in splits:
        for ci, cls in enumerate(classes):
            for i in range(n):
                ext = "jpg" if i % 2 else "png"
                fmt = "JPEG" if ext == "jpg" else "PNG"
                _save(root / split / cls / f"{i}.{ext}", mode, seed=ci * 100 + i, fmt=fmt)
    return root


def test_image_folder_batches(tmp_path):
    root = make_folder(tmp_path / "pets")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    dm = create_datamodule(str(root), image_size=16, batch_size=4, num_workers=0)
    assert dm.class_names == ["cat", "dog"] and dm.in_chans == 3 and dm.base_resolution == 224
    assert dm.mean == (0.485, 0.456, 0.406)
    x, y = first_batch(dm.train_dataloader())
    assert x.shape == (4, 3, 16, 16) and y.dtype == torch.int64
    assert dm.split_sizes() == {"train": 6, "val": 6, "test": 6}
    # The test loader reads test/, never val/.
    test_paths = set(dm._splits.test.paths)
    assert test_paths and all("/test/" in p for p in test_paths)


def test_image_folder_grayscale_and_mixed_modes(tmp_path):
    gray = create_datamodule(str(make_folder(tmp_path / "g", mode="L")), image_size=16)
    assert gray.in_chans == 1 and len(gray.mean) == 1
    x, _ = first_batch(gray.eval_dataloader("val", 16))
    assert x.shape[1] == 1

    mixed = make_folder(tmp_path / "m", mode="L")
    _save(mixed / "train" / "dog" / "rgb.png", "RGB", seed=7)
    with pytest.warns(UserWarning, match="converted to RGB"):
        dm = create_datamodule(str(mixed), image_size=16, num_workers=0)
    assert dm.in_chans == 3
    x, _ = first_batch(dm.eval_dataloader("train", 16))  # L files come out as 3 channels
    assert x.shape[1] == 3


def test_image_folder_corrupt_file(tmp_path, capsys):
    root = make_folder(tmp_path / "c")
    bad = root / "train" / "dog" / "broken.jpg"
    bad.write_bytes((root / "train" / "dog" / "1.jpg").read_bytes()[:300])  # truncated JPEG
    (root / "train" / "cat" / "notes.png").write_text("not an image")
    (root / "val" / "cat" / "empty.png").write_bytes(b"")
    dm = create_datamodule(str(root), image_size=16, num_workers=0)
    capsys.readouterr()
    dm.setup()
    assert dm.split_sizes()["train"] == 6 and str(bad) not in set(dm._splits.train.paths)
    # One plain line per split, named files first, no Python warning format (file:line, echoed source).
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("effzoo: skipped 2 unreadable images in train/ (first: cat/notes.png: "
                               "cannot identify image file; dog/broken.jpg: "), lines[0]
    assert lines[1].startswith("effzoo: skipped 1 unreadable image in val/ (first: cat/empty.png: "), lines[1]
    assert str(tmp_path) not in "".join(lines) and "Warning" not in "".join(lines)

    strict = create_datamodule(str(root), image_size=16, on_bad_image="error")
    with pytest.raises(ValueError, match=r"notes.png: cannot identify image file \(and 2 more\).*"
                                         r"or pass on_bad_image='skip' to leave"):
        strict.setup()


def test_a_config_error_names_the_flag_on_the_command_line(tmp_path, capsys):
    """The same refusal as above, met through `effzoo train`: it speaks of flags, not Python arguments."""
    from effzoo.cli import main

    root = make_folder(tmp_path / "c")
    (root / "train" / "cat" / "notes.png").write_text("not an image")
    args = ["train", "--data", str(root), "--on-bad-image", "error", "--epochs", "1", "--output", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "or pass --on-bad-image skip to leave" in err and "on_bad_image" not in err, err
    assert main(["train", "--data", str(root), "--epochs", "0"]) == 2
    assert "--epochs must be > 0, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="^epochs must be > 0, got 0"):
        TrainConfig(epochs=0)


def test_unreadable_file_at_load_time(tmp_path, capsys):
    """A file that breaks after the setup scan: skipped with one line (once per file), or a named error."""
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    _save(good, "RGB", seed=1)
    bad.write_bytes(b"not a png")
    ds = ImageFileDataset([str(bad), str(good)], [0, 1], mode="L")
    image, label = ds[0]
    assert label == 1 and image.mode == "L"
    ds[0]
    assert capsys.readouterr().err == f"effzoo: skipped unreadable image {bad}: cannot identify image file\n"
    strict = ImageFileDataset([str(bad)], [0], on_bad_image="error")
    with pytest.raises(ValueError, match="bad.png"):
        strict[0]


def test_image_folder_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="val/.*expected layout"):
        create_datamodule(str(make_folder(tmp_path / "a", splits=("train",))))
    empty = make_folder(tmp_path / "b")
    for f in (empty / "val" / "cat").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match=r"val/cat contains no images"):
        create_datamodule(str(empty))
    other = make_folder(tmp_path / "c")
    make_folder(other, splits=("val",), classes=("bird",), n=1)
    with pytest.raises(ValueError, match="only in val: \\['bird'\\]"):
        create_datamodule(str(other))
    no_test = create_datamodule(str(make_folder(tmp_path / "d", splits=("train", "val"))))
    assert not no_test.has_test
    with pytest.raises(ValueError, match="no test split"):
        no_test.test_dataloader()


# --------------------------------------------------------------------------- IDX + download
def _idx_bytes(array: np.ndarray) -> bytes:
    """Hand-built IDX (independent of write_idx): 0, 0, 0x08 (uint8), ndim, dims, data."""
    return bytes([0, 0, 8, array.ndim]) + struct.pack(">%dI" % array.ndim, *array.shape) + (
        array.astype(np.uint8).tobytes()
    )


def test_read_idx_raw_gz_and_malformed(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(_idx_bytes(arr))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(_idx_bytes(arr)))
    assert np.array_equal(read_idx(tmp_path / "a.idx"), arr)
    assert np.array_equal(read_idx(tmp_path / "a.idx.gz"), arr)
    write_idx(tmp_path / "f.gz", np.array([1.5, -2.0], dtype=np.float32))
    assert read_idx(tmp_path / "f.gz").tolist() == [1.5, -2.0]

    (tmp_path / "short.idx").write_bytes(_idx_bytes(arr)[:-5])
    with pytest.raises(ValueError, match=r"short\.idx.*truncated"):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "magic.idx").write_bytes(b"\x12\x34" + _idx_bytes(arr)[2:])
    with pytest.raises(ValueError, match=r"magic\.idx.*magic"):
        read_idx(tmp_path / "magic.idx")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(_idx_bytes(arr))[:-12])
    with pytest.raises(ValueError, match=r"cut\.gz"):
        read_idx(tmp_path / "cut.gz")
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing.idx")


def test_download_file_url(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"effzoo" * 1000)
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    dest = download_file(src.as_uri(), tmp_path / "cache" / "dst.bin", md5=md5)
    assert dest.read_bytes() == src.read_bytes()

    with pytest.raises(ValueError, match="checksum mismatch"):
        download_file(src.as_uri(), tmp_path / "cache" / "bad.bin", md5="0" * 32)
    with pytest.raises(OSError, match="download of .* failed"):
        download_file((tmp_path / "nope.bin").as_uri(), tmp_path / "cache" / "nope.bin")
    # Atomic: failures leave neither the target nor a partial file behind.
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["dst.bin"]


def test_fashion_mnist_download_and_load_from_mirror(tmp_path):
    rng = np.random.default_rng(0)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for prefix, n in (("train", 60), ("t10k", 20)):
        images = rng.integers(0, 256, (n, 28, 28), np.uint8)
        write_idx(mirror / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(mirror / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    dest = tmp_path / "fm"
    download_fashion_mnist(dest, mirrors=(mirror.as_uri() + "/",), verify_md5=False)
    splits = FashionMNISTSource(data_dir=str(dest), val_fraction=0.2).load()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (48, 12, 20)
    with pytest.raises(OSError, match="could not download.*dataset-fashion-mnist"):
        download_fashion_mnist(tmp_path / "x", mirrors=((tmp_path / "void").as_uri() + "/",))


@pytest.mark.skipif(not SYSTEM_DIR.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_fashion_mnist_real_files():
    dm = create_datamodule("fashion_mnist", batch_size=16, num_workers=0, train_limit=200)
    assert dm.name == "fashion-mnist" and dm.class_names[0] == "T-shirt/top"
    assert dm.class_names[-1] == "Ankle boot" and dm.in_chans == 1 and dm.mean == (0.2860,)
    x, y = first_batch(dm.train_dataloader())
    assert x.shape == (16, 1, 32, 32) and int(y.max()) <= 9
    assert dm.split_sizes() == {"train": 200, "val": 6000, "test": 10000}
    x, _ = first_batch(dm.test_dataloader())
    assert x.shape == (16, 1, 32, 32)


# --------------------------------------------------------------------------- pickling
def test_datamodule_pickles_without_data():
    dm = create_datamodule("digits", num_workers=0, batch_size=8, mixup=0.2)
    dm.setup()
    blob = pickle.dumps(dm)
    assert len(blob) < 100_000  # the loaded arrays are not shipped
    clone = pickle.loads(blob)
    assert isinstance(clone, ClassificationDataModule) and clone.num_classes == 10
    x, _ = first_batch(clone.train_dataloader())  # reloads on demand
    assert x.shape == (8, 1, 32, 32)
    assert _ids(clone, "val") == _ids(dm, "val")
