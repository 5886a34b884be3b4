"""``jetgen bench BUNDLE``: the command line over jetgen.bench.run (table, --json, --md, --chart)."""
import click

from jetgen.atomic import atomic_write_json, atomic_write_text
from jetgen.bench import report, run
from jetgen.cli.options import existing_directory, key_option
from jetgen.cli.output import cell, emit_json, table
from jetgen.errors import JetgenError
from jetgen.runtime import backends as runtime_backends
from jetgen.spec import PRECISIONS


def _csv_choices(text, allowed, what):
    values = [v.strip() for v in str(text).split(",") if v.strip()]
    for value in values:
        if value not in allowed:
            raise JetgenError("Unknown {} {!r}; choose from {}.".format(what, value, ", ".join(allowed)))
    return values


def _csv_ints(text, what):
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise JetgenError("{} must be a comma-separated list of whole numbers, not {!r}.".format(what, text))
    if not values or min(values) < 1:
        raise JetgenError("{} must hold positive whole numbers.".format(what))
    return values


def format_table(result, verbose=False):
    """A plain-text table, one row per measurement: the compact columns with the skip reasons and the
    unstable-timing count below it, or (``verbose``) every column of jetgen.bench.report."""
    if verbose:
        return table(report.COLUMNS, [report.row_cells(result, r) for r in result["rows"]])
    rows, footnotes = report.compact_table_rows(result)
    return "\n".join([table(report.COMPACT_COLUMNS, rows)] + footnotes)


@click.command("bench")
@click.argument("bundle", type=click.Path())
@key_option
@click.option("--backend", "backends", default="torch,onnxruntime,ort", show_default=True,
              help="Comma-separated: torch (eager reference), onnxruntime (a bare ONNX Runtime session), "
                   "ort and trt (jetgen's runtime). Each runs in its own process.")
@click.option("--precision", "precisions", default="fp32", show_default=True, help="Comma-separated: fp32, fp16, int8.")
@click.option("--batch-sizes", default="1,8,64,256", show_default=True, help="Decode batch sizes.")
@click.option("--sample-batch", default=1024, show_default=True, type=int, help="Batch for the sample task.")
@click.option("--complete-batch", default=64, show_default=True, type=int)
@click.option("--complete-steps", default=100, show_default=True, type=int)
@click.option("--tasks", default=",".join(run.TASKS), show_default=True)
@click.option("--warmup", default=5, show_default=True, type=int)
@click.option("--min-time", default=1.0, show_default=True, type=float, help="Seconds of timed calls per measurement.")
@click.option("--max-iters", default=5000, show_default=True, type=int)
@click.option("--complete-min-time", default=None, type=float,
              help="Seconds of timed complete calls (default: --min-time).")
@click.option("--order", type=click.Choice(("forward", "reverse")), default="forward", show_default=True,
              help="Order the backend processes run in (repeats alternate it).")
@click.option("--no-peak", is_flag=True, help="Skip the matrix-multiply peak measurement.")
@click.option("--run", "run_dir", default=None, help="Run directory for the torch reference (default: the bundle's provenance).")
@click.option("--threads", default=None, type=click.IntRange(1, 256),
              help="CPU threads for every backend (default: the CPUs this process may use, at most 8).")
@click.option("--no-memory", is_flag=True, help="Skip the peak-memory measurement.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--md", "md_path", default=None, callback=existing_directory, help="Write a markdown results file.")
@click.option("--chart", "chart_path", default=None, callback=existing_directory, help="Write a PNG chart of latency against batch.")
@click.option("--out-json", "json_path", default=None, callback=existing_directory, help="Write the JSON results to a file.")
@click.option("--verbose", "-v", is_flag=True,
              help="Print every statistic (min, mean, p90, p99, max, GFLOP/s, vs session, errors) and every note.")
def bench(bundle, backends, precisions, batch_sizes, sample_batch, complete_batch, complete_steps, tasks, warmup,
          min_time, max_iters, complete_min_time, order, no_peak, run_dir, threads, no_memory, as_json, md_path,
          chart_path, json_path, verbose):
    """Benchmark BUNDLE: latency, throughput, quality and memory per backend, each in its own process.

    Exits non-zero when nothing asked for could run here (e.g. --backend trt without TensorRT)."""
    backend_list = _csv_choices(backends, ("torch", "onnxruntime") + tuple(runtime_backends.names()), "backend")
    precision_list = _csv_choices(precisions, PRECISIONS, "precision")
    if min(sample_batch, complete_batch, complete_steps, max_iters) < 1 or warmup < 0 or min_time < 0:
        raise JetgenError("Batch sizes, steps and iteration counts must be positive.")
    progress = None if as_json else (lambda msg: click.echo("benchmarking {} ...".format(msg), err=True))
    result = run.run_benchmark(bundle, backend_list, precision_list, _csv_ints(batch_sizes, "--batch-sizes"),
                           sample_batch, complete_batch, complete_steps, warmup=warmup, min_time=min_time,
                           max_iters=max_iters, run_dir=run_dir, threads=threads, memory=not no_memory,
                           tasks=[t.strip() for t in tasks.split(",") if t.strip()], progress=progress,
                           complete_min_time=complete_min_time, peak=not no_peak, order=order)
    if json_path:
        atomic_write_json(json_path, result)
    if md_path:
        atomic_write_text(md_path, report.format_markdown(result))
    if chart_path:
        report.write_chart(result, chart_path)
    if as_json:
        emit_json(result)
        return
    for line in report.protocol_lines(result):
        click.echo(line)
    click.echo(format_table(result, verbose))
    mem = result["memory"]
    if mem:
        click.echo("peak memory: jetgen sample {} MB, import torch {} MB".format(
            cell(mem.get("jetgen_sample_mb")), cell(mem.get("import_torch_mb"))))
    for note in (result["notes"] if verbose else report.folded_notes(result["notes"])):
        click.echo("note: " + note)
