"""The 3D side of ``jetgen sample``, ``interpolate`` and ``complete`` (point-cloud bundles): output
names, meshes and renders written, the completion report. jetgen.cli.generate calls these when the
bundle it opened is a jetgen.runtime.points.PointModel. Python 3.6 compatible, no torch.
"""
import os

import click

from jetgen.cli.output import emit_json
from jetgen.errors import JetgenError
from jetgen.runtime.points import CLOUD_OUTPUTS, PointModel, decoded_colours, save_clouds

IMAGE_OUTPUTS = (".png", ".npy")

scene_option = click.option("--scene", is_flag=True,
                            help="3D: write all shapes into one .obj/.ply/.xyz file, side by side, instead of one "
                                 "file per shape.")


def check_any_out(path):
    """Refuse, before any work, an output no bundle can write (images: .png/.npy; 3D: also meshes)."""
    if os.path.splitext(path)[1].lower() not in IMAGE_OUTPUTS + CLOUD_OUTPUTS:
        raise JetgenError("Cannot write {}: the output must end in {}.".format(
            path, ", ".join(sorted(set(IMAGE_OUTPUTS + CLOUD_OUTPUTS)))))
    return path


def points_model(model, out=None):
    """True for a point-cloud bundle; JetgenError when ``out`` is a 3D file for an image bundle."""
    if isinstance(model, PointModel):
        return True
    if out is not None and os.path.splitext(out)[1].lower() not in IMAGE_OUTPUTS:
        raise JetgenError("This bundle ({}) makes images: write a .png or .npy, not {}.".format(model.kind, out))
    return False


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
    from jetgen.runtime.points import render_sheet
    from jetgen.runtime.shapes import read_points

    if png_path is not None and os.path.splitext(png_path)[1].lower() != ".png":
        raise JetgenError("--png must name a .png file, not {}.".format(png_path))
    partial = read_points(input_path)
    result = model.complete(partial, **options)
    paths = save_points_output(model, out, result.x, titles=["completed"])
    if png_path is not None:
        render_sheet(png_path, [partial, result.x[0]], [None, decoded_colours(model, 1)[0]], ["partial", "completed"],
                     [None, model.faces])
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

