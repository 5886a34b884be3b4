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
            missing = getattr(err, "name", None) or str(err)
            raise click.ClickException(
                "The '{}' command needs {} which is not installed here; install the extra "
                "that provides it (see the README).".format(name, missing))
        return getattr(module, attr)

    def invoke(self, ctx):
        try:
            return super(LazyGroup, self).invoke(ctx)
        except JetgenError as err:
            click.echo("Error: {}".format(err), err=True)
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
