"""Completion of cut test shapes with a trained atlasnet run, through the exported bundle and the torch-free
runtime, against the issue's baselines and floors; and the same algorithm in torch for agreement.

    python benchmarks/shapes_completion.py RUN [--n 48] [--out RUN/completion]

Test shapes of the run's own split are cut by a random plane through their centre (about half kept).
Rows (Chamfer-L2 x1000 and F-scores of the whole shape): retrieval of the training shape nearest the
partial by one-sided Chamfer, the class medoid nearest the partial, the encoder applied to the partial,
and `Model.complete` (its defaults: encoder start, stopping rule) in ONNX Runtime; plus torch eager
running the runtime's objective from the same start for the same number of steps (agreement). Prints a
markdown table and the floors: completed <= 1.2 x retrieval, <= 0.5 x class centroid, <= 0.3 x encoder
on the partial, runtime within 2% of torch.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    import torch

    from jetgen.atomic import atomic_write_json
    from jetgen.bench.torch_ref import TorchReference
    from jetgen.export.from_run import export_run
    from jetgen.runtime import Model
    from jetgen.runtime.shapes import cut_by_plane
    from jetgen.train import shape_metrics as M
    from jetgen.train.rundir import load_run
    from jetgen.train.shapes import load_shape_dataset

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--n", type=int, default=48, help="test shapes cut and completed")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    out = args.out or os.path.join(args.run, "completion")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    run = load_run(args.run)
    c = run.config
    data = load_shape_dataset(c["data"], c.get("data_dir"), points=int(c.get("points", 2500)), seed=int(c["seed"]),
                              n_train=int(c.get("shapes_per_class", 300)), n_test=int(c.get("test_shapes_per_class", 80)))
    bundle = os.path.join(out, "model.jetgen")
    if not os.path.isfile(os.path.join(bundle, "manifest.json")):
        export_run(args.run, "desktop", bundle, force=True, log=lambda *a, **k: None)
    model = Model.open(bundle, intra_op_threads=1)

    pick = np.linspace(0, len(data.test_x) - 1, args.n).astype(int)
    full = data.test_x.numpy()[pick]
    partial = [cut_by_plane(cloud, rng=int(i))[0] for i, cloud in zip(pick, full)]
    rows = {}

    def score(name, clouds):
        rows[name] = M.summarise(M.reconstruction_metrics(np.asarray(clouds, dtype=np.float32), full))
        print(name, rows[name], flush=True)

    retrieval, medoid = M.partial_baselines(partial, data.train_x, data.train_y)
    score("retrieval by one-sided Chamfer from the partial", retrieval)
    score("class medoid nearest the partial", medoid)
    z_enc = model.encode(partial)[0]
    score("encoder on the partial", model.decode(z_enc))
    t0 = time.time()
    results = [model.complete(cloud) for cloud in partial]  # one call per scan, as a user would
    seconds = (time.time() - t0) / len(partial)
    score("Model.complete (runtime defaults, ONNX Runtime)", np.concatenate([r.x for r in results]))
    steps = [r.steps for r in results]

    # torch eager: the same objective from the same start, for the steps the runtime took (median)
    ref = TorchReference(args.run, threads=1)
    manifest = model.manifest
    pts = manifest["model"]["points"]
    target, mask = model.observed(partial)
    k = int(np.median(steps))
    t0 = time.time()
    z_torch, _ = ref.complete_points(target, mask, z_enc.astype(np.float32), manifest["model"]["prior"],
                                     pts["loss_scale"], pts["prior_weight"], k, 5e-2)
    torch_seconds = (time.time() - t0) / len(partial)
    z_rt = model.complete(partial, steps=k, tol=None, init=z_enc).z
    score("torch eager, same objective and steps", model.decode(z_torch))
    score("runtime, same start and steps (no stopping rule)", model.decode(z_rt))
    done = rows["Model.complete (runtime defaults, ONNX Runtime)"]["chamfer_x1000"]
    floors = {
        "completed / retrieval (<= 1.2)": done / rows["retrieval by one-sided Chamfer from the partial"]["chamfer_x1000"],
        "completed / class centroid (<= 0.5)": done / rows["class medoid nearest the partial"]["chamfer_x1000"],
        "completed / encoder on the partial (<= 0.3)": done / rows["encoder on the partial"]["chamfer_x1000"],
        "runtime / torch, same steps (within 2%)": rows["runtime, same start and steps (no stopping rule)"][
            "chamfer_x1000"] / rows["torch eager, same objective and steps"]["chamfer_x1000"],
    }
    result = {"run": os.path.abspath(args.run), "shapes": len(pick), "rows": rows, "floors": floors,
              "runtime_steps": {"median": k, "min": int(min(steps)), "max": int(max(steps))},
              "seconds_per_shape": {"runtime_defaults": seconds, "torch_same_steps": torch_seconds}}
    atomic_write_json(os.path.join(out, "completion.json"), result)
    print("\n| row | Chamfer-L2 x1000 | F@1% | F@2% |\n|---|---|---|---|")
    for name, r in rows.items():
        print("| {} | {:.2f} | {:.2f} | {:.2f} |".format(name, r["chamfer_x1000"], r["fscore@1%"], r["fscore@2%"]))
    print("\n| floor | reached |\n|---|---|")
    for name, v in floors.items():
        print("| {} | {:.2f} |".format(name, v))
    print("\nruntime steps {}; seconds per shape: runtime {:.2f}, torch {:.2f} (1 thread)".format(
        result["runtime_steps"], seconds, torch_seconds))
    print(json.dumps(floors))


if __name__ == "__main__":
    main()
