"""A new user's first hour (issue 9): labels, pictures, one vocabulary, seeds, environment variables.

Runs the CLI and the runtime on the small fixture bundles of tests/runtime_fixtures.py (a cvae with
3 labels, 1x8x8 outputs), as a user would.
"""
import json
import os
import subprocess
import sys

import click
import numpy as np
import pytest
from click.testing import CliRunner

from jetgen.cli import COMMANDS, main
from jetgen.runtime import Model
from jetgen.runtime.images import read_png
from jetgen.runtime.lettering import text_pixels, titled_grid
from tests.runtime_fixtures import make_bundle


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("firsthour"))
    return {"vae": make_bundle(os.path.join(root, "vae.jetgen"))[0],
            "cvae": make_bundle(os.path.join(root, "cvae.jetgen"), kind="cvae", n_labels=3)[0]}


def run(*args, **env):
    return CliRunner().invoke(main, [str(a) for a in args] + ["--threads", "1"], env=env or None)


def ok(*args, **env):
    result = run(*args, **env)
    assert result.exit_code == 0, result.output
    return result


def as_json(*args, **env):
    return json.loads(ok(*(args + ("--json",)), **env).stdout)


# -- item 2: a conditional model given no label samples and interpolates every label ---------------
def test_conditional_sample_without_labels_draws_one_row_per_label(bundles, tmp_path):
    grid = tmp_path / "grid.png"
    text = ok("sample", bundles["cvae"], "--out", grid, "--seed", 0).output
    assert "Wrote 24 samples" in text and "one row per label" in text  # 8 per label
    assert read_png(str(grid)).shape == (2 * (3 * 10 + 2), 2 * (8 * 10 + 2))  # 3 rows of 8
    data = as_json("sample", bundles["cvae"], "-n", 6, "--out", tmp_path / "x.npy", "--seed", 0)
    assert data["labels"] == [0, 0, 1, 1, 2, 2]
    x = np.load(str(tmp_path / "x.npy"))
    with Model.open(bundles["cvae"], intra_op_threads=1) as m:
        np.testing.assert_allclose(x, m.sample(6, labels=[0, 0, 1, 1, 2, 2], seed=0), atol=1e-6)
        np.testing.assert_allclose(m.sample(6, seed=0), x, atol=1e-6)  # the API does the same


def test_conditional_interpolate_without_labels_draws_one_path_per_label(bundles, tmp_path):
    data = as_json("interpolate", bundles["cvae"], "--from", "seed:1", "--to", "seed:2", "--frames", 5,
                   "--out", tmp_path / "p.npy")
    assert data["labels"] == [0, 1, 2] and data["frames"] == 5 and len(data["latents"]) == 15
    x = np.load(str(tmp_path / "p.npy"))
    assert x.shape == (15, 1, 8, 8)
    with Model.open(bundles["cvae"], intra_op_threads=1) as m:
        a, b = m.prior.sample(1, 1.0, 1)[0], m.prior.sample(1, 1.0, 2)[0]
        np.testing.assert_allclose(x[5:10], m.interpolate(a, b, steps=5, labels=1)[0], atol=1e-6)
    ok("interpolate", bundles["cvae"], "--from", "seed:1", "--to", "seed:2", "--out", tmp_path / "s.png")
    assert read_png(str(tmp_path / "s.png")).shape == (2 * (3 * 10 + 2), 2 * (10 * 10 + 2))  # 3 rows of 10


