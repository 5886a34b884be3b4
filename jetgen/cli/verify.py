"""``jetgen verify BUNDLE``: run every graph on its golden inputs and compare with the outputs PyTorch
gave at export, against the tolerance of the precision each graph runs at (jetgen.spec.GOLDEN_TOLERANCES).

    jetgen verify digits.jetgen --backend trt
    graph    case      batch  output  precision  max abs  max rel  tolerance abs / rel  result
    decoder  prior-b1  1      x       fp16       3.1e-04  3.2e-04  2e-02 / 1e-02       ok

Exit 0 when every output is within tolerance, 1 otherwise (or when the bundle has no golden vectors).
Python 3.6 compatible: it runs on the device.
"""
import click

from jetgen.cli.options import backend_options, open_model
from jetgen.cli.output import emit_json, table
from jetgen.errors import JetgenError
from jetgen.spec import GRAPHS


def _sci(value):
    return "{:.1e}".format(value) if value == value and value != float("inf") else str(value)


def format_rows(rows):
    return table(("graph", "case", "batch", "output", "precision", "max abs", "max rel", "tolerance abs / rel",
                  "result"),
                 [(r["graph"], r["case"], r["batch"], r["output"], r["precision"], _sci(r["max_abs"]),
                   _sci(r["max_rel"]), "{:g} / {:g}".format(r["tol_abs"], r["tol_rel"]),
                   "ok" if r["ok"] else "FAILED") for r in rows])


@click.command("verify")
@click.argument("bundle", type=click.Path())
@backend_options
@click.option("--graph", "which", type=click.Choice(GRAPHS + ("all",)), default="all", show_default=True,
              help="Which graph to verify.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.pass_context
def verify(ctx, bundle, backend, precision, device, threads, which, as_json):
    """Check BUNDLE's graphs on this machine against the golden vectors stored at export."""
    from jetgen.runtime.verify import failure_sentence, verify_model

    with open_model(bundle, backend, precision, device, threads) as model:
        if which != "all" and not model.bundle.has(which):
            raise JetgenError("{} has no {} graph; it has: {}.".format(bundle, which, ", ".join(model.bundle.graph_names())))
        report = verify_model(model, None if which == "all" else [which])
    problem = failure_sentence(report["rows"])
    if as_json:
        emit_json(report)
        ctx.exit(0 if report["ok"] else 1)
    click.echo(format_rows(report["rows"]))
    for graph, used in report["graphs"].items():
        if used is None:
            click.echo("{}: no golden vectors in the bundle; not verified".format(graph))
    if problem:
        raise JetgenError("Verification failed: {}; rebuild the engine (jetgen build --force) or re-export the "
                          "bundle.".format(problem))
    click.echo("All {} outputs within tolerance on {}.".format(len(report["rows"]), report["backend"]))
