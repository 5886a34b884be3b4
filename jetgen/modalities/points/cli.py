"""The 3D side of ``jetgen sample``, ``interpolate`` and ``complete`` (point-cloud bundles): output
names, meshes and renders written, the completion report. jetgen.cli.generate calls these when the
bundle it opened is of the points modality (jetgen.modalities). Python 3.6 compatible, no torch.
"""
import os

import click

from jetgen.cli.output import emit_json
from jetgen.errors import JetgenError
from jetgen.modalities.points.model import CLOUD_OUTPUTS, PointModel, decoded_colours, render_sheet, save_clouds

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


def complete_points(model, input_path, out, png_path, original_path=None, **options):
    """``jetgen complete`` for a point-cloud bundle: the partial cloud in ``input_path`` completed into
    ``out`` (and a partial-vs-completed sheet in ``png_path``, with an "original" row when
    ``original_path`` holds the whole shape, in the partial's frame); returns the JSON report (with the
    Chamfer to the original when it is given)."""
    from jetgen.modalities.points.codec import read_points

    if png_path is not None and os.path.splitext(png_path)[1].lower() != ".png":
        raise JetgenError("--png must name a .png file, not {}.".format(png_path))
    partial = read_points(input_path)
    original = None if original_path is None else read_points(original_path)
    result = model.complete(partial, **options)
    paths = save_points_output(model, out, result.x, titles=["completed"])
    if png_path is not None:
        _sheet(model, png_path, partial, result.x[0], original, "partial")
        paths.append(png_path)
    report = {"out": out, "files": paths, "input": input_path, "input_points": len(partial), "steps": result.steps,
              "loss_start": float(result.history[0][0]), "loss": float(result.loss[0]),
              "chamfer": float(result.chamfer[0]), "init": options.get("init"), "seed": options.get("seed"),
              "points": int(result.x.shape[1]), "faces": len(result.faces)}
    return _with_original(report, original_path, original, result.x[0])


def _sheet(model, png_path, partial, completed, original, first):
    """The completion sheet: rows ``first`` (the input's points), "completed" (the shaded mesh) and,
    when the whole shape is known, "original" (its points), all in the model's frame."""
    clouds, colours = [partial, completed], [None, decoded_colours(model, 1)[0]]
    titles, faces = [first, "completed"], [None, model.faces]
    if original is not None:
        clouds, colours, titles, faces = clouds + [original], colours + [None], titles + ["original"], faces + [None]
    render_sheet(png_path, clouds, colours, titles, faces)


def _with_original(report, original_path, original, completed):
    """``report`` with the Chamfer (sum of both one-way mean squared distances, in the input's units
    squared) of the completed cloud to the whole shape in ``original_path``, when one was given."""
    if original is None:
        return report
    import numpy as np

    from jetgen.runtime.shapes import chamfer

    report["original"] = original_path
    report["chamfer_to_original"] = float(chamfer(np.asarray(completed, np.float64)[None],
                                                  np.asarray(original, np.float64)[None])[0])
    return report


def print_points_completion(report):
    click.echo("Completed {} ({} points) in {} steps from the {} start: loss (scaled one-sided Chamfer + prior) from "
               "{:.3f} to {:.3f}; one-sided Chamfer {:.5f}.".format(
                   report["input"], report["input_points"], report["steps"], report["init"], report["loss_start"],
                   report["loss"], report["chamfer"]))
    _print_original(report)
    click.echo("Wrote {}.".format(", ".join(report["files"])))


def _print_original(report):
    if "chamfer_to_original" in report:
        click.echo("Chamfer to the whole shape in {} (both ways): {:.5g}.".format(report["original"],
                                                                               report["chamfer_to_original"]))


# -- completion from a depth image ---------------------------------------------------------------
UP_AXES = {"+x": (1, 0, 0), "-x": (-1, 0, 0), "+y": (0, 1, 0), "-y": (0, -1, 0), "+z": (0, 0, 1), "-z": (0, 0, -1)}


