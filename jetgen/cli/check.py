"""``jetgen check MODEL --target T``: offline deployability check (no TensorRT needed).

Exit status 0 when deployable (no errors), 1 when not or when the input is unusable.
"""
import click

from jetgen.cli.options import key_option
from jetgen.cli.output import emit_json
from jetgen.export.check import check_model, format_report, int64_harmless
from jetgen.runtime.targets import TARGETS
from jetgen.spec import PRECISIONS


@click.command("check")
@click.argument("model", type=click.Path())
@key_option
@click.option("--target", "-t", required=True, type=click.Choice(sorted(TARGETS)),
              help="Board to check against (see jetgen.runtime.targets).")
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="Precision to build with; default: the manifest's, or fp32 for a single .onnx.")
@click.option("--max-batch", type=click.IntRange(min=1), default=None,
              help="Largest batch to plan for; default: the manifest's batch.max, or 64 for a single .onnx.")
@click.option("--calib", type=click.Path(), default=None,
              help="A .npy array for the first input of a single .onnx: finds activations beyond fp16 range.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON for scripts.")
@click.option("--verbose", "-v", is_flag=True, help="Also list the findings that need no action.")
@click.pass_context
def check(ctx, model, target, precision, max_batch, calib, as_json, verbose):
    """Check offline whether a bundle directory or an .onnx file deploys on a target.

    MODEL is a bundle (NAME.jetgen/ with manifest.json) or a single .onnx file.
    """
    report = check_model(model, target, precision=precision, max_batch=max_batch, calib=calib)
    if as_json:
        emit_json(report)
    else:
        click.echo(format_report(report, verbose=verbose, int64_ok=int64_harmless(model, report)))
    ctx.exit(0 if report["deployable"] else 1)
