"""EfficientNetV2: the Fused-MBConv block, the presets against timm (and torchvision), phi-scaling of V2-S,
and the MBConvNet features (small_input, features_only, grad checkpointing) on V2."""

import pytest
import timm
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import effzoo
from effzoo.models.blocks import EdgeResidual, FusedMBConv
from effzoo.models.convert import convert_torchvision_state_dict, load_torchvision_weights
from effzoo.models.layers import DropPath

# timm 1.0.31, random init, 1000 classes (torchvision's efficientnet_v2_s/m/l have the same counts).
TIMM_PARAMS = {"efficientnetv2_s": 21_458_488, "efficientnetv2_m": 54_139_356, "efficientnetv2_l": 118_515_272,
               "efficientnetv2_rw_s": 23_941_296}
# (train, test) px of timm's pretrained cfgs.
TIMM_SIZES = {"efficientnetv2_s": (288, 384), "efficientnetv2_m": (320, 416), "efficientnetv2_l": (384, 480),
              "efficientnetv2_rw_s": (288, 384)}


def meta_macs(model, size):
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, *size, device="meta"))
    return counter.get_total_flops() // 2


def shapes(model):
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def block(cls=FusedMBConv, in_chs=8, out_chs=8, stride=1, expand=1, se=0.0, drop_path=0.0):
    return cls(in_chs, out_chs, kernel=3, stride=stride, expand_ratio=expand, se_ratio=se, act_layer=nn.SiLU,
               drop_path=drop_path)


# -- the block -----------------------------------------------------------------------------------
def test_fused_mbconv1_is_a_single_conv_with_a_residual():
    b = block(drop_path=0.1)
    assert [k for k in b.state_dict() if not k.startswith("bn1.")] == ["conv.weight"]  # timm's ConvBnAct names
    assert b.has_skip and isinstance(b.drop_path, DropPath) and b.conv.stride == (1, 1)
    nn.init.zeros_(b.bn1.weight), nn.init.zeros_(b.bn1.bias)  # branch outputs SiLU(0) = 0: only the skip is left
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(b.eval()(x), x)


def test_fused_mbconv_expands_with_stride_then_projects_linearly():
    b = block(in_chs=8, out_chs=16, stride=2, expand=4, drop_path=0.1).eval()
    assert list(b.state_dict())[:2] == ["conv_exp.weight", "bn1.weight"] and "conv_pwl.weight" in b.state_dict()
    assert b.conv_exp.weight.shape == (32, 8, 3, 3) and b.conv_exp.stride == (2, 2) and b.conv_exp.groups == 1
    assert b.conv_pwl.weight.shape == (16, 32, 1, 1) and not b.has_skip and isinstance(b.drop_path, nn.Identity)
    assert b(torch.randn(2, 8, 8, 8)).shape == (2, 16, 4, 4)
    # no activation after the projection: a negative output survives
    assert (b(torch.randn(2, 8, 8, 8)) < 0).any()


@pytest.mark.parametrize("stride, out_chs", [(2, 8), (1, 16)])
def test_no_residual_when_shapes_change(stride, out_chs):
    assert not block(out_chs=out_chs, stride=stride, expand=4).has_skip


def test_residual_fused_block_keeps_shape_and_the_skip_at_expansion_4():
    b = block(expand=4).eval()
    nn.init.zeros_(b.bn2.weight), nn.init.zeros_(b.bn2.bias)
    x = torch.randn(1, 8, 5, 5)
    assert b.has_skip and torch.equal(b(x), x)


def test_edge_residual_keeps_the_projection_at_expansion_1():
    b = block(EdgeResidual)
    assert b.conv_exp.weight.shape == (8, 8, 3, 3) and b.conv_pwl.weight.shape == (8, 8, 1, 1) and b.has_skip


def test_fused_block_refuses_squeeze_excite():
    with pytest.raises(ValueError, match="no squeeze-excite"):
        block(expand=4, se=0.25)


# -- presets against timm and torchvision ----------------------------------------------------------
@pytest.mark.parametrize("name", list(TIMM_PARAMS))
def test_presets_match_timm_names_shapes_params_and_macs(name):
    with torch.device("meta"):
        ours, ref = effzoo.create_model(name), timm.create_model(name)
    assert sum(p.numel() for p in ours.parameters()) == TIMM_PARAMS[name] == sum(p.numel() for p in ref.parameters())
    assert shapes(ours) == shapes(ref)  # same names, shapes and order: timm state dicts load strictly
    cfg = ours.pretrained_cfg
    assert (cfg["input_size"][-1], cfg["test_input_size"][-1]) == TIMM_SIZES[name]
    assert cfg["crop_pct"] == ref.pretrained_cfg["crop_pct"] == 1.0
    assert meta_macs(ours, cfg["input_size"]) == pytest.approx(meta_macs(ref, cfg["input_size"]), rel=0.01)


def test_dropout_and_head_of_the_presets():
    with torch.device("meta"):
        models = {n: effzoo.create_model(n) for n in TIMM_PARAMS}
    assert [models[n].drop_rate for n in ("efficientnetv2_s", "efficientnetv2_m", "efficientnetv2_l")] == [0.2, 0.3, 0.4]
    assert [m.num_features for m in models.values()] == [1280, 1280, 1280, 1792]
    assert models["efficientnetv2_rw_s"].pretrained_cfg.hf_hub_id == "timm/efficientnetv2_rw_s.ra2_in1k"


