"""`effzoo mtl-report` on labels.csv columns of every kind: regression and multi-label tasks get single-task
baselines selected on their own metric, and count in Δm with their direction."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from effzoo.mtl.metrics import selection_metric
from effzoo.tasks import parse_tasks
from effzoo.training import mtl_report as mtl_report_mod
from effzoo.training.config import TrainConfig
from test_labels_csv import write_split

TASKS = "species:cls:3,age:reg:1:0.5:age_years,tags:multilabel:3:0.5"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "pets"
    for split, n, seed in (("train", 16, 0), ("val", 9, 1), ("test", 9, 2)):
        write_split(root / split, n, seed=seed)
    return root


def val_by_epoch(output: Path, key: str) -> dict[int, float]:
    values = {}
    for f in sorted((output / "logs").glob("version_*/metrics.csv")):
        for row in csv.DictReader(f.open()):
            if row.get(key):
                values[int(row["epoch"])] = float(row[key])
    return values


def test_selection_metric_follows_the_main_task_and_its_direction():
    assert selection_metric(None) == ("val_top1", "max")
    assert selection_metric(parse_tasks(TASKS)) == ("val_top1", "max")  # classification first: as always
    assert selection_metric(parse_tasks("age:reg:1:1:age_years")) == ("val_age_mae", "min")
    assert selection_metric(parse_tasks("tags:multilabel:3")) == ("val_tags_map", "max")
    with pytest.raises(ValueError, match="must be a classification task"):  # several tasks: the main one selects
        TrainConfig(data="synthetic", tasks="age:reg:1,main:cls:4")


def test_regression_and_multilabel_tasks_get_baselines_and_count_in_delta_m(folder, tmp_path):
    base = tmp_path / "rep"
    cfg = TrainConfig(model="mobilenetv2_035", small_input=True, data=str(folder), image_size=16, batch_size=8,
                      num_workers=0, epochs=2, lr=0.01, sched="constant", warmup_epochs=0, accelerator="cpu",
                      devices=1, progress_bar=False, output=str(base), tasks=TASKS, rand_augment=None,
                      limit_train_batches=2)
    report, details = mtl_report_mod.mtl_report(cfg, [0], log=lambda *a: None)

    assert [t.task for t in report.tasks] == ["species", "age", "tags"] and not report.mtl_only
    assert report.delta_m_tasks == ["species", "age", "tags"]
    directions = {t.task: t.direction for t in report.tasks}
    assert directions == {"species": 1, "age": -1, "tags": 1}
    for t in report.tasks:
        assert math.isfinite(t.stl_mean) and math.isfinite(t.mtl_mean) and math.isfinite(t.rel_mean), t
    age = report.task("age")  # lower MAE is better: the sign of d follows the direction
    assert age.rel_mean == pytest.approx(-100 * (age.mtl_mean - age.stl_mean) / abs(age.stl_mean))
    assert report.delta_m_mean == pytest.approx(sum(t.rel_mean for t in report.tasks) / 3)

    for task, key, pick in (("age", "val_age_mae", min), ("tags", "val_tags_map", max)):
        run = base / f"stl-{task}" / "seed0"
        meta = json.loads((run / "model.json").read_text())
        assert [t["name"] for t in meta["multitask"]["tasks"]] == [task]  # the same backbone, that head alone
        metrics = json.loads((run / "metrics.json").read_text())
        assert details["stl"][task] == [metrics[f"test_{task}_{key.rsplit('_', 1)[1]}"]]
        # the checkpoint kept is the one its own validation metric, in its direction, selects
        per_epoch = val_by_epoch(run, key)
        assert len(per_epoch) == 2 and per_epoch[metrics["best_epoch"]] == pick(per_epoch.values()), per_epoch
        (best,) = run.glob("best-*.ckpt")
        assert key.removeprefix("val_") in best.name
        ckpt = torch.load(best, map_location="cpu", weights_only=True)
        assert ckpt["effzoo"]["epoch"] == metrics["best_epoch"]
