"""`effzoo.Predictor` and `effzoo predict`: the checkpoint's own preprocessing, the answers of its own forward
pass, every image mode as training reads it, EXIF rotation, multi-task heads, streamed files, bad inputs,
and ONNX Runtime against torch. Tiny models (EfficientNet phi -6, 24 px) and images of 16-32 px."""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from conftest import randomize_
from PIL import Image

import effzoo
from effzoo.artifacts.weights import apply_data_config, load_checkpoint, save_model
from effzoo.cli import main
from effzoo.data.datasets import ImageFileDataset
from effzoo.data.image_folder import ImageFolderSource
from effzoo.data.images import load_image
from effzoo.evaluation.predict import Predictor, PredictWarning
from effzoo.evaluation.predict_files import PredictionWriter, expand_inputs
from effzoo.models.multitask import MultiTaskModel
from effzoo.tasks import parse_tasks

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime"))
NAMES = ["ant", "bee", "cat", "dog"]
SIZE = 24


def _tiny(in_chans: int, num_classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    m = effzoo.create_model("efficientnet", phi=-6, num_classes=num_classes, in_chans=in_chans, small_input=True)
    m.load_state_dict(randomize_(m.state_dict()))  # outputs far from uniform, so rankings mean something
    return m.eval()


def _save(folder, model, backbone, in_chans, class_names, multitask=None):
    stats = ((0.5,), (0.25,)) if in_chans == 1 else ((0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    apply_data_config(backbone, {"input_size": (in_chans, SIZE, SIZE), "test_input_size": (in_chans, SIZE, SIZE),
                                 "crop_pct": 0.875, "interpolation": "bicubic", "mean": stats[0], "std": stats[1],
                                 "class_names": class_names})
    cfg = backbone.pretrained_cfg
    meta = {"model_name": cfg["model_name"], "model_args": cfg["model_args"], "pretrained_cfg": cfg.to_dict()}
    if multitask:
        meta["multitask"] = model.task_metadata()
    save_model(folder, model, meta)
    return folder


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    model = _tiny(3, len(NAMES))
    return _save(tmp_path_factory.mktemp("rgb-run"), model, model, 3, NAMES)


@pytest.fixture(scope="module")
def mtl_folder(tmp_path_factory):
    tasks = parse_tasks("fine:classification:3,attrs:multilabel:3,size:regression:1")
    backbone = _tiny(1, 3)
    model = MultiTaskModel(backbone, tasks)
    model.load_state_dict(randomize_(model.state_dict()))
    return _save(tmp_path_factory.mktemp("mtl-run"), model.eval(), backbone, 1, ["x", "y", "z"], multitask=True)


@pytest.fixture(scope="module")
def predictors(run_folder, mtl_folder):
    """One Predictor per checkpoint for the tests that only read from it (building one folds batch norm)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PredictWarning)  # the multi-task fixture's unnamed head; tested below
        return {3: Predictor(run_folder, device="cpu", num_workers=0), 1: Predictor(mtl_folder, device="cpu", num_workers=0)}


def _with(predictor, **changes):
    clone = copy.copy(predictor)
    for key, value in changes.items():
        setattr(clone, key, value)
    return clone


def _images(folder, n, size=(28, 20), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
        path = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
        paths.append(str(path))
    return paths


def _training_input(paths, mode, transform):
    """What training's image-folder loader feeds the model for these files."""
    ds = ImageFileDataset(paths, [0] * len(paths), mode=mode, transform=transform, on_bad_image="error")
    return torch.stack([ds[i][0] for i in range(len(ds))])


# -- answers ------------------------------------------------------------------------------------
def test_predictions_are_the_models_own_forward_with_names_in_top_k_order(run_folder, predictors, tmp_path):
    paths = _images(tmp_path, 5)
    p = _with(predictors[3], top_k=3, batch_size=2)  # BN folded into the convolutions, channels_last
    assert p.image_size == SIZE and p.channels == 3
    x = _training_input(paths, "RGB", p.transform)  # same preprocessing as evaluation of an image folder
    with torch.no_grad():
        probs = load_checkpoint(run_folder)(x).softmax(1)
    results = p.predict(paths)
    assert [r.index for r in results] == list(range(5)) and [r.path for r in results] == paths
    for r, want in zip(results, probs):
        got = r.top_k
        assert [i for i, _, _ in got] == want.topk(3).indices.tolist()
        assert [n for _, n, _ in got] == [NAMES[i] for i, _, _ in got]
        assert [q for *_, q in got] == sorted((q for *_, q in got), reverse=True)
        assert [q for *_, q in got] == pytest.approx(want.topk(3).values.tolist(), abs=1e-5)
        assert r.size == (28, 20) and r.error is None
    # PIL images and preprocessed tensors give the same answers as the files
    pil = p.predict([Image.open(q) for q in paths])
    tensors = p.predict(x)
    for a, b, c in zip(results, pil, tensors):
        assert b.path is None and b.source == f"image {b.index}"
        assert a.top_k == b.top_k
        assert [i for i, *_ in a.top_k] == [i for i, *_ in c.top_k]
    assert torch.equal(p.preprocess(paths[0]), x[0])
    with pytest.raises(ValueError, match="preprocessed image: float"):
        p.predict(torch.zeros(1, 1, SIZE, SIZE))


# -- what the model sees ------------------------------------------------------------------------
def _mode_file(folder, mode):
    """A 16x16 file in `mode` with varied content, and the extension PIL can save it in."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    if mode == "I;16":
        img = Image.fromarray((rng.integers(0, 65536, (16, 16))).astype(np.uint16))
    elif mode == "RGBA":
        alpha = rng.integers(0, 256, (16, 16), dtype=np.uint8)
        alpha[0, 0] = 0
        img = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    elif mode == "P+transparency":
        img = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        img.info["transparency"] = 0
    else:
        img = Image.fromarray(rgb).convert(mode)
    ext = ".jpg" if mode == "CMYK" else ".png"
    path = folder / f"{mode.replace(';', '').replace('+', '-')}{ext}"
    img.save(path, **({"transparency": 0} if mode == "P+transparency" else {}))
    return str(path)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "P+transparency", "CMYK", "I;16", "L", "LA"])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_image_mode_reaches_the_model_as_the_training_loader_gives_it(predictors, tmp_path, mode, channels):
    p = predictors[channels]
    path = _mode_file(tmp_path, mode)
    training = _training_input([path], "RGB" if channels == 3 else "L", p.transform)[0]
    assert torch.equal(p.preprocess(path), training)
    [streamed] = list(p.predict_paths([path]))  # the loader path, too
    assert streamed.error is None and streamed.size == (16, 16)


def test_conversions_keep_the_content(tmp_path):
    # 16-bit grayscale is scaled to 8 bits; PIL's own convert("L") would clip nearly every pixel to 255
    wide = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert Image.open(tmp_path / "wide.png").mode == "I;16"
    assert np.asarray(load_image(tmp_path / "wide.png", 1)).tolist() == [[0, 1, 128, 255]]
    assert np.asarray(load_image(tmp_path / "wide.png", 3))[0, 2].tolist() == [128, 128, 128]
    # transparency is composited on white: a clear pixel is white whatever colour it stores
    rgba = np.array([[[10, 20, 30, 0], [200, 100, 0, 255], [0, 0, 0, 128]]], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    got = np.asarray(load_image(tmp_path / "alpha.png", 3)).astype(int)
    assert got[0, 0].tolist() == [255, 255, 255] and got[0, 1].tolist() == [200, 100, 0]
    assert np.abs(got[0, 2] - 127).max() <= 1  # half-transparent black over white: mid grey
    # CMYK and palette images: PIL's colour conversion; grayscale into an RGB model: three equal channels
    cmyk = _mode_file(tmp_path, "CMYK")
    assert np.array_equal(np.asarray(load_image(cmyk, 3)), np.asarray(Image.open(cmyk).convert("RGB")))
    gray = _mode_file(tmp_path, "L")
    rgb = np.asarray(load_image(gray, 3))
    assert np.array_equal(rgb[..., 0], np.asarray(Image.open(gray))) and (rgb == rgb[..., :1]).all()


def test_an_image_folder_of_16_bit_grayscale_trains_on_one_channel(tmp_path):
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(tmp_path / split / cls / "x.png")
    source = ImageFolderSource(tmp_path)
    assert source.in_chans == 1 and source.mean == (pytest.approx(40000 / 257 / 255, abs=0.003),)


@pytest.mark.parametrize("orientation,turn", [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_270),
                                              (8, Image.Transpose.ROTATE_90)])
def test_exif_orientation_is_applied(predictors, tmp_path, orientation, turn):
    rng = np.random.default_rng(2)
    img = Image.fromarray(rng.integers(0, 256, (16, 28, 3), dtype=np.uint8))  # 28 wide, 16 high
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.jpg"
    img.save(path, exif=exif, quality=95)
    stored = Image.open(path).convert("RGB")  # the pixels as stored, before the tag is honoured
    upright = stored.transpose(turn)
    loaded = load_image(path, 3)
    assert loaded.size == upright.size and np.array_equal(np.asarray(loaded), np.asarray(upright))
    p = predictors[3]
    assert torch.equal(p.preprocess(path), p.transform(upright))
    assert p.predict(str(path))[0].size == upright.size


# -- multi-task ---------------------------------------------------------------------------------
def test_a_multi_task_checkpoint_prints_every_head(mtl_folder, predictors, tmp_path, capsys):
    paths = _images(tmp_path, 2, size=(20, 20), mode="L")
    assert main(["predict", *paths, "--checkpoint", str(mtl_folder), "--top-k", "2", "--num-workers", "0",
                 "--device", "cpu", "--threshold", "0.5"]) == 0
    out, err = capsys.readouterr()
    for title in ("fine (top 2)", "attrs (multilabel)", "size (regression)"):
        assert title in out
    assert err.count("records no class names for head(s) attrs") == 1  # the fine head has the run's names

    p = predictors[1]
    model = load_checkpoint(mtl_folder)
    with torch.no_grad():
        raw = model(_training_input(paths, "L", p.transform))
    assert main(["predict", *paths, "--checkpoint", str(mtl_folder), "--top-k", "2", "--num-workers", "0",
                 "--device", "cpu", "--json", str(tmp_path / "out.json")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out.json").read_text().splitlines()]
    assert [r["path"] for r in rows] == paths
    for k, row in enumerate(rows):
        heads = row["heads"]
        fine = raw["fine"][k].softmax(0)
        assert [c["index"] for c in heads["fine"]["top_k"]] == fine.topk(2).indices.tolist()
        assert [c["name"] for c in heads["fine"]["top_k"]] == [["x", "y", "z"][i] for i in fine.topk(2).indices]
        attrs = raw["attrs"][k].sigmoid()
        assert sorted(c["index"] for c in heads["attrs"]["labels"]) == [i for i in range(3) if attrs[i] >= 0.5]
        assert heads["size"]["value"] == pytest.approx(raw["size"][k, 0].item(), rel=1e-4, abs=1e-5)
        assert f"{heads['size']['value']:.4g}" in out


# -- streamed files -----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_rows_are_on_disk_as_batches_complete(predictors, tmp_path, fmt):
    paths = _images(tmp_path, 5)
    p = _with(predictors[3], batch_size=2, num_workers=1 if fmt == "csv" else 0, top_k=2)  # csv: a worker process
    target = tmp_path / f"out.{fmt}"
    writer = PredictionWriter(target, fmt, p.heads, p.top_k)
    batches = p.predict_batches(paths)
    writer.write(next(batches))
    lines = writer.partial.read_text().splitlines()
    assert len(lines) == 2 + (fmt == "csv") and not target.exists()  # first batch on disk, final name untouched
    for batch in batches:
        writer.write(batch)
    assert writer.close() == target and not writer.partial.exists()
    text = target.read_text().splitlines()
    want = _with(p, num_workers=0).predict(paths)
    if fmt == "jsonl":
        rows = [json.loads(line) for line in text]
        assert [[c["index"] for c in r["top_k"]] for r in rows] == [[i for i, *_ in w.top_k] for w in want]
    else:
        assert text[0].split(",") == ["path", "top1_index", "top1_name", "top1_probability", "top2_index",
                                      "top2_name", "top2_probability", "error"]
        assert [line.split(",")[0:3] for line in text[1:]] == [[w.path, str(w.top_k[0][0]), w.top_k[0][1]]
                                                               for w in want]


def test_a_stopped_run_keeps_its_rows_in_the_partial_file(predictors, tmp_path):
    paths = _images(tmp_path, 3)
    p = _with(predictors[3], batch_size=2)
    target = tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):
        with PredictionWriter(target, "jsonl", p.heads, p.top_k) as writer:
            for batch in p.predict_batches(paths):
                writer.write(batch)
                raise KeyboardInterrupt
    assert not target.exists() and len(writer.partial.read_text().splitlines()) == 2


def test_cli_writes_csv_and_counts_rows(run_folder, tmp_path, capsys):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    paths = _images(folder, 2) + _images(folder / "sub", 1, seed=3)
    assert main(["predict", str(folder), "--checkpoint", str(run_folder), "--csv", str(tmp_path / "p.csv"),
                 "--num-workers", "0", "--top-k", "1"]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert len(lines) == 4 and sorted(line.split(",")[0] for line in lines[1:]) == sorted(paths)
    assert "wrote 3 rows" in capsys.readouterr().out


# -- bad files and bad input --------------------------------------------------------------------
def test_unreadable_files_are_listed_skipped_and_exit_1(run_folder, tmp_path, capsys):
    good = _images(tmp_path, 2)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(open(good[0], "rb").read()[:60])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(tmp_path), "--checkpoint", str(run_folder), "--json", str(out),
                 "--num-workers", "0"]) == 1
    err = capsys.readouterr().err
    assert "skipped 2 unreadable files:" in err
    for bad in (truncated, text):
        assert f"  {bad}: " in err
    rows = {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {*good, str(truncated), str(text)}
    assert all("top_k" in rows[g] for g in good) and all("error" in rows[str(b)] for b in (truncated, text))
    assert main(["predict", *good, "--checkpoint", str(run_folder), "--num-workers", "0"]) == 0


def test_bad_input_gets_one_clear_line(run_folder, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    [img] = _images(tmp_path, 1)

    def error_of(*argv):
        assert main(["predict", *argv, "--num-workers", "0"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        return err

    assert "input not found: nope.png" in error_of("nope.png", "--checkpoint", str(run_folder))
    assert "holds no images" in error_of(str(tmp_path / "empty"), "--checkpoint", str(run_folder))
    assert "checkpoint not found" in error_of(img, "--checkpoint", str(tmp_path / "missing-run"))
    assert "--threshold must be a probability" in error_of(img, "--checkpoint", str(run_folder), "--threshold", "1.5")
    assert "--top-k must be an integer >= 1" in error_of(img, "--checkpoint", str(run_folder), "--top-k", "0")
    onnx_dir = tmp_path / "exported"
    onnx_dir.mkdir()
    (onnx_dir / "model.onnx").write_bytes(b"\0")
    assert "has no model.json beside it" in error_of(img, "--checkpoint", str(onnx_dir / "model.onnx"))
    assert "runs in ONNX Runtime" in error_of(img, "--checkpoint", str(onnx_dir / "model.onnx"), "--runtime", "torch")
    assert "no input images" in str(pytest.raises(ValueError, expand_inputs, ["-"], []).value)


def test_stdin_lists_and_globs(run_folder, tmp_path):
    paths = _images(tmp_path, 3)
    assert expand_inputs(["-"], [paths[2] + "\n", "\n", paths[0] + "\n"]) == [paths[2], paths[0]]
    assert expand_inputs([str(tmp_path / "img[01].png"), paths[0]]) == paths[:2]  # once each, in order


def test_a_checkpoint_without_names_shows_indices_and_says_so_once(tmp_path, capsys):
    model = _tiny(3, 4)
    run = _save(tmp_path / "run", model, model, 3, None)
    paths = _images(tmp_path, 2)
    assert main(["predict", *paths, "--checkpoint", str(run), "--num-workers", "0", "--top-k", "1"]) == 0
    out, err = capsys.readouterr()
    assert err.count("records no class names: predictions show class indices") == 1
    assert out.count("#") == 2
    with pytest.warns(PredictWarning, match="records no class names"):  # from Python: a warning
        [r] = Predictor(run, device="cpu", num_workers=0, top_k=1, optimize=False).predict(paths[0])
    assert r.top_k[0][1] is None


def test_a_far_smaller_image_is_warned_about_once(run_folder, tmp_path, capsys):
    small = _images(tmp_path, 2, size=(6, 6))
    assert main(["predict", *small, "--checkpoint", str(run_folder), "--num-workers", "0"]) == 0
    err = capsys.readouterr().err
    assert err.count("far smaller than the model's 24 px input") == 1 and "img0.png is 6x6 px" in err


# -- ONNX Runtime -------------------------------------------------------------------------------
@pytest.mark.skipif(not HAS_ONNX, reason="onnx, onnxscript and onnxruntime are not installed")
def test_onnx_runtime_predicts_what_torch_predicts(run_folder, predictors, tmp_path):
    from effzoo.export.onnx import export_model

    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    export_model(load_checkpoint(folder), "onnx", folder / "model.onnx")
    # any .onnx file with model.json beside it (a quantized one, later) runs the same way
    shutil.copy(folder / "model.onnx", folder / "model.other.onnx")
    paths = _images(tmp_path, 4)
    want = _with(predictors[3], top_k=4).predict(paths)  # the same weights, in torch
    for name in ("model.onnx", "model.other.onnx"):
        onnx = Predictor(folder / name, num_workers=0, top_k=4)
        assert onnx.runtime == "onnxruntime" and onnx.image_size == SIZE
        for a, b in zip(want, onnx.predict(paths)):
            assert [i for i, *_ in a.top_k] == [i for i, *_ in b.top_k]
            assert [q for *_, q in a.top_k] == pytest.approx([q for *_, q in b.top_k], abs=1e-4)
            assert [n for _, n, _ in b.top_k] == [NAMES[i] for i, *_ in b.top_k]