# -- item 5: one vocabulary ---------------------------------------------------------------------
def test_labels_take_all_a_list_or_a_file_in_every_command(bundles, tmp_path):
    assert as_json("sample", bundles["cvae"], "--labels", "2,0", "-n", 4, "-o", tmp_path / "a.npy")["labels"] == \
        [2, 2, 0, 0]
    assert as_json("sample", bundles["cvae"], "--label", "1", "-n", 3, "-o", tmp_path / "b.npy")["labels"] == [1, 1, 1]
    np.save(str(tmp_path / "y.npy"), np.array([1, 2]))
    assert as_json("sample", bundles["cvae"], "--labels", tmp_path / "y.npy", "-n", 2,
                   "-o", tmp_path / "c.npy")["labels"] == [1, 2]
    assert as_json("interpolate", bundles["cvae"], "--from", "seed:1", "--to", "seed:2", "--labels", "2,1",
                   "-o", tmp_path / "d.npy")["labels"] == [2, 1]
    ok("sample", bundles["cvae"], "-n", 2, "--seed", 4, "--label", 2, "-o", tmp_path / "two.npy")
    done = as_json("complete", bundles["cvae"], "--input", tmp_path / "two.npy", "--mask-region", "top-half",
                   "--labels", tmp_path / "y.npy", "--steps", 3, "-o", tmp_path / "e.npy")
    assert done["labels"] == [1, 2] and not done["labels_inferred"]
    done = as_json("complete", bundles["cvae"], "--input", tmp_path / "two.npy", "--mask-region", "top-half",
                   "--labels", "all", "--steps", 3, "-o", tmp_path / "f.npy")
    assert done["labels_inferred"]
    for args, words in [(("--label", 1, "--labels", "all"), "not both"), (("--labels", "7"), "out of range"),
                        (("--labels", "cat"), "Unknown label 'cat'"), (("--labels", ","), "comma-separated")]:
        result = run("sample", bundles["cvae"], "-o", tmp_path / "g.npy", *args)
        assert result.exit_code == 1 and words in result.output and "Traceback" not in result.output, result.output
    result = run("sample", bundles["vae"], "--labels", "all", "-o", tmp_path / "h.npy")
    assert result.exit_code == 1 and "not conditional" in result.output


def test_interpolate_steps_is_a_hidden_old_name_of_frames(bundles, tmp_path):
    result = ok("interpolate", bundles["vae"], "--from", "seed:1", "--to", "seed:2", "--steps", 4,
                "-o", tmp_path / "p.npy")
    assert "--frames" in result.stderr and np.load(str(tmp_path / "p.npy")).shape == (4, 1, 8, 8)
    result = run("interpolate", bundles["vae"], "--from", "seed:1", "--to", "seed:2", "--steps", 4, "--frames", 5,
                 "-o", tmp_path / "p.npy")
    assert result.exit_code == 1 and "--frames only" in result.output
    help_text = ok("interpolate", "--help").output
    assert "--frames" in help_text and "--steps" not in help_text


def _all_commands():
    ctx = click.Context(main)
    return {name: main.get_command(ctx, name) for name in COMMANDS}


# comma-separated lists of several values, which click.Choice cannot take (reason shown on failure)
LISTS = {("bench", "backends"): "bench --backend torch,ort,trt", ("bench", "precisions"): "bench --precision fp32,fp16"}


def test_short_options_and_choices_mean_the_same_in_every_command():
    shorts = {"-o": "--out", "-t": "--target", "-n": "--n"}
    for name, command in _all_commands().items():
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            longs = [o for o in param.opts if o.startswith("--")]
            for short, meant in shorts.items():
                if short in param.opts:
                    assert meant in longs, "{}: {} is {} here".format(name, short, longs)
                if meant in longs and meant != "--n":
                    assert short in param.opts, "{} {} has no {}".format(name, meant, short)
            if set(longs) & {"--backend", "--precision", "--target"} and (name, param.name) not in LISTS:
                assert isinstance(param.type, click.Choice), "{} {} is not a choice".format(name, longs)
            if "--out" in longs:
                assert any(w in (param.help or "").lower() for w in ("directory", "png", ".npy", "file")), name


def test_every_option_reads_its_environment_variable(bundles, tmp_path):
    out = tmp_path / "x.npy"
    data = as_json("sample", bundles["vae"], "-o", out, JETGEN_SAMPLE_N="5", JETGEN_SAMPLE_SEED="7")
    assert data["n"] == 5 and data["seed"] == 7 and not data["seed_drawn"]
    # the command line wins over the environment
    assert as_json("sample", bundles["vae"], "-o", out, "-n", 2, JETGEN_SAMPLE_N="5")["n"] == 2
    ok("interpolate", bundles["vae"], "--from", "seed:1", "--to", "seed:2", "-o", out, JETGEN_INTERPOLATE_FRAMES="3")
    assert np.load(str(out)).shape == (3, 1, 8, 8)


def test_shell_completion_offers_the_backends():
    env = dict(os.environ, _JETGEN_COMPLETE="bash_complete", COMP_WORDS="jetgen sample b.jetgen --backend ",
               COMP_CWORD="4")
    code = "from jetgen.cli import main; main(prog_name='jetgen')"  # as the installed `jetgen` script runs it
    proc = subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, universal_newlines=True,
                          timeout=120)
    assert "plain,ort" in proc.stdout.splitlines() and "plain,trt" in proc.stdout.splitlines()


