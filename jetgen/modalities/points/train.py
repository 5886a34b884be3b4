"""The point-cloud modality's training side (desktop, torch): the same names as every train part (see
jetgen/modalities/image/train.py's docstring), looked up by jetgen.train's generic code through
``jetgen.modalities.part("points", "train")``.
"""
import os

from jetgen.train import config as run_config, rundir
from jetgen.train import latent_gmm, shape_training
from jetgen.train.shapes import load_shape_dataset

DATASETS = ("shapes", "meshes", "points")  # 3D point clouds: jetgen.train.shapes
OPTIONS = ("variant", "patches", "grid", "layers", "train_points", "encoder_points", "points", "shape_classes",
           "shapes_per_class", "test_shapes_per_class", "init_from", "passes", "augment")
OWNER = "3D (atlasnet)"
DEFAULTS = {"data": "shapes", "hidden": 256, "beta": 0.01, "lr_schedule": "one-cycle"}
TAKES_ARCH = False
WRONG_DATA = ("The {model} model trains on 3D shapes; --data {data} is an image data set ({where}), choose one of: "
              "{choices}.")
EXAMPLE_RANK = 2  # (points, 3)
EXAMPLES = "shapes"
EVAL_BATCH = 64  # thousands of points per shape: smaller evaluation batches keep the memory bounded
SHOWN_SETTING = "variant"
SHAPE_FROM_CONFIG = True
validate = run_config._validate_shapes
choose_augmentation = shape_training.choose_augmentation


def load(config, log=None):
    """The 3D data set a run's options (or a stored config.json) name, with the run's points, classes and
    sizes; ``log`` hears of skipped files. JetgenError when it cannot be loaded."""
    return load_shape_dataset(config.get("data") or "shapes", config.get("data_dir"),
                              points=int(config.get("points", 2500)), seed=int(config.get("seed", 0)),
                              n_train=int(config.get("shapes_per_class", 300)),
                              n_test=int(config.get("test_shapes_per_class", 80)),
                              classes=config.get("shape_classes"), log=log)


def evaluate(run, data, max_shapes, pictures, out_dir, seed, phase, started):
    """``jetgen eval`` of a 3D run: jetgen.train.evaluate's shape evaluation (Chamfer, coverage, pictures)."""
    from jetgen.train.evaluate import _evaluate_shapes  # matplotlib and scikit-learn stay out of `train --help`

    return _evaluate_shapes(run, data, max_shapes, pictures, out_dir, seed, phase, started)


def fill_schedule(opts, data, world, build_model):
    """The automatic batch size, lr, epochs and passes per epoch, timed on a throw-away model built by
    ``build_model``; the sentence saying what was chosen, or None."""
    return shape_training.fill_shape_schedule(
        opts, len(data.train_x), world=world,
        probe=lambda batch: shape_training.step_seconds(build_model, opts, data.train_x, batch))


def watch_latents(run, row, latent_stats):
    """A loud line when no latent unit is active, from a quarter of the run on (the encoder needs some steps
    before its output depends on the input) and always at the end."""
    if 4 * run.epoch < run.opts["epochs"]:
        return
    line = shape_training.latent_warning(row["active_units"], run.opts["latent_dim"], latent_stats.get("kl_per_dim"),
                                         run.opts.get("variant", "vae"))
    if line:
        run.say(line)


def after_training(run):
    """The latent mixture on the training codes, as RUN/latent_prior.json (rank 0)."""
    spec = latent_gmm.fit_run_prior(run.model, run.data.train_x, seed=run.opts["seed"])
    if spec is not None:
        rundir.save_latent_prior(run.run_dir, spec)
        if run.show:
            run.say("Fitted the latent density ({} Gaussians, full covariance) on {} training codes: {}.".format(
                len(spec["params"]["weights"]), len(run.data.train_x),
                os.path.join(run.run_dir, rundir.LATENT_PRIOR)))
