"""The shipped zoo: every checkpoint against its card, index and real model; offline pretrained=True;
sha256 refusal; pickles with payloads refused; truncated files named; the Pareto plot."""

import json
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import effzoo
from effzoo.artifacts import shipped, zoo_index
from effzoo.evaluation import publish
from effzoo.artifacts.cards import datasheet_path
from effzoo.artifacts.weights import read_state_dict
from effzoo.cli import main
from effzoo.data.fashion_mnist import SYSTEM_DIR, find_files
from effzoo.evaluation.evaluate import datamodule_for, evaluate_loader
from tiny_zoo_model import make_tiny_model_folder

REPO = Path(__file__).resolve().parents[1]
SHIPPED = json.loads((REPO / "checkpoints" / "index.json").read_text())["models"]


def front_matter(card: Path) -> tuple[dict, str]:
    head, body = card.read_text()[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory) -> Path:
    """A zoo folder holding one tiny model, added the way the shipped ones were."""
    root = tmp_path_factory.mktemp("zoo")
    run = make_tiny_model_folder(tmp_path_factory.mktemp("run") / "tiny")
    publish.add_model(run, "effzoo_tiny", ["python tests/tiny_zoo_model.py"], root=root, seconds=0.0, hardware="test")
    yield root
    shipped.unregister_shipped_models(root)


def test_the_repo_zoo_is_found_and_indexed():
    assert zoo_index.checkpoints_dir() == REPO / "checkpoints"
    assert len(SHIPPED) >= 1
    assert set(SHIPPED) <= set(effzoo.list_models("effzoo_*"))


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_checkpoint_matches_its_card_index_and_real_model(name):
    e = SHIPPED[name]
    folder = REPO / "checkpoints" / e["folder"]
    weights = folder / "model.safetensors"
    meta = json.loads((folder / "model.json").read_text())
    front, body = front_matter(folder / "model_card.md")
    sheet = json.loads((folder / "factsheet.json").read_text())
    # Integrity: every file as indexed; the weights' digest everywhere it is quoted.
    assert zoo_index.file_digest_problems(folder, e["files"]) == []
    assert zoo_index.sha256_file(weights) == e["sha256"] == front["effzoo"]["weights_sha256"] == sheet["lineage"]["weights"]["sha256"]
    assert weights.stat().st_size < 5 * 2**20
    # Params and MACs: counted on the real model, against model.json, the index and the card.
    model = effzoo.load_checkpoint(folder)
    params = sum(p.numel() for p in model.parameters())
    assert params == meta["params"] == e["params"] == front["effzoo"]["params"]
    assert f"{params:,} parameters" in body
    assert effzoo.model_info(model)["macs"] == meta["macs"] == e["macs"] == front["effzoo"]["macs"]
    assert effzoo.model_info(model, tuple(model.pretrained_cfg["test_input_size"]))["macs"] == e["test_macs"]
    # Metrics: card model-index == model.json == index.
    card_metrics = {}
    for result in front["model-index"][0]["results"]:
        split = {"validation": "val", "test": "test"}[result["dataset"]["split"]]
        for m in result["metrics"]:
            card_metrics[f"{split}_{m['name'].lower().replace('-', '')}"] = m["value"]
    for key, value in card_metrics.items():
        assert value == round(100 * meta["metrics"][key], 2) == round(100 * e["metrics"][key], 2), key
    assert front["model-index"][0]["name"] == name
    # And the real model scores that test top-1 again, on the rebuilt test split (within one image).
    recipe = meta["recipe"]
    if recipe["data"] == "fashion-mnist" and find_files(SYSTEM_DIR) is None:
        pytest.skip("Debian dataset-fashion-mnist not installed: cannot re-score a Fashion-MNIST checkpoint")
    dm = datamodule_for(model, recipe["data"], batch_size=256, num_workers=0, seed=recipe["seed"])
    dm.setup()
    res = model.pretrained_cfg["test_input_size"][-1]
    got = evaluate_loader(model, dm.eval_dataloader("test", res), dm.num_classes)
    n = meta["data"]["split_sizes"]["test"]
    assert got["num_samples"] == n
    assert got["top1"] == pytest.approx(100 * e["metrics"]["test_top1"], abs=100 / n + 1e-6)
    # How to rebuild it, and its datasheet.
    assert e["reproduce"]["commands"][0].startswith("effzoo train ") and e["reproduce"]["commands"][0] in body
    sheet_link = re.search(r"\[datasheet\]\((datasheet_[^)]+\.md)\)", body).group(1)
    assert (folder / sheet_link).read_text() == datasheet_path(meta["data"]["dataset"]).read_text()
    assert "small demonstration model" in body


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_cards_are_generated_not_hand_written(name, tmp_path):
    """`effzoo card` on a copy of the zoo entry gives the shipped card and factsheet byte for byte."""
    folder = REPO / "checkpoints" / SHIPPED[name]["folder"]
    copy = shutil.copytree(folder, tmp_path / "zoo" / folder.name)
    shutil.copy(REPO / "checkpoints" / "index.json", tmp_path / "zoo" / "index.json")
    for generated in ("model_card.md", "factsheet.json"):
        (copy / generated).unlink()
    assert main(["card", "--checkpoint", str(copy)]) == 0
    for generated in ("model_card.md", "factsheet.json"):
        assert (copy / generated).read_bytes() == (folder / generated).read_bytes(), generated