# -- item 9: seeds, whole rows, masks, repr ------------------------------------------------------------
def test_an_unseeded_draw_records_its_seed_and_can_be_repeated(bundles, tmp_path):
    first = as_json("sample", bundles["vae"], "-n", 4, "-o", tmp_path / "a.npy")
    assert first["seed_drawn"] and isinstance(first["seed"], int)
    again = as_json("sample", bundles["vae"], "-n", 4, "--seed", first["seed"], "-o", tmp_path / "b.npy")
    assert np.array_equal(np.load(str(tmp_path / "a.npy")), np.load(str(tmp_path / "b.npy")))
    text = ok("sample", bundles["vae"], "-n", 4, "-o", tmp_path / "c.npy").output
    assert "pass --seed" in text


def test_a_count_that_does_not_fill_whole_rows_is_rounded_up_and_said(bundles, tmp_path):
    text = ok("sample", bundles["cvae"], "-n", 64, "--labels", "all", "-o", tmp_path / "a.npy").output
    assert "rounded up to 66 (22 per label)" in text
    assert np.load(str(tmp_path / "a.npy")).shape == (66, 1, 8, 8)
    data = as_json("sample", bundles["cvae"], "-n", 64, "--labels", "all", "-o", tmp_path / "a.npy")
    assert data["n"] == 66 and data["n_asked"] == 64


def test_one_mask_of_the_image_size_serves_every_image_and_the_model_has_a_repr(bundles):
    with Model.open(bundles["cvae"], intra_op_threads=1) as m:
        x = m.sample(3, labels=1, seed=0)
        mask = np.ones((8, 8), np.float32)
        mask[4:] = 0
        a = m.complete(x, mask, labels=1, steps=5)
        b = m.complete(x, np.broadcast_to(mask, x.shape), labels=1, steps=5)
        np.testing.assert_array_equal(a.z, b.z)
        text = repr(m)
    assert text.startswith("Model(") and "cvae" in text and "labels 0,1,2" in text and "1x8x8" in text
    assert "ort" in text and "4-D gaussian latent" in text


# -- item 3: complete writes the same titled sheet for one input or many -------------------------------
def test_complete_png_is_a_titled_sheet_for_one_input_or_many(bundles, tmp_path):
    ok("sample", bundles["vae"], "-n", 3, "--seed", 1, "-o", tmp_path / "x.npy")
    ok("sample", bundles["vae"], "-n", 1, "--seed", 1, "-o", tmp_path / "one.png")
    for source, n in ((tmp_path / "one.png", 1), (tmp_path / "x.npy", 3)):
        out = tmp_path / "c{}.png".format(n)
        ok("complete", bundles["vae"], "--input", source, "--mask-region", "bottom-half", "--steps", 3, "-o", out)
        sheet = read_png(str(out))
        scale = 12  # 8-pixel images enlarged to 96
        assert sheet.shape[0] == scale * (3 * 8 + 4 * 2)  # 3 rows (masked, completed, original), padding 2
        title = (text_pixels("completed", 2) * 1.0).astype(np.float32)
        margin = sheet[:, :title.shape[1] + 12]
        top = scale * (2 + 10) + (scale * 8 - title.shape[0]) // 2  # centred on the second row
        np.testing.assert_array_equal(margin[top:top + title.shape[0], 6:6 + title.shape[1]], title)
        assert sheet.shape[1] > margin.shape[1] + n * scale * 8  # the images are right of the titles


def test_titled_grid_draws_each_title_beside_its_row():
    x = np.zeros((4, 1, 4, 4), np.float32)
    pixels = titled_grid(x, 2, ["ab", "c"], scale=10)
    ink = text_pixels("ab", 1)
    assert pixels.dtype == np.uint8 and pixels.shape[0] == 10 * (2 * 6 + 2)
    assert np.array_equal(pixels[35:44, 3:3 + ink.shape[1]] == 255, ink)  # row 0 spans 20..60; 9-row glyphs
    assert (pixels[80:, :] == 255).sum() == text_pixels("c", 1).sum()  # nothing else in the second row
