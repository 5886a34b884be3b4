"""The 3D side of ``jetgen sample``, ``interpolate`` and ``complete`` (point-cloud bundles): output
names, meshes and renders written, the completion report. jetgen.cli.generate calls these when the
bundle it opened is of the points modality (jetgen.modalities). Python 3.6 compatible, no torch.
"""
import os

import click

from jetgen.cli.output import emit_json
from jetgen.errors import JetgenError
from jetgen.modalities.points.model import CLOUD_OUTPUTS, decoded_colours, save_clouds

OUTPUTS = CLOUD_OUTPUTS  # what --out may name for a point-cloud bundle


def read_endpoint(text):
    """An interpolation end point given as a file: a cloud (.ply, .xyz, .npy) the encoder reads."""
    from jetgen.modalities.points.codec import read_points

    return read_points(text)


def save_points_output(model, out, clouds, scene=False, titles=None):
    """Decoded clouds of ``model`` to ``out`` (meshes with the bundle's faces); the paths written."""
    return save_clouds(out, clouds, model.faces, decoded_colours(model, len(clouds)), titles, scene)


def sample_points(model, n, seed, drawn, temperature, out, scene, as_json):
    """``jetgen sample`` for a point-cloud bundle: n shapes from the prior."""
    clouds = model.sample(n, temperature=temperature, seed=seed)
    paths = save_points_output(model, out, clouds, scene, ["sample {}".format(i) for i in range(n)])
    if as_json:
        emit_json({"out": out, "files": paths, "n": n, "shape": list(clouds.shape), "faces": len(model.faces),
                   "seed": seed, "seed_drawn": drawn, "temperature": temperature})
        return
    click.echo("Wrote {} shape{} ({} points, {} faces each) to {} (seed {}{}).".format(
        n, "" if n == 1 else "s", clouds.shape[1], len(model.faces), _files(paths), seed,
        ": pass --seed {} to draw them again".format(seed) if drawn else ""))


def _files(paths):
    return paths[0] if len(paths) == 1 else "{} .. {}".format(paths[0], paths[-1])


def complete_points(model, input_path, out, png_path, **options):
    """``jetgen complete`` for a point-cloud bundle: the partial cloud in ``input_path`` completed into
    ``out`` (and a partial-vs-completed sheet in ``png_path``); returns the JSON report."""
    from jetgen.modalities.points.model import render_sheet
    from jetgen.modalities.points.codec import read_points

    if png_path is not None and os.path.splitext(png_path)[1].lower() != ".png":
        raise JetgenError("--png must name a .png file, not {}.".format(png_path))
    partial = read_points(input_path)
    result = model.complete(partial, **options)
    paths = save_points_output(model, out, result.x, titles=["completed"])
    if png_path is not None:
        render_sheet(png_path, [partial, result.x[0]], [None, decoded_colours(model, 1)[0]], ["partial", "completed"])
        paths.append(png_path)
    return {"out": out, "files": paths, "input": input_path, "input_points": len(partial), "steps": result.steps,
            "loss_start": float(result.history[0][0]), "loss": float(result.loss[0]),
            "chamfer": float(result.chamfer[0]), "init": options.get("init"), "seed": options.get("seed"),
            "points": int(result.x.shape[1]), "faces": len(result.faces)}


def print_points_completion(report):
    click.echo("Completed {} ({} points) in {} steps from the {} start: loss (scaled one-sided Chamfer + prior) from "
               "{:.3f} to {:.3f}; one-sided Chamfer {:.5f}.".format(
                   report["input"], report["input_points"], report["steps"], report["init"], report["loss_start"],
                   report["loss"], report["chamfer"]))
    click.echo("Wrote {}.".format(", ".join(report["files"])))

