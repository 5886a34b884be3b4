"""``jetgen bench BUNDLE``: latency and throughput of a bundle per backend and precision, against
PyTorch eager on the same machine in the same run.

Tasks: ``decode`` at each batch size, ``sample`` (prior draw + decode) at the sampling batch,
``complete`` (latent optimisation steps on masked inputs). The torch reference runs the run
directory the bundle came from (``--run``, default the manifest's provenance) and is skipped with a
note when torch or the run is missing (as on a Jetson without torch). Also measured: peak memory of
a ``jetgen sample`` process and of ``import torch``, and on a Jetson GPU load and board power through
jetson-stats when installed. Results: a table, ``--json``, ``--md FILE``, ``--chart FILE.png``.
Python 3.6 compatible; torch, matplotlib and jtop are imported only when used.
"""
import json
import os
import subprocess
import sys
import tempfile
import threading

import click
import numpy as np

from jetgen.atomic import atomic_write_json, atomic_write_text
from jetgen.errors import JetgenError
from jetgen.runtime.benchstats import ratio, summarize, time_calls
from jetgen.runtime.device_info import describe

TASKS = ("decode", "sample", "complete")
COLUMNS = ("task", "backend", "precision", "batch", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "std_ms",
           "throughput", "vs_torch", "status")


def _csv_ints(text, what):
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise JetgenError("{} must be a comma-separated list of whole numbers, not {!r}.".format(what, text))
    if not values or min(values) < 1:
        raise JetgenError("{} must hold positive whole numbers.".format(what))
    return values


class TorchReference(object):
    """The same model in PyTorch eager, from the run directory (desktop only)."""

    def __init__(self, run_dir, threads=None):
        import torch  # noqa: F401  (fails fast when torch is absent)
        from jetgen.train.rundir import load_run

        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        self.run = load_run(run_dir)
        self.model = self.run.model.eval()

    def _y(self, labels):
        if labels is None:
            return None
        return self.torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32))

    def decode(self, z, y=None):
        with self.torch.inference_mode():
            return self.model.decode(self.torch.from_numpy(z), self._y(y)).numpy()

    def sample(self, n, y=None, generator=None):
        with self.torch.inference_mode():
            z = self.model.prior_sample(n, generator=generator)
            return self.model.decode(z, self._y(y)).numpy()

    def complete(self, x, mask, y, z0, prior, steps, lr):
        """The runtime's loop written with torch autograd: Adam on z, masked NLL + gaussian prior term."""
        torch = self.torch
        target, m = torch.from_numpy(x), torch.from_numpy(mask)
        yt = self._y(y)
        z = torch.tensor(z0, requires_grad=True)
        opt = torch.optim.Adam([z], lr=lr)
        mean = torch.tensor(np.asarray(prior["params"].get("mean", 0.0), dtype=np.float32))
        std = torch.tensor(np.asarray(prior["params"].get("std", 1.0), dtype=np.float32))
        for _ in range(steps):
            opt.zero_grad()
            loss = self.model.nll(self.model.decode_logits(z, yt), target, m)
            if prior["family"] == "gaussian":
                loss = loss + 0.5 * (((z - mean) / std) ** 2).sum(1)
            loss.sum().backward()
            opt.step()
        return z.detach().numpy()


class JetsonMonitor(object):
    """Polls jetson-stats (jtop) in a thread while a task runs: mean board power (mW), GPU load (%)."""

    def __init__(self):
        self.available = False
        try:
            from jtop import jtop  # noqa: F401
            self.available = True
        except Exception:  # jetson-stats absent or its service not running
            pass
        self._samples, self._stop, self._thread = [], None, None

    def __enter__(self):
        if not self.available:
            return self
        from jtop import jtop

        self._stop = threading.Event()

        def poll():
            try:
                with jtop() as j:
                    while not self._stop.is_set() and j.ok():
                        power = j.power.get("tot", {}).get("power")
                        self._samples.append((power, j.stats.get("GPU")))
            except Exception:  # monitoring must never break the benchmark
                pass

        self._thread = threading.Thread(target=poll)
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
        return False

    def result(self):
        powers = [p for p, _ in self._samples if p is not None]
        gpus = [g for _, g in self._samples if g is not None]
        return {"power_mw": float(np.mean(powers)) if powers else None,
                "gpu_load": float(np.mean(gpus)) if gpus else None}


