"""Train small models on the bundled digits, export them, benchmark the runtime against torch eager,
and write ``benchmarks/results.md`` with the machine it ran on.

    python benchmarks/run_benchmarks.py                # ~5 minutes on 2 CPU cores
    python benchmarks/run_benchmarks.py --backend torch,ort,trt --precision fp32,fp16   # on a Jetson with TensorRT

Models: the MLP cvae (decode latency and sampling throughput) and the conv vae (latent optimisation,
the conv decoder's gradient graph). Targets the issue set for a 2-core CPU are printed beside the
measured ratios; nothing here asserts them.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

MODELS = {
    "cvae-mlp": ["cvae", "--arch", "mlp", "--latent-dim", "10", "--epochs", "10"],
    "vae-conv": ["vae", "--arch", "conv", "--latent-dim", "32", "--epochs", "3"],
}
# (task, batch, model, minimum speed-up over torch eager) from the runtime issue, for a 2-core CPU
TARGETS = [("decode", 1, "cvae-mlp", 2.0), ("sample", 1024, "cvae-mlp", 1.5), ("complete", 64, "vae-conv", 1.8)]


def jetgen(*args, capture=False):
    cmd = [sys.executable, "-m", "jetgen.cli"] + [str(a) for a in args]
    print("$ jetgen " + " ".join(str(a) for a in args), flush=True)
    if capture:
        return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout
    subprocess.run(cmd, check=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default=os.path.join("out", "benchmarks"))
    p.add_argument("--backend", default="torch,ort")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--min-time", default="2.0")
    p.add_argument("--target", default="desktop")
    p.add_argument("--results", default=os.path.join(HERE, "results.md"))
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    results = {}
    for name, train_args in MODELS.items():
        run, bundle = os.path.join(a.work, name), os.path.join(a.work, name + ".jetgen")
        if not os.path.isfile(os.path.join(run, "checkpoint", "meta.json")):
            jetgen("train", *train_args, "--data", "digits", "--seed", "0", "--out", run, "--force", "--quiet")
        jetgen("export", run, "--target", a.target, "--out", bundle, "--force")
        out = jetgen("bench", bundle, "--run", run, "--backend", a.backend, "--precision", a.precision,
                     "--min-time", a.min_time, "--chart", os.path.join(a.work, name + "-bench.png"),
                     "--md", os.path.join(a.work, name + "-bench.md"), "--json", capture=True)
        results[name] = json.loads(out)

    lines = ["# jetgen benchmark results", "", "Written by `python benchmarks/run_benchmarks.py` on {}.".format(
        time.strftime("%Y-%m-%d %H:%M")), ""]
    machine = next(iter(results.values()))["machine"]
    lines += ["Machine: {} ({} cores), {}, Python {}.".format(machine["cpu"], machine["cores"], machine["os"],
                                                             machine["python"]),
              "Versions: " + ", ".join("{} {}".format(k, v) for k, v in sorted(machine["versions"].items()) if v), "",
              "## Against the targets", "", "| task | batch | model | torch p50 ms | runtime p50 ms | speed-up | target |",
              "|---|---|---|---|---|---|---|"]
    for task, batch, name, target in TARGETS:
        rows = results[name]["rows"]
        ref = next((r for r in rows if r["task"] == task and r["batch"] == batch and r["backend"] == "torch"), None)
        for r in rows:
            if r["task"] == task and r["batch"] == batch and r["backend"] != "torch" and r.get("p50_ms"):
                lines.append("| {} | {} | {} | {:.3f} | {:.3f} | {} | >= {}x |".format(
                    task, batch, name, ref["p50_ms"] if ref else float("nan"), r["p50_ms"],
                    "{:.2f}x".format(r["vs_torch"]) if r.get("vs_torch") else "-", target))
    mem = results["cvae-mlp"].get("memory", {})
    lines += ["", "Peak memory: `jetgen sample` {:.0f} MB (target <= 100 MB); `import torch` {:.0f} MB.".format(
        mem.get("jetgen_sample_mb") or float("nan"), mem.get("import_torch_mb") or float("nan")), ""]
    for name in results:
        with open(os.path.join(a.work, name + "-bench.md")) as handle:
            lines += ["## " + name, ""] + handle.read().splitlines()[1:] + [""]
    with open(a.results, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("wrote " + a.results)


if __name__ == "__main__":
    main()
