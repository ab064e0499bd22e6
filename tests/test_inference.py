"""The inference-optimized path (BN folding, channels_last) and `effzoo benchmark` on tiny models."""

import importlib.util
import json

import pytest
import torch
from torch import nn

import effzoo
from effzoo.cli import main
from effzoo.evaluation.benchmark import benchmark, latency_stats
from effzoo.evaluation.inference import count_batchnorms, find_conv_bn_pairs

TINY = {  # every family and block type: InvertedResidual, DepthwiseSeparable, BasicBlock, Bottleneck + downsample
    "efficientnet_b0": dict(width_multiplier=0.25, depth_multiplier=0.25),
    "mobilenetv2_100": dict(width_multiplier=0.25, depth_multiplier=0.25),
    "resnet18": dict(width_multiplier=0.25),
    "resnet50": dict(width_multiplier=0.25, depth_multiplier=0.34),
    "efficientnet": dict(phi=-4),
}


def tiny(name, randomize, in_chans=1):
    model = effzoo.create_model(name, num_classes=10, in_chans=in_chans, small_input=True, **TINY[name])
    model.load_state_dict(randomize(model.state_dict()))
    return model


@pytest.mark.parametrize("name", list(TINY))
def test_folded_model_matches_eager_and_has_no_batchnorm(name, randomize):
    model = tiny(name, randomize).eval()
    x = torch.randn(3, 1, 40, 40, generator=torch.Generator().manual_seed(2))
    fast = effzoo.optimize_for_inference(model)
    assert count_batchnorms(model) > 0 and count_batchnorms(fast) == 0
    assert not fast.training
    with torch.no_grad():
        want = model(x)
        got_nchw = fast(x)
        got_cl = fast(x.contiguous(memory_format=torch.channels_last))
    assert want.abs().max() > 1e-2  # randomized BN statistics: the comparison means something
    for got in (got_nchw, got_cl):
        assert (got - want).abs().max() <= 1e-4 * want.abs().max()
    convs = [m for m in fast.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is not None for c in convs)
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs if c.weight.shape[-1] > 1)


def test_original_model_is_untouched(randomize):
    model = tiny("efficientnet_b0", randomize).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n_bn = count_batchnorms(model)
    fast = effzoo.optimize_for_inference(model, channels_last=True)
    assert fast is not model and model.training
    assert count_batchnorms(model) == n_bn
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.conv_stem.weight.is_contiguous() and model.conv_stem.bias is None
    assert all(p.requires_grad for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert model.pretrained_cfg == fast.pretrained_cfg and model.pretrained_cfg is not fast.pretrained_cfg


def test_all_resnet_pairs_are_found_by_dataflow(randomize):
    model = tiny("resnet50", randomize).eval()
    pairs = dict(find_conv_bn_pairs(model, torch.randn(1, 1, 32, 32))[0])
    assert pairs["conv1"] == "bn1"
    assert pairs["layer1.0.conv3"] == "layer1.0.bn3" and pairs["layer1.0.downsample.0"] == "layer1.0.downsample.1"
    assert len(pairs) == count_batchnorms(model)
    mb = tiny("efficientnet_b0", randomize).eval()
    pairs = dict(find_conv_bn_pairs(mb, torch.randn(1, 1, 32, 32))[0])
    assert pairs["conv_stem"] == "bn1" and pairs["conv_head"] == "bn2"
    assert pairs["blocks.0.0.conv_dw"] == "blocks.0.0.bn1"  # depthwise-separable: bn1 follows conv_dw
    assert pairs["blocks.1.0.conv_pw"] == "blocks.1.0.bn1" and pairs["blocks.1.0.conv_pwl"] == "blocks.1.0.bn3"


class Tricky(nn.Module):
    """BN pairs that must NOT be folded: conv output also used elsewhere, BN on a non-conv input, a shared conv."""

    def __init__(self):
        super().__init__()
        self.bn_in = nn.BatchNorm2d(3)
        self.conv_a = nn.Conv2d(3, 4, 3, padding=1, bias=True)
        self.bn_a = nn.BatchNorm2d(4)  # its conv output also feeds the residual: not foldable
        self.conv_shared = nn.Conv2d(4, 4, 1)
        self.bn_s1, self.bn_s2 = nn.BatchNorm2d(4), nn.BatchNorm2d(4)
        self.conv_ok = nn.Conv2d(4, 4, 3, padding=1)
        self.bn_ok = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv_a(self.bn_in(x))
        y = self.bn_a(y) + y
        y = self.bn_s1(self.conv_shared(y)) + self.bn_s2(self.conv_shared(y))
        return self.bn_ok(self.conv_ok(y))


def test_only_safe_pairs_are_folded(randomize):
    model = Tricky()
    model.load_state_dict(randomize(model.state_dict()))
    model.eval()
    fast = effzoo.optimize_for_inference(model, example_input=torch.randn(2, 3, 8, 8))
    assert isinstance(fast.bn_ok, nn.Identity)
    for name in ("bn_in", "bn_a", "bn_s1", "bn_s2"):
        assert isinstance(getattr(fast, name), nn.BatchNorm2d), name
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(fast(x), model(x), rtol=1e-4, atol=1e-5)


def test_timm_model_folds_too(randomize):
    timm = pytest.importorskip("timm")
    ref = timm.create_model("resnet18", num_classes=10).eval()
    ref.load_state_dict(randomize(ref.state_dict()))
    fast = effzoo.optimize_for_inference(ref, example_input=torch.randn(1, 3, 64, 64))
    assert count_batchnorms(fast) == 0
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = ref(x)
        assert (fast(x) - want).abs().max() <= 1e-4 * want.abs().max()


def test_compile_wraps_the_folded_model(randomize):
    model = tiny("mobilenetv2_100", randomize).eval()
    fast = effzoo.optimize_for_inference(model, compile=True, compile_kwargs={"backend": "eager"})  # no C++ build in tests
    assert hasattr(fast, "_orig_mod") and count_batchnorms(fast._orig_mod) == 0
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        want = model(x)
        assert (fast(x) - want).abs().max() <= 1e-4 * want.abs().max()


def test_latency_stats():
    s = latency_stats([0.1, 0.2, 0.3, 0.4, 10.0], batch_size=4)
    assert s["latency_ms"]["p50"] == pytest.approx(300.0)
    assert s["images_per_s"] == pytest.approx(4 / 0.3)
    assert s["latency_ms"]["p90"] > s["latency_ms"]["p50"] and s["latency_ms"]["p99"] <= 10_000.0 + 1e-9
    with pytest.raises(ValueError):
        latency_stats([], 4)


def test_benchmark_against_timm_returns_all_numbers():
    r = benchmark("resnet18", res=32, batch_size=2, num_classes=10, warmup=0, iters=1, repeats=2)
    assert r["timm"] is not None and r["timm_note"] is None
    for side in ("effzoo", "timm"):
        for bench in ("infer", "train"):
            stats = r[side][bench]
            assert stats["batches"] == 2 and stats["images_per_s"] > 0
            assert set(stats["latency_ms"]) >= {"p50", "p90", "p99"}
        assert r[side]["macs"] > 0
    assert r["effzoo"]["params"] == r["timm"]["params"]
    assert set(r["speedup"]) == {"infer", "train"}
    json.dumps(r)  # JSON-ready


def test_benchmark_of_a_scaled_model_says_there_is_no_timm_counterpart():
    r = benchmark("efficientnet", phi=-4, res=32, batch_size=2, bench="infer", num_classes=10, warmup=0, iters=1, repeats=1)
    assert r["timm"] is None and "phi" in r["timm_note"] and r["speedup"] == {}
    assert "infer" in r["effzoo"] and "train" not in r["effzoo"]


@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime")),
                    reason="onnx, onnxscript and onnxruntime are not installed")
