"""``jetgen train``: the command line over ``jetgen.train.trainer.train``."""
import sys

import click

from jetgen.models import MODEL_KINDS, kind_class
from jetgen.models.families import FAMILIES
from jetgen.models.likelihoods import LIKELIHOODS
from jetgen import modalities
from jetgen.train.config import DEFAULTS, DEVICES
from jetgen.train.schedules import KL_SCHEDULES, LR_SCHEDULES

_KINDS = [kind_class(k) for k in MODEL_KINDS]
_ARCH_CHOICES = sorted({a for cls in _KINDS for a in cls.archs})
_AUTO = "chosen from the data set's size; the first log line says what and why"
_IMG, _3D = modalities.part("image", "train").DEFAULTS, modalities.part("points", "train").DEFAULTS


def _by_kind(key, image=None):
    """'[default: X for image models, Y for atlasnet]' for a key whose default depends on the kind."""
    return "[default: {} for image models, {} for atlasnet]".format(
        image if image is not None else _IMG[key], _3D[key])


@click.command("train")
@click.argument("model", type=click.Choice(MODEL_KINDS), required=False, metavar="[MODEL]")
@click.option("--data", type=click.Choice(modalities.datasets()), default=None,
              help="Data set {}.".format(_by_kind("data")))
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Directory with the IDX files (mnist, fashion-mnist, kmnist) or class folders (folder, meshes, "
                   "points).")
@click.option("--image-size", type=click.IntRange(min=4), default=DEFAULTS["image_size"], show_default=True,
              help="Image side for digits and folder data.")
@click.option("--out", "-o", type=click.Path(), default=None, help="Run directory to create.")
@click.option("--resume", type=click.Path(), default=None, help="Continue the run in this directory.")
@click.option("--force", is_flag=True, help="Replace an existing --out run directory.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Total epochs (with --resume: the new total) [default: {}].".format(_AUTO))
@click.option("--latent-dim", type=click.IntRange(min=1), default=None,
              help="Latent size [default: 10 for mlp, 32 for conv and dcgan, 128 for atlasnet].")
@click.option("--arch", type=click.Choice(_ARCH_CHOICES), default=None,
              help="Network: mlp|conv for vae/cvae, dcgan|mlp|conv for ad/vad [default: {}].".format(
                  ", ".join("{} {}".format(cls.archs[0], cls.kind) for cls in _KINDS)))
@click.option("--hidden", default=None,
              help="MLP hidden sizes, comma-separated; for atlasnet one width {}.".format(
                  _by_kind("hidden", ",".join(map(str, _IMG["hidden"])))))
@click.option("--channels", default=",".join(map(str, DEFAULTS["channels"])), show_default=True,
              help="DCGAN decoder channels.")
@click.option("--family", type=click.Choice(FAMILIES), default=DEFAULTS["family"], show_default=True,
              help="Latent family (vad).")
@click.option("--likelihood", type=click.Choice(LIKELIHOODS), default=DEFAULTS["likelihood"], show_default=True)
@click.option("--sigma", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS["sigma"], show_default=True,
              help="Pixel std of the gaussian likelihood.")
@click.option("--beta", type=click.FloatRange(min=0), default=None,
              help="KL weight; 0 trains a plain autoencoder {}.".format(_by_kind("beta")))
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
              help="Adam learning rate (the peak of one-cycle) [default: {}].".format(_AUTO))
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=None,
              help="Learning rate over the run {}.".format(_by_kind("lr_schedule")))
@click.option("--latent-lr", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS["latent_lr"],
              show_default=True,
              help="Learning rate of the auto-decoder latent tables.")
@click.option("--variant", type=click.Choice(("ae", "vae")), default=DEFAULTS["variant"], show_default=True,
              help="atlasnet: plain autoencoder or VAE.")
@click.option("--patches", type=click.IntRange(min=1), default=DEFAULTS["patches"], show_default=True,
              help="atlasnet: square patches of the decoder.")
@click.option("--grid", type=click.IntRange(min=2), default=DEFAULTS["grid"], show_default=True,
              help="atlasnet: G x G grid per patch of the decoded mesh.")
@click.option("--layers", type=click.IntRange(min=1), default=DEFAULTS["layers"], show_default=True,
              help="atlasnet: hidden layers of each patch MLP.")
@click.option("--train-points", type=click.IntRange(min=1), default=DEFAULTS["train_points"], show_default=True,
              help="atlasnet: points decoded and compared per shape in training.")
@click.option("--encoder-points", type=click.IntRange(min=1), default=DEFAULTS["encoder_points"], show_default=True,
              help="atlasnet: points the encoder reads per shape.")
@click.option("--points", type=click.IntRange(min=16), default=DEFAULTS["points"], show_default=True,
              help="atlasnet: points sampled per shape of the data set.")
@click.option("--shape-classes", default=None, help="shapes data: procedural classes, comma-separated [default: all].")
@click.option("--shapes-per-class", type=click.IntRange(min=1), default=DEFAULTS["shapes_per_class"],
              show_default=True, help="shapes data: training shapes per class.")
@click.option("--test-shapes-per-class", type=click.IntRange(min=0), default=DEFAULTS["test_shapes_per_class"],
              show_default=True, help="shapes data: test shapes per class.")
@click.option("--init-from", type=click.Path(file_okay=False), default=None, metavar="RUN|base",
              help="atlasnet: start from the weights of this trained run (matching tensors; reported), or from "
                   "`base`: a model jetgen trains once on its procedural shapes and caches in $JETGEN_CACHE.")
@click.option("--passes", type=click.IntRange(min=1), default=None,
              help="atlasnet: passes over the training shapes per epoch [default: {}].".format(_AUTO))
@click.option("--augment/--no-augment", default=None,
              help="atlasnet: scale (and, where the shapes share no heading, turn) training shapes at every step "
                   "[default: on below 1,000 training shapes].")
@click.option("--seed", type=click.IntRange(min=0), default=DEFAULTS["seed"], show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default=DEFAULTS["device"], show_default=True,
              help="auto: CUDA when present.")
@click.option("--amp/--no-amp", default=DEFAULTS["amp"], show_default=True, help="Mixed precision (CUDA only).")
@click.option("--quiet", is_flag=True, help="No progress bar or per-epoch lines.")
@click.pass_context
def train(ctx, model, **options):
    """Train MODEL (vae, cvae, ad, vad, atlasnet) into the run directory --out, or continue one with --resume.

    \b
    jetgen train vae --epochs 30 --out runs/vae
    jetgen train atlasnet --data meshes --data-dir my-meshes --init-from base --out runs/mine
    jetgen train atlasnet --variant ae --out runs/ae3d
    jetgen train atlasnet --init-from runs/ae3d --epochs 8 --out runs/vae3d
    jetgen train cvae --data mnist --data-dir ~/data --out runs/cvae
    jetgen train --resume runs/vae --epochs 60
    torchrun --nproc_per_node 2 -m jetgen.cli train vae --out runs/vae-ddp
    """
    from jetgen.errors import JetgenError
    from jetgen.train.trainer import TrainingInterrupted, train as run_training

    resume = options.pop("resume")
    if resume is None:
        if model is None:
            raise JetgenError("Name the model to train (vae, cvae, ad, vad or atlasnet), or pass --resume RUN.")
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
        sys.exit(128 + err.signum)  # 130 after Ctrl-C, 143 after SIGTERM
