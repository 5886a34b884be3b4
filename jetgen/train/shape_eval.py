"""``jetgen eval RUN`` for 3D shape runs (atlasnet): reconstruction against baselines, generation, pictures.

On (at most ``max_shapes`` of) the test split, evenly spread so the class mix is kept:

- reconstruction: Chamfer-L2 x1000 and F-score at 1% and 2% (jetgen.train.shape_metrics) of the
  encoder-mean reconstructions, decoded on ceil(sqrt(2500 / K)) points per patch side; beside them on
  the same shapes the floor (a second sampling of the same procedural shapes, ``shapes`` data only),
  the class medoid and the retrieval oracle (the nearest training shape of the class by Chamfer);
- generation: MMD-CD, COV-CD and 1-NNA of as many decoded samples as test shapes, for the prior
  N(0, I) (for an AE: random latents), the fitted mixture of RUN/latent_prior.json, and the reference
  rows: real training shapes, and the decoder's reconstructions of them (the ceiling of any density);
- the ``init_from`` provenance of the run, active units of the test means;
- ``warnings``: loud lines when no latent unit is active or the model is worse than the class medoid;
- pictures (``jetgen.train.shape_plots``): reconstructions.png, samples.png (meshes from the mixture),
  interpolation.png, patches.png, tsne.png, curves.png, latent_stats.png.
"""
import math
import os

import numpy as np
import torch

from jetgen.errors import JetgenError
from jetgen.models.atlasnet import grid_faces
from jetgen.runtime.gmm import GaussianMixturePrior
from jetgen.train import metrics, plots, shape_metrics as SM, shape_plots
from jetgen.train.latent_gmm import encode_means, fit_run_prior
from jetgen.train.rundir import load_latent_prior, read_metrics

MAX_SHAPES = 240  # test shapes evaluated by default: 40 per procedural class, about a minute of one core
EVAL_POINTS = 2500  # decoded points for the reconstruction numbers (AtlasNet's convention)


def eval_grid(model, points=EVAL_POINTS):
    """Grid side per patch so the decoder gives at least ``points`` points."""
    return int(math.ceil(math.sqrt(points / float(model.patches))))


def pick_test(data, max_shapes):
    """Indices of at most ``max_shapes`` test shapes spread evenly over the (class-ordered) split."""
    n = len(data.test_x)
    if n <= max_shapes:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_shapes)).astype(np.int64))


@torch.no_grad()
def decode(model, z, grid, batch=64):
    """Decoded clouds (n, K*G*G, 3) as numpy for latents ``z`` (n, D)."""
    z = torch.as_tensor(np.asarray(z), dtype=torch.float32)
    return torch.cat([model.decode(z[i:i + batch], grid=grid) for i in range(0, len(z), batch)]).numpy()


def _floor(run, data, idx):
    """A second sampling of the same test shapes (procedural data only), else None."""
    if data.name != "shapes":
        return None
    from jetgen.train.shapes import SHAPE_CLASSES, procedural_shapes

    c = run.config
    again = procedural_shapes(int(c["shapes_per_class"]), int(c["test_shapes_per_class"]), int(c["points"]),
                              int(c["seed"]), classes=c.get("shape_classes") or SHAPE_CLASSES, sample_seed=1)
    return again.test_x.numpy()[idx]