def test_benchmark_in_onnxruntime_runs_the_checked_export(monkeypatch):
    import effzoo.export.onnx as export_mod

    seen = []
    real = export_mod.check_export
    monkeypatch.setattr(export_mod, "check_export", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    r = benchmark("efficientnet", phi=-4, res=32, batch_size=2, bench="infer", runtime="onnxruntime", num_classes=10,
                  in_chans=1, small_input=True, warmup=0, iters=1, repeats=2)
    assert r["runtime"] == "onnxruntime" and "onnxruntime" in r["effzoo"]["infer_path"]
    assert r["effzoo"]["infer"]["batches"] == 2 and r["effzoo"]["infer"]["images_per_s"] > 0
    assert len(seen) == 1 and seen[0]["checked_with"].startswith("onnxruntime")  # timed file agreed with eager


def test_bf16_training_step_runs_the_convolutions_in_bfloat16():
    from effzoo.evaluation.benchmark import train_step

    model = effzoo.create_model("efficientnet", phi=-4, num_classes=10, in_chans=1, small_input=True)
    seen = []
    model.conv_stem.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x, y = torch.randn(2, 1, 32, 32), torch.tensor([1, 2])
    before = model.classifier.weight.detach().clone()
    for bf16, dtype in ((False, torch.float32), (True, torch.bfloat16)):
        train_step(model, x, y, bf16=bf16)()
        assert seen[-1] == dtype
    assert model.classifier.weight.dtype == torch.float32  # master weights stay float32 ...
    assert not torch.equal(model.classifier.weight, before)  # ... and are updated
    r = benchmark("efficientnet", phi=-4, res=32, batch_size=2, bench="train", precision="bf16-mixed", num_classes=10,
                  warmup=0, iters=1, repeats=1)
    assert r["precision"] == "bf16-mixed" and "bf16 autocast" in r["effzoo"]["train_path"]


def test_benchmark_bad_input():
    with pytest.raises(ValueError, match="unknown training precision '16-mixed'"):
        benchmark("resnet18", res=32, precision="16-mixed")
    with pytest.raises(ValueError, match="unknown runtime 'tensorrt'"):
        benchmark("resnet18", res=32, runtime="tensorrt")
    with pytest.raises(ValueError, match="use device='cpu' without compile"):
        benchmark("resnet18", res=32, runtime="onnxruntime", compile=True)
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        benchmark("resnet18", res=32, device="gpu0")
    with pytest.raises(ValueError, match="unknown model"):
        benchmark("efficientnet_b99", res=32)
    with pytest.raises(ValueError, match="bench"):
        benchmark("resnet18", res=32, bench="fast")
    with pytest.raises(ValueError, match="batch size"):
        benchmark("resnet18", res=32, batch_size=0)


def test_benchmark_cli(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["benchmark", "--model", "efficientnet", "--phi", "-4", "--res", "32", "--batch-size", "2", "--bench", "infer",
            "--iters", "1", "--repeats", "1", "--warmup", "0", "--num-classes", "10", "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "no timm comparison" in printed and "images/s" in printed
    assert json.loads(out.read_text())["effzoo"]["infer"]["images_per_s"] > 0
    assert main(["benchmark", "--model", "efficientnet_b99"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown model" in err[0]
