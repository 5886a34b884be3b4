"""`jetgen train atlasnet` and `jetgen eval` of 3D runs through the CLI, on a tiny procedural data set:
AE and VAE, resume, --init-from (report, config record, refusals), latent_prior.json, eval numbers and
pictures, a broken mesh folder, and the option rules (image options refused for atlasnet and back)."""
import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from jetgen.cli import main
from jetgen.errors import JetgenError
from jetgen.runtime.gmm import GaussianMixturePrior
from jetgen.train.rundir import load_latent_prior, load_run
from jetgen.train.trainer import train

pytest.importorskip("trimesh")

# 2 classes of 12 + 4 shapes, 512 points each; a model small enough to train in a second an epoch
TINY = ("--shape-classes", "sword,chair", "--shapes-per-class", "12", "--test-shapes-per-class", "4", "--points", "512",
        "--latent-dim", "16", "--patches", "4", "--hidden", "64", "--batch-size", "8", "--train-points", "256",
        "--encoder-points", "256")
CONFIG_KEYS = {"model", "variant", "latent_dim", "patches", "hidden", "layers", "train_points", "encoder_points", "grid",
               "beta", "kl_schedule", "free_bits", "epochs", "batch_size", "lr", "lr_schedule", "data", "data_dir",
               "points", "shape_classes", "shapes_per_class", "test_shapes_per_class", "init_from", "image_shape",
               "classes", "num_train", "num_classes", "seed", "run_id", "format_version"}


