"""A benchmark result for people: the one set of table columns (the CLI's text table and markdown
results files both use them), markdown for results files, and a PNG chart."""
import os
import tempfile

from jetgen.cells import fmt  # noqa: F401  (re-exported: results files use the one cell format)
from jetgen.errors import JetgenError

COLUMNS = ("task", "backend", "prec", "batch", "calls", "outliers", "min ms", "median ms", "mean ms", "p90 ms",
           "p99 ms", "max ms", "items/s", "GFLOP/s", "% peak", "vs torch", "vs session", "max err", "cond. acc",
           "mJ/item", "status")


def _times(value):
    return "{:.2f}x".format(value) if value else "-"


def quality_of(result, row):
    """The quality entry (max error, accuracy) of a row's backend and precision, or {}."""
    return next((q for q in result.get("quality") or [] if q["backend"] == row["backend"]
                 and q["precision"] == row["precision"]), {})


def row_cells(result, row):
    """The cells of one row, in COLUMNS order. 'vs torch' > 1: faster than torch; 'vs session' > 1:
    slower than the bare ONNX Runtime session by that factor."""
    q = quality_of(result, row)
    p99 = row.get("p99_ms")
    if p99 is None and row.get("iterations"):
        p99 = "n<30"
    acc = q.get("accuracy")
    return [row["task"], row["backend"], row["precision"], fmt(row.get("batch")), fmt(row.get("iterations")),
            fmt(row.get("outliers")), fmt(row.get("min_ms")), fmt(row.get("p50_ms")), fmt(row.get("mean_ms")),
            fmt(row.get("p90_ms")), fmt(p99), fmt(row.get("max_ms")), fmt(row.get("throughput")),
            fmt(row.get("gflops")), fmt(row.get("pct_peak")), _times(row.get("vs_torch")),
            _times(row.get("vs_session")), "{:.1e}".format(q["max_abs"]) if q.get("max_abs") is not None else "-",
            "{:.1%}".format(acc) if acc is not None else "-", fmt(row.get("mj_per_item")), row["status"]]


def protocol_lines(result):
    """What was measured and how, as sentences for the top of a results file."""
    s, peak, load = result["settings"], result.get("peak"), result.get("load") or {}
    lines = ["Protocol: each backend in its own process, one after another ({} order), CPU threads per backend: {}, {} "
             "warm-up calls (1 for complete), then calls timed for {} s (at least 5; complete: {} s, at least 3); "
             "every call counted (outliers counted, not dropped; no p99 from fewer than 30 calls).".format(
                 s.get("order"), s["threads"], s["warmup"], s["min_time_s"], s.get("complete_min_time_s"))]
    if peak:
        lines.append("Matrix-multiply peak, this run: {:.1f} GFLOP/s ({} {}x{} float32, best of {} calls; median "
                     "{:.1f}; {}).".format(peak["gflops"], peak.get("engine"), peak["size"], peak["size"],
                                           peak["calls"], peak["median_gflops"], ", ".join(
                                               "{} {:.1f}".format(e, g) for e, g in sorted(peak.get("engines", {}).items()))))
    if load.get("before") is not None:
        lines.append("Load average (1, 5, 15 min) before: {}, after: {}.".format(load["before"], load.get("after")))
    return lines


def format_markdown(result):
    m = result["machine"]
    lines = ["# jetgen benchmark", "",
             "Machine: {} ({} cores), {}, Python {}{}".format(
                 m.get("cpu"), m.get("cores"), m.get("os"), m.get("python"),
                 ", Jetson L4T {} ({}), power mode {}".format(m["l4t"], m.get("board"), m.get("nvpmodel"))
                 if m.get("jetson") else ""),
             "Versions: {}".format(", ".join("{} {}".format(k, v) for k, v in sorted(m.get("versions", {}).items()) if v)),
             "Bundle: `{}` ({} {}, latent {})".format(result["bundle"], result["model"]["kind"],
                                                      result["model"]["arch"], result["model"]["latent_dim"]), ""]
    lines += protocol_lines(result) + [""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row_cells(result, r)) + " |" for r in result["rows"]]
    mem = result.get("memory") or {}
    if mem:
        lines += ["", "Peak memory: `jetgen sample` {} MB; `import torch` {} MB.".format(
            fmt(mem.get("jetgen_sample_mb")), fmt(mem.get("import_torch_mb")))]
    if result["notes"]:
        lines += [""] + ["- " + n for n in result["notes"]]
    return "\n".join(lines) + "\n"


def write_chart(result, path):
    """PNG of median decode latency against batch size per backend and precision (log-log)."""
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
    for ax, title, ylabel in ((axes[0], "decode latency (median)", "ms per call"),
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
