"""A folder of images: ``ROOT/train/<class>/*``, ``ROOT/val/<class>/*``, optional ``ROOT/test``.

A split folder holding a ``labels.csv`` (see `labels_csv`) may also be flat: its images are every
image file under it, and its class subfolders (the `label` source) are optional.
"""

from __future__ import annotations

import os
import random
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch.distributed as dist
from PIL import Image

from ..wording import setting
from .datasets import IMAGE_EXTENSIONS, ImageFileDataset, image_error, report
from .labels_csv import LABELS_CSV, read_label_table
from .images import READ_ERRORS, WIDE_GRAY_MODES, load_image
from .source import DataSource, Splits
from .transforms import IMAGENET_MEAN, IMAGENET_STD

IMAGE_FOLDER_BASE_RESOLUTION = 224
# Unreadable files named in the one-line report of a split; the count covers the rest.
BAD_EXAMPLES = 2
# Images opened (header only) to decide between 1 and 3 channels and to estimate grayscale
# mean/std; enough to catch a mixed folder without reading a large one in full.
MODE_SAMPLE_SIZE = 256
GRAY_MODES = frozenset({"1", "L", "LA"}) | WIDE_GRAY_MODES  # 16-bit grayscale is grayscale too
LAYOUT_HELP = (
    "expected layout: ROOT/train/<class>/<image>, ROOT/val/<class>/<image> and optionally "
    f"ROOT/test/<class>/<image>, images ending in {', '.join(IMAGE_EXTENSIONS)} (or, for multi-task labels, "
    "any layout with a labels.csv in each split folder)"
)


def list_images(folder: Path) -> list[str]:
    """Image files under `folder`, recursively, sorted, hidden ones left out (training and `effzoo predict` alike)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            os.path.join(dirpath, f)
            for f in sorted(filenames)
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return found


def scan_split(folder: Path) -> tuple[list[str], list[str], list[int]]:
    """``(class_names, paths, labels)`` of one split; errors name the empty class folder."""
    classes = sorted(
        d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")
    )
    if not classes:
        raise ValueError(f"{folder} has no class subfolders; {LAYOUT_HELP}")
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = list_images(folder / name)
        if not files:
            raise ValueError(
                f"class folder {folder / name} contains no images "
                f"({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder"
            )
        paths += files
        labels += [label] * len(files)
    return classes, paths, labels


def scan_labelled_split(folder: Path) -> tuple[list[str], list[str], list[int]]:
    """``(class_names, paths, labels)`` of a split whose labels come from its labels.csv: every image
    under it. When all of them sit in subfolders, those are classes too; otherwise there are none."""
    paths = list_images(folder)
    if not paths:
        raise ValueError(f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}) for its {LABELS_CSV}")
    parts = [Path(os.path.relpath(p, folder)).parts for p in paths]
    if any(len(x) == 1 for x in parts):  # an image directly in the split folder: no classes
        return [], paths, [0] * len(paths)
    classes = sorted({x[0] for x in parts})
    return classes, paths, [classes.index(x[0]) for x in parts]


def _is_bad(path: str) -> str | None:
    """Fully decode ``path``; return the error text, or None if it reads fine.

    ``Image.verify()`` misses truncated JPEG and BMP files, so decode instead; JPEG 'draft'
    mode decodes at 1/8 scale, which still reads the whole entropy-coded stream.
    """
    try:
        with Image.open(path) as img:
            img.draft(img.mode, (1, 1))
            img.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        return image_error(err, path)
    return None


def find_bad_images(paths: list[str], workers: int | None = None) -> dict[str, str]:
    """``{path: error}`` of every file that cannot be decoded (threaded: PIL drops the GIL)."""
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        errors = list(pool.map(_is_bad, paths, chunksize=64))
    return {p: e for p, e in zip(paths, errors) if e is not None}


def _sample_modes(paths: list[str], seed: int) -> tuple[list[str], list[str]]:
    """Modes of a seeded sample of files (header read only), plus the sampled paths."""
    sample = random.Random(seed).sample(paths, min(MODE_SAMPLE_SIZE, len(paths)))
    modes, used = [], []
    for path in sample:
        try:
            with Image.open(path) as img:
                modes.append(img.mode)
                used.append(path)
        except (OSError, ValueError, SyntaxError):
            continue  # bad files are counted by the setup scan; ignore them here
    return modes, used


def _gray_stats(paths: list[str]) -> tuple[tuple[float], tuple[float]]:
    """Pixel mean/std (0..1) of a few grayscale images: the dataset's own normalization."""
    total = total_sq = count = 0.0
    for path in paths[:64]:
        try:  # the pixels training will see (16-bit scaled, alpha on white), not PIL's clipped convert("L")
            arr = np.asarray(load_image(path, 1), dtype=np.float64) / 255.0
        except READ_ERRORS:
            continue
        total, total_sq, count = total + arr.sum(), total_sq + (arr**2).sum(), count + arr.size
    if count == 0:
        return (0.5,), (0.5,)
    mean = total / count
    std = max((total_sq / count - mean**2) ** 0.5, 1e-3)
    # plain floats: numpy scalars in the hyperparameters make the checkpoint unloadable with weights_only=True
    return (round(float(mean), 4),), (round(float(std), 4),)


