"""The builder against timm (random init as the reference) and against the published tables."""

import pytest
import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import effzoo
from effzoo.models.blocks import DepthwiseSeparable, InvertedResidual
from effzoo.models.efficientnet import PRESETS
from effzoo.models.stage_net import BlockStage, build_stage_net
from effzoo.scaling import resolve_scaling

EFFICIENTNETS = [f"efficientnet_b{i}" for i in range(8)]
TIMM_PARITY = EFFICIENTNETS + ["resnet18", "resnet34", "resnet50", "mobilenetv2_050", "mobilenetv2_100", "mobilenetv2_140"]

# Published parameter counts (1000 classes); identical in timm, torchvision and the TF release.
PUBLISHED_PARAMS = {
    "efficientnet_b0": 5_288_548, "efficientnet_b1": 7_794_184, "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232, "efficientnet_b4": 19_341_616, "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704, "efficientnet_b7": 66_347_960, "resnet50": 25_557_032, "mobilenetv2_100": 3_504_872,
}
# Channels (stem, 7 stages, head) and repeats of the official builder (reference table).
OFFICIAL_LAYOUT = {
    "efficientnet_b3": ([40, 24, 32, 48, 96, 136, 232, 384, 1536], [2, 3, 3, 5, 5, 6, 2]),
    "efficientnet_b7": ([64, 32, 48, 80, 160, 224, 384, 640, 2560], [4, 7, 7, 10, 10, 13, 4]),
}


def meta_macs(model, size):
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, *size, device="meta"))
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("name", list(PUBLISHED_PARAMS))
def test_param_counts_equal_the_published_ones(name):
    with torch.device("meta"):
        model = effzoo.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMS[name]


@pytest.mark.parametrize("name", TIMM_PARITY)
def test_macs_within_one_percent_of_timm_at_native_resolution(name):
    with torch.device("meta"):
        ours, ref = effzoo.create_model(name), timm.create_model(name)
    size = ours.pretrained_cfg["input_size"]
    assert size[-1] == (PRESETS[name].resolution if name in PRESETS else 224)
    assert meta_macs(ours, size) == pytest.approx(meta_macs(ref, size), rel=0.01)


@pytest.mark.parametrize("name", TIMM_PARITY)
def test_timm_weights_load_strictly_and_give_the_same_outputs(name, randomize):
    ref = timm.create_model(name).eval()
    ref.load_state_dict(randomize(ref.state_dict()))
    ours = effzoo.create_model(name).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())  # same names in the same order
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = ref(x), ours(x)
        assert want.abs().max() > 1e-3  # a comparison of two near-zero outputs would prove nothing
        assert (got - want).abs().max() < 1e-4 * max(1.0, want.abs().max().item())
        torch.testing.assert_close(ours.forward_features(x), ref.forward_features(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(OFFICIAL_LAYOUT))
def test_channels_and_repeats_follow_the_official_rounding(name):
    with torch.device("meta"):
        model = effzoo.create_model(name)
    chans, repeats = OFFICIAL_LAYOUT[name]
    assert [len(stage) for stage in model.blocks] == repeats
    got = [model.conv_stem.out_channels] + [stage[-1].bn2.num_features if i == 0 else stage[-1].bn3.num_features
                                           for i, stage in enumerate(model.blocks)] + [model.num_features]
    assert got == chans


@pytest.mark.parametrize("family", ["efficientnet", "resnet50", "mobilenetv2_100"])
def test_compound_scaling_doubles_macs_per_phi(family):
    base = None
    for phi in range(4):
        with torch.device("meta"):
            model = effzoo.create_model(family, phi=phi)
        res = model.pretrained_cfg["input_size"][-1]
        assert abs(res - 224 * 1.15**phi) <= 4  # rounded to a multiple of 8
        macs = meta_macs(model, model.pretrained_cfg["input_size"])
        base = base or macs
        assert 0.75 * 2**phi <= macs / base <= 1.35 * 2**phi


def test_phi_model_differs_from_the_hand_set_preset():
    with torch.device("meta"):
        by_formula, preset = effzoo.create_model("efficientnet", phi=1), effzoo.create_model("efficientnet_b1")
    assert by_formula.pretrained_cfg["input_size"][-1] == 256 and preset.pretrained_cfg["input_size"][-1] == 240
    assert by_formula.conv_stem.out_channels == 32 and by_formula.num_features == 1408  # width 1.1 vs B1's 1.0
    assert preset.num_features == 1280


def test_negative_phi_shrinks_and_runs():
    model = effzoo.create_model("efficientnet", phi=-3, num_classes=7, in_chans=1).eval()
    assert model.pretrained_cfg["input_size"] == (1, 144, 144)
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)


def test_drop_path_grows_linearly_with_block_index():
    model = effzoo.create_model("efficientnet_b0", drop_path_rate=0.2)
    blocks = [b for stage in model.blocks for b in stage]
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for b in blocks]
    # only residual blocks carry stochastic depth; their rate is 0.2 * index / 16
    for i, (b, r) in enumerate(zip(blocks, rates)):
        assert r == pytest.approx(0.2 * i / 16 if b.has_skip and i > 0 else 0.0)
    assert max(rates) == pytest.approx(0.2 * 14 / 16)  # block 15 (192->320) has no residual to drop


class RecordingBlock(nn.Module):
    """A block kind the builder has never heard of: a strided 1x1 conv that keeps the keywords it got."""

    def __init__(self, in_chs, out_chs, **kwargs):
        super().__init__()
        self.kwargs = kwargs
        self.conv = nn.Conv2d(in_chs, out_chs, 1, stride=kwargs["stride"])

    def forward(self, x):
        return self.conv(x)


