"""Evaluate a trained run: numbers into ``RUN/eval.json``, pictures into ``RUN/plots/``.

What is computed per model kind (all NLLs in nats/image on the test split):

| key | vae / cvae | vad | ad |
|---|---|---|---|
| neg_elbo, recon, kl, kl_per_dim | encoder q | q fitted per test image by inference | recon only: NLL at the inferred z |
| iwae_nll (k = iw_samples) | encoder q | same fitted q (every family, exact log q) | - |
| active_units, latent_variance | encoder means | inferred means | inferred latents |
| recon_before, recon_after | - | squared-error sum at init / after inference | same |
| cond_accuracy, classifier_accuracy | cvae only | - | - |
| baseline_nll | factorised per-pixel model on the same split | same | same |

recon_before / recon_after are squared-error sums per image of the decoded mean image (see
``metrics.reconstruction_error`` for why not BCE). ``--out DIR`` puts eval.json and the pictures in DIR
and leaves the run directory untouched. The numbers carry the ``options`` that made them; options other
than the defaults write ``eval-k10.json`` (and the like) instead of ``eval.json``, so the default numbers
that ``jetgen export`` copies into a bundle are never replaced by a quicker evaluation.

3D shape runs (atlasnet) get their own numbers and pictures: ``jetgen.train.shape_eval``.
"""
import os
import time

import torch
import torch.nn.functional as F

from jetgen import modalities, spec
from jetgen.atomic import atomic_write_json, check_room
from jetgen.errors import JetgenError
from jetgen.models.inference import infer_latents, infer_params
from jetgen.train import metrics, plots
from jetgen.train.data import load_for_run
from jetgen.train.rundir import load_run, read_metrics

INFERENCE_STEPS = 100
INFERENCE_LR = 5e-2
INFERENCE_CHUNK = 500  # test images optimised together; independent problems, so only memory changes
EVAL_FILE = "eval.json"


def load_run_data(config):
    """The data set a run was trained on, from its config (data, data_dir, image_size, seed; for 3D
    shapes also points, classes and sizes)."""

    return load_for_run(dict(config, download=False))


# the options that change the numbers, their defaults, and the tag each adds to the file name
OPTION_TAGS = (("iw_samples", 100, "k"), ("seed", 0, "seed"), ("inference_steps", INFERENCE_STEPS, "steps"),
               ("inference_lr", INFERENCE_LR, "lr"), ("max_shapes", 240, "n"))


def eval_file_name(options):
    """``eval.json`` for the default options, else e.g. ``eval-k10.json`` or ``eval-k10-seed3.json``, so
    numbers made with other options never replace the default ones (which ``export`` copies)."""
    tags = ["{}{:g}".format(tag, options[key]) for key, default, tag in OPTION_TAGS
            if key in options and options[key] != default]
    return "eval{}.json".format("".join("-" + t for t in tags))


ROOM_NUMBERS = 64 * 1024         # bytes eval.json may take (a few kB)
ROOM_PICTURES = 2 * 1024 * 1024  # bytes the pictures may take (about 0.3 MB for an MNIST run)


class Phases(object):
    """Times the phases of an evaluation and tells ``report(name, seconds)`` when each starts
    (seconds None) and ends; ``report`` None stays silent."""

    def __init__(self, report=None):
        self.report = report or (lambda name, seconds: None)
        self.seconds = {}

    def __call__(self, name, func, *args, **kw):
        self.report(name, None)
        started = time.time()
        value = func(*args, **kw)
        self.seconds[name] = round(time.time() - started, 2)
        self.report(name, self.seconds[name])
        return value


