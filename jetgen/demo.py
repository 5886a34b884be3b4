"""``make demo``: the whole desktop-to-device path on the bundled digits, in a few minutes on a CPU.

train a CVAE -> evaluate (numbers and pictures) -> export a bundle for a Jetson Nano -> check it
offline -> in a separate process where torch cannot be imported: sample, interpolate and complete
with the runtime -> the same path for 3D shapes (jetgen.demo_shapes: a small AtlasNet VAE, sampled
meshes, completed cut shapes) -> a short benchmark against torch eager -> ``OUT/report.md`` and
``OUT/metrics.json``.

Every step runs the ``jetgen`` command line in a subprocess, exactly as a user would.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from jetgen.atomic import atomic_write_json, atomic_write_text
from jetgen.demo_shapes import report_lines as shapes_report_lines
from jetgen.demo_shapes import shapes_part

# Run a jetgen command in a process where importing torch (or other desktop-only packages) fails,
# the way it is on a Jetson without PyTorch.
TORCH_FREE = r"""
import sys
class _Block(object):
    BLOCKED = ("torch", "torchvision", "sklearn", "matplotlib", "onnx", "safetensors")
    def find_module(self, name, path=None):
        return self if name.split(".")[0] in self.BLOCKED else None
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError("blocked in the torch-free demo process: " + name)
        return None
    def load_module(self, name):
        raise ImportError(name)
sys.meta_path.insert(0, _Block())
from jetgen.cli import main
sys.argv = ["jetgen"] + sys.argv[1:]
try:
    main()
finally:
    leaked = [m for m in _Block.BLOCKED if m in sys.modules]
    assert not leaked, leaked
