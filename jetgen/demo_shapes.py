"""The 3D part of ``make demo``: a small AtlasNet VAE on jetgen's procedural shapes, from training to
sampled meshes and a completed cut shape in a process without torch.

train (small and short: a minute or two on a CPU) -> evaluate (Chamfer against baselines, pictures) ->
export for a Jetson Nano -> check -> torch-free: sample meshes and a render, complete test shapes cut in
half by a plane, each against the class-centroid baseline. Every step runs the jetgen command line,
through demo.Step, exactly as a user would.
"""
import os

import numpy as np

# small on purpose: the demo shows the path, benchmarks/shapes_floors.py the quality of the defaults
TRAIN_FLAGS = ["--epochs", 12, "--latent-dim", 64, "--hidden", 128, "--train-points", 256]
CUTS = 4  # test shapes cut and completed


def _chamfer(a, b):
    """Chamfer-L2 x1000 (sum of both one-way means) of two clouds, numpy (as `jetgen eval` reports it)."""
    from jetgen.modalities.points.codec import chamfer

    return 1000.0 * float(chamfer(np.asarray(a)[None], np.asarray(b)[None])[0])


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
        src = os.path.join(root, "partial-{}.ply".format(k))
        write_points(src, partial)
        done = os.path.join(root, "completed-{}.npy".format(k))
        step("3D: complete", ["complete", bundle, "--input", src, "--seed", seed, "--out", done,
                              "--png", os.path.join(root, "completed-{}.png".format(k))], torch_free=True)
        completed = np.load(done).reshape(-1, 3)
        # the class-centroid baseline: the training shape of the true class nearest its class on average
        members = train_x[train_y == test_y[i]][:40, :1024]
        centroid = members[int(np.argmin([sum(_chamfer(a, b) for b in members) for a in members]))]
        rows.append({"shape": int(i), "class": data.classes[int(test_y[i])], "kept_points": int(len(partial)),
                     "completed": _chamfer(completed, test_x[i][:2500]),
                     "class_centroid": _chamfer(centroid, test_x[i][:2500])})
    return {"eval": metrics, "check": {"deployable": check.get("deployable"), "exit": check_rc,
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
    return lines + [""]
