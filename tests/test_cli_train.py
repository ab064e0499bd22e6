"""`effzoo train` end to end through `effzoo.cli.main`, config files, overrides and user errors."""

from __future__ import annotations

import json

import pytest
import yaml

from effzoo.cli import main

FAST = ["--model", "mobilenetv2_035", "--small-input", "--data", "synthetic", "--batch-size", "32",
        "--num-workers", "0", "--accelerator", "cpu", "--devices", "1", "--no-progress-bar", "--lr", "0.01"]


def test_train_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    # --progress-bar: captured output is no terminal, so the run prints plain lines instead of a bar
    assert main(["train", *FAST, "--progress-bar", "--epochs", "1", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "done" in printed and "effzoo train: mobilenetv2_035: " in printed
    assert "effzoo train: epoch 1/1: train loss " in printed
    for name in ("model.safetensors", "model.json", "metrics.json", "model_card.md", "config.yaml", "last.ckpt"):
        assert (out / name).is_file(), name
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"] == "mobilenetv2_035" and saved["batch_size"] == 32 and saved["lr"] == 0.01
    meta = json.loads((out / "model.json").read_text())
    assert meta["pretrained_cfg"]["class_names"] == [f"class_{i}" for i in range(4)]
    assert {"val_top1", "val_top5", "test_top1", "test_top5"} <= set(meta["metrics"])


def test_config_file_then_flags_override(tmp_path):
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text("epochs: 5\nweight_decay: 1e-4\nlabel_smoothing: 0.2\nbatch_size: 16\n")
    out = tmp_path / "run"
    # --epochs overrides the file; 1e-4 (a string to YAML) is read as a number.
    assert main(["train", "--config", str(cfg), *FAST, "--epochs", "1", "--output", str(out)]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["epochs"] == 1 and saved["weight_decay"] == 1e-4 and saved["label_smoothing"] == 0.2
    assert saved["batch_size"] == 32  # the flag wins over the file


def test_resume_picks_up_the_saved_config(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *FAST, "--epochs", "1", "--no-test", "--output", str(out)]) == 0
    assert main(["train", "--output", str(out), "--resume", "--epochs", "2"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"] == "mobilenetv2_035" and saved["epochs"] == 2
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 2


@pytest.mark.parametrize("args, message", [
    (["--data", "/no/such/folder"], "does not exist"),
    (["--resume"], "no checkpoint"),
    (["--model", "efficientnet", "--phi", "-4", "--no-small-input"], "phi too small"),
    (["--model", "efficientnet", "--phi", "12"], "phi too large"),
    (["--epochs", "0"], "--epochs must be > 0"),
])
def test_user_errors_are_one_line(tmp_path, capsys, args, message):
    assert main(["train", *FAST, "--output", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.startswith("effzoo train: error:")


def test_unknown_key_in_config_file(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("epochs: 1\nlearning_rate: 0.1\n")
    assert main(["train", "--config", str(cfg), *FAST, "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'learning_rate'" in err and "valid keys:" in err and "lr_base" in err


def test_refuses_existing_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *FAST, "--epochs", "1", "--no-test", "--output", str(out)]) == 0
    assert main(["train", *FAST, "--epochs", "1", "--output", str(out)]) == 2
    assert "use --resume or another --output" in capsys.readouterr().err


def test_shipped_configs_load_and_match_the_builtin_recipes():
    from pathlib import Path

    from effzoo.training.config import DATA_RECIPES, load_yaml, resolve

    root = Path(__file__).resolve().parents[1] / "configs"
    for data, name in (("digits", "digits"), ("fashion-mnist", "fashion_mnist")):
        cfg = resolve(load_yaml(root / f"{name}.yaml")).to_dict()
        assert {k: cfg[k] for k in DATA_RECIPES[data]} == DATA_RECIPES[data], name
    paper = resolve(load_yaml(root / "efficientnet_imagenet.yaml"))
    assert (paper.opt, paper.lr_base, paper.decay_rate, paper.decay_epochs, paper.warmup_epochs) == ("rmsproptf", 0.016, 0.97, 2.4, 5)
    assert (paper.ema_decay, paper.label_smoothing, paper.drop_path_rate, paper.epochs) == (0.9999, 0.1, 0.2, 350)
    assert (paper.weight_decay, paper.opt_eps, paper.small_input) == (1e-5, 1e-3, False)


def test_help_names_pair_options_as_pairs(capsys):
    # --scale takes low,high: a generic "A,B,G" metavar (the coefficients' triple) would mislead.
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--scale LO,HI" in out and "--coefficients A,B,G" in out
    assert "fashion-mnist) (default: None)" not in out


def test_help_shows_the_defaults_a_run_gets(capsys):
    """Defaults that come from a data recipe are shown as such; an empty default says what it means."""
    from effzoo.training.config import DATA_RECIPES

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    digits, fashion = DATA_RECIPES["digits"]["epochs"], DATA_RECIPES["fashion-mnist"]["epochs"]
    assert f"training epochs (default: data recipe: digits {digits}, fashion-mnist {fashion}; else 30)" in out
    assert "optimizer (timm names) (default: data recipe: digits adamw, fashion-mnist adamw; else rmsproptf)" in out
    assert "(default: None)" not in out and "else None" not in out
