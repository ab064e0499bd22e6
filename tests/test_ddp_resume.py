"""A resumed multi-process run draws each epoch's sample order as an uninterrupted one does (map-style data,
effzoo's DistributedSampler with its epoch from the checkpointed pass count: effzoo.data.epoch_loader)."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl

from effzoo.data import ClassificationDataModule
from test_shards import IdSource, RecordIds, SampleId


def fit(out: Path, epochs: int, resume: bool = False) -> None:
    out.mkdir(exist_ok=True)
    dm = ClassificationDataModule(IdSource(), batch_size=6, image_size=4, num_workers=1, rand_augment=None)
    dm.train_tf.compose = SampleId()  # the ids pass through the loader untouched
    trainer = pl.Trainer(strategy="ddp_spawn", devices=2, accelerator="cpu", max_epochs=epochs, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         callbacks=[pl.callbacks.ModelCheckpoint(dirpath=out, save_last=True)])
    trainer.fit(RecordIds(str(out)), datamodule=dm, ckpt_path=str(out / "last.ckpt") if resume else None)


def ids(out: Path, rank: int, epoch: int) -> list[int]:
    return json.loads((out / f"rank{rank}-epoch{epoch}.json").read_text())


def test_a_resumed_ddp_run_with_loader_workers_draws_the_uninterrupted_order(tmp_path):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    fit(whole, 2)
    fit(resumed, 1)
    fit(resumed, 2, resume=True)
    for epoch in (0, 1):  # each epoch, the two ranks together see every sample once
        assert sorted(ids(whole, 0, epoch) + ids(whole, 1, epoch)) == list(range(120))
    for rank in (0, 1):
        assert ids(resumed, rank, 1) == ids(whole, rank, 1)
        # before the fix, Lightning's set_epoch came after the resumed pass had drawn its order: epoch 1's again
        assert ids(resumed, rank, 1) != ids(whole, rank, 0)
