"""A benchmark result for people: markdown for results files and a PNG chart. (The CLI's text table is
built by jetgen.cli.bench through jetgen.cli.output.)"""
import os
import tempfile

from jetgen.errors import JetgenError


def fmt(value, digits=3):
    """A number as a short table cell: '-' when missing, 3 significant digits, separators from 1000."""
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        if value >= 1000:
            return "{:,.0f}".format(value)
        return "{:.{}g}".format(value, digits)
    return str(value)


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
            r["task"], r["backend"], r["precision"], fmt(r.get("batch")), fmt(r.get("mean_ms")), fmt(r.get("p50_ms")),
            fmt(r.get("p90_ms")), fmt(r.get("p99_ms")), fmt(r.get("throughput")),
            "{:.2f}x faster".format(vs) if vs else r["status"] if r["status"] != "ok" else "-"))
    mem = result.get("memory") or {}
    if mem:
        lines += ["", "Peak memory: `jetgen sample` {} MB; `import torch` {} MB.".format(
            fmt(mem.get("jetgen_sample_mb")), fmt(mem.get("import_torch_mb")))]
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