"""


class Step(object):
    def __init__(self, log):
        self.log = log
        self.times = {}

    def __call__(self, name, args, torch_free=False, capture_json=False):
        prefix = [sys.executable, "-c", TORCH_FREE] if torch_free else [sys.executable, "-m", "jetgen.cli"]
        cmd = prefix + [str(a) for a in args]
        shown = "jetgen " + " ".join(str(a) for a in args)
        print("\n== {}{}\n$ {}".format(name, " (torch-free process)" if torch_free else "", shown), flush=True)
        t0 = time.time()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE if capture_json else None, universal_newlines=True)
        self.times[name] = time.time() - t0
        self.log.append({"step": name, "command": shown, "seconds": round(self.times[name], 2),
                         "torch_free": torch_free, "exit": proc.returncode})
        if proc.returncode != 0 and not (name == "check" and proc.returncode == 1):  # check: 1 = not deployable
            raise SystemExit("demo step '{}' failed with exit status {}".format(name, proc.returncode))
        if capture_json:
            print(proc.stdout[-2000:] if len(proc.stdout) > 2000 else proc.stdout)
            return json.loads(proc.stdout), proc.returncode
        return None, proc.returncode


def hidden_half_errors(truth, completed, mean_image, mask):
    """Mean squared error on the hidden pixels: the completion against a mean-image fill."""
    hidden = mask == 0
    comp = float(((completed - truth) ** 2)[hidden].mean())
    fill = float(((np.broadcast_to(mean_image, truth.shape) - truth) ** 2)[hidden].mean())
    return comp, fill


def device_steps(step, out, bundle):
    """Sample, interpolate and complete real test digits in torch-free processes; (hidden-half error,
    mean-image fill's error, share of labels inferred right)."""
    from jetgen.train.data import load_digits

    # real test digits with their bottom half hidden
    data = load_digits()
    truth = data.test_x[:16].numpy()
    labels = data.test_y[:16].numpy().astype(np.int64)
    np.save(os.path.join(out, "test_digits.npy"), truth)
    np.save(os.path.join(out, "test_labels.npy"), labels)
    mean_image = data.train_x.numpy().mean(0)

    step("sample", ["sample", bundle, "--n", 80, "--labels", "all", "--seed", 0,
                    "--out", os.path.join(out, "samples.png")], torch_free=True)
    # the style of test digit 0 to that of test digit 1 (encoder means), drawn as each label's digit
    for label in (int(labels[0]), 5):
        step("interpolate", ["interpolate", bundle, "--from", os.path.join(out, "test_digits.npy") + ":0",
                             "--to", os.path.join(out, "test_digits.npy") + ":1", "--frames", 10, "--label", label,
                             "--out", os.path.join(out, "interpolation_label{}.png".format(label))], torch_free=True)
    completion, _ = step("complete", ["complete", bundle, "--input", os.path.join(out, "test_digits.npy"),
                                      "--mask-region", "bottom-half", "--labels", os.path.join(out, "test_labels.npy"),
                                      "--seed", 0, "--out", os.path.join(out, "completed.npy"), "--json"],
                         torch_free=True, capture_json=True)
    inferred, _ = step("complete, label inferred", ["complete", bundle, "--input", os.path.join(out, "test_digits.npy"),
                                                    "--mask-region", "bottom-half", "--seed", 0,
                                                    "--out", os.path.join(out, "completed_inferred.png"), "--json"],
                       torch_free=True, capture_json=True)
    step("complete (picture)", ["complete", bundle, "--input", os.path.join(out, "test_digits.npy"),
                                "--mask-region", "bottom-half", "--labels", os.path.join(out, "test_labels.npy"),
                                "--seed", 0, "--out", os.path.join(out, "completed.png")], torch_free=True)
    completed = np.load(os.path.join(out, "completed.npy"))
    mask = np.ones_like(truth)
    mask[:, :, truth.shape[2] // 2:, :] = 0
    err, fill_err = hidden_half_errors(truth, completed, mean_image, mask)
    label_acc = None
    if inferred and inferred.get("labels") is not None:
        label_acc = float(np.mean(np.asarray(inferred["labels"]) == labels))
    return err, fill_err, label_acc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/demo")
    parser.add_argument("--epochs", type=int, default=None, help="default: chosen by jetgen train from the data")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    run, bundle = os.path.join(out, "run-cvae"), os.path.join(out, "cvae.jetgen")
    log = []
    step = Step(log)
    t_start = time.time()

    # no tuning flags: batch size, learning rate and epochs are the ones train chooses from the data
    epochs = ["--epochs", args.epochs] if args.epochs else []
    step("train", ["train", "cvae", "--data", "digits"] + epochs + ["--seed", args.seed, "--out", run, "--quiet"])
    with open(os.path.join(run, "config.json")) as handle:
        config = json.load(handle)
    schedule = {k: config.get(k) for k in ("epochs", "batch_size", "lr", "latent_dim", "auto_schedule")}
    metrics, _ = step("evaluate", ["eval", run, "--json", "--out", os.path.join(out, "eval")], capture_json=True)
    step("export", ["export", run, "--target", "nano", "--out", bundle])
    check, check_rc = step("check", ["check", bundle, "--target", "nano", "--json"], capture_json=True)

    err, fill_err, label_acc = device_steps(step, out, bundle)
    shapes = shapes_part(step, out, args.seed)
    bench, _ = step("benchmark", ["bench", bundle, "--run", run, "--batch-sizes", "1,64,256", "--min-time", 0.3,
                                  "--complete-steps", 100, "--md", os.path.join(out, "bench.md"),
                                  "--chart", os.path.join(out, "bench.png"), "--json"], capture_json=True)

    summary = {
        "eval": metrics,
        "training": schedule,
        "check": {"deployable": check.get("deployable"), "exit": check_rc,
                  "findings": len(check.get("findings", [])), "need_action": _needing_action(bundle, check)},
        "completion": {"hidden_half_mse": err, "mean_fill_mse": fill_err, "ratio": err / fill_err if fill_err else None,
                       "label_inference_accuracy": label_acc},
        "bench": [{k: r.get(k) for k in ("task", "backend", "precision", "batch", "p50_ms", "throughput", "vs_torch")}
                  for r in bench["rows"]],
        "memory_mb": bench.get("memory"),
        "shapes": shapes,
        "steps": log,
        "total_seconds": round(time.time() - t_start, 1),
    }
    atomic_write_json(os.path.join(out, "metrics.json"), summary)
    write_report(out, summary, metrics)
    print("\ndemo finished in {:.0f} s: {}".format(summary["total_seconds"], os.path.join(out, "report.md")))
    print("See it in a browser: .venv/bin/jetgen serve {}   (then open http://127.0.0.1:8080/)".format(
        os.path.join(out, "cvae.jetgen")))


def _is_16bit_png(path):
    """True for a 16-bit PNG (a depth image: data, near black when viewed), which the report does not show."""
    with open(path, "rb") as handle:
        head = handle.read(25)
    return len(head) == 25 and head[24] == 16


def _pictures(out):
    names = []
    for root, _, files in os.walk(out):
        for f in sorted(files):
            if f.endswith(".png") and "engines" not in root and not _is_16bit_png(os.path.join(root, f)):
                names.append(os.path.relpath(os.path.join(root, f), out))
    return sorted(names)


def training_line(t):
    """What the demo trained with, and which of it train chose from the data (no tuning flags given)."""
    chosen = t.get("auto_schedule") or []
    return ("`jetgen train cvae --data digits` with no tuning flags: {} epochs, batch size {}, learning rate {:g}, "
            "latent size {}{}.".format(t["epochs"], t["batch_size"], t["lr"], t["latent_dim"],
                                       " ({} chosen from the data set's size)".format(
                                           ", ".join(k.replace("_", " ") for k in chosen)) if chosen else ""))


def _needing_action(bundle, check):
    """How many of the check report's findings need action, as `jetgen check` counts them."""
    from jetgen.export.check import int64_harmless, needs_action

    findings = check.get("findings", [])
    int64_ok = bool(findings) and int64_harmless(bundle, check)
    return sum(1 for f in findings if needs_action(f, int64_ok))


def bench_table_lines(rows):
    """The report's benchmark table: one row per task and batch, the median ms of torch eager, of jetgen's
    runtime on ONNX Runtime (backend 'ort') and of a bare ONNX Runtime session (backend 'onnxruntime', the
    floor) side by side, then the runtime's items/s and its ratio to torch (> 1: faster)."""
    def num(v, fmt):
        return "-" if v is None else fmt.format(v)

    cells = {}
    for r in rows:
        if r.get("p50_ms") is not None:
            cells.setdefault((r["task"], r["batch"]), {})[r["backend"]] = r
    lines = ["| task | batch | torch eager ms | jetgen runtime (ort) ms | bare ONNX Runtime session ms | "
             "runtime items/s | runtime vs torch |", "|---|---|---|---|---|---|---|"]
    for task, batch in sorted(cells, key=lambda k: (["decode", "sample", "complete"].index(k[0])
                                                    if k[0] in ("decode", "sample", "complete") else 3, k[1] or 0)):
        by = cells[(task, batch)]
        ms = lambda b: num(by.get(b, {}).get("p50_ms"), "{:.3f}")
        lines.append("| {} | {} | {} | {} | {} | {} | {} |".format(
            task, batch, ms("torch"), ms("ort"), ms("onnxruntime"), num(by.get("ort", {}).get("throughput"), "{:.0f}"),
            num(by.get("ort", {}).get("vs_torch"), "{:.2f}x")))
    return lines


def write_report(out, s, metrics):
    def num(v, fmt="{:.1f}"):
        return "-" if v is None else fmt.format(v)

    lines = ["# jetgen demo: a conditional VAE on the bundled digits, from training to a Jetson bundle", "",
             "## Training and evaluation (desktop, torch)", "",
             training_line(s["training"]), "",
             "| metric | value |", "|---|---|"]
    for key in ("neg_elbo", "recon", "kl", "iwae_nll", "baseline_nll", "active_units", "cond_accuracy",
                "classifier_accuracy"):
        if key in metrics:
            v = metrics[key]
            lines.append("| {} | {} |".format(key, num(v, "{:.3f}") if isinstance(v, float) else v))
    c = s["completion"]
    lines += ["", "## Bundle for Jetson Nano (opset 13, TensorRT 8.2)", "",
              "`jetgen check --target nano`: deployable = {}, {} findings that need action, {} that need none "
              "(`jetgen check --verbose` lists them).".format(
                  s["check"]["deployable"], s["check"]["need_action"],
                  s["check"]["findings"] - s["check"]["need_action"]), "",
              "## Runtime in a process without torch", "",
              "Completion of the hidden bottom half of 16 test digits: mean squared error {} against {} for the "
              "mean-image fill (ratio {}).".format(num(c["hidden_half_mse"], "{:.4f}"), num(c["mean_fill_mse"], "{:.4f}"),
                                                   num(c["ratio"], "{:.2f}")),
              "Label inferred from the top half alone (trying each label): {} correct.".format(
                  num(c["label_inference_accuracy"], "{:.0%}")), "",
              "## Benchmark (this machine, ONNX Runtime CPU against torch eager)", ""]
    lines += bench_table_lines(s["bench"])
    mem = s.get("memory_mb") or {}
    lines += ["", "Peak memory of `jetgen sample`: {} MB (`import torch` alone: {} MB).".format(
        num(mem.get("jetgen_sample_mb")), num(mem.get("import_torch_mb"))), ""]
    lines += shapes_report_lines(s["shapes"]) + ["## Pictures", ""]
    for name in _pictures(out):
        lines += ["### {}".format(name), "", "![{}]({})".format(name, name), ""]
    lines += ["## Steps", "", "| step | seconds | command |", "|---|---|---|"]
    for st in s["steps"]:
        lines.append("| {}{} | {} | `{}` |".format(st["step"], " (no torch)" if st["torch_free"] else "",
                                                 st["seconds"], st["command"]))
    lines += ["", "Total: {} s.".format(s["total_seconds"])]
    atomic_write_text(os.path.join(out, "report.md"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
