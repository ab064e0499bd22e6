"""FixRes library: resolution sweep, best-resolution choice, BN recalibration, selective fine-tuning."""

import pytest
import torch

import effzoo
from effzoo.data import create_datamodule
from effzoo.evaluation.evaluate import best_resolution, classification_metrics, parse_resolutions, resolution_sweep
from effzoo.training.fixres import (fit_temperature, fixres_finetune, fold_temperature, last_batchnorm,
                                   recalibrate_bn)


@pytest.fixture(scope="module")
def data():
    dm = create_datamodule("synthetic", batch_size=32, num_workers=0, num_classes=4, size=16, num_samples=96,
                           rand_augment=None)
    dm.setup()
    return dm


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return effzoo.create_model("mobilenetv2_035", num_classes=4, in_chans=1, small_input=True).eval()


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_sweep_has_one_deterministic_entry_per_resolution(data):
    model = tiny_model()
    a = resolution_sweep(model, data, "24,16,20", split="val")
    b = resolution_sweep(model, data, [16, 20, 24], split="val")
    assert [r["resolution"] for r in a] == [16, 20, 24]
    for ra, rb in zip(a, b):
        for key in ("top1", "top4", "loss", "ece"):
            assert ra[key] == rb[key]
        assert ra["num_samples"] == len(data.split_labels("val"))


def test_best_resolution_is_chosen_on_the_given_rows():
    rows = [{"resolution": 24, "top1": 80.0}, {"resolution": 32, "top1": 91.0}, {"resolution": 40, "top1": 91.0}]
    assert best_resolution(rows) == 32  # tie -> cheaper resolution


def test_metrics_against_hand_computed_values():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 2.0], [2.0, 1.0, 0.0]])
    targets = torch.tensor([0, 1, 1, 2])
    m = classification_metrics(logits, targets, 3)
    assert m["top1"] == 50.0 and m["top3"] == 100.0
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 1], [1, 0, 0]]
    assert m["per_class_top1"] == [100.0, 50.0, 0.0]
    assert m["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, targets).item())


@pytest.mark.parametrize("text, match", [("224,abc", "could not parse"), ("", "no resolution"), ("16,64", "stride 32")])
def test_bad_resolution_lists(text, match):
    with pytest.raises(ValueError, match=match):
        parse_resolutions(text, min_size=32)


def test_bn_recalibration_changes_running_stats_only(data):
    model = tiny_model()
    before = snapshot(model)
    recalibrate_bn(model, data.eval_dataloader("train", 24), which="last")
    after = model.state_dict()
    bn_name = next(n for n, m in model.named_modules() if m is last_batchnorm(model))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= {f"{bn_name}.running_mean", f"{bn_name}.running_var", f"{bn_name}.num_batches_tracked"}
    assert not model.training and last_batchnorm(model).momentum == 0.1


def test_recalibrated_stats_equal_the_population_statistics(data):
    model = tiny_model()
    loader = data.eval_dataloader("train", 16)
    recalibrate_bn(model, loader, which="last")
    bn = last_batchnorm(model)
    feats = []
    hook = bn.register_forward_hook(lambda m, i, o: feats.append(i[0].detach()))
    with torch.no_grad():
        for x, _ in loader:
            model(x)
    hook.remove()
    x = torch.cat(feats).transpose(0, 1).flatten(1)
    torch.testing.assert_close(bn.running_mean, x.mean(1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("adapt", ["classifier+bn", "bn"])
def test_finetune_changes_only_the_chosen_parameter_groups(data, adapt):
    model = tiny_model()
    before = snapshot(model)
    fixres_finetune(model, data.eval_dataloader("train", 24, shuffle=True), adapt=adapt, epochs=1, lr=0.05)
    after = model.state_dict()
    bn_name = next(n for n, m in model.named_modules() if m is last_batchnorm(model))
    allowed = {f"{bn_name}.running_mean", f"{bn_name}.running_var", f"{bn_name}.num_batches_tracked"}
    allowed |= {"classifier.weight", "classifier.bias"} if adapt == "classifier+bn" else {f"{bn_name}.weight", f"{bn_name}.bias"}
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == allowed  # everything else bit-identical
    assert all(p.requires_grad for p in model.parameters()) and not model.training


def test_finetune_all_and_bad_adapt(data):
    model = tiny_model()
    before = snapshot(model)
    fixres_finetune(model, data.eval_dataloader("train", 16, shuffle=True), adapt="all", epochs=1, lr=0.05)
    assert not torch.equal(before["conv_stem.weight"], model.conv_stem.weight)
    with pytest.raises(ValueError, match="unknown adapt"):
        fixres_finetune(model, [], adapt="everything")


def test_fit_temperature_recovers_the_temperature_that_generated_the_labels():
    torch.manual_seed(0)
    true_logits = 3 * torch.randn(4000, 5)
    targets = torch.distributions.Categorical(logits=true_logits).sample()
    # a model whose logits are 2.5x too small (under-confident) needs T = 1/2.5
    assert fit_temperature(true_logits / 2.5, targets) == pytest.approx(0.4, rel=0.08)
    assert fit_temperature(true_logits, targets) == pytest.approx(1.0, rel=0.08)
    with pytest.raises(ValueError, match="logits"):
        fit_temperature(torch.zeros(3), targets[:3])


def test_folding_a_temperature_keeps_predictions_and_scales_logits(data):
    model = tiny_model()
    x = next(iter(data.eval_dataloader("val", 16)))[0]
    with torch.no_grad():
        before = model(x)
        after = fold_temperature(model, 0.5)(x)
    torch.testing.assert_close(after, before / 0.5, rtol=1e-5, atol=1e-5)
    assert torch.equal(after.argmax(1), before.argmax(1))
    with pytest.raises(ValueError, match="temperature"):
        fold_temperature(model, 0.0)
    model.reset_classifier(0)
    with pytest.raises(ValueError, match="linear classifier"):
        fold_temperature(model, 2.0)
