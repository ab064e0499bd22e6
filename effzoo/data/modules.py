"""The Lightning data module that every effzoo dataset is served through."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader, DistributedSampler

from ..wording import setting
from .datasets import report
from .epoch_loader import EpochLoader
from .source import DataSource, Splits
from .splits import stratified_subset
from .transforms import (
    build_rand_augment,
    eval_resize_size,
    eval_transform,
    resolve_interpolation,
    train_transform,
)

SPLITS = ("train", "val", "test")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a Slurm or taskset limit), not the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_num_workers(in_memory: bool = False) -> int:
    """Loader worker count when the caller does not choose one.

    In-memory datasets (digits, Fashion-MNIST, synthetic) get none: their loading is an array index
    and a small transform (measured on digits: 24.8 s an epoch with 0 workers, 24.1 s with 1), and a
    worker process only competes with torch's threads for the cores.

    On the 2-core dev machine, RandAugment at 64 px costs ~0.3 ms CPU per image against
    >= 5 ms for a small CNN's training step, so loading is a few percent of an epoch whatever
    the choice; loader-only epochs were equal for 0/1/2 workers within noise and the fastest
    full training epochs came with one worker (it overlaps loading with compute, a second
    one only competes with torch's threads). More cores: leave one for the main process.
    """
    if in_memory:
        return 0
    cores = usable_cores()
    return 1 if cores <= 2 else min(8, cores - 1)


class StageTransform:
    """The train transform, replaceable between epochs. The training dataset holds this object, not the
    transform, so a new `compose` reaches the next epoch's loader (its workers start per epoch)."""

    def __init__(self, compose: Any) -> None:
        self.compose = compose

    def __call__(self, image: Any) -> Any:
        return self.compose(image)

    @property
    def transforms(self) -> list:
        return self.compose.transforms

    def __repr__(self) -> str:
        return repr(self.compose)


class ClassificationDataModule(pl.LightningDataModule):
    """Train/val/test loaders plus the metadata a model needs, known before ``setup()``.

    ``num_classes``, ``in_chans``, ``class_names``, ``base_resolution``, ``mean``, ``std`` and
    ``name`` come from the source at construction. ``mixup_fn`` (timm ``Mixup`` or None) is
    to be applied by the training step to (x, y); it returns soft targets with label smoothing
    already folded in, so use a soft-target cross entropy then, and plain cross entropy with
    ``label_smoothing`` otherwise.
    """

    def __init__(
        self,
        source: DataSource,
        *,
        batch_size: int = 64,
        image_size: int | None = None,
        eval_image_size: int | None = None,
        crop_pct: float = 0.875,
        interpolation: str = "bicubic",
        num_workers: int | None = None,
        seed: int = 0,
        rand_augment: str | None = "rand-m9-mstd0.5",
        random_erasing: float = 0.0,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        label_smoothing: float = 0.1,
        train_limit: int | None = None,
        scale: tuple[float, float] | None = None,
    ):
        super().__init__()
        check_int("batch_size", batch_size, 1)
        if image_size is not None:
            check_int("image_size", image_size, 1)
        if eval_image_size is not None:
            check_int("eval_image_size", eval_image_size, 1)
        if num_workers is not None:
            check_int("num_workers", num_workers, 0)
        if train_limit is not None:
            check_int("train_limit", train_limit, 1)
        eval_resize_size(1, crop_pct)  # validates crop_pct
        resolve_interpolation(interpolation)
        for what, value in (("mixup", mixup), ("cutmix", cutmix)):
            if value < 0:
                raise ValueError(f"{what} is a Beta-distribution alpha >= 0, got {value}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if isinstance(rand_augment, str) and rand_augment.lower() in ("", "none"):
            rand_augment = None

        self.source = source
        self.name = source.name
        self.num_classes = source.num_classes
        self.class_names = list(source.class_names)
        self.in_chans = source.in_chans
        self.base_resolution = source.base_resolution
        self.mean, self.std = tuple(source.mean), tuple(source.std)
        self.has_test = source.has_test

        self.batch_size = batch_size
        self.image_size = int(image_size or source.base_resolution)
        self.eval_image_size = int(eval_image_size or self.image_size)
        self.crop_pct = crop_pct
        self.interpolation = interpolation
        self.num_workers = default_num_workers(source.in_memory) if num_workers is None else num_workers
        self.seed = seed
        self.rand_augment = rand_augment
        self.random_erasing = random_erasing
        self.label_smoothing = label_smoothing
        self.train_limit = train_limit
        # RandomResizedCrop's area range: the dataset's choice unless the recipe overrides it (timm's --scale).
        self.scale = tuple(scale) if scale is not None else tuple(source.rrc_scale)
        if rand_augment:
            build_rand_augment(rand_augment, self.image_size, self.mean)  # fail early on typos
        self.train_tf = StageTransform(self._train_compose(self.image_size, rand_augment))
        self.mixup_fn = self._make_mixup(mixup, cutmix, label_smoothing)
        self._splits: Splits | None = None
        self._train_passes = 0  # train passes begun, streamed or distributed: the next one's epoch (`_next_train_pass`)

    def _train_compose(self, image_size: int, rand_augment: str | None):
        return train_transform(
            image_size, self.in_chans, self.mean, self.std, self.interpolation,
            rand_augment, self.random_erasing, scale=self.scale, hflip=self.source.hflip,
        )  # fmt: skip

    def set_train_stage(self, image_size: int, rand_augment: str | None, mixup: float | None = None) -> None:
        """Train from the next epoch on at `image_size` with this RandAugment spec (and mixup alpha): a stage
        of progressive learning (training.progressive). The eval transform and `image_size`, the model's
        final train size recorded in `data_config`, stay as they are."""
        check_int("image_size", image_size, 1)
        self.train_tf.compose = self._train_compose(int(image_size), rand_augment)
        if mixup is not None and self.mixup_fn is not None:
            # timm's Mixup asserts that some alpha is > 0 when enabled; disabled, it only smooths the labels
            self.mixup_fn.mixup_alpha = mixup
            self.mixup_fn.mixup_enabled = mixup > 0 or self.mixup_fn.cutmix_alpha > 0

    def _make_mixup(self, mixup: float, cutmix: float, label_smoothing: float):
        if mixup <= 0 and cutmix <= 0:
            return None
        from timm.data import Mixup  # deferred: timm takes seconds to import; only mixup/cutmix runs need it

        return Mixup(
            mixup_alpha=mixup,
            cutmix_alpha=cutmix,
            label_smoothing=label_smoothing,
            num_classes=self.num_classes,
        )

    # -- Lightning hooks ---------------------------------------------------------------------
    def prepare_data(self) -> None:
        self.source.prepare()

    def setup(self, stage: str | None = None) -> None:
        """Load the splits once (idempotent), applying ``train_limit`` to the training split."""
        if self._splits is not None:
            return
        splits = self.source.load()
        if self.train_limit is not None and self.train_limit < len(splits.train):
            keep = stratified_subset(splits.train.labels, self.train_limit, self.seed)
            splits.train = splits.train.subset(keep)
        for split in SPLITS:
            ds = getattr(splits, split)
            if ds is not None and len(ds) == 0:
                raise ValueError(f"{self.name}: the {split} split is empty after loading")
        self._splits = splits

    def __getstate__(self) -> dict[str, Any]:
        # Loaded arrays can be tens of MB; ddp_spawn pickles the module into every process and
        # Lightning calls setup() there anyway, so ship the recipe, not the data.
        state = self.__dict__.copy()
        state["_splits"] = None
        return state

    # -- loaders -----------------------------------------------------------------------------
    def _split(self, split: str):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.setup()
        ds = getattr(self._splits, split)
        if ds is None:
            raise ValueError(
                f"{self.name} has no test split (add a test/ folder with the same class "
                "subfolders); the val split is for model selection and is not reused as test"
            )
        return ds

    def _loader(self, dataset, *, shuffle: bool, drop_last: bool, batch_size: int | None = None):
        workers = self.num_workers
        options = dict(
            batch_size=batch_size or self.batch_size,
            drop_last=drop_last,
            num_workers=workers,
            # Training workers start afresh every epoch, seeded from the main process's RNG at that epoch's
            # start: that RNG state is in every checkpoint, so a resumed run draws the same augmentations.
            # Persistent workers would carry their own RNG streams across epochs, which no checkpoint holds
            # (measured: resume after epoch 1 of 3 with one worker ended 0.37 away in weights; without, 0).
            # Evaluation transforms draw nothing, so their workers may persist.
            persistent_workers=workers > 0 and not shuffle,
            pin_memory=False,
        )
        rank, world = self._rank_world()
        if shuffle and world > 1:
            # our own DistributedSampler (Lightning then injects none), its epoch set when a pass starts, from
            # the checkpointed pass count: Lightning's own set_epoch comes too late on a resumed run
            # (effzoo.data.epoch_loader), which then repeated the previous epoch's order on every rank
            sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
            return EpochLoader(dataset, self._next_train_pass, sampler=sampler, **options)
        return DataLoader(dataset, shuffle=shuffle, **options)

    def train_dataloader(self) -> DataLoader:
        if hasattr(self.source, "train_stream") and self.train_limit is None:
            return self._stream_loader()
        ds = self._split("train").with_transform(self.train_tf)
        # Full batches only: a trailing batch of one sample breaks BatchNorm in train mode, and
        # timm's Mixup requires an even batch. Keep a single short batch if that is all there is.
        return self._loader(ds, shuffle=True, drop_last=len(ds) >= self.batch_size)

    def _stream_loader(self) -> DataLoader:
        """A shard folder's train split, streamed (effzoo.data.shard_stream): this rank's slice, whole batches."""
        rank, world = self._rank_world()
        size = self.split_sizes()["train"]
        stream = self.source.train_stream(self.train_tf, self.batch_size, seed=self.seed,
                                          drop_last=size // world >= self.batch_size)
        stream.set_distributed(rank, world)
        readers = world * max(1, self.num_workers)
        if len(stream.locations) < readers and rank == 0:
            report(f"{len(stream.locations)} train shards for {readers} readers ({world} process(es) x "
                   f"{max(1, self.num_workers)} loader worker(s)): readers share shards, each reading past the others' "
                   "samples; write more, smaller shards (effzoo shard --shard-samples) for sequential reads")
        return EpochLoader(stream, self._next_train_pass, batch_size=None, num_workers=self.num_workers,
                           persistent_workers=False)

    def _rank_world(self) -> tuple[int, int]:
        """This process's rank and the number of processes (0, 1 outside a trainer)."""
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)

    def _next_train_pass(self) -> int:
        """The epoch a training pass serves (a stream's, or a distributed sampler's): the passes begun so far, a
        count every checkpoint holds (`state_dict`). Lightning's own epoch counters cannot serve: a resumed run
        fetches its first batch while its loop still stands in the epoch the checkpoint ended."""
        epoch, self._train_passes = self._train_passes, self._train_passes + 1
        return epoch

    def state_dict(self) -> dict[str, Any]:
        return {"train_passes": self._train_passes}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._train_passes = int(state_dict.get("train_passes", 0))

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader("val", self.eval_image_size)

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader("test", self.eval_image_size)

    def eval_dataloader(
        self,
        split: str,
        image_size: int,
        crop_pct: float | None = None,
        *,
        shuffle: bool = False,
        batch_size: int | None = None,
    ) -> DataLoader:
        """Loader over ``split`` with the eval transform at ``image_size``.

        For resolution sweeps (``shuffle=False``) and for FixRes fine-tuning on training images
        with test-time preprocessing (``split="train", shuffle=True``; then full batches only).
        """
        ds = self._split(split).with_transform(self.eval_transform(image_size, crop_pct))
        drop_last = shuffle and len(ds) >= (batch_size or self.batch_size)
        return self._loader(ds, shuffle=shuffle, drop_last=drop_last, batch_size=batch_size)

    def eval_transform(self, image_size: int | None = None, crop_pct: float | None = None):
        """The one eval preprocessing, for this data, at ``image_size`` (default eval size)."""
        return eval_transform(
            image_size or self.eval_image_size,
            self.crop_pct if crop_pct is None else crop_pct,
            self.interpolation,
            self.mean,
            self.std,
        )

    # -- metadata ----------------------------------------------------------------------------
    @property
    def data_config(self) -> dict[str, Any]:
        """timm-style preprocessing config, to store next to weights and in model cards."""
        return {
            "dataset": self.name,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "input_size": (self.in_chans, self.image_size, self.image_size),
            "test_input_size": (self.in_chans, self.eval_image_size, self.eval_image_size),
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
            "mean": self.mean,
            "std": self.std,
            "train_augmentation": {
                "random_resized_crop_scale": self.scale,
                "hflip": self.source.hflip,
                "rand_augment": self.rand_augment,
                "random_erasing": self.random_erasing,
                "mixup": self.mixup_fn.mixup_alpha if self.mixup_fn else 0.0,
                "cutmix": self.mixup_fn.cutmix_alpha if self.mixup_fn else 0.0,
                "label_smoothing": self.label_smoothing,
            },
        }

    def split_sizes(self) -> dict[str, int]:
        """Number of samples per split (after ``train_limit``); loads the data if needed."""
        self.setup()
        present = {s: getattr(self._splits, s) for s in SPLITS}
        return {s: len(ds) for s, ds in present.items() if ds is not None}

    def split_labels(self, split: str) -> np.ndarray:
        """Integer labels of ``split`` in loader order (unshuffled), e.g. for per-class metrics."""
        return self._split(split).labels.copy()


def check_int(name: str, value: Any, minimum: int) -> None:
    """An integer option (a bool is not one); the message names it in the caller's words."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{setting(name)} must be an integer >= {minimum}, got {value!r}")