@pytest.mark.parametrize("name", ["efficientnetv2_s", "efficientnetv2_rw_s"])
def test_timm_weights_load_strictly_and_give_the_same_outputs(name, randomize):
    ref = timm.create_model(name).eval()
    ref.load_state_dict(randomize(ref.state_dict()))
    ours = effzoo.create_model(name).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = ref(x), ours(x)
    assert want.abs().max() > 1e-3  # two near-zero outputs would prove nothing
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_torchvision_v2_s_weights_convert_and_agree(randomize):
    tv = torchvision.models.efficientnet_v2_s().eval()
    tv.load_state_dict(randomize(tv.state_dict()))
    ours = load_torchvision_weights(effzoo.create_model("efficientnetv2_s"), tv.state_dict()).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = tv(x)
        assert want.abs().max() > 1e-3
        torch.testing.assert_close(ours(x), want, rtol=1e-4, atol=1e-4)  # needs torchvision's BN eps 1e-3


@pytest.mark.parametrize("name", ["m", "l"])
def test_torchvision_v2_m_and_l_convert_tensor_for_tensor(name):
    with torch.device("meta"):
        tv, ours = getattr(torchvision.models, f"efficientnet_v2_{name}")(), effzoo.create_model(f"efficientnetv2_{name}")
    converted = convert_torchvision_state_dict(tv.state_dict(), ours)  # raises at the first shape disagreement
    assert list(converted) == list(ours.state_dict())


# -- phi scaling ----------------------------------------------------------------------------------
def test_phi_scales_v2_s_and_roughly_doubles_macs_per_step():
    macs = []
    for phi in (-2, -1, 0, 1):
        with torch.device("meta"):
            model = effzoo.create_model("efficientnetv2", phi=phi)
        res = model.pretrained_cfg["input_size"][-1]
        assert abs(res - 288 * 1.15**phi) <= 4  # V2-S's train size scaled by gamma^phi, rounded to 8
        assert model.pretrained_cfg["scaling"]["family"] == "efficientnetv2"
        macs.append(meta_macs(model, model.pretrained_cfg["input_size"]))
        if phi == 0:  # phi=0 is the baseline itself
            with torch.device("meta"):
                assert shapes(model) == shapes(effzoo.create_model("efficientnetv2_s"))
    ratios = [b / a for a, b in zip(macs, macs[1:])]
    assert all(1.5 <= r <= 2.5 for r in ratios), ratios


def test_phi_models_build_and_run():
    small = effzoo.create_model("efficientnetv2", phi=-2, num_classes=10, in_chans=1).eval()
    assert [len(s) for s in small.blocks] == [2, 3, 3, 5, 7, 11] and small.num_features == 1056
    assert small(torch.randn(1, 1, 32, 32)).shape == (1, 10)
    with torch.device("meta"):
        big = effzoo.create_model("efficientnetv2_s", phi=1)  # phi on the baseline preset = the family
    assert [len(s) for s in big.blocks] == [3, 5, 5, 8, 11, 18] and big.num_features == 1408


def test_phi_on_a_larger_preset_is_refused():
    with pytest.raises(ValueError, match="phi= scales the V2-S baseline"):
        effzoo.create_model("efficientnetv2_m", phi=1)


def test_presets_on_small_data_scale_their_size_and_take_the_small_input_stem():
    with torch.device("meta"):
        model = effzoo.create_model("efficientnetv2_s", base_resolution=28, num_classes=10, in_chans=1)
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (1, 32, 32) and cfg["test_input_size"] == (1, 32, 32)  # 28 * 288/224, rounded
    assert cfg["small_input"] and model.total_stride == 8


# -- MBConvNet features on V2 ----------------------------------------------------------------------
def test_small_input_keeps_a_4x4_map_at_32px():
    model = effzoo.create_model("efficientnetv2", phi=-2, small_input=True, in_chans=1).eval()
    assert model.total_stride == 8 and model.conv_stem.stride == (1, 1)
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 1, 32, 32)).shape[-2:] == (4, 4)


def test_features_only_returns_the_stage_maps_like_timm():
    model = effzoo.create_model("efficientnetv2", phi=-2, features_only=True).eval()
    with torch.device("meta"):
        ref = timm.create_model("efficientnetv2_s", features_only=True)
        full = effzoo.create_model("efficientnetv2_s", features_only=True)
    assert full.feature_info.channels() == ref.feature_info.channels() == [24, 48, 64, 160, 256]
    assert full.feature_info.module_name() == ref.feature_info.module_name()
    assert model.feature_info.reduction() == [2, 4, 8, 16, 32]
    with torch.no_grad():
        maps = model(torch.randn(1, 3, 64, 64))
    assert [m.shape[1:] for m in maps] == [(c, 64 // r, 64 // r) for c, r in
                                           zip(model.feature_info.channels(), model.feature_info.reduction())]


def test_grad_checkpointing_gives_the_same_gradients():
    # one narrow block per stage: checkpointing itself is the shared MBConvNet path, the Fused blocks are new
    args = dict(depth_multiplier=0.06, width_multiplier=0.25, in_chans=1, num_classes=4, small_input=True,
                drop_rate=0.0, drop_path_rate=0.0)
    plain, ckpt = effzoo.create_model("efficientnetv2", **args), effzoo.create_model("efficientnetv2", **args)
    ckpt.load_state_dict(plain.state_dict())
    ckpt.set_grad_checkpointing()
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    for m in (plain, ckpt):
        m.train()(x).square().mean().backward()
    assert [len(s) for s in plain.blocks] == [1] * 6
    for a, b in zip(ckpt.parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad)
    torch.testing.assert_close(ckpt.blocks[1][0].bn1.running_mean, plain.blocks[1][0].bn1.running_mean)
