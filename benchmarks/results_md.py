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


OVERHEAD_TARGET = 1.15  # issue 13: Model.decode at batch 1 within 1.15x of the bare session
SERVE_HEADING = "## `jetgen serve` under load"


def _ratios(results, task):
    """Per repeat: (bare session median ms, runtime median ms, runtime / session) at batch 1."""
    out = []
    for res in results:
        rows = dict((r["backend"], r) for r in res["rows"] if r["task"] == task and r["batch"] == 1
                    and r["status"] == "ok")
        if "onnxruntime" in rows and "ort" in rows:
            out.append((rows["onnxruntime"]["p50_ms"], rows["ort"]["p50_ms"],
                        rows["ort"]["p50_ms"] / rows["onnxruntime"]["p50_ms"]))
    return out


def batch1_lines(overhead):
    """The batch-1 overhead study: runtime against the bare session, per thread count, every repeat."""
    first = next(iter(overhead.values()))[0]
    lines = ["The MLP cvae decoder at batch 1: `Model.decode(z, y)` and `Model.sample(1, labels=y)` (prior draw + "
             "decode, every input and output checked) against a bare `onnxruntime.InferenceSession.run` (and the "
             "same prior draw in numpy), each in its own process (`jetgen bench --backend onnxruntime,ort "
             "--batch-sizes 1 --sample-batch 1 --tasks decode,sample`), {} warm-up calls, then {} s of timed calls "
             "(thousands), the order alternating. Target: the runtime within {:.2f}x of the bare session.".format(
                 first["settings"]["warmup"], first["settings"]["min_time_s"], OVERHEAD_TARGET), "",
             "| threads | task | bare session median us | runtime median us | runtime / session, each repeat | "
             "range | within {:.2f}x | load average before (1 min) |".format(OVERHEAD_TARGET),
             "|---|---|---|---|---|---|---|---|"]
    for threads, results in sorted(overhead.items(), key=lambda kv: int(kv[0])):
        for task in ("decode", "sample"):
            got = _ratios(results, task)
            if not got:
                continue
            met = sum(1 for _, _, r in got if r <= OVERHEAD_TARGET)
            lines.append("| {} | {} | {} | {} | {} | {} | {} of {} repeats | {} |".format(
                threads, task, span([b * 1e3 for b, _, _ in got]), span([m * 1e3 for _, m, _ in got]),
                ", ".join(_times(r) for _, _, r in got), span([r for _, _, r in got], _times), met, len(got),
                span([(res.get("load") or {}).get("before", [None])[0] for res in results])))
    return lines


def _torch_p50(runs, batch):
    return [r["p50_ms"] for r in _rows(runs.get("cvae-mlp", []), "decode", "torch", batch) if r is not None]


def one_process_lines(sets):
    """The torch decode figure that swung in one-process runs, per thread count: its median in every
    repeat with ONNX Runtime timed before it in the same process, and in the per-process protocol.
    ``sets``: [(one-process study, per-process runs), ...]."""
    batch = sets[0][0]["batch"]
    lines = ["PyTorch's MLP cvae decoder at batch {}: median ms in each of 3 repeats (each a fresh process), "
             "under the old protocol (ONNX Runtime's decoder timed just before, in the same process) and under "
             "`jetgen bench`'s (each backend in its own process; the summary tables).".format(batch), "",
             "| threads | protocol | torch decode batch {} median ms, each repeat | range | ONNX Runtime's decoder, "
             "same process, ms |".format(batch), "|---|---|---|---|---|"]
    for study, runs in sets:
        one = [r["torch"]["p50_ms"] for r in study["repeats"]]
        ort_one = [r["onnxruntime"]["p50_ms"] for r in study["repeats"]]
        per = _torch_p50(runs, batch)
        lines.append("| {} | one process | {} | {} | {} |".format(study["threads"], ", ".join(fmt(v) for v in one),
                                                                 span(one), span(ort_one)))
        lines.append("| {} | one process per backend | {} | {} | - |".format(
            study["threads"], ", ".join(fmt(v) for v in per), span(per)))
    lines += ["", "An earlier one-process run showed torch's batch-64 decode at a flat 32 ms."]
    return lines


def kept_sections(text):
    """The part of an old results.md this script does not measure (the `jetgen serve` load test), to
    carry over unchanged; '' when there is none."""
    start = text.find(SERVE_HEADING)
    if start < 0:
        return ""
    end = text.find("\n## ", start + len(SERVE_HEADING))
    return text[start:] if end < 0 else text[start:end + 1]


def readme_row(runs, overhead, runs_2threads=None):
    """README's speed row, from the same runs as results.md."""
    def p50_span(name, task, backend, batch, scale=1.0):
        rows = [r for r in _rows(runs[name], task, backend, batch) if r is not None]
        return span([r.get("vs_torch") for r in rows], _times) if backend != "torch" else \
            span([r["p50_ms"] * scale for r in rows])
    first = runs["cvae-mlp"][0]
    threads = first["settings"]["threads"]
    loads = [res["load"]["before"][0] for results in runs.values() for res in results]
    parts = ["each backend in its own process, CPU threads: {}, ranges over {} repeats; `Model` vs torch eager, "
             "median time: MLP cvae decode batch 1 {}, batch 64 {}, sample 1024 {}; conv vae decode batch 64 {}, "
             "complete 64 {} (>1: the runtime is faster)".format(
                 threads, len(runs["cvae-mlp"]), p50_span("cvae-mlp", "decode", "ort", 1),
                 p50_span("cvae-mlp", "decode", "ort", 64), p50_span("cvae-mlp", "sample", "ort", 1024),
                 p50_span("vae-conv", "decode", "ort", 64), p50_span("vae-conv", "complete", "ort", 64))]
    if overhead:
        got = _ratios(overhead.get(str(threads)) or next(iter(overhead.values())), "decode")
        parts.append("batch-1 decode {} of a bare ONNX Runtime session".format(span([r for _, _, r in got], _times)))
    if runs_2threads:
        parts.append("with 2 threads torch's batch-64 decode ranged {} ms over 3 per-process repeats on this "
                     "shared CPU".format(span(_torch_p50(runs_2threads, 64))))
    parts.append("load average {} during the runs (shared CPU)".format(span(loads)))
    return "| runtime vs torch eager, same machine | {} |".format("; ".join(parts))


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


def render(runs, tolerances, completion, golden_written, seconds, overhead=None, one_process=None, kept="",
           runs_2threads=None, one_process_2threads=None, overhead_before=None):
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
    if overhead:
        lines += ["### Batch 1", ""] + batch1_lines(overhead) + [""]
    if overhead_before:
        lines += ["The same study earlier this day, before the ONNX Runtime session kept one RunOptions for all "
                  "its runs (each run built a default one):", ""] + batch1_lines(overhead_before)[2:] + [""]
    sets = [(study, r) for study, r in ((one_process_2threads, runs_2threads), (one_process, runs)) if study and r]
    if sets:
        lines += ["## One process against one process per backend", ""] + one_process_lines(sets) + [""]
    if runs_2threads:
        lines += ["## The same tables with 2 threads (an earlier run of this script, this day)", ""]
        for name, results in runs_2threads.items():
            lines += ["### {} (load average before each repeat: {})".format(
                name, "; ".join(str(r["load"]["before"]) for r in results)), ""] + summary_table(results) + [""]
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
    if kept:
        lines += ["", kept.rstrip()]
    return "\n".join(lines).rstrip() + "\n"
