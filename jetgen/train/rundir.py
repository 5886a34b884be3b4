"""The run directory: what training writes and what eval and export read.

    RUN/
      config.json            format_version, model config (see jetgen.models.build_model), training options
      metrics.csv            one row per finished epoch
      checkpoint/            the last good checkpoint, replaced atomically as a whole directory
        model.safetensors    weights (no pickle)
        train_state.pt       optimiser, schedule, RNG and data-order state (torch.load(weights_only=True))
        meta.json            format_version, epoch, step in epoch, global step, sha256 of model.safetensors
      latent_stats.jsonl     one JSON line per epoch: epoch, mu_mean, mu_std, sigma_mean (Gaussian posteriors
                             only), kl_per_dim, each a list of latent_dim floats (see jetgen.train.trainer)
      ddp.json               distributed runs only: world_size, backend, per-rank parameter checksums, identical
      latent_prior.json      atlasnet runs: the latent density fitted after training, {"family": "gmm", "params"}
                             as jetgen.runtime.gmm.GaussianMixturePrior.from_spec reads it

config.json holds a ``run_id`` (random, made when the run starts) that every checkpoint's meta.json
repeats, so a checkpoint copied in from another run is refused rather than silently loaded. meta.json
also holds ``config_sha256``, the digest of config.json (less what a resume may change), so a
config.json edited after training (a likelihood changed from bernoulli to gaussian) is refused with
a sentence instead of exporting a bundle that no longer matches its weights; runs written before
this digest existed still load. Keys that no jetgen writes are refused (a typo is not ignored).
      plots/                 PNG pictures written by training and eval
"""
import csv
import hashlib
import json
import os

import torch
from safetensors.torch import load_file, save_file

from jetgen import __version__
from jetgen.atomic import AtomicDirectory, atomic_write_json, atomic_write_text, recover
from jetgen.digest import sha256_file  # noqa: F401  (re-exported for callers of this module)
from jetgen.errors import JetgenError
from jetgen.models import build_model
from jetgen.train.config import DATA_KEYS, DEFAULTS, RESUME_OVERRIDES, check_stored

RUN_FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoint"
LATENT_STATS = "latent_stats.jsonl"
LATENT_PRIOR = "latent_prior.json"
# what train() stores in config.json beyond the options (DEFAULTS) and the data-derived keys (DATA_KEYS)
# (modality: the model kind's, jetgen.spec.MODALITIES; runs trained before it was stored lack it and are read
# as their kind implies, jetgen.train.config.run_modality)
STORED_KEYS = ("format_version", "run_id", "classes", "jetgen_version", "torch_version", "auto_schedule", "modality")


def write_config(run_dir, config):
    config = dict(config, format_version=RUN_FORMAT_VERSION)
    atomic_write_json(os.path.join(run_dir, "config.json"), config)
    return config


def read_config(run_dir):
    """Read and validate ``RUN/config.json`` (jetgen.train.config's rules, defaults filled in);
    JetgenError when missing, corrupt, of another version or holding a value training would refuse."""
    if not os.path.isdir(run_dir):
        raise JetgenError("Run directory {} does not exist; train one with `jetgen train`.".format(run_dir))
    path = os.path.join(run_dir, "config.json")
    try:
        with open(path) as handle:
            config = json.load(handle)
    except FileNotFoundError:
        raise JetgenError("{} is not a jetgen run directory: it has no config.json.".format(run_dir))
    except (ValueError, OSError) as err:
        raise JetgenError("{} is corrupt ({}); the run cannot be read.".format(path, err))
    if not isinstance(config, dict):
        raise JetgenError("{} does not hold a run configuration.".format(path))
    version = config.get("format_version")
    if version != RUN_FORMAT_VERSION:
        raise JetgenError("{} was written in run format version {} but this jetgen ({}) reads version {}; use "
                          "the jetgen version that trained it, or retrain.".format(
                              run_dir, version, __version__, RUN_FORMAT_VERSION))

    unknown = sorted(k for k in config if k not in DEFAULTS and k not in DATA_KEYS and k not in STORED_KEYS)
    if unknown:
        raise JetgenError("{} holds {} that no jetgen writes ({}); it was edited by hand: remove {} or train a new "
                          "run.".format(path, "a key" if len(unknown) == 1 else "keys", ", ".join(map(str, unknown))[:200],
                                        "it" if len(unknown) == 1 else "them"))
    return check_stored(config, path)


