"""`effzoo evaluate`'s guards on the shipped tiny digits model: the data defaults to the recorded one, data
the model was not trained for is refused (naming both sides), every evaluation keeps its own plots, and
progress is reported on stderr."""

import io
import json
import re
import shutil
from pathlib import Path

import pytest

from effzoo.cli import main
from effzoo.evaluation.progress import progress, reporting, resolve_label

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "effzoo_efficientnet_phi-6_digits"
PROGRESS_LINE = re.compile(r"^evaluate 16px: \d+/\d+ batches \(\d+%\)(, [\d,]+ img/s)?(, ETA \d+:\d\d)?$", re.M)
MODEL_SIDE = "the model was trained on digits (10 classes 0..9, 1 channel)"


@pytest.fixture
def ckpt(tmp_path) -> Path:
    # a copy: evaluate writes its plots beside the checkpoint, never into the repository
    return Path(shutil.copytree(SHIPPED, tmp_path / "digits"))


def evaluate(ckpt: Path, *extra: str) -> int:
    return main(["evaluate", "--checkpoint", str(ckpt), "--num-workers", "0", "--batch-size", "64", *extra])


def test_data_defaults_to_the_recorded_dataset_and_plots_never_overwrite(ckpt, tmp_path, capsys):
    js = tmp_path / "eval.json"
    assert evaluate(ckpt, "--json", str(js)) == 0  # no --data: model.json's recipe says digits
    result = json.loads(js.read_text())
    assert result["data"] == "digits"
    # the run's own splits again (seed, fractions): the test top-1 the index records
    index = json.loads((SHIPPED.parent / "index.json").read_text())["models"][SHIPPED.name]
    assert result["results"][0]["top1"] == pytest.approx(100 * index["metrics"]["test_top1"], abs=0.01)
    out, err = capsys.readouterr()
    first = ckpt / "evaluation" / "digits_test_res16"
    assert f"plots in {first}" in out and (first / "confusion_matrix.png").is_file()
    assert 1 <= len(PROGRESS_LINE.findall(err)) <= 11 and "/5 batches (100%)" in err  # ~every 10%, not every batch

    assert evaluate(ckpt, "--data", "digits", "--res", "16,20") == 0
    second = ckpt / "evaluation" / "digits_test_res16-20"
    assert {p.name for p in second.iterdir()} == {"confusion_matrix.png", "accuracy_vs_resolution.png"}
    assert (first / "confusion_matrix.png").is_file()  # the first evaluation's plots are still there


@pytest.mark.parametrize("options, reason", [
    ([], "10 classes vs 4, so it cannot be evaluated on this data"),
    (["num_classes=10", "in_chans=3"], "1 channel vs 3, so it cannot be evaluated"),
    (["num_classes=10"], "class names differ; pass --allow-mismatch to evaluate anyway"),
])
def test_data_of_other_classes_or_channels_is_refused(ckpt, capsys, options, reason):
    flags = [a for o in options for a in ("--data-option", o)]
    assert evaluate(ckpt, "--data", "synthetic", "--data-option", "num_samples=40", *flags) == 2
    err = capsys.readouterr().err
    assert MODEL_SIDE in err and "but --data synthetic has" in err and reason in err
    assert not (ckpt / "evaluation").exists()


def test_allow_mismatch_evaluates_other_class_names_with_a_warning(ckpt, capsys):
    assert evaluate(ckpt, "--data", "synthetic", "--data-option", "num_classes=10", "--data-option", "size=16",
                    "--data-option", "num_samples=40", "--allow-mismatch") == 0
    assert "warning: " + MODEL_SIDE in capsys.readouterr().err
    assert (ckpt / "evaluation" / "synthetic_num_classes-10_num_samples-40_size-16_test_res16").is_dir()


