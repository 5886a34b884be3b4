"""``PointModel``: a point-cloud bundle (kind atlasnet) opened for inference; ``Model.open`` returns
one for any bundle whose manifest has ``model.points`` (docs/bundle.md, "Point-cloud bundles").

    m = Model.open("shapes.jetgen")
    clouds = m.sample(8, seed=0)                # (8, N, 3) float32, N = patches * grid^2
    m.faces                                     # int32 (F, 3): each cloud is a mesh of these triangles
    r = m.complete(read_points("partial.ply"))  # r.x (1, N, 3) completed, r.z, r.chamfer

``complete`` minimises ``loss_scale`` * one-sided Chamfer (observed -> decoded, the latent_grad graph)
+ ``prior_weight`` * prior term over the latent with the Adam loop images use (jetgen.runtime.completion),
starting by default from the best of the encoder's code and the prior's anchors (init "multistart").
Clouds of any size go in: the encoder takes exactly ``encoder_points`` points and latent_grad
``target_points`` (M), so larger clouds are subsampled with a fixed seed and smaller ones padded
(latent_grad: masked; the encoder's max-pool ignores repeated points). numpy only; Python 3.6 compatible.
"""
import os

import numpy as np

from jetgen.digest import sha256_file
from jetgen.errors import JetgenError
from jetgen.runtime.completion import COMPLETE_STEPS, COMPLETE_TOL, COMPLETE_WINDOW, best_starts, keep_best_start
from jetgen.runtime.model import Completion, Model
from jetgen.runtime.priors import make_rng

POINT_INITS = ("multistart", "encoder", "prior_mean", "random")
STARTS = 3  # multistart: latents optimised per cloud (the best by objective of the encoder's code and the anchors)
MAX_CLOUDS = 4096  # clouds per call
MAX_CLOUD_POINTS = 5000000  # points per cloud given to a call (read_points' limit)
SUBSAMPLE_SEED = 0  # clouds larger than a graph's input are subsampled the same way every time
COMPLETE_LR = 5e-2
NPY_HEADER_SLACK = 4096  # a faces.npy is its header (< 4 kB) plus 12 bytes per face


MAX_COORDINATE = 1e4  # |x|, |y|, |z| of an input point (shapes are normalised to about unit size; spec.MAX_OUTPUT)


def _cloud(value, what):
    """One cloud as float32 (P, 3): JetgenError when it is empty, not (P, 3), too large or not finite."""
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise JetgenError("The {} is not an array of numbers.".format(what))
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise JetgenError("The {} must be points of shape (P, 3) (x, y, z per row), not {}; this bundle decodes "
                          "point clouds, not images.".format(what, tuple(arr.shape)))
    if len(arr) == 0:
        raise JetgenError("The {} holds no points.".format(what))
    if len(arr) > MAX_CLOUD_POINTS:
        raise JetgenError("The {} has {} points, more than the {} accepted; downsample it first.".format(
            what, len(arr), MAX_CLOUD_POINTS))
    if not np.isfinite(arr).all():
        raise JetgenError("The {} holds NaN or infinite coordinates; remove those points.".format(what))
    reach = float(np.abs(arr).max())
    if reach > MAX_COORDINATE:  # squared distances would overflow float32 in the Chamfer term
        raise JetgenError("The {} has coordinates up to {:.3g}; this model's shapes are of unit size (at most {:g} "
                          "is accepted): scale the cloud to the size of the shapes it was trained on.".format(
                              what, reach, MAX_COORDINATE))
    return arr


def as_clouds(clouds, what="cloud"):
    """A list of checked clouds from one cloud (P, 3), a batch (B, P, 3) or a list of clouds."""
    if isinstance(clouds, np.ndarray) and clouds.ndim == 3:
        clouds = list(clouds)
    elif isinstance(clouds, (list, tuple)) and clouds and np.ndim(clouds[0]) == 2:
        clouds = list(clouds)
    else:
        clouds = [clouds]
    if not 1 <= len(clouds) <= MAX_CLOUDS:
        raise JetgenError("Give 1 to {} clouds, not {}.".format(MAX_CLOUDS, len(clouds)))
    return [_cloud(c, what) for c in clouds]


def resample(cloud, size, seed=SUBSAMPLE_SEED):
    """``size`` points of ``cloud``: a fixed-seed subset when larger, all of them plus fixed-seed
    repeats when smaller (harmless to a max-pooling encoder)."""
    rng = np.random.RandomState(seed)
    if len(cloud) >= size:
        return cloud[np.sort(rng.choice(len(cloud), size, replace=False))]
    return np.concatenate([cloud, cloud[rng.randint(0, len(cloud), size - len(cloud))]])