def config_digest(run_dir):
    """sha256 of RUN/config.json as stored, less the options a resume may change (RESUME_OVERRIDES)."""
    path = os.path.join(run_dir, "config.json")
    try:
        with open(path) as handle:
            config = json.load(handle)
    except (OSError, ValueError) as err:
        raise JetgenError("{} cannot be read ({}); the run cannot be used.".format(path, err))
    if not isinstance(config, dict):
        raise JetgenError("{} does not hold a run configuration.".format(path))
    kept = dict((k, v) for k, v in config.items() if k not in RESUME_OVERRIDES)
    return hashlib.sha256(json.dumps(kept, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def has_checkpoint(run_dir):
    recover(os.path.join(run_dir, CHECKPOINT_DIR))  # a kill mid-swap leaves the last complete copy beside it
    return os.path.isfile(os.path.join(run_dir, CHECKPOINT_DIR, "meta.json"))


def save_checkpoint(run_dir, model, train_state, meta):
    """Write model weights, training state and meta as one atomic directory swap.

    ``model`` is an nn.Module (unwrapped from DDP); ``train_state`` a dict of tensors and plain values;
    ``meta`` a JSON-able dict (epoch, step, global_step, ...).
    """

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with AtomicDirectory(os.path.join(run_dir, CHECKPOINT_DIR), force=True) as tmp:
        weights = os.path.join(tmp, "model.safetensors")
        save_file(state, weights)
        torch.save(train_state, os.path.join(tmp, "train_state.pt"))
        meta = dict(meta, format_version=RUN_FORMAT_VERSION, model_sha256=sha256_file(weights),
                    config_sha256=config_digest(run_dir))
        atomic_write_json(os.path.join(tmp, "meta.json"), meta)
    return meta


def read_meta(run_dir):
    path = os.path.join(run_dir, CHECKPOINT_DIR, "meta.json")
    recover(os.path.join(run_dir, CHECKPOINT_DIR))  # a kill mid-swap leaves the last complete copy beside it
    try:
        with open(path) as handle:
            meta = json.load(handle)
    except FileNotFoundError:
        raise JetgenError("{} has no checkpoint yet (no {}); train it first.".format(run_dir, path))
    except (ValueError, OSError) as err:
        raise JetgenError("Checkpoint metadata {} is corrupt ({}).".format(path, err))
    if not isinstance(meta, dict):
        raise JetgenError("Checkpoint metadata {} is not a JSON object; the checkpoint is damaged.".format(path))
    if meta.get("format_version") != RUN_FORMAT_VERSION:
        raise JetgenError("The checkpoint in {} has format version {}; this jetgen reads version {}.".format(
            run_dir, meta.get("format_version"), RUN_FORMAT_VERSION))
    for key in ("epoch", "step", "global_step"):
        if isinstance(meta.get(key), bool) or not isinstance(meta.get(key), int) or meta[key] < 0:
            raise JetgenError("Checkpoint metadata {} has no valid {} ({!r}); the checkpoint is damaged.".format(
                path, key, meta.get(key)))
    return meta


def check_owner(run_dir, config, meta):
    """JetgenError when the checkpoint's meta.json names another run than ``config`` (its run_id): a
    checkpoint copied in from elsewhere is never loaded. Runs written before run ids pass."""
    own, theirs = config.get("run_id") if config else None, meta.get("run_id")
    if own is not None and theirs != own:
        raise JetgenError("The checkpoint in {} belongs to another run (run id {} in its meta.json, {} in "
                          "config.json); it was copied in from elsewhere, so it is not loaded: remove {}/{} or "
                          "train again with --force.".format(run_dir, theirs, own, run_dir, CHECKPOINT_DIR))
    stored = meta.get("config_sha256")
    if config is not None and stored is not None and stored != config_digest(run_dir):
        raise JetgenError("{}/config.json changed after the checkpoint was saved (its digest differs from the one in "
                          "{}/meta.json), so the weights no longer match it: restore the config.json that trained "
                          "the run, or train a new run with the options you want.".format(run_dir, CHECKPOINT_DIR))


def read_weights(run_dir, meta=None, config=None):
    """The checkpoint's state dict (tensors by name), after checking its sha256 and that it belongs to
    the run (``check_owner`` with ``config``); returns (state, meta)."""
    meta = meta or read_meta(run_dir)
    check_owner(run_dir, config, meta)
    path = os.path.join(run_dir, CHECKPOINT_DIR, "model.safetensors")
    if not os.path.isfile(path):
        raise JetgenError("The checkpoint in {} has no model.safetensors.".format(run_dir))
    if sha256_file(path) != meta.get("model_sha256"):
        raise JetgenError("{} does not match the hash in its meta.json: the checkpoint is corrupt or was "
                          "changed.".format(path))
    try:
        return load_file(path), meta
    except Exception as err:  # safetensors raises several types for a bad file
        raise JetgenError("Cannot load weights from {}: {}.".format(path, err))


def load_weights(run_dir, model, meta=None, config=None):
    """Load the checkpoint's weights into ``model`` after checking the file's sha256 and, with the run's
    ``config``, that the checkpoint belongs to it (``check_owner``)."""

    state, meta = read_weights(run_dir, meta, config)
    try:
        model.load_state_dict(state)
    except Exception as err:  # torch raises several types for a state dict that does not fit
        raise JetgenError("Cannot load weights from {}/{}: {}.".format(run_dir, CHECKPOINT_DIR, err))
    return meta


TRAIN_STATE_KEYS = ("optimizer", "scaler", "epoch", "step", "global_step", "accum", "rng_cpu")


def load_train_state(run_dir, meta=None):
    """The optimiser, schedule and RNG state of the checkpoint, checked against its meta.json (a
    train_state.pt copied from another run, or missing a key, is refused)."""

    path = os.path.join(run_dir, CHECKPOINT_DIR, "train_state.pt")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise JetgenError("The checkpoint in {} has no train_state.pt; it cannot be resumed.".format(run_dir))
    except Exception as err:
        raise JetgenError("Cannot read {} ({}); the checkpoint is corrupt.".format(path, err))
    missing = [k for k in TRAIN_STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise JetgenError("{} lacks {}; it is not a jetgen training state, so the run cannot be resumed.".format(
            path, ", ".join(missing)))
    meta = meta or read_meta(run_dir)
    if any(state[k] != meta[k] for k in ("epoch", "step", "global_step")):
        raise JetgenError("{} is at epoch {} step {} but the checkpoint's meta.json says epoch {} step {}: the "
                          "files come from different checkpoints, so the run cannot be resumed.".format(
                              path, state["epoch"], state["step"], meta["epoch"], meta["step"]))
    return state


class Run:
    """A trained run loaded for evaluation or export."""

    def __init__(self, path, config, model, meta):
        self.path, self.config, self.model, self.meta = path, config, model, meta

    @property
    def checkpoint_sha256(self):
        return self.meta["model_sha256"]

    def metrics(self):
        return read_metrics(self.path)


def load_run(run_dir):
    """Read config and checkpoint of a run and return a ``Run`` with the model in eval mode on CPU."""

    config = read_config(run_dir)
    meta = read_meta(run_dir)
    try:
        model = build_model(config)
    except (KeyError, ValueError) as err:
        raise JetgenError("{}/config.json does not describe a model this jetgen can build: {}.".format(run_dir, err))
    load_weights(run_dir, model, meta, config)
    model.eval()
    return Run(run_dir, config, model, meta)


def save_latent_prior(run_dir, spec):
    """Write the fitted latent density ({"family": "gmm", "params": {...}}) as RUN/latent_prior.json."""
    atomic_write_json(os.path.join(run_dir, LATENT_PRIOR), spec)


def load_latent_prior(run_dir):
    """The density in RUN/latent_prior.json as a ``GaussianMixturePrior``, or None when the run has none;
    JetgenError when the file is corrupt or not a mixture description."""
    from jetgen.runtime.gmm import GaussianMixturePrior

    path = os.path.join(run_dir, LATENT_PRIOR)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as handle:
            spec = json.load(handle)
    except (ValueError, OSError) as err:
        raise JetgenError("{} is corrupt ({}); train the run again to refit it.".format(path, err))
    return GaussianMixturePrior.from_spec(spec)


METRIC_FIELDS = ("epoch", "train_loss", "train_recon", "train_kl", "test_loss", "test_recon", "test_kl",
                 "beta", "active_units", "lr", "time_s")


def append_metrics(run_dir, row, fields=METRIC_FIELDS):
    """Rewrite metrics.csv atomically with ``row`` appended (rows after row['epoch'] are dropped,
    so a resumed run never duplicates an epoch)."""
    rows = [r for r in read_metrics(run_dir) if int(float(r["epoch"])) < int(row["epoch"])]
    rows.append({k: row.get(k, "") for k in fields})
    lines = [",".join(fields)] + [",".join(_fmt(r.get(k, "")) for k in fields) for r in rows]
    atomic_write_text(os.path.join(run_dir, "metrics.csv"), "\n".join(lines) + "\n")


def _fmt(value):
    if isinstance(value, float):
        return "{:.6g}".format(value)
    return str(value)


def read_metrics(run_dir):
    path = os.path.join(run_dir, "metrics.csv")
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def append_latent_stats(run_dir, record):
    """Rewrite latent_stats.jsonl atomically with ``record`` appended (later epochs dropped, as metrics.csv)."""
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
