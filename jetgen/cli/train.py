"""``jetgen train``: the command line over ``jetgen.train.trainer.train``."""
import sys

import click

from jetgen.models import MODEL_KINDS, kind_class
from jetgen.models.families import FAMILIES
from jetgen.models.likelihoods import LIKELIHOODS
from jetgen.train.config import DEFAULTS, DEVICES
from jetgen.train.data import DATASETS
from jetgen.train.schedules import KL_SCHEDULES

_KINDS = [kind_class(k) for k in MODEL_KINDS]
_ARCH_CHOICES = sorted({a for cls in _KINDS for a in cls.archs})
_AUTO = "chosen from the data set's size; the first log line says what and why"


@click.command("train")
@click.argument("model", type=click.Choice(MODEL_KINDS), required=False, metavar="[MODEL]")
@click.option("--data", type=click.Choice(DATASETS), default=DEFAULTS["data"], show_default=True, help="Data set.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Directory with the IDX files (mnist, fashion-mnist, kmnist) or class folders (folder).")
@click.option("--image-size", type=click.IntRange(min=4), default=DEFAULTS["image_size"], show_default=True,
              help="Image side for digits and folder data.")
@click.option("--out", "-o", type=click.Path(), default=None, help="Run directory to create.")
@click.option("--resume", type=click.Path(), default=None, help="Continue the run in this directory.")
@click.option("--force", is_flag=True, help="Replace an existing --out run directory.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Total epochs (with --resume: the new total) [default: {}].".format(_AUTO))
@click.option("--latent-dim", type=click.IntRange(min=1), default=None,
              help="Latent size [default: 10 for mlp, 32 for conv and dcgan].")
@click.option("--arch", type=click.Choice(_ARCH_CHOICES), default=None,
              help="Network: mlp|conv for vae/cvae, dcgan|mlp|conv for ad/vad [default: {}].".format(
                  ", ".join("{} {}".format(cls.archs[0], cls.kind) for cls in _KINDS)))
@click.option("--hidden", default=",".join(map(str, DEFAULTS["hidden"])), show_default=True,
              help="MLP hidden sizes, comma-separated.")
@click.option("--channels", default=",".join(map(str, DEFAULTS["channels"])), show_default=True,
              help="DCGAN decoder channels.")
@click.option("--family", type=click.Choice(FAMILIES), default=DEFAULTS["family"], show_default=True,
              help="Latent family (vad).")
@click.option("--likelihood", type=click.Choice(LIKELIHOODS), default=DEFAULTS["likelihood"], show_default=True)
@click.option("--sigma", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS["sigma"], show_default=True,
              help="Pixel std of the gaussian likelihood.")
@click.option("--beta", type=click.FloatRange(min=0), default=DEFAULTS["beta"], show_default=True,
              help="KL weight; 0 trains a plain autoencoder.")
@click.option("--kl-schedule", type=click.Choice(KL_SCHEDULES), default=DEFAULTS["kl_schedule"], show_default=True)
@click.option("--warmup-delay", type=click.IntRange(min=0), default=DEFAULTS["warmup_delay"], show_default=True,
              help="linear: steps at KL weight 0.")
@click.option("--warmup-steps", type=click.IntRange(min=0), default=DEFAULTS["warmup_steps"], show_default=True,
              help="linear: steps rising to beta.")
@click.option("--cycles", type=click.IntRange(min=1), default=DEFAULTS["cycles"], show_default=True,
              help="cyclical: cycles over the run.")
@click.option("--cycle-ratio", type=click.FloatRange(0, 1, min_open=True), default=DEFAULTS["cycle_ratio"],
              show_default=True, help="cyclical: rising part of each cycle.")
@click.option("--free-bits", type=click.FloatRange(min=0), default=DEFAULTS["free_bits"], show_default=True,
              help="free-bits: KL floor in nats per latent dimension.")
@click.option("--code-reg", type=click.FloatRange(min=0), default=DEFAULTS["code_reg"], show_default=True,
              help="ad: weight of |z|^2.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Batch size per process [default: {}].".format(_AUTO))
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Adam learning rate [default: {}].".format(_AUTO))
@click.option("--latent-lr", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS["latent_lr"],
              show_default=True,
              help="Learning rate of the auto-decoder latent tables.")
@click.option("--seed", type=click.IntRange(min=0), default=DEFAULTS["seed"], show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default=DEFAULTS["device"], show_default=True,
              help="auto: CUDA when present.")
@click.option("--amp/--no-amp", default=DEFAULTS["amp"], show_default=True, help="Mixed precision (CUDA only).")
@click.option("--quiet", is_flag=True, help="No progress bar or per-epoch lines.")
@click.pass_context
def train(ctx, model, **options):
    """Train MODEL (vae, cvae, ad, vad) into the run directory --out, or continue one with --resume.

    \b
    jetgen train vae --epochs 30 --out runs/vae
    jetgen train cvae --data mnist --data-dir ~/data --out runs/cvae
    jetgen train --resume runs/vae --epochs 60
    torchrun --nproc_per_node 2 -m jetgen.cli train vae --out runs/vae-ddp
    """
    from jetgen.errors import JetgenError
    from jetgen.train.trainer import TrainingInterrupted, train as run_training

    resume = options.pop("resume")
    if resume is None:
        if model is None:
            raise JetgenError("Name the model to train (vae, cvae, ad or vad), or pass --resume RUN.")
        if options["out"] is None:
            raise JetgenError("Pass --out RUN, the run directory to create.")
        config = dict(options, model=model)
    else:
        if options["out"] is not None:
            raise JetgenError("--resume continues the run where it is; drop --out.")
        # only what the user typed is checked against the stored run (or overrides it: epochs, device, ...)
        source = click.core.ParameterSource
        config = {k: v for k, v in options.items()
                  if ctx.get_parameter_source(k) not in (source.DEFAULT, source.DEFAULT_MAP)}
        if model is not None:
            config["model"] = model
    try:
        run_training(config, resume=resume)
    except TrainingInterrupted as err:
        click.echo(str(err), err=True)
        sys.exit(130)
