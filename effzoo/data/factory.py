"""``create_datamodule``: dataset name (or folder path) + options -> ClassificationDataModule."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .digits import DigitsSource
from .fashion_mnist import FashionMNISTSource
from .image_folder import ImageFolderSource
from .locations import is_remote
from .modules import ClassificationDataModule
from .shards import PARTIAL, ShardSource, is_shard_folder
from .source import DataSource
from .synthetic import SyntheticSource

DATASET_NAMES = ("digits", "fashion-mnist", "synthetic")
_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist"}
SYNTHETIC_OPTIONS = ("num_classes", "in_chans", "size", "num_samples")


def list_datasets() -> list[str]:
    """Built-in dataset names (a folder path is accepted too)."""
    return list(DATASET_NAMES)


def create_source(
    name: str,
    *,
    data_dir: str | None = None,
    seed: int = 0,
    val_fraction: float | None = None,
    on_bad_image: str = "skip",
    **synthetic_kwargs: Any,
) -> DataSource:
    """Resolve ``name`` to a data source (see ``create_datamodule`` for the arguments)."""
    if not isinstance(name, (str, os.PathLike)) or not str(name):
        raise ValueError(f"dataset name must be a non-empty string, got {name!r}")
    if val_fraction is not None and not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    unknown = sorted(set(synthetic_kwargs) - set(SYNTHETIC_OPTIONS))
    if unknown or (synthetic_kwargs and key != "synthetic"):
        bad = unknown or sorted(synthetic_kwargs)
        raise ValueError(
            f"unexpected option(s) {bad} for dataset {name!r}; only 'synthetic' takes "
            f"{', '.join(SYNTHETIC_OPTIONS)}"
        )

    if key == "digits":
        return DigitsSource(seed=seed, val_fraction=val_fraction)
    if key == "fashion-mnist":
        return FashionMNISTSource(data_dir=data_dir, seed=seed, val_fraction=val_fraction)
    if key == "synthetic":
        return SyntheticSource(seed=seed, val_fraction=val_fraction, **synthetic_kwargs)

    if is_remote(name):  # only shard folders are read from a URL (effzoo.data.locations)
        return ShardSource(str(name))
    path = Path(name).expanduser()
    if path.is_dir():
        if is_shard_folder(path):  # written by `effzoo shard`: its own splits, classes and statistics
            return ShardSource(path)
        if (path / PARTIAL).is_file():
            raise ValueError(f"{path} holds shards of an interrupted `effzoo shard` run; run the same command again "
                             "to finish them (it keeps the finished shards)")
        return ImageFolderSource(path, seed=seed, on_bad_image=on_bad_image)
    if os.sep in str(name) or str(name).startswith((".", "~")):
        raise FileNotFoundError(
            f"dataset folder {path} does not exist; expected a folder with train/ and val/ "
            "class subfolders"
        )
    raise ValueError(
        f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)} "
        "(alias fashion_mnist), or give the path of a folder with train/ and val/ class "
        "subfolders"
    )


def create_datamodule(
    name: str,
    *,
    data_dir: str | None = None,
    batch_size: int = 64,
    image_size: int | None = None,
    eval_image_size: int | None = None,
    crop_pct: float = 0.875,
    interpolation: str = "bicubic",
    num_workers: int | None = None,
    seed: int = 0,
    val_fraction: float | None = None,
    rand_augment: str | None = "rand-m9-mstd0.5",
    random_erasing: float = 0.0,
    mixup: float = 0.0,
    cutmix: float = 0.0,
    label_smoothing: float = 0.1,
    train_limit: int | None = None,
    on_bad_image: str = "skip",
    **synthetic_kwargs: Any,
) -> ClassificationDataModule:
    """Build the data module for ``name``: ``digits``, ``fashion-mnist``, ``synthetic`` or a
    folder path with ``train/`` and ``val/`` (optional ``test/``) class subfolders.

    ``image_size=None`` means the dataset's ``base_resolution``; ``eval_image_size=None`` means
    ``image_size``. ``val_fraction`` is the share of the training pool held out for validation
    (None: the dataset default, 70/15/15 for digits, 0.1 for Fashion-MNIST; folders bring
    their own val/). ``synthetic_kwargs``: ``num_classes``, ``in_chans``, ``size``,
    ``num_samples`` (synthetic only).
    """
    source = create_source(
        name,
        data_dir=data_dir,
        seed=seed,
        val_fraction=val_fraction,
        on_bad_image=on_bad_image,
        **synthetic_kwargs,
    )
    return ClassificationDataModule(
        source,
        batch_size=batch_size,
        image_size=image_size,
        eval_image_size=eval_image_size,
        crop_pct=crop_pct,
        interpolation=interpolation,
        num_workers=num_workers,
        seed=seed,
        rand_augment=rand_augment,
        random_erasing=random_erasing,
        mixup=mixup,
        cutmix=cutmix,
        label_smoothing=label_smoothing,
        train_limit=train_limit,
    )