def jetgen(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result


def ok(*args):
    result = jetgen(*args)
    assert result.exit_code == 0, result.output
    return result.output


def refused(*args):
    result = jetgen(*args)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    return result.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An AE trained 1 epoch then resumed to 2, and a VAE started from it (--init-from), 2 epochs."""
    root = tmp_path_factory.mktemp("shape_runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JETGEN_CACHE", str(root / "cache"))
        ae, vae = str(root / "ae"), str(root / "vae")
        first = ok("train", "atlasnet", "--variant", "ae", "--epochs", "1", "--out", ae, *TINY)
        resumed = ok("train", "--resume", ae, "--epochs", "2")
        started = ok("train", "atlasnet", "--init-from", ae, "--epochs", "2", "--out", vae, *TINY)
        yield {"root": root, "ae": ae, "vae": vae, "logs": {"ae": first, "resumed": resumed, "vae": started}}


def config_of(run):
    with open(os.path.join(run, "config.json")) as handle:
        return json.load(handle)


def test_ae_and_vae_train_from_the_cli_with_the_3d_config(runs):
    ae, vae = config_of(runs["ae"]), config_of(runs["vae"])
    assert CONFIG_KEYS <= set(ae) and CONFIG_KEYS <= set(vae)
    assert (ae["variant"], vae["variant"]) == ("ae", "vae")
    assert vae["hidden"] == 64 and vae["beta"] == 0.01 and vae["data"] == "shapes" and vae["image_shape"] == [512, 3]
    assert vae["classes"] == ["sword", "chair"] and vae["num_train"] == 24 and ae["run_id"] != vae["run_id"]
    assert "Training atlasnet (vae, latent 16) on shapes (24 shapes)" in runs["logs"]["vae"]
    for run in (runs["ae"], runs["vae"]):
        assert {"config.json", "metrics.csv", "latent_stats.jsonl", "latent_prior.json", "checkpoint"} <= set(
            os.listdir(run))
        loaded = load_run(run)
        assert loaded.model.kind == "atlasnet" and loaded.model.patches == 4
    rows = load_run(runs["vae"]).metrics()
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(float(r["test_kl"]) > 0 for r in rows)
    assert float(rows[1]["lr"]) < float(rows[0]["lr"])  # one-cycle: the rate falls in the second half


def test_resume_continues_the_run(runs):
    rows = load_run(runs["ae"]).metrics()
    assert [r["epoch"] for r in rows] == ["1", "2"] and load_run(runs["ae"]).meta["epoch"] == 2
    assert "resuming at epoch 2" in runs["logs"]["resumed"]
    assert float(rows[1]["test_recon"]) < float(rows[0]["test_recon"])


def test_latent_prior_is_the_manifest_mixture_description(runs):
    with open(os.path.join(runs["vae"], "latent_prior.json")) as handle:
        spec = json.load(handle)
    assert spec["family"] == "gmm" and set(spec["params"]) >= {"weights", "means", "covariances"}
    prior = GaussianMixturePrior.from_spec(spec)
    assert len(spec["params"]["weights"]) == 10 and np.asarray(spec["params"]["means"]).shape == (10, 16)
    z = prior.sample(5, rng=0)
    assert z.shape == (5, 16) and np.all(np.isfinite(z))
    assert load_latent_prior(runs["vae"]).describe()["params"]["weights"] == prior.describe()["params"]["weights"]


def test_init_from_reports_and_records_what_was_loaded(runs):
    log = runs["logs"]["vae"]
    assert "Started from run {}".format(os.path.abspath(runs["ae"])) in log
    assert "18 tensors loaded, 0 partial, 0 skipped (other shape), 2 new" in log
    assert "new: encoder.logvar_head.weight, encoder.logvar_head.bias" in log
    record = config_of(runs["vae"])["init_from"]
    meta = load_run(runs["ae"]).meta
    assert record == {"run": os.path.abspath(runs["ae"]), "checkpoint_sha256": meta["model_sha256"], "loaded": 18,
                      "partial": 0, "skipped": 0, "new": 2}
    assert config_of(runs["ae"])["init_from"] is None  # nothing is loaded that the user did not name


def test_a_checkpoint_from_another_run_is_refused(runs, tmp_path):
    copy = str(tmp_path / "ae")
    shutil.copytree(runs["ae"], copy)
    shutil.rmtree(os.path.join(copy, "checkpoint"))
    shutil.copytree(os.path.join(runs["vae"], "checkpoint"), os.path.join(copy, "checkpoint"))
    for args in (("train", "--resume", copy, "--epochs", "3"), ("eval", copy, "--no-pictures"),
                 ("train", "atlasnet", "--init-from", copy, "--out", str(tmp_path / "new")) + TINY):
        assert "belongs to another run" in refused(*args)
    assert not os.path.exists(str(tmp_path / "new"))
    assert "does not exist" in refused("train", "atlasnet", "--init-from", str(tmp_path / "nowhere"), "--out",
                                       str(tmp_path / "new"), *TINY)
    assert "names the run directory being created" in refused("train", "atlasnet", "--init-from", runs["ae"], "--out",
                                                              runs["ae"], "--force", *TINY)


def test_eval_writes_numbers_and_pictures(runs, tmp_path):
    out = json.loads(ok("eval", runs["vae"], "--json", "--quiet", "--out", str(tmp_path)))
    recon = out["reconstruction"]
    assert set(recon) == {"model", "floor", "class_medoid", "retrieval_oracle"} and out["test_shapes"] == 8
    for row in recon.values():
        assert row["chamfer_x1000"] > 0 and 0 <= row["fscore@1%"] <= row["fscore@2%"] <= 1
    # the baselines order as they must: two samplings < nearest training shape <= the class medoid
    assert recon["floor"]["chamfer_x1000"] < recon["retrieval_oracle"]["chamfer_x1000"] <= \
        recon["class_medoid"]["chamfer_x1000"]
    assert set(out["generation"]) == {"prior N(0, I)", "fitted mixture", "real training shapes (reference)",
                                      "reconstructions of training shapes (ceiling)"}
    for row in out["generation"].values():
        assert row["samples"] == row["refs"] == 8 and 0 < row["cov_cd"] <= 1 and 0 <= row["nna_cd"] <= 1
        assert np.isfinite(row["mmd_cd_x1000"])
    assert out["mixture_source"] == "latent_prior.json" and out["init_from"]["loaded"] == 18
    names = {os.path.basename(p) for p in out["pictures"]}
    assert names == {"reconstructions.png", "samples.png", "interpolation.png", "patches.png", "tsne.png",
                     "curves.png", "latent_stats.png"}
    for path in out["pictures"]:
        with open(path, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.isfile(str(tmp_path / "eval.json")) and not os.path.exists(os.path.join(runs["vae"], "plots"))
    table = ok("eval", runs["ae"], "--no-pictures", "--quiet", "--max-shapes", "4", "--out", str(tmp_path / "ae"))
    assert "random latents N(0, I) (AE)" in table and "retrieval oracle" in table and "on 4 of 8 test shapes" in table
    assert os.path.isfile(str(tmp_path / "ae" / "eval-n4.json"))


def test_image_options_with_atlasnet_and_3d_options_with_images_are_refused(tmp_path):
    out = str(tmp_path / "x")
    assert "--image-size applies only to image" in refused("train", "atlasnet", "--image-size", "32", "--out", out)
    assert "--arch conv applies only to image" in refused("train", "atlasnet", "--arch", "conv", "--out", out)
    assert "--patches applies only to 3D" in refused("train", "vae", "--patches", "5", "--out", out)
    assert "only the atlasnet model takes" in refused("train", "vae", "--data", "shapes", "--out", out)
    assert "is an image data set" in refused("train", "atlasnet", "--data", "digits", "--out", out)
    assert "one whole number for atlasnet" in refused("train", "atlasnet", "--hidden", "64,64", "--out", out)
    with pytest.raises(JetgenError, match="--shape-classes takes distinct names"):
        train({"model": "atlasnet", "shape_classes": "sword,dragon", "out": out})
    assert not os.path.exists(out)


def test_a_stored_config_is_checked_by_the_same_rules(runs, tmp_path):
    copy = str(tmp_path / "vae")
    shutil.copytree(runs["vae"], copy)
    config = config_of(copy)
    config["hidden"] = [64, 64]
    with open(os.path.join(copy, "config.json"), "w") as handle:
        json.dump(config, handle)
    assert "one whole number for atlasnet" in refused("eval", copy, "--no-pictures")


def test_a_broken_mesh_folder_trains_with_the_skips_counted(tmp_path, monkeypatch):
    from tests.test_shapes_data import _write_mesh_folder

    monkeypatch.setenv("JETGEN_CACHE", str(tmp_path / "cache"))
    _write_mesh_folder(tmp_path / "m")
    log = ok("train", "atlasnet", "--data", "meshes", "--data-dir", str(tmp_path / "m"), "--points", "256",
             "--latent-dim", "8", "--patches", "2", "--hidden", "32", "--train-points", "128", "--encoder-points",
             "128", "--epochs", "1", "--batch-size", "4", "--out", str(tmp_path / "run"))
    assert "Skipped 2 of 8 files" in log and "broken.stl" in log
    assert config_of(str(tmp_path / "run"))["classes"] == ["boxes", "round"]
