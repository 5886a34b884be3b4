"""Issue 19's study: small mesh folders that are not jetgen's procedural classes, trained with the defaults.

For each row, a folder from benchmarks/foreign_meshes.py (capsules, benches, bottles; .obj/.ply/.stl/.off
and one broken file) with N training shapes per class and the same 10 test shapes per class in every
folder; then, through the CLI, `jetgen train atlasnet --data meshes --data-dir DIR` with the defaults
(plus the row's options), `jetgen eval --json`, `jetgen export --target desktop`, and completion of the
cut test shapes through the torch-free runtime (`jetgen.runtime.Model.complete`, its defaults):

| row | folder | options |
|---|---|---|
| 10 | 3 x 10 | defaults |
| 30 | 3 x 30 | defaults (from scratch) |
| 30-base | 3 x 30 | --init-from base (the base is built once and cached; its build time is reported apart) |
| 60, 150 | 3 x 60, 3 x 150 | defaults |

Numbers: test Chamfer-L2 x1000 of the model, the retrieval oracle and the class medoid (eval), active
units, mixture COV-CD / 1-NNA; completion of each test shape cut by a random plane through its centre
against the mean-shape cloud (the medoid of all training shapes: what a model that learnt nothing
returns) and retrieval from the partial (the training shape nearest it by one-sided Chamfer); training
time (the run's wall clock, and the time estimate on its first log line); the load average.

    nice -n 15 env OMP_NUM_THREADS=1 python benchmarks/shapes_small_folders.py --out out/small [--rows 10,30]

Extra options for every training (e.g. ``--train -- --no-augment``) measure a change against the defaults.
Finished rows are reused (delete OUT/ROW to run it again); numbers go to OUT/ROW/row.json and the table
is printed as markdown.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

ROWS = {"10": (10, []), "30": (30, []), "30-base": (30, ["--init-from", "base"]), "60": (60, []),
        "150": (150, [])}
TEST_PER_CLASS = 10
MIXTURE = "fitted mixture"


def cli(*args):
    """``jetgen ARGS`` in a child process; (stdout, seconds), or exit with its output."""
    start = time.time()
    done = subprocess.run([sys.executable, "-m", "jetgen.cli"] + [str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    if done.returncode != 0:
        sys.exit("jetgen {} failed (exit {}):\n{}".format(" ".join(map(str, args)), done.returncode, done.stdout))
    return done.stdout, time.time() - start


def completion(run, bundle, n_max=60):
    """Chamfer x1000 of Model.complete, the mean-shape cloud and retrieval from the partial on the cut test
    shapes (each cut by a random plane through its centre, seeded by its index)."""
    from jetgen.runtime import Model
    from jetgen.runtime.shapes import cut_by_plane
    from jetgen.train import shape_metrics as M
    from jetgen.train.rundir import load_run
    from jetgen.train.data import load_for_run

    c = load_run(run).config
    data = load_for_run(c)
    model = Model.open(bundle, intra_op_threads=1)
    pick = np.unique(np.linspace(0, len(data.test_x) - 1, min(n_max, len(data.test_x))).astype(int))
    full = data.test_x.numpy()[pick]
    partial = [cut_by_plane(cloud, rng=int(i))[0] for i, cloud in zip(pick, full)]
    retrieval, _ = M.partial_baselines(partial, data.train_x, data.train_y)
    everyone = np.zeros(len(data.train_y), dtype=np.int64)
    mean_shape = M.medoid_baseline(np.zeros(len(pick), dtype=np.int64), data.train_x, everyone, max_shapes=len(everyone))
    start = time.time()
    completed = np.concatenate([model.complete(cloud).x for cloud in partial])
    seconds = (time.time() - start) / len(partial)

    def score(clouds):
        return float(M.summarise(M.reconstruction_metrics(np.asarray(clouds, dtype=np.float32), full))["chamfer_x1000"])

    out = {"shapes": int(len(pick)), "completed": score(completed), "mean_shape": score(mean_shape),
           "retrieval_from_partial": score(retrieval), "seconds_per_shape": seconds}
    out["over_mean_shape"] = out["completed"] / out["mean_shape"]
    out["over_retrieval"] = out["completed"] / out["retrieval_from_partial"]
    return out


def run_row(name, out, extra):
    per_class, options = ROWS[name]
    row_dir = os.path.join(out, name)
    done_file = os.path.join(row_dir, "row.json")
    if os.path.isfile(done_file):
        print("reusing {}".format(done_file), flush=True)
        with open(done_file) as handle:
            return json.load(handle)
    from foreign_meshes import write_folder

    folder = os.path.join(out, "folder-{}".format(per_class))
    if not os.path.isdir(folder):
        write_folder(folder, per_class, seed=0, test_per_class=TEST_PER_CLASS)
    run = os.path.join(row_dir, "run")
    base_seconds = None
    if "base" in options:  # build (or find) the base first, so the row's time is the fine-tuning alone
        log, base_seconds = cli("train", "atlasnet", "--data", "meshes", "--data-dir", folder, "--init-from", "base",
                                "--epochs", "1", "--passes", "1", "--force", "--out", os.path.join(row_dir, "warm"))
        print(log.splitlines()[0] if log else "", flush=True)
    print("training {} ...".format(name), flush=True)
    log, seconds = cli("train", "atlasnet", "--data", "meshes", "--data-dir", folder, "--force", "--out", run,
                       *(options + list(extra)))
    os.makedirs(row_dir, exist_ok=True)
    with open(os.path.join(row_dir, "train.log"), "w") as handle:
        handle.write(log)
    first = [line for line in log.splitlines() if line.startswith("Chose")]
    estimate = re.search(r"estimated ([0-9.]+ (?:s|minutes))", first[0]) if first else None
    result, _ = cli("eval", run, "--json", "--quiet", "--no-pictures", "--out", os.path.join(row_dir, "eval"))
    ev = json.loads(result)
    bundle = os.path.join(row_dir, "model.jetgen")
    cli("export", run, "--target", "desktop", "--out", bundle, "--force")
    comp = completion(run, bundle)
    rec = ev["reconstruction"]
    row = {"row": name, "per_class": per_class, "options": options + list(extra), "train_seconds": seconds,
           "base_build_seconds": base_seconds, "estimate": estimate.group(1) if estimate else None,
           "first_line": first[0] if first else None, "chamfer": rec["model"]["chamfer_x1000"],
           "oracle": rec["retrieval_oracle"]["chamfer_x1000"], "medoid": rec["class_medoid"]["chamfer_x1000"],
           "active_units": ev["active_units"], "latent_dim": ev["latent_dim"],
           "cov": ev["generation"][MIXTURE]["cov_cd"], "nna": ev["generation"][MIXTURE]["nna_cd"],
           "warnings": ev.get("warnings", []), "completion": comp, "load_average": os.getloadavg()}
    os.makedirs(row_dir, exist_ok=True)
    with open(done_file, "w") as handle:
        json.dump(row, handle, indent=1)
    return row


def table(rows):
    lines = ["| folder | what | Chamfer x1000 | / oracle | / medoid | active | mixture COV / 1-NNA | completion / "
             "mean shape | completion / retrieval | train time (estimate) | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["completion"]
        lines.append("| 3 x {} | {} | {:.2f} | {:.2f} | {:.2f} | {}/{} | {:.2f} / {:.2f} | {:.2f} | {:.2f} "
                     "| {:.0f} s ({}) | {:.1f} |".format(r["per_class"], " ".join(r["options"]) or "defaults", r["chamfer"],
                                         r["chamfer"] / r["oracle"], r["chamfer"] / r["medoid"], r["active_units"],
                                         r["latent_dim"], r["cov"], r["nna"], c["over_mean_shape"], c["over_retrieval"],
                                         r["train_seconds"], r["estimate"], r["load_average"][0]))
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--rows", default=",".join(ROWS))
    p.add_argument("train", nargs="*", help="extra options for every training (after --)")
    args = p.parse_args()
    rows = [run_row(name, args.out, args.train) for name in args.rows.split(",")]
    print(table(rows))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
