"""Initialization, safe weight files, and foreign (torchvision) weights."""

import math
import pickle

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

import effzoo
from effzoo.artifacts.weights import load_weights, read_state_dict
from effzoo.models.convert import load_torchvision_weights
from effzoo.models.init import init_weights


def _variance_through(depth: int, scale: float, width: int = 256) -> float:
    torch.manual_seed(0)
    layers = nn.Sequential(*[nn.Linear(width, width) for _ in range(depth)])
    init_weights(layers, "lecun_uniform")
    with torch.no_grad():
        for layer in layers:
            layer.weight.mul_(scale)
        x = torch.randn(4096, width)
        return layers(x).var().item() / x.var().item()


def test_lecun_uniform_bounds_and_variance():
    layer = init_weights(nn.Linear(300, 10), "lecun_uniform")
    bound = math.sqrt(3 / 300)
    assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.95 * bound
    assert layer.weight.var().item() == pytest.approx(1 / 300, rel=0.1)


def test_lecun_uniform_preserves_variance_through_a_deep_linear_stack():
    assert _variance_through(30, 1.0) == pytest.approx(1.0, rel=0.35)
    assert _variance_through(30, 1.3) > 100  # 1.3^60: explodes with a wrong scale
    assert _variance_through(30, 0.7) < 1e-4  # 0.7^60: vanishes


def test_efficientnet_init_uses_fan_out():
    model = effzoo.create_model("efficientnet_b0")
    dw = model.blocks[1][0].conv_dw  # depthwise 3x3 on 96 channels: fan_out = 3*3*96/96 = 9
    assert dw.weight.std().item() == pytest.approx(math.sqrt(2 / 9), rel=0.1)
    assert model.classifier.weight.abs().max() <= 1 / math.sqrt(1000)
    lecun = effzoo.create_model("efficientnet_b0", init="lecun_uniform")
    assert lecun.blocks[1][0].conv_dw.weight.abs().max() <= math.sqrt(3 / 9)
    with pytest.raises(ValueError, match="init scheme"):
        effzoo.create_model("efficientnet_b0", init="xavier")


def test_pretrained_path_loads_safetensors_and_torch_files(tmp_path, randomize):
    src = effzoo.create_model("mobilenetv2_035")
    sd = randomize(src.state_dict())
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "w.safetensors")
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "w.pth")
    for f in ("w.safetensors", "w.pth"):
        model = effzoo.create_model("mobilenetv2_035", pretrained=str(tmp_path / f), num_classes=3)
        torch.testing.assert_close(model.conv_stem.weight, sd["conv_stem.weight"])
        assert model.classifier.out_features == 3  # loaded first, then the head is replaced


class Payload:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_a_pickle_with_code_is_refused_and_does_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open("evil.pth", "wb") as f:
        pickle.dump({"conv_stem.weight": Payload()}, f)
    with pytest.raises(ValueError, match="refused"):
        read_state_dict("evil.pth")
    assert not (tmp_path / "PWNED").exists()


def test_truncated_files_are_named(tmp_path):
    save_file({"a": torch.zeros(1000)}, tmp_path / "t.safetensors")
    data = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="t.safetensors"):
        read_state_dict(tmp_path / "t.safetensors")
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "missing.pth")


def test_state_dict_of_another_architecture_names_the_mismatch():
    model = effzoo.create_model("efficientnet_b0")
    other = effzoo.create_model("efficientnet_b2").state_dict()
    with pytest.raises(ValueError, match=r"unexpected key.*shape mismatches, first: blocks.2.0.conv_pwl.weight file \(48, 144, 1, 1\) vs model \(40"):
        load_weights(model, other)
    with pytest.raises(ValueError, match="unexpected key"):
        load_weights(model, effzoo.create_model("resnet18").state_dict())


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b5", "resnet50"])
def test_torchvision_weights_convert_and_agree(name, randomize):
    tv = getattr(torchvision.models, name)().eval()
    tv.load_state_dict(randomize(tv.state_dict()))
    ours = load_torchvision_weights(effzoo.create_model(name), tv.state_dict()).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = tv(x)
        assert want.abs().max() > 1e-3
        torch.testing.assert_close(ours(x), want, rtol=1e-4, atol=1e-4)


def test_torchvision_conversion_rejects_another_architecture():
    with pytest.raises(ValueError, match="not the same architecture|does not fit"):
        load_torchvision_weights(effzoo.create_model("efficientnet_b1"), torchvision.models.efficientnet_b0().state_dict())


def test_pretrained_true_without_published_weights_is_explained():
    with pytest.raises(ValueError, match="no published weights"):
        effzoo.create_model("efficientnet", phi=1, pretrained=True)
