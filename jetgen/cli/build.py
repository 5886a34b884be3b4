"""``jetgen build BUNDLE``: build (or reuse) the TensorRT engine of every graph, on this device.

    jetgen build digits.jetgen --precision auto
    graph     precision  engine                                   size     build s  status
    decoder   fp16       engines/decoder-fp16-3f2a9c0d1e4b.engine  1.2 MB   41.3     built (no engine built yet: rebuilding)
    encoder   fp16       engines/encoder-fp16-7c01d2e3f4a5.engine  1.1 MB   -        cached (reused)

Each engine is then run on the bundle's golden vectors (jetgen.runtime.verify, the check of ``jetgen
verify``); an engine whose outputs are beyond its precision's tolerance is deleted, and the command
exits non-zero naming the graph and the error. Without TensorRT it exits non-zero with a sentence
saying where TensorRT comes from.
Python 3.6 compatible; tensorrt and the CUDA bindings are imported only when the command runs.
"""
import os

import click

from jetgen.cli.options import key_option
from jetgen.cli.output import emit_json, human_size, table
from jetgen.errors import JetgenError
from jetgen.runtime.bundle import Bundle
from jetgen.spec import GRAPHS, PRECISIONS


def format_table(rows):
    """The results as an aligned text table (graph, precision, engine, size, build s, status)."""
    lines = []
    for row in rows:
        status = row["status"]
        if status == "cached":
            status = "cached (reused)"
        elif row.get("reason"):
            status = "{} ({})".format(status, row["reason"])
        seconds = row.get("build_seconds")
        lines.append((row["graph"], row.get("precision") or "-", row.get("engine_file") or "-",
                      human_size(row.get("bytes")), "-" if seconds is None else "{:.1f}".format(seconds), status,
                      row.get("verified") or "-"))
    return table(("graph", "precision", "engine", "size", "build s", "status", "golden check"), lines)


def verify_engine(opened, name, result, workspace_mb):
    """Run the engine just built or reused on graph ``name``'s golden vectors. Returns (summary for the
    table, failure sentence or None); a failing engine and its sidecar are deleted."""
    from jetgen.runtime.backends.trt.engine_cache import sidecar_path
    from jetgen.runtime.backends.trt.session import TrtSession
    from jetgen.runtime.feeds import run_in_chunks
    from jetgen.runtime.verify import failure_sentence, session_precision, verify_graph

    graph = opened.graph(name)
    if not graph.get("golden"):
        return "no golden vectors", None
    session = TrtSession(opened.graph_path(name), graph, opened.path, precision=result["precision"],
                         workspace_mb=workspace_mb)
    try:
        precision = session_precision(session, graph)
        batch = graph["batch"]
        rows = verify_graph(lambda feeds: run_in_chunks(session.run, feeds, batch["min"], batch["max"]),
                            opened, name, precision)
    finally:
        session.close()
    problem = failure_sentence(rows)
    worst = max(rows, key=lambda r: r["max_rel"])
    summary = "{} ({} outputs, worst rel {:.1e})".format("ok" if problem is None else "FAILED", len(rows),
                                                        worst["max_rel"])
    if problem is not None:
        for path in (result["engine"], sidecar_path(result["engine"])):
            if os.path.exists(path):
                os.unlink(path)
    return summary, problem


@click.command("build")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@key_option
@click.option("--precision", type=click.Choice(PRECISIONS + ("auto",)), default="auto", show_default=True,
              help="Engine precision; auto picks int8 for QDQ graphs, else fp16 where the GPU has it.")
@click.option("--graph", "which", type=click.Choice(GRAPHS + ("all",)), default="all", show_default=True,
              help="Which graph to build.")
@click.option("--workspace-mb", type=click.IntRange(min=16), default=None,
              help="Builder workspace cap in MB (default: the target table's value for this GPU).")
@click.option("--force", is_flag=True, help="Rebuild even when a cached engine fits.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_context
def build(ctx, bundle, precision, which, workspace_mb, force, as_json):
    """Build TensorRT engines for BUNDLE's graphs on this device (cached in BUNDLE/engines)."""
    from jetgen.runtime.backends.trt import cuda_mem, api as trt_api, build as trt_build, engine_cache

    opened = Bundle.open(bundle, verify=True)
    manifest = opened.manifest
    names = [g for g in GRAPHS if g in manifest["graphs"]] if which == "all" else [which]
    if which != "all" and which not in manifest["graphs"]:
        raise JetgenError("{} has no {} graph; it has: {}.".format(bundle, which, ", ".join(sorted(manifest["graphs"]))))
    trt = trt_api.import_tensorrt()
    memory = cuda_mem.open_memory()  # builds and checks run in the device's one CUDA context
    try:
        with memory.active():
            device = memory.device_info()
            rows = []
            for name in names:
                graph = manifest["graphs"][name]
                onnx_path = opened.graph_path(name)
                result = trt_build.ensure_engine(onnx_path, graph, bundle, precision, device,
                                                 workspace_mb=workspace_mb, force=force)
                result.pop("engine_bytes", None)
                result["engine_file"] = os.path.relpath(result["engine"], bundle)
                result["verified"], result["problem"] = verify_engine(opened, name, result, workspace_mb)
                if result["problem"]:
                    result["status"] = "deleted"
                rows.append(result)
    finally:
        memory.close()

    # leftovers of interrupted builds (temporaries, engines without a sidecar) go; built engines stay
    engine_cache.cleanup_engines(bundle)
    problems = ["{} ({}: {})".format(r["problem"], r["precision"], r["engine_file"]) for r in rows if r["problem"]]
    if as_json:
        emit_json({"tensorrt": trt_api.format_version(trt.__version__), "gpu": device["name"],
                   "sm": device["sm"], "engines": rows})
        ctx.exit(1 if problems else 0)
    click.echo("TensorRT {} on {} (sm_{})".format(trt_api.format_version(trt.__version__), device["name"],
                                                  str(device["sm"]).replace(".", "")))
    click.echo(format_table(rows))
    for row in rows:
        click.echo("{}: {} ({})".format(row["graph"], row["precision"], row["precision_reason"]))
    if problems:
        raise JetgenError("Deleted {} engine(s) that failed the golden check: {}. Build again with a safer "
                          "precision (--precision fp32) or check the bundle (jetgen check).".format(
                              len(problems), "; ".join(problems)))