def reconstruction(run, data, idx, phase):
    """{row: {chamfer_x1000, fscore@1%, fscore@2%}} for the model and the baselines, and the test means."""
    model = run.model
    test, labels = data.test_x.numpy()[idx], data.test_y.numpy()[idx]
    means = phase("encoder means of {} test shapes".format(len(idx)), encode_means, model, torch.from_numpy(test))
    rows = {"model": phase("reconstructions", lambda: SM.summarise(SM.reconstruction_metrics(
        decode(model, means, eval_grid(model)), test)))}
    second = _floor(run, data, idx)
    if second is not None:
        rows["floor"] = phase("floor (a second sampling)", lambda: SM.summarise(SM.reconstruction_metrics(second, test)))
    train_x, train_y = data.train_x.numpy(), data.train_y.numpy()
    rows["class_medoid"] = phase("class-medoid baseline", lambda: SM.summarise(SM.reconstruction_metrics(
        SM.medoid_baseline(labels, train_x, train_y), test)))
    rows["retrieval_oracle"] = phase("retrieval-oracle baseline", lambda: SM.summarise(SM.reconstruction_metrics(
        SM.retrieval_baseline(test, labels, train_x, train_y)[1], test)))
    return rows, means


def _mixture(run, data):
    """The run's fitted mixture (latent_prior.json), fitted now when the run has none; (prior, where)."""
    prior = load_latent_prior(run.path)
    if prior is not None:
        return prior, "latent_prior.json"
    spec = fit_run_prior(run.model, data.train_x, seed=int(run.config.get("seed", 0)))
    if spec is None:
        raise JetgenError("Run {} has no latent_prior.json and too few training shapes to fit one.".format(run.path))
    return GaussianMixturePrior.from_spec(spec), "fitted at eval (the run has no latent_prior.json)"


def generation(run, data, idx, seed, phase):
    """{row: generation_metrics} for the prior, the mixture and the reference rows, against the test shapes
    ``idx``; also returns the mixture (for the pictures) and where it came from."""
    model = run.model
    refs = data.test_x.numpy()[idx]
    points = min(SM.GENERATION_POINTS, refs.shape[1])
    n, grid = len(idx), eval_grid(model, points)
    rng = np.random.RandomState(seed)
    # decoded points are patch-major: a random subset (the same for every cloud) keeps every patch
    keep = np.sort(rng.choice(model.patches * grid * grid, points, replace=False))
    prior, source = _mixture(run, data)
    real = np.sort(rng.choice(len(data.train_x), min(n, len(data.train_x)), replace=False))
    codes = encode_means(model, data.train_x[torch.from_numpy(real)])
    samples = {
        "prior N(0, I)" if model.variant == "vae" else "random latents N(0, I) (AE)":
            decode(model, rng.standard_normal((n, model.latent_dim)).astype(np.float32), grid)[:, keep],
        "fitted mixture": decode(model, prior.sample(n, rng=seed), grid)[:, keep],
        "real training shapes (reference)": data.train_x.numpy()[real, :points],
        "reconstructions of training shapes (ceiling)": decode(model, codes, grid)[:, keep],
    }
    rows = {}
    for name, clouds in samples.items():
        rows[name] = phase("generation: {}".format(name), SM.generation_metrics, clouds, refs, points=points)
    return rows, prior, source


def evaluate_shapes(run, data, options, result, phase, pictures_dir=None):
    """Fill ``result`` with the 3D numbers (module docstring) and, with ``pictures_dir``, the pictures."""
    model, seed = run.model, options["seed"]
    idx = pick_test(data, options["max_shapes"])
    if len(idx) < 2:
        raise JetgenError("Run {} has {} test shapes; evaluation needs at least 2 (raise --test-shapes-per-class "
                          "or use a data set with a test split).".format(run.path, len(idx)))
    result.update(variant=model.variant, test_shapes=int(len(idx)), test_shapes_in_split=int(len(data.test_x)),
                  init_from=run.config.get("init_from"), eval_grid=eval_grid(model))
    rows, means = reconstruction(run, data, idx, phase)
    result["reconstruction"] = rows
    oracle = rows["retrieval_oracle"]["chamfer_x1000"]
    result["chamfer_x1000"] = rows["model"]["chamfer_x1000"]
    result["chamfer_over_oracle"] = rows["model"]["chamfer_x1000"] / oracle if oracle > 0 else None
    result["active_units"], result["latent_variance"] = metrics.active_units(means)
    result["warnings"] = quality_warnings(result)
    result["generation"], prior, result["mixture_source"] = generation(run, data, idx, seed, phase)
    if pictures_dir:
        result["pictures"] = phase("pictures", pictures, run, data, idx, means, prior, pictures_dir, seed)
    return result


