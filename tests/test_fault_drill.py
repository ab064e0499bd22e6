"""Fault drill (issue 20): a SIGKILL'd run resumes exactly, a full disk loses nothing saved, a model.json
that does not match its weights is refused with both shapes named."""

from __future__ import annotations

import errno
import importlib.util
import json
import random
import shutil
import sys
from pathlib import Path

import pytest
import torch

from effzoo.artifacts.weights import WeightsMismatchError, load_checkpoint
from effzoo.cli import main

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--model", "mobilenetv2_035", "--small-input", "--data", "synthetic", "--batch-size", "32",
        "--num-workers", "0", "--accelerator", "cpu", "--devices", "1", "--no-progress-bar", "--lr", "0.01"]


def load_drill():
    spec = importlib.util.spec_from_file_location("resume_drill", ROOT / "benchmarks" / "resume_drill.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["resume_drill"] = module
    spec.loader.exec_module(module)
    return module


def test_sigkill_at_a_random_step_then_resume_equals_the_uninterrupted_run(tmp_path):
    """A real `effzoo train` process killed with SIGKILL somewhere in its second or third epoch (the moment
    drawn at random), then `--resume`d: same metrics, same best epoch, same weights as never interrupted.
    The recipe has every source of state a resume must restore: shuffling, RandAugment, random erasing,
    dropout and drop-path, label smoothing, warm-up then cosine per step, EMA with its warm-up."""
    drill = load_drill()
    config = tmp_path / "tiny.yaml"
    config.write_text("data_options: {num_samples: 192, size: 16}\n")
    args = [*FAST, "--config", str(config), "--epochs", "3", "--seed", "3", "--ema-decay", "0.9",
            "--rand-augment", "rand-m9-mstd0.5", "--random-erasing", "0.25", "--drop-rate", "0.2",
            "--drop-path-rate", "0.1", "--warmup-epochs", "0.5", "--sched", "cosine", "--no-test"]
    seed = random.randrange(1 << 16)
    result = drill.drill(tmp_path / "drill", args, kills=1, seed=seed, after_first_checkpoint=True)
    ref, (kill,) = result["uninterrupted"], result["kills"]
    assert kill["resumed_from_epoch"] is not None, (seed, kill)
    assert (kill["val_top1"], kill["best_epoch"]) == (ref["val_top1"], ref["best_epoch"]), (seed, result)
    assert kill["max_weight_diff"] < 1e-6, (seed, result)


def fail_checkpoint_writes(monkeypatch, after: int) -> list[str]:
    """`torch.save` into a last.ckpt temp file raises ENOSPC (after writing a few bytes) from call `after` on."""
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        name = getattr(f, "name", str(f))
        if "last.ckpt" in str(name):
            calls.append(str(name))
            if len(calls) > after:
                f.write(b"half a checkpoint")
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    return calls


def test_a_full_disk_mid_checkpoint_keeps_the_previous_one_and_stops_with_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    calls = fail_checkpoint_writes(monkeypatch, after=1)
    assert main(["train", *FAST, "--epochs", "3", "--no-test", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(calls) == 2
    assert err[-1].startswith(f"effzoo train: error: cannot write checkpoint {out / 'last.ckpt'}: no space left on "
                              "device (errno 28); the previous checkpoint is intact"), err
    assert err[-1].endswith("then continue with --resume") and not any("Traceback" in line for line in err)
    # the epoch-1 checkpoint is whole, no temp file is left behind, and the run continues from it
    assert torch.load(out / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] == 0
    assert [p.name for p in out.glob(".*tmp")] == []
    monkeypatch.undo()
    assert main(["train", "--output", str(out), "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 3


def test_a_model_json_that_does_not_match_its_weights_names_both_shapes(tmp_path, capsys):
    folder = tmp_path / "run"
    assert main(["train", *FAST, "--model", "efficientnet", "--phi", "-6", "--epochs", "1", "--no-test",
                 "--limit-train-batches", "1", "--output", str(folder)]) == 0
    meta = json.loads((folder / "model.json").read_text())
    meta["model_args"]["phi"] = -5.0  # edited: one step deeper and wider than the weights
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsMismatchError) as err:
        load_checkpoint(folder)
    message = str(err.value)
    assert "model.json does not match the weights beside it: it describes efficientnet (" in message
    assert "phi=-5.0" in message and err.value.model_shape != err.value.file_shape
    assert f"with {err.value.model_shape}, but model.safetensors holds {err.value.file_shape}" in message
    assert "blocks per stage" in err.value.model_shape and "4 classes from" in err.value.file_shape
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(folder)]) == 2
    assert "model.json does not match the weights beside it" in capsys.readouterr().err
    shutil.rmtree(folder)
