"""A training run's options: the defaults in one place, and the one set of rules that checks them.

The same rules check what the command line passes, what ``train()`` is given from Python, and what
a stored ``RUN/config.json`` says when a run is resumed, evaluated or exported, so a hand-edited or
foreign run directory is refused with a sentence instead of failing later. ``None`` for
``batch_size``, ``lr`` and ``epochs`` means "choose from the data set's size" (:func:`choose_schedule`).
"""
import math

from jetgen import modalities, spec
from jetgen.errors import JetgenError
from jetgen.models import MODEL_KINDS, kind_class
from jetgen.models.likelihoods import LIKELIHOODS
from jetgen.train.schedules import KL_SCHEDULES, LR_SCHEDULES

DEFAULTS = {
    # model (what jetgen.models.build_model reads, plus the data-derived keys added by train)
    "model": "vae", "arch": None, "latent_dim": None, "hidden": None, "channels": [512, 256, 128],
    "family": "gaussian", "likelihood": "bernoulli", "sigma": 0.1, "code_reg": 1e-4,
    # objective
    "beta": None, "kl_schedule": "constant", "warmup_delay": 0, "warmup_steps": 1000, "cycles": 4,
    "cycle_ratio": 0.5, "free_bits": 0.5,
    # optimisation (None: chosen from the data set's size)
    "epochs": None, "batch_size": None, "lr": None, "lr_schedule": None, "latent_lr": 1e-2, "seed": 0,
    # data
    "data": None, "data_dir": None, "download": False, "image_size": 28,
    # 3D shapes (atlasnet): model, data set size, and the run whose weights start this one
    "variant": "vae", "patches": 16, "grid": 8, "layers": 2, "train_points": 512, "encoder_points": 512,
    "points": 2500, "shape_classes": None, "shapes_per_class": 300, "test_shapes_per_class": 80, "init_from": None,
    "passes": None, "augment": None,  # passes over the data per epoch; augmentation on/off (None: from the size)
    # running
    "device": "auto", "amp": True, "quiet": False,
}
# options a resumed run may change; everything else must match the stored config
RESUME_OVERRIDES = ("epochs", "device", "amp", "quiet")
DEFAULT_LATENT_DIM = {"mlp": 10, "conv": 32, "dcgan": 32, "atlasnet": 128}
# defaults that depend on the kind of model (None in DEFAULTS): the image kinds share one set. The
# atlasnet schedule (epochs, batch, lr, passes) is chosen from the data set's size
# (jetgen.train.shape_training.fill_shape_schedule, measured in docs/shapes.md).
# per-modality defaults (DEFAULTS) and options that only one modality's models take (OPTIONS: given with
# another modality's model, a value other than the default, they are refused) live in each modality's train
# part (jetgen/modalities/<modality>/train.py)
RUN_ONLY_KEYS = ("out", "force")  # how to run, not what the run is: not stored in config.json
DEVICES = ("auto", "cpu", "cuda")
# keys train() adds from the data; a stored config must have them
DATA_KEYS = ("image_shape", "num_classes", "num_train")
INIT_FROM_KEYS = ("run", "checkpoint_sha256", "loaded", "partial", "skipped", "new")

# Batch size and learning rate by data-set size: the largest batch that still gives at least
# MIN_STEPS_PER_EPOCH optimiser steps per epoch, and the learning rate measured to suit that batch
# (digits, 1,500 images: batch 32 at 3e-3; MNIST, 60,000: batch 128 at 1e-3, pytorch/examples').
SCHEDULES = ((128, 1e-3), (64, 2e-3), (32, 3e-3))
MIN_STEPS_PER_EPOCH = 100
MIN_TOTAL_STEPS = 1500  # epochs: enough for this many steps, at least MIN_EPOCHS, at most MAX_EPOCHS
MIN_EPOCHS, MAX_EPOCHS = 20, 100


def flag(key):
    return "--" + key.replace("_", "-")


