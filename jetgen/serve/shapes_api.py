"""The 3D half of ``jetgen serve``'s API: sample, decode, interpolate and complete for point-cloud
bundles (AtlasNet). ``jetgen.serve.api`` sends a request here when the model's output is points.

Shapes travel as coordinates rounded to 1/1000 of the unit sphere (what the page draws and rotates), a
base64 PNG render per shape (what a page without JavaScript canvas support, or a test, can look at),
and the latents. The mesh faces are the same for every shape of a model, so they are sent once, in
the model's card. numpy and the standard library; Python 3.6 compatible.
"""
import base64

import numpy as np

from jetgen.errors import JetgenError
from jetgen.runtime.images import encode_png
from jetgen.runtime.shapes import cut_by_plane, patch_colours, render_view

MAX_SHAPES = 64            # shapes in one sample/decode request (a shape is ~1,000 points)
MAX_INPUT_POINTS = 20000   # points of a partial cloud sent to complete
RENDER_SIZE = 160
DECIMALS = 3


def is_points(model):
    """Whether ``model`` decodes point clouds (a jetgen.runtime.points.PointModel) rather than images."""
    return isinstance(getattr(model, "points", None), dict)


def layout(model):
    """(patches, points per patch) of a 3D model's decoded clouds."""
    return int(model.points["patches"]), int(model.patch_size)


def card(model):
    """The card fields of a 3D model: what its output is and the mesh faces the page draws with."""
    patches, per_patch = layout(model)
    return {"output": {"type": "points", "shape": list(model.output_shape), "patches": patches,
                       "grid": int(model.points["grid"]), "points_per_patch": per_patch,
                       "faces": np.asarray(model.faces).tolist()}}


def render_b64(model, clouds, views=((20.0, -45.0),)):
    """One base64 PNG per cloud: each view side by side, points coloured by patch."""
    patches, per_patch = layout(model)
    colours = patch_colours(patches, per_patch)
    out = []
    for cloud in clouds:
        tint = colours if len(cloud) == len(colours) else None  # a partial cloud has no patch structure
        image = np.concatenate([render_view(cloud, RENDER_SIZE, e, a, tint) for e, a in views], axis=1)
        out.append(base64.b64encode(encode_png(image)).decode("ascii"))
    return out


def shapes_json(model, points, z):
    """The response body of a request that produced ``points`` (n, N, 3) from latents ``z``."""
    points = np.asarray(points, dtype=np.float32)
    return {"n": len(points), "points": np.round(points, DECIMALS).tolist(), "renders": render_b64(model, points),
            "latents": np.asarray(z, dtype=np.float32).tolist()}


def sample(model, n, temperature, seed):
    points, z = model.sample(n, temperature=temperature, seed=seed, return_latents=True)
    return shapes_json(model, points, z)


def decode(model, z):
    points = model.decode(z)
    return shapes_json(model, points, np.asarray(z, dtype=np.float32).reshape(len(points), -1))


def cloud(value, what="points"):
    """A partial cloud (M, 3) float32 from a JSON list of [x, y, z] rows; JetgenError when it is not one."""
    if not isinstance(value, list) or not value:
        raise JetgenError("Give {}: a list of [x, y, z] points.".format(what))
    if len(value) > MAX_INPUT_POINTS:
        raise JetgenError("The {} hold {} points; this server takes at most {} (subsample them first).".format(
            what, len(value), MAX_INPUT_POINTS))
    try:
        points = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise JetgenError("The {} must be a list of [x, y, z] rows of numbers.".format(what))
    if points.ndim != 2 or points.shape[1] != 3:
        raise JetgenError("The {} must be rows of 3 numbers (x, y, z), not an array of shape {}.".format(
            what, tuple(points.shape)))
    if not np.isfinite(points).all():
        raise JetgenError("The {} hold NaN or infinite coordinates.".format(what))
    return points


def interpolate(model, a, b, steps, mode, seed):
    points, z = model.interpolate(a, b, steps=steps, mode=mode, seed=seed)
    return shapes_json(model, points, z)


def cut(model, z, seed, keep=0.5):
    """The decoded shape of latent ``z`` cut by a random plane through its centre: (kept (M, 3), normal)."""
    points = model.decode(np.asarray(z, dtype=np.float32).reshape(1, -1))[0]
    return cut_by_plane(points, np.random.RandomState(seed), keep)
