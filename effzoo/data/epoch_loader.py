"""A training DataLoader that learns its pass's epoch when the pass fetches its first batch.

Why: Lightning (2.6) creates a training pass ahead of time, inside `configure_optimizers` when the schedule asks
for `trainer.estimated_stepping_batches`, and on a resumed run that pass serves the next epoch while the loop's
counters still stand in the epoch the checkpoint ended; with loader workers the pass also draws its order as it
is created (workers prefetch at once). So an order drawn from Lightning's epoch at creation repeats the previous
epoch's order after `--resume` (measured with 2 DDP processes and a worker: the resumed epoch 2 saw epoch 1's
order exactly). This loader starts the real pass at the first `next()` and gives the dataset (a `ShardStream`)
or the sampler (a `DistributedSampler`) the epoch from `next_epoch()`: the data module's count of passes begun,
which every checkpoint holds.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from torch.utils.data import DataLoader


class EpochLoader(DataLoader):
    """A DataLoader whose pass starts, and takes `next_epoch()` as its epoch, at its first fetch (see above)."""

    def __init__(self, dataset: Any, next_epoch: Callable[[], int], **loader_kwargs: Any) -> None:
        super().__init__(dataset, **loader_kwargs)
        self._next_epoch = next_epoch

    def __iter__(self) -> Iterator[Any]:
        return _FirstFetch(self)

    def _start(self) -> Iterator[Any]:
        epoch = self._next_epoch()
        for target in (self.dataset, self.sampler):  # a stream orders itself, a map-style dataset its sampler
            if hasattr(target, "set_epoch"):
                target.set_epoch(epoch)
        return super().__iter__()


class _FirstFetch:
    """An iterator that starts its loader's pass at the first `next()`."""

    def __init__(self, loader: EpochLoader) -> None:
        self.loader, self.iterator = loader, None

    def __iter__(self) -> "_FirstFetch":
        return self

    def __next__(self) -> Any:
        if self.iterator is None:
            self.iterator = self.loader._start()
        return next(self.iterator)
