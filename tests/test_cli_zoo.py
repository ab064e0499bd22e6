"""End to end on a tiny trained run: evaluate, fixres-finetune and search through the `effzoo` CLI."""

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

from effzoo.artifacts.weights import load_checkpoint
from effzoo.cli import main
from effzoo.training.config import from_dict
from effzoo.training.run import run_training

TINY = {"model": "mobilenetv2_035", "data": "synthetic", "epochs": 1, "batch_size": 32, "progress_bar": False,
        "num_workers": 0, "data_options": {"size": 16, "num_samples": 96}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "tiny"
    run_training({**TINY, "output": str(out)})
    return out


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_evaluate_sweeps_resolutions_and_writes_json_and_plots(trained, tmp_path, capsys):
    js = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(trained), "--data", "synthetic", "--res", "24,16",
                 "--json", str(js), "--output", str(tmp_path / "plots"), "--num-workers", "0"]) == 0
    rows = json.loads(js.read_text())["results"]
    assert [r["resolution"] for r in rows] == [16, 24]
    assert all(len(r["per_class_top1"]) == 4 and sum(map(sum, r["confusion_matrix"])) == r["num_samples"] for r in rows)
    assert rows[1]["macs"] > rows[0]["macs"]
    assert (tmp_path / "plots" / "confusion_matrix.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "accuracy_vs_resolution.png").is_file()
    assert "per-class top-1" in capsys.readouterr().out
    assert json.loads(js.read_text())["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # --device auto


def test_evaluate_device_errors_name_the_device_before_any_work(trained, capsys):
    from effzoo.evaluation.evaluate import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    bad = [("tpu", "unknown device 'tpu'"), ("meta", "unsupported device 'meta'")]
    if not torch.cuda.is_available():
        bad.append(("cuda", "torch sees no CUDA GPU here: use --device cpu"))
    for device, message in bad:
        assert main(["evaluate", "--checkpoint", str(trained), "--data", "synthetic", "--device", device]) == 2
        assert message in capsys.readouterr().err


def test_fixres_finetune_writes_a_new_model_with_its_test_resolution(trained, tmp_path, capsys):
    before = digest(trained)
    out = tmp_path / "fixres"
    assert main(["fixres-finetune", "--checkpoint", str(trained), "--data", "synthetic", "--sweep", "16,20,24",
                 "--epochs", "1", "--output", str(out), "--num-workers", "0"]) == 0
    assert digest(trained) == before  # the input checkpoint is never modified
    assert re.search(r"^fixres-finetune 20px: \d+/\d+ batches \(100%\)", capsys.readouterr().err, re.M)  # sweep progress
    report = json.loads((out / "fixres.json").read_text())
    assert [r["resolution"] for r in report["sweep_before"]] == [16, 20, 24] == [r["resolution"] for r in report["sweep_after"]]
    chosen = report["test_resolution"]
    assert chosen == max(report["sweep_before"], key=lambda r: (r["top1"], -r["resolution"]))["resolution"]
    assert set(report["test"]) == {"a_train_resolution", "b_chosen_resolution", "c_bn_recalibrated", "d_finetuned",
                                   "e_temperature_scaled"}
    # the temperature (fitted on val) keeps every prediction: same top-1 as the fine-tuned model, NLL no worse on val
    assert report["test"]["e_temperature_scaled"]["top1"] == report["test"]["d_finetuned"]["top1"]
    assert report["calibration"]["temperature"] > 0
    model = load_checkpoint(out)
    assert model.pretrained_cfg["test_input_size"][-1] == chosen and model.pretrained_cfg["input_size"][-1] == 16
    meta = json.loads((out / "model.json").read_text())
    assert meta["test_resolution"] == chosen and meta["fixres"]["train_resolution"] == 16
    card = (out / "model_card.md").read_text()
    assert str(chosen) in card


@pytest.mark.parametrize("extra, message", [
    (["--sweep", "16,x"], "could not parse"),
    (["--test-res", "4"], "total stride"),
])
def test_fixres_bad_input(trained, tmp_path, capsys, extra, message):
    assert main(["fixres-finetune", "--checkpoint", str(trained), "--data", "synthetic", "--output", str(tmp_path / "o"),
                 "--num-workers", "0", *extra]) == 2
    assert message in capsys.readouterr().err


def test_checkpoint_without_metadata_names_what_is_missing(trained, tmp_path, capsys):
    lone = tmp_path / "weights.safetensors"
    lone.write_bytes((trained / "model.safetensors").read_bytes())
    assert main(["evaluate", "--checkpoint", str(lone), "--data", "synthetic"]) == 2
    assert "model.json not found" in capsys.readouterr().err
    assert main(["fixres-finetune", "--checkpoint", str(trained), "--data", "synthetic", "--output", str(trained)]) == 2
    assert "never modified" in capsys.readouterr().err


def test_search_ranks_resumes_and_hands_off_to_train(tmp_path, capsys):
    out = tmp_path / "search"
    args = ["search", "--model", "mobilenetv2_035", "--data", "synthetic", "--grid-step", "0.1", "--max-candidates", "2",
            "--epochs", "1", "--batch-size", "32", "--output", str(out), "--json", str(tmp_path / "s.json")]
    assert main(args) == 0
    state = json.loads((out / "search.json").read_text())["results"]
    assert len(state) == 2 and sum(len(v) for v in state.values()) == 3  # 2 candidates x1 epoch, the winner x2
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert main(args) == 0  # resumed: nothing retrained
    assert sorted(p.name for p in (out / "runs").iterdir()) == runs
    wider = [a if a != "2" else "3" for a in args]  # --max-candidates 3: one more candidate, but a zero budget
    assert main([*wider, "--budget-minutes", "0"]) == 0  # ranks what is saved, trains nothing
    assert sorted(p.name for p in (out / "runs").iterdir()) == runs
    assert len(json.loads((tmp_path / "s.json").read_text())["untrained"]) == 1
    result = json.loads((tmp_path / "s.json").read_text())
    winner = result["top_ranked"]  # named the winner only when it is distinguishable from chance
    assert max(winner["accuracy"], key=int) == "2"
    # the ranking's params and MACs are those of the network that was trained (the data's classes, its resolution)
    trained = json.loads((out / "runs" / f"a{winner['alpha']:g}_b{winner['beta']:g}_g{winner['gamma']:g}_e2" /
                          "model.json").read_text())
    assert (winner["params"], winner["macs"]) == (trained["params"], trained["macs"])
    cfg = from_dict({**TINY, "phi": 2, "coefficients": winner["coefficients_arg"]})
    assert cfg.coefficients == [winner["alpha"], winner["beta"], winner["gamma"]]
    printed = capsys.readouterr().out
    noise = all(r["best_accuracy"] <= result["noise_band_top1"] for r in result["ranked"])
    assert (result["winner"] is None) == noise
    assert ("no winner: every trained candidate is within noise of chance" in printed) == noise
    assert ("winner: effzoo train --model mobilenetv2_035 --coefficients " + winner["coefficients_arg"] in printed) != noise


def test_search_with_an_empty_grid_says_how_to_widen_it(tmp_path, capsys):
    assert main(["search", "--model", "mobilenetv2_035", "--data", "synthetic", "--grid-step", "0.3",
                 "--tolerance", "0.001", "--output", str(tmp_path)]) == 2
    assert "--grid-step" in capsys.readouterr().err


def test_search_with_a_negative_budget_says_what_zero_means(tmp_path, capsys):
    assert main(["search", "--model", "mobilenetv2_035", "--data", "synthetic", "--budget-minutes", "-1",
                 "--output", str(tmp_path)]) == 2
    assert "--budget-minutes must be >= 0" in capsys.readouterr().err


@pytest.fixture
def zoo_with_a_long_name(tmp_path) -> Path:
    index = json.loads((Path(__file__).resolve().parent.parent / "checkpoints" / "index.json").read_text())
    first = next(iter(index["models"].values()))
    index["models"]["effzoo_efficientnet_phi-4_fashion-mnist_28px_16ep_fixres28_a_very_long_name"] = first
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "index.json").write_text(json.dumps(index))
    return tmp_path / "zoo"


def test_zoo_list_columns_fit_the_longest_name(zoo_with_a_long_name, capsys):
    assert main(["zoo", "--root", str(zoo_with_a_long_name), "list"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    index = json.loads((zoo_with_a_long_name / "index.json").read_text())["models"]
    assert len(rows) == len(index)
    for row, e in zip(rows, index.values()):
        assert row.index(e["sha256"][:12]) == header.index("sha256")  # every column starts where its header does
        assert row[header.index("dataset"):].startswith(e["dataset"] + " ")


def test_zoo_pareto_writes_beside_the_index_by_default(zoo_with_a_long_name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["zoo", "--root", str(zoo_with_a_long_name), "pareto", "--no-reference"]) == 0
    assert (zoo_with_a_long_name / "pareto.png").stat().st_size > 10_000
    assert not (tmp_path / "pareto.png").exists()
    assert f"wrote {zoo_with_a_long_name / 'pareto.png'}" in capsys.readouterr().out
