"""Small foreign mesh folders (benchmarks/foreign_meshes.py: capsules, benches, bottles in .obj/.ply/.stl/.off
and one broken file) through `jetgen train atlasnet` and `jetgen eval`: the schedule chosen from the data
set's size with its time estimate, augmentation, the collapse and class-medoid warnings, the warmup KL
schedule, and `--init-from base` (built once on a tiny procedural set, cached, keyed, recorded)."""
import json
import math
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from jetgen.cli import main
from jetgen.train import base_model, shape_training as ST
from jetgen.train.schedules import kl_weight

pytest.importorskip("trimesh")

from benchmarks.foreign_meshes import CLASSES, write_folder  # noqa: E402

# a model small enough for a few hundred steps a second
TINY = ("--points", "256", "--latent-dim", "8", "--patches", "2", "--hidden", "32", "--train-points", "128",
        "--encoder-points", "128")


def ok(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exc_info)
    return result.output


def config_of(run):
    with open(os.path.join(run, "config.json")) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("foreign")
    written = write_folder(root / "meshes", 5, seed=0)
    return str(root / "meshes"), written


@pytest.fixture()
def short(monkeypatch):
    """Runs of a few dozen steps instead of a thousand (the rules are the same)."""
    monkeypatch.setattr(ST, "TARGET_STEPS", 40)
    monkeypatch.setattr(ST, "TRANSFER_STEPS", 20)
    monkeypatch.setattr(ST, "TARGET_EPOCHS", 2)


def test_the_foreign_folder_holds_three_classes_in_four_formats_and_a_broken_file(folder):
    root, written = folder
    assert sorted(os.listdir(root)) == sorted(CLASSES)
    files = [p for paths in written.values() for p in paths]
    assert {os.path.splitext(p)[1] for p in files} == {".obj", ".ply", ".stl", ".off"}
    assert os.path.isfile(os.path.join(root, "bottles", "broken.stl"))


def test_the_schedule_gives_enough_steps_whatever_the_size():
    for n in (15, 24, 90, 180, 450, 1800):
        batch, lr = ST.choose_batch(n)
        passes, epochs, steps, why = ST.choose_shape_schedule(n, batch)
        assert steps == epochs * passes * math.ceil(n / batch)
        assert 0.9 * ST.TARGET_STEPS <= steps <= max(1.1 * ST.TARGET_STEPS, (ST.MIN_PASSES + 1) * n / batch), (n, why)
        assert 10 <= epochs <= 40 and "{} training shapes".format(n) in why
    assert ST.choose_batch(15)[0] < ST.choose_batch(180)[0]
    # from other weights: half the steps
    assert ST.choose_shape_schedule(180, 32, transfer=True)[2] <= 0.55 * ST.choose_shape_schedule(180, 32)[2]


