"""Image files read into batches for the `Predictor` (effzoo.evaluation.predict), in loader workers: a file that
cannot be read keeps its error in the batch, beside the readable ones, instead of stopping the run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from ..data.datasets import image_error
from ..data.images import READ_ERRORS, load_image


@dataclass
class ImageBatch:
    indices: list[int]
    paths: list[str]
    sizes: list[tuple[int, int] | None]
    errors: list[str | None]
    x: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.indices)


class ImageFiles(Dataset):
    """(index, path, tensor or None, size, error) per file, decoded in a loader worker."""

    def __init__(self, paths: list[str], channels: int, transform: Any) -> None:
        self.paths, self.channels, self.transform = paths, channels, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, str, torch.Tensor | None, tuple[int, int] | None, str | None]:
        x, size, error = read_image(self.paths[index], self.channels, self.transform)
        return index, self.paths[index], x, size, error


def read_image(path: str, channels: int, transform: Any) -> tuple[torch.Tensor | None, tuple[int, int] | None, str | None]:
    try:
        img = load_image(path, channels)
        return transform(img), img.size, None
    except READ_ERRORS as err:
        return None, None, image_error(err, path)


def collate(items: Sequence[tuple]) -> ImageBatch:
    """(index, path, tensor or None, size, error) items -> one `ImageBatch`; the tensor stacks the readable ones."""
    tensors = [x for _, _, x, _, _ in items if x is not None]
    return ImageBatch(indices=[i for i, *_ in items], paths=[p for _, p, *_ in items], sizes=[s for *_, s, _ in items],
                  errors=[e for *_, e in items], x=torch.stack(tensors) if tensors else None)