def choose_schedule(n_train, world=1):
    """(batch_size, lr, epochs, why) for ``n_train`` training images shared by ``world`` processes."""
    per_process = max(1, n_train // max(1, world))
    batch, lr = SCHEDULES[-1]
    for size, rate in SCHEDULES:
        if per_process / float(size) >= MIN_STEPS_PER_EPOCH:
            batch, lr = size, rate
            break
    steps = int(math.ceil(per_process / float(batch)))
    epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, int(math.ceil(MIN_TOTAL_STEPS / float(steps)))))
    why = ("{} training images: batch {} gives {} steps per epoch{}, and {} epochs give {} steps in all".format(
        n_train, batch, steps, "" if steps >= MIN_STEPS_PER_EPOCH else " (the smallest batch offered)",
        epochs, epochs * steps))
    return batch, lr, epochs, why


def fill_schedule(opts, n_train, world=1):
    """Put the chosen batch size, lr and epochs into ``opts`` where they are None; return a sentence
    saying what was chosen and why (None when the user gave all three)."""
    auto = [k for k in ("batch_size", "lr", "epochs") if opts.get(k) is None]
    if not auto:
        return None
    batch, lr, epochs, why = choose_schedule(n_train, world)
    chosen = {"batch_size": batch, "lr": lr, "epochs": epochs}
    for key in auto:
        opts[key] = chosen[key]
    opts["auto_schedule"] = auto
    return "Chose {} from the data ({}); pass them to override.".format(
        ", ".join("{} {:g}".format(flag(k), chosen[k]) for k in auto), why)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def int_list(value, key):
    """[500, 500] from "500,500", [500, 500] or ("500", "500"); JetgenError for anything else."""
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    items = list(value) if isinstance(value, (list, tuple)) else []
    out = [int(v) if isinstance(v, str) and v.isdigit() else v for v in items]
    if not out or not all(_is_int(v) and v >= 1 for v in out):
        raise JetgenError("{} takes comma-separated positive whole numbers (e.g. 500,500), got {!r}.".format(
            flag(key), value))
    return out


def validate(o, where="the options"):
    """Fill derived defaults into ``o`` (a dict holding every DEFAULTS key) and raise JetgenError with a
    sentence for the first bad value. ``where`` names the source in messages (a config file)."""

    def choice(key, allowed):
        if o[key] not in allowed:
            raise JetgenError("Unknown {} {!r} ({}); choose one of: {}.".format(
                flag(key), o[key], where, ", ".join(allowed)))

    choice("model", MODEL_KINDS)
    modality = spec.kind_modality(o["model"])
    half = modalities.part(modality, "train")
    _check_sides(o, modality, where)
    for key, value in half.DEFAULTS.items():
        if o[key] is None:
            o[key] = value
    cls = kind_class(o["model"])
    if not half.TAKES_ARCH and o["arch"] not in (None,) + cls.archs:
        raise JetgenError("--arch {} applies only to image (vae, cvae, ad, vad) models, not to {} ({}); drop it.".format(
            o["arch"], o["model"], where))
    o["arch"] = o["arch"] or cls.archs[0]
    if o["arch"] not in cls.archs:
        raise JetgenError("--arch {} does not fit model {} ({}); choose one of: {}.".format(
            o["arch"], o["model"], where, ", ".join(cls.archs)))
    data_modality = modalities.of_data(o["data"])
    if data_modality is not None and data_modality != modality:
        raise JetgenError(half.WRONG_DATA.format(model=o["model"], data=o["data"], where=where,
                                                 choices=", ".join(half.DATASETS)))
    choice("data", modalities.datasets())
    choice("likelihood", LIKELIHOODS)
    choice("kl_schedule", KL_SCHEDULES)
    choice("lr_schedule", LR_SCHEDULES)
    choice("device", DEVICES)
    if o["family"] not in cls.families:
        takers = [k for k in MODEL_KINDS if o["family"] in kind_class(k).families]
        raise JetgenError("--family {} applies only to the {} model; {} uses a {} latent ({}).".format(
            o["family"], " and ".join(takers) or "no", o["model"], " or ".join(cls.families), where))
    if o["latent_dim"] is None:
        o["latent_dim"] = DEFAULT_LATENT_DIM[o["arch"]]
    half.validate(o, where)
    o["channels"] = int_list(o["channels"], "channels")
    if len(o["channels"]) != 3:
        raise JetgenError("--channels takes three comma-separated numbers (e.g. 512,256,128), got {}.".format(
            ",".join(map(str, o["channels"]))))
    for key in ("latent_dim", "epochs", "batch_size", "image_size", "cycles"):
        if o[key] is not None and (not _is_int(o[key]) or o[key] < 1):
            raise JetgenError("{} must be a whole number of at least 1, got {!r} ({}).".format(flag(key), o[key], where))
    for key in ("warmup_delay", "warmup_steps", "seed"):
        if not _is_int(o[key]) or o[key] < 0:
            raise JetgenError("{} must be a whole number of at least 0, got {!r} ({}).".format(flag(key), o[key], where))
    for key in ("lr", "latent_lr", "sigma"):
        if o[key] is not None and not (_is_number(o[key]) and o[key] > 0):
            raise JetgenError("{} must be a positive number, got {!r} ({}).".format(flag(key), o[key], where))
    for key in ("beta", "free_bits", "code_reg"):
        if not (_is_number(o[key]) and o[key] >= 0):
            raise JetgenError("{} must be a number of at least 0, got {!r} ({}).".format(flag(key), o[key], where))
    if not (_is_number(o["cycle_ratio"]) and 0 < o["cycle_ratio"] <= 1):
        raise JetgenError("--cycle-ratio must be in (0, 1], got {!r}.".format(o["cycle_ratio"]))
    if o["data"] in ("mnist", "fashion-mnist", "kmnist") and o["image_size"] != 28:
        raise JetgenError("--image-size applies to the digits and folder data sets; {} images are 28x28.".format(
            o["data"]))
    if o["data_dir"] is not None and o["data"] in ("digits", "shapes"):
        raise JetgenError("The {} data set is built in and takes no --data-dir; pass --data {} to read from {}.".format(
            o["data"], "meshes or points" if o["data"] == "shapes" else "mnist, fashion-mnist, kmnist or folder",
            o["data_dir"]))
    return o


