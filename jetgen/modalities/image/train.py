"""The image modality's training side (desktop, torch): the data sets, option side, defaults and hooks that
jetgen.train's generic code (config, trainer, evaluate, data) looks up here through
``jetgen.modalities.part("image", "train")`` instead of asking "is this 3D".

Every train part has the same names: DATASETS (``--data`` names it loads), OPTIONS (options only its models
take; given to another modality's model they are refused), OWNER (how messages name its models), DEFAULTS
(option defaults for its models), TAKES_ARCH (whether ``--arch`` applies), WRONG_DATA (the sentence for
another modality's data set), EXAMPLE_RANK (the rank of one example: config.json's image_shape length),
EXAMPLES (what messages call the examples), EVAL_BATCH (evaluation batch size), SHOWN_SETTING (the option
the "Training ..." line names), SHAPE_FROM_CONFIG (evaluation checks the data's example shape against
config.json rather than the model) and the functions ``load``, ``validate``, ``fill_schedule``,
``choose_augmentation``, ``watch_latents``, ``after_training`` and ``evaluate`` (None: the generic code's own).
"""
from jetgen.train import config as run_config
from jetgen.train.data import DATASETS, load_dataset  # noqa: F401  (DATASETS: this part's data sets)

OPTIONS = ("image_size", "channels", "family", "likelihood", "sigma", "code_reg", "latent_lr", "download")
OWNER = "image (vae, cvae, ad, vad)"
DEFAULTS = {"data": "digits", "hidden": [500], "beta": 1.0, "lr_schedule": "constant"}
TAKES_ARCH = True
WRONG_DATA = "--data {data} holds 3D shapes, which only the atlasnet model takes ({where}); choose one of: {choices}."
EXAMPLE_RANK = 3  # (C, H, W)
EXAMPLES = "images"
EVAL_BATCH = 500
SHOWN_SETTING = "arch"
SHAPE_FROM_CONFIG = False
evaluate = None  # jetgen.train.evaluate's own image evaluation


def load(config, log=None):
    """The image data set a run's options (or a stored config.json) name; JetgenError when it cannot be loaded."""
    return load_dataset(config.get("data") or "digits", config.get("data_dir"), bool(config.get("download", False)),
                        int(config.get("image_size", 28)), seed=int(config.get("seed", 0)))


def validate(o, where):
    """The image options' own checks: ``hidden`` a list of widths."""
    o["hidden"] = run_config.int_list(o["hidden"], "hidden")


def fill_schedule(opts, data, world, build_model):
    """The automatic batch size, lr and epochs by data-set size; the sentence saying what was chosen, or None."""
    return run_config.fill_schedule(opts, len(data.train_x), world)


def choose_augmentation(opts, train_x):
    """No augmentation for images: (None, None)."""
    return None, None


def watch_latents(run, row, latent_stats):
    """Nothing: image runs report collapse in their metrics only."""


def after_training(run):
    """Nothing to fit after an image run."""
