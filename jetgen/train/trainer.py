"""The training loop: ``train(config, resume=None) -> run_dir``.

Reads like nanoGPT's train.py: options (jetgen.train.config), then data, model, optimiser, and one
loop over epochs and steps that logs, evaluates and checkpoints, split into setup (``_setup``), one
epoch (``_run_epoch``) and the end of an epoch (``_end_epoch``). Around it:

- device: CUDA when present (``device="auto"``), mixed precision (autocast + GradScaler) on CUDA only;
- reproducible: seeded weights, data order from (seed, epoch) through DistributedSampler, and a
  checkpoint holding optimiser, schedule, RNG and the position inside the epoch, so a resumed run
  ends with the same weights as an uninterrupted one (bitwise on CPU with the same thread count);
- Ctrl-C: a checkpoint at the current step, then ``TrainingInterrupted`` (the CLI exits 130);
- a non-finite loss: ``JetgenError`` and the last good checkpoint left as it was;
- a run stopped before its first checkpoint: ``--resume`` starts it again from epoch 0;
- ``torchrun``: DistributedDataParallel (gloo on CPU, nccl on CUDA); only rank 0 writes files and
  shows progress; at the end every rank's parameter checksum goes to ``RUN/ddp.json``.

Per epoch, rank 0 appends a row to ``metrics.csv`` and a line to ``latent_stats.jsonl``:
``{"epoch", "mu_mean", "mu_std", "sigma_mean" (Gaussian posteriors only), "kl_per_dim"}``, over the
test set through the encoder (vae, cvae) or over the training latent table (ad, vad). Auto-decoders
have no encoder, so their test columns stay empty (eval does test-time inference); their train loss
is the negative ELBO of the table entries seen during the epoch.
"""
import hashlib
import math
import os
import shutil
import signal
import sys
import time
import uuid

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from jetgen import __version__, modalities, spec
from jetgen.atomic import atomic_write_json, clean_stale
from jetgen.errors import JetgenError
from jetgen.models import build_model, kind_class
from jetgen.train import config as run_config, rundir
from jetgen.train.data import load_for_run
from jetgen.train.metrics import active_units
from jetgen.train.schedules import kl_term, kl_weight, lr_factor

# kept as names of this module for callers that read them here
DEFAULTS = run_config.DEFAULTS
LATENT_STATS = rundir.LATENT_STATS


