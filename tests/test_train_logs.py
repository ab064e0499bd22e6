"""What `effzoo train` prints: a summary line, plain progress lines when stdout is not a terminal,
estimates of long runs, Lightning's notices only with --verbose, and a low-resolution warning."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import effzoo.training.progress as progress
from effzoo.training.config import resolve
from effzoo.training.progress import duration
from effzoo.training.run import build, run_training

# Lightning notices that an effzoo run keeps to itself unless --verbose.
NOTICES = ("GPU available", "TPU available", "litlogger", "was configured so", "to estimate number of stepping",
           "exists and is not empty", "smaller than the logging interval", "Total FLOPs")
NUMBER = r"\d+(\.\d+)?"


def everything(out: str, err: str, caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder) -> str:
    """All a run showed: its streams, and Lightning's log records and warnings, which pytest intercepts
    (its log handler on the root logger, its warning recorder) before they reach a stream."""
    return "\n".join([out, err, caplog.text, *(str(w.message) for w in recwarn)])


def tiny(tmp_path: Path, name: str = "run", **over) -> dict:
    """A seconds-long run (as in test_training): a narrow MobileNetV2 on 16-px synthetic gratings."""
    cfg = dict(model="mobilenetv2_035", small_input=True, data="synthetic",
               data_options={"num_samples": 128, "size": 16}, batch_size=32, num_workers=0, epochs=1,
               lr=0.01, sched="constant", warmup_epochs=0, accelerator="cpu", devices=1, test=False,
               output=str(tmp_path / name))
    cfg.update(over)
    return cfg


def test_a_logged_run_prints_plain_lines_and_no_lightning_notices(tmp_path, capfd, caplog, recwarn, monkeypatch):
    # Every epoch counts as long and every run as over an hour, so one short run shows every kind of line.
    monkeypatch.setattr(progress, "LONG_EPOCH_S", 0.0)
    monkeypatch.setattr(progress, "HOUR_S", 0.0)
    run_training(tiny(tmp_path, epochs=2))
    out, err = capfd.readouterr()
    lines = [line for line in out.splitlines() if line.startswith("effzoo train:")]
    assert re.fullmatch(rf"effzoo train: mobilenetv2_035: {NUMBER} K params, {NUMBER} M MACs at 16 px; data "
                        r"synthetic: 128 train / 32 val / 32 test; \d+ CPU cores?; 2 epochs, batch 32", lines[0]), lines
    epochs = [line for line in lines if re.match(r"effzoo train: epoch \d/2:", line)]
    assert len(epochs) == 2, lines
    assert re.fullmatch(rf"effzoo train: epoch 1/2: train loss {NUMBER}, val loss {NUMBER}, val top-1 {NUMBER}%, "
                        rf"{NUMBER} s, \d+ images/s, ETA {NUMBER} s", epochs[0]), epochs[0]
    assert re.fullmatch(rf"effzoo train: epoch 2/2: .*, \d+ images/s", epochs[1]), epochs[1]  # no ETA at the end
    steps = [line for line in lines if re.match(r"effzoo train: epoch 1/2 step", line)]
    assert steps and re.fullmatch(rf"effzoo train: epoch 1/2 step 1/4: \d+ images/s, epoch ETA {NUMBER} s, "
                                  rf"train loss {NUMBER}", steps[0]), steps
    hour = [line for line in lines if "this run will take about" in line]
    assert len(hour) == 1 and re.search(r"on this machine \(\d+ CPU cores?, .* an epoch x 2 epochs\); see --epochs "
                                        r"/ --phi / a GPU \(--accelerator gpu\)$", hour[0]), lines
    printed = everything(out, err, caplog, recwarn)
    for notice in NOTICES:
        assert notice not in printed, notice
    assert "┏" not in out and "Epoch 1/1" not in out  # no progress bar drawn into the log


def test_verbose_brings_lightning_back(tmp_path, capfd, caplog, recwarn):
    run_training(tiny(tmp_path, verbose=True, limit_train_batches=1, limit_val_batches=1))
    out, err = capfd.readouterr()
    printed = everything(out, err, caplog, recwarn)
    for notice in ("GPU available", "litlogger", "exists and is not empty", "Total FLOPs"):
        assert notice in printed, notice
    assert "effzoo train: mobilenetv2_035:" in out  # effzoo's own summary as well


def test_no_progress_bar_still_prints_plain_lines(tmp_path, capfd):
    # --no-progress-bar turns the bar off, not the news: a log still says where the run is.
    run_training(tiny(tmp_path, progress_bar=False, limit_train_batches=1, limit_val_batches=1))
    out, _ = capfd.readouterr()
    assert "effzoo train: mobilenetv2_035:" in out and "effzoo train: epoch 1/" in out


def test_low_resolution_warning_is_one_line(tmp_path, capsys):
    # 8-px data at stride 8 (small_input): a 1x1 final map, which trains without error.
    build(resolve(tiny(tmp_path, data_options={"num_samples": 64, "size": 8})))
    err = capsys.readouterr().err
    assert err == ("effzoo train: warning: training at 8 px with total stride 8 leaves a 1x1 final feature map "
                   "(under 2x2): the network cannot use its later stages; use a larger phi or image_size=16 "
                   "or more\n")  # from Python: the arguments; on the command line: --phi, --image-size 16
    build(resolve(tiny(tmp_path, small_input=False, data_options={"num_samples": 64, "size": 32})))
    err = capsys.readouterr().err
    assert "32 px with total stride 32 leaves a 1x1" in err and "small_input=True (stride 8)" in err
    build(resolve(tiny(tmp_path)))  # 16 px at stride 8: 2x2, no warning
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("seconds, text", [(4.24, "4.2 s"), (42, "42 s"), (200, "3 min 20 s"), (720, "12 min"),
                                           (7 * 3600 + 40 * 60, "7 h 40 min"), (7200, "2 h")])
def test_durations_read_plainly(seconds, text):
    assert duration(seconds) == text
