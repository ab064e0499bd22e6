"""Shard folders at remote locations (effzoo.data.locations): read through webdataset's `gopen`, tested with
`file://` URLs (the only scheme that works without a network); the evaluation splits fetched into the cache."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from effzoo.data import ClassificationDataModule, create_source, write_shards
from effzoo.data import locations
from effzoo.training.run import run_training

pytest.importorskip("webdataset")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("remote") / "shards"
    write_shards(create_source("digits"), root, encode="raw", shard_samples=400)
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("EFFZOO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def batches(loader, n: int) -> list:
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == n:
            return out
    return out


def test_a_url_streams_the_same_batches_as_the_folder(shards, cache):
    local, remote = create_source(str(shards)), create_source(shards.as_uri())
    assert remote.remote and not local.remote and remote.class_names == local.class_names
    a = local.train_stream(None, 16, seed=3)
    b = remote.train_stream(None, 16, seed=3)
    assert b.locations[0].startswith("file://")
    for stream in (a, b):
        stream.set_epoch(1)
        stream.transform = lambda image: np.asarray(image).copy()
    for (xa, ya), (xb, yb) in zip(batches(a, 20), batches(b, 20)):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    assert not cache.exists()  # streaming fetched nothing


def test_training_from_a_url_fetches_only_the_evaluation_splits(tmp_path, shards, cache):
    res = run_training(dict(model="efficientnet", phi=-4, data=shards.as_uri(), epochs=1, num_workers=1,
                            limit_train_batches=3, limit_val_batches=2, accelerator="cpu", devices=1,
                            progress_bar=False, output=str(tmp_path / "run")))
    assert "test_top1" in res.metrics and res.datamodule.split_sizes()["train"] == 1258
    fetched = sorted(p.name for p in cache.rglob("*.tar"))
    assert fetched == ["test-000000.tar", "val-000000.tar"]
    for name in fetched:
        assert next(cache.rglob(name)).read_bytes() == (shards / name).read_bytes()


def test_what_needs_the_remote_train_split_indexed_says_so(shards, cache):
    dm = ClassificationDataModule(create_source(shards.as_uri()), batch_size=8, train_limit=50)
    with pytest.raises(ValueError, match="train split of remote shards is only streamed.*copy the shards"):
        dm.setup()
    dm = ClassificationDataModule(create_source(shards.as_uri()), batch_size=8)
    with pytest.raises(ValueError, match="only streamed"):
        dm.split_labels("train")


def test_a_remote_shard_of_the_wrong_size_never_lands_in_the_cache(tmp_path, shards, cache):
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in shards.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    source = create_source(copy.as_uri())  # remote metadata: sizes are checked when fetched
    (copy / "val-000000.tar").write_bytes((shards / "val-000000.tar").read_bytes()[:3000])
    with pytest.raises(ValueError, match=r"val-000000.tar is 3000 bytes, its metadata says \d+: it is truncated"):
        source.split("val")
    assert not list(cache.rglob("*.tar")) and not list(cache.rglob("*.tmp"))


def test_remote_errors_name_the_location(tmp_path, cache):
    with pytest.raises(FileNotFoundError, match=r"effzoo-shards.json cannot be read .* written by `effzoo shard`"):
        create_source((tmp_path / "nothing").as_uri())
    with pytest.raises(ValueError, match="cannot be read .* https://, s3://, gs:// or file://"):
        create_source("nosuchscheme://host/shards")


def test_s3_goes_through_the_aws_cli_as_webdataset_documents(monkeypatch):
    module = importlib.import_module("webdataset.gopen")  # the package's `gopen` attribute is the function

    opened = []
    monkeypatch.setattr(module, "gopen", lambda url, mode: opened.append(url) or open(sys.executable, "rb"))
    locations.open_location("s3://bucket/shards/train-000000.tar").close()
    locations.open_location("https://host/shards/train-000000.tar").close()
    assert opened == ["pipe:aws s3 cp s3://bucket/shards/train-000000.tar -", "https://host/shards/train-000000.tar"]


def test_labels_csv_columns_of_remote_shards_are_fetched_with_their_split_counts(tmp_path, cache):
    from test_labels_csv import write_split

    for split, n in (("train", 12), ("val", 6)):
        write_split(tmp_path / "pets" / split, n)
    write_shards(create_source(str(tmp_path / "pets")), tmp_path / "shards", shard_samples=5)
    local, remote = create_source(str(tmp_path / "shards")), create_source((tmp_path / "shards").as_uri())
    assert set(remote.label_tables) == {"train", "val"}
    for split in ("train", "val"):
        assert remote.label_tables[split].rows == local.label_tables[split].rows
        assert remote.label_tables[split].file.is_relative_to(cache)