def test_a_slow_machine_is_told_but_gets_the_same_schedule():
    fast, slow = [{"batch_size": None, "lr": None, "epochs": None, "passes": None, "init_from": None}
                  for _ in range(2)]
    quick = ST.fill_shape_schedule(fast, 180, probe=lambda batch: 0.01)
    busy = ST.fill_shape_schedule(slow, 180, probe=lambda batch: 5.0)
    assert fast == slow  # timing never changes what is trained
    assert "over 10 minutes" not in quick and "over 10 minutes: --epochs {} halves it".format(
        fast["epochs"] // 2) in busy


def test_the_user_keeps_what_they_pass():
    opts = {"batch_size": None, "lr": 5e-4, "epochs": 7, "passes": None, "init_from": None}
    line = ST.fill_shape_schedule(opts, 90, probe=lambda batch: 0.1)
    assert (opts["lr"], opts["epochs"], opts["passes"]) == (5e-4, 7, 1) and opts["batch_size"] == 16
    assert line.startswith("Chose --batch-size 16 from the data") and "estimated" in line
    given = {"batch_size": 8, "lr": 1e-3, "epochs": 3, "passes": 2, "init_from": None}
    assert ST.fill_shape_schedule(given, 90) is None and given["passes"] == 2


def test_warmup_kl_schedule_starts_at_zero_and_reaches_beta():
    total = 1000
    weights = [kl_weight("warmup", s, total, beta=0.01) for s in range(total)]
    assert weights[0] == 0.0 and weights[99] == 0.0 and 0 < weights[250] < 0.01 and weights[400] == 0.01
    assert all(b >= a for a, b in zip(weights, weights[1:])) and weights[-1] == 0.01


def _boxes(angles):
    rng = np.random.RandomState(0)
    clouds = []
    for a in angles:
        p = rng.uniform(-1, 1, (400, 3)) * [1.0, 0.3, 0.2]
        c, s = math.cos(a), math.sin(a)
        clouds.append(np.stack([c * p[:, 0] + s * p[:, 2], p[:, 1], -s * p[:, 0] + c * p[:, 2]], 1))
    return torch.tensor(np.array(clouds), dtype=torch.float32)


def test_shapes_that_share_a_heading_are_not_turned_and_others_are():
    aligned, voters = ST.heading_alignment(_boxes([0.0] * 8))
    assert aligned > 0.95 and voters == 8
    spread, _ = ST.heading_alignment(_boxes(np.linspace(0, np.pi, 8, endpoint=False)))
    assert spread < 0.1
    assert ST.choose_augmentation({"augment": None}, _boxes([0.0] * 8))[0].yaw is False
    aug, line = ST.choose_augmentation({"augment": None}, _boxes(np.linspace(0, np.pi, 8, endpoint=False)))
    assert aug.yaw and "turns about the up axis" in line
    assert ST.choose_augmentation({"augment": False}, _boxes([0.0] * 8))[0] is None


def test_augmentation_changes_shapes_and_keeps_the_normalisation():
    x = _boxes([0.0, 0.5, 1.0])
    torch.manual_seed(0)
    y = ST.Augment(yaw=True)(x)
    assert y.shape == x.shape and not torch.allclose(x, y)
    centre = 0.5 * (y.amax(1) + y.amin(1))
    assert float(centre.abs().max()) < 1e-5 and torch.allclose(y.norm(dim=2).amax(1), torch.ones(3), atol=1e-5)


def test_a_small_foreign_folder_trains_with_the_chosen_schedule(folder, tmp_path, monkeypatch, short):
    monkeypatch.setenv("JETGEN_CACHE", str(tmp_path / "cache"))
    run = str(tmp_path / "run")
    log = ok("train", "atlasnet", "--data", "meshes", "--data-dir", folder[0], "--out", run, *TINY)
    lines = log.splitlines()
    assert "broken.stl" in lines[0]
    chose = lines[1]
    assert chose.startswith("Chose --batch-size 8, --lr 0.001, --epochs") and "--passes" in chose
    assert "12 training shapes" in chose and "estimated" in chose and "s per step measured" in chose
    assert lines[2].startswith("Augmenting (12 training shapes, fewer than 1000)")
    config = config_of(run)
    assert config["passes"] >= 2 and config["batch_size"] == 8 and config["num_train"] == 12
    steps = config["epochs"] * config["passes"] * math.ceil(12 / 8)
    assert 36 <= steps <= 44
    assert ok("train", "--resume", run, "--epochs", str(config["epochs"] + 1), "--quiet") is not None
    assert config_of(run)["passes"] == config["passes"]


def test_a_collapsed_model_is_called_out_in_training_and_eval(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("JETGEN_CACHE", str(tmp_path / "cache"))
    run = str(tmp_path / "collapsed")
    # two steps: the encoder's output does not depend on the input yet
    log = ok("train", "atlasnet", "--data", "meshes", "--data-dir", folder[0], "--epochs", "1", "--passes", "1",
             "--batch-size", "8", "--lr", "1e-4", "--out", run, *TINY)
    assert "WARNING: the latent carries nothing: 0 of 8 units active" in log
    table = ok("eval", run, "--no-pictures", "--quiet", "--out", str(tmp_path / "eval"))
    assert "WARNING: the latent carries nothing" in table
    assert "WARNING: the model reconstructs worse than the class medoid" in table
    with open(str(tmp_path / "eval" / "eval.json")) as handle:
        assert len(json.load(handle)["warnings"]) == 2


def test_init_from_base_builds_once_then_reuses_and_records_it(folder, tmp_path, monkeypatch, short):
    monkeypatch.setenv("JETGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(base_model, "BASE_DATA", {"shape_classes": ["sword", "mug"], "shapes_per_class": 6,
                                                  "test_shapes_per_class": 2, "points": 256, "seed": 0})
    first = ok("train", "atlasnet", "--data", "meshes", "--data-dir", folder[0], "--init-from", "base", "--out",
               str(tmp_path / "a"), *TINY)
    assert "Building the base model once: atlasnet vae on jetgen's procedural shapes (2 classes, 12 training shapes)" \
        in first
    assert "Training atlasnet (vae, latent 8) on shapes (12 shapes)" in first  # the base's own progress
    assert first.index("Chose") < first.index("Building the base") < first.index("epoch   1/")
    assert "the target: 20 steps from the --init-from weights" in first.splitlines()[1]
    record = config_of(str(tmp_path / "a"))["init_from"]
    settings = dict(variant="vae", latent_dim=8, patches=2, hidden=32, layers=2, train_points=128, encoder_points=128,
                    grid=8)
    assert record["run"] == base_model.base_dir(settings) and record["run"].startswith(str(tmp_path / "cache"))
    assert record["base"]["key"] in record["run"] and record["base"]["params"]["data"]["shapes_per_class"] == 6
    assert record["loaded"] == 20 and record["new"] == 0
    assert config_of(str(tmp_path / "a"))["epochs"] * config_of(str(tmp_path / "a"))["passes"] * 2 <= 22  # half

    again = ok("train", "atlasnet", "--data", "meshes", "--data-dir", folder[0], "--init-from", "base", "--out",
               str(tmp_path / "b"), *TINY)
    assert "Using the base model {}".format(record["run"]) in again and "Building" not in again
    assert config_of(str(tmp_path / "b"))["init_from"]["checkpoint_sha256"] == record["checkpoint_sha256"]
    assert "started from {}".format(record["run"]) in ok("eval", str(tmp_path / "b"), "--no-pictures", "--quiet",
                                                         "--out", str(tmp_path / "eval"))
    # another configuration is another base
    assert base_model.base_key(dict(settings, latent_dim=16))[0] != record["base"]["key"]
    assert base_model.base_key(settings, dict(base_model.BASE_DATA, seed=1))[0] != record["base"]["key"]
