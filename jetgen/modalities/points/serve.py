"""The 3D half of ``jetgen serve``'s API: sample, decode, interpolate and complete for point-cloud
bundles (AtlasNet). ``jetgen.serve.api`` sends a request here for a model of the points modality (jetgen.modalities).

Shapes travel as coordinates rounded to 1/1000 of the unit sphere (what the page draws and rotates), a
base64 PNG render per shape (its shaded mesh: what a page without JavaScript canvas support, or a
test, can look at),
and the latents. The mesh faces are the same for every shape of a model, so they are sent once, in
the model's card. numpy and the standard library; Python 3.6 compatible.
"""
import base64

import numpy as np

from jetgen.errors import JetgenError
from jetgen.modalities.image.codec import encode_png
from jetgen.modalities.points.codec import cut_by_plane, patch_colours, render_view
from jetgen.serve import api as http

MAX_SHAPES = 64            # shapes in one sample/decode request (a shape is ~1,000 points)
MAX_INPUT_POINTS = 20000   # points of a partial cloud sent to complete
RENDER_SIZE = 160
DECIMALS = 3


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
    """One base64 PNG per cloud: each view side by side; a decoded shape as its shaded mesh (the
    model's faces, tinted by patch), a partial cloud (no patch structure) as points."""
    from jetgen.modalities.points.raster import render_mesh_view

    patches, per_patch = layout(model)
    colours = patch_colours(patches, per_patch)
    faces = np.asarray(model.faces) if model.faces is not None else np.zeros((0, 3), np.int64)
    out = []
    for cloud in clouds:
        if len(cloud) == len(colours) and len(faces):
            views_drawn = [render_mesh_view(cloud, faces, RENDER_SIZE, e, a, colours) for e, a in views]
        else:
            tint = colours if len(cloud) == len(colours) else None
            views_drawn = [render_view(cloud, RENDER_SIZE, e, a, tint) for e, a in views]
        image = np.concatenate(views_drawn, axis=1)
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


# -- the endpoints' 3D halves (jetgen.serve.api.Api calls them for a points model) ---------------
def sample_endpoint(api, slot, name, body):
    """POST /sample for a point-cloud model: n shapes from the prior."""
    body = http._fields(body, ("n", "labels", "temperature", "seed"))
    n = http._at_most(body.get("n", 16), MAX_SHAPES, "n")
    temperature, seed = body.get("temperature", 1.0), body.get("seed")
    seed = http.fresh_seed() if seed is None else seed
    out = slot.run(lambda m: sample(m, n, temperature, seed), api.request_timeout)
    out.update(model=name, seed=seed, temperature=temperature)
    return out


def decode_endpoint(api, slot, name, body):
    """POST /decode for a point-cloud model: the shapes of the given latents."""
    body = http._fields(body, ("z", "labels", "project"))
    if "z" not in body:
        raise http.ApiError(400, "Give z: a latent of {} numbers or a list of them.".format(slot.model.latent_dim))
    z = http._rows_at_most(body["z"], MAX_SHAPES, "latents")
    out = slot.run(lambda m: decode(m, z), api.request_timeout)
    out["model"] = name
    return out


def interpolate_endpoint(api, slot, name, body, steps, mode, seed):
    """POST /interpolate for a point-cloud model: end points are latents or clouds the encoder reads."""
    # end points: latents, or {"points": [[x, y, z], ...]} clouds the encoder reads
    a, b = [cloud(v["points"], k) if isinstance(v, dict) and "points" in v else v
            for k, v in (("a", body.get("a")), ("b", body.get("b")))]
    if a is None or b is None:
        raise http.ApiError(400, 'Give a and b: latents (lists of numbers) or clouds ({"points": [[x, y, z], ...]}).')
    out = slot.run(lambda m: interpolate(m, a, b, steps, mode, seed), api.request_timeout)
    out.update(model=name, steps=out["n"], mode=mode)
    return out


def complete_endpoint(api, slot, name, body):
    """A 3D completion: ``points`` (a partial cloud) or ``cut`` ({"z", "seed"}: the decoded shape of z
    cut by a random plane through its centre, about half kept), as a job like the image one."""
    body = http._fields(body, ("points", "cut", "steps", "lr", "tol", "init", "seed", "wait"))
    wait = http._flag(body, "wait")
    if (body.get("points") is None) == (body.get("cut") is None):
        raise http.ApiError(400, 'Give exactly one of points ([[x, y, z], ...]) or cut ({"z": LATENT, "seed": N}).')
    if body.get("cut") is not None:
        spec = http._fields(body["cut"] if isinstance(body["cut"], dict) else {}, ("z", "seed", "keep"))
        if spec.get("z") is None:
            raise http.ApiError(400, 'cut needs z: the latent of the shape to cut ({"z": LATENT, "seed": N}).')
        partial = slot.run(lambda model: cut(model, spec["z"], spec.get("seed", 0),
                                             spec.get("keep", 0.5))[0], api.request_timeout)
    else:
        partial = cloud(body["points"])
    steps = http._at_most(body.get("steps", 100), http.MAX_COMPLETE_STEPS, "steps")
    kwargs = dict((key, body[key]) for key in ("lr", "tol", "init", "seed") if body.get(key) is not None)
    kwargs["steps"] = steps

    def check(model):
        try:
            model.complete(partial, callback=http._stop_at_once, **kwargs)
        except http._Stop:
            pass
    slot.run(check, api.request_timeout)
    partial_json = np.round(partial, DECIMALS).tolist()

    def summary(model, step, z, objective, due):
        # a multistart completion optimises several starts of the one cloud: show the best so far
        objective = np.asarray(objective, dtype=np.float64)
        best = int(np.argmin(objective))
        values = {"loss": float(objective[best])}
        if due:
            points = model.decode(np.asarray(z, dtype=np.float32)[best:best + 1])
            values["render"] = render_b64(model, points)[0]
        return values

    def finish(r):
        points = slot.model.decode(np.asarray(r.z, dtype=np.float32)[:1])
        result = {"steps": r.steps, "loss": np.asarray(r.loss).tolist(),
                  "loss_start": np.asarray(r.history[0]).tolist(), "latents": np.asarray(r.z).tolist(),
                  "partial": partial_json, "points": np.round(points[0], DECIMALS).tolist(),
                  "render": render_b64(slot.model, points)[0],
                  "partial_render": render_b64(slot.model, [partial])[0]}
        return result, {"render": result["render"]}

    return api._start_job(slot, name, steps, wait,
                           lambda model, progress: model.complete(partial, callback=progress, **kwargs),
                           summary, finish)