def evaluate_run(run_dir, iw_samples=100, pictures=True, out_dir=None, seed=0,
                 inference_steps=INFERENCE_STEPS, inference_lr=INFERENCE_LR, progress=None, max_shapes=240):
    """Evaluate the run in ``run_dir`` on its test split and return the numbers as a dict.

    Writes the numbers, with the ``options`` that made them, to ``eval.json`` (default options) or a
    name that says which differ (``eval_file_name``), and with ``pictures`` PNG files; into ``out_dir``,
    else ``RUN/`` and ``RUN/plots/``, so with it the run directory is left untouched. The dict's
    ``pictures`` entry lists the PNG paths, ``phase_seconds`` the time of each phase.
    ``inference_steps`` / ``inference_lr`` drive test-time inference for ad and vad. ``progress(name,
    seconds)`` hears of each phase as it starts (seconds None) and ends. ``max_shapes`` caps the test
    shapes of a 3D run (``jetgen.train.shape_eval``). Raises JetgenError when the run, its checkpoint or
    its data cannot be used.
    """

    if iw_samples < 1:
        raise JetgenError("--iw-samples must be at least 1, got {}.".format(iw_samples))
    started = time.time()
    phase = Phases(progress)
    run, data = phase("loading the run and its data", _load, run_dir, load_run)
    # a full disk is found now, not after minutes of computing (the outputs' size, measured, rounded up)
    check_room(out_dir or run_dir, ROOM_NUMBERS)
    if pictures:
        check_room(out_dir or os.path.join(run_dir, "plots"), ROOM_PICTURES)
    half = modalities.part(spec.kind_modality(run.model.kind), "train")
    if half.evaluate is not None:  # the modality evaluates its own runs (3D shapes)
        return half.evaluate(run, data, int(max_shapes), pictures, out_dir, int(seed), phase, started)
    model, x = run.model, data.test_x
    options = {"iw_samples": int(iw_samples), "seed": int(seed)}
    if not model.has_encoder:
        options.update(inference_steps=int(inference_steps), inference_lr=float(inference_lr))
    result = {"model": model.kind, "latent_dim": model.latent_dim, "family": model.family.name,
              "likelihood": model.likelihood, "run": os.path.abspath(run_dir),
              "checkpoint_sha256": run.checkpoint_sha256, "epoch": run.meta.get("epoch"), "data": data.name,
              "test_images": int(len(x)), "iw_samples": int(iw_samples), "seed": int(seed), "options": options}
    result["baseline_nll"] = phase("per-pixel baseline", metrics.baseline_nll, data.train_x, x, model.likelihood,
                                   model.sigma)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        means, z_start, y = _numbers(run, data, options, result, phase)
        if pictures:
            out = out_dir or os.path.join(run_dir, "plots")
            result["pictures"] = phase("pictures", _pictures, run, data, x, data.test_y, y, means, z_start, out,
                                       seed)
    result["phase_seconds"] = phase.seconds
    result["eval_seconds"] = round(time.time() - started, 2)
    result["eval_file"] = os.path.abspath(os.path.join(out_dir or run_dir, eval_file_name(options)))
    atomic_write_json(result["eval_file"], result)
    return result


def _evaluate_shapes(run, data, max_shapes, pictures, out_dir, seed, phase, started):
    """``evaluate_run`` for a 3D shape run: the numbers of ``shape_eval.evaluate_shapes``, written as eval.json."""
    from jetgen.train.shape_eval import evaluate_shapes

    if max_shapes < 2:
        raise JetgenError("--max-shapes must be at least 2, got {}.".format(max_shapes))
    options = {"max_shapes": max_shapes, "seed": seed}
    model = run.model
    result = {"model": model.kind, "latent_dim": model.latent_dim, "family": model.family.name,
              "likelihood": model.likelihood, "run": os.path.abspath(run.path),
              "checkpoint_sha256": run.checkpoint_sha256, "epoch": run.meta.get("epoch"), "data": data.name,
              "seed": seed, "options": options}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        evaluate_shapes(run, data, options, result, phase,
                        (out_dir or os.path.join(run.path, "plots")) if pictures else None)
    result["phase_seconds"] = phase.seconds
    result["eval_seconds"] = round(time.time() - started, 2)
    result["eval_file"] = os.path.abspath(os.path.join(out_dir or run.path, eval_file_name(options)))
    atomic_write_json(result["eval_file"], result)
    return result


def _load(run_dir, load_run):
    run = load_run(run_dir)
    data = load_run_data(run.config)
    half = modalities.part(spec.kind_modality(run.model.kind), "train")
    expected = run.config["image_shape"] if half.SHAPE_FROM_CONFIG else run.model.image_shape
    if tuple(data.image_shape) != tuple(expected):
        raise JetgenError("The data set {} now gives images of shape {} but the run was trained on {}; point "
                          "the run at the data it was trained on.".format(data.name, data.image_shape,
                                                                          tuple(expected)))
    if len(data.test_x) < 2:
        raise JetgenError("The data set {} has {} test images; evaluation needs at least 2.".format(
            data.name, len(data.test_x)))
    return run, data


