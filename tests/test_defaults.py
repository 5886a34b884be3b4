"""Default flags give good models (issue 9, item 1): `jetgen train MODEL --data digits --out R` with no
tuning flags, seed 0, then the quality floors of the issue by eval's own measures."""
import json
import os

import pytest

from jetgen.train.config import choose_schedule
from tests.test_eval import eval_json


def test_the_schedule_follows_the_data_size():
    batch, lr, epochs, why = choose_schedule(1500)
    assert (batch, lr) == (32, 3e-3) and epochs * -(-1500 // batch) >= 1500 and "1500 training images" in why
    assert choose_schedule(60000)[:2] == (128, 1e-3)  # pytorch/examples' MNIST settings


def _chosen(run):
    with open(os.path.join(run, "config.json")) as handle:
        config = json.load(handle)
    assert sorted(config["auto_schedule"]) == ["batch_size", "epochs", "lr"]  # nothing was tuned by hand
    return config


@pytest.mark.slow
def test_cvae_defaults_make_samples_classified_as_their_label(run_factory, tmp_path):
    run = run_factory("cvae-defaults", "cvae", "--data", "digits")
    _chosen(run)
    out = eval_json(run, "--no-pictures", "--out", str(tmp_path))
    assert out["cond_accuracy"] >= 0.95, out["cond_accuracy"]


@pytest.mark.slow
def test_vae_defaults_beat_the_per_pixel_baseline(run_factory, tmp_path):
    run = run_factory("vae-defaults", "vae", "--data", "digits")
    _chosen(run)
    out = eval_json(run, "--no-pictures", "--out", str(tmp_path))
    assert out["neg_elbo"] <= 0.82 * out["baseline_nll"], (out["neg_elbo"], out["baseline_nll"])
