"""The training loop: one function, ``train(config, resume=None) -> run_dir``.

Reads like nanoGPT's train.py: options as a plain dict (``DEFAULTS``), then data, model, optimiser,
and one loop over epochs and steps that logs, evaluates and checkpoints. Around it:

- device: CUDA when present (``device="auto"``), mixed precision (autocast + GradScaler) on CUDA only;
- reproducible: seeded weights, data order from (seed, epoch) through DistributedSampler, and a
  checkpoint holding optimiser, schedule, RNG and the position inside the epoch, so a resumed run
  ends with the same weights as an uninterrupted one (bitwise on CPU with the same thread count);
- Ctrl-C: a checkpoint at the current step, then ``TrainingInterrupted`` (the CLI exits 130);
- a non-finite loss: ``JetgenError`` and the last good checkpoint left as it was;
- ``torchrun``: DistributedDataParallel (gloo on CPU, nccl on CUDA); only rank 0 writes files and
  shows progress; at the end every rank's parameter checksum goes to ``RUN/ddp.json``.

Per epoch, rank 0 appends a row to ``metrics.csv`` and a line to ``latent_stats.jsonl``:
``{"epoch", "mu_mean", "mu_std", "sigma_mean" (Gaussian posteriors only), "kl_per_dim"}``, over the
test set through the encoder (vae, cvae) or over the training latent table (ad, vad). Auto-decoders
have no encoder, so their test columns stay empty (eval does test-time inference); their train loss
is the negative ELBO of the table entries seen during the epoch.
"""
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from jetgen.errors import JetgenError
from jetgen.train import rundir
from jetgen.train.schedules import KL_SCHEDULES, kl_term, kl_weight

DEFAULTS = {
    # model (what jetgen.models.build_model reads, plus the data-derived keys added by train)
    "model": "vae", "arch": None, "latent_dim": None, "hidden": [500], "channels": [512, 256, 128],
    "family": "gaussian", "likelihood": "bernoulli", "sigma": 0.1, "code_reg": 1e-4,
    # objective
    "beta": 1.0, "kl_schedule": "constant", "warmup_delay": 0, "warmup_steps": 1000, "cycles": 4,
    "cycle_ratio": 0.5, "free_bits": 0.5,
    # optimisation
    "epochs": 20, "batch_size": 128, "lr": 1e-3, "latent_lr": 1e-2, "seed": 0,
    # data
    "data": "digits", "data_dir": None, "download": False, "image_size": 28,
    # running
    "device": "auto", "amp": True, "quiet": False,
}
# options a resumed run may change; everything else must match the stored config
RESUME_OVERRIDES = ("epochs", "device", "amp", "quiet")
DEFAULT_LATENT_DIM = {"mlp": 10, "conv": 32, "dcgan": 32}
RUN_ONLY_KEYS = ("out", "force")  # how to run, not what the run is: not stored in config.json
LATENT_STATS = "latent_stats.jsonl"
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al.: active if Cov_x(E_q[z_u|x]) > 0.01


class TrainingInterrupted(JetgenError):
    """Ctrl-C stopped training after a checkpoint was saved; ``str(err)`` says how to resume."""