def test_pretrained_true_finds_the_shipped_weights_offline(monkeypatch):
    def no_network(hub_id):
        raise AssertionError(f"tried to download {hub_id}")

    monkeypatch.setattr("effzoo.artifacts.weights.download_hub_weights", no_network)
    for name, e in SHIPPED.items():
        model = effzoo.create_model(name, pretrained=True)
        expected = read_state_dict(REPO / "checkpoints" / e["folder"] / "model.safetensors")
        for k, v in model.state_dict().items():
            torch.testing.assert_close(v, expected[k], rtol=0, atol=0)
        assert model.pretrained_cfg["model_name"] == name
        assert model.pretrained_cfg["test_input_size"][-1] == e["test_resolution"]


def test_env_var_selects_another_zoo(tiny_zoo, monkeypatch):
    monkeypatch.setenv(zoo_index.ENV_VAR, str(tiny_zoo))
    assert zoo_index.checkpoints_dir() == tiny_zoo
    assert shipped.register_shipped_models() == ["effzoo_tiny"]
    model = effzoo.create_model("effzoo_tiny", pretrained=True)
    expected = read_state_dict(tiny_zoo / "effzoo_tiny" / "model.safetensors")
    torch.testing.assert_close(model.state_dict(), expected)
    # A model built from a shipped one saves and reloads through its registered name.
    assert effzoo.create_model("effzoo_tiny").num_classes == 4


def test_a_weights_file_that_disagrees_with_the_index_is_refused(tiny_zoo, tmp_path, monkeypatch):
    root = shutil.copytree(tiny_zoo, tmp_path / "zoo")
    weights = root / "effzoo_tiny" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # still a valid safetensors file: only a weight changed
    weights.write_bytes(bytes(data))
    read_state_dict(weights)  # readable, so only the digest can catch it
    with pytest.raises(ValueError, match=r"refused to load shipped model 'effzoo_tiny'.*sha256"):
        shipped.load_shipped("effzoo_tiny", root)
    with pytest.raises(ValueError, match="refused"):
        effzoo.load_checkpoint(root / "effzoo_tiny")  # the folder path is checked against its index too
    monkeypatch.setenv(zoo_index.ENV_VAR, str(root))
    shipped.register_shipped_models()
    with pytest.raises(ValueError, match="model.safetensors has sha256"):
        effzoo.create_model("effzoo_tiny", pretrained=True)
    assert main(["zoo", "--root", str(root), "verify"]) == 1


def test_model_json_that_disagrees_with_the_index_is_refused(tiny_zoo, tmp_path):
    root = shutil.copytree(tiny_zoo, tmp_path / "zoo")
    meta_path = root / "effzoo_tiny" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["pretrained_cfg"]["mean"] = [0.0]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="model.json has sha256"):
        shipped.load_shipped("effzoo_tiny", root)


class Payload:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_a_ckpt_carrying_a_payload_is_refused_and_the_payload_does_not_run(tmp_path, monkeypatch, how):
    monkeypatch.chdir(tmp_path)
    state = effzoo.create_model("mobilenetv2_035", num_classes=4, in_chans=1).state_dict()
    ckpt = {"state_dict": {f"model.{k}": v for k, v in state.items()},
            "hyper_parameters": {"model_name": "mobilenetv2_035", "model_args": {}, "extra": Payload()}}
    if how == "torch.save":
        torch.save(ckpt, "evil.ckpt")
    else:
        with open("evil.ckpt", "wb") as f:
            pickle.dump(ckpt, f)
    with pytest.raises(ValueError, match="refused to load evil.ckpt"):
        effzoo.load_checkpoint("evil.ckpt")
    with pytest.raises(ValueError, match="refused"):
        effzoo.create_model("mobilenetv2_035", pretrained="evil.ckpt")
    assert main(["evaluate", "--checkpoint", "evil.ckpt", "--data", "synthetic"]) == 2
    assert not (tmp_path / "PWNED").exists()


def test_truncated_files_are_named(tiny_zoo, tmp_path):
    run = shutil.copytree(tiny_zoo / "effzoo_tiny", tmp_path / "run")  # outside any index
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"run/model.safetensors is not a readable safetensors file \(truncated"):
        effzoo.load_checkpoint(run)
    model = effzoo.create_model("mobilenetv2_035", num_classes=4, in_chans=1)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "t.ckpt")
    data = (tmp_path / "t.ckpt").read_bytes()
    (tmp_path / "t.ckpt").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=r"t.ckpt is not a readable Lightning checkpoint \(truncated"):
        effzoo.load_checkpoint(tmp_path / "t.ckpt")


def test_pareto_plot_of_the_zoo(tmp_path):
    from effzoo.evaluation.pareto import PAPER_TABLE2, pareto_front, pareto_plot, zoo_points

    points = zoo_points()
    assert {p["name"] for p in points} == set(SHIPPED)
    assert all(p["top1"] == 100 * SHIPPED[p["name"]]["metrics"]["test_top1"] for p in points)
    path = pareto_plot(points, tmp_path / "pareto.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert list(PAPER_TABLE2) == [f"B{i}" for i in range(8)] and PAPER_TABLE2["B0"] == (5.3, 0.39, 76.3)
    pts = [{"macs": 1, "top1": 50}, {"macs": 2, "top1": 40}, {"macs": 3, "top1": 60}, {"macs": 3, "top1": 55}]
    assert [(p["macs"], p["top1"]) for p in pareto_front(pts)] == [(1, 50), (3, 60)]


def test_zoo_cli_lists_and_verifies(capsys):
    assert main(["zoo", "verify"]) == 0
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert "all shipped files match the index" in out and all(name in out for name in SHIPPED)
