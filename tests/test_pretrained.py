"""`effzoo train --pretrained SOURCE`: every kind of source fine-tunes; heads and channels adapt; frozen parts stay
bit-identical; layer decay sets the rates; lineage reaches model.json, the card, the factsheet and the zoo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import effzoo
from effzoo.artifacts.weights import read_state_dict
from effzoo.artifacts.zoo_index import REPO_ROOT, entry, sha256_file
from effzoo.cli import main
from effzoo.training.config import FINETUNE_RECIPE, resolve
from effzoo.training.finetune import freeze
from effzoo.training.pretrained import adapt_input_conv
from effzoo.training.recipe import create_optimizer, create_scheduler
from effzoo.training.run import build, run_training

ZOO = "effzoo_efficientnet_phi-6_digits"  # 0.9M parameters, one channel, 10 digit classes


def data(in_chans: int = 1, size: int = 16) -> dict:
    return dict(data="synthetic", data_options={"num_samples": 64, "size": size, "in_chans": in_chans}, num_workers=0)


def tiny(tmp_path: Path, name: str, **over) -> dict:
    """A few optimizer steps: enough to move every trainable weight, seconds of wall time."""
    cfg = dict(**data(), batch_size=16, epochs=1, limit_train_batches=2, limit_val_batches=1, test=False,
               accelerator="cpu", devices=1, progress_bar=False, output=str(tmp_path / name))
    cfg.update(over)
    return cfg


def split(state: dict, head: str) -> tuple[dict, dict]:
    return ({k: v for k, v in state.items() if not k.startswith(head)}, {k: v for k, v in state.items() if k.startswith(head)})


def test_zoo_source_linear_probe_leaves_the_backbone_bit_identical_and_records_lineage(tmp_path):
    out = run_training(tiny(tmp_path, "probe", pretrained=ZOO, freeze="backbone", lr=0.05)).output
    source = read_state_dict(REPO_ROOT / "checkpoints" / ZOO / "model.safetensors")
    tuned = read_state_dict(out / "model.safetensors")
    body, head = split(tuned, "classifier.")
    for k, v in body.items():  # weights and BN statistics: the frozen parts ran in eval mode
        assert torch.equal(v, source[k]), k
    assert head["classifier.weight"].shape[0] == 4 and head["classifier.weight"].abs().sum() > 0  # new head, trained
    meta = json.loads((out / "model.json").read_text())
    sha = entry(ZOO)["sha256"]
    assert meta["parent"]["sha256"] == sha == sha256_file(REPO_ROOT / "checkpoints" / ZOO / "model.safetensors")
    assert meta["parent"]["kind"] == "zoo" and meta["parent"]["classifier"] == "new"
    assert meta["model_name"] == "efficientnet" and meta["model_args"]["phi"] == -6.0  # the source's architecture
    assert f"Fine-tuned from:** `{ZOO}`" in (out / "model_card.md").read_text()
    assert json.loads((out / "factsheet.json").read_text())["lineage"]["parent"]["sha256"] == sha

    from effzoo.artifacts.shipped import unregister_shipped_models
    from effzoo.evaluation.publish import add_model

    root = tmp_path / "zoo"
    try:
        added = add_model(out, "probe_test", ["effzoo train --pretrained " + ZOO], root=root)
    finally:
        unregister_shipped_models(root)
    assert added["parent"]["sha256"] == sha
    assert sha in (root / "probe_test" / "model_card.md").read_text()


def test_run_folder_keeps_a_fitting_classifier_and_freezes_the_first_stages(tmp_path):
    first = run_training(tiny(tmp_path, "first", model="mobilenetv2_035", small_input=True, head_init="model")).output
    before = read_state_dict(first / "model.safetensors")
    # Same data, same classes: the loaded classifier is kept as it is (never zeroed by --head-init zero).
    _, _, module = build(resolve(tiny(tmp_path, "peek", pretrained=str(first))))
    assert module.model.pretrained_cfg.parent["classifier"] == "loaded"
    assert torch.equal(module.model.classifier.weight.detach(), before["classifier.weight"])

    out = run_training(tiny(tmp_path, "second", pretrained=str(first), freeze="stages:2", lr=0.05)).output
    after = read_state_dict(out / "model.safetensors")
    frozen = ("conv_stem.", "bn1.", "blocks.0.", "blocks.1.")
    for k, v in after.items():
        if k.startswith(frozen):
            assert torch.equal(v, before[k]), k
    assert not all(torch.equal(v, before[k]) for k, v in after.items() if k.startswith("blocks.2."))
    meta = json.loads((out / "model.json").read_text())
    assert meta["model_name"] == "mobilenetv2_035"  # from the source, though --model was not given
    assert meta["parent"]["kind"] == "run" and meta["parent"]["path"] == str((first / "model.safetensors").resolve())


def test_timm_file_adapts_three_channels_to_one_and_fine_tunes(tmp_path, randomize):
    rgb = effzoo.create_model("mobilenetv2_035")  # 3 channels, 1000 classes, timm's names
    rgb.load_state_dict(randomize(rgb.state_dict()))
    save_file(rgb.state_dict(), tmp_path / "rgb.safetensors")
    _, _, module = build(resolve(tiny(tmp_path, "peek", pretrained=str(tmp_path / "rgb.safetensors"),
                                      model="mobilenetv2_035", small_input=False, **data(size=32))))
    gray_model = module.model.eval()
    assert gray_model.conv_stem.weight.shape[1] == 1 and gray_model.classifier.weight.shape == (4, 1280)
    assert gray_model.classifier.weight.abs().sum() == 0  # a new head, zero-initialized
    assert gray_model.pretrained_cfg.parent["input_channels"] == "3 -> 1"
    assert gray_model.pretrained_cfg.parent["kind"] == "timm-file"
    gray = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(gray_model.forward_features(gray), rgb.eval().forward_features(gray.repeat(1, 3, 1, 1)),
                                   rtol=1e-4, atol=1e-5)
    out = run_training(tiny(tmp_path, "tuned", pretrained=str(tmp_path / "rgb.safetensors"), model="mobilenetv2_035")).output
    assert read_state_dict(out / "model.safetensors")["conv_stem.weight"].shape[1] == 1


def test_one_channel_weights_serve_rgb_data():
    _, _, module = build(resolve({**data(in_chans=3), "pretrained": ZOO}))
    rgb_model = module.model.eval()
    source = effzoo.create_model(ZOO, pretrained=True).eval()
    assert rgb_model.conv_stem.weight.shape[1] == 3
    gray = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        expected = source.forward_features(gray)
        torch.testing.assert_close(rgb_model.forward_features(gray.repeat(1, 3, 1, 1)), expected,
                                   rtol=1e-3, atol=1e-4 * expected.abs().max().item())  # w/3 summed 3 times: rounding only
    w = torch.randn(8, 3, 3, 3)
    assert adapt_input_conv(w, 1).shape == (8, 1, 3, 3) and adapt_input_conv(w, 5).shape == (8, 5, 3, 3)
    torch.testing.assert_close(adapt_input_conv(w, 6).sum(1), w.sum(1))  # equal channels: the same response


def test_torchvision_file_is_converted_and_fine_tunes(tmp_path, randomize):
    torchvision = pytest.importorskip("torchvision")
    tv = torchvision.models.efficientnet_b0()
    tv.load_state_dict(randomize(tv.state_dict()))
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    cfg = tiny(tmp_path, "tv", **data(in_chans=3, size=32), pretrained=str(tmp_path / "tv.pth"),
               model="efficientnet_b0", small_input=False, batch_size=8, limit_train_batches=1)
    _, _, module = build(resolve(cfg))
    ours = module.model.eval()
    assert ours.pretrained_cfg.parent["kind"] == "torchvision-file"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.forward_features(x), tv.eval().features(x), rtol=1e-4, atol=1e-5)
    out = run_training(cfg).output
    assert json.loads((out / "model.json").read_text())["model_name"] == "efficientnet_b0"


def _hub_cache(root: Path, repo: str, state: dict) -> None:
    """The folder layout huggingface_hub keeps downloads in (refs/main names the snapshot)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    save_file(state, folder / "snapshots" / commit / "model.safetensors")


