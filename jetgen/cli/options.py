"""Options and argument helpers shared by the commands that run a bundle."""
import os
import random

import click
import numpy as np

from jetgen.errors import JetgenError
from jetgen.runtime import backends
from jetgen.spec import PRECISIONS

MAX_THREADS = 256  # more CPU threads than any board has; larger requests are refused, not tried


def _use_key(ctx, param, value):
    """--key KEYFILE: checked now, then required of every bundle this command opens (through
    JETGEN_BUNDLE_KEY, which jetgen.spec.read_manifest reads, so worker processes inherit it)."""
    if value is None:
        return None
    from jetgen.signing import KEY_ENV, read_key

    read_key(value)
    previous = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = os.path.abspath(value)

    def restore():
        if previous is None:
            os.environ.pop(KEY_ENV, None)
        else:
            os.environ[KEY_ENV] = previous
    ctx.call_on_close(restore)
    return value


def key_option(func):
    """--key KEYFILE: refuse bundles not signed under this key (docs/bundle.md, "Signed bundles")."""
    return click.option("--key", type=click.Path(dir_okay=False), default=None, expose_value=False,
                        callback=_use_key, metavar="KEYFILE",
                        help="Refuse bundles not signed with this key file (also: JETGEN_BUNDLE_KEY=KEYFILE).")(func)


def backend_options(func):
    """--backend, --precision, --device, --threads: how graphs run; and --key (every command that runs
    graphs opens a bundle)."""
    options = [
        click.option("--backend", type=click.Choice(backends.names()), default=backends.DEFAULT, show_default=True,
                     help=", ".join("{}: {}".format(n, backends.get(n)["title"]) for n in backends.names()) + "."),
        click.option("--precision", type=click.Choice(PRECISIONS), default=None,
                     help="Run precision (default: the bundle's; trt: the fastest the GPU runs safely)."),
        click.option("--device", default=None, help="; ".join("{}: {}".format(n, backends.get(n)["devices"])
                                                               for n in backends.names() if backends.get(n)["devices"])
                     + "."),
        click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=None, help="CPU threads ({}).".format(
            ", ".join(n for n in backends.names() if backends.get(n)["threads_option"]))),
    ]
    for option in reversed(options):
        func = option(func)
    return key_option(func)


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


def label_options(many):
    """--label K (one label, index or name) and --labels (several); ``many`` says what several do."""
    def decorate(func):
        func = click.option("--labels", "labels_text", default=None, metavar="all|0,3,7|FILE.npy",
                            help="Several labels: all, a comma-separated list, or a .npy file of ints; " + many)(func)
        return click.option("--label", default=None, metavar="K", help="One label (index or name).")(func)
    return decorate


def parse_labels(label, labels_text):
    """None, "all", or a list of labels (ints, or names Model checks) from --label / --labels.

    JetgenError when both are given or the list cannot be read."""
    from jetgen.runtime.images import load_npy

    if label is not None and labels_text is not None:
        raise JetgenError("Give --label K for one label or --labels for several, not both.")
    if label is not None:
        return [parse_label(label)]
    if labels_text is None:
        return None
    text = labels_text.strip()
    if text == "all":
        return "all"
    if text.lower().endswith(".npy"):
        arr = load_npy(text).reshape(-1)
        if arr.size == 0 or not np.all(arr == np.round(arr)):
            raise JetgenError("{} must hold whole-number labels (one per row or input).".format(text))
        return [int(v) for v in arr]
    values = [parse_label(v) for v in text.split(",") if v.strip()]
    if not values:
        raise JetgenError("--labels takes all, a comma-separated list such as 0,3,7, or a .npy file.")
    return values


def label_indices(model, labels):
    """``labels`` (a list of ints or names) as label indices of ``model``; None stays None, "all" is
    every label. JetgenError for a name the model lacks, or labels given to an unconditional model."""
    if not model.conditional:
        if labels is not None:
            raise JetgenError("This model is not conditional; drop --label/--labels.")
        return None
    if labels == "all":
        return list(range(len(model.labels)))
    if labels is None:
        return None
    for value in labels:
        if isinstance(value, str) and value not in model.labels:
            raise JetgenError("Unknown label {!r}; this model's labels are {}.".format(value, ", ".join(model.labels)))
    return [model.labels.index(v) if isinstance(v, str) else v for v in labels]


def row_labels(model, labels):
    """The label of each row for sample and interpolate: every label when none is asked of a
    conditional model, None for an unconditional one (JetgenError as ``label_indices``)."""
    rows = label_indices(model, labels)
    if rows is None and model.conditional:
        return list(range(len(model.labels)))
    return rows


def existing_directory(ctx, param, value):
    """Click callback for an output FILE option: refuse (before any work) a file whose directory does
    not exist, with the sentence of jetgen.atomic.require_directory; None passes."""
    if value is None:
        return value
    from jetgen.atomic import require_directory

    return require_directory(value)


def out_option(what):
    """-o/--out FILE, the file a command writes (its directory must exist); ``what`` says which kinds."""
    return click.option("--out", "-o", required=True, type=click.Path(), metavar="FILE", callback=existing_directory,
                        help="File to write: " + what)


def draw_seed(seed):
    """``seed``, or a fresh one drawn from the OS when None, so every run can be repeated."""
    if seed is not None:
        return seed, False
    return random.SystemRandom().randrange(2 ** 32), True


def check_out(path):
    """Refuse an output name we cannot write before doing any work."""
    if os.path.splitext(path)[1].lower() not in (".png", ".npy"):
        raise JetgenError("Cannot write {}: the output must end in .png or .npy.".format(path))
    return path
