"""benchmarks/results.md from the runs of run_benchmarks.py: ranges over the repeats, the studies, and
every measurement. It states only what the runs recorded."""
import time

from jetgen import spec
from jetgen.bench.report import COLUMNS, fmt, protocol_lines, quality_of, row_cells

SUMMARY = (("decode", "batch"), ("sample", "batch"), ("complete", "batch"))


def span(values, form=fmt):
    """'a-b' (lowest-highest) of the known values, one value when they agree, '-' when none."""
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    lo, hi = form(min(known)), form(max(known))
    return lo if lo == hi else "{}-{}".format(lo, hi)


def _times(v):
    return "{:.2f}x".format(v)


def _rows(results, task, backend, batch):
    return [next((r for r in res["rows"] if r["task"] == task and r["backend"] == backend and r["batch"] == batch
                  and r["status"] == "ok"), None) for res in results]


def summary_table(results):
    keys = []
    for r in results[0]["rows"]:
        if r["status"] == "ok" and (r["task"], r["batch"], r["backend"], r["precision"]) not in keys:
            keys.append((r["task"], r["batch"], r["backend"], r["precision"]))
    lines = ["| task | batch | backend | prec | median ms | p90 ms | vs torch | vs session | GFLOP/s | % peak | "
             "max err vs golden | cond. acc |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for task, batch, backend, precision in keys:
        rows = [r for r in _rows(results, task, backend, batch) if r is not None]
        q = quality_of(results[0], {"backend": backend, "precision": precision})
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            task, batch, backend, precision, span([r["p50_ms"] for r in rows]),
            span([r["p90_ms"] for r in rows]), span([r.get("vs_torch") for r in rows], _times),
            span([r.get("vs_session") for r in rows], _times), span([r.get("gflops") for r in rows]),
            span([r.get("pct_peak") for r in rows]),
            "{:.1e}".format(q["max_abs"]) if q.get("max_abs") is not None else "-",
            "{:.1%}".format(q["accuracy"]) if q.get("accuracy") is not None else "-"))
    return lines


def overhead_lines(runs):
    """The runtime against the bare ONNX Runtime session at batch 1 (and the sample/complete rows)."""
    lines = []
    for name, results in runs.items():
        for task in ("decode", "sample", "complete"):
            for r0 in results[0]["rows"]:
                if r0["task"] == task and r0["backend"] == "ort" and r0.get("vs_session") and \
                        (task != "decode" or r0["batch"] == 1):
                    rows = [r for r in _rows(results, task, "ort", r0["batch"]) if r is not None]
                    lines.append("- {} `{}` at batch {}: {} of the bare session's median time ({} repeats).".format(
                        name, task, r0["batch"], span([r["vs_session"] for r in rows], _times), len(rows)))
    return lines


def tolerance_lines(study):
    lines = ["Errors of the reduced-precision graphs against the fp32 graph's outputs (ONNX Runtime, CPU) on "
             "{} prior samples and test digits; fp32 here is TensorRT's TF32 emulated (matrix-product inputs "
             "rounded to 10 mantissa bits). 'unit error' = max abs / max(1, largest |output|), what the check "
             "compares with the tolerance.".format(study["batch"]), "",
             "| model | precision | graph | output | max abs | max rel | largest \\|output\\| | unit error |",
             "|---|---|---|---|---|---|---|---|"]
    for r in study["rows"]:
        lines.append("| {model} | {precision} | {graph} | {output} | {max_abs:.2e} | {max_rel:.2e} | {scale:.3g} | "
                     "{unit_error:.2e} |".format(**r))
    lines += ["", "| precision | worst unit error | {} x worst, rounded up to 1, 2 or 5 | jetgen.spec.GOLDEN_TOLERANCES "
              "(abs / rel) |".format(study.get("margin", 3)), "|---|---|---|---|"]
    for precision, s in study["suggested"].items():
        tol = spec.GOLDEN_TOLERANCES[precision]
        lines.append("| {} | {:.2e} | {:g} | {:g} / {:g} |".format(precision, s["worst"], s["tolerance"], tol["abs"],
                                                                  tol["rel"]))
    return lines