def train(config, resume=None):
    """Train a model and return its run directory.

    ``config``: training options, keys as in ``DEFAULTS`` plus ``out`` (the run directory) and
    ``force`` (replace an existing ``out``); missing keys take their defaults. With ``resume`` (a run
    directory) the stored config is used and only ``RESUME_OVERRIDES`` keys of ``config`` may differ
    from it (``epochs`` sets the new total). Raises JetgenError for bad options, data or run
    directories and for a loss that stops being finite; TrainingInterrupted after Ctrl-C.
    """
    rank, world, local_rank = _dist_env()
    if resume is not None:
        run_dir = resume
        opts = _resume_options(resume, config)
    else:
        opts = dict(DEFAULTS, **{k: v for k, v in config.items() if v is not None or k not in DEFAULTS})
        run_dir = opts.pop("out", None)
        if not run_dir:
            raise JetgenError("No run directory given; pass --out RUN (or out= to train()).")
        _check_options(opts)
    force = bool(opts.pop("force", False))
    for key in RUN_ONLY_KEYS:
        opts.pop(key, None)
    device = _pick_device(opts["device"], local_rank)
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return _train(opts, run_dir, resume is not None, force, device, rank, world)
    finally:
        if world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _train(opts, run_dir, resuming, force, device, rank, world):
    from jetgen.models import build_model
    from jetgen.train.data import load_dataset

    # ---- data and model --------------------------------------------------------------------------
    data = load_dataset(opts["data"], opts["data_dir"], opts["download"], opts["image_size"], seed=opts["seed"])
    _check_labels(data)
    if len(data.train_x) == 0:
        raise JetgenError("The {} training split is empty; add training images.".format(data.name))
    if not resuming:
        opts.update(image_shape=list(data.image_shape), num_classes=data.num_classes if opts["model"] == "cvae" else 0,
                    classes=data.classes, num_train=len(data.train_x),
                    jetgen_version=_jetgen_version(), torch_version=torch.__version__)
        if opts["data_dir"]:
            opts["data_dir"] = os.path.abspath(opts["data_dir"])
    elif opts["num_train"] != len(data.train_x) or list(opts["image_shape"]) != list(data.image_shape):
        raise JetgenError("The {} data no longer matches run {} ({} training images of shape {} now, {} of shape {} "
                          "then); restore the data or start a new run.".format(
                              data.name, run_dir, len(data.train_x), list(data.image_shape), opts["num_train"],
                              opts["image_shape"]))
    torch.manual_seed(opts["seed"])
    try:
        model = build_model(opts)
    except ValueError as err:
        raise JetgenError("Cannot build that model: {}.".format(err))
    model.to(device)

    # ---- run directory -------------------------------------------------------------------------------
    if resuming:
        meta = rundir.load_weights(run_dir, model)
        state = rundir.load_train_state(run_dir)
        if meta["epoch"] >= opts["epochs"] and meta["step"] == 0:
            if rank == 0:
                _say("Run {} already trained {} epochs; pass --epochs with a larger number to train further."
                     .format(run_dir, meta["epoch"]))
            return run_dir
        if meta["epoch"] > opts["epochs"]:
            raise JetgenError("Run {} has already trained {} epochs, more than --epochs {}; pass a larger number."
                              .format(run_dir, meta["epoch"], opts["epochs"]))
    else:
        state = None
        _check_new_run_dir(run_dir, force)
        _barrier(world)  # every rank checked before rank 0 changes anything
        if rank == 0:
            if os.path.exists(run_dir):
                shutil.rmtree(run_dir)
            os.makedirs(run_dir)
    if rank == 0:
        rundir.write_config(run_dir, opts)

    # ---- optimiser, data order, schedule -------------------------------------------------------------
    table = [p for n, p in model.named_parameters() if n.startswith(("latents.", "params_table."))]
    rest = [p for n, p in model.named_parameters() if not n.startswith(("latents.", "params_table."))]
    groups = [{"params": rest, "lr": opts["lr"]}] + ([{"params": table, "lr": opts["latent_lr"]}] if table else [])
    optimizer = torch.optim.Adam(groups)
    use_amp = bool(opts["amp"]) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    objective = _Objective(model)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # the auto-decoder tables are dense embeddings used in every step, so every parameter gets a
        # gradient and DDP can all-reduce them without find_unused_parameters
        objective = DistributedDataParallel(objective, device_ids=[device.index] if device.type == "cuda" else None)
    from torch.utils.data.distributed import DistributedSampler

    sampler = DistributedSampler(range(len(data.train_x)), num_replicas=world, rank=rank, shuffle=True,
                                 seed=opts["seed"], drop_last=False)
    batch_size = opts["batch_size"]
    steps_per_epoch = int(math.ceil(len(sampler) / float(batch_size)))
    total_steps = steps_per_epoch * opts["epochs"]
    free_bits = opts["free_bits"] if opts["kl_schedule"] == "free-bits" else None
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)

    epoch, step, global_step = 0, 0, 0
    acc = _new_accumulators()
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        if use_amp and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        epoch, step, global_step = int(state["epoch"]), int(state["step"]), int(state["global_step"])
        acc = dict(state["accum"])
        _set_rng(state, rank, world)
    else:
        # same weights on every rank (seed above), different noise per rank from here on
        torch.manual_seed(opts["seed"] + 7919 * (rank + 1))

    show = rank == 0 and not opts["quiet"]
    if show:
        _say("Training {} ({}, latent {}) on {} ({} images) for {} epochs on {}{}{}{}.".format(
            opts["model"], opts["arch"], opts["latent_dim"], data.name, len(data.train_x), opts["epochs"], device,
            " with mixed precision" if use_amp else "", ", {} processes".format(world) if world > 1 else "",
            ", resuming at epoch {} step {}".format(epoch + 1, step) if state is not None else ""))

    def checkpoint(at_epoch, at_step):
        """All ranks call this; rank 0 writes. ``at_epoch`` epochs done plus ``at_step`` steps of the next."""
        train_state = {
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "schedule": {"name": opts["kl_schedule"], "global_step": global_step, "total_steps": total_steps},
            "epoch": at_epoch, "step": at_step, "global_step": global_step, "accum": dict(acc),
            "world_size": world,
        }
        train_state.update(_get_rng(world))
        if rank == 0:
            rundir.save_checkpoint(run_dir, model, train_state, {
                "epoch": at_epoch, "step": at_step, "global_step": global_step, "epochs": opts["epochs"],
                "complete": at_epoch >= opts["epochs"] and at_step == 0})

    # ---- the loop -----------------------------------------------------------------------------------
    stopper = _InterruptFlag()
    with stopper:
        while epoch < opts["epochs"]:
            sampler.set_epoch(epoch)
            order = torch.tensor(list(sampler), dtype=torch.long)
            bar = _progress(steps_per_epoch, step, epoch, opts["epochs"], disable=not show)
            t_start = time.time()
            while step < steps_per_epoch:
                if _any_rank(stopper.requested, world, device):
                    acc["time"] += time.time() - t_start
                    checkpoint(epoch, step)
                    bar.close()
                    raise TrainingInterrupted(
                        "Interrupted at epoch {}, step {}/{}; a checkpoint is saved. Resume with: jetgen train "
                        "--resume {}".format(epoch + 1, step, steps_per_epoch, run_dir))
                idx = order[step * batch_size:(step + 1) * batch_size].to(device)
                x = train_x[idx]
                y = F.one_hot(train_y[idx], data.num_classes).float() if opts["model"] == "cvae" else None
                beta = kl_weight(opts["kl_schedule"], global_step, total_steps, opts["beta"], opts["warmup_delay"],
                                 opts["warmup_steps"], opts["cycles"], opts["cycle_ratio"])
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    terms = objective(x, y, idx)
                recon = terms["recon"].float().mean()
                kl = terms["kl"].float().sum(1).mean()
                loss = recon + beta * kl_term(terms["kl"].float(), free_bits) + terms["reg"].float().mean()
                n = float(len(idx))
                stats = _sum_ranks(torch.stack([recon.detach() * n, kl.detach() * n, loss.detach() * n,
                                                torch.tensor(n, device=device)]), world)
                s_recon, s_kl, s_loss, s_n = stats.tolist()
                if not all(math.isfinite(v) for v in (s_recon, s_kl, s_loss)):
                    bar.close()
                    raise JetgenError(
                        "The training loss became {} at epoch {}, step {}; lower the learning rate (--lr, now {:g}) "
                        "and train again.{}".format(s_loss, epoch + 1, step + 1, opts["lr"], _kept(run_dir)))
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                acc["recon"] += s_recon
                acc["kl"] += s_kl
                acc["objective"] += s_loss
                acc["count"] += s_n
                step += 1
                global_step += 1
                bar.update(1)
                if show and (step % 5 == 0 or step == steps_per_epoch):
                    bar.set_postfix(loss="{:.1f}".format(s_loss / s_n), recon="{:.1f}".format(s_recon / s_n),
                                    kl="{:.2f}".format(s_kl / s_n), beta="{:.3g}".format(beta), refresh=False)
            bar.close()
            acc["time"] += time.time() - t_start
            epoch += 1
            if rank == 0:
                row, latent_stats = _evaluate(model, data, opts, device)
                count = max(acc["count"], 1.0)
                row.update(epoch=epoch, train_loss=(acc["recon"] + acc["kl"]) / count, train_recon=acc["recon"] / count,
                           train_kl=acc["kl"] / count, lr=opts["lr"], time_s=round(acc["time"], 3),
                           beta=kl_weight(opts["kl_schedule"], global_step - 1, total_steps, opts["beta"],
                                          opts["warmup_delay"], opts["warmup_steps"], opts["cycles"],
                                          opts["cycle_ratio"]))
                rundir.append_metrics(run_dir, row)
                _append_latent_stats(run_dir, dict(epoch=epoch, **latent_stats))
                if show:
                    _say(_summary(row, opts))
            step, acc = 0, _new_accumulators()
            checkpoint(epoch, 0)

    if world > 1:
        _record_ddp_checksums(run_dir, model, rank, world)
    if show:
        _say("Done: {} (checkpoint, metrics.csv, {}).".format(run_dir, LATENT_STATS))
    return run_dir