def _check_sides(o, modality, where):
    """Refuse an option another modality's models own (image options with atlasnet, 3D options with an
    image model): each modality's train part lists its OPTIONS."""
    for other in modalities.names():
        if other == modality:
            continue
        owner = modalities.part(other, "train")
        for key in owner.OPTIONS:
            if normalise(key, o[key]) != normalise(key, DEFAULTS[key]):
                raise JetgenError("{} applies only to {} models, not to {} ({}); drop it.".format(
                    flag(key), owner.OWNER, o["model"], where))


def _validate_shapes(o, where):
    """The atlasnet options: ``hidden`` one whole number, sizes, the procedural classes, init_from."""
    from jetgen.train.shapes import SHAPE_CLASSES

    hidden = o["hidden"]
    if isinstance(hidden, (list, tuple)) and len(hidden) == 1:
        hidden = hidden[0]
    if isinstance(hidden, str) and hidden.strip().isdigit():
        hidden = int(hidden)
    if not _is_int(hidden) or hidden < 1:
        raise JetgenError("--hidden takes one whole number for atlasnet (the width of every layer, e.g. 256), got "
                          "{!r} ({}).".format(o["hidden"], where))
    o["hidden"] = hidden
    if o["variant"] not in ("ae", "vae"):
        raise JetgenError("Unknown --variant {!r} ({}); choose ae or vae.".format(o["variant"], where))
    for key, low in (("patches", 1), ("grid", 2), ("layers", 1), ("train_points", 1), ("encoder_points", 1),
                     ("points", 16), ("shapes_per_class", 1), ("test_shapes_per_class", 0)):
        if not _is_int(o[key]) or o[key] < low:
            raise JetgenError("{} must be a whole number of at least {}, got {!r} ({}).".format(
                flag(key), low, o[key], where))
    if o["shape_classes"] is not None:
        names = o["shape_classes"]
        if isinstance(names, str):
            names = [n for n in names.replace(" ", "").split(",") if n]
        if not isinstance(names, list) or not names or any(n not in SHAPE_CLASSES for n in names) or \
                len(set(names)) != len(names):
            raise JetgenError("--shape-classes takes distinct names from {}, comma-separated; got {!r} ({}).".format(
                ",".join(SHAPE_CLASSES), o["shape_classes"], where))
        o["shape_classes"] = names
    _validate_shape_schedule(o, where)
    ref = o["init_from"]
    if ref is not None and not (isinstance(ref, str) and ref) and not (
            isinstance(ref, dict) and all(k in ref for k in INIT_FROM_KEYS) and isinstance(ref["run"], str)):
        raise JetgenError("init_from must name a run directory, or be the record training writes ({}); got {!r} "
                          "({}).".format(", ".join(INIT_FROM_KEYS), ref, where))


