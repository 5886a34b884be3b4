"""Completion from one rendered depth view with sensor noise and an unknown pose, torch-free, against
baselines given the true pose.

    python benchmarks/depth_completion.py BUNDLE [--per-class 4] [--foreign 12] [--out DIR]

BUNDLE: an exported point-cloud bundle trained on the procedural ``shapes`` set (its default split).
Test shapes: the held-out procedural meshes of every class, and a folder of meshes made here from
trimesh primitives (boxes, cylinders, cones, capsules, tori, spheres and unions of two; not jetgen's
generator), written to DIR/foreign. Each mesh, normalised as the training shapes are (bounding-box
centre at 0, farthest vertex at 1), is given a random pose in front of a level camera (320x240,
fx = fy = 300): a size of 0.15 m times a scale in 0.7-1.4, any yaw, an offset up to half its size,
1.0 m away; rendered with a z-buffer (jetgen.modalities.points.raster), then the sensor model
(jetgen.modalities.points.depth.simulate_sensor: sigma 2 mm at 1 m growing with d^2, 2% dropped, half the
silhouette pixels dropped, 1 mm quantisation) and back-projected. The camera looks down by --pitch
degrees (20), which it knows (as a robot does from its joints): the up axis passed is its -y tilted so.

Rows (Chamfer-L2 x1000 of the whole shape in the model's normalised frame: the camera-frame Chamfer
divided by the true scale squared; and seconds per shape):
- "depth completion (pose found)": jetgen.modalities.points.pose.complete_posed, the pose unknown;
- "latent completion, true pose": Model.complete of the scan mapped by the true transform;
- baselines given the TRUE pose (stronger than they could be on a robot): retrieval of the training
  shape nearest the mapped scan by one-sided Chamfer, the class medoid nearest it, the encoder on it.
Pictures: DIR/depth-*.png (the depth image), DIR/sheet-*.png (scan, completed, retrieval, original).
Prints a markdown table; writes DIR/depth_completion.json.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CAMERA = dict(fx=300.0, fy=300.0, cx=159.5, cy=119.5, width=320, height=240)
SIZE_M = 0.15  # metres per model unit before the random scale
DISTANCE_M = 1.0


def foreign_meshes(n, seed=0):
    """``n`` trimesh-primitive meshes (a small generator of our own): one or two primitives of random
    size, the second attached off-centre; normalised like the training shapes."""
    import trimesh

    rng = np.random.RandomState(seed)
    makers = [
        lambda: trimesh.creation.box(extents=rng.uniform(0.3, 1.0, 3)),
        lambda: trimesh.creation.cylinder(radius=rng.uniform(0.15, 0.5), height=rng.uniform(0.3, 1.2), sections=24),
        lambda: trimesh.creation.cone(radius=rng.uniform(0.2, 0.5), height=rng.uniform(0.4, 1.0), sections=24),
        lambda: trimesh.creation.capsule(height=rng.uniform(0.2, 0.8), radius=rng.uniform(0.1, 0.35)),
        lambda: trimesh.creation.torus(major_radius=rng.uniform(0.3, 0.5), minor_radius=rng.uniform(0.06, 0.15)),
        lambda: trimesh.creation.icosphere(subdivisions=2, radius=rng.uniform(0.2, 0.5)),
    ]
    out = []
    for i in range(n):
        parts = [makers[i % len(makers)]()]
        if i >= len(makers):  # the second round: a union of two, one moved off-centre
            extra = makers[rng.randint(len(makers))]()
            extra.apply_translation(rng.uniform(-0.4, 0.4, 3))
            parts.append(extra)
        mesh = trimesh.util.concatenate(parts)
        turn = trimesh.transformations.rotation_matrix(rng.uniform(0, np.pi), [1, 0, 0])
        mesh.apply_transform(turn)
        v = np.asarray(mesh.vertices) - 0.5 * (mesh.vertices.min(axis=0) + mesh.vertices.max(axis=0))
        mesh.vertices = v / np.sqrt((v * v).sum(1).max())
        out.append(mesh)
    return out


def pitched(pitch_deg):
    """The camera's rotation for a camera looking down by ``pitch_deg`` (about its x axis)."""
    a = np.radians(pitch_deg)
    return np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])


