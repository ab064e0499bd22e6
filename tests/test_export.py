"""`export_model` / `effzoo export`: TorchScript always, ONNX where onnx + onnxscript (+ onnxruntime) are installed."""

import importlib.util
import json
import re

import pytest
import torch

import effzoo
import effzoo.export.onnx as export_mod
from effzoo.cli import main
from effzoo.export.onnx import export_model, read_metadata

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="onnx, onnxscript and onnxruntime are not installed")


@pytest.fixture
def model(randomize):
    m = effzoo.create_model("efficientnet_b0", num_classes=10, in_chans=1, small_input=True,
                            width_multiplier=0.25, depth_multiplier=0.25)
    m.load_state_dict(randomize(m.state_dict()))
    return m.eval()


def eager(model, x):
    with torch.no_grad():
        return model(x)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_round_trip(model, tmp_path):
    path = tmp_path / "m.torchscript.pt"
    report = export_model(model, "torchscript", path, 32)
    assert report["checked_with"].startswith("torch.jit") and report["bytes"] == path.stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["m.torchscript.pt"]  # no temp file left behind
    loaded = torch.jit.load(str(path))
    for batch in (1, 5):  # any batch size
        x = torch.randn(batch, 1, 32, 32)
        want = eager(model, x)
        assert want.abs().max() > 1e-2
        assert (loaded(x) - want).abs().max() <= 1e-4 * want.abs().max()
    meta = read_metadata(path)
    assert meta["model_name"] == "efficientnet_b0" and meta["input_size"] == [1, 32, 32] and "mean" in meta


@needs_onnx
def test_onnx_round_trip_with_dynamic_batch(model, tmp_path):
    import onnx
    import onnxruntime as ort

    path = tmp_path / "m.onnx"
    report = export_model(model, "onnx", path, (1, 32, 32))
    assert report["checked_with"].startswith("onnxruntime")
    graph = onnx.load(str(path)).graph
    assert not [n for n in graph.node if n.op_type == "BatchNormalization"]  # folded before export
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 4):
        x = torch.randn(batch, 1, 32, 32)
        got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
        want = eager(model, x)
        assert (got - want).abs().max() <= 1e-4 * want.abs().max()
    assert read_metadata(path)["num_classes"] == 10


@needs_onnx
def test_onnxruntime_model_predicts_like_eager(model, tmp_path):
    from effzoo.export.onnx import OnnxRuntimeModel

    path = tmp_path / "m.onnx"
    export_model(model, "onnx", path, (1, 32, 32), check=False)
    runner = OnnxRuntimeModel(path, threads=1)
    assert runner.threads == 1 and runner.runtime.startswith("onnxruntime")
    for batch in (1, 3):
        x = torch.randn(batch, 1, 32, 32)
        want = eager(model, x)
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):  # either layout goes in
            got = runner(inp)
            assert isinstance(got, torch.Tensor) and got.shape == want.shape
            assert (got - want).abs().max() <= 1e-4 * want.abs().max()
    direct = OnnxRuntimeModel.from_model(model, (1, 32, 32))  # export, check and load, no file left behind
    x = torch.randn(2, 1, 32, 32)
    assert (direct(x) - eager(model, x)).abs().max() <= 1e-4 * eager(model, x).abs().max()
    assert not direct.path.exists() and direct.threads == torch.get_num_threads()
    with pytest.raises(FileNotFoundError, match="effzoo export --format onnx"):
        OnnxRuntimeModel(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        OnnxRuntimeModel(path, threads=0)
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ValueError, match="ONNX Runtime cannot load .*junk.onnx"):
        OnnxRuntimeModel(tmp_path / "junk.onnx")


def test_bad_input(model, tmp_path):
    with pytest.raises(ValueError, match="unknown export format"):
        export_model(model, "tflite", tmp_path / "m.tflite")
    with pytest.raises(ValueError, match="channels"):
        export_model(model, "torchscript", tmp_path / "m.pt", (3, 32, 32))
    with pytest.raises(ValueError, match="stride"):
        export_model(model, "torchscript", tmp_path / "m.pt", 4)
    assert not list(tmp_path.iterdir())


def test_a_file_that_fails_its_check_is_removed(model, tmp_path, monkeypatch):
    def wrong(*args, **kwargs):
        raise RuntimeError("exported torchscript model disagrees with eager")

    monkeypatch.setattr(export_mod, "check_export", wrong)
    with pytest.raises(RuntimeError, match="disagrees"):
        export_model(model, "torchscript", tmp_path / "m.pt", 32)
    assert not list(tmp_path.iterdir())


def test_export_cli(model, tmp_path, monkeypatch, capsys):
    # The CLI's own wiring and errors, with load_checkpoint stubbed.
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"stub")
    monkeypatch.setattr("effzoo.artifacts.weights.load_checkpoint", lambda path: model)
    assert main(["export", "--checkpoint", str(ckpt), "--format", "torchscript", "--res", "32",
                 "--json", str(tmp_path / "r.json")]) == 0
    assert (tmp_path / "model.torchscript.pt").is_file()
    out = capsys.readouterr().out
    # relative to the output scale, as the check is, with the tolerance beside it
    assert re.search(r"checked with torch\.jit [^:]+: max difference \d\.\de-\d\d of the output scale \(tolerance 1e-04\)", out)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["format"] == "torchscript" and report["rtol"] == 1e-4
    assert report["max_rel_diff"] == pytest.approx(report["max_abs_diff"] / report["output_scale"])
    assert main(["export", "--checkpoint", str(tmp_path / "missing.safetensors"), "--format", "onnx"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--checkpoint", str(ckpt), "--format", "tflite"])


def test_export_cli_with_a_real_checkpoint(tmp_path, randomize, capsys):
    from effzoo.artifacts import weights

    model = effzoo.create_model("resnet18", num_classes=10, in_chans=1, small_input=True, width_multiplier=0.25)
    model.load_state_dict(randomize(model.state_dict()))
    cfg = model.pretrained_cfg
    weights.save_model(tmp_path, model, {"model_name": cfg["model_name"], "model_args": cfg["model_args"],
                                         "pretrained_cfg": {"input_size": (1, 32, 32), "test_input_size": (1, 32, 32)}})
    fmt = "onnx" if HAS_ONNX else "torchscript"
    assert main(["export", "--checkpoint", str(tmp_path), "--format", fmt]) == 0  # the folder; resolution from its cfg
    out = tmp_path / ("model.onnx" if HAS_ONNX else "model.torchscript.pt")
    assert out.is_file() and "checked with" in capsys.readouterr().out
    assert read_metadata(out)["input_size"] == [1, 32, 32]