class PointModel(Model):
    """A point-cloud bundle: ``sample``/``decode`` give clouds (n, N, 3) that ``faces`` turn into meshes;
    ``encode``, ``interpolate``, ``reconstruct`` and ``complete`` take clouds of any size."""

    def __init__(self, bundle, *args):
        Model.__init__(self, bundle, *args)
        self.points = dict(bundle.model["points"])  # patches, grid, encoder_points, target_points, ...
        self._faces = None

    def __repr__(self):
        p = self.points
        return "PointModel({!r}: {}, {}-D {} latent, {} patches of {}x{} ({} points), {} {})".format(
            self.bundle.path, self.kind, self.latent_dim, self.prior.family, p["patches"], p["grid"], p["grid"],
            self.output_shape[0], self.backend, self.precision)

    @property
    def faces(self):
        """int32 (F, 3) triangles indexing a decoded cloud's points, read from faces.npy once (size,
        sha256, dtype, shape and index range checked; never unpickled). JetgenError when damaged."""
        if self._faces is None:
            self._faces = self._read_faces()
        return self._faces

    def _read_faces(self):
        entry = self.points["faces"]
        path = self.bundle.file_path(entry["file"])
        damaged = "{} is damaged ({}); copy the bundle again or re-export it."
        if not os.path.isfile(path):
            raise JetgenError(damaged.format(path, "missing"))
        if os.path.getsize(path) > NPY_HEADER_SLACK + 12 * entry["count"]:
            raise JetgenError(damaged.format(path, "larger than {} faces can be".format(entry["count"])))
        if sha256_file(path) != entry["sha256"]:
            raise JetgenError(damaged.format(path, "its sha256 differs from the manifest's"))
        try:
            faces = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise JetgenError(damaged.format(path, err))
        if faces.dtype != np.int32 or faces.shape != (entry["count"], 3):
            raise JetgenError(damaged.format(path, "{} {} instead of int32 ({}, 3)".format(
                faces.dtype, faces.shape, entry["count"])))
        if faces.size and (faces.min() < 0 or faces.max() >= self.output_shape[0]):
            raise JetgenError(damaged.format(path, "a face indexes a point the decoder does not make"))
        return faces

    @property
    def patch_size(self):
        """Points per patch (G*G): a cloud's points are patch-major."""
        return self.points["grid"] ** 2

    # -- decoding ----------------------------------------------------------------------------------
    def _decode(self, z, y):
        """The decoder on checked latents: clouds (n, N, 3) float32 (points are not clamped)."""
        z = np.ascontiguousarray(z, dtype=np.float32)
        x = self.run("decoder", {"z": z}, validate=False)["x"]
        if x.size and not np.isfinite(x).all():
            raise JetgenError("The decoder graph returned NaN or infinite points (at {} precision); the graph or its "
                              "engine is broken: run jetgen verify.".format(self.precision))
        return x

    def encode(self, clouds, labels=None):
        """Posterior (mu, logvar), each (n, D) float32, for clouds of any size (resampled to the
        encoder's ``encoder_points``); needs an encoder."""
        if labels is not None:
            raise JetgenError("This model is not conditional; do not give labels.")
        if not self.has_encoder:
            raise JetgenError("This bundle ({}) has no encoder; use complete() to find latents.".format(self.kind))
        size = self.points["encoder_points"]
        x = np.stack([resample(c, size) for c in as_clouds(clouds)])
        out = self.run("encoder", {"x": x}, validate=False)
        return out["mu"], out["logvar"]

    def reconstruct(self, clouds, labels=None):
        """Clouds through the encoder mean and the decoder: (n, N, 3)."""
        return self._decode(self.encode(clouds, labels)[0], None)

    def _to_latent(self, value, y, seed):
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None  # clouds of different sizes: as_clouds says what is wrong
        if arr is not None and (arr.ndim == 1 or arr.shape == (1, self.latent_dim)):
            return self._latents(arr)[0]
        clouds = as_clouds(value, "interpolation end point")
        if len(clouds) != 1:
            raise JetgenError("An interpolation end point must be one latent or one cloud, not {}.".format(len(clouds)))
        if self.has_encoder:
            return self.encode(clouds)[0][0].astype(np.float64)
        return self.complete(clouds, init="prior_mean", seed=seed).z[0].astype(np.float64)

    # -- completion --------------------------------------------------------------------------------
    def observed(self, clouds):
        """Clouds as the latent_grad graph's (target (B, M, 3), mask (B, M)): subsampled with a fixed
        seed when larger than M, padded and masked when smaller."""
        from jetgen.modalities.points.codec import pad_clouds

        size = self.points["target_points"]
        return pad_clouds([resample(c, size) if len(c) > size else c for c in clouds], size)

    def complete(self, points, steps=COMPLETE_STEPS, lr=COMPLETE_LR, tol=COMPLETE_TOL, init="multistart", seed=None,
                 prior_weight=None, window=COMPLETE_WINDOW, callback=None, starts=STARTS):
        """Complete partial clouds by optimising their latents: one cloud (P, 3), a batch (B, P, 3) or a
        list of clouds of any sizes.

        Minimises ``loss_scale`` * one-sided Chamfer (observed points to the decoded cloud) +
        ``prior_weight`` (default: the bundle's) * prior term, with Model.complete's Adam loop and
        stopping rule. ``init``: "multistart" (the default: the encoder's code of the partial cloud and
        the prior's anchors (a mixture's component means, or the prior mean) are scored by the
        objective, the best ``starts`` of them are optimised side by side and the best result kept;
        chosen by measurement: docs/shapes.md), "encoder" (the encoder's code alone), "prior_mean",
        "random" or latents (B, D). Returns a Completion whose ``x`` and ``decoded`` are the completed
        clouds (B, N, 3), with ``faces`` (the mesh) and ``chamfer`` (B,) (the one-sided Chamfer at ``z``,
        plain units). With multistart, ``callback`` sees every start's row (cloud-major). JetgenError for
        bad clouds, arguments, or a bundle without a latent_grad graph.
        """
        clouds = as_clouds(points, "cloud to complete")
        if prior_weight is None:
            prior_weight = self.points["prior_weight"]
        steps, lr, tol, prior_weight, window = self._complete_args(steps, lr, tol, prior_weight, window)
        if not self.bundle.has("latent_grad"):
            raise JetgenError("This bundle has no latent_grad graph, which complete() needs; re-export it.")
        if isinstance(starts, bool) or not isinstance(starts, int) or starts < 1:
            raise JetgenError("starts must be a whole number >= 1, not {!r}.".format(starts))
        target, mask = self.observed(clouds)
        scale = self.points["loss_scale"]
        multistart = isinstance(init, str) and init == "multistart"
        if multistart:
            z, target, mask = self._multistart(clouds, target, mask, scale, prior_weight, starts)
        else:
            z = self._start(init, clouds, seed)
        evaluate, release = self._evaluator(target, mask, None)

        def scaled(z, rows):
            chamfer, grad = evaluate(z, rows)
            return scale * chamfer, scale * grad

        try:
            best_z, best, best_nll, history = self._optimise(scaled, z, steps, lr, tol, prior_weight, window, callback)
        finally:
            release()
        history = np.array(history)
        if multistart:  # each cloud keeps its start with the lowest objective
            keep = keep_best_start(best, len(clouds))
            best_z, best, best_nll, history = best_z[keep], best[keep], best_nll[keep], history[:, keep]
        decoded = self._decode(best_z, None)
        result = Completion(z=best_z, x=decoded, decoded=decoded, loss=best, nll=best_nll, history=history,
                            steps=len(history) - 1)
        result.faces, result.chamfer = self.faces, best_nll / scale if scale else best_nll
        return result

    def _anchors(self):
        """Latents every cloud's search may start from: a mixture prior's component means, else its mean."""
        means = getattr(self.prior, "means", None)
        return np.asarray(means if means is not None else self.prior.mean()[None], dtype=np.float64)

    def _multistart(self, clouds, target, mask, scale, prior_weight, starts):
        """The ``starts`` best latents per cloud among its encoder code (when the bundle has an encoder)
        and the prior's anchors, by the completion objective; (z (B*k, D), target, mask repeated k times)."""
        anchors = self._anchors()
        n = len(clouds)
        cands = np.repeat(anchors[None], n, axis=0)
        if self.has_encoder:
            cands = np.concatenate([self.encode(clouds)[0].astype(np.float64)[:, None], cands], axis=1)
        cands = self.prior.project(cands.reshape(n * cands.shape[1], -1)).reshape(n, cands.shape[1], -1)
        c = cands.shape[1]
        evaluate, release = self._evaluator(np.repeat(target, c, axis=0), np.repeat(mask, c, axis=0), None)
        try:
            flat = cands.reshape(n * c, -1)
            nll, _ = evaluate(flat, np.arange(n * c))
        finally:
            release()
        objective = (scale * nll + prior_weight * self._prior.term(flat)[0]).reshape(n, c)
        pick = best_starts(objective, starts)
        k = pick.shape[1]
        z = cands[np.arange(n)[:, None], pick].reshape(n * k, -1)
        return z, np.repeat(target, k, axis=0), np.repeat(mask, k, axis=0)

    def _start(self, init, clouds, seed):
        if isinstance(init, str):
            if init == "encoder":
                z = self.encode(clouds)[0]
            elif init == "prior_mean":
                z = np.tile(self.prior.mean(), (len(clouds), 1))
            elif init == "random":
                z = self.prior.sample(len(clouds), 1.0, make_rng(seed))
            else:
                raise JetgenError("init must be one of {} or an array of latents, not {!r}.".format(
                    ", ".join(POINT_INITS), init))
        else:
            z = self._latents(init)
            if len(z) == 1:
                z = np.repeat(z, len(clouds), axis=0)
            if len(z) != len(clouds):
                raise JetgenError("Got {} initial latents for {} clouds.".format(len(z), len(clouds)))
        return self.prior.project(np.asarray(z, dtype=np.float64))


