"""``jetgen export RUN --target T --out NAME.jetgen``: write a deployable bundle for a board.

Prints one row per graph (file, size, opset, inputs, parity, status) and the offline deployability
check's verdict; ``--json`` prints the manifest and the check report instead. Exit status 1 with one
sentence on any problem the user can fix.
"""
import time

import click

from jetgen.cli.output import emit_json, human_size, table
from jetgen.errors import JetgenError
from jetgen.runtime.targets import TARGETS
from jetgen.spec import PRECISIONS


@click.command("export")
@click.argument("run", type=click.Path())
@click.option("--target", "-t", required=True, type=click.Choice(sorted(TARGETS)),
              help="Board the bundle is for; fixes the ONNX opset and what precisions are allowed.")
@click.option("--out", "-o", required=True, type=click.Path(), help="Bundle directory to write (NAME.jetgen).")
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(PRECISIONS),
              help="fp16: half-precision arithmetic; int8: static QDQ calibrated on training data.")
@click.option("--calib-samples", type=int, default=500, show_default=True,
              help="Training examples used to calibrate int8.")
@click.option("--max-batch", type=int, default=1024, show_default=True,
              help="Largest batch the graphs are declared for (TensorRT profile max).")
@click.option("--force", is_flag=True, help="Replace an existing bundle at --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and check report as JSON.")
def export(run, target, out, precision, calib_samples, max_batch, force, as_json):
    """Export the trained RUN directory to a bundle for a target board."""
    from jetgen.export.exporter import export_run, parity_ok

    log = (lambda message: None) if as_json else (lambda message: click.echo(message, err=True))
    started = time.time()
    manifest = export_run(run, target, out, precision=precision, calib_samples=calib_samples,
                          max_batch=max_batch, force=force, log=log)
    seconds = time.time() - started
    report = _check(out, target)
    if as_json:
        emit_json({"bundle": out, "seconds": round(seconds, 2), "manifest": manifest, "check": report})
        return
    click.echo(summary_table(manifest, report, parity_ok))
    if manifest.get("quality"):
        click.echo("")
        click.echo(quality_lines(manifest["quality"]))
    click.echo("")
    click.echo("Wrote {} for {} ({}) in {:.1f} s.".format(out, manifest["target"]["name"],
                                                           manifest["target"]["board"], seconds))
    if report is not None:
        from jetgen.export.check import verdict

        click.echo("Check: " + (verdict(report) if "findings" in report else report.get("error", "")))


def _check(out, target):
    """The offline check's report on the finished bundle, or None when that module is absent.
    Export never fails on it: findings are shown, not enforced."""
    try:
        from jetgen.export.check import check_model
    except ImportError:
        return None
    try:
        return check_model(out, target)
    except JetgenError as err:
        return {"error": "the check could not run: {}".format(err)}


def _status(graph, entry, report, parity_ok):
    if entry["precision"] == "fp32" and not parity_ok(entry["parity"]):
        return "parity!"
    if not report or "findings" not in report:
        return "ok"
    mine = [f for f in report["findings"] if f.get("graph") in (graph, entry["file"])]
    if any(f["severity"] == "error" for f in mine):
        return "check error"
    if any(f["severity"] == "warning" for f in mine):
        return "ok (warnings)"
    return "ok"


def summary_table(manifest, report, parity_ok):
    """One row per graph: file, size, opset, precision, inputs, parity, status."""
    rows = []
    for name, entry in manifest["graphs"].items():
        inputs = ", ".join("{}{}".format(t["name"], tuple(t["shape"][1:]) if len(t["shape"]) > 2
                                         else "({})".format(t["shape"][1]) if len(t["shape"]) == 2 else "")
                           for t in entry["inputs"])
        parity = "{:.1e} / {:.1e}".format(entry["parity"]["max_abs"], entry["parity"]["max_rel"])
        rows.append((name, entry["file"], human_size(entry["bytes"]), str(entry["opset"]), entry["precision"],
                     inputs, parity, _status(name, entry, report, parity_ok)))
    return table(("graph", "file", "size", "opset", "prec", "inputs", "parity (abs / rel)", "status"), rows)


def quality_lines(quality):
    """The reduced-precision quality table as text."""
    prec = quality["precision"]
    lines = ["Quality of {} against fp32 on the {}:".format(prec, quality["data"])]
    lines.append("  max decode error            {:.2e}".format(quality["max_decode_error"]))
    lines.append("  latent_grad max rel error   {:.2e}".format(quality["latent_grad_max_rel_error"]))
    for key in ("neg_elbo", "recon_error", "conditional_accuracy"):
        if key in quality:
            row = quality[key]
            lines.append("  {:<27} fp32 {:.4g}  {} {:.4g}  (delta {:+.3g}; {})".format(
                key.replace("_", " "), row["fp32"], prec, row[prec], row["delta"], row["unit"]))
    return "\n".join(lines)
