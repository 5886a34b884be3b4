"""``jetgen build BUNDLE``: build (or reuse) the TensorRT engine of every graph, on this device.

    jetgen build digits.jetgen --precision auto
    graph     precision  engine                                   size     build s  status
    decoder   fp16       engines/decoder-fp16-3f2a9c0d1e4b.engine  1.2 MB   41.3     built (no engine built yet: rebuilding)
    encoder   fp16       engines/encoder-fp16-7c01d2e3f4a5.engine  1.1 MB   -        cached (reused)

Without TensorRT it exits non-zero with a sentence saying where TensorRT comes from.
Python 3.6 compatible; tensorrt and the CUDA bindings are imported only when the command runs.
"""
import os

import click

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
                      human_size(row.get("bytes")), "-" if seconds is None else "{:.1f}".format(seconds), status))
    return table(("graph", "precision", "engine", "size", "build s", "status"), lines)


@click.command("build")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--precision", type=click.Choice(PRECISIONS + ("auto",)), default="auto", show_default=True,
              help="Engine precision; auto picks int8 for QDQ graphs, else fp16 where the GPU has it.")
@click.option("--graph", "which", type=click.Choice(GRAPHS + ("all",)), default="all", show_default=True,
              help="Which graph to build.")
@click.option("--workspace-mb", type=click.IntRange(min=16), default=None,
              help="Builder workspace cap in MB (default: the target table's value for this GPU).")
@click.option("--force", is_flag=True, help="Rebuild even when a cached engine fits.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def build(bundle, precision, which, workspace_mb, force, as_json):
    """Build TensorRT engines for BUNDLE's graphs on this device (cached in BUNDLE/engines)."""
    from jetgen.runtime.backends.trt import cuda_mem, api as trt_api, build as trt_build, engine_cache

    opened = Bundle.open(bundle, verify=True)
    manifest = opened.manifest
    names = [g for g in GRAPHS if g in manifest["graphs"]] if which == "all" else [which]
    if which != "all" and which not in manifest["graphs"]:
        raise JetgenError("{} has no {} graph; it has: {}.".format(bundle, which, ", ".join(sorted(manifest["graphs"]))))
    trt = trt_api.import_tensorrt()
    memory = cuda_mem.open_memory()
    try:
        device = memory.device_info()
    finally:
        memory.close()

    rows = []
    for name in names:
        graph = manifest["graphs"][name]
        onnx_path = opened.graph_path(name)
        result = trt_build.ensure_engine(onnx_path, graph, bundle, precision, device,
                                         workspace_mb=workspace_mb, force=force)
        result.pop("engine_bytes", None)
        result["engine_file"] = os.path.relpath(result["engine"], bundle)
        rows.append(result)

    # leftovers of interrupted builds (temporaries, engines without a sidecar) go; built engines stay
    engine_cache.cleanup_engines(bundle)
    if as_json:
        emit_json({"tensorrt": trt_api.format_version(trt.__version__), "gpu": device["name"],
                   "sm": device["sm"], "engines": rows})
        return
    click.echo("TensorRT {} on {} (sm_{})".format(trt_api.format_version(trt.__version__), device["name"],
                                                  str(device["sm"]).replace(".", "")))
    click.echo(format_table(rows))
    for row in rows:
        click.echo("{}: {} ({})".format(row["graph"], row["precision"], row["precision_reason"]))
