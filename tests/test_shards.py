"""Shard folders (effzoo.data.shards, `effzoo shard`): round trips, resumable writing, the errors of broken
shards, and training and evaluation from shards."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from effzoo.artifacts.weights import read_state_dict
from effzoo.cli import main
from effzoo.data import (ArrayImageDataset, ClassificationDataModule, DataSource, ShardSource, Splits, create_source,
                         is_shard_folder, write_shards)
from effzoo.data import shard_stream
from effzoo.data.fashion_mnist import find_files
from effzoo.data.labels_csv import encode_label_tables
from effzoo.data.shards import PARTIAL, SHARD_META, ShardWriter
from effzoo.tasks import parse_tasks
from effzoo.training.run import run_training
from test_labels_csv import write_split

FMNIST = Path("/usr/share/datasets/fashion-mnist")
LABEL_TASKS = "species:cls:3,age:reg:1:0.5:age_years,tags:multilabel:3:0.5"


def pixels(ds, i: int) -> np.ndarray:
    return np.asarray(ds.load(i) if hasattr(ds, "load") else ds[i][0])


def assert_same_splits(original, shards) -> None:
    for split in ("train", "val", "test"):
        a, b = getattr(original, split), getattr(shards, split)
        assert (a is None) == (b is None), split
        if a is None:
            continue
        assert len(a) == len(b) and np.array_equal(a.labels, b.labels), split
        for i in range(len(a)):
            assert np.array_equal(pixels(a, i), pixels(b, i)), (split, i)


@pytest.mark.parametrize("encode", ["png", "raw"])
def test_digits_round_trip(tmp_path, encode):
    source = create_source("digits")
    write_shards(source, tmp_path / "shards", encode=encode, shard_samples=300)
    shards = create_source(str(tmp_path / "shards"))
    assert type(shards).__name__ == "ShardSource"
    for attr in ("class_names", "in_chans", "base_resolution", "mean", "std", "hflip", "rrc_scale", "has_test"):
        assert tuple(np.atleast_1d(getattr(shards, attr))) == tuple(np.atleast_1d(getattr(source, attr))), attr
    assert len(list((tmp_path / "shards").glob("train-*.tar"))) == -(-len(source.load().train) // 300)
    assert_same_splits(source.load(), shards.load())


@pytest.mark.parametrize("array", [np.arange(784, dtype=np.uint8).reshape(28, 28), np.ones((5, 7, 3), np.uint8),
                                   np.arange(4, dtype=">i4"), np.asfortranarray(np.arange(12, dtype=np.uint8).reshape(3, 4)),
                                   np.zeros((0,), np.uint8)])
def test_raw_samples_decode_like_np_load_also_from_the_header_cache(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    for _ in range(2):  # the second read takes the cached-header path where the header allows it
        got = shard_stream.load_npy(buffer.getvalue())
        assert got.dtype == array.dtype and got.shape == array.shape and np.array_equal(got, array)


def image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3)):
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                img = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
                img.save(root / split / c / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def test_folder_round_trip_keeps_the_file_bytes(tmp_path):
    folder = image_folder(tmp_path / "pets")
    write_shards(create_source(str(folder)), tmp_path / "shards", shard_samples=4)
    original, shards = create_source(str(folder)).load(), create_source(str(tmp_path / "shards")).load()
    assert_same_splits(original, shards)
    for i in range(len(original.train)):  # JPEG and PNG bytes as they were, not re-encoded
        assert shards.train.read_bytes(i) == Path(original.train.paths[i]).read_bytes()
    with tarfile.open(tmp_path / "shards" / "train-000000.tar") as tar:  # WebDataset's layout: key.ext members
        names = tar.getnames()
    assert names[:2] == ["000000000.jpg", "000000000.cls"]


def test_labels_csv_columns_travel_with_the_shards_and_train_every_task(tmp_path):
    for split, n, seed in (("train", 24, 0), ("val", 9, 1), ("test", 9, 2)):
        write_split(tmp_path / "pets" / split, n, seed=seed)
    folder = create_source(str(tmp_path / "pets"))
    write_shards(folder, tmp_path / "shards", encode="png", shard_samples=10)
    shards = create_source(str(tmp_path / "shards"))
    tasks = parse_tasks(LABEL_TASKS)
    want, got = encode_label_tables(folder.label_tables, tasks, False), encode_label_tables(shards.label_tables, tasks, False)
    assert [t.to_dict() for t in got.tasks] == [t.to_dict() for t in want.tasks]  # class names from the same cells
    a, b = folder.load(), shards.load()
    for split in ("train", "val", "test"):
        da, db = getattr(a, split), getattr(b, split)
        assert db.paths[0] == f"{split}/000000000" and len(db) == len(da)
        wa, wb = want.lookup(split, da.paths), got.lookup(split, db.paths)
        for task in wa:  # NaN (a missing regression label) compared as missing on both sides
            assert torch.equal(torch.nan_to_num(wa[task], -7.0), torch.nan_to_num(wb[task], -7.0)), (split, task)
    res = run_training(dict(model="mobilenetv2_035", small_input=True, data=str(tmp_path / "shards"), image_size=16,
                            batch_size=8, num_workers=0, epochs=1, lr=0.01, sched="constant", warmup_epochs=0,
                            accelerator="cpu", devices=1, progress_bar=False, output=str(tmp_path / "run"),
                            tasks=LABEL_TASKS, rand_augment=None, limit_train_batches=3))
    metrics = json.loads((res.output / "metrics.json").read_text())
    assert all(np.isfinite(metrics[f"test_{k}"]) for k in ("species_top1", "age_mae", "tags_map")), metrics
    (tmp_path / "shards" / "val-labels.csv").write_text("file,species\n")
    with pytest.raises(ValueError, match=r"shard .*val-labels.csv is \d+ bytes, effzoo-shards.json says"):
        create_source(str(tmp_path / "shards"))


@pytest.mark.skipif(find_files(FMNIST) is None, reason="needs the dataset-fashion-mnist Debian package")
def test_fashion_mnist_round_trip(tmp_path):
    source = create_source("fashion-mnist")
    write_shards(source, tmp_path / "fm", encode="raw", shard_samples=20000)
    original, shards = source.load(), create_source(str(tmp_path / "fm")).load()
    for split in ("train", "val", "test"):
        a, b = getattr(original, split), getattr(shards, split)
        assert len(a) == len(b) and np.array_equal(a.labels, b.labels)
        for i in np.random.default_rng(0).choice(len(a), 200, replace=False):
            assert np.array_equal(pixels(a, i), pixels(b, i))


def test_a_killed_writer_leaves_no_shard_folder_and_a_rerun_keeps_finished_shards(tmp_path, monkeypatch):
    source = create_source("digits")
    writer = ShardWriter(source, tmp_path / "s", shard_samples=200)
    for n, _ in enumerate(writer):
        if n == 2:
            break  # killed after three shards
    assert not is_shard_folder(tmp_path / "s") and (tmp_path / "s" / PARTIAL).is_file()
    with pytest.raises(ValueError, match="interrupted `effzoo shard` run; run the same command again"):
        create_source(str(tmp_path / "s"))
    import effzoo.data.shards as shards_module

    written = []
    real = shards_module.write_shard
    monkeypatch.setattr(shards_module, "write_shard", lambda path, *a: written.append(path.name) or real(path, *a))
    write_shards(source, tmp_path / "s", shard_samples=200)
    assert written[0] == "train-000003.tar" and len(written) == len(ShardWriter(source, tmp_path / "t", shard_samples=200)) - 3
    assert not (tmp_path / "s" / PARTIAL).exists()
    assert_same_splits(source.load(), create_source(str(tmp_path / "s")).load())


@pytest.fixture
def digit_shards(tmp_path) -> Path:
    write_shards(create_source("digits"), tmp_path / "shards", encode="raw", shard_samples=400)
    return tmp_path / "shards"


def test_a_truncated_shard_is_named(digit_shards):
    shard = digit_shards / "train-000001.tar"
    shard.write_bytes(shard.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"shard .*train-000001.tar is 5000 bytes, effzoo-shards.json says \d+: it is truncated"):
        create_source(str(digit_shards))


def test_a_missing_shard_and_disagreeing_metadata_are_named(digit_shards):
    meta = json.loads((digit_shards / SHARD_META).read_text())
    meta["in_chans"] = 3
    (digit_shards / SHARD_META).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="mean/std have 1/1 values for 3 channels"):
        create_source(str(digit_shards))
    meta["in_chans"] = 1
    (digit_shards / SHARD_META).write_text(json.dumps(meta))
    (digit_shards / "val-000000.tar").unlink()
    with pytest.raises(FileNotFoundError, match="shard .*val-000000.tar is missing"):
        create_source(str(digit_shards))


@pytest.mark.parametrize("kwargs, message", [
    (dict(encode="jpeg"), "encode must be one of keep, png, raw"),
    (dict(shard_samples=0), "shard_samples must be an integer >= 1"),
])
def test_bad_writer_options(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_shards(create_source("digits"), tmp_path / "s", **kwargs)


def test_writing_over_shards_is_refused(digit_shards):
    with pytest.raises(ValueError, match="already holds shards"):
        write_shards(create_source("digits"), digit_shards)


def test_train_and_evaluate_from_shards(tmp_path, digit_shards, capsys):
    res = run_training(dict(model="efficientnet", phi=-4, data=str(digit_shards), epochs=1, num_workers=1,
                            limit_train_batches=4, limit_val_batches=2, accelerator="cpu", devices=1, progress_bar=False,
                            output=str(tmp_path / "run")))
    assert res.datamodule.name == "digits" and res.datamodule.image_size == 16 and "test_top1" in res.metrics
    assert main(["evaluate", "--checkpoint", str(res.output), "--data", str(digit_shards), "--split", "val"]) == 0
    assert "top-1" in capsys.readouterr().out


def test_the_shard_command(tmp_path, capsys):
    assert main(["shard", "--data", "digits", "--output", str(tmp_path / "s"), "--shard-samples", "500"]) == 0
    out = capsys.readouterr().out
    assert "train 1258 images in 3 shards" in out and is_shard_folder(tmp_path / "s")
    log = (tmp_path / "s" / "effzoo-shard.log").read_text().splitlines()
    assert len(log) == 3 + 1 + 1 + 1  # one line per shard (3 train, 1 val, 1 test), then the summary
    assert "train-000002.tar: 258 samples" in log[2] and "done: train 1258 images in 3 shards" in log[-1]
    assert main(["shard", "--data", "digits", "--output", str(tmp_path / "s")]) == 2
    assert "already holds shards" in capsys.readouterr().err


# -- streaming --------------------------------------------------------------------------------------------
class IdSource(DataSource):
    """N samples whose 4x4 pixels carry their own index (pixel [0,0] * 256 + pixel [0,1]): coverage is countable."""

    def __init__(self, n: int = 120) -> None:
        self.n, self.name, self.class_names, self.in_chans = n, "ids", ["a", "b", "c"], 1
        self.num_classes, self.base_resolution, self.mean, self.std = 3, 4, (0.5,), (0.5,)

    def load(self) -> Splits:
        ids = np.arange(self.n)
        images = np.zeros((self.n, 4, 4), np.uint8)
        images[:, 0, 0], images[:, 0, 1] = ids // 256, ids % 256
        return Splits(train=ArrayImageDataset(images, ids % 3), val=ArrayImageDataset(images[:6], ids[:6] % 3))


class SampleId:
    def __call__(self, image: Image.Image) -> torch.Tensor:
        a = np.asarray(image)
        return torch.tensor(int(a[0, 0]) * 256 + int(a[0, 1]))


def id_shards(tmp_path: Path, shard_samples: int, n: int = 120) -> ShardSource:
    write_shards(IdSource(n), tmp_path / f"ids-{shard_samples}", encode="raw", shard_samples=shard_samples)
    return ShardSource(tmp_path / f"ids-{shard_samples}")


def stream_ids(stream, worker: int, workers: int, monkeypatch) -> list[list[int]]:
    monkeypatch.setattr(shard_stream, "get_worker_info", lambda: SimpleNamespace(id=worker, num_workers=workers))
    return [x.tolist() for x, _ in stream]


@pytest.mark.parametrize("world, workers", [(1, 1), (2, 1), (2, 3), (3, 2)])
def test_every_rank_gets_equal_batches_and_every_sample_once(tmp_path, monkeypatch, world, workers):
    source = id_shards(tmp_path, 17)  # 120 samples in 8 shards of 17 and one of 1: uneven for any split
    seen, batches = [], []
    for rank in range(world):
        stream = source.train_stream(SampleId(), batch_size=7, seed=3, drop_last=False)
        stream.set_distributed(rank, world)
        stream.set_epoch(1)
        per_rank = [b for w in range(workers) for b in stream_ids(stream, w, workers, monkeypatch)]
        assert len(per_rank) == len(stream)
        batches.append(len(per_rank))
        seen += [i for b in per_rank for i in b]
    assert len(set(batches)) == 1  # DDP: no rank waits for another at the epoch's end
    assert sorted(seen) == list(range(120))  # 120 divides by 1, 2 and 3 ranks: each sample exactly once


def test_with_drop_last_batches_are_whole_and_equal(tmp_path, monkeypatch):
    source = id_shards(tmp_path, 13, n=101)  # 101 = 2 x 50 + 1: one sample left out per epoch
    counts = []
    for rank in range(2):
        stream = source.train_stream(SampleId(), batch_size=8, seed=0)
        stream.set_distributed(rank, 2)
        got = [b for w in range(2) for b in stream_ids(stream, w, 2, monkeypatch)]
        assert all(len(b) == 8 for b in got) and len(got) == len(stream) == 50 // 8
        counts.append(len(got))
    assert counts[0] == counts[1]


def test_the_order_is_drawn_from_seed_and_epoch(tmp_path, monkeypatch):
    source = id_shards(tmp_path, 17)

    def order(seed: int, epoch: int) -> list[int]:
        stream = source.train_stream(SampleId(), batch_size=10, seed=seed)
        stream.set_epoch(epoch)
        return [i for b in stream_ids(stream, 0, 1, monkeypatch) for i in b]

    assert order(0, 0) == order(0, 0) and sorted(order(0, 0)) == list(range(120))
    assert order(0, 0) != order(0, 1) and order(0, 0) != order(1, 0)
    assert order(0, 0) != list(range(120))  # shuffled by shard order and buffer


def test_a_truncated_shard_is_named_while_streaming(tmp_path, monkeypatch):
    source = id_shards(tmp_path, 60)
    stream = source.train_stream(SampleId(), batch_size=10, seed=0)
    Path(stream.locations[0]).write_bytes(Path(stream.locations[0]).read_bytes()[:9000])
    with pytest.raises(ValueError, match=r"shard .*train-00000\d.tar (cannot be read|ended after)"):
        stream_ids(stream, 0, 1, monkeypatch)


class RecordIds(pl.LightningModule):
    """Records the sample ids each DDP rank trains on, per epoch: OUT/rank<r>-epoch<e>.json."""

    def __init__(self, out: str) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.out, self.seen = out, []

    def training_step(self, batch, batch_idx):
        self.seen += batch[0].tolist()
        return (self.weight * batch[0].float()).mean() * 0.0

    def on_train_epoch_end(self) -> None:
        Path(self.out, f"rank{self.global_rank}-epoch{self.current_epoch}.json").write_text(json.dumps(self.seen))
        self.seen = []

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("shard_samples", [15, 13])  # 8 shards (divides 2 ranks x 2 workers), 10 (does not)
def test_two_process_ddp_epoch_sees_every_sample_once(tmp_path, shard_samples):
    source = id_shards(tmp_path, shard_samples)
    dm = ClassificationDataModule(source, batch_size=6, image_size=4, num_workers=2, rand_augment=None)
    dm.train_tf.compose = SampleId()  # the stream carries the ids through the loader untouched
    trainer = pl.Trainer(strategy="ddp_spawn", devices=2, accelerator="cpu", max_epochs=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0)
    trainer.fit(RecordIds(str(tmp_path)), datamodule=dm)
    ranks = [json.loads((tmp_path / f"rank{r}-epoch0.json").read_text()) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 60
    assert sorted(ranks[0] + ranks[1]) == list(range(120))


def test_resume_from_shards_continues_like_an_uninterrupted_run(tmp_path, digit_shards):
    common = dict(model="mobilenetv2_035", small_input=True, data=str(digit_shards), batch_size=32, num_workers=1,
                  lr=0.01, sched="constant", warmup_epochs=0, accelerator="cpu", devices=1, progress_bar=False,
                  limit_train_batches=4, limit_val_batches=2, test=False, deterministic=True)
    a = run_training({**common, "epochs": 2, "output": str(tmp_path / "a")})
    run_training({**common, "epochs": 1, "output": str(tmp_path / "b")})
    b = run_training({**common, "epochs": 2, "output": str(tmp_path / "b"), "resume": True})
    wa, wb = read_state_dict(a.output / "model.safetensors"), read_state_dict(b.output / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5, msg=k)
