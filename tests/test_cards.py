"""Model cards, factsheets and datasheets: sections, front matter, numbers, links, regeneration."""

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

import effzoo
from effzoo.artifacts.cards import SECTIONS, CardContext, datasheet_path, render_model_card, write_model_card
from effzoo.artifacts.cards.datasheets import BUILTIN, DATASHEET_DIR, GENERIC, datasheet_filename
from effzoo.artifacts.cards.datasheets import SECTIONS as DATASHEET_SECTIONS
from effzoo.artifacts.cards.factsheet import wilson_interval
from effzoo.cli import main
from tiny_zoo_model import make_tiny_model_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = make_tiny_model_folder(tmp_path_factory.mktemp("card") / "tiny")
    write_model_card(out, json.loads((out / "model.json").read_text()))
    return out


def split_card(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def headings(body: str) -> list[str]:
    return re.findall(r"^## (.+)$", body, flags=re.M)


def test_card_has_every_mitchell_section_in_order(folder):
    _, body = split_card((folder / "model_card.md").read_text())
    assert headings(body) == list(SECTIONS)
    for section in re.split(r"^## .+$", body, flags=re.M)[1:]:
        assert section.strip(), "every section says something"


def test_front_matter_is_a_model_index_with_model_json_numbers(folder):
    meta = json.loads((folder / "model.json").read_text())
    front, body = split_card((folder / "model_card.md").read_text())
    assert front["library_name"] == "effzoo" and front["datasets"] == ["synthetic"]
    (entry,) = front["model-index"]
    seen = {}
    for result in entry["results"]:
        assert result["task"]["type"] == "image-classification"
        split = {"validation": "val", "test": "test"}[result["dataset"]["split"]]
        for metric in result["metrics"]:
            seen[f"{split}_{metric['name'].lower().replace('-', '')}"] = metric["value"]
    assert set(seen) == {"val_top1", "val_top5", "test_top1", "test_top5"}
    for key, value in seen.items():
        assert value == round(100 * meta["metrics"][key], 2)
    model = effzoo.load_checkpoint(folder)
    params = sum(p.numel() for p in model.parameters())
    assert front["effzoo"]["params"] == meta["params"] == params
    assert f"{params:,} parameters" in body
    assert front["effzoo"]["macs"] == effzoo.model_info(model)["macs"]
    assert f"{100 * meta['metrics']['test_top1']:.2f}%" in body


def test_front_matter_validates_as_a_hugging_face_card(folder):
    hub = pytest.importorskip("huggingface_hub")
    card = hub.ModelCard((folder / "model_card.md").read_text())
    results = {(r.dataset_split, r.metric_name): r.metric_value for r in card.data.eval_results}
    meta = json.loads((folder / "model.json").read_text())
    assert results[("test", "Top-1")] == round(100 * meta["metrics"]["test_top1"], 2)


def test_datasheet_is_copied_and_linked(folder):
    text = (folder / "model_card.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert "datasheet_synthetic.md" in links
    for link in links:
        assert (folder / link).is_file(), f"card links to missing {link}"
    assert (folder / "datasheet_synthetic.md").read_text() == datasheet_path("synthetic").read_text()


def test_factsheet_declares_purpose_performance_and_lineage(folder):
    from effzoo.artifacts.zoo_index import sha256_file

    sheet = json.loads((folder / "factsheet.json").read_text())
    meta = json.loads((folder / "model.json").read_text())
    assert {"purpose", "performance", "robustness", "safety", "security", "lineage"} <= set(sheet)
    assert sheet["performance"]["metrics"]["test_top1"] == meta["metrics"]["test_top1"]
    lineage = sheet["lineage"]
    assert lineage["weights"]["sha256"] == sha256_file(folder / "model.safetensors")
    assert lineage["recipe"]["model"] == "mobilenetv2_035" and lineage["data"]["dataset"] == "synthetic"
    assert lineage["code"]["effzoo"] == effzoo.__version__ and lineage["data"]["datasheet"] == "datasheet_synthetic.md"


def test_effzoo_card_regenerates_the_same_card(folder, tmp_path, capsys):
    copy = shutil.copytree(folder, tmp_path / "copy")
    original = (copy / "model_card.md").read_text()
    for name in ("model_card.md", "factsheet.json", "datasheet_synthetic.md"):
        (copy / name).unlink()
    assert main(["card", "--checkpoint", str(copy)]) == 0
    assert (copy / "model_card.md").read_text() == original
    assert (copy / "factsheet.json").is_file() and (copy / "datasheet_synthetic.md").is_file()
    assert main(["card", "--checkpoint", str(copy / "model.safetensors")]) == 0  # the weights file works too
    assert "wrote" in capsys.readouterr().out


def test_effzoo_card_evaluate_adds_per_class_and_per_resolution_numbers(folder, tmp_path):
    copy = shutil.copytree(folder, tmp_path / "copy")
    assert main(["card", "--checkpoint", str(copy), "--evaluate", "--res", "12,20", "--num-workers", "0"]) == 0
    analysis = json.loads((copy / "analysis.json").read_text())
    meta = json.loads((copy / "model.json").read_text())
    assert [r["resolution"] for r in analysis["resolutions"]] == [12, 16, 20]  # the test resolution is always in
    at_test = analysis["resolutions"][1]
    # Same checkpoint, same rebuilt test split: the number the training run recorded.
    assert at_test["top1"] == pytest.approx(100 * meta["metrics"]["test_top1"], abs=1e-4)
    assert [c["class"] for c in analysis["per_class"]] == meta["class_names"]
    assert sum(c["support"] for c in analysis["per_class"]) == meta["data"]["split_sizes"]["test"]
    _, body = split_card((copy / "model_card.md").read_text())
    quantitative = body.split("## Quantitative Analyses")[1].split("## Ethical")[0]
    assert "Per-class top-1 at 16 px" in quantitative and "| 20 |" in quantitative and "| 16 (test) |" in quantitative
    for c in analysis["per_class"]:
        assert f"| {c['class']} | {c['support']} | {c['top1']:.2f}% |" in quantitative
    checks = json.loads((copy / "factsheet.json").read_text())["robustness"]["checks_run"]
    assert [c["check"] for c in checks][0] == "resolution sweep"


def test_card_without_analysis_says_how_to_get_it(folder):
    assert "effzoo card --checkpoint DIR --evaluate" in (folder / "model_card.md").read_text()


def test_fixres_stages_and_sweep_are_reported():
    meta = {"model_name": "efficientnet", "train_resolution": 16, "test_resolution": 20, "metrics": {"test_top1": 0.9},
            "data": {"dataset": "digits", "split_sizes": {"test": 270}},
            "fixres": {"chosen_on": "val", "adapt": "classifier+bn", "epochs": 1,
                       "test": {"a_train_resolution": {"resolution": 16, "top1": 88.0},
                                "d_finetuned": {"resolution": 20, "top1": 90.0}}}}
    fixres = {"sweep_before": [{"resolution": 16, "top1": 87.0}, {"resolution": 20, "top1": 85.5}],
              "sweep_after": [{"resolution": 16, "top1": 86.0}, {"resolution": 20, "top1": 89.5}]}
    text = render_model_card(meta, CardContext(fixres=fixres))
    assert "| finetuned | 20 | 90.00% | n/a | n/a |" in text and "| 20 | 85.50% | 89.50% |" in text
    assert "FixRes" in text and "arXiv:1906.06423" in text
    assert headings(split_card(text)[1]) == list(SECTIONS) and "FixRes did not help" not in text
    meta["fixres"]["test"]["d_finetuned"]["top1"] = 80.0  # a FixRes stage that lost accuracy is called out
    assert "FixRes did not help this model: 80.00%" in render_model_card(meta, CardContext(fixres=fixres))
    meta["fixres"]["test"]["e_temperature_scaled"] = {"resolution": 20, "top1": 80.0, "loss": 0.41, "ece": 0.031}
    meta["fixres"]["calibration"] = {"temperature": 0.612, "fitted_on": "val"}
    text = render_model_card(meta, CardContext(fixres=fixres))
    assert "| temperature scaled | 20 | 80.00% | 0.4100 | 0.0310 |" in text and "temperature of 0.612" in text


def test_datasheets_ship_with_every_gebru_section_and_accurate_facts():
    import tomllib

    files = [*BUILTIN.values(), GENERIC]
    for name in files:
        text = (DATASHEET_DIR / name).read_text()
        assert headings(text) == list(DATASHEET_SECTIONS), name
    digits = (DATASHEET_DIR / "digits.md").read_text()
    assert all(s in digits for s in ("1,797", "8x8", "43 people", "13 others", "Alpaydin", "CC BY 4.0"))
    fashion = (DATASHEET_DIR / "fashion-mnist.md").read_text()
    assert all(s in fashion for s in ("Zalando", "70,000", "28x28", "60,000", "10,000", "MIT", "arXiv:1708.07747"))
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "datasheets/*.md" in pyproject["tool"]["setuptools"]["package-data"]["effzoo"]


def test_image_folders_get_the_generic_datasheet():
    assert datasheet_path("/data/my pets").name == GENERIC == datasheet_path("unknown").name
    assert datasheet_filename("/data/my pets") == "datasheet_my_pets.md"
    assert datasheet_filename("fashion_mnist") == "datasheet_fashion-mnist.md"


def test_wilson_interval():
    lo, hi = wilson_interval(0.5, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(1.0, 270)[1] == 1.0 and wilson_interval(0.9, 0) is None


def test_card_cli_names_a_folder_without_metadata(tmp_path, capsys):
    assert main(["card", "--checkpoint", str(tmp_path)]) == 2
    assert "model.json" in capsys.readouterr().err
