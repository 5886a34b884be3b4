"""The one command line: ``jetgen COMMAND``.

Each command lives in a module of this package and is imported only when invoked, so ``jetgen
sample`` on a Jetson never imports torch (and ``jetgen --help`` imports nothing heavy). Every
``JetgenError`` becomes one sentence on stderr and exit 1. This is the only package that imports
click. Python 3.6 compatible.
"""
import importlib
import sys

import click

from jetgen import __version__
from jetgen.errors import JetgenError

# command name -> ("module:attribute" of a click.Command, one-line help shown by `jetgen --help`)
COMMANDS = {
    "train": ("jetgen.cli.train:train", "Train a model on a data set into a run directory."),
    "eval": ("jetgen.cli.evaluate:evaluate", "Evaluate a run: ELBO, IWAE NLL, active units, pictures."),
    "export": ("jetgen.cli.export:export", "Export a run to a deployable bundle for a target board."),
    "check": ("jetgen.cli.check:check", "Check offline whether a bundle or .onnx deploys on a target."),
    "info": ("jetgen.cli.info:info", "Show what a bundle holds, where it came from, what was built."),
    "sample": ("jetgen.cli.generate:sample", "Draw samples from a bundle's prior and decode them."),
    "interpolate": ("jetgen.cli.generate:interpolate", "Decode a path between two latents or inputs."),
    "complete": ("jetgen.cli.generate:complete", "Fill in the hidden part of inputs by latent optimisation."),
    "build": ("jetgen.cli.build:build", "Build TensorRT engines for a bundle on this device."),
    "bench": ("jetgen.cli.bench:bench", "Benchmark a bundle's backends against PyTorch eager."),
    "serve": ("jetgen.cli.serve:serve", "Serve bundles on a web page: sample, explore, draw and complete."),
    "doctor": ("jetgen.cli.doctor:doctor", "Show what this machine is, what jetgen can do here, what to install."),
    "verify": ("jetgen.cli.verify:verify", "Check a bundle's graphs here against its golden vectors."),
    "triton": ("jetgen.cli.triton:triton", "Write a bundle as an NVIDIA Triton Inference Server model repository."),
    "sign": ("jetgen.cli.sign:sign", "Sign a bundle with a shared key, so boards holding it accept it."),
    "selftest": ("jetgen.cli.selftest:selftest", "Prove this board runs jetgen (ort and TensorRT); write a report."),
}


# command -> the extras it needs beyond the core package (pip install 'jetgen[EXTRA,...]'); a command not
# listed runs on the core package plus a backend (the `ort` extra, or TensorRT on a board)
COMMAND_EXTRAS = {
    "train": ("train",),
    "eval": ("train",),
    "export": ("train", "export"),
    "check": ("export",),
    "verify": ("ort",),
    "bench": ("ort",),
    "sample": ("ort",),
    "interpolate": ("ort",),
    "complete": ("ort",),
    "serve": ("ort",),
}
# top-level module -> the extra that installs it (the desktop-only ones and the runtime backend)
MODULE_EXTRA = {"torch": "train", "torchvision": "train", "sklearn": "train", "matplotlib": "train", "PIL": "train",
                "safetensors": "train", "tqdm": "train", "trimesh": "train", "scipy": "train",
                "onnx": "export", "onnxscript": "export", "onnxslim": "export", "onnxconverter_common": "export",
                "onnxruntime": "ort"}
# torch is installed first and pinned: a bare `pip install torch` on Linux pulls a multi-GB CUDA build
TORCH_CPU_INSTALL = "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"


def missing_extra_message(command, module):
    """One sentence for ``jetgen COMMAND`` failing to import ``module``: the extra to install and how, or
    None when ``module`` is not one an extra provides (then the ImportError is a bug, not an install)."""
    top = (module or "").split(".")[0]
    extra = MODULE_EXTRA.get(top)
    if extra is None:
        return None
    extras = sorted(set(COMMAND_EXTRAS.get(command, ())) | {extra})
    text = "`jetgen {}` needs the {} extra{} ({} is not installed here): pip install 'jetgen[{}]'".format(
        command, " and ".join(extras), "s" if len(extras) > 1 else "", top, ",".join(extras))
    if "train" in extras:
        text += (" after CPU torch ({}; on a CUDA machine the CUDA wheel for your driver from "
                 "https://pytorch.org/get-started/locally/ instead)".format(TORCH_CPU_INSTALL))
    if extra == "ort":
        text += " (on a Jetson, NVIDIA's onnxruntime-gpu wheel: see jetson/README.md)"
    return text + "."


def _missing_module(err):
    """The module a ModuleNotFoundError says is missing; None for another ImportError (a broken install
    or a missing name inside a package is not a missing extra)."""
    if not isinstance(err, ModuleNotFoundError):
        return None
    return err.name or str(err).replace("No module named ", "").strip("'\"")


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def format_commands(self, ctx, formatter):
        # Listing must not import the commands (that would pull torch into `jetgen --help`).
        rows = [(name, COMMANDS[name][1]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx, name):
        spec = COMMANDS.get(name)
        if spec is None:
            return None
        module_name, attr = spec[0].split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            missing = _missing_module(err) or getattr(err, "name", None) or str(err)
            raise click.ClickException(missing_extra_message(name, missing) or (
                "The '{}' command needs {} which is not installed here (see the README's install).".format(
                    name, missing)))
        return getattr(module, attr)

    def invoke(self, ctx):
        try:
            return super(LazyGroup, self).invoke(ctx)
        except JetgenError as err:
            click.echo("Error: {}".format(err), err=True)
            sys.exit(1)
        except ImportError as err:  # a command importing a desktop-only module when it runs (eval, export)
            message = missing_extra_message(ctx.invoked_subcommand, _missing_module(err))
            if message is None:
                raise
            click.echo("Error: {}".format(message), err=True)
            sys.exit(1)
        except OSError as err:  # a full disk that no writer turned into its own sentence
            from jetgen.atomic import disk_full_error, is_disk_full
            if not is_disk_full(err):
                raise
            click.echo("Error: {}".format(disk_full_error(err, err.filename or "the output")), err=True)
            sys.exit(1)


@click.group(cls=LazyGroup, context_settings={"auto_envvar_prefix": "JETGEN"})
@click.version_option(__version__, prog_name="jetgen")
def main():
    """jetgen: train latent generative models, export them, run them on Jetson boards.

    Every option can also come from the environment: JETGEN_<COMMAND>_<OPTION>, e.g.
    JETGEN_SAMPLE_BACKEND=trt. Shell completion: eval "$(_JETGEN_COMPLETE=bash_source jetgen)".
    """