def _validate_shape_schedule(o, where):
    """``passes`` (None or a whole number >= 1) and ``augment`` (None, true or false) of an atlasnet run."""
    if o["passes"] is not None and (not _is_int(o["passes"]) or o["passes"] < 1):
        raise JetgenError("--passes must be a whole number of at least 1, got {!r} ({}).".format(o["passes"], where))
    if o["augment"] not in (None, True, False):
        raise JetgenError("augment must be true, false or null, got {!r} ({}).".format(o["augment"], where))


def run_modality(config):
    """The modality of a run's (checked) options or config.json: its stored ``modality``, or for a run
    trained before that key was stored, the one its model kind implies."""
    return config.get("modality") or spec.kind_modality(config["model"])


def check_stored(config, path):
    """Validate a config read from ``path`` (config.json): every option by the same rules as the command
    line, and the data-derived keys a model is built from. Returns it with defaults filled in."""
    if not isinstance(config, dict):
        raise JetgenError("{} does not hold a run configuration.".format(path))
    opts = dict(DEFAULTS, **config)
    validate(opts, path)
    if "modality" in opts and opts["modality"] != spec.kind_modality(opts["model"]):
        raise JetgenError("{} says modality {!r} but its model {} belongs to the {} modality; it was edited by "
                          "hand: remove the modality key or train a new run.".format(
                              path, opts["modality"], opts["model"], spec.kind_modality(opts["model"])))
    shape = opts.get("image_shape")
    rank = modalities.part(run_modality(opts), "train").EXAMPLE_RANK  # (points, 3), (C, H, W)
    if not (isinstance(shape, list) and len(shape) == rank and all(_is_int(s) and s > 0 for s in shape)):
        raise JetgenError("{} lacks a valid image_shape ({} positive whole numbers); it was not written by "
                          "`jetgen train`.".format(path, rank))
    for key in ("num_classes", "num_train"):
        if not _is_int(opts.get(key)) or opts[key] < (1 if key == "num_train" else 0):
            raise JetgenError("{} lacks a valid {}; it was not written by `jetgen train`.".format(path, key))
    return opts


def normalise(key, value):
    if key in ("hidden", "channels", "shape_classes") and isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    if key in ("hidden", "channels") and value is not None:
        value = [int(v) if isinstance(v, str) and v.isdigit() else v for v in
                 (value if isinstance(value, (list, tuple)) else [value])]
    if isinstance(value, tuple):
        return list(value)
    return value


def resume_options(stored, overrides, run_dir):
    """The options of a resumed run: the stored ones (already checked), with ``overrides`` where they may
    change (RESUME_OVERRIDES); JetgenError when the user asks to change anything else."""
    opts = dict(stored)
    opts.pop("format_version", None)
    for key, value in overrides.items():
        if key in RUN_ONLY_KEYS or value is None:
            continue
        if key in RESUME_OVERRIDES:
            opts[key] = value
        elif key in stored and normalise(key, stored[key]) != normalise(key, value):
            raise JetgenError("{} cannot change when resuming (run {} used {!r}, not {!r}); start a new run with "
                              "--out instead.".format(flag(key), run_dir, stored[key], value))
    for key in ("batch_size", "lr"):
        if opts[key] is None:
            raise JetgenError("Run {} records no {}; it was not written by `jetgen train` and cannot be "
                              "resumed.".format(run_dir, flag(key)))
    if not _is_int(opts["epochs"]) or opts["epochs"] < 1:
        raise JetgenError("--epochs must be a whole number of at least 1, got {!r}.".format(opts["epochs"]))
    if opts["device"] not in DEVICES:
        raise JetgenError("Unknown --device {!r}; choose one of: {}.".format(opts["device"], ", ".join(DEVICES)))
    return opts