def depth_options(command):
    """``--depth``, ``--intrinsics``, ``--depth-scale``, ``--object-mask``, ``--extrinsics``, ``--up`` for
    ``jetgen complete`` (point-cloud bundles)."""
    options = [
        click.option("--depth", "depth_path", default=None, type=click.Path(),
                     help="3D: complete the object seen in this depth image (16-bit PNG in mm, or .npy in metres) "
                          "instead of --input; needs --intrinsics. Pose and scale are found; the output is in the "
                          "camera's frame."),
        click.option("--intrinsics", "intrinsics_path", default=None, type=click.Path(),
                     help="camera.json: fx, fy, cx, cy (or ppx, ppy, or a 3x3 K / camera_matrix / intrinsic_matrix)."),
        click.option("--depth-scale", type=float, default=None,
                     help="Metres per depth unit [default: 0.001 for a 16-bit PNG, 1 for a float .npy]."),
        click.option("--object-mask", "object_mask_path", default=None, type=click.Path(),
                     help="A PNG of the depth image's size: nonzero pixels are the object (the rest is dropped)."),
        click.option("--extrinsics", "extrinsics_path", default=None, type=click.Path(),
                     help="T.json: a 4x4 camera-to-world matrix; points and output are then in the world frame."),
        click.option("--original", "original_path", default=None, type=click.Path(),
                     help="3D: the whole shape (.ply, .xyz, .npy) in the input's frame, when it is known: --png "
                          "adds an \"original\" row and the report its Chamfer to the completion."),
        click.option("--up", "up_axis", type=click.Choice(sorted(UP_AXES)), default=None,
                     help="The up axis of the scan's frame [default: -y (a level camera); with --extrinsics: +z]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


# jetgen complete's options that only this modality adds (jetgen.cli.generate applies them), and the one
# of them that replaces --input
complete_options = depth_options
COMPLETE_INPUT = ("depth_path", "--depth depth.png --intrinsics camera.json")


def complete_given(model, out, png_path, steps, as_json, mask_given, options):
    """``jetgen complete --depth ...``: refuse image-only options, complete, print; ``options`` holds the
    values of :func:`depth_options`."""
    if mask_given:
        raise JetgenError("--depth completes the object in the depth image: drop --mask, --mask-region and "
                          "labels (an object mask is --object-mask).")
    report = complete_depth(model, out, png_path, steps, **options)
    return emit_json(report) if as_json else print_depth_completion(report)


def complete_depth(model, out, png_path, steps, depth_path, intrinsics_path, depth_scale=None, object_mask_path=None,
                   extrinsics_path=None, up_axis=None, original_path=None):
    """``jetgen complete --depth`` for a point-cloud bundle: back-project the depth image, complete it
    with an unknown pose (jetgen.modalities.points.pose; its own POSE_STEPS unless --steps is given), write the
    shape in the camera's (or world) frame; returns the JSON report (with the transform found)."""
    import numpy as np

    from jetgen.modalities.points.codec import read_points
    from jetgen.modalities.points.depth import depth_points, read_extrinsics
    from jetgen.modalities.points.pose import CAMERA_UP, POSE_STEPS, complete_posed

    if not isinstance(model, PointModel):
        raise JetgenError("--depth is for point-cloud bundles; this bundle ({}) makes images.".format(model.kind))
    if intrinsics_path is None:
        raise JetgenError("--depth needs --intrinsics camera.json (fx, fy, cx, cy of the depth stream).")
    if png_path is not None and os.path.splitext(png_path)[1].lower() != ".png":
        raise JetgenError("--png must name a .png file, not {}.".format(png_path))
    scan, info = depth_points(depth_path, intrinsics_path, depth_scale, object_mask_path, extrinsics_path)
    original = None if original_path is None else read_points(original_path)
    viewpoint = (0.0, 0.0, 0.0)
    up = UP_AXES[up_axis] if up_axis else CAMERA_UP
    if extrinsics_path is not None:
        viewpoint = read_extrinsics(extrinsics_path)[:3, 3]
        up = UP_AXES[up_axis or "+z"]
    result = complete_posed(model, scan, up=up, viewpoint=viewpoint, steps=steps if _given("steps") else POSE_STEPS)
    paths = save_points_output(model, out, result.x, titles=["completed"])
    if png_path is not None:  # drawn in the model's frame, where the views are set up
        def to_model(points):
            return (points - result.translation).dot(result.rotation) / result.scale

        _sheet(model, png_path, to_model(scan), result.x_model[0], None if original is None else to_model(original),
               "scan")
        paths.append(png_path)
    report = {"out": out, "files": paths, "depth": depth_path, "frame": info["frame"], "input_points": len(scan),
              "image": info["image"], "intrinsics": info["intrinsics"], "points": int(result.x.shape[1]),
              "faces": len(model.faces), "up": list(up), "transform": result.as_dict(),
              "steps": result.steps, "chamfer": result.chamfer}
    report["centre"] = np.asarray(result.x[0], dtype=np.float64).mean(axis=0).tolist()
    return _with_original(report, original_path, original, result.x[0])


def _given(name):
    """True when the command line set option ``name`` (click 8's parameter source; click 7: always)."""
    ctx = click.get_current_context(silent=True)
    source = getattr(ctx, "get_parameter_source", None)
    if source is None:
        return True
    found = source(name)
    return found is None or getattr(found, "name", "") != "DEFAULT"


def print_depth_completion(report):
    t = report["transform"]
    click.echo("Completed the object in {} ({} points with depth) in {} steps: one-sided Chamfer {:.3g} ({} "
               "units squared).".format(report["depth"], report["input_points"], report["steps"], report["chamfer"],
                                        report["frame"]))
    click.echo("Found its pose: scale {:.4g}, yaw {:.1f} degrees, translation ({:.3f}, {:.3f}, {:.3f}); the shape is "
               "written in the {} frame.".format(t["scale"], t["yaw_deg"], t["translation"][0], t["translation"][1],
                                                 t["translation"][2], report["frame"]))
    _print_original(report)
    click.echo("Wrote {}.".format(", ".join(report["files"])))


def info_lines(info):
    """The 3D lines of ``jetgen info`` for a point-cloud bundle (``info`` from jetgen.runtime.bundle.describe)."""
    points = info["points"]
    return [("3D", "{} patches of a {}x{} grid: {} points and {} faces ({}) per shape".format(
                points["patches"], points["grid"], points["grid"], points["patches"] * points["grid"] ** 2,
                points["faces"]["count"], points["faces"]["file"])),
            ("3D inputs", "encoder reads {} points, completion {} observed points; loss_scale {:g}, prior_weight "
                          "{:g}".format(points["encoder_points"], points["target_points"], points["loss_scale"],
                                        points["prior_weight"]))]
