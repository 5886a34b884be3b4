"""Fixtures shared by the whole test suite (keep this API stable; other test modules rely on it).

``run_factory`` (session scope)
    A function ``make(name, *cli_args) -> str``, the path of a trained run directory.
    ``cli_args`` are the arguments of ``jetgen train`` without ``--out`` (the model first), e.g.
    ``make("cvae", "cvae", "--epochs", "10", "--batch-size", "32", "--lr", "3e-3")``. The run is trained
    once per ``name`` per test session through the real CLI (``click.testing.CliRunner`` on
    ``jetgen.cli.main``, adding ``--out`` and ``--quiet``) in a session temporary directory; later calls
    with the same name return the same path. Asking for a name again with different arguments, or a
    failed training, fails the calling test with the CLI's output. Treat the run as read-only.
    ``make(name)`` alone, for a name in ``RUN_PRESETS`` (vae, cvae, ad, vad), trains those shared fast
    settings, so tests asking for the same preset share one run.

``tiny_idx_dir`` (function scope)
    A directory holding a small valid MNIST-format data set: ``train-images-idx3-ubyte.gz`` and
    ``train-labels-idx1-ubyte.gz`` (64 images, gzip) and ``t10k-images-idx3-ubyte`` and
    ``t10k-labels-idx1-ubyte`` (16 images, raw), 28x28 unsigned bytes, labels 0..9 cycling.
    Load it with ``load_dataset("mnist", tiny_idx_dir)``.

``write_idx`` (function)
    ``write_idx(path, array, gz=None, magic=None, truncate=0)`` writes a uint8 numpy array as an IDX
    file (gzip when ``gz`` or the path ends in .gz), optionally with another magic number or with
    ``truncate`` bytes cut off the end. Returns the path.
"""
import gzip
import struct

import numpy as np
import pytest

# Fast, tested settings for runs that other tests share (digits, CPU, seconds each).
RUN_PRESETS = {
    # test neg-ELBO ~0.82 of the per-pixel Bernoulli baseline (quality floor 0.85)
    "vae": ("vae", "--arch", "mlp", "--latent-dim", "10", "--epochs", "8", "--batch-size", "32", "--lr", "3e-3"),
    # samples classified as their label ~0.96 of the time by a logistic regression on 28x28 digits
    # (20 epochs gave 0.93: too close to the 0.90 floor)
    "cvae": ("cvae", "--arch", "mlp", "--latent-dim", "10", "--epochs", "30", "--batch-size", "32", "--lr", "3e-3"),
    "ad": ("ad", "--arch", "dcgan", "--channels", "64,32,16", "--latent-dim", "16", "--epochs", "10",
           "--batch-size", "32", "--lr", "3e-3"),
    "vad": ("vad", "--arch", "dcgan", "--channels", "64,32,16", "--latent-dim", "16", "--epochs", "10",
            "--batch-size", "32", "--lr", "3e-3"),
}


@pytest.fixture(scope="session")
def run_factory(tmp_path_factory):
    from click.testing import CliRunner

    from jetgen.cli import main

    root = tmp_path_factory.mktemp("runs")
    made = {}

    def make(name, *cli_args):
        if not cli_args and name in RUN_PRESETS:
            cli_args = RUN_PRESETS[name]
        cli_args = tuple(str(a) for a in cli_args)
        if name in made:
            path, args = made[name]
            if args != cli_args:
                pytest.fail("run_factory: run {!r} was already made with {} (asked now with {})".format(
                    name, args, cli_args))
            return path
        path = str(root / name)
        result = CliRunner().invoke(main, ["train"] + list(cli_args) + ["--out", path, "--quiet"])
        if result.exit_code != 0:
            pytest.fail("run_factory: training {!r} failed (exit {}):\n{}{}".format(
                name, result.exit_code, result.output, _exception_text(result)))
        made[name] = (path, cli_args)
        return path

    return make


def _exception_text(result):
    if result.exception is None or isinstance(result.exception, SystemExit):
        return ""
    import traceback

    return "".join(traceback.format_exception(*result.exc_info))


def _idx_bytes(array, magic=None):
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = magic if magic is not None else struct.pack(">HBB", 0, 0x08, array.ndim)
    return header + struct.pack(">" + "I" * array.ndim, *array.shape) + array.tobytes()


def _write_idx(path, array, gz=None, magic=None, truncate=0):
    data = _idx_bytes(array, magic)
    if truncate:
        data = data[:-truncate]
    path = str(path)
    if gz or (gz is None and path.endswith(".gz")):
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        with open(path, "wb") as handle:
            handle.write(data)
    return path


@pytest.fixture
def write_idx():
    return _write_idx


def tiny_images(n, seed):
    """n 28x28 uint8 images: a bright square at a label-dependent place on faint noise."""
    rng = np.random.RandomState(seed)
    images = (rng.rand(n, 28, 28) * 40).astype(np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    for i, label in enumerate(labels):
        r, c = 2 + 2 * int(label), 4 + int(label)
        images[i, r:r + 6, c:c + 6] = 255
    return images, labels


@pytest.fixture
def tiny_idx_dir(tmp_path):
    directory = tmp_path / "mnist-idx"
    directory.mkdir()
    train_x, train_y = tiny_images(64, 0)
    test_x, test_y = tiny_images(16, 1)
    _write_idx(directory / "train-images-idx3-ubyte.gz", train_x)
    _write_idx(directory / "train-labels-idx1-ubyte.gz", train_y)
    _write_idx(directory / "t10k-images-idx3-ubyte", test_x)
    _write_idx(directory / "t10k-labels-idx1-ubyte", test_y)
    return str(directory)


@pytest.fixture
def one_torch_thread():
    """One torch intra-op thread for the test: the 2 cores are shared, and oversubscribed torch threads stall."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