def completion_lines(study):
    chosen = study.get("chosen")
    lines = ["complete() on the {} digits of the test split, bottom half hidden, lr 0.05, init at the prior mean; "
             "'converged' = {} steps. Rule (tol, window): an example stops when its best objective so far improved "
             "by less than tol (relative) over the last `window` steps. Each run is one timed call in its own "
             "process.".format(study.get("images", "-"), study["steps"]), ""]
    for name, m in study["models"].items():
        ref = m["reference"]
        lines += ["### " + name, "", "| engine | tol | window | steps run | mean steps per digit | hidden-half MSE | "
                  "vs {} steps | ms |".format(study["steps"]), "|---|---|---|---|---|---|---|---|",
                  "| runtime | none | - | {steps} | {mean_steps:.0f} | {hidden_mse:.5f} | 1.000 | {ms:,.0f} |".format(
                      ms=ref["seconds"] * 1e3, **ref)]
        for g in m["grid"]:
            lines.append("| runtime | {:g} | {} | {} | {:.0f} | {:.5f} | {:.3f}{} | {:,.0f} |".format(
                g["tol"], g["window"], g["steps"], g["mean_steps"], g["hidden_mse"], g["hidden_mse"] / ref["hidden_mse"],
                " (chosen)" if chosen and (g["tol"], g["window"]) == tuple(chosen) else "", g["seconds"] * 1e3))
        for key, rule in (("torch_reference", None), ("torch_chosen", chosen)):
            t = m.get(key)
            if t:
                lines.append("| torch | {} | {} | {} | - | {:.5f} | {:.3f} | {:,.0f} |".format(
                    "none" if rule is None else "{:g}".format(rule[0]), "-" if rule is None else rule[1], t["steps"],
                    t["hidden_mse"], t["hidden_mse"] / ref["hidden_mse"], t["seconds"] * 1e3))
        lines.append("")
    lines.append("Chosen: {} (of the rules within {:.0%} of the converged error on every model, the one with the "
                 "fewest mean steps); jetgen.runtime.model.COMPLETE_TOL and COMPLETE_WINDOW are set from it.".format(
                     "none met the rule" if chosen is None else "tol {:g}, window {}".format(*chosen), study["slack"]))
    return lines


def render(runs, tolerances, completion, golden_written, seconds):
    first = next(iter(runs.values()))[0]
    m = first["machine"]
    lines = ["# jetgen benchmark results", "",
             "Written by `python benchmarks/run_benchmarks.py` on {} ({:.0f} min).".format(
                 time.strftime("%Y-%m-%d %H:%M"), seconds / 60), "",
             "Machine: {} ({} cores), {}, Python {}.".format(m["cpu"], m["cores"], m["os"], m["python"]),
             "Versions: " + ", ".join("{} {}".format(k, v) for k, v in sorted(m["versions"].items()) if v), ""]
    lines += protocol_lines(first)[:1]
    for name, results in runs.items():
        lines.append("{}: {} repeats, orders {}; matrix-multiply peak {} GFLOP/s; load average (1, 5, 15 min) "
                     "before each: {}.".format(name, len(results), ", ".join(r["settings"]["order"] for r in results),
                                               span([(r.get("peak") or {}).get("gflops") for r in results]),
                                               "; ".join(str(r["load"]["before"]) for r in results)))
    lines += ["", "The 2 CPU cores are shared with other work: a load average above 2 means other processes "
              "competed for them during these runs, and the ranges below include that.", ""]
    if golden_written:
        lines += ["Golden vectors: the exporter of this checkout wrote none, so this script wrote the decoder's "
                  "(prior samples, batch 1 and 64, PyTorch's outputs) for {}.".format(", ".join(golden_written)), ""]
    lines += ["## Summary: range over the repeats (lowest-highest)", "",
              "'vs torch' > 1: faster than PyTorch eager; 'vs session' > 1: slower than the bare ONNX Runtime "
              "session by that factor.", ""]
    for name, results in runs.items():
        lines += ["### " + name, ""] + summary_table(results) + [""]
    lines += ["## The runtime's overhead against a bare ONNX Runtime session", ""] + overhead_lines(runs) + [""]
    mem = first.get("memory") or {}
    if mem:
        lines += ["Peak memory: `jetgen sample` {} MB; `import torch` {} MB.".format(
            fmt(mem.get("jetgen_sample_mb")), fmt(mem.get("import_torch_mb"))), ""]
    if tolerances:
        lines += ["## Golden tolerances", ""] + tolerance_lines(tolerances) + [""]
    if completion:
        lines += ["## complete(): the default stopping rule", ""] + completion_lines(completion) + [""]
    lines += ["## Every measurement", ""]
    for name, results in runs.items():
        for i, result in enumerate(results):
            lines += ["### {}, repeat {} ({} order)".format(name, i + 1, result["settings"]["order"]), ""]
            lines += protocol_lines(result)[1:] + [""]
            lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
            lines += ["| " + " | ".join(row_cells(result, r)) + " |" for r in result["rows"]]
            lines += [""] + ["- " + n for n in result["notes"]] + [""]
    return "\n".join(lines).rstrip() + "\n"