def test_without_recorded_data_evaluate_asks_for_data(ckpt, capsys):
    meta = json.loads((ckpt / "model.json").read_text())
    meta.pop("recipe"), meta.pop("data"), meta["pretrained_cfg"].pop("dataset")
    (ckpt / "model.json").write_text(json.dumps(meta))
    assert evaluate(ckpt) == 2
    assert "does not record which data it was trained on: pass --data" in capsys.readouterr().err


def test_datamodule_for_refuses_another_shape_in_library_calls(ckpt):
    from effzoo.artifacts.weights import load_checkpoint
    from effzoo.evaluation.evaluate import DataMismatchError, datamodule_for

    with pytest.raises(DataMismatchError, match=r"but the data synthetic has 4 classes .*: 10 classes vs 4") as e:
        datamodule_for(load_checkpoint(ckpt), "synthetic", num_samples=40)
    assert not e.value.overridable


def test_progress_writes_a_line_per_tenth_only_when_asked():
    stream = io.StringIO()
    assert list(progress(range(20), 20, "evaluate 16px", count=lambda _: 8, stream=stream)) == list(range(20))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].startswith("evaluate 16px: 2/20 batches (10%), ")
    assert PROGRESS_LINE.match(lines[0]) and lines[-1].startswith("evaluate 16px: 20/20 batches (100%)")
    quiet = io.StringIO()
    assert list(progress(range(3), 3, None, stream=quiet)) == [0, 1, 2] and quiet.getvalue() == ""
    unknown = io.StringIO()
    list(progress(iter(range(3)), None, "x", stream=unknown))
    assert unknown.getvalue() == "x: 3 batches\n"
    assert resolve_label(None, "16px") is None
    with reporting("fixres-finetune"):
        assert resolve_label(None, "16px") == "fixres-finetune 16px" and resolve_label("own", "16px") == "own"


def test_commands_take_a_shipped_zoo_name_and_never_write_into_the_zoo(tmp_path, monkeypatch, capsys):
    """CHECKPOINT may be a zoo name (sha256-checked, as in Python); outputs go to runs/<name>/, and an unknown
    name gets the close ones."""
    import effzoo
    from effzoo.artifacts import shipped
    from effzoo.artifacts.zoo_index import checkpoints_dir, sha256_file
    from effzoo.cli import main

    name = "effzoo_efficientnet_phi-6_digits"
    folder = checkpoints_dir() / name
    before = {p.name: sha256_file(p) for p in folder.iterdir() if p.is_file()}
    monkeypatch.chdir(tmp_path)
    assert effzoo.load_checkpoint(name).num_classes == 10
    assert main(["evaluate", "--checkpoint", name, "--res", "16"]) == 0
    assert (tmp_path / "runs" / name / "evaluation").is_dir()
    assert main(["export", "--checkpoint", name, "--format", "torchscript", "--no-check"]) == 0
    assert (tmp_path / "runs" / name / "model.torchscript.pt").is_file()
    assert main(["card", "--checkpoint", name]) == 0
    assert (tmp_path / "runs" / name / "model_card.md").is_file()
    assert main(["fixres-finetune", "--checkpoint", name, "--test-res", "16", "--recalibrate-only",
                 "--output", "runs/fixres"]) == 0
    assert (tmp_path / "runs" / "fixres" / "model.safetensors").is_file()
    # zoo add takes the same forms: here a zoo name copied under a new name into another zoo
    zoo = tmp_path / "myzoo"
    assert main(["zoo", "--root", str(zoo), "add", name, "--name", "copied", "--command", "effzoo train ..."]) == 0
    shipped.unregister_shipped_models(zoo)
    assert sha256_file(zoo / "copied" / "model.safetensors") == before["model.safetensors"]
    assert {p.name: sha256_file(p) for p in folder.iterdir() if p.is_file()} == before
    assert not (folder / "evaluation").exists()
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", "effzoo_efficientnet_phi-6_digit"]) == 2
    err = capsys.readouterr().err
    assert "neither a file or folder nor a shipped zoo model" in err and name in err
