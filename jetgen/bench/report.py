"""A benchmark result for people: the one set of table columns (the CLI's text table and markdown
results files both use them), markdown for results files, and a PNG chart."""
import os
import tempfile

from jetgen.bench.stats import UNSTABLE_CV
from jetgen.cells import fmt  # noqa: F401  (re-exported: results files use the one cell format)
from jetgen.errors import JetgenError

COLUMNS = ("task", "backend", "prec", "batch", "calls", "outliers", "min ms", "median ms", "mean ms", "p90 ms",
           "p99 ms", "max ms", "items/s", "GFLOP/s", "% peak", "vs torch", "vs session", "max err", "cond. acc",
           "mJ/item", "status")

# the default text table: what a person reads at a glance (--verbose, --md and --json carry the rest)
COMPACT_COLUMNS = ("task", "backend", "prec", "batch", "median ms", "items/s", "vs torch", "status")
UNSTABLE_MARK = "~"  # before a ratio whose row or torch row had unstable timing
SHORT_REASON = 28  # characters of a skip reason kept in a compact cell


def _times(value, unstable=False):
    return "{}{:.2f}x".format(UNSTABLE_MARK if unstable else "", value) if value else "-"


def _torch_row(result, row):
    return next((r for r in result["rows"] if r["backend"] == "torch" and r["task"] == row["task"]
                 and r.get("batch") == row.get("batch") and r["status"] == "ok"), None)


def ratio_unstable(result, row):
    """True when the row's 'vs torch' ratio rests on an unstable timing (its own or torch's)."""
    ref = _torch_row(result, row)
    return bool(row.get("unstable") or (ref is not None and ref.get("unstable")))


def short_status(row, footnotes):
    """A compact status cell: 'ok', 'unstable' or 'skipped [n]', with the full reason appended to
    ``footnotes`` as '[n] backend precision: reason' (one footnote per distinct reason)."""
    status = row["status"]
    if status.startswith("skipped: "):
        why = "{} {}: {}".format(row["backend"], row["precision"], status[len("skipped: "):])
        if why not in footnotes:
            footnotes.append(why)
        return "skipped [{}]".format(footnotes.index(why) + 1)
    if status == "ok" and row.get("unstable"):
        return "unstable"
    return status if len(status) <= SHORT_REASON else status[:SHORT_REASON - 3] + "..."


def compact_table_rows(result):
    """(rows of COMPACT_COLUMNS cells, footnote lines): skipped backends as 'skipped [n]' with the reason in
    footnote n, ratios from unstable timings marked with UNSTABLE_MARK."""
    footnotes = []
    rows = [[r["task"], r["backend"], r["precision"], fmt(r.get("batch")), fmt(r.get("p50_ms")),
             fmt(r.get("throughput")), _times(r.get("vs_torch"), ratio_unstable(result, r)),
             short_status(r, footnotes)] for r in result["rows"]]
    lines = ["[{}] {}".format(i + 1, why) for i, why in enumerate(footnotes)]
    unstable = [r for r in result["rows"] if r["status"] == "ok" and r.get("unstable")]
    if unstable:
        lines.append("{} {} unstable timing (spread over {:.0%} of the mean; this machine was busy): a ratio marked "
                     "{} rests on it and is no headline; --verbose shows the spreads.".format(
                         len(unstable), "row had" if len(unstable) == 1 else "rows had", UNSTABLE_CV,
                         UNSTABLE_MARK))
    return rows, lines


def folded_notes(notes):
    """The notes a compact table still prints: the per-row 'unstable timing for ...' notes are left out
    (compact_table_rows counts them in one line)."""
    return [n for n in notes if not n.startswith("unstable timing for ")]


def quality_of(result, row):
    """The quality entry (max error, accuracy) of a row's backend and precision, or {}."""
    return next((q for q in result.get("quality") or [] if q["backend"] == row["backend"]
                 and q["precision"] == row["precision"]), {})


def row_cells(result, row):
    """The cells of one row, in COLUMNS order. 'vs torch' > 1: faster than torch (marked UNSTABLE_MARK
    when either timing was unstable); 'vs session' > 1: slower than the bare ONNX Runtime session by that
    factor."""
    q = quality_of(result, row)
    p99 = row.get("p99_ms")
    if p99 is None and row.get("iterations"):
        p99 = "n<30"
    acc = q.get("accuracy")
    return [row["task"], row["backend"], row["precision"], fmt(row.get("batch")), fmt(row.get("iterations")),
            fmt(row.get("outliers")), fmt(row.get("min_ms")), fmt(row.get("p50_ms")), fmt(row.get("mean_ms")),
            fmt(row.get("p90_ms")), fmt(p99), fmt(row.get("max_ms")), fmt(row.get("throughput")),
            fmt(row.get("gflops")), fmt(row.get("pct_peak")), _times(row.get("vs_torch"), ratio_unstable(result, row)),
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
