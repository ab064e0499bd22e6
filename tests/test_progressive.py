"""Progressive learning (EfficientNetV2's Algorithm 1): the schedule, the data module's per-stage transform,
a run that trains through the stages, resume mid-schedule, and the errors of contradicting options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from effzoo.artifacts.weights import read_state_dict
from effzoo.data import ClassificationDataModule, create_source
from effzoo.models.layers import DropPath
from effzoo.training import TrainConfig
from effzoo.training.config import load_yaml, resolve
from effzoo.training.module import ClassificationModule
from effzoo.training.progressive import ProgressiveLearning, build_schedule
from effzoo.training.run import run_training, train


def schedule(final_size: int = 28, stride: int = 8, drop_rate: float = 0.3, drop_path_rate: float = 0.2, **over):
    cfg = TrainConfig(**{"epochs": 8, "progressive": 4, "rand_augment": "rand-m15-mstd0.5", "mixup": 0.4, **over})
    return build_schedule(cfg, final_size, stride, drop_rate, drop_path_rate)


def test_sizes_and_regularization_ramp_linearly_per_stage():
    s = schedule(prog_min_size=16)
    stages = [s.at(e) for e in range(8)]
    assert [st.image_size for st in stages] == [16, 16, 20, 20, 24, 24, 28, 28]
    assert [st.index for st in stages] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [st.rand_augment for st in stages[::2]] == [
        "rand-m5-mstd0.5", "rand-m8.33333-mstd0.5", "rand-m11.6667-mstd0.5", "rand-m15-mstd0.5"]
    assert [st.mixup for st in stages[::2]] == pytest.approx([0.0, 0.4 / 3, 0.8 / 3, 0.4])
    assert [st.drop_rate for st in stages[::2]] == pytest.approx([0.1, 0.1 + 0.2 / 3, 0.1 + 0.4 / 3, 0.3])
    assert [st.drop_path_rate for st in stages[::2]] == pytest.approx([0.0, 0.2 / 3, 0.4 / 3, 0.2])
    # the last stage is plain training: the configured size and rates
    assert stages[-1].image_size == 28 and stages[-1].rand_augment == "rand-m15-mstd0.5"


def test_uneven_epochs_split_into_nearly_equal_stages_and_the_table_lists_each_once():
    s = schedule(epochs=10, progressive=4)
    assert [s.stage_index(e) for e in range(10)] == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    table = s.to_dict()["schedule"]
    assert [(t["first_epoch"], t["last_epoch"]) for t in table] == [(0, 2), (3, 4), (5, 7), (8, 9)]
    assert s.min_size == 16  # default: half of 28 is below twice the stride 8


@pytest.mark.parametrize("over, message", [
    (dict(prog_min_size=32), "prog_min_size=32 is larger than the train size 28"),
    (dict(prog_min_size=4), "prog_min_size=4 is below the model's total stride 8"),
    (dict(eval_image_size=24), "tests below it: FixRes"),
    (dict(prog_min_magnitude=20), "prog_min_magnitude=20.0 is above the configured value 15"),
    (dict(prog_min_mixup=0.5), "prog_min_mixup=0.5 is above the configured value 0.4"),
])
def test_contradicting_options_are_clear_errors(over, message):
    with pytest.raises(ValueError, match=message):
        schedule(**over)


@pytest.mark.parametrize("over, message", [
    (dict(progressive=9, epochs=8), "progressive=9 stages need at least as many epochs, got epochs=8"),
    (dict(progressive=1), "at least 2"),
    (dict(prog_min_drop_rate=-0.1), "prog_min_drop_rate must be >= 0"),
])
def test_config_errors(over, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**over)


def test_yaml_block_expands_to_the_flat_options(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("epochs: 6\nprogressive:\n  stages: 3\n  min_size: 12\n  min_mixup: 0.1\n")
    cfg = resolve(load_yaml(path))
    assert (cfg.progressive, cfg.prog_min_size, cfg.prog_min_mixup) == (3, 12, 0.1)
    path.write_text("progressive:\n  stages: 3\n  min_sise: 12\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['min_sise'\] in the progressive block"):
        load_yaml(path)


@pytest.mark.parametrize("workers", [0, 1])
def test_the_data_module_rebuilds_its_train_transform_per_stage(workers):
    dm = ClassificationDataModule(create_source("synthetic", num_samples=64, size=16), batch_size=8, image_size=24,
                                  num_workers=workers, rand_augment="rand-m9-mstd0.5", mixup=0.2)
    loader = dm.train_dataloader()  # made once, as Lightning does; the next epoch's iterator sees the new stage
    assert next(iter(loader))[0].shape[-1] == 24
    dm.set_train_stage(12, "rand-m3-mstd0.5", mixup=0.0)
    assert next(iter(loader))[0].shape[-1] == 12  # a new worker copies the rebuilt transform
    ra = next(t for t in dm.train_tf.transforms if type(t).__name__ == "RandAugment")
    assert {op.magnitude for op in ra.ops} == {3}
    assert not dm.mixup_fn.mixup_enabled  # alpha 0: timm's Mixup would assert; it only smooths labels now
    dm.set_train_stage(24, "rand-m9-mstd0.5", mixup=0.2)
    assert dm.mixup_fn.mixup_enabled and dm.mixup_fn.mixup_alpha == 0.2
    assert dm.data_config["input_size"][-1] == 24 and dm.eval_transform().transforms[1].size == (24, 24)


def test_the_callback_scales_each_block_rate_from_the_built_one():
    from effzoo.models import create_model

    model = create_model("efficientnet", phi=-4, num_classes=3, small_input=True, drop_rate=0.3, drop_path_rate=0.2)
    module = ClassificationModule(model, {"opt": "adamw"}, {})
    built = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    s = schedule(prog_min_size=16, prog_min_drop_path_rate=0.05)
    callback = ProgressiveLearning(s)
    stage0 = s.at(0)
    callback._scale_regularization(module, stage0)
    assert model.head_drop.p == pytest.approx(0.1)
    after = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    assert after == pytest.approx([b * 0.05 / 0.2 for b in built])  # the depth ramp keeps its shape
    callback._scale_regularization(module, s.at(7))
    assert [m.drop_prob for m in model.modules() if isinstance(m, DropPath)] == pytest.approx(built)
    assert isinstance(model.head_drop, nn.Dropout) and model.head_drop.p == pytest.approx(0.3)


def tiny(tmp_path: Path, name: str, **over) -> dict:
    cfg = dict(model="mobilenetv2_035", small_input=True, data="synthetic", data_options={"num_samples": 96, "size": 16},
               image_size=24, batch_size=32, num_workers=0, epochs=4, progressive=2, prog_min_size=16,
               lr=0.01, opt="adamw", sched="cosine", warmup_epochs=0, accelerator="cpu", devices=1,
               progress_bar=False, test=False, deterministic=True, rand_augment="rand-m9-mstd0.5",
               output=str(tmp_path / name))
    cfg.update(over)
    return cfg


@pytest.fixture
def sizes_seen(monkeypatch):
    """(epoch, train image size) of every training step."""
    seen: list[tuple[int, int]] = []
    step = ClassificationModule.training_step

    def recording(self, batch, batch_idx):
        seen.append((self.current_epoch, batch[0].shape[-1]))
        return step(self, batch, batch_idx)

    monkeypatch.setattr(ClassificationModule, "training_step", recording)
    return seen


@pytest.mark.parametrize("workers", [0, 1])  # a worker copies the transform when Lightning builds the first pass
def test_a_progressive_run_on_digits_trains_through_the_stages_and_the_card_shows_them(tmp_path, sizes_seen, workers):
    res = run_training(tiny(tmp_path, "run", data="digits", data_options={}, limit_train_batches=3, limit_val_batches=2,
                            num_workers=workers))
    assert sorted(set(sizes_seen)) == [(0, 16), (1, 16), (2, 24), (3, 24)]
    meta = json.loads((res.output / "model.json").read_text())
    assert meta["train_resolution"] == 24 and meta["progressive"]["min_size"] == 16
    assert [s["image_size"] for s in meta["progressive"]["schedule"]] == [16, 24]
    card = (res.output / "model_card.md").read_text()
    assert "Progressive learning (EfficientNetV2): 2 stages over 4 epochs, 16 -> 24 px" in card
    assert "epochs 1-2: 16 px, RandAugment `rand-m5-mstd0.5`" in card


class Interrupt(RuntimeError):
    pass


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_mid_schedule_continues_at_the_right_stage(tmp_path, sizes_seen, monkeypatch, workers):
    whole = run_training(tiny(tmp_path, "whole", num_workers=workers))
    sizes_seen.clear()
    start = ProgressiveLearning.on_train_epoch_start

    def stop_at_epoch_1(self, trainer, pl_module):
        if trainer.current_epoch == 1:  # stopped after epoch 0's checkpoint, inside the first stage
            raise Interrupt
        start(self, trainer, pl_module)

    monkeypatch.setattr(ProgressiveLearning, "on_train_epoch_start", stop_at_epoch_1)
    with pytest.raises(Interrupt):
        train(tiny(tmp_path, "resumed", num_workers=workers))
    monkeypatch.setattr(ProgressiveLearning, "on_train_epoch_start", start)
    sizes_seen.clear()
    resumed = run_training({**tiny(tmp_path, "resumed", num_workers=workers), "resume": True})
    assert sorted(set(sizes_seen)) == [(1, 16), (2, 24), (3, 24)]  # each resumed epoch at its stage's size
    wa, wb = read_state_dict(whole.output / "model.safetensors"), read_state_dict(resumed.output / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5, msg=k)
    assert resumed.metrics["val_top1"] == pytest.approx(whole.metrics["val_top1"], abs=1e-6)


def test_two_process_cpu_ddp_runs_the_schedule(tmp_path):
    res = run_training(tiny(tmp_path, "ddp", strategy="ddp_spawn", devices=2, epochs=2, deterministic=False))
    ckpt = torch.load(res.output / "last.ckpt", map_location="cpu", weights_only=True)
    # 96 samples, batch 32 per process, 2 processes: 1 full batch each per epoch
    assert ckpt["global_step"] == 2 and ckpt["epoch"] == 1
    states = [v for k, v in ckpt["callbacks"].items() if k.startswith("ProgressiveLearning")]
    assert [s["image_size"] for s in states[0]["schedule"]["schedule"]] == [16, 24]
    assert json.loads((res.output / "model.json").read_text())["progressive"]["stages"] == 2


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_resolves(path):
    cfg = resolve(load_yaml(path))
    if path.name == "fashion_mnist_progressive.yaml":  # the YAML block form
        assert (cfg.model, cfg.phi, cfg.progressive, cfg.prog_min_size, cfg.image_size) == ("efficientnetv2", -8, 4, 20, 28)
