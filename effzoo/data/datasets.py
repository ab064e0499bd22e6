"""Map-style datasets yielding ``(transform(PIL image), label)``.

Each dataset is cheap to copy with a different transform or a subset of indices: the train,
eval and FixRes loaders of one split share the same underlying arrays/file lists.
"""

from __future__ import annotations

import copy
import sys
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..wording import setting
from .images import load_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def report(message: str) -> None:
    """One plain line on stderr: a skipped image is worth a line, not Python's warning format
    (`file:line: UserWarning`, then the echoed source line)."""
    print(f"effzoo: {message}", file=sys.stderr, flush=True)


def image_error(err: BaseException, path: str) -> str:
    """PIL's error text without the full path it repeats (`cannot identify image file '/a/b.png'`)."""
    text = (str(err) or type(err).__name__).replace(f" {str(path)!r}", "").replace(f" {str(path)}", "")
    return text.strip() or type(err).__name__


class LabelledImages(Dataset):
    """What every split dataset shares: integer `labels`, a `transform`, cheap copies (`with_transform`, `subset`)."""

    labels: np.ndarray
    transform: Callable | None

    def __len__(self) -> int:
        return len(self.labels)

    def with_transform(self, transform: Callable | None):
        """Shallow copy with another transform (the data itself is shared, not copied)."""
        clone = copy.copy(self)
        clone.transform = transform
        return clone

    def subset(self, indices: Sequence[int]):
        """Shallow copy restricted to ``indices`` (numpy-indexable)."""
        clone = copy.copy(self)
        clone._select(np.asarray(indices, dtype=np.int64))
        return clone

    def _select(self, indices: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _apply(self, image: Image.Image, label: int):
        return (self.transform(image) if self.transform is not None else image), label


class ArrayImageDataset(LabelledImages):
    """uint8 images in an array of shape (N, H, W) (grayscale) or (N, H, W, 3) (RGB).

    ``ids`` are the samples' positions in the original array, kept through ``subset`` so that
    split membership can be checked and reported (datasheets, disjointness tests).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        transform: Callable | None = None,
        ids: np.ndarray | None = None,
    ):
        images = np.asarray(images)
        labels = np.asarray(labels, dtype=np.int64)
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8, got {images.dtype}")
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
            raise ValueError(f"images must be (N, H, W) or (N, H, W, 3), got {images.shape}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels
        self.ids = np.arange(len(labels)) if ids is None else np.asarray(ids, dtype=np.int64)
        self.transform = transform

    @property
    def mode(self) -> str:
        return "L" if self.images.ndim == 3 else "RGB"

    def _select(self, indices: np.ndarray) -> None:
        self.images = self.images[indices]
        self.labels = self.labels[indices]
        self.ids = self.ids[indices]

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index])
        return self._apply(image, int(self.labels[index]))


class ImageFileDataset(LabelledImages):
    """Image files with integer labels, converted to ``mode`` ('L' or 'RGB') on load.

    Unreadable files: with ``on_bad_image="error"`` raise ValueError naming the file; with
    ``"skip"`` report it (one line, once per file) and return the next readable sample instead,
    so one bad file that slipped past the setup scan cannot kill a long run.
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: Sequence[int],
        mode: str = "RGB",
        transform: Callable | None = None,
        on_bad_image: str = "skip",
    ):
        if mode not in ("L", "RGB"):
            raise ValueError(f"mode must be 'L' or 'RGB', got {mode!r}")
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.paths = np.asarray(list(paths), dtype=object)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.mode = mode
        self.transform = transform
        self.on_bad_image = on_bad_image
        self._reported: set[str] = set()  # shared by copies: a file breaking mid-run is told once

    def _select(self, indices: np.ndarray) -> None:
        self.paths = self.paths[indices]
        self.labels = self.labels[indices]

    def load(self, index: int) -> Image.Image:
        """Decode one file fully (so truncation is detected here) in this dataset's mode."""
        # The one conversion `effzoo predict` applies too: EXIF orientation, alpha on white, 16-bit scaled.
        return load_image(self.paths[index], 1 if self.mode == "L" else 3)

    def __getitem__(self, index: int):
        n = len(self)
        for attempt in range(min(n, 32)):
            i = (index + attempt) % n
            try:
                image = self.load(i)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
                if self.on_bad_image == "error":
                    raise ValueError(
                        f"cannot read image {self.paths[i]}: {err}. Fix or delete the file, "
                        f"or pass {setting('on_bad_image', 'skip')}"
                    ) from None
                self._report(str(self.paths[i]), err)
                continue
            return self._apply(image, int(self.labels[i]))
        raise ValueError(
            f"32 consecutive unreadable images starting at {self.paths[index]}; "
            "the dataset looks broken"
        )

    def _report(self, path: str, err: BaseException) -> None:
        if path not in self._reported:
            self._reported.add(path)
            report(f"skipped unreadable image {path}: {image_error(err, path)}")
