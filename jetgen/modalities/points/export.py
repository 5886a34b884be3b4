"""Point-cloud exports (output="points", kind atlasnet): the 3D settings a bundle records, its
faces file, and the inputs an export runs the graphs on (docs/bundle.md, "Point-cloud bundles").

The settings (``check_points``) are a dict: ``patches`` K, ``grid`` G (the decoder returns
N = K*G*G points), ``encoder_points`` (the encoder's fixed input size), ``target_points`` M (the
latent_grad graph's observed points, padded with a mask), ``loss_scale`` and ``prior_weight``
(``complete`` minimises loss_scale * Chamfer + prior_weight * prior term), ``faces`` int32 (F, 3).

Feeds follow jetgen.export.feeds (random inputs at batches 1 and 5 plus real test clouds for parity;
batch 1 and 16 golden cases), with clouds instead of images: the encoder reads the first
``encoder_points`` points of a cloud (the points are i.i.d. samples), latent_grad's targets are test
clouds cut by a random plane (about half kept, as in completion), padded to M with their mask.
"""
import hashlib
import io

import numpy as np

from jetgen import spec
from jetgen.errors import JetgenError

TARGET_POINTS = 1024  # M: observed points per completion call (a partial scan is subsampled to it)
GOLDEN_BATCH = 16
REAL_BATCH = 32


# -- settings and faces --------------------------------------------------------------------------
def check_points(points, output_shape):
    """The checked 3D settings for a decoder returning ``output_shape`` (N, 3); JetgenError naming the
    first setting that is missing or wrong (faces out of range, N != patches * grid^2, ...)."""
    if not isinstance(points, dict):
        raise JetgenError("output=\"points\" needs points={\"patches\", \"grid\", \"faces\", \"encoder_points\", "
                          "...}, not {!r}.".format(type(points).__name__))
    out = {"target_points": TARGET_POINTS, "loss_scale": 1.0, "prior_weight": 1.0}
    out.update(points)
    for key in ("patches", "grid", "encoder_points", "target_points"):
        value = out.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (2 if key == "grid" else 1):
            raise JetgenError("points[{!r}] must be a whole number >= {}, not {!r}.".format(
                key, 2 if key == "grid" else 1, value))
        out[key] = int(value)
    for key in ("loss_scale", "prior_weight"):
        try:
            out[key] = float(out[key])
        except (TypeError, ValueError):
            out[key] = float("nan")
        if not (np.isfinite(out[key]) and out[key] >= 0):
            raise JetgenError("points[{!r}] must be a finite number >= 0.".format(key))
    n = out["patches"] * out["grid"] ** 2
    if tuple(output_shape) != (n, 3):
        raise JetgenError("The decoder returns clouds of shape {} but {} patches of a {}x{} grid make ({}, 3).".format(
            tuple(output_shape), out["patches"], out["grid"], out["grid"], n))
    out["faces"] = check_faces(out.get("faces"), n, out["patches"] * 2 * (out["grid"] - 1) ** 2)
    return out


def check_faces(faces, n_vertices, count):
    """``faces`` as int32 (count, 3) with every index in [0, n_vertices); JetgenError otherwise."""
    if hasattr(faces, "detach"):
        faces = faces.detach().cpu().numpy()
    arr = np.asarray(faces) if faces is not None else np.zeros((0,))
    if arr.dtype.kind not in "iu" or arr.shape != (count, 3):
        raise JetgenError("The faces must be integers of shape ({}, 3) (two triangles per grid cell), not {} {}."
                          .format(count, arr.dtype, tuple(arr.shape)))
    if arr.min() < 0 or arr.max() >= n_vertices:
        raise JetgenError("The faces index vertices {}..{}, outside the {} points the decoder returns.".format(
            int(arr.min()), int(arr.max()), n_vertices))
    return arr.astype(np.int32)