def _rank_zero() -> bool:
    return not dist.is_available() or not dist.is_initialized() or dist.get_rank() == 0


def _report_skipped(folder: Path, skipped: list[str], errors: dict[str, str]) -> None:
    """One line for a split: `skipped 3 unreadable images in train/ (first: a.png: ...; b.jpg: ...)`."""
    if not skipped:
        return
    first = "; ".join(f"{os.path.relpath(p, folder)}: {errors[p]}" for p in skipped[:BAD_EXAMPLES])
    noun = "image" if len(skipped) == 1 else "images"
    report(f"skipped {len(skipped)} unreadable {noun} in {folder.name}/ (first: {first})")


class ImageFolderSource(DataSource):
    def __init__(self, root: str | os.PathLike, *, seed: int = 0, on_bad_image: str = "skip"):
        if on_bad_image not in ("skip", "error"):
            raise ValueError(f"{setting('on_bad_image')} must be 'skip' or 'error', got {on_bad_image!r}")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist; {LAYOUT_HELP}")
        missing = [s for s in ("train", "val") if not (self.root / s).is_dir()]
        if missing:
            raise FileNotFoundError(
                f"image folder {self.root} has no {' or '.join(s + '/' for s in missing)} "
                f"subfolder; {LAYOUT_HELP}"
            )
        self.on_bad_image = on_bad_image
        self.has_test = (self.root / "test").is_dir()
        # Listing happens here, not in setup(), so layout errors surface before any training.
        self._files = {}
        split_names = ("train", "val", "test") if self.has_test else ("train", "val")
        with_csv = [s for s in split_names if (self.root / s / LABELS_CSV).is_file()]
        if with_csv and len(with_csv) < len(split_names):
            lacking = ", ".join(f"{s}/" for s in split_names if s not in with_csv)
            raise ValueError(f"{self.root}: {LABELS_CSV} is in {', '.join(s + '/' for s in with_csv)} but not in "
                             f"{lacking}; every split folder needs one")
        self.label_tables = {}
        for split in split_names:
            if with_csv:  # read and matched with the files now: no training starts on half-read labels
                classes, paths, labels = scan_labelled_split(self.root / split)
                self.label_tables[split] = read_label_table(self.root / split / LABELS_CSV, paths)
            else:
                classes, paths, labels = scan_split(self.root / split)
            if split == "train":
                self.class_names = classes
            elif classes != self.class_names:
                only_train = sorted(set(self.class_names) - set(classes))
                only_here = sorted(set(classes) - set(self.class_names))
                raise ValueError(
                    f"class folders of {self.root / split} differ from {self.root / 'train'}: "
                    f"only in train: {only_train or 'none'}; only in {split}: "
                    f"{only_here or 'none'}. Every split needs the same class subfolders"
                )
            self._files[split] = (paths, labels)

        self.name = self.root.name or str(self.root)
        self.num_classes = len(self.class_names)
        self.base_resolution = IMAGE_FOLDER_BASE_RESOLUTION
        self.hflip = True
        self.rrc_scale = (0.08, 1.0)
        self._decide_channels(seed)

    def _decide_channels(self, seed: int) -> None:
        modes, sampled = _sample_modes(self._files["train"][0], seed)
        n_gray = sum(m in GRAY_MODES for m in modes)
        if modes and n_gray == len(modes):
            self.in_chans = 1
            self.mean, self.std = _gray_stats(sampled)
            return
        self.in_chans = 3
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        if n_gray:
            # Converting L to RGB loses nothing; the reverse would drop colour information.
            warnings.warn(
                f"{self.root}: {n_gray} of {len(modes)} sampled training images are grayscale "
                "and the rest colour; all images will be converted to RGB (in_chans=3)",
                stacklevel=3,
            )

    def _dataset(self, split: str, bad: dict[str, str]) -> ImageFileDataset:
        paths, labels = self._files[split]
        keep = [i for i, p in enumerate(paths) if p not in bad]
        return ImageFileDataset(
            [paths[i] for i in keep],
            [labels[i] for i in keep],
            mode="L" if self.in_chans == 1 else "RGB",
            on_bad_image=self.on_bad_image,
        )

    def load(self) -> Splits:
        all_paths = [p for paths, _ in self._files.values() for p in paths]
        bad = find_bad_images(all_paths)
        if bad and self.on_bad_image == "error":
            path, err = next(iter(bad.items()))
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise ValueError(
                f"unreadable image {path}: {err}{more}. Fix or delete it, or pass "
                f"{setting('on_bad_image', 'skip')} to leave such files out"
            )
        if bad and _rank_zero():  # every DDP process scans the same files; one report is enough
            for split, (paths, _) in self._files.items():
                _report_skipped(self.root / split, [p for p in paths if p in bad], bad)
        return Splits(
            train=self._dataset("train", bad),
            val=self._dataset("val", bad),
            test=self._dataset("test", bad) if self.has_test else None,
        )
