"""``jetgen selftest``: prove this board (or CUDA machine) runs jetgen, and write a report to paste
into an issue. The steps are jetgen.selftest's; exit 1 when any step fails. Python 3.6 compatible."""
import os
import sys

import click

from jetgen.atomic import atomic_write_text
from jetgen.cli.options import existing_directory


def default_workdir():
    """$JETGEN_CACHE/selftest, else ~/.cache/jetgen/selftest: the bundle copy and its engines."""
    base = os.environ.get("JETGEN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "jetgen")
    return os.path.join(base, "selftest")


@click.command("selftest")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default="jetgen-selftest.md",
              callback=existing_directory,
              show_default=True, help="Markdown report to write (paste it into an issue).")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Where the tiny bundle and its TensorRT engines are kept [default: $JETGEN_CACHE/selftest "
                   "or ~/.cache/jetgen/selftest]; a second run reuses the engines.")
@click.option("--fresh", is_flag=True, help="Start from a new copy of the bundle (engines are built again).")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="CPU threads for ONNX Runtime.")
def selftest(report_path, workdir, fresh, threads):
    """Run doctor, verify, TensorRT builds, benches, serve and completion on a tiny shipped bundle.

    Skips what this machine lacks (saying why) and exits non-zero if any step fails. Takes well under
    a minute where the engines are cached; the first TensorRT build takes a few minutes on a Nano.
    """
    import shutil

    from jetgen import selftest as st

    workdir = workdir or default_workdir()
    if fresh:
        shutil.rmtree(os.path.join(workdir, "tiny.jetgen"), ignore_errors=True)
    click.echo("jetgen selftest (work directory {})".format(workdir))
    steps, ctx = st.run(workdir, threads=threads, echo=click.echo)
    command = "jetgen selftest" + (" " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "")
    atomic_write_text(report_path, st.report_markdown(steps, ctx, command=command))
    failed = [r["step"] for r in steps.rows if r["status"] == "fail"]
    click.echo("Report written to {}".format(report_path))
    if failed:
        click.echo("Error: {} step(s) failed: {}; the report says why.".format(len(failed), ", ".join(failed)), err=True)
        sys.exit(1)
