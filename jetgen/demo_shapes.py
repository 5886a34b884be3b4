"""The 3D part of ``make demo``: a small AtlasNet VAE on jetgen's procedural shapes, from training to
sampled meshes and a completed cut shape in a process without torch.

train (small and short: a minute or two on a CPU) -> evaluate (Chamfer against baselines, pictures) ->
export for a Jetson Nano -> check -> torch-free: sample meshes and a render, complete test shapes cut in
half by a plane, each against the class-centroid baseline, and complete a held-out shape from one depth
image (a 16-bit PNG and a camera file written here) with its pose unknown. Every step runs the jetgen command line,
through demo.Step, exactly as a user would.
"""
import os

import numpy as np

# small on purpose: the demo shows the path, benchmarks/shapes_floors.py the quality of the defaults
TRAIN_FLAGS = ["--epochs", 12, "--latent-dim", 64, "--hidden", 128, "--train-points", 256]
CUTS = 4  # test shapes cut and completed
# the depth view the demo completes: a held-out mug before a level 320x240 camera 1 m away, 0.15 m per
# model unit times a random scale in 0.7-1.4, any yaw, an offset up to half its size (as
# benchmarks/depth_completion.py poses its test shapes)
DEPTH_CAMERA = dict(fx=300.0, fy=300.0, cx=159.5, cy=119.5, width=320, height=240)
DEPTH_CLASS, DEPTH_SIZE_M, DEPTH_DISTANCE_M = "mug", 0.15, 1.0
# the shaded renders the report shows in its 3D section (paths relative to the demo's folder)
SHEETS = (("the depth image (near = light)", "shapes/depth-view/depth-preview.png"),
          ("sampled shapes", "shapes/samples.png"), ("a cut shape completed", "shapes/completed-0.png"),
          ("completed from the depth image", "shapes/depth-completion.png"))


def _chamfer(a, b):
    """Chamfer-L2 x1000 (sum of both one-way means) of two clouds, numpy (as `jetgen eval` reports it)."""
    from jetgen.modalities.points.codec import chamfer

    return 1000.0 * float(chamfer(np.asarray(a)[None], np.asarray(b)[None])[0])


def write_depth_view(out_dir, seed=0, shape_class=DEPTH_CLASS, index=0):
    """Render a held-out procedural shape (test instance ``index`` of ``shape_class``) at a random pose
    drawn from ``seed`` with a z-buffer, add the sensor model (jetgen.modalities.points.depth.simulate_sensor)
    and write what a depth camera would give: ``out_dir``/depth.png (16-bit, mm) and
    ``out_dir``/camera.json (fx, fy, cx, cy, width, height), and the whole shape in the camera's frame,
    ``out_dir``/whole.ply (for ``jetgen complete --original``). Returns a dict: the paths, the whole
    shape in the model frame (2500 points) and in the camera frame, and the true transform model ->
    camera (scale, rotation, translation, yaw_deg)."""
    import json

    from jetgen.atomic import atomic_write_text
    from jetgen.modalities.points import pose
    from jetgen.modalities.points.codec import write_points
    from jetgen.modalities.points.depth import Intrinsics, simulate_sensor, write_depth_png
    from jetgen.modalities.points.raster import render_depth
    from jetgen.train.shapes import DEFAULT_TRAIN, SHAPE_CLASSES, instance_seed, make_mesh, sample_points

    rng = np.random.RandomState(seed)
    mesh = make_mesh(shape_class, instance_seed(0, SHAPE_CLASSES.index(shape_class), DEFAULT_TRAIN + index))
    scale = DEPTH_SIZE_M * rng.uniform(0.7, 1.4)
    theta = rng.uniform(0, 2 * np.pi)
    rotation = pose.rotation_to_up(pose.CAMERA_UP).T.dot(pose.yaw(theta))
    translation = np.array([0.0, 0.0, DEPTH_DISTANCE_M]) + rng.uniform(-0.5, 0.5, 3) * scale
    cam = Intrinsics(**DEPTH_CAMERA)
    depth = simulate_sensor(render_depth(np.asarray(mesh.vertices) * scale, mesh.faces, cam, rotation, translation),
                            rng)
    os.makedirs(out_dir, exist_ok=True)
    depth_path, camera_path = os.path.join(out_dir, "depth.png"), os.path.join(out_dir, "camera.json")
    write_depth_png(depth_path, depth)
    atomic_write_text(camera_path, json.dumps(DEPTH_CAMERA, indent=1) + "\n")
    whole = sample_points(mesh, 2500, 1234)
    whole_camera = whole.dot(rotation.T) * scale + translation
    write_points(os.path.join(out_dir, "whole.ply"), whole_camera)
    return {"depth": depth_path, "intrinsics": camera_path, "original": os.path.join(out_dir, "whole.ply"),
            "pixels": int((depth > 0).sum()), "whole": whole,
            "whole_camera": whole_camera, "class": shape_class,
            "scale": float(scale), "rotation": rotation, "translation": translation,
            "yaw_deg": float(np.degrees(theta))}