# -- writing clouds ------------------------------------------------------------------------------
CLOUD_OUTPUTS = (".obj", ".ply", ".npy", ".xyz", ".png")


def numbered(path, index, count):
    """``path`` itself for one output, else PATH-index.ext (shapes.obj -> shapes-0.obj, ...)."""
    if count == 1:
        return path
    base, ext = os.path.splitext(path)
    return "{}-{}{}".format(base, index, ext)


def save_clouds(path, clouds, faces=None, colours=None, titles=None, scene_layout=False):
    """Write clouds (n, N, 3) to ``path`` by its extension, atomically; return the paths written.

    .obj/.ply: one mesh per cloud (with ``faces``; PATH-i.ext when n > 1) or, with ``scene_layout``,
    one file with the clouds side by side; .xyz likewise as points; .npy one float32 (n, N, 3)
    array; .png a labelled render (``render_sheet``). JetgenError for another extension.
    """
    from jetgen.atomic import atomic_write_bytes
    from jetgen.modalities.points.codec import scene, write_mesh, write_points

    ext = os.path.splitext(str(path))[1].lower()
    if ext not in CLOUD_OUTPUTS:
        raise JetgenError("Cannot write {}: point clouds go to {} files.".format(path, ", ".join(CLOUD_OUTPUTS)))
    clouds = np.asarray(clouds, dtype=np.float32)
    mesh = ext in (".obj", ".ply") and faces is not None
    if ext == ".npy":
        import io

        buf = io.BytesIO()
        np.save(buf, clouds, allow_pickle=False)
        atomic_write_bytes(path, buf.getvalue())
        return [path]
    if ext == ".png":
        render_sheet(path, clouds, colours, titles, None if faces is None else [faces] * len(clouds))
        return [path]
    if scene_layout:
        vertices, tris = scene(clouds, faces if mesh else None)
        clouds, faces, paths = vertices[None], tris, [path]
    else:
        paths = [numbered(path, i, len(clouds)) for i in range(len(clouds))]
    for p, cloud in zip(paths, clouds):
        if mesh:
            write_mesh(p, cloud, faces)
        else:
            write_points(p, cloud)
    return paths