def random_pose(rng, pitch_deg):
    """(scale (metres per model unit), rotation model->camera (3, 3), translation (3,), yaw) in front of a
    camera looking down by ``pitch_deg``."""
    from jetgen.modalities.points import pose

    scale = SIZE_M * rng.uniform(0.7, 1.4)
    theta = rng.uniform(0, 2 * np.pi)
    rotation = pitched(pitch_deg).dot(pose.rotation_to_up(pose.CAMERA_UP).T.dot(pose.yaw(theta)))
    offset = rng.uniform(-0.5, 0.5, 3) * scale  # up to half the object's size (its radius is 1 model unit)
    return scale, rotation, np.array([0.0, 0.0, DISTANCE_M]) + offset, theta


def scan_of(mesh, rng, pitch_deg):
    from jetgen.modalities.points.depth import Intrinsics, backproject, simulate_sensor
    from jetgen.modalities.points.raster import render_depth

    cam = Intrinsics(**CAMERA)
    scale, rotation, translation, theta = random_pose(rng, pitch_deg)
    ideal = render_depth(np.asarray(mesh.vertices) * scale, mesh.faces, cam, rotation, translation)
    depth = simulate_sensor(ideal, rng)
    return depth, backproject(depth, cam), (scale, rotation, translation, theta)


def cd1000(a, b):
    from jetgen.runtime.shapes import chamfer

    return 1000.0 * float(chamfer(np.asarray(a, np.float64)[None], np.asarray(b, np.float64)[None])[0])