def peak_memory_mb(argv):
    """Peak resident memory (MB) of a child process running ``argv``, measured by a tiny wrapper
    process so that nothing else this process ran counts. None where ``resource`` is missing."""
    code = ("import resource, subprocess, sys\n"
            "rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    try:
        out = subprocess.check_output([sys.executable, "-c", code] + list(argv), timeout=600)
        rc, kb = out.decode().split()
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    if int(rc) != 0:
        return None
    return int(kb) / 1024.0


def _labels_for(model, n, rng):
    if not model.conditional:
        return None
    return np.eye(len(model.labels), dtype=np.float32)[rng.randint(0, len(model.labels), n)]


def _row(task, backend, precision, batch, samples, status="ok", extra=None):
    row = {"task": task, "backend": backend, "precision": precision, "batch": batch, "status": status}
    if samples:
        row.update(summarize(samples, batch))
    if extra:
        row.update(extra)
    return row


def run_benchmark(bundle, backends=("torch", "ort"), precisions=("fp32",), batch_sizes=(1, 8, 64, 256),
                  sample_batch=1024, complete_batch=64, complete_steps=100, complete_lr=5e-2, warmup=5,
                  min_time=1.0, max_iters=1000, run_dir=None, threads=None, memory=True, tasks=TASKS,
                  progress=None):
    """Measure every (task, backend, precision, batch) and return {"machine", "bundle", "rows", "notes"}.

    Raises JetgenError for a bad bundle or arguments; a backend that cannot run here (no torch,
    no TensorRT) gives a row with status "skipped: <why>" instead of failing the benchmark.
    """
    from jetgen.runtime.model import Model

    say = progress or (lambda msg: None)
    base = Model.open(bundle)
    manifest = base.manifest
    rng = np.random.RandomState(0)
    notes, rows = [], []
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise JetgenError("Unknown benchmark task {}; choose from {}.".format(unknown[0], ", ".join(TASKS)))

    # inputs shared by every backend so they do the same work
    max_b = max(list(batch_sizes) + [sample_batch, complete_batch])
    z_all = base.prior.sample(max_b, 1.0, np.random.RandomState(1)).astype(np.float32)
    y_all = _labels_for(base, max_b, rng)
    targets = base.decode(z_all[:complete_batch], None if y_all is None else y_all[:complete_batch])
    mask = np.ones_like(targets)
    mask[:, :, targets.shape[2] // 2:, :] = 0.0  # bottom half hidden
    z0 = np.tile(base.prior.mean(), (complete_batch, 1)).astype(np.float32)

    torch_ref = None
    if "torch" in backends:
        run_dir = run_dir or manifest.get("provenance", {}).get("run")
        try:
            torch_ref = TorchReference(run_dir, threads) if run_dir and os.path.isdir(run_dir) else None
            if torch_ref is None:
                notes.append("torch reference skipped: run directory {!r} not found (pass --run)".format(run_dir))
        except ImportError:
            notes.append("torch reference skipped: torch is not installed here")
        except JetgenError as err:
            notes.append("torch reference skipped: {}".format(err))

    def ys(b):
        return None if y_all is None else y_all[:b]

    def measure(fn, b):
        return time_calls(fn, warmup=warmup, min_time=min_time, max_iters=max_iters)

    if torch_ref is not None:
        say("torch eager")
        gen = None
        for b in batch_sizes if "decode" in tasks else ():
            rows.append(_row("decode", "torch", "fp32", b, measure(lambda: torch_ref.decode(z_all[:b], ys(b)), b)))
        if "sample" in tasks:
            gen = torch_ref.torch.Generator().manual_seed(0)
            rows.append(_row("sample", "torch", "fp32", sample_batch,
                             measure(lambda: torch_ref.sample(sample_batch, ys(sample_batch), gen), sample_batch)))
        if "complete" in tasks:
            samples = time_calls(lambda: torch_ref.complete(targets, mask, ys(complete_batch), z0, manifest["model"]["prior"],
                                                            complete_steps, complete_lr),
                                 warmup=1, min_time=min_time, max_iters=max(3, max_iters // 100), min_iters=3)
            rows.append(_row("complete", "torch", "fp32", complete_batch, samples,
                             extra={"steps": complete_steps}))

    for backend in [b for b in backends if b != "torch"]:
        for precision in precisions:
            label = "{} {}".format(backend, precision)
            say(label)
            try:
                model = Model.open(base.bundle, backend=backend, precision=precision,
                                   **({"intra_op_threads": threads} if threads and backend == "ort" else {}))
                model.decode(z_all[:1], ys(1))  # opens (or builds) the engine outside the timing
            except JetgenError as err:
                rows.append(_row("decode", backend, precision, None, None, status="skipped: {}".format(err)))
                continue
            with JetsonMonitor() as monitor:
                for b in batch_sizes if "decode" in tasks else ():
                    rows.append(_row("decode", backend, precision, b,
                                     measure(lambda: model.decode(z_all[:b], ys(b)), b)))
                if "sample" in tasks:
                    rows.append(_row("sample", backend, precision, sample_batch,
                                     measure(lambda: model.sample(sample_batch, ys(sample_batch), seed=0), sample_batch)))
                if "complete" in tasks and model.bundle.has("latent_grad"):
                    samples = time_calls(lambda: model.complete(targets, mask, labels=ys(complete_batch), steps=complete_steps,
                                                                lr=complete_lr, init=z0),
                                         warmup=1, min_time=min_time, max_iters=max(3, max_iters // 100), min_iters=3)
                    rows.append(_row("complete", backend, precision, complete_batch, samples,
                                     extra={"steps": complete_steps}))
            jetson = monitor.result()
            if monitor.available:
                for row in rows:
                    if row["backend"] == backend and row["precision"] == precision:
                        row.update(jetson)

    # ratios against torch at the same task and batch
    reference = dict(((r["task"], r["batch"]), r.get("p50_ms")) for r in rows if r["backend"] == "torch")
    for row in rows:
        if row["backend"] != "torch" and row.get("p50_ms"):
            row["vs_torch"] = ratio(reference.get((row["task"], row["batch"])), row["p50_ms"])
        if "steps" in row and row.get("p50_ms"):
            row["steps_per_s"] = row["steps"] / (row["p50_ms"] / 1e3)
        if row.get("unstable"):
            notes.append("unstable timing for {} {} {} batch {}: spread {:.0%} of the mean; close other programs "
                         "and rerun".format(row["task"], row["backend"], row["precision"], row["batch"], row["cv"]))

    result = {"machine": describe(), "bundle": os.path.abspath(base.bundle.path),
              "model": {"kind": base.kind, "arch": manifest["model"].get("arch"), "latent_dim": base.latent_dim},
              "settings": {"warmup": warmup, "min_time_s": min_time, "max_iters": max_iters,
                           "complete_steps": complete_steps, "complete_lr": complete_lr, "threads": threads},
              "rows": rows, "notes": notes, "memory": {}}
    if memory:
        say("peak memory")
        with tempfile.TemporaryDirectory() as tmp:
            result["memory"]["jetgen_sample_mb"] = peak_memory_mb(
                [sys.executable, "-m", "jetgen.cli", "sample", base.bundle.path, "--n", "64", "--seed", "0",
                 "--out", os.path.join(tmp, "x.npy")] + (["--labels", "all"] if base.conditional else []))
        if torch_ref is not None:
            result["memory"]["import_torch_mb"] = peak_memory_mb([sys.executable, "-c", "import torch"])
    return result


def _fmt(value, digits=3):
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        if value >= 1000:
            return "{:,.0f}".format(value)
        return "{:.{}g}".format(value, digits)
    return str(value)


def format_table(result):
    """A plain-text table, one row per measurement, Ultralytics style."""
    header = ["task", "backend", "prec", "batch", "mean ms", "p50 ms", "p90 ms", "p99 ms", "std ms", "items/s",
              "vs torch", "status"]
    lines = []
    for r in result["rows"]:
        vs = r.get("vs_torch")
        lines.append([r["task"], r["backend"], r["precision"], _fmt(r.get("batch")), _fmt(r.get("mean_ms")),
                      _fmt(r.get("p50_ms")), _fmt(r.get("p90_ms")), _fmt(r.get("p99_ms")), _fmt(r.get("std_ms")),
                      _fmt(r.get("throughput")), "{:.2f}x".format(vs) if vs else "-", r["status"]])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    out = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)) for row in [header] + lines]
    return "\n".join(out)


def format_markdown(result):
    m = result["machine"]
    lines = ["# jetgen benchmark", "",
             "Machine: {} ({} cores), {}, Python {}{}".format(
                 m.get("cpu"), m.get("cores"), m.get("os"), m.get("python"),
                 ", Jetson L4T {} ({})".format(m["l4t"], m.get("board")) if m.get("jetson") else ""),
             "Versions: {}".format(", ".join("{} {}".format(k, v) for k, v in sorted(m.get("versions", {}).items()) if v)),
             "Bundle: `{}` ({} {}, latent {})".format(result["bundle"], result["model"]["kind"],
                                                      result["model"]["arch"], result["model"]["latent_dim"]),
             "", "| task | backend | precision | batch | mean ms | p50 ms | p90 ms | p99 ms | items/s | vs torch |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        vs = r.get("vs_torch")
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            r["task"], r["backend"], r["precision"], _fmt(r.get("batch")), _fmt(r.get("mean_ms")), _fmt(r.get("p50_ms")),
            _fmt(r.get("p90_ms")), _fmt(r.get("p99_ms")), _fmt(r.get("throughput")),
            "{:.2f}x faster".format(vs) if vs else r["status"] if r["status"] != "ok" else "-"))
    mem = result.get("memory") or {}
    if mem:
        lines += ["", "Peak memory: `jetgen sample` {} MB; `import torch` {} MB.".format(
            _fmt(mem.get("jetgen_sample_mb")), _fmt(mem.get("import_torch_mb")))]
    if result["notes"]:
        lines += [""] + ["- " + n for n in result["notes"]]
    return "\n".join(lines) + "\n"


def write_chart(result, path):
    """PNG of p50 decode latency against batch size per backend and precision (log-log)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise JetgenError("--chart needs matplotlib, which is not installed here.")
    series = {}
    for r in result["rows"]:
        if r["task"] == "decode" and r.get("p50_ms"):
            series.setdefault("{} {}".format(r["backend"], r["precision"]), []).append((r["batch"], r["p50_ms"]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, points in sorted(series.items()):
        points.sort()
        b = [p[0] for p in points]
        ms = [p[1] for p in points]
        axes[0].plot(b, ms, marker="o", label=name)
        axes[1].plot(b, [bb / (m / 1e3) for bb, m in zip(b, ms)], marker="o", label=name)
    for ax, title, ylabel in ((axes[0], "decode latency (p50)", "ms per call"),
                              (axes[1], "decode throughput", "images / s")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("{} {} on {}".format(result["model"]["kind"], result["model"]["arch"], result["machine"].get("cpu")))
    fig.tight_layout()
    with tempfile.NamedTemporaryFile(suffix=".png", dir=os.path.dirname(os.path.abspath(path)) or ".", delete=False) as tmp:
        fig.savefig(tmp.name, dpi=100)
    plt.close(fig)
    os.replace(tmp.name, path)


@click.command("bench")
@click.argument("bundle", type=click.Path())
@click.option("--backend", "backends", default="torch,ort", show_default=True,
              help="Comma-separated: torch (eager reference), ort, trt.")
@click.option("--precision", "precisions", default="fp32", show_default=True, help="Comma-separated: fp32, fp16, int8.")
@click.option("--batch-sizes", default="1,8,64,256", show_default=True, help="Decode batch sizes.")
@click.option("--sample-batch", default=1024, show_default=True, type=int, help="Batch for the sample task.")
@click.option("--complete-batch", default=64, show_default=True, type=int)
@click.option("--complete-steps", default=100, show_default=True, type=int)
@click.option("--tasks", default=",".join(TASKS), show_default=True)
@click.option("--warmup", default=5, show_default=True, type=int)
@click.option("--min-time", default=1.0, show_default=True, type=float, help="Seconds of timed calls per measurement.")
@click.option("--max-iters", default=1000, show_default=True, type=int)
@click.option("--run", "run_dir", default=None, help="Run directory for the torch reference (default: the bundle's provenance).")
@click.option("--threads", default=None, type=int, help="CPU threads for torch and ONNX Runtime (default: their own).")
@click.option("--no-memory", is_flag=True, help="Skip the peak-memory measurement.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--md", "md_path", default=None, help="Write a markdown results file.")
@click.option("--chart", "chart_path", default=None, help="Write a PNG chart of latency against batch.")
@click.option("--out-json", "json_path", default=None, help="Write the JSON results to a file.")
def bench(bundle, backends, precisions, batch_sizes, sample_batch, complete_batch, complete_steps, tasks, warmup,
          min_time, max_iters, run_dir, threads, no_memory, as_json, md_path, chart_path, json_path):
    """Benchmark BUNDLE: latency, throughput and memory per backend against PyTorch eager."""
    backend_list = [b.strip() for b in backends.split(",") if b.strip()]
    for b in backend_list:
        if b not in ("torch", "ort", "trt"):
            raise JetgenError("Unknown backend {!r} for bench; choose from torch, ort, trt.".format(b))
    precision_list = [p.strip() for p in precisions.split(",") if p.strip()]
    for p in precision_list:
        if p not in ("fp32", "fp16", "int8"):
            raise JetgenError("Unknown precision {!r}; choose from fp32, fp16, int8.".format(p))
    if min(sample_batch, complete_batch, complete_steps, max_iters) < 1 or warmup < 0 or min_time < 0:
        raise JetgenError("Batch sizes, steps and iteration counts must be positive.")
    progress = None if as_json else (lambda msg: click.echo("benchmarking {} ...".format(msg), err=True))
    result = run_benchmark(bundle, backend_list, precision_list, _csv_ints(batch_sizes, "--batch-sizes"),
                           sample_batch, complete_batch, complete_steps, warmup=warmup, min_time=min_time,
                           max_iters=max_iters, run_dir=run_dir, threads=threads, memory=not no_memory,
                           tasks=[t.strip() for t in tasks.split(",") if t.strip()], progress=progress)
    if json_path:
        atomic_write_json(json_path, result)
    if md_path:
        atomic_write_text(md_path, format_markdown(result))
    if chart_path:
        write_chart(result, chart_path)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(format_table(result))
    mem = result["memory"]
    if mem:
        click.echo("peak memory: jetgen sample {} MB, import torch {} MB".format(
            _fmt(mem.get("jetgen_sample_mb")), _fmt(mem.get("import_torch_mb"))))
    for note in result["notes"]:
        click.echo("note: " + note)
