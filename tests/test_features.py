"""Backbones (`features_only=True`) equal timm's for the same weights; gradient checkpointing changes memory,
not numbers: the same loss, gradients and batch-norm statistics as a plain step."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import effzoo
from effzoo.training.config import resolve
from effzoo.training.run import build

timm = pytest.importorskip("timm")


@pytest.mark.parametrize("name", ["efficientnet_b0", "mobilenetv2_035", "resnet18"])
def test_features_equal_timm_features_only(name, randomize, tmp_path):
    from safetensors.torch import save_file

    reference = timm.create_model(name)
    state = randomize(reference.state_dict())
    save_file(state, tmp_path / "w.safetensors")
    theirs = timm.create_model(name, features_only=True).eval()
    missing, _ = theirs.load_state_dict(state, strict=False)
    assert not missing
    ours = effzoo.create_model(name, features_only=True, pretrained=str(tmp_path / "w.safetensors")).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert len(got) == len(expected) == 5
    for a, b in zip(expected, got):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    assert ours.feature_info.channels() == theirs.feature_info.channels()
    assert ours.feature_info.reduction() == theirs.feature_info.reduction()
    assert ours.feature_info.module_name() == theirs.feature_info.module_name()
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())  # the same modules under the same names


@pytest.mark.parametrize("name,kwargs,last_input", [
    ("efficientnet", dict(phi=-4, small_input=True), "conv_head"),  # the last level feeds the 1x1 head conv
    ("mobilenetv2_035", dict(phi=-1, small_input=False), "conv_head"),
    ("resnet18", dict(phi=-2, small_input=True), None),  # ResNet's last level is forward_features itself
])
def test_levels_follow_small_input_and_phi(name, kwargs, last_input):
    full = effzoo.create_model(name, in_chans=1, **kwargs).eval()
    feats = effzoo.create_model(name, in_chans=1, features_only=True, **kwargs).eval()
    feats.load_state_dict({k: v for k, v in full.state_dict().items() if k in feats.state_dict()})
    seen = {}
    if last_input:
        full.get_submodule(last_input).register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        maps, final = feats(x), full.forward_features(x)
    last = seen["x"] if last_input else final
    torch.testing.assert_close(maps[-1], last)
    for m, ch, red in zip(maps, feats.feature_info.channels(), feats.feature_info.reduction()):
        assert m.shape[1:] == (ch, 32 // red, 32 // red)
    assert feats.feature_info.reduction()[-1] == full.total_stride


def test_out_indices_select_and_cut_the_network():
    full = effzoo.create_model("efficientnet", phi=-4, small_input=False, features_only=True).eval()
    part = effzoo.create_model("efficientnet", phi=-4, small_input=False, features_only=True, out_indices=(2, 1)).eval()
    part.load_state_dict({k: v for k, v in full.state_dict().items() if k in part.state_dict()})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        all_maps, maps = full(x), part(x)
    assert part.out_indices == (1, 2) and len(maps) == 2
    torch.testing.assert_close(maps[0], all_maps[1])
    torch.testing.assert_close(maps[1], all_maps[2])
    keys = part.state_dict()
    assert not any(k.startswith(("blocks.3", "conv_head", "classifier")) for k in keys)  # nothing past level 2 is kept
    last = effzoo.create_model("resnet18", features_only=True, out_indices=(-1,))
    assert last.feature_info.module_name() == ["layer4"] and last.feature_info.channels() == [512]


def test_bad_out_indices_are_named():
    with pytest.raises(ValueError, match=r"out_indices \(5,\) out of range: resnet18 has 5 feature levels"):
        effzoo.create_model("resnet18", features_only=True, out_indices=(5,))
    with pytest.raises(ValueError, match="features_only=True"):
        effzoo.create_model("resnet18", out_indices=(1,))


def test_shipped_model_as_a_backbone_rebuilds_from_its_record():
    name = "effzoo_efficientnet_phi-6_digits"
    full = effzoo.create_model(name, pretrained=True).eval()
    feats = effzoo.create_model(name, pretrained=True, features_only=True, out_indices=(0, 4)).eval()
    assert feats.pretrained_cfg.model_args["features_only"] is True
    x = torch.randn(2, 1, 16, 16)
    seen = {}
    full.conv_head.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        maps = feats(x)
        full(x)
    torch.testing.assert_close(maps[-1], seen["x"])  # the shipped weights were loaded before the cut


def _step(model, x, y, seed):
    model.train()
    torch.manual_seed(seed)  # the same stochastic-depth draws for both
    out = model(x)
    loss = F.cross_entropy(out, y) if torch.is_tensor(out) else sum(m.square().mean() for m in out)
    loss.backward()
    return loss.detach()


@pytest.mark.parametrize("name,kwargs,features_only", [
    ("efficientnet", dict(phi=-4, drop_path_rate=0.3), False),
    ("efficientnet", dict(phi=-4, drop_path_rate=0.3), True),  # a backbone checkpoints its stages too
    ("mobilenetv2_035", dict(), False),
    ("resnet18", dict(phi=-3, drop_path_rate=0.2), False),
])
def test_grad_checkpointing_gives_the_same_step(name, kwargs, features_only):
    plain = effzoo.create_model(name, num_classes=4, in_chans=1, small_input=True, features_only=features_only, **kwargs)
    ckpt = copy.deepcopy(plain)
    ckpt.set_grad_checkpointing()
    stage = ckpt.get_submodule("layer2" if name.startswith("resnet") else "blocks.1")
    runs = []
    stage[0].register_forward_pre_hook(lambda *_: runs.append(1))
    x, y = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3])
    a, b = _step(plain, x, y, seed=3), _step(ckpt, x, y, seed=3)
    assert len(runs) == 2  # forward, then recomputed in backward: checkpointing is really on
    torch.testing.assert_close(b, a, rtol=0, atol=0)
    for (n, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-6, atol=1e-7, msg=n)
    # batch norm counted the batch once: the recomputation left running stats and counters alone
    for (n, p), q in zip(plain.named_buffers(), ckpt.buffers()):
        assert torch.equal(p, q), n
    runs.clear()
    with torch.no_grad():
        ckpt.eval()(x)
    assert len(runs) == 1  # evaluation runs each block once


def test_train_flag_turns_checkpointing_on():
    cfg, _, module = build(resolve(dict(model="mobilenetv2_035", data="synthetic", grad_checkpointing=True,
                                        data_options={"num_samples": 32, "size": 16}, num_workers=0)))
    assert cfg.grad_checkpointing and module.model.grad_checkpointing
