"""Single-task baselines vs the multi-task model, paired by seed (the workflow behind `effzoo mtl-report`).

For each seed: every task with a real label source (random-label probes have no meaningful
baseline and are left out of Δm, as mtl.md §5 asks) is trained alone, with the same backbone,
recipe and budget (epochs over the same data), and then the multi-task model of `cfg.tasks` is
trained. A baseline is the multi-task module with that one task, so its checkpoint is selected on
that task's own validation metric in its direction (`mtl.metrics.selection_metric`: top-1 and
micro AP higher, MAE lower). The report compares the
selected models' metric (on the test split by default) per task as a `transfer_report`: each task's
kind brings its metric and direction (`tasks.TASK_METRICS`), so a labels.csv column, regression and
multi-label ones included, is compared and counted in Δm as a built-in source is. Tasks without a
baseline (random labels, or left out through `baselines`) are reported beside the table
(`mtl_only`). The gradient cosine between tasks on the shared parameters (logged by every multi-task
run at the end of each epoch) is collected from the runs' logs as a diagnostic.

Runs that already hold a `metrics.json` are reused, so an interrupted report resumes.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from ..data import ShardSource
from ..mtl.report import TransferReport, transfer_report, write_json
from ..tasks import TASK_METRICS, TaskSpec
from ..wording import setting
from .config import TrainConfig
from .mtl_module import resolve_tasks
from .run import data_source, run_training


def _run(cfg: TrainConfig) -> dict[str, Any]:
    """The metrics of one training run; a finished run (its `metrics.json` exists) is not trained again."""
    done = Path(cfg.output) / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    return dict(run_training(cfg).metrics)


def last_cosines(output: str | Path) -> dict[str, float]:
    """The last logged `cos/a|b` of each task pair in a run's CSV logs."""
    out: dict[str, float] = {}
    for f in sorted(Path(output, "logs").glob("version_*/metrics.csv")):
        with f.open(newline="") as fh:
            for row in csv.DictReader(fh):
                for k, v in row.items():
                    if k and k.startswith("cos/") and v:
                        out[k[4:]] = float(v)
    return out


def metric_of(metrics: dict[str, Any], split: str, task: TaskSpec, where: str) -> float:
    key = f"{split}_{task.name}_{task.metric}"
    if key not in metrics:
        raise ValueError(f"{where}: no {key} in its metrics (has {sorted(metrics)}); "
                         f"with {setting('metric', 'test')} the data needs a test split")
    return float(metrics[key])


def check_tasks_against_data(cfg: TrainConfig) -> None:
    """Refuse, before any run trains, a task whose labels the data lacks (each run would check only its own tasks,
    so a missing column surfaced only after the baselines before it had trained)."""
    source = data_source(cfg)
    try:
        resolve_tasks(source, list(cfg.tasks or ()))
    except ValueError as e:
        if isinstance(source, ShardSource) and not source.label_tables:
            raise ValueError(f"{e}; {cfg.data} is a shard folder written without labels.csv columns, so it holds only "
                             "the class label: give tasks whose labels come from it (label, rotation, random@SEED), "
                             "or shard the image folder with its labels.csv again") from None
        raise


def _cosine_summary(cosines: Sequence[dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Mean, sample std and per-seed values of each task pair's last-epoch gradient cosine."""
    summary = {}
    for k in sorted({k for c in cosines for k in c}):
        xs = [c[k] for c in cosines if k in c]
        m = sum(xs) / len(xs)
        s = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else math.nan
        summary[k] = {"mean": m, "std": s, "per_seed": xs}
    return summary


def mtl_report(cfg: TrainConfig, seeds: Sequence[int], metric: str = "test", noise_band: float = 0.0,
               log: Callable[[str], Any] = print,
               baselines: Sequence[str] | None = None) -> tuple[TransferReport, dict[str, Any]]:
    """Train the baselines and the multi-task model per seed; return (TransferReport, details).

    `baselines` limits the single-task runs to these tasks (e.g. only the main one, to save time;
    the other tasks are then reported as MTL-only and left out of Δm)."""
    if cfg.tasks is None:
        raise ValueError(f"mtl-report needs {setting('tasks')} (at least two tasks)")
    specs = cfg.tasks
    if len(specs) < 2:
        raise ValueError("mtl-report compares a multi-task model with single-task baselines: give >= 2 tasks")
    if metric == "test" and not cfg.test:
        raise ValueError(f"{setting('metric', 'test')} needs {setting('test', True)} (the selected model evaluated on the test split)")
    base = Path(cfg.output or "runs/mtl-report")
    baselined = [t for t in specs if t.source != "random"]
    if baselines is not None:
        unknown = sorted(set(baselines) - {t.name for t in specs})
        if unknown:
            raise ValueError(f"baselines name unknown task(s) {unknown}")
        baselined = [t for t in baselined if t.name in baselines]
    if specs[0] not in baselined:
        raise ValueError(f"the main task {specs[0].name!r} needs a real label source for its baseline")
    check_tasks_against_data(cfg)
    stl: dict[str, list[float]] = {t.name: [] for t in baselined}
    mtl: dict[str, list[float]] = {t.name: [] for t in specs}
    cosines: list[dict[str, float]] = []
    for seed in seeds:
        for t in baselined:
            out = base / f"stl-{t.name}" / f"seed{seed}"
            log(f"mtl-report: seed {seed}: single-task {t.name} -> {out}")
            run_cfg = cfg.replace(tasks=[t.to_dict()], weighting="fixed", weighting_options={}, seed=seed,
                                  output=str(out), resume=False,
                                  main_label_limit=cfg.main_label_limit if t == specs[0] else None)
            stl[t.name].append(metric_of(_run(run_cfg), metric, t, str(out)))
        out = base / "mtl" / f"seed{seed}"
        log(f"mtl-report: seed {seed}: multi-task {','.join(t.name for t in specs)} -> {out}")
        metrics = _run(cfg.replace(seed=seed, output=str(out), resume=False))
        for t in specs:
            mtl[t.name].append(metric_of(metrics, metric, t, str(out)))
        cosines.append(last_cosines(out))
    directions = {t.name: TASK_METRICS[t.kind][1] for t in baselined}
    report = transfer_report(stl, mtl, directions, seeds=list(seeds), noise_band=noise_band)
    details = {"stl": stl, "mtl": mtl, "metric": f"{metric}_top1", "gradient_cosine_last_epoch": _cosine_summary(cosines),
               "task_metrics": {t.name: f"{metric}_{t.name}_{t.metric}" for t in specs},
               "excluded_from_baselines": [t.name for t in specs if t not in baselined], "output": str(base)}
    return report, details


def write_report(report: TransferReport, details: dict[str, Any], path: str | os.PathLike) -> Path:
    """The report as JSON (`mtl.write_json`'s format) with `details` added under "details"; NaN becomes null."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(report, path)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["details"] = json.loads(json.dumps(details, default=str).replace("NaN", "null"))
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path