def main(argv=None):
    from jetgen.runtime import Model
    from jetgen.runtime.images import write_png
    from jetgen.runtime.points import decoded_colours, render_sheet
    from jetgen.modalities.points.pose import CAMERA_UP, complete_posed
    from jetgen.train import shape_metrics as M
    from jetgen.train.shapes import (DEFAULT_TRAIN, SHAPE_CLASSES, instance_seed, load_shape_dataset, make_mesh,
                                     sample_points)

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("--per-class", type=int, default=4, help="held-out procedural meshes per class")
    p.add_argument("--foreign", type=int, default=12, help="trimesh-primitive meshes")
    p.add_argument("--steps", type=int, default=None, help="complete_posed steps [default: its own]")
    p.add_argument("--pictures", type=int, default=4, help="sheets written per set")
    p.add_argument("--pitch", type=float, default=20.0, help="degrees the camera looks down (known, as on a robot)")
    p.add_argument("--yaw-starts", type=int, default=None, help="complete_posed yaw starts [default: its own]")
    p.add_argument("--scale-range", type=float, default=None, help="complete_posed scale_range [default: its own]")
    p.add_argument("--out", default="depth-completion")
    args = p.parse_args(argv)
    os.makedirs(os.path.join(args.out, "foreign"), exist_ok=True)
    model = Model.open(args.bundle, intra_op_threads=1)
    data = load_shape_dataset("shapes", log=None)
    train_x, train_y = data.train_x.numpy(), data.train_y.numpy()
    points = model.output_shape[0]
    sets = {"procedural": [], "foreign": []}
    for ci, name in enumerate(data.classes):
        for j in range(args.per_class):
            mesh = make_mesh(name, instance_seed(0, SHAPE_CLASSES.index(name), DEFAULT_TRAIN + j))
            sets["procedural"].append(("{}-{}".format(name, j), mesh))
    for j, mesh in enumerate(foreign_meshes(args.foreign)):
        mesh.export(os.path.join(args.out, "foreign", "prim-{}.obj".format(j)))
        sets["foreign"].append(("prim-{}".format(j), mesh))

    rng = np.random.RandomState(0)
    report = {}
    for set_name, meshes in sets.items():
        rows = dict((k, []) for k in ("posed", "true_pose", "retrieval", "medoid", "encoder"))
        seconds, scale_err, yaw_err = [], [], []
        scans_model, wholes, done = [], [], []
        shown = set(np.linspace(0, len(meshes) - 1, min(args.pictures, len(meshes))).astype(int).tolist())
        for k, (tag, mesh) in enumerate(meshes):
            whole = sample_points(mesh, 2500, 1234 + k)
            depth, scan, (s, r, t, theta) = scan_of(mesh, rng, args.pitch)
            truth_cam = whole.dot(r.T) * s + t
            kw = {"up": pitched(args.pitch).dot(CAMERA_UP)}  # the tilt is known: the up axis in the camera frame
            kw.update({} if args.steps is None else {"steps": args.steps})
            kw.update({} if args.yaw_starts is None else {"yaw_starts": args.yaw_starts})
            kw.update({} if args.scale_range is None else {"scale_range": args.scale_range})
            t0 = time.time()
            res = complete_posed(model, scan, **kw)
            seconds.append(time.time() - t0)
            rows["posed"].append(cd1000(res.x[0], truth_cam) / s ** 2)
            scale_err.append(res.scale / s)
            yaw_err.append(float(np.degrees(np.arccos(np.clip((np.trace(res.rotation.T.dot(r)) - 1) / 2, -1, 1)))))
            seen = (scan - t).dot(r) / s  # the scan in the model frame, by the true pose
            truth = model.complete(seen)
            rows["true_pose"].append(cd1000(truth.x[0], whole))
            scans_model.append(seen)
            wholes.append(whole)
            done.append(((res.x[0] - t).dot(r) / s, truth.x[0]))
            if k in shown:
                write_png(os.path.join(args.out, "depth-{}-{}.png".format(set_name, tag)),
                          np.round(np.clip(1.0 - (depth - 0.7) / 0.6, 0, 1) * 255 * (depth > 0)).astype(np.uint8))
            print(set_name, tag, "posed {:.2f} true-pose {:.2f} scale x{:.2f} rot err {:.0f} deg {:.2f} s".format(
                rows["posed"][-1], rows["true_pose"][-1], scale_err[-1], yaw_err[-1], seconds[-1]), flush=True)
        retrieval, medoid = M.partial_baselines(scans_model, train_x, train_y)
        encoded = model.decode(model.encode(scans_model)[0]) if model.has_encoder else None
        for i, whole in enumerate(wholes):
            rows["retrieval"].append(cd1000(retrieval[i][:points], whole))
            rows["medoid"].append(cd1000(medoid[i][:points], whole))
            if encoded is not None:
                rows["encoder"].append(cd1000(encoded[i], whole))
        for i in sorted(shown):
            colours = decoded_colours(model, 1)[0]
            render_sheet(os.path.join(args.out, "sheet-{}-{}.png".format(set_name, meshes[i][0])),
                         [scans_model[i], done[i][0], retrieval[i][:points], wholes[i]],
                         [None, colours, None, None], ["scan", "completed", "retrieval", "original"],
                         [None, model.faces, None, None])
        report[set_name] = {"shapes": len(wholes), "cd_x1000": dict((k, float(np.mean(v))) for k, v in rows.items()
                                                                  if v),
                            "cd_x1000_median": dict((k, float(np.median(v))) for k, v in rows.items() if v),
                            "cd_x1000_each": dict((k, [float(x) for x in v]) for k, v in rows.items() if v),
                            "names": [m[0] for m in meshes],
                            "seconds_per_shape": float(np.mean(seconds)), "scale_ratio_median": float(
                                np.median(scale_err)), "rotation_error_median_deg": float(np.median(yaw_err))}
    with open(os.path.join(args.out, "depth_completion.json"), "w") as handle:
        json.dump(report, handle, indent=1)
    names = {"posed": "depth completion, pose found (jetgen.modalities.points.pose)",
             "true_pose": "latent completion given the true pose (Model.complete)",
             "retrieval": "retrieval from the partial (true pose)", "medoid": "class medoid nearest (true pose)",
             "encoder": "encoder on the partial (true pose)"}
    print("\n| method | " + " | ".join("{0} CD x1000 mean | {0} median".format(s) for s in report) + " |")
    print("|---|" + "---|---|" * len(report))
    for key, label in names.items():
        print("| {} | {} |".format(label, " | ".join(
            "{:.2f} | {:.2f}".format(report[s]["cd_x1000"][key], report[s]["cd_x1000_median"][key])
            if key in report[s]["cd_x1000"] else "- | -" for s in report)))
    for s, r in report.items():
        print("{}: {} shapes, {:.2f} s per shape (1 thread), scale found / true median {:.2f}, rotation error "
              "median {:.0f} degrees".format(s, r["shapes"], r["seconds_per_shape"], r["scale_ratio_median"],
                                             r["rotation_error_median_deg"]))


if __name__ == "__main__":
    main()
