"""``jetgen sample``, ``interpolate`` and ``complete``: the runtime's generation commands.

They import only click, numpy and the runtime (the backend's own module when a graph opens), so
they run on a Jetson without torch. One vocabulary: ``-n/--n`` counts, ``--label K`` is one label and
``--labels all|0,3,7|FILE.npy`` several, ``-o/--out`` the file written. A conditional model given no
label samples and interpolates every label, one row each. Outputs are written atomically: ``.png`` a
picture, ``.npy`` float32 (n, C, H, W) in [0, 1]. Point-cloud bundles (3D) write meshes (.obj,
.ply: one file per shape, or ``--scene`` one file), clouds (.npy (n, N, 3), .xyz) or a labelled render
(.png) and read clouds (.ply, .xyz, .npy): jetgen.runtime.points. Python 3.6 compatible.
"""
import os

import click
import numpy as np

from jetgen import modalities
from jetgen.cli.options import (backend_options, check_out, draw_seed, label_indices, label_options, open_model,
                                existing_directory, out_option, parse_labels, row_labels)
from jetgen.cli.output import emit_json
from jetgen.errors import JetgenError
from jetgen.modalities.image.codec import (GRID_COLUMNS, MASK_REGIONS, completion_sheet, load_images, load_mask,
                                           load_npy, region_mask, save_outputs, write_png)
from jetgen.runtime.lettering import titled_grid
from jetgen.runtime.model import COMPLETE_STEPS, COMPLETE_TOL, COMPLETE_WINDOW, INITS

IMAGE_OUTPUTS = (".png", ".npy")
scene_option = click.option("--scene", is_flag=True,
                            help="3D: write all shapes into one .obj/.ply/.xyz file, side by side, instead of one "
                                 "file per shape.")

DEFAULT_N = 64
SHEET_ROWS = ("masked", "completed", "original")

# Limits that keep one command's memory and time bounded on a 4 GB Nano (a 28x28 sample is 3 kB, so
# MAX_SAMPLES of them are 200 MB); larger requests are refused with the limit named (click's range check).
MAX_SAMPLES = 65536
MAX_FRAMES = 1000
MAX_STEPS = 100000


def check_any_out(path):
    """Refuse, before any work, an output no bundle can write (images: .png/.npy; each modality's own)."""
    known = set(IMAGE_OUTPUTS)
    for name in modalities.names():
        half = modalities.part(name, "cli")
        known.update(half.OUTPUTS if half is not None else ())
    if os.path.splitext(path)[1].lower() not in known:
        raise JetgenError("Cannot write {}: the output must end in {}.".format(path, ", ".join(sorted(known))))
    return path


def _halves():
    """The modalities' own CLI parts (jetgen.modalities), those that have one."""
    return [half for half in (modalities.part(name, "cli") for name in modalities.names()) if half is not None]


def modality_complete_options(command):
    """The options of ``jetgen complete`` that a modality adds (the points modality's --depth, ...)."""
    for half in _halves():
        if getattr(half, "complete_options", None) is not None:
            command = half.complete_options(command)
    return command


def _half(model, out=None):
    """The model's modality's own CLI handling (jetgen.modalities), or None when this module handles it
    (images); then JetgenError when ``out`` is not an image file."""
    half = modalities.part(model.modality, "cli")
    if half is None and out is not None and os.path.splitext(out)[1].lower() not in IMAGE_OUTPUTS:
        raise JetgenError("This bundle ({}) makes images: write a .png or .npy, not {}.".format(model.kind, out))
    return half


# -- sample --------------------------------------------------------------------------------------
@click.command()
@click.argument("bundle", type=click.Path())
@click.option("-n", "--n", "n", type=click.IntRange(1, MAX_SAMPLES), default=None,
              help="How many samples [default: 64; with several labels 8 per label, and a count that does not "
                   "fill whole rows is rounded up].")
@label_options("one row per label (a conditional model given no label samples every label).")
@click.option("--seed", type=click.IntRange(0, 2 ** 32 - 1), default=None,
              help="Seed for a repeatable draw [default: a fresh one, printed so the draw can be repeated].")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Scale of the prior draw.")