class TrainingInterrupted(JetgenError):
    """Ctrl-C or SIGTERM stopped training after a checkpoint was saved; ``str(err)`` says how to resume,
    ``signum`` is the signal (the CLI exits 128 + signum: 130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, message, signum=signal.SIGINT):
        JetgenError.__init__(self, message)
        self.signum = int(signum)


def train(config, resume=None):
    """Train a model and return its run directory.

    ``config``: training options, keys as in ``jetgen.train.config.DEFAULTS`` plus ``out`` (the run
    directory) and ``force`` (replace an existing ``out``); missing keys take their defaults. With
    ``resume`` (a run directory) the stored config is used and only ``RESUME_OVERRIDES`` keys of
    ``config`` may differ from it (``epochs`` sets the new total); a run stopped before its first
    checkpoint starts again from epoch 0. Raises JetgenError for bad options, data or run directories
    and for a loss that stops being finite; TrainingInterrupted after Ctrl-C.
    """
    rank, world, local_rank = _dist_env()
    force = bool(config.get("force", False))
    if resume is not None:
        run_dir = resume
        opts = run_config.resume_options(rundir.read_config(resume), config, resume)
        resuming = rundir.has_checkpoint(resume)
        force = force or not resuming  # no checkpoint yet: start again in the same directory
    else:
        opts = dict(run_config.DEFAULTS, **{k: v for k, v in config.items()
                                            if v is not None or k not in run_config.DEFAULTS})
        run_dir = opts.get("out")
        if not run_dir:
            raise JetgenError("No run directory given; pass --out RUN (or out= to train()).")
        run_config.validate(opts)
        resuming = False
    for key in run_config.RUN_ONLY_KEYS:
        opts.pop(key, None)
    device = _pick_device(opts["device"], local_rank)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        run = _setup(opts, run_dir, resuming, force, device, rank, world)
        if run is None:
            return run_dir
        _loop(run)
        if rank == 0:
            run.half.after_training(run)
        if world > 1:
            _record_ddp_checksums(run_dir, run.model, rank, world)
        if run.show:
            _say("Done: {} (checkpoint, metrics.csv, {}).".format(run_dir, LATENT_STATS))
        return run_dir
    finally:
        if world > 1:
            if dist.is_initialized():
                dist.destroy_process_group()


class _Run(object):
    """Everything one training run holds between steps (set up by ``_setup``): what it is (``opts``,
    ``run_dir``, ``data`` and its tensors ``train_x``/``train_y`` on ``device``), what trains (``model``,
    ``objective``, ``optimizer``, ``scaler`` when ``use_amp``, the ``base_lrs`` of its groups, ``free_bits``
    or None), how the data is dealt (``sampler``, ``steps_per_epoch``, ``total_steps``, ``augment`` or None),
    who runs it (``rank`` of ``world`` processes; ``show``: this one prints), where it is (``epoch``, ``step``,
    ``global_step``, the epoch's accumulators ``acc``) and ``half``, its modality's training part
    (jetgen/modalities/<modality>/train.py)."""

    def __init__(self, opts, run_dir, data, model, optimizer, scaler, use_amp, objective, sampler, device, rank,
                 world, steps_per_epoch, total_steps, base_lrs, free_bits, train_x, train_y, show):
        self.opts, self.run_dir, self.data = opts, run_dir, data
        self.model, self.objective, self.optimizer, self.scaler, self.use_amp = model, objective, optimizer, scaler, use_amp
        self.base_lrs, self.free_bits = base_lrs, free_bits
        self.sampler, self.steps_per_epoch, self.total_steps, self.augment = sampler, steps_per_epoch, total_steps, None
        self.device, self.rank, self.world, self.show = device, rank, world, show
        self.train_x, self.train_y = train_x, train_y
        self.epoch, self.step, self.global_step, self.acc = 0, 0, 0, _new_accumulators()
        self.half = _half(opts)

    @staticmethod
    def say(message):
        """A line of the run's log (above the progress bar)."""
        _say(message)


def _load_data(opts, run_dir, resuming, world):
    data = load_for_run(opts, log=_say)
    _check_labels(data)
    if len(data.train_x) == 0:
        raise JetgenError("The {} training split is empty; add training images.".format(data.name))
    if len(data.test_x) and tuple(data.test_x.shape[1:]) != tuple(data.train_x.shape[1:]):
        raise JetgenError("The {} test images have shape {} but the training images {}; give a data set whose "
                          "splits match.".format(data.name, tuple(data.test_x.shape[1:]), tuple(data.train_x.shape[1:])))
    chosen = None
    if resuming:
        if opts["num_train"] != len(data.train_x) or list(opts["image_shape"]) != list(data.image_shape):
            raise JetgenError("The {} data no longer matches run {} ({} training images of shape {} now, {} of shape "
                              "{} then); restore the data or start a new run.".format(
                                  data.name, run_dir, len(data.train_x), list(data.image_shape), opts["num_train"],
                                  opts["image_shape"]))
    else:
        chosen = _fill_schedule(opts, data, world)
        opts.update(modality=spec.kind_modality(opts["model"]), image_shape=list(data.image_shape),
                    classes=data.classes, num_train=len(data.train_x),
                    num_classes=data.num_classes if kind_class(opts["model"]).labelled else 0,
                    jetgen_version=__version__, torch_version=torch.__version__, run_id=uuid.uuid4().hex)
        if opts["data_dir"]:
            opts["data_dir"] = os.path.abspath(opts["data_dir"])
    return data, chosen


def _fill_schedule(opts, data, world):
    """The automatic batch size, lr and epochs (and, for 3D shapes, passes per epoch, timed on a throw-away
    model); the sentence saying what was chosen, or None."""
    return _half(opts).fill_schedule(opts, data, world, build_model)


def _prepare_run_dir(run_dir, resuming, force, model, rank, world, opts):
    """Checkpoint meta and training state of a resumed run, or a fresh directory; None, None when a
    resumed run has nothing left to train."""
    if resuming:
        meta = rundir.load_weights(run_dir, model, config=opts)
        state = rundir.load_train_state(run_dir, meta)
        if meta["epoch"] >= opts["epochs"] and meta["step"] == 0:
            if rank == 0:
                _say("Run {} already trained {} epochs; pass --epochs with a larger number to train further."
                     .format(run_dir, meta["epoch"]))
            return None, None
        if meta["epoch"] > opts["epochs"]:
            raise JetgenError("Run {} has already trained {} epochs, more than --epochs {}; pass a larger number."
                              .format(run_dir, meta["epoch"], opts["epochs"]))
        return meta, state
    _check_new_run_dir(run_dir, force)
    _barrier(world)  # every rank checked before rank 0 changes anything
    if rank == 0:
        if os.path.exists(run_dir):
            shutil.rmtree(run_dir)
        os.makedirs(run_dir)
    return {}, None


def _setup(opts, run_dir, resuming, force, device, rank, world):
    """Data, model, optimiser, data order and schedule of a run, restored from its checkpoint when
    resuming; None when a resumed run is already complete."""
    data, chosen = _load_data(opts, run_dir, resuming, world)
    if chosen and rank == 0 and not opts["quiet"]:
        _say(chosen)  # before anything slow (a base model to build), so the plan and its estimate come first
    torch.manual_seed(opts["seed"])
    try:
        model = build_model(opts)
    except ValueError as err:
        raise JetgenError("Cannot build that model: {}.".format(err))
    if not resuming and isinstance(opts["init_from"], str):
        from jetgen.train.transfer import init_from_run

        opts["init_from"] = init_from_run(model, opts["init_from"], run_dir, _say if rank == 0 else lambda m: None,
                                          quiet=opts["quiet"], device=opts["device"])
    model.to(device)
    meta, state = _prepare_run_dir(run_dir, resuming, force, model, rank, world, opts)
    if meta is None:
        return None
    if rank == 0:
        rundir.write_config(run_dir, opts)

    table = model.table_parameters()
    rest = [p for p in model.parameters() if all(p is not t for t in table)]
    groups = [{"params": rest, "lr": opts["lr"]}] + ([{"params": table, "lr": opts["latent_lr"]}] if table else [])
    optimizer = torch.optim.Adam(groups)
    use_amp = bool(opts["amp"]) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    objective = _Objective(model)
    if world > 1:
        # the auto-decoder tables are dense embeddings used in every step, so every parameter gets a
        # gradient and DDP can all-reduce them without find_unused_parameters
        objective = DistributedDataParallel(objective, device_ids=[device.index] if device.type == "cuda" else None)
    passes = opts.get("passes") or 1  # small 3D sets pass over the data several times per epoch
    sampler = DistributedSampler(range(len(data.train_x) * passes), num_replicas=world, rank=rank, shuffle=True,
                                 seed=opts["seed"], drop_last=False)
    steps_per_epoch = int(math.ceil(len(sampler) / float(opts["batch_size"])))
    run = _Run(opts=opts, run_dir=run_dir, data=data, model=model, optimizer=optimizer, scaler=scaler,
               use_amp=use_amp, objective=objective, sampler=sampler, device=device, rank=rank, world=world,
               steps_per_epoch=steps_per_epoch, total_steps=steps_per_epoch * opts["epochs"],
               base_lrs=[g["lr"] for g in groups],
               free_bits=opts["free_bits"] if opts["kl_schedule"] == "free-bits" else None,
               train_x=data.train_x.to(device), train_y=data.train_y.to(device),
               show=rank == 0 and not opts["quiet"])
    run.augment, augment_line = run.half.choose_augmentation(opts, data.train_x)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        if use_amp and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        run.epoch, run.step, run.global_step = int(state["epoch"]), int(state["step"]), int(state["global_step"])
        run.acc = dict(state["accum"])
        _set_rng(state, rank, world)
    else:
        # same weights on every rank (seed above), different noise per rank from here on
        torch.manual_seed(opts["seed"] + 7919 * (rank + 1))
    if run.show:
        if augment_line:
            _say(augment_line)
        _say("Training {} ({}, latent {}) on {} ({} {}) for {} epochs on {}{}{}{}.".format(
            opts["model"], opts.get(run.half.SHOWN_SETTING),
            opts["latent_dim"], data.name, len(data.train_x), run.half.EXAMPLES, opts["epochs"], device,
            " with mixed precision" if use_amp else "", ", {} processes".format(world) if world > 1 else "",
            ", resuming at epoch {} step {}".format(run.epoch + 1, run.step) if state is not None else ""))
    return run


def _checkpoint(run):
    """All ranks call this; rank 0 writes: ``run.epoch`` epochs done plus ``run.step`` steps of the next."""
    opts = run.opts
    train_state = {
        "optimizer": run.optimizer.state_dict(), "scaler": run.scaler.state_dict(),
        "schedule": {"name": opts["kl_schedule"], "global_step": run.global_step, "total_steps": run.total_steps},
        "epoch": run.epoch, "step": run.step, "global_step": run.global_step, "accum": dict(run.acc),
        "world_size": run.world,
    }
    train_state.update(_get_rng(run.world))
    if run.rank == 0:
        rundir.save_checkpoint(run.run_dir, run.model, train_state, {
            "epoch": run.epoch, "step": run.step, "global_step": run.global_step, "epochs": opts["epochs"],
            "run_id": opts.get("run_id"),
            "complete": run.epoch >= opts["epochs"] and run.step == 0})


def _beta(run, global_step):
    o = run.opts
    return kl_weight(o["kl_schedule"], global_step, run.total_steps, o["beta"], o["warmup_delay"], o["warmup_steps"],
                     o["cycles"], o["cycle_ratio"])


def _loop(run):
    stopper = _InterruptFlag()
    with stopper:
        while run.epoch < run.opts["epochs"]:
            _run_epoch(run, stopper)
            _end_epoch(run)


def _run_epoch(run, stopper):
    """The steps of one epoch from ``run.step`` on; checkpoints and raises TrainingInterrupted on Ctrl-C."""
    opts, batch_size = run.opts, run.opts["batch_size"]
    run.sampler.set_epoch(run.epoch)
    order = torch.tensor(list(run.sampler), dtype=torch.long)
    bar = _progress(run.steps_per_epoch, run.step, run.epoch, opts["epochs"], disable=not run.show)
    t_start = time.time()
    while run.step < run.steps_per_epoch:
        if _any_rank(stopper.requested, run.world, run.device):
            run.acc["time"] += time.time() - t_start
            _checkpoint(run)
            bar.close()
            raise TrainingInterrupted(
                "Interrupted by {} at epoch {}, step {}/{}; a checkpoint is saved. Resume with: jetgen train "
                "--resume {}".format(signal.Signals(stopper.signum).name, run.epoch + 1, run.step,
                                     run.steps_per_epoch, run.run_dir), stopper.signum)
        idx = (order[run.step * batch_size:(run.step + 1) * batch_size] % len(run.train_x)).to(run.device)
        s_recon, s_kl, s_loss, s_n, beta = _train_step(run, idx)
        if not all(math.isfinite(v) for v in (s_recon, s_kl, s_loss)):
            bar.close()
            raise JetgenError(
                "The training loss became {} at epoch {}, step {}; lower the learning rate (--lr, now {:g}) "
                "and train again.{}".format(s_loss, run.epoch + 1, run.step + 1, opts["lr"], _kept(run.run_dir)))
        run.acc["recon"] += s_recon
        run.acc["kl"] += s_kl
        run.acc["objective"] += s_loss
        run.acc["count"] += s_n
        run.step += 1
        run.global_step += 1
        bar.update(1)
        if run.show and (run.step % 5 == 0 or run.step == run.steps_per_epoch):
            bar.set_postfix(loss="{:.1f}".format(s_loss / s_n), recon="{:.1f}".format(s_recon / s_n),
                            kl="{:.2f}".format(s_kl / s_n), beta="{:.3g}".format(beta), refresh=False)
    bar.close()
    run.acc["time"] += time.time() - t_start


def _train_step(run, idx):
    """One optimiser step on the examples ``idx``; sums over all ranks of (recon, kl, loss, count) and beta.
    A non-finite loss skips the update (the caller stops)."""
    x = run.train_x[idx]
    if run.augment is not None:
        x = run.augment(x)
    y = F.one_hot(run.train_y[idx], run.data.num_classes).float() if run.model.conditional else None
    beta = _beta(run, run.global_step)
    factor = lr_factor(run.opts["lr_schedule"], run.global_step, run.total_steps)
    for group, base in zip(run.optimizer.param_groups, run.base_lrs):
        group["lr"] = base * factor
    with torch.autocast(run.device.type, dtype=torch.float16, enabled=run.use_amp):
        terms = run.objective(x, y, idx)
    recon = terms["recon"].float().mean()
    kl = terms["kl"].float().sum(1).mean()
    loss = recon + beta * kl_term(terms["kl"].float(), run.free_bits) + terms["reg"].float().mean()
    n = float(len(idx))
    stats = _sum_ranks(torch.stack([recon.detach() * n, kl.detach() * n, loss.detach() * n,
                                    torch.tensor(n, device=run.device)]), run.world)
    s_recon, s_kl, s_loss, s_n = stats.tolist()
    if all(math.isfinite(v) for v in (s_recon, s_kl, s_loss)):
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
    return s_recon, s_kl, s_loss, s_n, beta


def _end_epoch(run):
    """Metrics and latent statistics of the finished epoch (rank 0), then a checkpoint."""
    run.epoch += 1
    if run.rank == 0:
        row, latent_stats = _evaluate(run.model, run.data, run.opts, run.device, batch=run.half.EVAL_BATCH)
        acc = run.acc
        count = max(acc["count"], 1.0)
        row.update(epoch=run.epoch, train_loss=(acc["recon"] + acc["kl"]) / count, train_recon=acc["recon"] / count,
                   train_kl=acc["kl"] / count, lr=run.optimizer.param_groups[0]["lr"], time_s=round(acc["time"], 3),
                   beta=_beta(run, run.global_step - 1))
        rundir.append_metrics(run.run_dir, row)
        rundir.append_latent_stats(run.run_dir, dict(epoch=run.epoch, **latent_stats))
        if run.show:
            _say(_summary(row, run.opts))
            run.half.watch_latents(run, row, latent_stats)
    run.step, run.acc = 0, _new_accumulators()
    _checkpoint(run)


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
    """Test-set metrics (models with an encoder) or latent-table statistics (auto-decoders); returns
    (metrics row, latent stats)."""
    row = {}
    was_training = model.training
    model.eval()
    try:
        if model.has_encoder:
            mu, kl, sigma = _encoder_statistics(model, data, opts, device, batch, row)
        else:
            mu, kl, sigma = model.table_statistics()
    finally:
        model.train(was_training)
    if len(mu) > 1:
        row["active_units"], var = active_units(mu)
    else:
        row["active_units"], var = 0, [0.0] * mu.shape[1]
    stats = {"mu_mean": mu.mean(0).tolist(), "mu_std": [math.sqrt(v) for v in var]}
    if sigma is not None:
        stats["sigma_mean"] = sigma.mean(0).tolist()
    stats["kl_per_dim"] = kl.mean(0).tolist()
    return row, stats


def _encoder_statistics(model, data, opts, device, batch, row):
    """(means, KL per dimension, posterior std) over the test split through the encoder, with fixed
    evaluation noise that leaves the training RNG stream untouched; test losses go into ``row``."""
    x_all, y_all = (data.test_x, data.test_y) if len(data.test_x) else (data.train_x, data.train_y)
    recon, kls, mus, logvars = [], [], [], []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(opts["seed"])
        for i in range(0, len(x_all), batch):
            x = x_all[i:i + batch].to(device)
            y = F.one_hot(y_all[i:i + batch], data.num_classes).float().to(device) if model.conditional else None
            t = model.terms(x, y)
            recon.append(t["recon"].float().cpu())
            kls.append(t["kl"].float().cpu())
            mus.append(t["mu"].float().cpu())
            logvars.append(t["logvar"].float().cpu())
    recon, kl = torch.cat(recon), torch.cat(kls)
    if len(data.test_x):
        row.update(test_loss=float((recon + kl.sum(1)).mean()), test_recon=float(recon.mean()),
                   test_kl=float(kl.sum(1).mean()))
    return torch.cat(mus), kl, torch.exp(0.5 * torch.cat(logvars))


def _summary(row, opts):
    test = "  test {:.2f} (recon {:.2f}, kl {:.2f})".format(row["test_loss"], row["test_recon"], row["test_kl"]) \
        if "test_loss" in row else ""
    return "epoch {:>3}/{}  train {:.2f} (recon {:.2f}, kl {:.2f}){}  beta {:.3g}  active {}/{}  {:.1f}s".format(
        row["epoch"], opts["epochs"], row["train_loss"], row["train_recon"], row["train_kl"], test, row["beta"],
        row["active_units"], opts["latent_dim"], row["time_s"])


# ---- options and run directories ---------------------------------------------------------------------

def _check_labels(data):
    for split, y in (("training", data.train_y), ("test", data.test_y)):
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= data.num_classes):
            bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
            raise JetgenError("The {} split of {} has label {}, out of range for its {} classes ({}); fix the labels."
                              .format(split, data.name, bad, data.num_classes, ", ".join(data.classes[:10])))