def test_hub_id_resolves_from_the_local_cache_and_offline_misses_say_what_to_do(tmp_path, monkeypatch, randomize):
    constants = pytest.importorskip("huggingface_hub.constants")
    model = effzoo.create_model("mobilenetv2_035")
    _hub_cache(tmp_path / "hub", "timm/mobilenetv2_035.test_in1k", randomize(model.state_dict()))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    out = run_training(tiny(tmp_path, "hub", pretrained="timm/mobilenetv2_035.test_in1k")).output
    meta = json.loads((out / "model.json").read_text())
    assert meta["model_name"] == "mobilenetv2_035"  # named by the hub id
    assert meta["parent"]["kind"] == "hub" and meta["parent"]["name"] == "timm/mobilenetv2_035.test_in1k"
    assert "base_model: timm/mobilenetv2_035.test_in1k" in (out / "model_card.md").read_text()
    with pytest.raises(ValueError, match=r"offline \(HF_HUB_OFFLINE\) and not in the local cache\); download .* pass its path"):
        build(resolve({**data(), "pretrained": "timm/efficientnet_b0.ra_in1k"}))


def test_bad_sources_get_one_clear_line(tmp_path, capsys, randomize):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        build(resolve({**data(), "pretrained": str(tmp_path / "missing.safetensors")}))
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(ValueError, match=r"notes.txt is not a weights file \(neither safetensors nor a torch state dict\)"):
        build(resolve({**data(), "pretrained": str(tmp_path / "notes.txt")}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="the folder has no model.safetensors"):
        build(resolve({**data(), "pretrained": str(tmp_path / "empty")}))
    with pytest.raises(ValueError, match=r"holds efficientnet \(phi=-6\).*you ask for efficientnet \(phi=0\)"):
        build(resolve({**data(), "pretrained": ZOO, "phi": 0}))
    small = effzoo.create_model("mobilenetv2_035")
    save_file(randomize(small.state_dict()), tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match=r"shape mismatches.*The file fits mobilenetv2_035: pass model='mobilenetv2_035'"):
        build(resolve({**data(), "pretrained": str(tmp_path / "m.safetensors"), "model": "mobilenetv2_050"}))
    with pytest.raises(ValueError, match=r"has 7 stages .*K may be 0-7"):
        build(resolve({**data(), "pretrained": ZOO, "freeze": "stages:8"}))
    assert main(["train", "--pretrained", str(tmp_path / "missing.pth"), "--data", "synthetic"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("effzoo train: error: --pretrained ") and "\n" not in err


def test_layer_decay_and_head_multiplier_set_each_group_rate():
    model = effzoo.create_model("efficientnet", phi=-6, num_classes=3, in_chans=1)
    freeze(model, "stages:2")
    recipe = {"opt": "adamw", "weight_decay": 0.01, "layer_decay": 0.5, "head_lr_mult": 10.0}
    optimizer = create_optimizer(model, recipe, lr=1.0)
    rate = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    # layers: stem 0, blocks.0-6 -> 1-7, neck (conv_head, bn2) 8, classifier 9 (x10)
    expected = {"blocks.2.0.conv_pw.weight": 0.5 ** 6, "blocks.6.0.bn3.bias": 0.5 ** 2,
                "conv_head.weight": 0.5, "bn2.weight": 0.5, "classifier.weight": 10.0, "classifier.bias": 10.0}
    named = dict(model.named_parameters())
    for name, lr in expected.items():
        assert rate[id(named[name])] == pytest.approx(lr), name
    assert decay[id(named["conv_head.weight"])] == 0.01 and decay[id(named["bn2.weight"])] == 0.0
    frozen = [n for n, p in named.items() if n.startswith(("conv_stem", "bn1", "blocks.0", "blocks.1"))]
    assert frozen and not any(id(named[n]) in rate for n in frozen)  # frozen parameters are not optimized
    scheduler = create_scheduler(optimizer, {"sched": "cosine", "warmup_epochs": 1, "warmup_lr": 1e-3}, lr=1.0,
                                 steps_per_epoch=4, total_steps=20)
    for _ in range(6):
        optimizer.step()
        scheduler.step()
    lrs = {g["layer"]: g["lr"] for g in optimizer.param_groups}
    assert lrs[9] / lrs[8] == pytest.approx(20.0) and lrs[8] / lrs[3] == pytest.approx(2.0 ** 5)  # ratios hold


def test_pretrained_brings_the_fine_tuning_recipe_under_the_flags():
    folder = {"data": "my/images", "pretrained": ZOO}  # no built-in recipe: the fine-tuning one
    assert {k: getattr(resolve(folder), k) for k in FINETUNE_RECIPE} == FINETUNE_RECIPE
    assert resolve({**folder, "lr_base": 0.01}).lr_base == 0.01
    # a built-in data recipe, measured for its few hundred steps, wins over the generic fine-tuning values
    assert resolve({"data": "digits", "pretrained": ZOO}).lr_base == resolve({"data": "digits"}).lr_base == 0.016
    from effzoo.training.config import load_yaml

    shipped = resolve(load_yaml(REPO_ROOT / "configs" / "finetune_digits.yaml"))
    assert (shipped.opt, shipped.sched, shipped.lr_base, shipped.warmup_epochs) == ("adamw", "cosine", 0.016, 1.0)
    with pytest.raises(ValueError, match="freeze must be none, backbone or stages:K"):
        resolve({"freeze": "stage:2"})


def test_resume_needs_no_source_and_keeps_the_lineage(tmp_path):
    # The source: a tiny run on 3-channel data; the fine-tune: 1-channel data (stem adapted), new 5-class head.
    source = tmp_path / "source"
    run_training(tiny(tmp_path, "source", **data(in_chans=3), model="mobilenetv2_035", small_input=True))
    sha = sha256_file(source / "model.safetensors")
    fine = dict(data="synthetic", data_options={"num_samples": 64, "size": 16, "in_chans": 1, "num_classes": 5},
                pretrained=str(source), epochs=2, deterministic=True, rand_augment="none")
    whole = run_training(tiny(tmp_path, "whole", **fine))  # never interrupted, the source there throughout
    stopped = tiny(tmp_path, "stopped", **fine)
    run_training({**stopped, "epochs": 1})
    moved = tmp_path / "moved"
    source.rename(moved)  # gone from where the run found it
    resumed = run_training({**stopped, "resume": True})

    assert resumed.trainer.global_step == whole.trainer.global_step == 2 * 2
    a, b = (json.loads((r.output / "model.json").read_text()) for r in (whole, resumed))
    assert b["parent"] == a["parent"]  # the lineage the run recorded when it started, unchanged
    assert b["parent"]["sha256"] == sha and b["parent"]["path"] == str((source / "model.safetensors").resolve())
    assert b["parent"]["classifier"] == "new" and b["parent"]["input_channels"] == "3 -> 1"
    assert (b["model_name"], b["model_args"], b["pretrained_cfg"]) == (a["model_name"], a["model_args"], a["pretrained_cfg"])
    wa, wb = (read_state_dict(r.output / "model.safetensors") for r in (whole, resumed))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5, msg=k)

    # A resume asking for another architecture, or on data the checkpoint does not fit, is refused by name.
    moved.rename(source)
    run_training({**tiny(tmp_path, "again", **fine), "epochs": 1})
    with pytest.raises(ValueError, match=r"holds mobilenetv2_035 .*you ask for efficientnet \(phi=-4\)"):
        build(resolve({**tiny(tmp_path, "again", **fine), "resume": True, "model": "efficientnet", "phi": -4}))
    with pytest.raises(ValueError, match=r"trained for 5 classes, the data .* has 4"):
        build(resolve({**tiny(tmp_path, "again", **fine), "data_options": data()["data_options"], "resume": True}))