def _rotation_error_deg(found, true):
    """The angle (degrees) of the rotation between two rotation matrices."""
    cos = (np.trace(np.asarray(found).T.dot(true)) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _class_centroid(train_x, train_y, classes, name):
    """The class-centroid baseline: the training shape of class ``name`` nearest its class on average
    (among its first 40, 1024 points each)."""
    members = train_x[train_y == list(classes).index(name)][:40, :1024]
    return members[int(np.argmin([sum(_chamfer(a, b) for b in members) for a in members]))]


def depth_completion(step, root, bundle, seed=0, centroid_of=None):
    """Write a depth view of a held-out shape (write_depth_view), complete it with ``jetgen complete
    --depth`` in a process without torch, and score it: Chamfer-L2 x1000 of the whole shape in the
    model's frame (the camera-frame Chamfer over the true scale squared) and the transform found
    against the true one; ``centroid_of(class name)`` gives the class-centroid baseline's cloud."""
    from jetgen.modalities.points.codec import read_points
    from jetgen.modalities.points.depth import read_depth
    from jetgen.runtime.images import write_png

    view = write_depth_view(os.path.join(root, "depth-view"), seed)
    seen = read_depth(view["depth"])  # metres, 0 = no reading; drawn near = light for a person to look at
    near, far = seen[seen > 0].min(), seen[seen > 0].max()
    write_png(os.path.join(root, "depth-view", "depth-preview.png"),
              np.round((seen > 0) * (1.0 - 0.8 * (seen - near) / max(far - near, 1e-6)) * 255).astype(np.uint8))
    done = os.path.join(root, "depth-completed.ply")
    report, _ = step("3D: complete from depth", [
        "complete", bundle, "--depth", view["depth"], "--intrinsics", view["intrinsics"], "--original", view["original"],
        "--out", done,
        "--png", os.path.join(root, "depth-completion.png"), "--json"], torch_free=True, capture_json=True)
    completed = read_points(done)
    t = report["transform"]
    return {"class": view["class"], "pixels": view["pixels"], "input_points": report["input_points"],
            "completed": _chamfer(completed, view["whole_camera"]) / view["scale"] ** 2,
            "completed_cli": 1000.0 * report["chamfer_to_original"] / view["scale"] ** 2,
            "scale_found": t["scale"], "scale_true": view["scale"],
            "yaw_found_deg": t["yaw_deg"] % 360.0, "yaw_true_deg": view["yaw_deg"] % 360.0,
            "rotation_error_deg": _rotation_error_deg(t["rotation"], view["rotation"]),
            "offset_error_m": float(np.linalg.norm(np.asarray(t["translation"]) - view["translation"])),
            "translation_true": view["translation"].tolist(), "seconds": step.times.get("3D: complete from depth"),
            "class_centroid": None if centroid_of is None else _chamfer(centroid_of(view["class"]), view["whole"]),
            "depth": os.path.relpath(view["depth"], root), "intrinsics": os.path.relpath(view["intrinsics"], root)}


def shapes_part(step, out, seed=0):
    """Run the 3D steps into ``out``/shapes; return the summary the report shows."""
    from jetgen.modalities.points.codec import cut_by_plane, write_points
    from jetgen.train.shapes import load_shape_dataset

    root = os.path.join(out, "shapes")
    os.makedirs(root, exist_ok=True)
    run, bundle = os.path.join(root, "run-atlasnet"), os.path.join(root, "atlasnet.jetgen")
    step("3D: train", ["train", "atlasnet", "--data", "shapes"] + TRAIN_FLAGS + ["--seed", seed, "--out", run, "--quiet"])
    metrics, _ = step("3D: evaluate", ["eval", run, "--max-shapes", 60, "--json", "--out", os.path.join(root, "eval")],
                      capture_json=True)
    step("3D: export", ["export", run, "--target", "nano", "--out", bundle])
    check, check_rc = step("3D: check", ["check", bundle, "--target", "nano", "--json"], capture_json=True)
    step("3D: sample meshes", ["sample", bundle, "--n", 8, "--seed", seed, "--out", os.path.join(root, "sample.obj")],
         torch_free=True)
    step("3D: sample render", ["sample", bundle, "--n", 8, "--seed", seed, "--out", os.path.join(root, "samples.png")],
         torch_free=True)

    # test shapes cut by a random plane through the centre (about half kept), completed on the device
    data = load_shape_dataset("shapes", log=None)
    test_x, test_y = data.test_x.numpy(), data.test_y.numpy()
    train_x, train_y = data.train_x.numpy(), data.train_y.numpy()
    picks = np.linspace(0, len(test_x) - 1, CUTS).astype(int)
    rows = []
    for k, i in enumerate(picks):
        partial, _ = cut_by_plane(test_x[i], np.random.RandomState(seed + k), 0.5)
        src, whole = os.path.join(root, "partial-{}.ply".format(k)), os.path.join(root, "whole-{}.ply".format(k))
        write_points(src, partial)
        write_points(whole, test_x[i][:2500])
        done = os.path.join(root, "completed-{}.npy".format(k))
        step("3D: complete", ["complete", bundle, "--input", src, "--original", whole, "--seed", seed, "--out", done,
                              "--png", os.path.join(root, "completed-{}.png".format(k))], torch_free=True)
        completed = np.load(done).reshape(-1, 3)
        centroid = _class_centroid(train_x, train_y, data.classes, data.classes[int(test_y[i])])
        rows.append({"shape": int(i), "class": data.classes[int(test_y[i])], "kept_points": int(len(partial)),
                     "completed": _chamfer(completed, test_x[i][:2500]),
                     "class_centroid": _chamfer(centroid, test_x[i][:2500])})
    depth = depth_completion(step, root, bundle, seed,
                             lambda name: _class_centroid(train_x, train_y, data.classes, name))
    return {"eval": metrics, "depth": depth, "check": {"deployable": check.get("deployable"), "exit": check_rc,
                                       "findings": len(check.get("findings", []))},
            "completion": rows, "train_flags": " ".join(str(a) for a in TRAIN_FLAGS)}


def report_lines(s):
    """Markdown lines of the 3D part for demo's report.md."""
    def num(v, fmt="{:.2f}"):
        return "-" if v is None else fmt.format(v)

    ev = s["eval"] or {}
    lines = ["## 3D shapes: a small AtlasNet VAE on the procedural shapes", "",
             "`jetgen train atlasnet --data shapes {}` (small and short for the demo; the defaults and their "
             "quality are in benchmarks/shapes_results.md).".format(s["train_flags"]), ""]
    recon = ev.get("reconstruction") or {}
    if recon:
        lines += ["Reconstruction of {} test shapes (`jetgen eval`):".format(ev.get("test_shapes")), "",
                  "| row | Chamfer-L2 x1000 | F@1% | F@2% |", "|---|---|---|---|"]
        for name, row in recon.items():
            lines.append("| {} | {} | {} | {} |".format(name.replace("_", " "), num(row.get("chamfer_x1000")),
                                                        num(row.get("fscore@1%")), num(row.get("fscore@2%"))))
        lines.append("")
    gen = ev.get("generation") or {}
    if gen:
        lines += ["Generation against the same test shapes:", "", "| samples | MMD-CD x1000 | COV-CD | 1-NNA |",
                  "|---|---|---|---|"]
        for name, row in gen.items():
            lines.append("| {} | {} | {} | {} |".format(name, num(row.get("mmd_cd_x1000")), num(row.get("cov_cd")),
                                                        num(row.get("nna_cd"))))
        lines.append("")
    lines += ["`jetgen check --target nano`: deployable = {}, {} findings.".format(
        s["check"]["deployable"], s["check"]["findings"]), "",
        "Completion in a process without torch of test shapes cut in half by a random plane (Chamfer-L2 x1000 "
        "against the whole shape; baseline: the class's most central training shape, chosen with the true class):",
        "", "| shape | class | points kept | completed | class centroid |", "|---|---|---|---|---|"]
    for r in s["completion"]:
        lines.append("| {} | {} | {} | {} | {} |".format(r["shape"], r["class"], r["kept_points"], num(r["completed"]),
                                                      num(r["class_centroid"])))
    d = s.get("depth")
    if d:
        lines += ["", "Completion from one depth image, in a process without torch: a held-out {} rendered with a "
                  "z-buffer at a random pose (scale, yaw, offset unknown to the model), with sensor noise growing with "
                  "depth squared, dropped pixels and 1 mm steps, written as `shapes/{}` and `shapes/{}`, then "
                  "`jetgen complete atlasnet.jetgen --depth {} --intrinsics {} --original depth-view/whole.ply --out "
                  "depth-completed.ply --png depth-completion.png --json` ({} s):".format(
                      d["class"], d["depth"], d["intrinsics"], d["depth"],
                                                                 d["intrinsics"], num(d["seconds"], "{:.1f}")), "",
                  "| pixels with depth | Chamfer-L2 x1000, completed | class centroid (true class and pose) | scale "
                  "found / true | yaw found / true | rotation error | offset error |", "|---|---|---|---|---|---|---|",
                  "| {} | {} | {} | {:.4f} / {:.4f} m | {:.0f} / {:.0f} deg | {:.0f} deg | {:.1f} mm |".format(
                      d["input_points"], num(d["completed"]), num(d["class_centroid"]), d["scale_found"],
                      d["scale_true"], d["yaw_found_deg"], d["yaw_true_deg"], d["rotation_error_deg"],
                      1000.0 * d["offset_error_m"]),
                  "", "(Chamfer in the model's frame: the camera-frame Chamfer over the true scale squared.)"]
    lines += ["", "Shaded meshes drawn by the numpy renderer (the bundle's triangles, z-buffered, lit):", ""]
    for name, path in SHEETS:
        lines += ["![{}]({})".format(name, path), ""]
    return lines
