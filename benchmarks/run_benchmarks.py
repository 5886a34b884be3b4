"""Train small models on the bundled digits, export them, benchmark every backend in its own process
three times, measure the golden tolerances and complete()'s stopping rule, and write
``benchmarks/results.md`` with the machine it ran on and the range of every figure over the repeats.

    python benchmarks/run_benchmarks.py                  # ~20 minutes on 2 busy CPU cores
    python benchmarks/run_benchmarks.py --backend torch,onnxruntime,ort,trt --precision fp32,fp16   # a Jetson

Models: the MLP cvae (decode latency, sampling throughput) and the conv vae (latent optimisation).
Nothing here asserts a target: the file says what the runs showed, including the machine's load.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # jetgen from this checkout

MODELS = {
    "cvae-mlp": ["cvae", "--arch", "mlp", "--latent-dim", "10", "--epochs", "10"],
    "vae-conv": ["vae", "--arch", "conv", "--latent-dim", "32", "--epochs", "3"],
}
REPEATS = 3


def jetgen(*args, capture=False):
    cmd = [sys.executable, "-m", "jetgen.cli"] + [str(a) for a in args]
    print("$ jetgen " + " ".join(str(a) for a in args), flush=True)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE if capture else None, universal_newlines=True,
                         cwd=ROOT)
    return out.stdout


def prepare(work, name, train_args, target, precision="fp32"):
    """The run (trained once) and its bundle at ``precision`` (exported once); (run, bundle)."""
    run = os.path.join(work, name)
    bundle = os.path.join(work, "{}{}.jetgen".format(name, "" if precision == "fp32" else "-" + precision))
    if not os.path.isfile(os.path.join(run, "checkpoint", "meta.json")):
        jetgen("train", *train_args, "--data", "digits", "--seed", "0", "--out", run, "--force", "--quiet")
    if not os.path.isfile(os.path.join(bundle, "manifest.json")):
        jetgen("export", run, "--target", target, "--out", bundle, "--precision", precision, "--force")
    return run, bundle


def ensure_golden(run, bundle):
    """Decoder golden vectors (prior samples at batch 1 and 64, PyTorch's outputs) when the exporter
    wrote none, in the format of docs/bundle.md, so the quality column has its reference."""
    import hashlib
    import numpy as np
    from jetgen.atomic import atomic_write_json
    from jetgen.bench.torch_ref import TorchReference
    from jetgen.spec import load_json

    manifest = load_json(os.path.join(bundle, "manifest.json"))
    entry = manifest["graphs"]["decoder"]
    if entry.get("golden"):
        return False
    ref = TorchReference(run)
    model = manifest["model"]
    folder = os.path.join(bundle, "golden")
    os.makedirs(folder, exist_ok=True)
    cases = []
    for batch in (1, 64):
        rng = np.random.RandomState(batch)
        feeds = {"z": rng.standard_normal((batch, model["latent_dim"])).astype(np.float32)}
        if model["conditional"]:
            feeds["y"] = np.eye(len(model["labels"]), dtype=np.float32)[rng.randint(0, len(model["labels"]), batch)]
        arrays = {"inputs": feeds, "outputs": {"x": ref.decode(feeds["z"], feeds.get("y"))}}
        case = {"name": "prior-b{}".format(batch)}
        for side, tensors in arrays.items():
            case[side] = {}
            for tname, value in tensors.items():
                fname = "decoder-{}-{}.npy".format(case["name"], tname)
                np.save(os.path.join(folder, fname), value.astype(np.float32), allow_pickle=False)
                digest = hashlib.sha256(open(os.path.join(folder, fname), "rb").read()).hexdigest()
                case[side][tname] = {"file": fname, "sha256": digest, "shape": list(value.shape)}
        cases.append(case)
    entry["golden"] = cases
    atomic_write_json(os.path.join(bundle, "manifest.json"), manifest)
    return True


def bench_repeats(models, args):
    """Each model benchmarked ``REPEATS`` times, the backend order alternating; {name: [result, ...]}."""
    results = dict((name, []) for name in models)
    for repeat in range(REPEATS):
        order = "forward" if repeat % 2 == 0 else "reverse"
        for name, (run, bundle) in models.items():
            threads = ["--threads", args.threads] if args.threads else []
            out = jetgen("bench", bundle, "--run", run, "--backend", args.backend, "--precision", args.precision, *threads,
                         "--min-time", args.min_time, "--complete-min-time", args.complete_min_time,
                         "--order", order, "--json", *(["--no-memory"] if repeat else []), capture=True)
            results[name].append(json.loads(out))
    return results


def overhead_repeats(run, bundle, args):
    """The runtime against the bare ONNX Runtime session at batch 1 (decode, and sample = prior draw +
    decode), with 1 thread and with the default, ``REPEATS`` times each, the order alternating;
    {threads: [result, ...]}."""
    from jetgen.runtime.backends.ort import default_threads

    out = {}
    for threads in sorted({1, default_threads()}):
        out[str(threads)] = []
        for repeat in range(REPEATS):
            text = jetgen("bench", bundle, "--run", run, "--backend", "onnxruntime,ort", "--batch-sizes", "1",
                          "--sample-batch", "1", "--tasks", "decode,sample", "--threads", threads, "--min-time",
                          args.min_time, "--order", "forward" if repeat % 2 == 0 else "reverse", "--no-memory",
                          "--no-peak", "--json", capture=True)
            out[str(threads)].append(json.loads(text))
    return out


def update_readme(path, row):
    """Replace the README's speed row (the table line that starts like ``row``) with ``row``."""
    with open(path) as handle:
        lines = handle.read().split("\n")
    key = row.split("|")[1]
    hits = [i for i, line in enumerate(lines) if line.startswith("|") and line.split("|")[1:2] == [key]]
    if len(hits) != 1:
        raise SystemExit("README.md has {} speed rows starting with {!r}; expected one".format(len(hits), key))
    lines[hits[0]] = row
    from jetgen.atomic import atomic_write_text
    atomic_write_text(path, "\n".join(lines))


import results_md  # noqa: E402  (benchmarks/, on sys.path as the script's own directory)
import studies  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default=os.path.join(ROOT, "out", "benchmarks"))
    p.add_argument("--backend", default="torch,onnxruntime,ort")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--min-time", default="1.0")
    p.add_argument("--complete-min-time", default="3.0")
    p.add_argument("--target", default="desktop")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for every backend (default: jetgen bench's, the CPUs available, at most 8).")
    p.add_argument("--results", default=os.path.join(HERE, "results.md"))
    p.add_argument("--readme", default=os.path.join(ROOT, "README.md"),
                   help="README whose speed row is rewritten from the same numbers ('' to leave it).")
    p.add_argument("--skip-studies", action="store_true", help="Only the benchmark repeats.")
    p.add_argument("--render-only", action="store_true",
                   help="Write results.md again from the raw results of the last run (WORK/raw.json).")
    p.add_argument("--resume", action="store_true",
                   help="Keep the parts WORK/raw.json already holds (repeats, studies) and measure the rest.")
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    raw_path = os.path.join(a.work, "raw.json")
    raw = {}
    if (a.render_only or a.resume) and os.path.isfile(raw_path):
        with open(raw_path) as handle:
            raw = json.load(handle)

    def save(key, value):  # after each part, so a failure later keeps what was measured
        raw[key] = value
        with open(raw_path, "w") as handle:
            json.dump(raw, handle)

    if not a.render_only:
        started = time.time() - raw.get("seconds", 0.0)
        models = dict((name, prepare(a.work, name, train_args, a.target)) for name, train_args in MODELS.items())
        golden = [name for name, (run, bundle) in models.items() if ensure_golden(run, bundle)]
        save("golden_written", sorted(set(raw.get("golden_written", []) + golden)))
        if not raw.get("overhead"):
            save("overhead", overhead_repeats(*models["cvae-mlp"], a))
        if not raw.get("runs"):
            save("runs", bench_repeats(models, a))
        if not raw.get("one_process"):
            save("one_process", studies.one_process_study(*models["cvae-mlp"], min_time=float(a.min_time),
                                                          threads=a.threads))
        if not a.skip_studies and not raw.get("tolerances"):
            save("tolerances", studies.tolerance_study(
                models, lambda name, precision: prepare(a.work, name, MODELS[name], a.target, precision)[1]))
        if not a.skip_studies and not raw.get("completion"):
            save("completion", studies.completion_study(models))
        save("seconds", time.time() - started)
    kept = open(a.results).read() if os.path.isfile(a.results) else ""
    text = results_md.render(raw["runs"], raw.get("tolerances"), raw.get("completion"), raw.get("golden_written"),
                             raw.get("seconds", 0.0), overhead=raw.get("overhead"), one_process=raw.get("one_process"),
                             kept=results_md.kept_sections(kept), runs_2threads=raw.get("runs_2threads"),
                             one_process_2threads=raw.get("one_process_2threads"),
                             overhead_before=raw.get("overhead_before_run_options"))
    from jetgen.atomic import atomic_write_text
    atomic_write_text(a.results, text)
    print("wrote " + a.results)
    if a.readme:
        update_readme(a.readme, results_md.readme_row(raw["runs"], raw.get("overhead"), raw.get("runs_2threads")))
        print("updated the speed row of " + a.readme)


if __name__ == "__main__":
    main()