def _check_new_run_dir(run_dir, force):
    if not os.path.exists(run_dir):
        return
    if not os.path.isdir(run_dir):
        raise JetgenError("{} exists and is not a directory; choose another --out.".format(run_dir))
    clean_stale(run_dir)  # temporaries of a run killed before its first file count as nothing
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


def _kept(run_dir):
    meta_path = os.path.join(run_dir, rundir.CHECKPOINT_DIR, "meta.json")
    if os.path.isfile(meta_path):
        return " The last good checkpoint (epoch {}) in {} is untouched.".format(
            rundir.read_meta(run_dir)["epoch"], run_dir)
    return " No checkpoint was written."


def _half(opts):
    """The training part of the run's modality (jetgen/modalities/<modality>/train.py)."""
    return modalities.part(run_config.run_modality(opts), "train")


def _new_accumulators():
    return {"recon": 0.0, "kl": 0.0, "objective": 0.0, "count": 0.0, "time": 0.0}


def _progress(total, initial, epoch, epochs, disable):
    return tqdm(total=total, initial=initial, desc="epoch {}/{}".format(epoch + 1, epochs), leave=False,
                disable=disable or not sys.stderr.isatty(), dynamic_ncols=True)


def _say(message):
    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()


# ---- RNG state -------------------------------------------------------------------------------------------

def _get_rng(world):
    state = {"rng_cpu": torch.get_rng_state(),
             "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    if world > 1:
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
    """The first SIGINT or SIGTERM (what a service manager or job scheduler sends) only sets a flag the
    loop checks between steps (so a checkpoint is never taken half-way through an optimiser step); a
    second one interrupts at once. ``signum``: the first signal caught."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self.signum = signal.SIGINT
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested, self.signum = True, signum

    def __enter__(self):
        try:
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
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
        dist.barrier()


def _sum_ranks(tensor, world):
    if world > 1:
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
    checksums = [None] * world
    dist.all_gather_object(checksums, parameter_checksum(model))
    if rank == 0:
        atomic_write_json(os.path.join(run_dir, "ddp.json"), {
            "world_size": world, "backend": dist.get_backend(), "checksums": checksums,
            "identical": len(set(checksums)) == 1})