def quality_warnings(result):
    """Loud sentences for a model that learnt nothing useful: no active latent unit (the encoder's output
    does not depend on the input), and a reconstruction worse than the class medoid (a training shape of
    the right class would do better)."""
    from jetgen.train.shape_training import latent_warning

    out = []
    line = latent_warning(result["active_units"], len(result["latent_variance"]), variant=result["variant"])
    if line:
        out.append(line)
    recon = result["reconstruction"]
    model, medoid = recon["model"]["chamfer_x1000"], recon["class_medoid"]["chamfer_x1000"]
    if model >= medoid:
        out.append("WARNING: the model reconstructs worse than the class medoid (Chamfer-L2 x1000 {:.2f} against "
                   "{:.2f}): returning a training shape of the right class would do better. Train for more steps "
                   "or start from the base model (--init-from base).".format(model, medoid))
    return out


def pictures(run, data, idx, means, prior, out, seed):
    """The PNG pictures of the module docstring; returns their absolute paths."""
    model, k = run.model, run.model.patches
    name = "{} (atlasnet {}, {}-D latent, epoch {})".format(os.path.basename(os.path.abspath(run.path)),
                                                           model.variant, model.latent_dim, run.meta.get("epoch"))
    os.makedirs(out, exist_ok=True)
    test, labels = data.test_x.numpy()[idx], data.test_y.numpy()[idx]
    # one shape per class first (up to 4), so the pictures cross classes
    firsts = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)][:4]
    show = (firsts + [i for i in range(len(idx)) if i not in firsts])[:4]
    names = [data.classes[labels[i]] for i in show]
    grid = model.grid
    faces = grid_faces(k, grid)
    written = [shape_plots.plot_reconstructions(
        test[show, :2048], decode(model, means[show], eval_grid(model)), k, os.path.join(out, "reconstructions.png"),
        names, title="test shapes and their reconstructions from the encoder mean\n" + name)]
    written.append(shape_plots.plot_mesh_grid(
        decode(model, prior.sample(12, rng=seed), grid), faces, k, os.path.join(out, "samples.png"),
        title="meshes decoded from samples of the fitted latent mixture\n" + name))
    a, b = show[0], show[1] if len(show) > 1 else 1
    steps = np.linspace(0.0, 1.0, 8)[:, None]
    z = (1 - steps) * means[a].numpy()[None] + steps * means[b].numpy()[None]
    written.append(shape_plots.plot_mesh_grid(
        decode(model, z.astype(np.float32), grid), faces, k, os.path.join(out, "interpolation.png"),
        labels=["t = {:.2f}".format(float(t)) for t in steps[:, 0]],
        title="interpolation between the codes of test shapes {} ({}) and {} ({})".format(
            a, data.classes[labels[a]], b, data.classes[labels[b]])))
    written.append(shape_plots.plot_patches(decode(model, means[a:a + 1], grid)[0], faces, k,
                                            os.path.join(out, "patches.png")))
    written.append(plots.plot_embedding(means, torch.from_numpy(labels), os.path.join(out, "tsne.png"), data.classes,
                                        seed=seed, title="test latents (encoder means, t-SNE), coloured by class"))
    written.append(plots.plot_curves(read_metrics(run.path), os.path.join(out, "curves.png"), "training curves: " + name,
                                     loss_unit="Chamfer x1000 + KL nats", kl_unit="nats/shape"))
    written.append(plots.plot_latent_stats(plots.read_latent_stats(os.path.join(run.path, "latent_stats.jsonl")),
                                           os.path.join(out, "latent_stats.png")))
    return [os.path.abspath(p) for p in written if p]

