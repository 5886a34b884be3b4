"""Training: schedules, every model kind, the run directory, resume, Ctrl-C, NaN, bad input, DDP, quality."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from jetgen.cli import main
from jetgen.errors import JetgenError
from jetgen.train import rundir
from jetgen.train.schedules import kl_term, kl_weight
from jetgen.train.trainer import TrainingInterrupted, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# small and quick: 12 steps per epoch
FAST = dict(model="vae", hidden=[64], latent_dim=4, batch_size=128, quiet=True)


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def weights(run_dir):
    return load_file(os.path.join(run_dir, "checkpoint", "model.safetensors"))


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.allclose(wa[key], wb[key], rtol=0, atol=1e-6), key


# ---- schedules ------------------------------------------------------------------------------------

def test_constant_and_free_bits_weight():
    assert kl_weight("constant", 0, 100, beta=0.5) == 0.5
    assert kl_weight("free-bits", 99, 100, beta=2.0) == 2.0


def test_linear_warmup_with_delay():
    w = lambda step: kl_weight("linear", step, 1000, beta=2.0, warmup_delay=10, warmup_steps=100)  # noqa: E731
    assert w(0) == 0.0 and w(9) == 0.0 and w(10) == 0.0
    assert w(60) == pytest.approx(1.0)
    assert w(110) == 2.0 and w(500) == 2.0
    assert kl_weight("linear", 5, 100, beta=1.0, warmup_steps=0) == 1.0


def test_cyclical_schedule():
    # 4 cycles over 400 steps: each 100 steps, rising over the first half
    w = lambda step: kl_weight("cyclical", step, 400, beta=1.0, cycles=4, cycle_ratio=0.5)  # noqa: E731
    assert w(0) == 0.0 and w(25) == pytest.approx(0.5) and w(50) == 1.0 and w(99) == 1.0
    assert w(100) == 0.0 and w(125) == pytest.approx(0.5) and w(399) == 1.0


def test_unknown_schedule():
    with pytest.raises(ValueError):
        kl_weight("sigmoid", 0, 10)


def test_free_bits_floor_per_dimension():
    kl = torch.tensor([[0.1, 2.0, 0.0], [0.3, 4.0, 0.0]])
    assert float(kl_term(kl)) == pytest.approx((2.1 + 4.3) / 2)
    # batch means 0.2, 3.0, 0.0 -> floored at 0.5: 0.5 + 3.0 + 0.5
    assert float(kl_term(kl, free_bits=0.5)) == pytest.approx(4.0)
    grad_kl = kl.clone().requires_grad_(True)
    kl_term(grad_kl, free_bits=0.5).backward()
    assert grad_kl.grad[:, 0].abs().sum() == 0 and grad_kl.grad[:, 1].abs().sum() > 0


# ---- every model kind -------------------------------------------------------------------------------

KINDS = {
    "vae-mlp": ["vae", "--hidden", "64,32"],
    "vae-conv": ["vae", "--arch", "conv", "--latent-dim", "8"],
    "cvae-mlp": ["cvae", "--hidden", "64", "--kl-schedule", "linear", "--warmup-steps", "10"],
    "cvae-conv": ["cvae", "--arch", "conv", "--latent-dim", "8", "--kl-schedule", "cyclical"],
    "ad-dcgan": ["ad", "--channels", "32,16,8", "--latent-dim", "8"],
    "ad-mlp": ["ad", "--arch", "mlp", "--hidden", "64"],
    "vad-gaussian": ["vad", "--channels", "32,16,8", "--latent-dim", "8", "--kl-schedule", "free-bits"],
    "vad-exponential": ["vad", "--arch", "mlp", "--hidden", "64", "--family", "exponential"],
    "vad-uniform": ["vad", "--arch", "conv", "--latent-dim", "8", "--family", "uniform"],
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_model_trains_one_epoch(kind, tmp_path):
    out = str(tmp_path / kind)
    result = cli("train", *KINDS[kind], "--epochs", "1", "--batch-size", "256", "--out", out)
    assert result.exit_code == 0, result.output
    assert "epoch   1/1" in result.output
    config = rundir.read_config(out)
    for key in ("model", "arch", "latent_dim", "image_shape", "num_classes", "likelihood", "sigma", "hidden",
                "channels", "family", "code_reg", "num_train", "data", "classes", "seed", "epochs", "lr",
                "kl_schedule", "jetgen_version", "torch_version"):
        assert key in config, key
    assert config["num_train"] == 1500 and config["classes"] == [str(i) for i in range(10)]
    (row,) = rundir.read_metrics(out)
    assert row["epoch"] == "1" and float(row["train_loss"]) > 0 and float(row["time_s"]) > 0
    assert 0 <= int(row["active_units"]) <= config["latent_dim"]
    assert (row["test_loss"] != "") == (config["model"] in ("vae", "cvae"))
    meta = rundir.read_meta(out)
    assert (meta["epoch"], meta["step"], meta["complete"]) == (1, 0, True)
    state = rundir.load_train_state(out)
    assert {"optimizer", "rng_cpu", "epoch", "step", "global_step", "schedule", "accum"} <= set(state)
    run = rundir.load_run(out)
    assert run.model.latent_dim == config["latent_dim"]
    with open(os.path.join(out, "latent_stats.jsonl")) as handle:
        (stats,) = [json.loads(line) for line in handle]
    dim = config["latent_dim"]
    assert stats["epoch"] == 1 and len(stats["mu_mean"]) == len(stats["mu_std"]) == len(stats["kl_per_dim"]) == dim
    assert ("sigma_mean" in stats) == (config["family"] == "gaussian" and config["model"] != "ad")


def test_defaults_and_latent_dim_by_arch(tmp_path):
    out = train(dict(model="vae", arch="conv", epochs=1, batch_size=512, quiet=True, out=str(tmp_path / "c")))
    assert rundir.read_config(out)["latent_dim"] == 32
    assert rundir.read_config(out)["arch"] == "conv"


# ---- resume -------------------------------------------------------------------------------------------

def test_resume_extends_epochs_to_identical_weights(tmp_path):
    straight = train(dict(FAST, epochs=3, out=str(tmp_path / "straight")))
    part = train(dict(FAST, epochs=1, out=str(tmp_path / "part")))
    assert rundir.read_meta(part)["epoch"] == 1
    result = cli("train", "--resume", part, "--epochs", "3", "--quiet")
    assert result.exit_code == 0, result.output
    assert rundir.read_meta(part)["epoch"] == 3 and rundir.read_config(part)["epochs"] == 3
    assert [r["epoch"] for r in rundir.read_metrics(part)] == ["1", "2", "3"]
    assert_same_weights(straight, part)
    assert rundir.read_metrics(straight)[-1]["train_loss"] == rundir.read_metrics(part)[-1]["train_loss"]
    # a finished run resumes to nothing; changing the model on resume is refused
    assert cli("train", "--resume", part, "--epochs", "3").exit_code == 0
    result = cli("train", "--resume", part, "--epochs", "4", "--lr", "0.1")
    assert result.exit_code == 1 and "--lr cannot change when resuming" in result.output


def test_interrupt_mid_epoch_and_resume_in_process(tmp_path, monkeypatch):
    import jetgen.train.trainer as trainer

    straight = train(dict(FAST, epochs=2, out=str(tmp_path / "straight")))
    calls = {"n": 0}
    real = trainer._any_rank

    def stop_at_step_17(flag, world, device):
        calls["n"] += 1
        return calls["n"] == 17 or real(flag, world, device)

    monkeypatch.setattr(trainer, "_any_rank", stop_at_step_17)
    out = str(tmp_path / "cut")
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(dict(FAST, epochs=2, out=out))
    meta = rundir.read_meta(out)
    assert (meta["epoch"], meta["step"], meta["global_step"]) == (1, 4, 16)
    monkeypatch.setattr(trainer, "_any_rank", real)
    train({"epochs": 2}, resume=out)
    assert_same_weights(straight, out)
    assert rundir.read_metrics(straight)[-1]["train_loss"] == rundir.read_metrics(out)[-1]["train_loss"]


def test_ctrl_c_saves_and_resume_matches(tmp_path):
    args = ["vae", "--hidden", "64", "--latent-dim", "4", "--batch-size", "8", "--epochs", "8", "--quiet"]
    straight = str(tmp_path / "straight")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the subprocess runs with OMP_NUM_THREADS=1: same kernels, same sums
    try:
        assert cli("train", *args, "--out", straight).exit_code == 0
    finally:
        torch.set_num_threads(threads)
    out = str(tmp_path / "cut")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "jetgen.cli", "train"] + args + ["--out", out],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    deadline = time.time() + 240
    while not (os.path.isdir(out) and rundir.read_metrics(out)):  # the first epoch has finished
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    text = stdout.decode() + stderr.decode()
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "jetgen train --resume" in text
    assert rundir.read_meta(out)["epoch"] < 8
    resumed = subprocess.run([sys.executable, "-m", "jetgen.cli", "train", "--resume", out, "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT, timeout=240)
    assert resumed.returncode == 0, resumed.stdout.decode()
    assert_same_weights(straight, out)


# ---- failures ------------------------------------------------------------------------------------------

def test_huge_lr_stops_with_a_sentence(tmp_path):
    out = str(tmp_path / "nan")
    result = cli("train", "vae", "--hidden", "64", "--epochs", "2", "--lr", "1e6", "--out", out, "--quiet")
    assert result.exit_code == 1
    assert "lower the learning rate" in result.output


def test_nan_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from jetgen.models.latent_models import VAE

    out = train(dict(FAST, epochs=1, out=str(tmp_path / "run")))
    before = rundir.read_meta(out)
    metrics_before = rundir.read_metrics(out)
    real_terms = VAE.terms
    calls = {"n": 0}

    def poisoned(self, x, y=None, idx=None):
        terms = real_terms(self, x, y, idx)
        calls["n"] += 1
        if calls["n"] == 3:
            terms["recon"] = terms["recon"] * float("nan")
        return terms

    monkeypatch.setattr(VAE, "terms", poisoned)
    with pytest.raises(JetgenError, match="became nan at epoch 2, step 3.*epoch 1.*untouched"):
        train({"epochs": 2}, resume=out)
    assert rundir.read_meta(out) == before
    assert rundir.read_metrics(out) == metrics_before
    rundir.load_run(out)  # hash still matches


def test_existing_out_refused_without_force(tmp_path):
    out = train(dict(FAST, epochs=1, out=str(tmp_path / "run")))
    sha = rundir.read_meta(out)["model_sha256"]
    result = cli("train", "vae", "--epochs", "1", "--out", out)
    assert result.exit_code == 1
    assert "already exists" in result.output and "--resume" in result.output and "--force" in result.output
    assert rundir.read_meta(out)["model_sha256"] == sha
    result = cli("train", "vae", "--hidden", "32", "--epochs", "1", "--out", out, "--force", "--quiet")
    assert result.exit_code == 0, result.output
    assert rundir.read_config(out)["hidden"] == [32]
    stranger = tmp_path / "not-a-run"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    result = cli("train", "vae", "--out", str(stranger), "--force")
    assert result.exit_code == 1 and "not a jetgen run directory" in result.output
    assert (stranger / "notes.txt").read_text() == "mine"


def test_bad_input_is_one_sentence(tmp_path):
    result = cli("train", "vae", "--data", "cifar", "--out", str(tmp_path / "a"))
    assert result.exit_code == 2 and "Invalid value for '--data'" in result.output
    result = cli("train", "gan", "--out", str(tmp_path / "a"))
    assert result.exit_code == 2 and "Invalid value" in result.output
    result = cli("train", "vae", "--data", "mnist", "--data-dir", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path / "b"))
    assert result.exit_code == 1 and "does not exist" in result.output
    assert not os.path.exists(str(tmp_path / "b"))
    result = cli("train", "vae", "--arch", "dcgan", "--out", str(tmp_path / "c"))
    assert result.exit_code == 1 and "does not fit model vae" in result.output
    result = cli("train", "vae", "--family", "uniform", "--out", str(tmp_path / "c"))
    assert result.exit_code == 1 and "applies only to the vad model" in result.output
    result = cli("train", "vae", "--hidden", "5x0", "--out", str(tmp_path / "c"))
    assert result.exit_code == 1 and "--hidden" in result.output
    result = cli("train", "--epochs", "2")
    assert result.exit_code == 1 and "Name the model" in result.output
    with pytest.raises(JetgenError, match="--lr must be a positive number"):
        train(dict(FAST, lr=-1.0, out=str(tmp_path / "d")))


def test_labels_out_of_range(tmp_path, monkeypatch):
    import jetgen.train.trainer as trainer_module

    real = trainer_module.load_for_run  # every modality's data comes through it

    def bad_labels(*args, **kwargs):
        data = real(*args, **kwargs)
        data.train_y = data.train_y.clone()
        data.train_y[5] = 11
        return data

    monkeypatch.setattr(trainer_module, "load_for_run", bad_labels)
    with pytest.raises(JetgenError, match="label 11, out of range"):
        train(dict(FAST, model="cvae", out=str(tmp_path / "r")))
    assert not os.path.exists(str(tmp_path / "r"))


def test_resume_refuses_other_format_version(tmp_path):
    out = train(dict(FAST, epochs=1, out=str(tmp_path / "run")))
    path = os.path.join(out, "config.json")
    with open(path) as handle:
        config = json.load(handle)
    config["format_version"] = 99
    with open(path, "w") as handle:
        json.dump(config, handle)
    result = cli("train", "--resume", out, "--epochs", "2")
    assert result.exit_code == 1 and "format version 99" in result.output
    assert rundir.read_meta(out)["epoch"] == 1


def test_config_records_the_modality_and_old_runs_read_by_kind(tmp_path):
    from jetgen.train.config import run_modality

    out = train(dict(FAST, epochs=1, out=str(tmp_path / "run")))
    path, meta_path = os.path.join(out, "config.json"), os.path.join(out, "checkpoint", "meta.json")
    with open(path) as handle:
        config = json.load(handle)
    assert config["modality"] == "image"
    # a run trained before config.json stored its modality (its checkpoint's digest covers the file without it)
    del config["modality"]
    with open(path, "w") as handle:
        json.dump(config, handle)
    with open(meta_path) as handle:
        meta = json.load(handle)
    with open(meta_path, "w") as handle:
        json.dump(dict(meta, config_sha256=rundir.config_digest(out)), handle)
    assert "modality" not in rundir.read_config(out) and run_modality(rundir.read_config(out)) == "image"
    assert rundir.load_run(out).model.kind == "vae"
    result = cli("train", "--resume", out, "--epochs", "2", "--quiet")
    assert result.exit_code == 0, result.output
    assert rundir.read_meta(out)["epoch"] == 2
    # a modality that contradicts the model kind is a hand edit, refused with a sentence
    with open(path, "w") as handle:
        json.dump(dict(config, modality="points"), handle)
    result = cli("train", "--resume", out, "--epochs", "3")
    assert result.exit_code == 1 and "says modality 'points' but its model vae belongs to the image modality" in result.output


def test_idx_data_through_the_cli(tiny_idx_dir, tmp_path):
    out = str(tmp_path / "mnist")
    result = cli("train", "cvae", "--data", "mnist", "--data-dir", tiny_idx_dir, "--hidden", "32", "--epochs", "1",
                 "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    config = rundir.read_config(out)
    assert config["data"] == "mnist" and config["num_train"] == 64 and config["num_classes"] == 10


# ---- distributed --------------------------------------------------------------------------------------

def test_torchrun_two_processes_on_cpu(tmp_path):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    if not os.path.exists(torchrun):
        pytest.skip("torchrun is not installed next to {}".format(sys.executable))
    out = str(tmp_path / "ddp")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "jetgen.cli", "train", "vae",
                           "--hidden", "64", "--latent-dim", "4", "--epochs", "1", "--batch-size", "64", "--out", out,
                           "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout.decode()[-3000:]
    with open(os.path.join(out, "ddp.json")) as handle:
        record = json.load(handle)
    assert record["world_size"] == 2 and len(record["checksums"]) == 2 and record["identical"] is True
    assert rundir.read_meta(out)["epoch"] == 1 and len(rundir.read_metrics(out)) == 1


# ---- quality floors ----------------------------------------------------------------------------------

def bernoulli_baseline(data):
    """Per-pixel factorised Bernoulli fitted on the training pixels: test NLL in nats per image."""
    p = data.train_x.mean(0).clamp(1e-3, 1 - 1e-3)
    x = data.test_x
    return float(-(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1).mean())


@pytest.mark.slow
def test_vae_beats_the_pixel_baseline(run_factory):
    from jetgen.train.data import load_dataset

    baseline = bernoulli_baseline(load_dataset("digits"))
    assert 340 < baseline < 370
    run = run_factory("vae")
    test_loss = float(rundir.read_metrics(run)[-1]["test_loss"])
    assert test_loss <= 0.85 * baseline, (test_loss, baseline)


@pytest.mark.slow
def test_beta_zero_reconstructs_better(run_factory):
    from tests.conftest import RUN_PRESETS

    full = run_factory("vae")
    plain = run_factory("vae-beta0", *RUN_PRESETS["vae"] + ("--beta", "0"))
    recon = lambda run: float(rundir.read_metrics(run)[-1]["test_recon"])  # noqa: E731
    assert recon(plain) < recon(full)