def _numbers(run, data, options, result, phase):
    """Fill ``result`` with the model's numbers, one phase each; returns (means, z_start, one-hot y)."""
    model, x, labels, seed = run.model, data.test_x, data.test_y, options["seed"]
    y = F.one_hot(labels, model.num_classes).float() if model.conditional else None
    dim = model.latent_dim
    if model.has_encoder:
        params = phase("encoder posterior", metrics.posterior_params, model, x, y)
        means, z_start = params[:, :dim], None
    else:
        steps, lr = options["inference_steps"], options["inference_lr"]
        result.update(inference_steps=steps, inference_lr=lr, recon_metric=metrics.RECON_METRIC)
        # a variational table is fitted as q's parameters (an ELBO to report); a plain one as latents
        infer = infer_params if model.variational else infer_latents
        start = _in_chunks(infer, model, x, steps=0, seed=seed)
        found = phase("test-time inference ({} steps)".format(steps), _in_chunks, infer, model, x, steps=steps,
                      lr=lr, seed=seed)
        if model.variational:
            params, z_start, means = found, model.family.mean(start), model.family.mean(found)
        else:
            params, z_start, means = None, start, found
            with torch.no_grad():
                result["recon"] = float(model.nll(model.decode_logits(means), x).mean())
        result["recon_before"] = float(metrics.reconstruction_error(model, x, z_start).mean())
        result["recon_after"] = float(metrics.reconstruction_error(model, x, means).mean())
    if params is not None:
        result.update(phase("negative ELBO", metrics.neg_elbo, model, x, y, params=params, seed=seed))
        result["iwae_nll"] = phase("IWAE NLL, k={}".format(options["iw_samples"]), metrics.iwae_nll, model, x, y,
                                   params=params, k=options["iw_samples"], seed=seed)
    result["active_units"], result["latent_variance"] = metrics.active_units(means)
    if "kl_per_dim" in result:  # the same question asked of the KL that latent_stats.png shows
        result["kl_active_units"] = metrics.kl_active_units(result["kl_per_dim"])[0]
    if model.conditional:
        acc, clf_acc, per_label = phase("conditional accuracy (a classifier fitted to the training split)",
                                        metrics.conditional_accuracy, model, data.train_x, data.train_y, x, labels,
                                        seed=seed)
        result.update(cond_accuracy=acc, classifier_accuracy=clf_acc, cond_accuracy_per_label=per_label)
    return means, z_start, y


def _in_chunks(infer, model, x, seed, chunk=INFERENCE_CHUNK, **kw):
    """Run ``infer`` on ``chunk`` test images at a time (bounded memory; chunk i uses seed + i)."""
    parts = [infer(model, x[start:start + chunk], seed=seed + i, **kw)
             for i, start in enumerate(range(0, len(x), chunk))]
    return torch.cat(parts)


def _pictures(run, data, x, labels, y, means, z_start, out, seed):

    model, kind = run.model, run.model.kind
    name = "{} ({}, {}-D latent, epoch {})".format(os.path.basename(os.path.abspath(run.path)), kind,
                                                   model.latent_dim, run.meta.get("epoch"))
    written = []

    def keep(path):
        if path:
            written.append(os.path.abspath(path))

    os.makedirs(out, exist_ok=True)
    keep(plots.plot_curves(read_metrics(run.path), os.path.join(out, "curves.png"), "training curves: " + name))
    stats = plots.read_latent_stats(os.path.join(run.path, "latent_stats.jsonl"))
    keep(plots.plot_latent_stats(stats, os.path.join(out, "latent_stats.png")))

    n = min(20, len(x))
    yn = None if y is None else y[:n]
    with torch.no_grad():
        recon = model.decode(means[:n], yn)
        if z_start is None:
            keep(plots.plot_reconstructions(x[:n], recon, os.path.join(out, "reconstructions.png"),
                                            title="test images over their reconstructions (encoder mean)"))
        else:
            before = model.decode(z_start[:n], yn)
            rows, row_labels = [], []
            for s in range(0, n, 10):
                rows += [x[s:s + 10], before[s:s + 10], recon[s:s + 10]]
                row_labels += ["original", "initial latent", "after inference"]
            keep(plots.plot_image_grid(rows, os.path.join(out, "reconstructions.png"), row_labels=row_labels,
                                       title="test images, decoded before and after test-time inference"))

        gen = torch.Generator().manual_seed(seed)
        if model.conditional:
            per = 10
            lab = torch.arange(model.num_classes).repeat_interleave(per)
            z = model.prior_sample(len(lab), generator=gen)
            images = model.decode(z, F.one_hot(lab, model.num_classes).float())
            keep(plots.plot_samples(images, os.path.join(out, "samples.png"), row_labels=data.classes,
                                    title="samples from the prior, one row per label"))
        else:
            images = model.decode(model.prior_sample(80, generator=gen))
            keep(plots.plot_samples(images, os.path.join(out, "samples.png"),
                                    title="samples from the {} prior".format(model.family.name)))

        if model.latent_dim == 2:
            keep(plots.plot_manifold(model, os.path.join(out, "manifold.png")))
    keep(plots.plot_embedding(means, labels, os.path.join(out, "tsne.png"), data.classes, seed=seed,
                              title="test latents ({}), coloured by label".format(
                                  "encoder means" if z_start is None else "inferred")))
    # two test images with different labels, so the strip crosses classes
    other = int((labels != labels[0]).nonzero()[0]) if bool((labels != labels[0]).any()) else 1
    ya = yb = None
    if y is not None:
        ya, yb = y[0], y[other]
    keep(plots.plot_interpolation(model, means[0], means[other], os.path.join(out, "interpolation.png"), ya, yb,
                                  title="interpolation between test images {} and {} ({})".format(
                                      0, other, "encoder means" if z_start is None else "inferred latents")))
    return written
