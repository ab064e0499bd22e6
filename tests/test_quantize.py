"""int8 export (`effzoo.export.quantize`, `effzoo export --quantize int8`): calibrated on training images,
kept only within the allowed top-1 drop, refused (and nothing written) beyond it.

The model is the shipped effzoo_efficientnet_phi-6_digits (trained, 16 px, about a million MACs), so
every accuracy here is measured on real data. One export is allowed a generous 5 points; the refusal
test then allows a little less than the drop that export measured, so the refusal is real.
"""

import contextlib
import importlib.util
import io
import json

import numpy as np
import pytest

from effzoo.artifacts.weights import load_checkpoint
from effzoo.artifacts.zoo_index import resolve_checkpoint
from effzoo.cli import main

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime"))
pytestmark = pytest.mark.skipif(not HAS_ONNX, reason="onnx, onnxscript and onnxruntime are not installed")
ZOO_NAME = "effzoo_efficientnet_phi-6_digits"


@pytest.fixture(scope="module")
def digits():
    """The shipped model, its checkpoint folder and its data module (the recorded data and splits)."""
    from effzoo.export.quantize import calibration_datamodule

    ckpt, _ = resolve_checkpoint(ZOO_NAME)
    model = load_checkpoint(ckpt)
    _, dm = calibration_datamodule(model, ckpt, num_workers=0)
    return model, ckpt, dm


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One real `effzoo export --quantize int8` of the shipped model, allowed 5 points of top-1 (13 of the 269
    val images); its measured drop then sets the threshold of the refusal test."""
    folder = tmp_path_factory.mktemp("cwd")
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.chdir(folder)
        code = main(["export", "--checkpoint", ZOO_NAME, "--format", "onnx", "--quantize", "int8",
                     "--max-drop", "5", "--json", "report.json"])
    assert code == 0, printed.getvalue()
    report = json.loads((folder / "report.json").read_text())
    acc = report["quantization"]["accuracy"]
    assert f"val top-1 {acc['int8_top1']:.2f}% vs {acc['float_top1']:.2f}% float" in printed.getvalue()
    return report, folder / "runs" / ZOO_NAME  # a shipped model's exports go to runs/<name>/


def top1_of(path, loader):
    from effzoo.export.onnx import OnnxRuntimeModel
    from effzoo.export.quantize import onnx_logits

    logits, targets = onnx_logits(OnnxRuntimeModel(path), loader)
    return logits, 100.0 * logits.argmax(1).eq(targets).float().mean().item()


def test_report_holds_both_top1s_measured_on_the_written_files(digits, exported):
    import onnx

    from effzoo.export.onnx import read_metadata

    model, _, dm = digits
    report, folder = exported
    assert sorted(p.name for p in folder.iterdir()) == ["model.int8.json", "model.int8.onnx", "model.onnx"]
    acc = report["quantization"]["accuracy"]
    val = dm.eval_dataloader("val", 16)
    _, float_top1 = top1_of(folder / "model.onnx", val)
    _, int8_top1 = top1_of(folder / "model.int8.onnx", val)
    assert acc["float_top1"] == pytest.approx(float_top1) and acc["int8_top1"] == pytest.approx(int8_top1)
    assert acc["drop"] == pytest.approx(float_top1 - int8_top1)
    assert acc["images"] == len(val.dataset) and acc["split"] == "val"
    assert report["quantization"]["calibration"]["images"] == 256 and report["int8_path"].endswith("model.int8.onnx")
    # really int8: weights stored as 8-bit integers, so the file is far smaller than the float one
    graph = onnx.load(str(folder / "model.int8.onnx")).graph
    assert {t.data_type for t in graph.initializer if t.name.endswith("weight_quantized")} == {onnx.TensorProto.INT8}
    assert (folder / "model.int8.onnx").stat().st_size < 0.5 * (folder / "model.onnx").stat().st_size
    # the file and its sidecar carry the check, and the sidecar is the run's model.json (for predict)
    assert read_metadata(folder / "model.int8.onnx")["quantization"]["accuracy"] == acc
    sidecar = json.loads((folder / "model.int8.json").read_text())
    assert sidecar["quantization"]["accuracy"] == acc and sidecar["file"] == "model.int8.onnx"
    assert sidecar["pretrained_cfg"]["class_names"] == list(model.pretrained_cfg["class_names"])


def test_int8_outputs_agree_with_float_on_the_same_inputs(digits, exported):
    _, _, dm = digits
    _, folder = exported
    test = dm.eval_dataloader("test", 16)
    want, float_top1 = top1_of(folder / "model.onnx", test)
    got, int8_top1 = top1_of(folder / "model.int8.onnx", test)
    assert got.shape == want.shape
    assert got.argmax(1).eq(want.argmax(1)).float().mean() >= 0.9  # the same class for (nearly) every image
    # close in value too, not only in ranking: softmax probabilities within a few percent on average
    assert (got.softmax(1) - want.softmax(1)).abs().sum(1).mean() < 0.15
    assert int8_top1 > 80.0 and abs(float_top1 - int8_top1) < 5.0


def test_refused_beyond_max_drop_writes_nothing(exported, tmp_path, monkeypatch, capsys):
    """The same real export again, allowed just less than the drop it measures: refused, in one line."""
    report, _ = exported
    drop = report["quantization"]["accuracy"]["drop"]
    monkeypatch.chdir(tmp_path)
    code = main(["export", "--checkpoint", ZOO_NAME, "--format", "onnx", "--quantize", "int8",
                 "--max-drop", f"{drop - 0.25:.4f}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("effzoo export: error: int8 top-1 on the val split")
    assert f"drops {drop:.2f} points" in err[0] and "--max-drop" in err[0] and "nothing was written" in err[0]
    assert list(tmp_path.iterdir()) == []  # not even runs/<name>/


def test_kept_within_max_drop_is_what_predict_and_benchmark_run(exported, capsys):
    from effzoo.evaluation.benchmark import benchmark

    report, folder = exported
    acc = report["quantization"]["accuracy"]
    assert acc["forced"] is False and acc["drop"] <= acc["max_drop"] == 5.0
    result = benchmark(str(folder / "model.int8.onnx"), runtime="onnxruntime", batch_size=4, warmup=0, iters=1,
                       repeats=1, compare_timm=False)
    assert result["effzoo"]["infer"]["images_per_s"] > 0 and "train" not in result["effzoo"]
    assert "model.int8.onnx (int8)" in result["effzoo"]["infer_path"] and result["resolution"] == 16
    assert result["quantization"]["accuracy"] == acc
    if importlib.util.find_spec("effzoo.evaluation.predict"):  # `effzoo predict` reads model.int8.json beside it
        from PIL import Image

        from effzoo.evaluation.predict import Predictor

        image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16), dtype=np.uint8))
        assert len(Predictor(folder / "model.int8.onnx", num_workers=0).predict([image, image])) == 2


def test_benchmark_of_an_onnx_file_refuses_what_it_cannot_do(exported, tmp_path):
    from effzoo.evaluation.benchmark import benchmark

    _, folder = exported
    int8 = str(folder / "model.int8.onnx")
    with pytest.raises(ValueError, match="add runtime='onnxruntime'"):
        benchmark(int8)
    with pytest.raises(ValueError, match="exported at 16 px"):
        benchmark(int8, runtime="onnxruntime", res=32)
    with pytest.raises(ValueError, match="inference only"):
        benchmark(int8, runtime="onnxruntime", bench="train")
    with pytest.raises(FileNotFoundError, match="ONNX file not found"):
        benchmark(str(tmp_path / "missing.int8.onnx"), runtime="onnxruntime")


def test_mismatched_calibration_data_is_refused(digits, tmp_path, monkeypatch, capsys):
    from effzoo.export.quantize import calibration_datamodule

    model, ckpt, _ = digits
    with pytest.raises(ValueError, match="4 classes"):  # synthetic's default: 4 classes
        calibration_datamodule(model, ckpt, "synthetic")
    monkeypatch.chdir(tmp_path)
    code = main(["export", "--checkpoint", ZOO_NAME, "--format", "onnx", "--quantize", "int8",
                 "--calibration-data", "synthetic"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--calibration-data synthetic" in err[0] and "10 classes vs 4" in err[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    (["--format", "torchscript", "--quantize", "int8"], "use --format onnx"),
    (["--format", "onnx", "--max-drop", "0.5"], "--max-drop only apply to an int8 export"),
    (["--format", "onnx", "--quantize", "int8", "--calibration-images", "0"], "--calibration-images must be an integer >= 1"),
    (["--format", "onnx", "--quantize", "int8", "--max-drop", "nan"], "--max-drop must be a number"),
])
def test_cli_option_errors_are_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["export", "--checkpoint", ZOO_NAME, *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_calibration_images_are_class_balanced_and_preprocessed_for_evaluation(digits):
    from effzoo.data import stratified_subset
    from effzoo.export.quantize import calibration_batches

    _, _, dm = digits
    batches = calibration_batches(dm, 16, 40, batch_size=16)
    images = np.concatenate(batches)
    assert [len(b) for b in batches] == [16, 16, 8] and images.shape[1:] == (1, 16, 16) and images.dtype == np.float32
    keep = stratified_subset(dm.split_labels("train"), 40, 0)
    assert np.bincount(dm.split_labels("train")[keep], minlength=10).min() >= 3  # every digit is there
    evaluated = dm.eval_dataloader("train", 16).dataset  # the evaluation transform, not training augmentation
    np.testing.assert_allclose(images, np.stack([evaluated[int(i)][0].numpy() for i in keep]), atol=1e-6)


def test_spatial_means_become_pools_with_the_same_outputs(exported):
    import onnx
    import onnxruntime as ort

    from effzoo.export.quantize import spatial_means_to_pools

    _, folder = exported
    proto = onnx.load(str(folder / "model.onnx"))  # the float export, untouched by quantization
    means = sum(n.op_type == "ReduceMean" for n in proto.graph.node)
    assert spatial_means_to_pools(proto) == means > 1  # every squeeze-excitation mean and the classifier's
    assert not [n for n in proto.graph.node if n.op_type == "ReduceMean"]
    onnx.checker.check_model(proto)
    x = np.random.default_rng(0).standard_normal((3, 1, 16, 16), dtype=np.float32)
    before = ort.InferenceSession(str(folder / "model.onnx")).run(None, {"input": x})[0]
    after = ort.InferenceSession(proto.SerializeToString()).run(None, {"input": x})[0]
    assert np.abs(before).max() > 1e-2
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6 * np.abs(before).max())


def test_card_shows_the_int8_check(exported, tmp_path, capsys):
    from effzoo.artifacts.cards import write_model_card
    from effzoo.cli.export import refresh_card
    from tiny_zoo_model import make_tiny_model_folder

    report, folder = exported
    run = make_tiny_model_folder(tmp_path / "run")
    write_model_card(run, json.loads((run / "model.json").read_text()))  # a run folder as `effzoo train` leaves it
    assert "int8 deployment" not in (run / "model_card.md").read_text()
    (run / "model.int8.json").write_text((folder / "model.int8.json").read_text())
    refresh_card(run / "model.onnx", None)  # what `effzoo export --quantize int8` does after writing there
    card = (run / "model_card.md").read_text()
    acc = report["quantization"]["accuracy"]
    assert f"| int8 ONNX | {acc['int8_top1']:.2f}% |" in card and f"| float32 ONNX | {acc['float_top1']:.2f}% |" in card
    assert f"A drop of {acc['drop']:.2f} points (allowed 5)" in card and "updated" in capsys.readouterr().out
