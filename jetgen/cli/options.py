"""Options and argument helpers shared by the commands that run a bundle."""
import os

import click

from jetgen.errors import JetgenError
from jetgen.runtime import backends
from jetgen.spec import PRECISIONS

MAX_THREADS = 256  # more CPU threads than any board has; larger requests are refused, not tried


def backend_options(func):
    """--backend, --precision, --device, --threads: how graphs run."""
    options = [
        click.option("--backend", type=click.Choice(backends.names()), default=backends.DEFAULT, show_default=True,
                     help=", ".join("{}: {}".format(n, backends.get(n)["title"]) for n in backends.names()) + "."),
        click.option("--precision", type=click.Choice(PRECISIONS), default=None,
                     help="Run precision (default: the bundle's; trt: the fastest the GPU runs safely)."),
        click.option("--device", default=None, help="ort: cpu, cuda, cuda:N or tensorrt (default: best of cuda, cpu)."),
        click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=None, help="CPU threads (ort)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def open_model(bundle, backend, precision, device, threads):
    from jetgen.runtime.model import Model

    return Model.open(bundle, backend=backend, precision=precision, device=device,
                      **backends.session_options(backend, threads))


def parse_label(text):
    """'3' -> 3; a label name stays a string (Model checks it against the manifest)."""
    if text is None:
        return None
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return text


def check_out(path):
    """Refuse an output name we cannot write before doing any work."""
    if os.path.splitext(path)[1].lower() not in (".png", ".npy"):
        raise JetgenError("Cannot write {}: the output must end in .png or .npy.".format(path))
    return path


def need_label(model, label):
    if model.conditional and label is None:
        raise JetgenError("This model is conditional: give --label K (one of {}).".format(", ".join(model.labels)))
    return label
