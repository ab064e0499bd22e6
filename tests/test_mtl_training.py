"""`effzoo train --tasks` and `effzoo mtl-report` end to end on tiny synthetic data."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from effzoo import load_checkpoint
from effzoo.cli import main as cli_main
from effzoo.training import mtl_report as mtl_report_mod
from effzoo.training.config import TrainConfig
from effzoo.training.run import build, run_training

TASKS = "main:cls:4,noise:cls:3:0.5:random@1"


def tiny(tmp_path: Path, name: str = "run", **over) -> dict:
    cfg = dict(model="mobilenetv2_035", small_input=True, data="synthetic",
               data_options={"num_samples": 96, "size": 16}, batch_size=16, num_workers=0, epochs=1,
               lr=0.01, sched="constant", warmup_epochs=0, accelerator="cpu", devices=1,
               progress_bar=False, output=str(tmp_path / name), tasks=TASKS, rand_augment=None)
    cfg.update(over)
    return cfg


def logged(output: Path) -> list[dict]:
    rows = []
    for f in sorted((output / "logs").glob("version_*/metrics.csv")):
        rows += list(csv.DictReader(f.open()))
    return rows


def test_train_with_tasks_learns_exports_and_round_trips(tmp_path):
    res = run_training(tiny(tmp_path, epochs=3, data_options={"num_samples": 128, "size": 16},
                            tasks="main:cls:4,aux:cls:4:0.5:label,noise:cls:3:0.2:random@1", opt="adamw", lr=0.003,
                            head_reg="l21", head_reg_strength=1e-3))
    rows = logged(res.output)
    losses = [float(r["train_loss_epoch"]) for r in rows if r.get("train_loss_epoch")]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    for r in rows:  # no NaN anywhere in the logs, weights and cosine logged
        assert all(not math.isnan(float(v)) for v in r.values() if v not in ("", None))
    assert any(r.get("weight/noise") for r in rows) and any(r.get("cos/main|noise") for r in rows)
    assert {"val_top1", "test_top1", "test_main_top1", "test_noise_top1"} <= set(res.metrics)

    meta = json.loads((res.output / "model.json").read_text())
    assert [t["name"] for t in meta["multitask"]["tasks"]] == ["main", "aux", "noise"]
    card = res.output / "model_card.md"
    assert "| noise | classification | 3 | 0.2 |" in card.read_text()
    card.unlink()
    from effzoo.cli import main as effzoo_main
    assert effzoo_main(["card", "--checkpoint", str(res.output)]) == 0  # regenerated: the heads stay in the card
    assert "| noise | classification | 3 | 0.2 |" in card.read_text()
    loaded = load_checkpoint(res.output)
    x = torch.randn(4, 1, 16, 16)
    res.module.model.eval()
    with torch.no_grad():
        want, got = res.module.model(x), loaded(x)
    for k in ("main", "aux", "noise"):
        torch.testing.assert_close(got[k], want[k])
    ckpt = sorted(res.output.glob("best-*.ckpt"))[0]
    with torch.no_grad():
        torch.testing.assert_close(load_checkpoint(ckpt)(x)["main"], want["main"])


def test_all_missing_batch_gives_zero_loss_not_nan(tmp_path):
    cfg, _, module = build(TrainConfig(**tiny(tmp_path, weighting="uncertainty")))
    x = torch.randn(8, 1, 16, 16)
    y = {"main": torch.full((8,), -1, dtype=torch.long), "noise": torch.full((8,), -1, dtype=torch.long)}
    loss = module.training_step((x, y), 0)
    assert torch.isfinite(loss) and float(loss) == 0.0
    y["noise"] = torch.randint(3, (8,))  # only the auxiliary task labelled
    loss = module.training_step((x, y), 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in module.model.parameters() if p.grad is not None)
    assert module.model.heads["main"].weight.grad is None or module.model.heads["main"].weight.grad.abs().sum() == 0


def test_mtl_report_delta_m_from_the_runs_metrics(tmp_path, capsys):
    out = tmp_path / "rep"
    argv = ["mtl-report", "--model", "mobilenetv2_035", "--small-input", "--data", "synthetic", "--batch-size", "16",
            "--num-workers", "0", "--epochs", "1", "--lr", "0.01", "--sched", "constant", "--warmup-epochs", "0",
            "--accelerator", "cpu", "--devices", "1", "--no-progress-bar", "--rand-augment", "none",
            "--limit-train-batches", "2", "--main-label-limit", "20", "--tasks", TASKS, "--seeds", "0", "--output", str(out)]
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("data_options: {num_samples: 64, size: 16}\n")
    assert cli_main(argv + ["--config", str(cfg_file)]) == 0
    stl = json.loads((out / "stl-main" / "seed0" / "metrics.json").read_text())["test_main_top1"]
    mtl = json.loads((out / "mtl" / "seed0" / "metrics.json").read_text())["test_main_top1"]
    report = json.loads((out / "mtl_report.json").read_text())
    assert report["delta_m_mean"] == pytest.approx(100 * (mtl - stl) / stl)
    assert report["delta_m_tasks"] == ["main"] and "noise" in report["mtl_only"]
    assert "main|noise" in report["details"]["gradient_cosine_last_epoch"]
    assert "Δm" in capsys.readouterr().out


def test_mtl_report_pairs_seeds(tmp_path, monkeypatch):
    fake = {("stl-main", 0): 0.50, ("mtl", 0): 0.55, ("stl-main", 1): 0.40, ("mtl", 1): 0.42,
            ("stl-aux", 0): 0.80, ("mtl-aux", 0): 0.80, ("stl-aux", 1): 0.90, ("mtl-aux", 1): 0.81}

    def run(cfg):
        kind, seed = Path(cfg.output).parent.name, cfg.seed
        if kind == "mtl":
            return {"test_main_top1": fake[("mtl", seed)], "test_aux_top1": fake[("mtl-aux", seed)]}
        task = kind[4:]
        return {f"test_{task}_top1": fake[(kind, seed)]}

    monkeypatch.setattr(mtl_report_mod, "_run", run)
    cfg = TrainConfig(**tiny(tmp_path, tasks="main:cls:4,aux:cls:4"))
    report, details = mtl_report_mod.mtl_report(cfg, [0, 1], log=lambda *a: None)
    per_seed = [((0.55 - 0.5) / 0.5 + 0) / 2 * 100, ((0.42 - 0.4) / 0.4 + (0.81 - 0.9) / 0.9) / 2 * 100]
    assert report.delta_m_per_seed == pytest.approx(per_seed)
    assert details["stl"]["aux"] == [0.8, 0.9]


@pytest.mark.parametrize("over, match", [
    (dict(tasks="main:cls:4,aux:cls:4:1:missing"), "missing from the data"),
    (dict(tasks="main:cls:4,aux:cls:3:-1:random"), "weight must be finite and >= 0"),
    (dict(head_reg="frobnicate", head_reg_strength=0.1), "unknown regularizer"),
    (dict(head_reg="l1", head_reg_strength=-1.0), "head_reg_strength"),
    (dict(weighting="pcgrad", strategy="ddp"), "pcgrad"),
    (dict(weighting="pcgrad", precision="16-mixed"), "16-mixed"),
    (dict(tasks="main:cls:7"), "outputs but the data has 4 classes"),
    (dict(tasks="main:reg:1,aux:cls:3:1:random"), "must be a classification task"),
    (dict(mixup=0.2), "mixup"),
])
def test_bad_input_is_a_clear_error(tmp_path, over, match):
    with pytest.raises(ValueError, match=match):
        build(TrainConfig(**tiny(tmp_path, **over)))


def test_cli_reports_bad_tasks_in_one_line(tmp_path, capsys):
    code = cli_main(["train", "--data", "synthetic", "--tasks", "main:cls:4,aux:cls:4:1:nolabels",
                     "--output", str(tmp_path / "x"), "--accelerator", "cpu"])
    assert code == 2
    assert "nolabels" in capsys.readouterr().err


def test_without_tasks_nothing_changes(tmp_path):
    cfg = tiny(tmp_path)
    del cfg["tasks"]
    _, dm, module = build(TrainConfig(**cfg))
    assert type(module).__name__ == "ClassificationModule" and type(dm).__name__ == "ClassificationDataModule"


def test_two_process_cpu_ddp_with_tasks(tmp_path):
    """Heads, masks and a learnable weighting (uncertainty) under Lightning's DDP, 2 CPU processes."""
    res = run_training(tiny(tmp_path, "ddp", strategy="ddp_spawn", devices=2, epochs=2, test=False,
                            weighting="uncertainty", tasks="main:cls:4,aux:cls:4:0.5:label"))
    out = res.output
    ckpt = torch.load(out / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 6  # 96 samples, batch 16 per process, 2 processes: 3 steps per epoch
    assert any("log_var" in k or "weighting" in k for k in ckpt["state_dict"]), list(ckpt["state_dict"])[:5]
    meta = json.loads((out / "model.json").read_text())
    assert [t["name"] for t in meta["multitask"]["tasks"]] == ["main", "aux"]
    weights = [float(r["weight/aux"]) for r in logged(out) if r.get("weight/aux")]
    assert weights and all(math.isfinite(w) for w in weights)
