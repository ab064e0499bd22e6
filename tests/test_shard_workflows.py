"""`effzoo fixres-finetune`, `effzoo mtl-report` and `effzoo search` take a shard folder as --data like any data:
each runs on digits shards (written once for the module) and its outputs show the shards' data was used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from effzoo.cli import main
from effzoo.data import create_source, write_shards
from effzoo.data.shards import SHARD_META
from effzoo.search import chance_band

ZOO_DIGITS = "effzoo_efficientnet_phi-6_digits"  # a shipped phi=-6 model trained on digits at 16 px
# the cheapest mtl-report recipe of tests/test_mtl_training.py, at the shards' 16 px
MTL_ARGS = ["mtl-report", "--model", "mobilenetv2_035", "--small-input", "--image-size", "16", "--batch-size", "16",
            "--num-workers", "0", "--epochs", "1", "--lr", "0.01", "--sched", "constant", "--warmup-epochs", "0",
            "--accelerator", "cpu", "--devices", "1", "--no-progress-bar", "--rand-augment", "none",
            "--limit-train-batches", "2", "--seeds", "0"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shards") / "digits"
    write_shards(create_source("digits"), folder, encode="raw", shard_samples=400)  # 4 train shards
    return folder


@pytest.fixture(scope="module")
def meta(shards) -> dict:
    return json.loads((shards / SHARD_META).read_text())


def counts(meta: dict) -> dict[str, int]:
    return {split: s["count"] for split, s in meta["splits"].items()}


def assert_trained_on_shards(run: Path, meta: dict) -> dict:
    """The run's model.json records the shards' dataset, split sizes, classes and channels; returns it."""
    model = json.loads((run / "model.json").read_text())
    assert model["data"] == {"dataset": meta["dataset"], "split_sizes": counts(meta)}
    assert model["class_names"] == meta["class_names"]
    assert model["model_args"]["num_classes"] == len(meta["class_names"])
    assert model["model_args"]["in_chans"] == meta["in_chans"]
    return model


def fixres(checkpoint: str, data: str, out: Path) -> dict:
    assert main(["fixres-finetune", "--checkpoint", checkpoint, "--data", data, "--test-res", "16", "--recalibrate-only",
                 "--num-workers", "0", "--output", str(out), "--json", str(out.with_suffix(".json"))]) == 0
    report = json.loads((out / "fixres.json").read_text())
    assert json.loads(out.with_suffix(".json").read_text()) == report
    return report


def test_fixres_finetune_on_shards_scores_the_shards_splits(shards, meta, tmp_path):
    report = fixres(ZOO_DIGITS, str(shards), tmp_path / "from-shards")
    n = counts(meta)
    assert report["data"] == str(shards)
    assert [r["num_samples"] for r in report["sweep_before"] + report["sweep_after"]] == [n["val"], n["val"]]
    assert set(report["test"]) == {"a_train_resolution", "b_chosen_resolution", "c_bn_recalibrated", "e_temperature_scaled"}
    assert all(row["num_samples"] == n["test"] for row in report["test"].values())
    # images and labels read from the shards are those the model was trained on: it recognizes them (chance 10%)
    assert report["test"]["a_train_resolution"]["top1"] > 80
    assert (tmp_path / "from-shards" / "model.safetensors").is_file()
    # a raw-encoded shard folder is the same data as `--data digits`: every number agrees
    direct = fixres(ZOO_DIGITS, "digits", tmp_path / "direct")
    assert {k: v for k, v in report.items() if k != "data"} == {k: v for k, v in direct.items() if k != "data"}


def test_search_on_shards_trains_and_ranks_on_the_shards(shards, meta, tmp_path):
    out, recipe = tmp_path / "search", tmp_path / "recipe.yaml"
    recipe.write_text("limit_train_batches: 2\nnum_workers: 0\n")  # the train split streamed from the shards, 2 batches
    assert main(["search", "--model", "mobilenetv2_035", "--data", str(shards), "--grid-step", "0.1",
                 "--max-candidates", "1", "--epochs", "1", "--batch-size", "32", "--config", str(recipe),
                 "--output", str(out), "--json", str(tmp_path / "s.json")]) == 0
    result = json.loads((tmp_path / "s.json").read_text())
    assert result == json.loads((out / "ranking.json").read_text())
    assert result["data"] == str(shards) and len(result["ranked"]) == 1
    num_classes, num_val = len(meta["class_names"]), counts(meta)["val"]
    assert (result["chance_top1"], result["noise_band_top1"]) == pytest.approx(chance_band(num_classes, num_val))
    top = result["top_ranked"]
    (run,) = (out / "runs").iterdir()
    model = assert_trained_on_shards(run, meta)
    assert model["model_args"]["base_resolution"] == meta["base_resolution"]  # the shards' resolution scaled
    assert (top["params"], top["macs"]) == (model["params"], model["macs"])
    val_top1 = json.loads((run / "metrics.json").read_text())["val_top1"]
    assert top["accuracy"] == {"1": pytest.approx(100 * val_top1)}
    assert val_top1 * num_val == pytest.approx(round(val_top1 * num_val), abs=1e-3)  # scored on the whole val split


def test_mtl_report_on_shards_derives_its_tasks_from_the_class_label(shards, meta, tmp_path, capsys):
    out = tmp_path / "rep"
    tasks = "digit:cls:10,noise:cls:3:0.5:random@1"  # the shards' class label and a random-label probe made from it
    assert main(MTL_ARGS + ["--data", str(shards), "--tasks", tasks, "--output", str(out)]) == 0
    report = json.loads((out / "mtl_report.json").read_text())
    assert report["delta_m_tasks"] == ["digit"] and "noise" in report["mtl_only"]
    n_test = counts(meta)["test"]
    for kind in ("stl-digit", "mtl"):
        run = out / kind / "seed0"
        assert_trained_on_shards(run, meta)
        top1 = json.loads((run / "metrics.json").read_text())["test_digit_top1"]
        assert report["details"]["stl" if kind == "stl-digit" else "mtl"]["digit"] == [pytest.approx(top1)]
        assert top1 * n_test == pytest.approx(round(top1 * n_test), abs=1e-3)  # the shards' test split, all of it
    mtl_tasks = json.loads((out / "mtl" / "seed0" / "model.json").read_text())["multitask"]["tasks"]
    assert [(t["name"], t["source"], t["num_outputs"]) for t in mtl_tasks] == [("digit", "label", 10), ("noise", "random", 3)]
    assert "digit|noise" in report["details"]["gradient_cosine_last_epoch"]
    assert "Δm" in capsys.readouterr().out


def test_mtl_report_refuses_a_labels_csv_task_on_shards_before_training(shards, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(MTL_ARGS + ["--data", str(shards), "--tasks", "digit:cls:10,age:reg:1:0.5:age_years",
                            "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "labels 'age_years' are missing from the data" in err
    assert "shard folder written without labels.csv columns, so it holds only the class label" in err  # why
    assert "shard the image folder with its labels.csv again" in err  # and what to do
    assert not out.exists()  # refused up front: no baseline trained first