def render_sheet(path, clouds, colours=None, titles=None, faces=None):
    """A PNG of ``clouds`` (a list of (P, 3) arrays), one row per cloud seen from three views, each
    row titled (``titles``, default "0", "1", ...); ``colours`` None or one (P, 3) array (or None) per cloud.
    ``faces``: None, or one (F, 3) array (or None) per cloud: those rows are drawn as shaded meshes
    (jetgen.modalities.points.raster), the others as dots."""
    from jetgen.modalities.image.codec import write_png
    from jetgen.modalities.points.codec import DEFAULT_VIEWS, render_view
    from jetgen.runtime.lettering import titled_grid
    from jetgen.modalities.points.raster import render_mesh_view

    tiles = []
    for i, cloud in enumerate(clouds):
        tint = None if colours is None else colours[i]
        tris = None if faces is None else faces[i]
        if tris is not None:
            tiles.extend(render_mesh_view(cloud, tris, 160, e, a, tint) for e, a in DEFAULT_VIEWS)
            continue
        tiles.extend(render_view(cloud, 160, e, a, tint) for e, a in DEFAULT_VIEWS)
    x = np.stack(tiles).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    titles = list(titles) if titles is not None else [str(i) for i in range(len(clouds))]
    write_png(path, titled_grid(x, len(DEFAULT_VIEWS), titles, scale=1))


def decoded_colours(model, n):
    """Per-patch colours for ``n`` decoded clouds of ``model`` (a list for ``save_clouds``)."""
    from jetgen.modalities.points.codec import patch_colours

    return [patch_colours(model.points["patches"], model.patch_size)] * n