def test_builder_takes_each_stage_block_from_the_table():
    table = (
        BlockStage(DepthwiseSeparable, 1, 3, 1, 16, 1),
        BlockStage(InvertedResidual, 6, 3, 2, 24, 2),
        BlockStage(RecordingBlock, 4, 5, 2, 32, 2, 0.0),
    )
    model = build_stage_net("custom", resolve_scaling(), table, stem_chs=32, head_chs=64, default_drop_rate=0.2)
    assert [[type(b) for b in stage] for stage in model.blocks] == [
        [DepthwiseSeparable], [InvertedResidual] * 2, [RecordingBlock] * 2]
    first, second = (b.kwargs for b in model.blocks[2])
    assert {k: v for k, v in first.items() if k != "drop_path"} == dict(
        kernel=5, stride=2, expand_ratio=4, se_ratio=0.0, act_layer=nn.SiLU)
    assert second["stride"] == 1 and second["drop_path"] == pytest.approx(0.2 * 4 / 5)
    assert model.total_stride == 8 and model(torch.randn(1, 3, 32, 32)).shape == (1, 1000)
    with pytest.raises(ValueError, match="expand_ratio"):  # a row may not ask a block for what it lacks
        build_stage_net("bad", resolve_scaling(), (BlockStage(DepthwiseSeparable, 6, 3, 1, 16, 1),),
                        stem_chs=32, head_chs=64, default_drop_rate=0.2)


def test_dropout_by_scale():
    assert effzoo.create_model("efficientnet_b7").drop_rate == 0.5
    assert effzoo.create_model("efficientnet", phi=-1).drop_rate == pytest.approx(0.2 - 0.3 / 7)


def test_single_dimension_scaling():
    with torch.device("meta"):
        deep = effzoo.create_model("resnet50", depth_multiplier=4.0)
        wide = effzoo.create_model("mobilenetv2_100", width_multiplier=2.0)
        big = effzoo.create_model("resnet50", resolution=448)
    assert [len(getattr(deep, f"layer{i}")) for i in range(1, 5)] == [12, 16, 24, 12]
    assert wide.conv_stem.out_channels == 64 and wide.num_features == 2560
    assert big.pretrained_cfg["input_size"] == (3, 448, 448)


def test_forward_features_head_and_reset_classifier():
    model = effzoo.create_model("mobilenetv2_035", num_classes=5).eval()
    x = torch.randn(1, 3, 64, 64)
    feats = model.forward_features(x)
    assert feats.shape == (1, model.num_features, 2, 2)
    torch.testing.assert_close(model.forward_head(feats), model(x))
    assert model.forward_head(feats, pre_logits=True).shape == (1, model.num_features)
    model.reset_classifier(3)
    assert model(x).shape == (1, 3) and model.pretrained_cfg["num_classes"] == 3
    model.reset_classifier(0)
    assert model(x).shape == (1, model.num_features)


def test_small_input_keeps_weights_but_reduces_stride():
    a = effzoo.create_model("efficientnet", phi=-2)
    b = effzoo.create_model("efficientnet", phi=-2, small_input=True)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    assert (a.total_stride, b.total_stride) == (32, 8)
    assert b.forward_features(torch.randn(1, 3, 32, 32)).shape[-1] == 4
    r = effzoo.create_model("resnet18", small_input=True)
    assert r.total_stride == 8 and r.forward_features(torch.randn(1, 3, 32, 32)).shape[-1] == 4


def test_pretrained_cfg_describes_the_model():
    cfg = effzoo.create_model("efficientnet", phi=2, coefficients=(1.2, 1.1, 1.15)).pretrained_cfg
    for key in ("input_size", "test_input_size", "crop_pct", "interpolation", "mean", "std", "num_classes", "scaling"):
        assert key in cfg
    assert cfg["scaling"]["phi"] == 2 and cfg["scaling"]["coefficients"] == [1.2, 1.1, 1.15]
    assert cfg["model_name"] == "efficientnet" and cfg["model_args"]["phi"] == 2


def test_list_models_wildcards():
    assert effzoo.list_models("efficientnet_b*") == [f"efficientnet_b{i}" for i in range(9)]
    assert "resnet50" in effzoo.list_models("resnet*") and "efficientnet_l2" in effzoo.list_models()


def test_model_info_counts_params_and_macs():
    info = effzoo.model_info(effzoo.create_model("efficientnet_b0"))
    assert info["params"] == 5_288_548 and info["macs"] == pytest.approx(0.386e9, rel=0.005)
    assert effzoo.model_info(effzoo.create_model("efficientnet_b0"), input_size=(3, 112, 112))["macs"] < info["macs"] / 3


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="efficientnet_b9"), "efficientnet_b"),
    (dict(name="resnet5"), "resnet50"),
    (dict(name="efficientnet", phi=-60), "width multiplier"),
    (dict(name="efficientnet", phi=1, coefficients=(1.5, 1.5, 1.5)), "alpha"),
    (dict(name="resnet50", num_classes=0.5), "num_classes"),
    (dict(name="resnet50", in_chans=0), "in_chans"),
    (dict(name="mobilenetv2_100", width_multiplier=0.0), "width multiplier"),
    (dict(name="efficientnet_b3", phi=1), "preset"),
    (dict(name="efficientnet", dropout=0.1), "unknown argument"),
])
def test_bad_arguments_are_clear_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        effzoo.create_model(**kwargs)


def test_wrong_input_channels_is_explained():
    model = effzoo.create_model("mobilenetv2_035", in_chans=1)
    with pytest.raises(ValueError, match="in_chans=3"):
        model(torch.randn(1, 3, 32, 32))