@out_option("a PNG grid (one row per label) or a .npy array (n, C, H, W).")
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@scene_option
def sample(bundle, n, label, labels_text, seed, temperature, out, backend, precision, device, threads, as_json, scene):
    """Draw samples from BUNDLE's prior and decode them into a PNG grid or .npy array (3D: meshes too)."""
    check_any_out(out)
    asked = parse_labels(label, labels_text)
    seed, drawn = draw_seed(seed)
    note = None
    with open_model(bundle, backend, precision, device, threads) as model:
        half = _half(model, out)
        if half is not None:
            return half.sample_points(model, n or GRID_COLUMNS, seed, drawn, temperature, out, scene, as_json)
        rows = row_labels(model, asked)
        if rows is None or label is not None:  # one label (or none): rows of GRID_COLUMNS
            count, columns = n or DEFAULT_N, GRID_COLUMNS
            labels = None if rows is None else np.full(count, rows[0], dtype=np.int64)
        else:
            per = -(-n // len(rows)) if n else GRID_COLUMNS
            labels = np.repeat(np.asarray(rows, dtype=np.int64), per)
            count, columns = len(labels), per
            if n and count != n:
                note = "--n {} does not fill whole rows of {} labels: rounded up to {} ({} per label).".format(
                    n, len(rows), count, per)
        x = model.sample(count, labels=labels, temperature=temperature, seed=seed)
        save_outputs(out, x, columns)
    if as_json:
        emit_json({"out": out, "n": len(x), "n_asked": n, "shape": list(x.shape), "seed": seed, "seed_drawn": drawn,
                   "temperature": temperature, "labels": None if labels is None else labels.tolist()})
        return
    if note:
        click.echo(note)
    click.echo("Wrote {} sample{} to {}{} (seed {}{}).".format(
        len(x), "" if len(x) == 1 else "s", out, "" if labels is None or label is not None else ", one row per label", seed,
        ": pass --seed {} to draw them again".format(seed) if drawn else ""))


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
    half = _half(model)
    if half is not None:  # the modality's own input file (points: a cloud)
        return half.read_endpoint(text)
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
@click.option("--frames", type=click.IntRange(2, MAX_FRAMES), default=None, help="Pictures along the path, both ends "
              "included [default: 10].")
@click.option("--steps", "steps_alias", type=click.IntRange(2, MAX_FRAMES), default=None, hidden=True)  # old --frames
@click.option("--mode", type=click.Choice(["linear", "slerp"]), default="linear", show_default=True)
@label_options("one path per label (a conditional model given no label draws every label).")
@out_option("a PNG strip (one row per label) or a .npy array (frames, C, H, W).")
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary with the latents.")
@scene_option
def interpolate(bundle, start, end, frames, steps_alias, mode, label, labels_text, out, backend, precision, device,
                threads, as_json, scene):
    """Decode a path between two latents or inputs of BUNDLE into a PNG strip or .npy array (3D: clouds
    from .ply/.xyz/.npy files at the ends, meshes out)."""
    check_any_out(out)
    if steps_alias is not None:
        if frames is not None:
            raise JetgenError("Give --frames only (--steps is its old name).")
        click.echo("Warning: interpolate's --steps is now --frames; the old name will go.", err=True)
    frames = frames or steps_alias or 10
    asked = parse_labels(label, labels_text)
    with open_model(bundle, backend, precision, device, threads) as model:
        rows = row_labels(model, asked) or [None]
        a, b = load_endpoint(model, start), load_endpoint(model, end)
        paths = [model.interpolate(a, b, steps=frames, mode=mode, labels=lab) for lab in rows]
        x, z = np.concatenate([p[0] for p in paths]), np.concatenate([p[1] for p in paths])
        half = _half(model, out)
        if half is not None:
            half.save_points_output(model, out, x, scene, ["frame {}".format(i) for i in range(len(x))])
        else:
            save_outputs(out, x, columns=frames)
    if as_json:
        emit_json({"out": out, "frames": frames, "mode": mode, "labels": None if rows == [None] else rows,
                   "latents": z.tolist()})
    else:
        click.echo("Wrote {} {}-frame {} path{} to {}.".format(
            len(rows), frames, mode, "" if len(rows) == 1 else "s (one row per label)", out))


# -- complete ------------------------------------------------------------------------------------
@click.command()
@click.argument("bundle", type=click.Path())
@click.option("--input", "input_path", default=None, type=click.Path(),
              help="x.png or x.npy (n, C, H, W); 3D: a partial cloud .ply, .xyz or .npy (P, 3) (or --depth)")
@click.option("--mask", "mask_path", default=None, type=click.Path(),
              help="m.png (white = observed) or m.npy (1 = observed)")
@click.option("--mask-region", type=click.Choice(MASK_REGIONS), default=None, help="Hide this region.")
@label_options("one per input (all, or none given: try every label and keep the best per input).")
@click.option("--steps", type=click.IntRange(0, MAX_STEPS), default=COMPLETE_STEPS, show_default=True,
              help="Most Adam steps per input.")
@click.option("--lr", type=float, default=5e-2, show_default=True)
@click.option("--tol", type=float, default=COMPLETE_TOL, show_default=True,
              help="Stop an input when its best loss improves less than this (relative) over {} steps (0: "
                   "only when it stops improving).".format(COMPLETE_WINDOW))
@click.option("--init", type=click.Choice(INITS), default=None,
              help="Start of the search [default: prior_mean; 3D: multistart (the best 3 of the encoder's code and the "
                   "prior's anchors, optimised side by side), chosen by measurement].")
@click.option("--seed", type=click.IntRange(0, 2 ** 32 - 1), default=None,
              help="Seed of --init random [default: a fresh one, printed].")
@out_option("a PNG sheet (rows: masked, completed, original) or a .npy array of the completed inputs "
            "(n, C, H, W); 3D: the completed mesh (.obj, .ply), cloud (.npy, .xyz) or a .png render.")
@click.option("--png", "png_path", default=None, type=click.Path(), callback=existing_directory,
              help="3D: also write a PNG sheet of the partial cloud beside the completed shape.")
@modality_complete_options
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def complete(bundle, input_path, mask_path, mask_region, label, labels_text, steps, lr, tol, init, seed, out,
             png_path, backend, precision, device, threads, as_json, **extra):
    """Fill in the hidden part of inputs by optimising their latents; report the loss reached.

    A .png output shows, per group of up to 8 inputs, the masked inputs, the completions and the
    originals in three titled rows, one input or many; a .npy output holds the completed inputs.

    A conditional model given no label tries every label and keeps the best per input.

    A point-cloud bundle completes a partial scan (--input, no mask) into a whole shape.
    """
    check_any_out(out)
    inputs = [half for half in _halves() if getattr(half, "COMPLETE_INPUT", None)]
    given = [half for half in inputs if extra.get(half.COMPLETE_INPUT[0]) is not None]
    if (input_path is None) == (not given):
        raise JetgenError("Give exactly one of --input FILE or {}.".format(
            " or ".join("(3D) " + half.COMPLETE_INPUT[1] for half in inputs)))
    if init == "random":
        seed = draw_seed(seed)[0]
    with open_model(bundle, backend, precision, device, threads) as model:
        if given:
            mask_given = bool(mask_path or mask_region or label is not None or labels_text is not None)
            return given[0].complete_given(model, out, png_path, steps, as_json, mask_given, extra)
        half = _half(model, out)
        if half is not None:
            if mask_path or mask_region or label is not None or labels_text is not None:
                raise JetgenError("A point-cloud bundle completes the cloud it is given: drop --mask, --mask-region "
                                  "and labels.")
            report = half.complete_points(model, input_path, out, png_path, steps=steps, lr=lr, tol=tol,
                                          init=init or "multistart", seed=seed,
                                          original_path=extra.get("original_path"))
            return emit_json(report) if as_json else half.print_points_completion(report)
        if png_path is not None:
            raise JetgenError("--png is for point-cloud bundles; an image bundle's --out .png is the sheet.")
        if extra.get("original_path") is not None:
            raise JetgenError("--original is for point-cloud bundles; an image bundle's --out .png sheet already "
                              "shows the originals.")
        check_out(out)
        init = init or "prior_mean"
        if (mask_path is None) == (mask_region is None):
            raise JetgenError("Give exactly one of --mask FILE or --mask-region REGION.")
        asked = parse_labels(label, labels_text)
        x = load_images(input_path, model.output_shape)
        mask = load_mask(mask_path, model.output_shape) if mask_path else region_mask(mask_region, model.output_shape)
        if mask.ndim == 4 and len(mask) == 1 and len(x) > 1:
            mask = mask[0]
        inferred = model.conditional and asked in (None, "all")
        labels = "infer" if inferred else label_indices(model, asked)
        result = model.complete(x, mask, labels=labels, steps=steps, lr=lr, tol=tol, init=init, seed=seed)
        if out.lower().endswith(".png"):
            columns = min(GRID_COLUMNS, len(x))
            sheet = completion_sheet(x, mask, result.x, columns)
            write_png(out, titled_grid(sheet, columns, SHEET_ROWS * (len(sheet) // (3 * columns))))
        else:
            save_outputs(out, result.x)
    report = {"out": out, "n": len(x), "steps": result.steps, "loss_start": result.history[0].tolist(),
              "loss": result.loss.tolist(), "nll": result.nll.tolist(), "seed": seed,
              "labels": None if result.labels is None else result.labels.tolist(), "labels_inferred": inferred}
    if as_json:
        emit_json(report)
        return
    _print_completion(model, x, result, inferred, out, seed if init == "random" else None)


def _print_completion(model, x, result, inferred, out, seed):
    click.echo("Completed {} input(s) in {} steps: loss (masked NLL + prior, nats) from {:.2f} to {:.2f} on average{}."
               .format(len(x), result.steps, float(np.mean(result.history[0])), float(np.mean(result.loss)),
                       "" if seed is None else " (random start, seed {})".format(seed)))
    for i in range(len(x)):
        extra = ""
        if result.labels is not None:
            name = model.labels[int(result.labels[i])]
            extra = "  label {}{}".format(name, " (inferred)" if inferred else "")
        click.echo("  input {}: loss {:.3f}{}".format(i, float(result.loss[i]), extra))
    click.echo("Wrote {}.".format(out))