def faces_bytes(faces):
    """The faces as .npy bytes (int32, no pickle): what ``faces.npy`` holds."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(faces, dtype=np.int32), allow_pickle=False)
    return buf.getvalue()


def manifest_section(points):
    """The manifest's ``model.points``: the settings and the faces file's name, sha256 and count."""
    data = faces_bytes(points["faces"])
    section = dict((k, v) for k, v in points.items() if k != "faces")
    section["faces"] = {"file": spec.FACES_FILE, "sha256": hashlib.sha256(data).hexdigest(),
                        "count": int(len(points["faces"]))}
    return section


def manifest_sections(source):
    """The manifest model sections this modality adds for ``source``: {"points": manifest_section(...)}."""
    return {"points": manifest_section(source.points)}


def write_files(directory, source):
    """The bundle files this modality adds for ``source`` (faces.npy), written into ``directory``."""
    write_faces(directory, source.points)


def write_faces(directory, points):
    from jetgen.atomic import atomic_write_bytes
    import os

    atomic_write_bytes(os.path.join(directory, spec.FACES_FILE), faces_bytes(points["faces"]))


# -- data ----------------------------------------------------------------------------------------
def as_cloud_data(data, points):
    """An ExportData of checked clouds (N, P, 3) float32 from clouds, (clouds, labels) or an
    ExportData; P must be at least ``encoder_points``. JetgenError for other shapes or values."""
    from jetgen.export.feeds import ExportData

    if data is None:
        return None
    if not isinstance(data, ExportData):
        x, y = (data if isinstance(data, (tuple, list)) and len(data) == 2 else (data, None))
        data = ExportData(x, y)
    test_x = _clouds(data.test_x, points["encoder_points"])
    calib_x = test_x if data.calib_x is data.test_x else _clouds(data.calib_x, points["encoder_points"])
    return ExportData(test_x, None, calib_x, None, None, data.name, data.infer)


def _clouds(x, min_points):
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError):
        raise JetgenError("The example clouds are not an array of numbers.")
    if arr.ndim != 3 or arr.shape[2] != 3 or not len(arr) or arr.shape[1] < min_points:
        raise JetgenError("The example clouds must have shape (N, P, 3) with P >= {} (the encoder's input), not {}."
                          .format(min_points, tuple(arr.shape)))
    if not np.isfinite(arr).all():
        raise JetgenError("The example clouds must hold finite numbers.")
    return arr


def observed(clouds, size, rng):
    """Each cloud cut by a random plane through its centroid (about half kept), padded or subsampled
    to ``size`` points: (points (B, size, 3), mask (B, size)) float32."""
    from jetgen.modalities.points.codec import cut_by_plane, pad_clouds

    return pad_clouds([cut_by_plane(c, rng)[0] for c in clouds], size)


# -- feeds ---------------------------------------------------------------------------------------
def example_inputs(source, graph, batch):
    """Random torch inputs of ``graph`` (batch ``batch``) for tracing: z, x (Ne, 3), target (M, 3), mask (M,)."""
    import torch

    feeds = _random(source, batch, np.random.RandomState(0))
    return tuple(torch.from_numpy(feeds[k]) for k in source.input_names(graph))


def _random(source, n, rng):
    """Random inputs: prior draws, clouds uniform in the unit cube, random masks with a valid first point."""
    from jetgen.export.feeds import sample_prior

    p = source.points
    mask = (rng.random_sample((n, p["target_points"])) > 0.5).astype(np.float32)
    mask[:, 0] = 1.0
    return {"z": sample_prior(source.prior, n, rng),
            "x": rng.uniform(-1, 1, (n, p["encoder_points"], 3)).astype(np.float32),
            "target": rng.uniform(-1, 1, (n, p["target_points"], 3)).astype(np.float32), "mask": mask}


def _real(source, n, rng):
    """Feeds from the first ``n`` test clouds (None without data): encoder inputs, their encoder
    means as z, cut clouds as latent_grad targets."""
    data = source.data
    if data is None:
        return None
    clouds = data.test_x[:n]
    x = np.ascontiguousarray(clouds[:, :source.points["encoder_points"]])
    target, mask = observed(clouds, source.points["target_points"], rng)
    feeds = {"x": x, "target": target, "mask": mask}
    feeds["z"] = source.real_latents(x, None) if source.has_encoder else _random(source, len(x), rng)["z"]
    return feeds


def _pick(source, graph, feeds):
    return dict((k, feeds[k]) for k in source.input_names(graph))


def parity_feeds(source, graph):
    """[(what, feeds)]: random inputs at batches 1 and 5, and real test clouds."""
    rng = np.random.RandomState(0)
    out = [("random", _pick(source, graph, _random(source, n, rng))) for n in (1, 5)]
    real = _real(source, REAL_BATCH, rng)
    if real is not None:
        out.append(("test data", _pick(source, graph, real)))
    return out


def calibration_feeds(source, graph, n, batch):
    """int8 calibration feeds: encoder inputs from the calibration clouds, or their posterior samples."""
    clouds = source.data.calib_x[:n]
    x = np.ascontiguousarray(clouds[:, :source.points["encoder_points"]])
    feeds = {"x": x} if graph == "encoder" else {"z": source.real_latents(x, None, sample=True)}
    return [dict((k, v[i:i + batch]) for k, v in feeds.items()) for i in range(0, len(x), batch)]


def golden_cases(source, graph, max_batch):
    """[(case, feeds)] at batch 1 and 16: prior draws (and test latents) for the decoder, test clouds
    (random ones without data) for the encoder, cut test clouds with prior draws for latent_grad."""
    rng = np.random.RandomState(2)
    big = max(1, min(GOLDEN_BATCH, max_batch))
    real = _real(source, big, rng)
    if real is not None:
        big = len(real["x"])
    cases = []
    for n in sorted({1, big}):
        feeds = _random(source, n, rng)
        if graph == "decoder":
            cases.append(("prior-b{}".format(n), feeds))
            if real is not None and n > 1 and source.has_encoder:
                cases.append(("test-b{}".format(n), dict(feeds, z=real["z"][:n])))
            continue
        what = "random"
        if real is not None:
            what = "test"
            feeds.update(x=real["x"][:n], target=real["target"][:n], mask=real["mask"][:n])
        cases.append(("{}-b{}".format(what, n), feeds))
    return [(name, _pick(source, graph, feeds)) for name, feeds in cases]


# -- quality -------------------------------------------------------------------------------------
def quality_rows(job, sess, decode):
    """The reduced-precision rows of a point-cloud bundle: the test Chamfer (both ways, x loss_scale)
    of encoder-mean reconstructions with the fp32 and the reduced graphs, and the worst decode error."""
    from jetgen.export import onnx_tools
    from jetgen.modalities.points.codec import chamfer

    source = job.source
    clouds = source.data.test_x[:REAL_BATCH]
    x = np.ascontiguousarray(clouds[:, :source.points["encoder_points"]])
    values, decoded = {}, {}
    for which in ("fp32", "reduced"):
        mu = onnx_tools.run(sess[which]["encoder"], {"x": x})[0]
        decoded[which] = decode(which, mu, None)
        values[which] = float(np.mean(chamfer(decoded[which], clouds))) * source.points["loss_scale"]
    row = {"fp32": values["fp32"], job.precision: values["reduced"], "delta": values["reduced"] - values["fp32"],
           "unit": "Chamfer-L2 (both ways) x {:g} of encoder-mean reconstructions, {} test clouds".format(
               source.points["loss_scale"], len(clouds))}
    return row, float(np.max(np.abs(decoded["fp32"] - decoded["reduced"])))


# -- jetgen's own point-cloud runs ---------------------------------------------------------------
def run_prior(run):
    """The run's fitted latent mixture (RUN/latent_prior.json, checked) when present, else the model's own
    prior, as a manifest prior description."""
    from jetgen.train.rundir import load_latent_prior

    fitted = load_latent_prior(run.path)
    return fitted.describe() if fitted is not None else run.model.manifest_prior()


def _run_clouds(run):
    """The run's data set (the same arguments as training) as ExportData: test clouds, training clouds
    for calibration."""
    from jetgen.export.feeds import ExportData
    from jetgen.train.shapes import load_shape_dataset

    config = run.config
    sizes = dict((k, int(config[k])) for k in ("n_train", "n_test") if config.get(k) is not None)
    try:
        data = load_shape_dataset(config.get("data", "shapes"), config.get("data_dir"), seed=int(config.get("seed", 0)),
                                  **sizes)
    except JetgenError as err:
        raise JetgenError("Export measures parity on the run's data set, which cannot be loaded: {}".format(err))
    return ExportData(data.test_x.numpy(), None, data.train_x.numpy(), None, name=data.name)


def export_points_run(run, target, out, **options):
    """Export a point-cloud run (jetgen.export.from_run.export_run's options) through export_model:
    grid decoder, encoder, the hand-written Chamfer gradient, faces, the run's prior."""
    from jetgen.export.api import export_model
    from jetgen.export.losses import Chamfer
    from jetgen.export.manifest import run_provenance

    model, config = run.model, run.config
    metadata = run_provenance(run)
    if isinstance(config.get("init_from"), dict):
        metadata["init_from"] = config["init_from"]
    settings = {"patches": model.patches, "grid": model.grid, "faces": model.faces(),
                "encoder_points": model.encoder_points, "target_points": TARGET_POINTS,
                "loss_scale": model.recon_scale, "prior_weight": float(config.get("beta", 0.01))}
    return export_model(model.grid_decoder(), model.latent_dim, out, target, encoder=model.encode, output="points",
                        output_shape=model.output_shape, likelihood=Chamfer(model.latent_grad_module()),
                        prior=run_prior(run), data=_run_clouds(run), points=settings, metadata=metadata,
                        kind=model.kind, arch="atlasnet", **options)


export_run = export_points_run  # every modality's export part names its run export export_run
