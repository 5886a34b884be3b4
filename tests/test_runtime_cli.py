"""`jetgen info | sample | interpolate | complete` on small real bundles, as a user runs them."""
import json
import os
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from jetgen.cli import main
from jetgen.runtime.images import read_png
from tests.runtime_fixtures import make_bundle


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("cli"))
    return {
        "vae": make_bundle(os.path.join(root, "vae.jetgen"))[0],
        "cvae": make_bundle(os.path.join(root, "cvae.jetgen"), kind="cvae", n_labels=3)[0],
        "ad": make_bundle(os.path.join(root, "ad.jetgen"), kind="ad", encoder=False)[0],
    }


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args] + (["--threads", "1"] if args[0] != "info" else []))
    return result


def ok(*args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def test_info_text_and_json(bundles, tmp_path):
    path = str(tmp_path / "b.jetgen")
    shutil.copytree(bundles["cvae"], path)
    os.makedirs(os.path.join(path, "engines"))
    with open(os.path.join(path, "engines", "decoder.fp16.engine"), "wb") as handle:
        handle.write(b"x" * 10)
    with open(os.path.join(path, "engines", "decoder.fp16.engine.json"), "w") as handle:
        json.dump({"tensorrt": "8.2.1", "sm": "5.3"}, handle)
    text = ok("info", path).output
    for word in ("cvae", "latent size 4", "gaussian", "labels      0, 1, 2", "latent_grad.onnx", "sha256 ok",
                 "decoder.fp16.engine", "8.2.1", "provenance"):
        assert word in text
    data = json.loads(ok("info", path, "--json").stdout)
    assert data["kind"] == "cvae" and data["latent_dim"] == 4 and data["labels"] == ["0", "1", "2"]
    assert data["graphs"]["decoder"]["check"] == "ok" and data["graphs"]["decoder"]["opset"] == 13
    assert data["engines"] == [{"file": os.path.join("engines", "decoder.fp16.engine"), "bytes": 10,
                                "sidecar": {"tensorrt": "8.2.1", "sm": "5.3"}}]


def test_sample_png_and_npy(bundles, tmp_path):
    ok("sample", bundles["vae"], "--n", 10, "--seed", 1, "--out", tmp_path / "g.png")
    grid = read_png(str(tmp_path / "g.png"))
    assert grid.shape == (2 * (2 * 10 + 2), 2 * (8 * 10 + 2))  # two rows of up to 8, 8x8 images, borders, 2x
    ok("sample", bundles["vae"], "--n", 5, "--seed", 1, "--out", tmp_path / "x.npy")
    x = np.load(str(tmp_path / "x.npy"))
    assert x.dtype == np.float32 and x.shape == (5, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    out = json.loads(ok("sample", bundles["vae"], "--n", 5, "--seed", 1, "--out", tmp_path / "y.npy", "--json").stdout)
    assert out["n"] == 5 and np.array_equal(np.load(str(tmp_path / "y.npy")), x)


def test_sample_labels(bundles, tmp_path):
    ok("sample", bundles["cvae"], "--labels", "all", "--n", 12, "--out", tmp_path / "all.npy", "--seed", 0)
    assert np.load(str(tmp_path / "all.npy")).shape == (12, 1, 8, 8)  # 4 per label
    ok("sample", bundles["cvae"], "--labels", "all", "--out", tmp_path / "all.png")
    assert read_png(str(tmp_path / "all.png")).shape == (2 * (3 * 10 + 2), 2 * (8 * 10 + 2))  # a row per label
    ok("sample", bundles["cvae"], "--label", 2, "--n", 3, "--out", tmp_path / "two.npy")
    data = json.loads(ok("sample", bundles["cvae"], "--n", 3, "--out", tmp_path / "none.npy", "--json").stdout)
    assert data["labels"] == [0, 1, 2]  # no label: every label, one row each
    result = run("sample", bundles["cvae"], "--label", 7, "--out", tmp_path / "bad.npy")
    assert result.exit_code == 1 and "out of range" in result.output


def test_interpolate(bundles, tmp_path):
    ok("interpolate", bundles["vae"], "--from", "seed:1", "--to", "seed:2", "--frames", 6, "--mode", "slerp",
       "--out", tmp_path / "path.npy")
    assert np.load(str(tmp_path / "path.npy")).shape == (6, 1, 8, 8)
    np.save(str(tmp_path / "za.npy"), np.zeros(4, np.float32))
    ok("sample", bundles["ad"], "--n", 1, "--seed", 3, "--out", tmp_path / "xb.png")
    data = json.loads(ok("interpolate", bundles["ad"], "--from", tmp_path / "za.npy", "--to", tmp_path / "xb.png",
                         "--frames", 4, "--out", tmp_path / "strip.png", "--json").stdout)
    assert len(data["latents"]) == 4 and data["latents"][0] == [0.0] * 4
    assert read_png(str(tmp_path / "strip.png")).shape == (2 * 12, 2 * (4 * 10 + 2))
    ok("sample", bundles["vae"], "--n", 5, "--seed", 3, "--out", tmp_path / "five.npy")
    five = np.load(str(tmp_path / "five.npy"))
    ok("interpolate", bundles["vae"], "--from", str(tmp_path / "five.npy") + ":0", "--to",
       str(tmp_path / "five.npy") + ":4", "--frames", 3, "--out", tmp_path / "rows.npy")
    assert np.load(str(tmp_path / "rows.npy")).shape == (3, 1, 8, 8)
    result = run("interpolate", bundles["vae"], "--from", tmp_path / "five.npy", "--to", "seed:1",
                 "--out", tmp_path / "p.npy")
    assert result.exit_code == 1 and "five.npy:K" in result.output
    assert five.shape == (5, 1, 8, 8)
    result = run("interpolate", bundles["vae"], "--from", "seed:x", "--to", "seed:2", "--out", tmp_path / "p.npy")
    assert result.exit_code == 1 and "seed:N" in result.output


def test_complete_reports_the_loss(bundles, tmp_path):
    ok("sample", bundles["vae"], "--n", 4, "--seed", 5, "--out", tmp_path / "x.npy")
    text = ok("complete", bundles["vae"], "--input", tmp_path / "x.npy", "--mask-region", "bottom-half",
              "--out", tmp_path / "y.png").output
    assert re.search(r"Completed 4 input\(s\) in \d+ steps", text) and "input 3: loss" in text
    data = json.loads(ok("complete", bundles["vae"], "--input", tmp_path / "x.npy", "--mask-region", "center",
                         "--steps", 30, "--seed", 0, "--out", tmp_path / "y.npy", "--json").stdout)
    assert data["steps"] == 30 and len(data["loss"]) == 4
    assert all(a < b for a, b in zip(data["loss"], data["loss_start"]))
    x, y = np.load(str(tmp_path / "x.npy")), np.load(str(tmp_path / "y.npy"))
    assert y.shape == x.shape and np.array_equal(y[:, :, :2], x[:, :, :2])  # observed border kept
    mask = np.ones((1, 8, 8), np.float32)
    mask[:, :, :4] = 0
    np.save(str(tmp_path / "m.npy"), mask)
    ok("complete", bundles["vae"], "--input", tmp_path / "x.npy", "--mask", tmp_path / "m.npy", "--steps", 5,
       "--out", tmp_path / "z.npy")


def test_complete_infers_labels(bundles, tmp_path):
    ok("sample", bundles["cvae"], "--label", 1, "--n", 1, "--seed", 2, "--out", tmp_path / "x.png")
    text = ok("complete", bundles["cvae"], "--input", tmp_path / "x.png", "--mask-region", "bottom-half",
              "--out", tmp_path / "y.png", "--steps", 150).output
    assert "label 1 (inferred)" in text
    assert read_png(str(tmp_path / "y.png")).shape[0] == 3 * 8 * 12 + 4 * 2 * 12  # a titled sheet of 3 rows

    np.save(str(tmp_path / "y.npy"), np.array([1]))
    data = json.loads(ok("complete", bundles["cvae"], "--input", tmp_path / "x.png", "--mask-region", "top-half",
                         "--labels", tmp_path / "y.npy", "--steps", 10, "--out", tmp_path / "z.npy", "--json").stdout)
    assert data["labels"] == [1] and data["labels_inferred"] is False


def test_errors_are_one_sentence(bundles, tmp_path):
    path = str(tmp_path / "t.jetgen")
    shutil.copytree(bundles["vae"], path)
    with open(os.path.join(path, "decoder.onnx"), "r+b") as handle:
        handle.seek(20)
        byte = handle.read(1)
        handle.seek(20)
        handle.write(bytes([byte[0] ^ 1]))
    for args in [("sample", path, "--out", tmp_path / "s.npy"),
                 ("info", path),
                 ("complete", bundles["vae"], "--input", tmp_path / "missing.npy", "--mask-region", "center",
                  "--out", tmp_path / "o.npy"),
                 ("complete", bundles["vae"], "--input", tmp_path / "missing.npy", "--out", tmp_path / "o.npy"),
                 ("sample", bundles["vae"], "--out", tmp_path / "s.gif")]:
        result = run(*args)
        assert result.exit_code == 1, result.output
        assert "Error:" in result.output and "Traceback" not in result.output
    (tmp_path / "bad.png").write_bytes(b"not a png")
    result = run("complete", bundles["vae"], "--input", tmp_path / "bad.png", "--mask-region", "center",
                 "--out", tmp_path / "o.npy")
    assert result.exit_code == 1 and "Cannot read" in result.output
    assert not os.path.exists(str(tmp_path / "s.npy"))


def test_complete_png_shows_masked_completed_and_original_rows(tmp_path):
    from jetgen.runtime.images import completion_sheet

    x = np.random.RandomState(0).uniform(size=(3, 1, 8, 8)).astype(np.float32)
    mask = np.ones_like(x)
    mask[:, :, 4:] = 0
    done = np.full_like(x, 0.5)
    sheet = completion_sheet(x, mask, done, columns=4)
    assert sheet.shape == (12, 1, 8, 8)  # 3 rows of 4 columns, the last column blank
    np.testing.assert_allclose(sheet[0, :, :4], x[0, :, :4])
    np.testing.assert_allclose(sheet[0, :, 4:], 0.35)  # hidden pixels drawn grey
    np.testing.assert_allclose(sheet[4], done[0])
    np.testing.assert_allclose(sheet[8], x[0])
    assert not sheet[3].any() and not sheet[11].any()