class _Objective(nn.Module):
    """The model's ``terms`` as a forward, so DistributedDataParallel can hook its gradients."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, y, idx):
        return self.model.terms(x, y, idx)


# ---- evaluation -------------------------------------------------------------------------------------

@torch.no_grad()
def _evaluate(model, data, opts, device, batch=500):
    """Test-set metrics (vae, cvae) or latent-table statistics (ad, vad); returns (metrics row, latent stats)."""
    row = {}
    was_training = model.training
    model.eval()
    try:
        if model.has_encoder:
            x_all, y_all = (data.test_x, data.test_y) if len(data.test_x) else (data.train_x, data.train_y)
            recon, kls, mus, logvars = [], [], [], []
            # fixed evaluation noise that leaves the training RNG stream untouched
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(opts["seed"])
                for i in range(0, len(x_all), batch):
                    x = x_all[i:i + batch].to(device)
                    y = (F.one_hot(y_all[i:i + batch], data.num_classes).float().to(device)
                         if opts["model"] == "cvae" else None)
                    t = model.terms(x, y)
                    recon.append(t["recon"].float().cpu())
                    kls.append(t["kl"].float().cpu())
                    mus.append(t["mu"].float().cpu())
                    logvars.append(t["logvar"].float().cpu())
            recon, kl, mu = torch.cat(recon), torch.cat(kls), torch.cat(mus)
            sigma = torch.exp(0.5 * torch.cat(logvars))
            if len(data.test_x):
                row.update(test_loss=float((recon + kl.sum(1)).mean()), test_recon=float(recon.mean()),
                           test_kl=float(kl.sum(1).mean()))
        elif opts["model"] == "ad":
            mu = model.latents.weight.detach().float().cpu()
            kl, sigma = torch.zeros_like(mu), None
        else:
            params = model.params_table.weight.detach().float().cpu()
            mu, kl = model.family.mean(params), model.family.kl(params)
            sigma = torch.exp(0.5 * model.family.split(params)[1]) if model.family.name == "gaussian" else None
    finally:
        model.train(was_training)
    var = mu.var(0, unbiased=False) if len(mu) > 1 else torch.zeros(mu.shape[1])
    row["active_units"] = int((var > ACTIVE_UNIT_THRESHOLD).sum())
    stats = {"mu_mean": mu.mean(0).tolist(), "mu_std": var.sqrt().tolist()}
    if sigma is not None:
        stats["sigma_mean"] = sigma.mean(0).tolist()
    stats["kl_per_dim"] = kl.mean(0).tolist()
    return row, stats


def _append_latent_stats(run_dir, record):
    """Rewrite latent_stats.jsonl atomically with ``record`` appended (later epochs dropped, as metrics.csv)."""
    from jetgen.atomic import atomic_write_text

    path = os.path.join(run_dir, LATENT_STATS)
    lines = []
    if os.path.isfile(path):
        with open(path) as handle:
            for line in handle:
                try:
                    if line.strip() and json.loads(line)["epoch"] < record["epoch"]:
                        lines.append(line.rstrip("\n"))
                except (ValueError, KeyError, TypeError):
                    continue  # a damaged line is dropped rather than stopping training
    lines.append(json.dumps(record))
    atomic_write_text(path, "\n".join(lines) + "\n")


def _summary(row, opts):
    test = "  test {:.2f} (recon {:.2f}, kl {:.2f})".format(row["test_loss"], row["test_recon"], row["test_kl"]) \
        if "test_loss" in row else ""
    return "epoch {:>3}/{}  train {:.2f} (recon {:.2f}, kl {:.2f}){}  beta {:.3g}  active {}/{}  {:.1f}s".format(
        row["epoch"], opts["epochs"], row["train_loss"], row["train_recon"], row["train_kl"], test, row["beta"],
        row["active_units"], opts["latent_dim"], row["time_s"])


# ---- options -------------------------------------------------------------------------------------------

def _flag(key):
    return "--" + key.replace("_", "-")


def _check_options(o):
    """Fill derived defaults into ``o`` and raise JetgenError with a sentence for the first bad value."""
    from jetgen.models import ARCHS, DEFAULT_ARCH, MODEL_KINDS
    from jetgen.models.families import FAMILIES
    from jetgen.models.likelihoods import LIKELIHOODS
    from jetgen.train.data import DATASETS

    def choice(key, allowed):
        if o[key] not in allowed:
            raise JetgenError("Unknown {} {!r}; choose one of: {}.".format(_flag(key), o[key], ", ".join(allowed)))

    choice("model", MODEL_KINDS)
    o["arch"] = o["arch"] or DEFAULT_ARCH[o["model"]]
    if o["arch"] not in ARCHS[o["model"]]:
        raise JetgenError("--arch {} does not fit model {}; choose one of: {}.".format(
            o["arch"], o["model"], ", ".join(ARCHS[o["model"]])))
    choice("data", DATASETS)
    choice("likelihood", LIKELIHOODS)
    choice("family", FAMILIES)
    choice("kl_schedule", KL_SCHEDULES)
    choice("device", ("auto", "cpu", "cuda"))
    if o["family"] != "gaussian" and o["model"] != "vad":
        raise JetgenError("--family {} applies only to the vad model; {} uses a Gaussian latent.".format(
            o["family"], o["model"]))
    if o["latent_dim"] is None:
        o["latent_dim"] = DEFAULT_LATENT_DIM[o["arch"]]
    o["hidden"] = _int_list(o["hidden"], "hidden")
    o["channels"] = _int_list(o["channels"], "channels")
    if len(o["channels"]) != 3:
        raise JetgenError("--channels takes three comma-separated numbers (e.g. 512,256,128), got {}.".format(
            ",".join(map(str, o["channels"]))))
    for key in ("latent_dim", "epochs", "batch_size", "image_size", "cycles"):
        if not isinstance(o[key], int) or isinstance(o[key], bool) or o[key] < 1:
            raise JetgenError("{} must be a whole number of at least 1, got {!r}.".format(_flag(key), o[key]))
    for key in ("warmup_delay", "warmup_steps", "seed"):
        if not isinstance(o[key], int) or o[key] < 0:
            raise JetgenError("{} must be a whole number of at least 0, got {!r}.".format(_flag(key), o[key]))
    for key in ("lr", "latent_lr", "sigma"):
        if not (isinstance(o[key], (int, float)) and math.isfinite(o[key]) and o[key] > 0):
            raise JetgenError("{} must be a positive number, got {!r}.".format(_flag(key), o[key]))
    for key in ("beta", "free_bits", "code_reg"):
        if not (isinstance(o[key], (int, float)) and math.isfinite(o[key]) and o[key] >= 0):
            raise JetgenError("{} must be a number of at least 0, got {!r}.".format(_flag(key), o[key]))
    if not 0 < o["cycle_ratio"] <= 1:
        raise JetgenError("--cycle-ratio must be in (0, 1], got {!r}.".format(o["cycle_ratio"]))
    if o["data"] in ("mnist", "fashion-mnist", "kmnist") and o["image_size"] != 28:
        raise JetgenError("--image-size applies to the digits and folder data sets; {} images are 28x28.".format(
            o["data"]))
    if o["data_dir"] is not None and o["data"] == "digits":
        raise JetgenError("The digits data set is bundled and takes no --data-dir; pass --data mnist, "
                          "fashion-mnist, kmnist or folder to read from {}.".format(o["data_dir"]))


def _int_list(value, key):
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    try:
        out = [int(v) for v in value]
    except (TypeError, ValueError):
        out = []
    if not out or any(v < 1 for v in out):
        raise JetgenError("{} takes comma-separated positive whole numbers (e.g. 500,500), got {!r}.".format(
            _flag(key), value))
    return out


def _check_labels(data):
    for split, y in (("training", data.train_y), ("test", data.test_y)):
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= data.num_classes):
            bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
            raise JetgenError("The {} split of {} has label {}, out of range for its {} classes ({}); fix the labels."
                              .format(split, data.name, bad, data.num_classes, ", ".join(data.classes[:10])))


def _resume_options(run_dir, overrides):
    stored = rundir.read_config(run_dir)
    opts = dict(DEFAULTS, **stored)
    opts.pop("format_version", None)
    for key, value in overrides.items():
        if key in RUN_ONLY_KEYS or value is None:
            continue
        if key in RESUME_OVERRIDES:
            opts[key] = value
        elif key in stored and _normalise(key, stored[key]) != _normalise(key, value):
            raise JetgenError("{} cannot change when resuming (run {} used {!r}, not {!r}); start a new run with "
                              "--out instead.".format(_flag(key), run_dir, stored[key], value))
    for key in ("epochs",):
        if not isinstance(opts[key], int) or opts[key] < 1:
            raise JetgenError("--epochs must be a whole number of at least 1, got {!r}.".format(opts[key]))
    if opts["device"] not in ("auto", "cpu", "cuda"):
        raise JetgenError("Unknown --device {!r}; choose one of: auto, cpu, cuda.".format(opts["device"]))
    return opts


def _normalise(key, value):
    if key in ("hidden", "channels"):
        return _int_list(value, key)
    if isinstance(value, tuple):
        return list(value)
    return value


def _check_new_run_dir(run_dir, force):
    if not os.path.exists(run_dir):
        return
    if not os.path.isdir(run_dir):
        raise JetgenError("{} exists and is not a directory; choose another --out.".format(run_dir))
    if not os.listdir(run_dir):
        return
    if not os.path.isfile(os.path.join(run_dir, "config.json")):
        raise JetgenError("{} exists and is not a jetgen run directory; choose another --out (--force only replaces "
                          "run directories).".format(run_dir))
    if not force:
        raise JetgenError("Run directory {} already exists; pass --resume {} to continue it or --force to replace "
                          "it.".format(run_dir, run_dir))


def _pick_device(name, local_rank):
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise JetgenError("--device cuda was asked for but this PyTorch ({}) sees no CUDA GPU; use --device cpu or "
                          "auto.".format(torch.__version__))
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def _jetgen_version():
    from jetgen import __version__
    return __version__


def _kept(run_dir):
    meta_path = os.path.join(run_dir, rundir.CHECKPOINT_DIR, "meta.json")
    if os.path.isfile(meta_path):
        return " The last good checkpoint (epoch {}) in {} is untouched.".format(
            rundir.read_meta(run_dir)["epoch"], run_dir)
    return " No checkpoint was written."


def _new_accumulators():
    return {"recon": 0.0, "kl": 0.0, "objective": 0.0, "count": 0.0, "time": 0.0}


def _progress(total, initial, epoch, epochs, disable):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="epoch {}/{}".format(epoch + 1, epochs), leave=False,
                disable=disable or not sys.stderr.isatty(), dynamic_ncols=True)


def _say(message):
    from tqdm import tqdm

    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()


# ---- RNG state -------------------------------------------------------------------------------------------

def _get_rng(world):
    state = {"rng_cpu": torch.get_rng_state(),
             "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    if world > 1:
        import torch.distributed as dist

        gathered = [None] * world
        dist.all_gather_object(gathered, state["rng_cpu"])
        state["rng_cpu_ranks"] = gathered
    return state


def _set_rng(state, rank, world):
    ranks = state.get("rng_cpu_ranks") or []
    torch.set_rng_state(ranks[rank] if len(ranks) == world and world > 1 else state["rng_cpu"])
    if torch.cuda.is_available() and state.get("rng_cuda"):
        torch.cuda.set_rng_state_all(state["rng_cuda"])


# ---- Ctrl-C ----------------------------------------------------------------------------------------------

class _InterruptFlag(object):
    """The first SIGINT only sets a flag the loop checks between steps (so a checkpoint is never taken
    half-way through an optimiser step); a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


# ---- distributed -----------------------------------------------------------------------------------------

def _dist_env():
    """(rank, world size, local rank) from the variables torchrun sets; (0, 1, 0) otherwise."""
    try:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    except ValueError:
        raise JetgenError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers; launch with torchrun.")


def _barrier(world):
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _sum_ranks(tensor, world):
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(tensor)
    return tensor


def _any_rank(flag, world, device):
    if world == 1:
        return flag
    return bool(_sum_ranks(torch.tensor([1.0 if flag else 0.0], device=device), world).item() > 0)


def parameter_checksum(model):
    """sha256 over the model's parameters (names, shapes and float values), in name order."""
    digest = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _record_ddp_checksums(run_dir, model, rank, world):
    import torch.distributed as dist
    from jetgen.atomic import atomic_write_json

    checksums = [None] * world
    dist.all_gather_object(checksums, parameter_checksum(model))
    if rank == 0:
        atomic_write_json(os.path.join(run_dir, "ddp.json"), {
            "world_size": world, "backend": dist.get_backend(), "checksums": checksums,
            "identical": len(set(checksums)) == 1})
