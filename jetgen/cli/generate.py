"""``jetgen sample``, ``interpolate`` and ``complete``: the runtime's generation commands.

They import only click, numpy and the runtime (the backend's own module when a graph opens), so
they run on a Jetson without torch. Outputs are written atomically: ``.png`` a grid (rows of up to 8,
or one row per label), ``.npy`` float32 (n, C, H, W) in [0, 1]. Python 3.6 compatible.
"""
import os

import click
import numpy as np

from jetgen.cli.options import backend_options, check_out, need_label, open_model, parse_label
from jetgen.cli.output import emit_json
from jetgen.errors import JetgenError
from jetgen.runtime.images import (GRID_COLUMNS, MASK_REGIONS, completion_sheet, load_images, load_mask, load_npy,
                                   region_mask, save_outputs)
from jetgen.runtime.model import COMPLETE_STEPS, COMPLETE_TOL, COMPLETE_WINDOW, INITS

# -- sample --------------------------------------------------------------------------------------
@click.command()
@click.argument("bundle", type=click.Path())
@click.option("--n", "n", type=click.IntRange(1, None), default=None,
              help="How many samples (default 64; with --labels all, shared evenly by the labels, default 8 each).")
@click.option("--label", default=None, help="Label (index or name) for a conditional model.")
@click.option("--labels", "all_labels", type=click.Choice(["all"]), default=None, help="One row per label.")
@click.option("--seed", type=click.IntRange(0, 2 ** 32 - 1), default=None, help="Seed for a repeatable draw.")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Scale of the prior draw.")
@click.option("--out", required=True, type=click.Path(), help="grid.png or samples.npy")
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def sample(bundle, n, label, all_labels, seed, temperature, out, backend, precision, device, threads, as_json):
    """Draw samples from BUNDLE's prior and decode them into a PNG grid or .npy array."""
    check_out(out)
    if label is not None and all_labels:
        raise JetgenError("Give --label or --labels all, not both.")
    with open_model(bundle, backend, precision, device, threads) as model:
        if all_labels:
            if not model.conditional:
                raise JetgenError("--labels all needs a conditional model; this one has no labels.")
            # --n is the total, shared evenly by the labels (default: 8 per label)
            per = max(1, n // len(model.labels)) if n else GRID_COLUMNS
            labels = np.repeat(np.arange(len(model.labels)), per)
            x = model.sample(len(labels), labels=labels, temperature=temperature, seed=seed)
            columns = per
        else:
            labels = need_label(model, parse_label(label))
            x = model.sample(n or 64, labels=labels, temperature=temperature, seed=seed)
            columns = GRID_COLUMNS
        save_outputs(out, x, columns)
    if as_json:
        emit_json({"out": out, "n": len(x), "shape": list(x.shape), "seed": seed, "temperature": temperature,
                   "labels": None if labels is None else np.broadcast_to(labels, (len(x),)).tolist()})
    else:
        click.echo("Wrote {} samples to {}.".format(len(x), out))


# -- interpolate ---------------------------------------------------------------------------------
def load_endpoint(model, text):
    """A latent (D,) or one input (1, C, H, W) from seed:N, a .npy (latent or input) or a .png.

    FILE.npy:K picks row K of a file holding several latents (n, D) or inputs (n, C, H, W).
    """
    if text.startswith("seed:"):
        try:
            seed = int(text[5:])
        except ValueError:
            raise JetgenError("Cannot read {!r}; write seed:N with an integer N.".format(text))
        return model.prior.sample(1, 1.0, seed)[0]
    index = None
    head, sep, tail = text.rpartition(":")
    if sep and head.lower().endswith(".npy") and tail.isdigit() and not os.path.exists(text):
        text, index = head, int(tail)
    if text.lower().endswith(".npy"):
        arr = load_npy(text)
        if arr.ndim <= 2 and arr.shape[-1:] == (model.latent_dim,):
            arr = arr.reshape(-1, model.latent_dim)
            if index is None and len(arr) != 1:
                raise JetgenError("{} holds {} latents; pick one with {}:K.".format(text, len(arr), text))
            return _pick(arr, index or 0, text).astype(np.float32)
        if arr.ndim == 1:
            raise JetgenError("{} holds {} values but the latent size is {}.".format(text, arr.size, model.latent_dim))
    x = load_images(text, model.output_shape)
    if index is None and len(x) != 1:
        raise JetgenError("{} holds {} inputs; pick one with {}:K.".format(text, len(x), text))
    return _pick(x, index or 0, text)[None]


def _pick(arr, index, text):
    if index >= len(arr):
        raise JetgenError("{} holds {} rows; there is no row {}.".format(text, len(arr), index))
    return arr[index]


@click.command()
@click.argument("bundle", type=click.Path())
@click.option("--from", "start", required=True, help="seed:N, latent.npy, input.npy, input.png or FILE.npy:K")
@click.option("--to", "end", required=True, help="seed:N, latent.npy, input.npy, input.png or FILE.npy:K")
@click.option("--steps", type=click.IntRange(2, None), default=10, show_default=True)
@click.option("--mode", type=click.Choice(["linear", "slerp"]), default="linear", show_default=True)
@click.option("--label", default=None, help="Label (index or name) for a conditional model.")
@click.option("--out", required=True, type=click.Path(), help="strip.png or path.npy")
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary with the latents.")
def interpolate(bundle, start, end, steps, mode, label, out, backend, precision, device, threads, as_json):
    """Decode a path between two latents or inputs of BUNDLE into a PNG strip or .npy array."""
    check_out(out)
    with open_model(bundle, backend, precision, device, threads) as model:
        labels = need_label(model, parse_label(label))
        a, b = load_endpoint(model, start), load_endpoint(model, end)
        x, z = model.interpolate(a, b, steps=steps, mode=mode, labels=labels)
        save_outputs(out, x, columns=steps)
    if as_json:
        emit_json({"out": out, "steps": steps, "mode": mode, "label": labels, "latents": z.tolist()})
    else:
        click.echo("Wrote a {}-step {} path to {}.".format(steps, mode, out))


# -- complete ------------------------------------------------------------------------------------
@click.command()
@click.argument("bundle", type=click.Path())
@click.option("--input", "input_path", required=True, type=click.Path(), help="x.png or x.npy (n, C, H, W)")
@click.option("--mask", "mask_path", default=None, type=click.Path(),
              help="m.png (white = observed) or m.npy (1 = observed)")
@click.option("--mask-region", type=click.Choice(MASK_REGIONS), default=None, help="Hide this region.")
@click.option("--label", default=None, help="Label (index or name) for every input.")
@click.option("--labels", "labels_path", default=None, type=click.Path(), help="y.npy: one label per input.")
@click.option("--steps", type=click.IntRange(0, None), default=COMPLETE_STEPS, show_default=True,
              help="Most Adam steps per input.")
@click.option("--lr", type=float, default=5e-2, show_default=True)
@click.option("--tol", type=float, default=COMPLETE_TOL, show_default=True,
              help="Stop an input when its best loss improves less than this (relative) over {} steps (0: "
                   "only when it stops improving).".format(COMPLETE_WINDOW))
@click.option("--init", type=click.Choice(INITS), default="prior_mean", show_default=True)
@click.option("--seed", type=click.IntRange(0, 2 ** 32 - 1), default=None)
@click.option("--out", required=True, type=click.Path(), help="y.png or y.npy")
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def complete(bundle, input_path, mask_path, mask_region, label, labels_path, steps, lr, tol, init, seed, out,
             backend, precision, device, threads, as_json):
    """Fill in the hidden part of inputs by optimising their latents; report the loss reached.

    A .png output shows, per group of up to 8 inputs, the masked inputs, the completions and the
    originals in three rows; a .npy output holds the completed inputs (n, C, H, W).

    A conditional model given no label tries every label and keeps the best per input.
    """
    check_out(out)
    if (mask_path is None) == (mask_region is None):
        raise JetgenError("Give exactly one of --mask FILE or --mask-region REGION.")
    if label is not None and labels_path is not None:
        raise JetgenError("Give --label or --labels, not both.")
    with open_model(bundle, backend, precision, device, threads) as model:
        x = load_images(input_path, model.output_shape)
        mask = load_mask(mask_path, model.output_shape) if mask_path else region_mask(mask_region, model.output_shape)
        if mask.ndim == 4 and len(mask) == 1 and len(x) > 1:
            mask = mask[0]
        if labels_path is not None:
            labels = load_npy(labels_path).reshape(-1)
        else:
            labels = parse_label(label)
        inferred = model.conditional and labels is None
        result = model.complete(x, mask, labels="infer" if inferred else labels, steps=steps, lr=lr, tol=tol,
                                init=init, seed=seed)
        if out.lower().endswith(".png") and len(x) > 1:
            # a picture for people: masked inputs, completions and originals in matching columns
            columns = min(GRID_COLUMNS, len(x))
            save_outputs(out, completion_sheet(x, mask, result.x, columns), columns)
        else:
            save_outputs(out, result.x)
    report = {"out": out, "n": len(x), "steps": result.steps, "loss_start": result.history[0].tolist(),
              "loss": result.loss.tolist(), "nll": result.nll.tolist(),
              "labels": None if result.labels is None else result.labels.tolist(), "labels_inferred": inferred}
    if as_json:
        emit_json(report)
        return
    click.echo("Completed {} input(s) in {} steps: loss (masked NLL + prior, nats) from {:.2f} to {:.2f} on average."
               .format(len(x), result.steps, float(np.mean(result.history[0])), float(np.mean(result.loss))))
    for i in range(len(x)):
        extra = ""
        if result.labels is not None:
            name = model.labels[int(result.labels[i])]
            extra = "  label {}{}".format(name, " (inferred)" if inferred else "")
        click.echo("  input {}: loss {:.3f}{}".format(i, float(result.loss[i]), extra))
    click.echo("Wrote {}.".format(out))
