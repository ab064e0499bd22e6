"""Multi-task core: task specs, labels, masked losses, model, weightings, proximal operators, report."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from effzoo.mtl import (
    FASHION_MNIST_COARSE,
    MultiTaskDataset,
    MultiTaskModel,
    RotationTransform,
    TaskSpec,
    apply_proximal_step,
    coarse_labels,
    create_weighting,
    gradient_cosine,
    head_learning_rate,
    keep_labels,
    label_counts,
    load_tasks_yaml,
    make_regularizer,
    make_task_labels,
    mix_datasets,
    multitask_losses,
    parse_tasks,
    pcgrad_project,
    penalty_loss,
    random_labels,
    render_table,
    rotate_batch,
    task_loss,
    transfer_report,
    validate_tasks,
    write_json,
)

CLS = TaskSpec("a", "classification", 3)


def tiny_model(tasks, d_in=6, d=5, **kw) -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(nn.Sequential(nn.Linear(d_in, d), nn.Tanh()), tasks, num_features=d, **kw)


# -- task specs ------------------------------------------------------------------------------------
def test_parse_cli_string_defaults_and_sources():
    specs = parse_tasks("fine:classification:10:1.0, coarse:cls:4:0.5,rotation:classification:4,"
                        "noise:classification:10:2:random@7,attr:multilabel:5:1:attrs")
    assert [s.name for s in specs] == ["fine", "coarse", "rotation", "noise", "attr"]
    assert [s.source for s in specs] == ["label", "coarse", "rotation", "random", "attrs"]
    assert specs[1].kind == "classification" and specs[1].weight == 0.5 and specs[2].weight == 1.0
    assert specs[3].seed == 7 and specs[4].missing_value != specs[4].missing_value  # NaN
    assert parse_tasks([s.to_dict() for s in specs]) == specs  # dict round trip


def test_parse_yaml_and_mapping_forms(tmp_path):
    path = tmp_path / "tasks.yaml"
    path.write_text("tasks:\n  fine: {kind: classification, num_outputs: 10}\n"
                    "  coarse: {num_outputs: 4, weight: 0.5}\n  age: {kind: regression, num_outputs: 1, source: age}\n")
    specs = load_tasks_yaml(path)
    assert [(s.name, s.source, s.weight) for s in specs] == [("fine", "label", 1.0), ("coarse", "coarse", 0.5),
                                                             ("age", "age", 1.0)]
    validate_tasks(specs, num_classes=10, extra_sources=["age"])


@pytest.mark.parametrize("spec, match", [
    ("a:classification:3:-1", "weight"),
    ("a:classification:3:nan", "weight"),
    ("a:segmentation:3", "unknown kind"),
    ("a:classification:3,a:regression:1", "duplicate"),
    ("a:classification:1", "num_outputs >= 2"),
    ("a:classification:x", "OUTPUTS"),
    ("a:classification", "NAME:KIND:OUTPUTS"),
    ("coarse:classification:5", "4-class"),
    ("rot:regression:4:1:rotation", "4-class"),
    ("a:classification:3:1:label@2", "seed"),
    ("bad-name:classification:3", "identifier"),
    ("", "empty"),
])
def test_parse_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_tasks(spec)


def test_validate_against_data_and_dict_errors():
    with pytest.raises(ValueError, match="10 classes"):
        validate_tasks(parse_tasks("fine:classification:7"), num_classes=10)
    with pytest.raises(ValueError, match="missing from the data"):
        validate_tasks(parse_tasks("age:regression:1:1:age"), num_classes=10)
    with pytest.raises(ValueError, match="unknown field"):
        parse_tasks([{"name": "a", "num_outputs": 3, "wieght": 2}])


# -- labels and data -------------------------------------------------------------------------------
def test_coarse_random_keep_labels():
    fine = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1])
    assert coarse_labels(fine).tolist() == [0, 1, 0, 1, 0, 2, 0, 2, 3, 2, -1]
    assert sorted(torch.bincount(torch.tensor(FASHION_MNIST_COARSE)).tolist()) == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="coarse group"):
        coarse_labels(torch.tensor([10]))
    r = random_labels(100, 10, seed=3)
    assert torch.equal(r, random_labels(100, 10, seed=3)) and not torch.equal(r, random_labels(100, 10, seed=4))
    kept = keep_labels(torch.arange(50), 10, seed=0)
    assert (kept >= 0).sum() == 10 and torch.equal(kept, keep_labels(torch.arange(50), 10, seed=0))


def test_rotation_labels():
    img = torch.arange(9.0).view(1, 3, 3)
    tf = RotationTransform(seed=0)
    for _ in range(8):
        out, k = tf(img)
        assert torch.equal(out, torch.rot90(img, k, dims=(-2, -1)))
    x = torch.randn(4, 1, 3, 3)
    xr, y = rotate_batch(x, {"fine": torch.tensor([1, 2, 3, 4])}, generator=torch.Generator().manual_seed(0))
    assert xr.shape == (8, 1, 3, 3) and y["fine"].tolist() == [1, 2, 3, 4, -1, -1, -1, -1]
    assert y["rotation"][:4].tolist() == [0, 0, 0, 0]
    for i, k in enumerate(y["rotation"][4:].tolist()):
        assert k in (1, 2, 3) and torch.equal(xr[4 + i], torch.rot90(x[i], k, dims=(-2, -1)))


def test_dataset_mixing_fills_missing_labels():
    specs = parse_tasks("fine:classification:10,coarse:classification:4,age:regression:1:1:age")
    images = torch.randn(6, 1, 4, 4)
    fine = torch.tensor([0, 3, 5, 8, 9, 1])
    labels = make_task_labels(specs, fine, extra={"age": torch.arange(6.0)})
    part_a = MultiTaskDataset(list(zip(images[:3], fine[:3])), specs, {k: v[:3] for k, v in labels.items()})
    part_b = MultiTaskDataset(images[3:], specs, {"coarse": labels["coarse"][3:]})  # coarse labels only
    data, sampler = mix_datasets([part_a, part_b], proportions=[0.5, 0.5], num_samples=8)
    x, y = next(iter(torch.utils.data.DataLoader(data, batch_size=6)))
    assert x.shape == (6, 1, 4, 4)
    assert y["fine"].tolist() == [0, 3, 5, -1, -1, -1] and y["coarse"].tolist() == [0, 1, 2, 3, 2, 1]
    assert torch.isnan(y["age"][3:]).all() and len(list(sampler)) == 8
    with pytest.raises(ValueError, match="missing from the data"):
        make_task_labels(specs, fine)


# -- masked losses ---------------------------------------------------------------------------------
def test_all_missing_batch_is_zero_without_nan_and_without_gradient():
    tasks = parse_tasks("a:classification:3,m:multilabel:2,r:regression:2")
    model = tiny_model(tasks)
    x = torch.randn(4, 6)
    targets = {"a": torch.full((4,), -1), "m": torch.full((4, 2), math.nan), "r": torch.full((4, 2), math.nan)}
    # what the guard avoids: torch's mean CE over an all-ignored batch is NaN
    assert torch.isnan(F.cross_entropy(torch.randn(4, 3), targets["a"], ignore_index=-1))
    losses = multitask_losses(model(x), targets, tasks)
    assert all(v.item() == 0.0 for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and not torch.isnan(g).any() and (g == 0).all() for g in grads)
    assert {k: int(v) for k, v in label_counts(targets, tasks).items()} == {"a": 0, "m": 0, "r": 0}


def test_partial_masks_match_losses_on_labelled_subset():
    torch.manual_seed(0)
    out = torch.randn(5, 3, requires_grad=True)
    y = torch.tensor([2, -1, 0, -1, 1])
    assert torch.allclose(task_loss(out, y, CLS), F.cross_entropy(out[y >= 0], y[y >= 0]))
    task_loss(out, y, CLS).backward()
    assert (out.grad[y < 0] == 0).all() and (out.grad[y >= 0] != 0).any()
    ml = TaskSpec("m", "multilabel", 2)
    logits, t = torch.randn(3, 2), torch.tensor([[1.0, math.nan], [0.0, 1.0], [-1.0, 0.0]])
    keep = torch.tensor([[1, 0], [1, 1], [0, 1]], dtype=torch.bool)
    assert torch.allclose(task_loss(logits, t, ml), F.binary_cross_entropy_with_logits(logits[keep], t[keep]))
    reg = TaskSpec("r", "regression", 1)
    pred, target = torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([0.0, math.nan, 5.0])
    assert task_loss(pred, target, reg).item() == pytest.approx((1 + 4) / 2)


def test_loss_errors_are_clear():
    with pytest.raises(ValueError, match="head size mismatch"):
        task_loss(torch.randn(2, 3), torch.tensor([0, 3]), CLS)
    with pytest.raises(ValueError, match="num_outputs=3"):
        task_loss(torch.randn(2, 4), torch.tensor([0, 1]), CLS)
    with pytest.raises(ValueError, match="no targets"):
        multitask_losses({"a": torch.randn(2, 3)}, {}, [CLS])


# -- model -----------------------------------------------------------------------------------------
def test_multitask_model_on_a_zoo_backbone():
    import effzoo

    tasks = parse_tasks("fine:classification:10,coarse:classification:4:0.5,attr:multilabel:3")
    torch.manual_seed(0)
    model = MultiTaskModel(effzoo.create_model("mobilenetv2_035", in_chans=1, num_classes=10), tasks)
    assert isinstance(model.backbone.get_classifier(), nn.Identity)  # no unused parameters for DDP
    out = model(torch.randn(2, 1, 16, 16))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"fine": (2, 10), "coarse": (2, 4), "attr": (2, 3)}
    y = {"fine": torch.tensor([3, -1]), "coarse": torch.tensor([0, 2]), "attr": torch.tensor([[1.0, 0, 1], [0, 0, 1]])}
    sum(multitask_losses(out, y, tasks).values()).backward()
    assert all(p.grad is not None for p in model.shared_parameters() + model.task_parameters())
    assert model.last_shared_parameters()[0] is model.backbone.conv_head.weight
    W = model.head_weight_matrix()
    assert W.shape == (model.num_features, 17)
    model.set_head_weight_matrix(torch.zeros_like(W))
    assert (model.heads["coarse"].weight == 0).all()
    assert model.task_metadata()["tasks"][1]["weight"] == 0.5


# -- weighting -------------------------------------------------------------------------------------
TWO = parse_tasks("a:classification:3,b:classification:3:0.5")


def test_fixed_weighting_and_registry():
    w = create_weighting("fixed", TWO)
    total = w.combine({"a": torch.tensor(2.0), "b": torch.tensor(4.0)})
    assert total.item() == pytest.approx(4.0) and w.task_weights() == {"a": 1.0, "b": 0.5}
    with pytest.raises(ValueError, match="unknown weighting"):
        create_weighting("mgda", TWO)
    with pytest.raises(ValueError, match="built for"):
        w.combine({"a": torch.tensor(1.0)})


def test_uncertainty_weights_move_toward_inverse_loss():
    w = create_weighting("uncertainty", TWO + [TaskSpec("c", "regression", 1)])
    opt = torch.optim.SGD(w.parameters(), lr=0.1)
    losses = {"a": torch.tensor(10.0), "b": torch.tensor(0.1), "c": torch.tensor(1.0)}
    present = {"a": True, "b": True, "c": torch.tensor(0)}  # c unlabelled in every batch
    for _ in range(300):
        opt.zero_grad()
        w.combine(losses, present=present).backward()
        opt.step()
    weights = w.task_weights()
    assert weights["a"] < 1.0 < weights["b"] and weights["c"] == 1.0
    # optimum of exp(-s) L + s is s = log L, i.e. weight 1/L
    assert weights["a"] == pytest.approx(0.1, rel=0.05) and weights["b"] == pytest.approx(10, rel=0.05)


def test_dwa_uniform_for_two_epochs_then_formula():
    w = create_weighting("dwa", TWO, temperature=2.0)
    w.train()
    with torch.enable_grad():  # accumulation path: epoch means from the batches
        for la in (1.0, 3.0):
            w.combine({"a": torch.tensor(la), "b": torch.tensor(1.0)}, present={"a": True, "b": True})
        w.combine({"a": torch.tensor(0.0), "b": torch.tensor(5.0)}, present={"a": False, "b": True})
    assert w.task_weights() == {"a": 1.0, "b": 1.0}  # epoch 0: uniform
    w.epoch_end()  # epoch-0 means from the batches: a = 2 (absent batch skipped), b = 7/3
    assert w.task_weights() == {"a": 1.0, "b": 1.0}  # epoch 1: uniform (only one epoch of history)
    w.epoch_end({"a": 1.0, "b": 7 / 3})  # epoch-1 means (e.g. synced by the trainer)
    r = torch.tensor([1.0 / 2.0, (7 / 3) / (7 / 3)])  # epoch 2: r_t = L_t(1) / L_t(0)
    expected = 2 * torch.softmax(r / 2.0, 0)
    got = w.task_weights()
    assert [got["a"], got["b"]] == pytest.approx(expected.tolist())
    w.epoch_end({"a": 0.5, "b": 7 / 3})  # next ratios 0.5/1 and 1: same weights again
    assert [w.task_weights()["a"], w.task_weights()["b"]] == pytest.approx(expected.tolist())
    assert sum(w.task_weights().values()) == pytest.approx(2.0)


@pytest.mark.parametrize("alpha", [0.0, 1.5])
def test_gradnorm_balances_gradient_norms(alpha):
    torch.manual_seed(0)
    tasks = parse_tasks("a:regression:1,b:regression:1")
    model = tiny_model(tasks, d_in=4, d=8)
    x = torch.randn(64, 4)
    y = {"a": 4.0 * torch.sin(x[:, :1]), "b": 0.5 * x[:, 1:2]}  # task a's loss is on a larger scale
    w = create_weighting("gradnorm", tasks, alpha=alpha, lr=0.01)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    imbalance = []
    for _ in range(150):
        opt.zero_grad()
        w.combine(multitask_losses(model(x), y, tasks), model.last_shared_parameters()).backward()
        opt.step()
        G = w.last_grad_norms  # G_i = w_i ||grad_W L_i|| on the last shared layer
        imbalance.append(abs(math.log(G["a"] / G["b"])))
    weights = w.task_weights()
    assert imbalance[0] > math.log(3)  # the large-scale task dominates the shared gradient at first
    assert weights["a"] < 1.0 < weights["b"] and sum(weights.values()) == pytest.approx(2.0)
    if alpha == 0:  # target = mean G for every task: the norms themselves equalize
        assert imbalance[-1] < 0.25 * imbalance[0]
    with pytest.raises(ValueError, match="last shared layer"):
        w.combine(multitask_losses(model(x), y, tasks))


def test_pcgrad_closed_form_projection():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    # g1' = g1 - (g1.g2/|g2|^2) g2 = (0.5, 0.5); g2' = g2 - (g2.g1/|g1|^2) g1 = (0, 1)
    assert torch.allclose(pcgrad_project(torch.stack([g1, g2])), torch.tensor([0.5, 1.5]))
    g3 = torch.tensor([1.0, 1.0])  # no conflict with g1: plain sum
    assert torch.allclose(pcgrad_project(torch.stack([g1, g3])), g1 + g3)
    # through the weighting: linear losses have exactly these gradients on the shared parameter
    theta, head = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.ones(1))
    tasks = parse_tasks("a:classification:2,b:classification:2")
    w = create_weighting("pcgrad", tasks, seed=0)
    losses = {"a": g1 @ theta + 3 * head.sum(), "b": g2 @ theta + head.sum()}
    total = w.backward(losses, [theta])
    assert torch.allclose(theta.grad, torch.tensor([0.5, 1.5])) and head.grad.item() == pytest.approx(4.0)
    assert total.item() == pytest.approx(4.0)
    with pytest.raises(RuntimeError, match="manual optimization"):
        w.combine({"a": torch.tensor(1.0, requires_grad=True), "b": torch.tensor(1.0, requires_grad=True)})
    assert w.gradient_level and not create_weighting("gradnorm", tasks).gradient_level


def test_pcgrad_seeded_order_and_gradient_cosine():
    torch.manual_seed(0)
    grads = torch.randn(4, 6)
    a = pcgrad_project(grads, torch.Generator().manual_seed(1))
    assert torch.equal(a, pcgrad_project(grads, torch.Generator().manual_seed(1)))
    theta = nn.Parameter(torch.zeros(2))
    cos = gradient_cosine({"a": torch.tensor([1.0, 0.0]) @ theta, "b": torch.tensor([-1.0, 1.0]) @ theta,
                           "c": theta.sum() * 0}, [theta])
    assert cos == {"a|b": pytest.approx(-1 / math.sqrt(2))}  # c has no gradient: no pair reported


def test_loss_level_backward_for_manual_optimization():
    theta = nn.Parameter(torch.ones(2))
    called = []
    total = create_weighting("fixed", TWO).backward(
        {"a": theta.sum(), "b": 2 * theta.sum()}, backward_fn=lambda t: (called.append(1), t.backward()))
    assert called and total.item() == pytest.approx(4.0) and theta.grad.tolist() == [2.0, 2.0]


def test_lightning_training_step_contract():
    """The documented calls work in a real Trainer: automatic (uncertainty) and manual (pcgrad)."""
    pl = pytest.importorskip("pytorch_lightning")
    tasks = parse_tasks("a:classification:3,b:regression:1")

    class Module(pl.LightningModule):
        def __init__(self, weighting: str) -> None:
            super().__init__()
            self.model = tiny_model(tasks)
            self.weighting = create_weighting(weighting, tasks)
            self.automatic_optimization = not self.weighting.gradient_level

        def training_step(self, batch, _):
            x, y = batch
            losses = multitask_losses(self.model(x), y, tasks)
            present = {k: c > 0 for k, c in label_counts(y, tasks).items()}
            self.log_dict({f"weight/{k}": v for k, v in self.weighting.task_weights().items()})
            if self.automatic_optimization:
                return self.weighting.combine(losses, self.model.last_shared_parameters(), present)
            opt = self.optimizers()
            opt.zero_grad()
            self.weighting.backward(losses, self.model.shared_parameters(), present, self.manual_backward)
            opt.step()

        def on_train_batch_end(self, *_):
            apply_proximal_step(self.model, "trace", 0.01, head_learning_rate(self.optimizers().optimizer, self.model))

        def on_train_epoch_end(self):
            self.weighting.epoch_end()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 6, generator=g)
    a = torch.tensor([0, 1, 2, -1] * 4)  # mixed batches: some samples lack one task's label
    b = torch.where(torch.arange(16) % 3 == 0, torch.tensor(math.nan), torch.randn(16, generator=g))
    loader = torch.utils.data.DataLoader(list(zip(x, [{"a": i, "b": j} for i, j in zip(a, b)])), batch_size=4)
    for name in ("uncertainty", "pcgrad"):
        module = Module(name)
        before = [p.detach().clone() for p in module.model.parameters()]
        pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False).fit(module, loader)
        assert all(not torch.equal(p0, p) for p0, p in zip(before, module.model.parameters()))
        assert all(math.isfinite(p.sum().item()) for p in module.parameters())
        if name == "uncertainty":  # its log-variances were optimized by the main optimizer
            assert not torch.equal(module.weighting.log_vars.detach(), torch.zeros(2))


# -- regularizers ----------------------------------------------------------------------------------
def test_proximal_operators_closed_forms():
    W = torch.tensor([[3.0, -0.5], [-2.0, 1.0]])
    assert make_regularizer("l1").prox(W, 1.0).tolist() == [[2.0, 0.0], [-1.0, 0.0]]
    assert torch.allclose(make_regularizer("ridge").prox(W, 0.25), W / 1.5)
    en = make_regularizer("elastic_net", l1_ratio=0.5).prox(W, 1.0)  # soft(W, 0.5) / (1 + 1)
    assert torch.allclose(en, torch.tensor([[1.25, 0.0], [-0.75, 0.25]]))
    rows = make_regularizer("l21").prox(torch.tensor([[3.0, 4.0], [0.3, 0.4]]), 1.0)
    assert torch.allclose(rows, torch.tensor([[2.4, 3.2], [0.0, 0.0]]))
    torch.manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(6, 3))
    V, _ = torch.linalg.qr(torch.randn(3, 3))
    M = U @ torch.diag(torch.tensor([3.0, 1.0, 0.5])) @ V.T
    P = make_regularizer("trace").prox(M, 0.8)
    assert torch.allclose(torch.linalg.svdvals(P), torch.tensor([2.2, 0.2, 0.0]), atol=1e-5)
    assert torch.linalg.matrix_rank(M) == 3 and torch.linalg.matrix_rank(P, atol=1e-4) == 2


@pytest.mark.parametrize("name", ["l1", "ridge", "elastic_net", "l21", "trace"])
def test_prox_is_the_argmin(name):
    reg = make_regularizer(name)
    g = torch.Generator().manual_seed(0)
    V, t = torch.randn(5, 3, generator=g, dtype=torch.float64), 0.4
    f = lambda X: 0.5 * (X - V).pow(2).sum() + t * reg.penalty(X)  # noqa: E731
    P = reg.prox(V, t)
    best = f(P)
    for _ in range(50):
        assert best <= f(P + 1e-2 * torch.randn(5, 3, generator=g, dtype=torch.float64)) + 1e-12
    assert best <= f(V) and best <= f(torch.zeros_like(V))


def test_regularizer_errors_and_model_step():
    with pytest.raises(ValueError, match="unknown regularizer"):
        make_regularizer("group_lasso")
    model = tiny_model(TWO)
    with pytest.raises(ValueError, match="strength"):
        apply_proximal_step(model, "l1", -0.1, lr=0.1)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    lr = head_learning_rate(opt, model)
    W, bias = model.head_weight_matrix().detach().clone(), model.heads["a"].bias.detach().clone()
    apply_proximal_step(model, "l21", strength=0.4, lr=lr)
    assert torch.allclose(model.head_weight_matrix(), make_regularizer("l21").prox(W, 0.2))
    assert torch.equal(model.heads["a"].bias, bias)
    pen = penalty_loss(model, "trace", 0.1)
    pen.backward()
    assert model.heads["b"].weight.grad is not None


# -- transfer report -------------------------------------------------------------------------------
def test_report_delta_m_by_hand():
    stl = {"main": [0.80, 0.82], "loss": [2.0, 4.0]}
    mtl = {"main": [0.84, 0.82], "loss": [1.0, 5.0], "noise": [0.11, 0.10]}
    rep = transfer_report(stl, mtl, {"main": 1, "loss": -1}, seeds=[0, 1])
    main, loss = rep.task("main"), rep.task("loss")
    assert main.rel_per_seed == pytest.approx([5.0, 0.0]) and main.rel_mean == pytest.approx(2.5)
    assert loss.rel_per_seed == pytest.approx([50.0, -25.0]) and loss.diff_mean == pytest.approx(0.0)
    assert rep.delta_m_per_seed == pytest.approx([27.5, -12.5])
    assert rep.delta_m_mean == pytest.approx(7.5) and rep.delta_m_std == pytest.approx(20 * math.sqrt(2))
    assert rep.mtl_only == {"noise": [0.11, 0.10]}
    excl = transfer_report(stl, mtl, {"main": 1, "loss": -1}, exclude=["loss"])
    assert excl.delta_m_mean == pytest.approx(2.5) and not excl.task("loss").in_delta_m


def test_report_flags_negative_transfer_only_beyond_noise(tmp_path):
    stl = {"main": [0.900, 0.910, 0.905, 0.920]}
    consistent = transfer_report(stl, {"main": [0.880, 0.892, 0.884, 0.899]})
    assert consistent.task("main").verdict == "negative" and consistent.negative_tasks == ["main"]
    assert consistent.task("main").p_value < 0.05
    noisy = transfer_report({"main": [0.90, 0.90, 0.90]}, {"main": [0.80, 0.99, 0.88]})  # mean -2.6 %, huge spread
    assert noisy.task("main").rel_mean < 0 and noisy.task("main").verdict == "neutral"
    banded = transfer_report(stl, {"main": [0.880, 0.892, 0.884, 0.899]}, noise_band=5.0)  # below the control's band
    assert banded.task("main").verdict == "neutral"
    better = transfer_report({"err": [0.2, 0.21, 0.19]}, {"err": [0.15, 0.16, 0.14]}, -1)
    assert better.task("err").verdict == "positive"
    single = transfer_report({"main": [0.9]}, {"main": [0.5]})
    assert single.task("main").verdict == "undetermined" and math.isnan(single.delta_m_std)
    text = render_table(consistent)
    from rich.console import Console

    console = Console(record=True, width=160)
    console.print(text)
    out = console.export_text()
    assert "negative" in out and "Δm = -2.20 ± 0.15 %" in out
    write_json(single, tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["delta_m_std"] is None and data["tasks"][0]["verdict"] == "undetermined"


@pytest.mark.parametrize("stl, mtl, kw, match", [
    ({"a": [1.0, 2.0]}, {"a": [1.0]}, {}, "paired by seed"),
    ({"a": [0.0]}, {"a": [1.0]}, {}, "undefined"),
    ({"a": [1.0]}, {"a": [1.0]}, {"directions": {"a": 2}}, "direction"),
    ({"a": [1.0]}, {"b": [1.0]}, {}, "no MTL results"),
    ({"a": [1.0]}, {"a": [1.0]}, {"exclude": ["a"]}, "excluded"),
    ({"a": [math.nan]}, {"a": [1.0]}, {}, "NaN"),
])
def test_report_errors(stl, mtl, kw, match):
    with pytest.raises(ValueError, match=match):
        transfer_report(stl, mtl, **kw)
