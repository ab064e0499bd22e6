"""What a dataset source must provide, before and after loading.

A source knows its metadata without touching the data (the training code builds the model
from ``num_classes``/``in_chans`` before ``setup()``), and loads raw, untransformed splits on
demand. Dataset-level augmentation choices (flip, crop scale) live here too, because whether a
mirrored sample keeps its label is a property of the data, not of the training recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

from .datasets import ArrayImageDataset, ImageFileDataset

RawDataset = ArrayImageDataset | ImageFileDataset


@dataclass
class Splits:
    train: RawDataset
    val: RawDataset
    test: RawDataset | None = None


class DataSource:
    """Base class; subclasses set the attributes in ``__init__`` and implement ``load``."""

    name: str
    num_classes: int
    class_names: list[str]
    in_chans: int
    base_resolution: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool = True
    rrc_scale: tuple[float, float] = (0.08, 1.0)
    has_test: bool = True
    in_memory: bool = False  # decoded arrays in RAM: loading costs almost nothing, workers only compete
    # split -> `labels_csv.LabelTable`: extra per-image label columns (image folders with labels.csv)
    label_tables: Mapping[str, Any] = MappingProxyType({})

    def prepare(self) -> None:
        """Fetch files if needed. Runs once per node (Lightning's ``prepare_data``)."""

    def load(self) -> Splits:  # pragma: no cover - abstract
        raise NotImplementedError
