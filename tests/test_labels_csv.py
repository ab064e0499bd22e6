"""Multi-task training on your own labels: an image folder's `labels.csv` (effzoo.data.labels_csv)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from effzoo import load_checkpoint
from effzoo.cli import main as cli_main
from effzoo.data import create_source
from effzoo.data.labels_csv import LabelTable, encode_label_tables
from effzoo.mtl.metrics import MaskedMAE, MaskedMultilabelAP
from effzoo.tasks import parse_tasks
from effzoo.training import mtl_report as mtl_report_mod
from effzoo.training.config import TrainConfig
from effzoo.training.run import build, run_training

HEADER = ["file", "species", "age_years", "tags"]
SPECIES = ["cat", "dog", "fox"]
TASKS = "species:cls:3,age:reg:1:0.5:age_years,tags:multilabel:3:0.5,rot:cls:4:0.2:rotation"


def row(i: int, name: str) -> list[str]:
    """Names, numbers, multilabel cells and empty (missing) cells in a fixed pattern."""
    age = "" if i % 4 == 3 else f"{1 + i % 5}.5"
    tags = ["", "indoor", "indoor|sleeping", "|", "outdoor"][i % 5]  # "|": labelled, no tag
    return [name, SPECIES[i % 3], age, tags]


def write_split(folder: Path, n: int, rows=row, seed: int = 0, header=HEADER) -> list[list[str]]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    table = []
    for i in range(n):
        name = f"img{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / name)
        table.append(rows(i, name))
    write_csv(folder, [header] + table)
    return table


def write_csv(folder: Path, lines: list[list[str]]) -> None:
    with (folder / "labels.csv").open("w", newline="") as f:
        csv.writer(f).writerows(lines)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "pets"
    for split, n, seed in (("train", 24, 0), ("val", 9, 1), ("test", 9, 2)):
        write_split(root / split, n, seed=seed)
    return root


def tiny(root: Path, out: Path, **over) -> dict:
    cfg = dict(model="mobilenetv2_035", small_input=True, data=str(root), image_size=16, batch_size=8,
               num_workers=0, epochs=1, lr=0.01, sched="constant", warmup_epochs=0, accelerator="cpu", devices=1,
               progress_bar=False, output=str(out), tasks=TASKS, rand_augment=None, limit_train_batches=3)
    cfg.update(over)
    return cfg


def test_labels_csv_trains_reports_every_task_and_reloads_with_named_heads(folder, tmp_path):
    res = run_training(tiny(folder, tmp_path / "run"))
    metrics = json.loads((res.output / "metrics.json").read_text())
    for split in ("val", "test"):  # one metric per task and split, the rotation auxiliary task included
        for key in ("species_top1", "age_mae", "tags_map", "rot_top1"):
            assert math.isfinite(metrics[f"{split}_{key}"]), key
    assert 0 <= metrics["test_rot_top1"] <= 1 and metrics["test_age_mae"] > 0

    tasks = {t["name"]: t for t in json.loads((res.output / "model.json").read_text())["multitask"]["tasks"]}
    assert tasks["species"]["class_names"] == SPECIES and tasks["species"]["source"] == "species"
    assert tasks["tags"]["class_names"] == ["indoor", "outdoor", "sleeping"]
    assert tasks["age"]["source"] == "age_years" and tasks["age"]["class_names"] is None

    loaded = load_checkpoint(res.output)
    assert [t.class_names for t in loaded.tasks][:2] == [tuple(SPECIES), None]
    x = torch.randn(2, 1, 16, 16)
    res.module.model.eval()
    with torch.no_grad():
        want, got = res.module.model(x), loaded(x)
    assert {k: tuple(v.shape) for k, v in got.items()} == {"species": (2, 3), "age": (2, 1), "tags": (2, 3),
                                                          "rot": (2, 4)}
    for k in want:
        torch.testing.assert_close(got[k], want[k])
    assert "| age | regression | 1 | 0.5 | age_years | mae " in (res.output / "model_card.md").read_text()


def test_cells_become_labels_with_missing_ones_masked(folder):
    source = create_source(str(folder))
    csv_labels = encode_label_tables(source.label_tables, parse_tasks(TASKS), has_classes=False)
    paths = [str(folder / "train" / f"img{i:03d}.png") for i in (0, 1, 2, 3, 4)]
    y = csv_labels.lookup("train", paths)
    assert y["species"].tolist() == [0, 1, 2, 0, 1]  # cat, dog, fox by sorted name
    assert y["age"][:3].tolist() == [1.5, 2.5, 3.5] and math.isnan(y["age"][3])  # empty cell: missing
    tags = y["tags"]  # vocabulary indoor, outdoor, sleeping
    assert torch.isnan(tags[0]).all()  # empty: missing
    assert tags[1].tolist() == [1, 0, 0] and tags[2].tolist() == [1, 0, 1]
    assert tags[3].tolist() == [0, 0, 0] and tags[4].tolist() == [0, 1, 0]  # "|": labelled, no tag


def test_given_class_order_multi_output_regression_and_index_range():
    table = LabelTable(Path("t/train/labels.csv"), ["kind", "xy"],
                       {"a.png": (2, ["b", "1|2.5"]), "b.png": (3, ["", ""]), "c.png": (4, ["c", "-1|0"])})
    tasks = parse_tasks([{"name": "kind", "num_outputs": 3, "class_names": ["c", "b", "a"]},
                         {"name": "xy", "kind": "regression", "num_outputs": 2}])
    y = encode_label_tables({"train": table}, tasks, has_classes=False).lookup("train", ["a.png", "b.png", "c.png"])
    assert y["kind"].tolist() == [1, -1, 0]  # the task's own order, not sorted
    assert y["xy"][0].tolist() == [1.0, 2.5] and torch.isnan(y["xy"][1]).all() and y["xy"][2].tolist() == [-1, 0]
    table.rows["a.png"] = (2, ["7", "1|2"])
    table.rows["c.png"] = (4, ["0", "3"])  # one number for a 2-output head
    with pytest.raises(ValueError, match=r"'xy': 1 cell\(s\) that are not 2 numbers x\|x \(line 4: '3'\)"):
        encode_label_tables({"train": table}, parse_tasks("xy:reg:2"), has_classes=False)
    with pytest.raises(ValueError, match=r"'kind': 1 value\(s\) that are not class indices 0..2 \(line 2: '7'\)"):
        encode_label_tables({"train": table}, parse_tasks("kind:cls:3"), has_classes=False)


def test_class_subfolders_and_integer_columns(tmp_path):
    root = tmp_path / "animals"
    for split in ("train", "val"):
        lines = [["file", "size"]]
        for c, cls in enumerate(("bird", "cat")):
            (root / split / cls).mkdir(parents=True)
            for i in range(4):
                Image.new("L", (16, 16), 40 * i).save(root / split / cls / f"{i}.png")
                lines.append([f"{cls}/{i}.png", str((i + c) % 3)])
        write_csv(root / split, lines)
    _, dm, module = build(TrainConfig(**tiny(root, tmp_path / "run", tasks="animal:cls:2,size:cls:3")))
    assert [(t.source, t.class_names) for t in dm.tasks] == [("label", None), ("size", None)]
    ds = dm.train_dataloader().dataset
    i = list(ds.base.paths).index(str(root / "train" / "cat" / "2.png"))
    assert int(ds[i][1]["animal"]) == 1 and int(ds[i][1]["size"]) == 0  # folder class, then the column
    assert module.tasks == dm.tasks


def edit(folder: Path, split: str, change) -> None:
    with (folder / split / "labels.csv").open(newline="") as f:
        lines = list(csv.reader(f))
    write_csv(folder / split, change(lines))


def set_cell(split: str, line: int, column: int, value: str):
    def change(folder: Path) -> None:
        def at(lines):
            lines[line - 1][column] = value
            return lines
        edit(folder, split, at)
    return change


@pytest.mark.parametrize("change, tasks, match", [
    (lambda f: edit(f, "train", lambda ls: ls + [["gone.png", "cat", "1", ""]]), TASKS,
     r"train/labels.csv: 1 row\(s\) name no image file .*line 26: gone.png"),
    (lambda f: Image.new("L", (16, 16)).save(f / "val" / "extra.png"), TASKS,
     r"val/labels.csv has no row for 1 image\(s\) .*\(extra.png\)"),
    (None, "species:cls:3,w:reg:1:1:weight_kg",
     r"task 'w' reads column 'weight_kg', which .*train/labels.csv does not have "
     r"\(columns: species, age_years, tags\)"),
    (set_cell("train", 5, 2, "old"), TASKS,
     r"train/labels.csv column 'age_years': 1 cell\(s\) that are not a number .*line 5: 'old'"),
    (set_cell("val", 3, 1, "wolf"), TASKS,
     r"val/labels.csv column 'species': 1 name\(s\) the train split never uses .*line 3: 'wolf'"),
    (None, "species:cls:5", r"column 'species' holds 3 distinct names .* use species:classification:3"),
    (lambda f: (f / "test" / "labels.csv").unlink(), TASKS, r"labels.csv is in train/, val/ but not in test/"),
    (None, "kind:cls:3", r"task 'kind' reads the folder's classes .* no class subfolders"),
    (lambda f: edit(f, "train", lambda ls: ls[:3] + [ls[3][:2]] + ls[4:]), TASKS,
     r"train/labels.csv line 4: 2 cells, but the header has 4"),
    (None, None, r"no class subfolders, only labels.csv columns \(species, age_years, tags\)"),
])
def test_bad_labels_are_one_clear_error_before_training(folder, tmp_path, change, tasks, match):
    if change is not None:
        change(folder)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=match):
        run_training(tiny(folder, out, tasks=tasks))
    assert not out.exists()  # nothing written, nothing trained


def test_cli_prints_the_labels_error_in_one_line(folder, tmp_path, capsys):
    set_cell("train", 5, 2, "old")(folder)
    code = cli_main(["train", "--data", str(folder), "--tasks", TASKS, "--output", str(tmp_path / "x"),
                     "--accelerator", "cpu", "--model", "mobilenetv2_035", "--image-size", "16"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "line 5: 'old'" in err and len(err.splitlines()) == 1, err


def test_mtl_report_compares_csv_columns_by_their_metric(folder, tmp_path, monkeypatch):
    values = {"stl-species": {"test_species_top1": 0.5}, "stl-rot": {"test_rot_top1": 0.8},
              "stl-age": {"test_age_mae": 2.0}, "stl-tags": {"test_tags_map": 0.5}}

    def run(cfg):
        kind = Path(cfg.output).parent.name
        return values.get(kind) or {"test_species_top1": 0.6, "test_age_mae": 1.5, "test_tags_map": 0.7,
                                    "test_rot_top1": 0.6}

    monkeypatch.setattr(mtl_report_mod, "_run", run)
    cfg = TrainConfig(**tiny(folder, tmp_path / "rep"))
    report, details = mtl_report_mod.mtl_report(cfg, [0], log=lambda *a: None)
    assert [t.task for t in report.tasks] == ["species", "age", "tags", "rot"]
    assert report.task("species").rel_mean == pytest.approx(20.0) and report.task("rot").rel_mean == pytest.approx(-25.0)
    # MAE falls from 2.0 to 1.5: MTL better (+25%); AP rises from 0.5 to 0.7: +40%; all four count in Δm
    assert report.task("age").rel_mean == pytest.approx(25.0) and report.task("tags").rel_mean == pytest.approx(40.0)
    assert report.delta_m_mean == pytest.approx((20 + 25 + 40 - 25) / 4) and not report.mtl_only
    assert details["task_metrics"]["age"] == "test_age_mae"


def test_masked_metrics_ignore_missing_labels():
    mae = MaskedMAE()
    mae.update(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([1.5, math.nan, 1.0]))
    assert float(mae.compute()) == pytest.approx(1.25)
    ap = MaskedMultilabelAP(2)
    ap.update(torch.tensor([[2.0, -1.0], [-1.0, 5.0]]), torch.tensor([[1.0, math.nan], [0.0, math.nan]]))
    assert float(ap.compute()) == pytest.approx(1.0)  # only the first label counts: ranked perfectly
