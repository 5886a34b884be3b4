"""``jetgen info BUNDLE``: what a bundle holds, how good it is, where it came from, what was built.

Text for people (model lines, a graphs table, the reduced-precision quality table, provenance as
key: value lines, engines); ``--json`` for everything. Exit 1 when a graph file fails its check.
Python 3.6 compatible: it runs on the device.
"""
import json

import click
import numpy as np

from jetgen.cli.options import key_option
from jetgen import modalities
from jetgen.cli.output import emit_json, human_size, key_values, printable, table
from jetgen.errors import JetgenError
from jetgen.runtime.bundle import describe


def _spread(values):
    values = np.asarray(values, dtype=np.float64)
    if values.size and np.all(values == values[0]):
        return "{:g} (all)".format(values[0])
    return "{:.3g} to {:.3g}".format(values.min(), values.max())


def _sci(value):
    return "-" if value is None else "{:.1e}".format(value)


def _flat(prefix, value, out):
    """Nested dicts as 'a.b: value' pairs, lists and scalars as short text."""
    if isinstance(value, dict):
        for key, inner in value.items():
            _flat("{}.{}".format(prefix, key) if prefix else str(key), inner, out)
        return out
    if isinstance(value, float):
        text = "{:.6g}".format(value)
    elif isinstance(value, list):
        text = json.dumps(value) if len(json.dumps(value)) <= 60 else "[{} values]".format(len(value))
    else:
        text = str(value)
    out.append((prefix, text))
    return out


def model_lines(info):
    out = info["output"]
    return key_values([
        ("bundle", info["bundle"]),
        ("name", "{}  (format {}, created {})".format(info["name"], info["format_version"], info["created"])),
        ("model", "{} {}, latent size {}, output {} in {}".format(
            info["kind"], info["arch"] or "", info["latent_dim"], "x".join(map(str, out["shape"])), out["range"])),
        ("prior", _prior_line(info["prior"])),
    ] + _modality_lines(info) + [
        ("labels", ", ".join(info["labels"]) if info["conditional"] else "none (unconditional)"),
        ("likelihood", info["likelihood"].get("name")),
        ("precision", info["precision"]),
        ("target", (info["target"] or {}).get("name")),
    ])


def _prior_line(prior):
    params = prior["params"]
    if prior["family"] == "gmm":  # a fitted mixture: its size, not its numbers
        return "gmm: {} components, {} covariances".format(len(params["weights"]), params["covariance_type"])
    return "{}: {}".format(prior["family"], ", ".join("{} {}".format(k, _spread(v)) for k, v in sorted(params.items())))


def _modality_lines(info):
    """The lines of the bundle's own modality settings (its CLI part's ``info_lines``; none for images)."""
    half = modalities.part(info["modality"], "cli")
    return half.info_lines(info) if half is not None else []


def graph_table(info):
    rows = []
    for name, g in info["graphs"].items():
        batch, parity = g["batch"] or {}, g["parity"] or {}
        needs = g.get("requires") or {}
        rows.append((name, g["file"], human_size(g["bytes"]), g["opset"], g["precision"],
                     "{}..{}".format(batch.get("min"), batch.get("max")),
                     "{} / {}".format(_sci(parity.get("max_abs")), _sci(parity.get("max_rel"))),
                     "{} / {}".format(needs.get("onnxruntime") or "?", needs.get("tensorrt") or "?"),
                     "sha256 ok" if g["check"] == "ok" else "PROBLEM: " + g["check"]))
    return table(("graph", "file", "size", "opset", "precision", "batch", "parity abs / rel", "needs ORT / TRT",
                  "check"), rows)


def quality_table(quality):
    """The reduced-precision quality rows (fp32 against the bundle's precision), or '' without any."""
    if not quality:
        return ""
    prec = quality["precision"]
    rows = [(key.replace("_", " "), quality[key]["fp32"], quality[key][prec], "{:+.3g}".format(quality[key]["delta"]),
             quality[key]["unit"]) for key in ("neg_elbo", "recon_error", "test_chamfer", "conditional_accuracy") if key in quality]
    rows.append(("max decode error", "-", _sci(quality.get("max_decode_error")), "-", "against fp32 outputs"))
    rows.append(("latent_grad max rel error", "-", _sci(quality.get("latent_grad_max_rel_error")), "-",
                 "the gradient graph stays fp16 in int8 bundles: quantised gradients are too coarse"
                 if prec == "int8" else "against the fp32 gradient"))
    return "Quality of {} against fp32 on the {}:\n{}".format(
        prec, quality.get("data"), table(("measure", "fp32", prec, "delta", "what"), rows))


def engine_lines(info):
    if not info["engines"]:
        return "engines: none built (jetgen build BUNDLE)"
    rows = [(e["file"], human_size(e["bytes"]), json.dumps(e["sidecar"], sort_keys=True) if e["sidecar"] else "-")
            for e in info["engines"]]
    return "engines:\n" + table(("file", "size", "built for"), rows)


def format_info(info):
    parts = [model_lines(info), "", graph_table(info)]
    quality = quality_table(info.get("quality"))
    if quality:
        parts += ["", quality]
    prov = dict(info["provenance"] or {})
    metrics = prov.pop("metrics", None) or {}
    metrics.pop("eval", None)  # the full evaluation is in --json; its headline numbers are below
    parts += ["", "provenance:", key_values(_flat("", prov, []) + _flat("metrics", metrics, []))]
    versions = info["versions"] or {}
    parts += ["", "versions: " + ", ".join("{} {}".format(k, v) for k, v in versions.items()), "", engine_lines(info)]
    parts += ["note: " + note for note in info.get("notes") or []]
    return "\n".join(parts)


@click.command()
@click.argument("bundle", type=click.Path())
@key_option
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON instead of text.")
def info(bundle, as_json):
    """Show what BUNDLE holds, where it came from, and which engines were built for it."""
    data = describe(bundle)
    if as_json:
        emit_json(data)
    else:
        click.echo(printable(format_info(data)))  # a manifest's strings never reach the terminal raw
    if any(g["check"] != "ok" for g in data["graphs"].values()):
        raise JetgenError("Some graph files do not match the manifest (see above); copy the bundle again.")
