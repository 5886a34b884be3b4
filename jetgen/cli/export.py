"""``jetgen export``: write a deployable bundle for a board, from a run or from your own model.

    jetgen export RUN --target nano --out digits.jetgen
    jetgen export --module my_vae.py:build --weights vae.pt --latent-dim 20 --output-shape 1,28,28 \\
        --target nano --out my.jetgen [--data digits] [--labels 0..9] [--spec spec.json]

Prints one row per graph (file, size, opset, inputs, parity, status) and the offline deployability
check's verdict; ``--json`` prints the manifest and the check report instead. Exit status 1 with one
sentence on any problem the user can fix.
"""
import time

import click

from jetgen.cli.output import emit_json, human_size, table
from jetgen.errors import JetgenError
from jetgen.runtime.targets import TARGETS
from jetgen.spec import PRECISIONS

INT8_GRADIENT_NOTE = ("latent_grad is fp16 in this int8 bundle: a quantised gradient is too coarse for latent "
                      "optimisation.")
INT64_NOTE = ("{} shape tensors are INT64 (ONNX's type for shapes and indices); {} casts them to INT32, "
              "harmless here: every INT64 constant fits in 32 bits, so the check's INT64 warnings need no action.")


@click.command("export")
@click.argument("run", type=click.Path(), required=False)
@click.option("--target", "-t", type=click.Choice(sorted(TARGETS)),
              help="Board the bundle is for; fixes the ONNX opset and what precisions are allowed.")
@click.option("--out", "-o", type=click.Path(), help="Bundle directory to write (NAME.jetgen).")
@click.option("--precision", type=click.Choice(PRECISIONS),
              help="fp32 (default); fp16: half-precision arithmetic; int8: static QDQ calibrated on training data.")
@click.option("--calib-samples", type=int, help="Training examples used to calibrate int8 (default 500).")
@click.option("--max-batch", type=int, help="Largest batch the graphs are declared for (TensorRT profile max; "
                                            "default 1024).")
@click.option("--module", help="Your model: FILE.py:NAME or package.module:NAME, a function or class building it.")
@click.option("--weights", type=click.Path(), help="Its state_dict: .pt/.pth (torch.save) or .safetensors.")
@click.option("--latent-dim", type=int, help="Size of the latent the decoder takes.")
@click.option("--decoder-attr", help="Method that decodes z [, y] (default: decode, else forward).")
@click.option("--encoder-attr", help="Method that encodes x [, y] to (mu, logvar) (default: encode when present).")
@click.option("--no-encoder", is_flag=True, default=None, help="Export without an encoder (auto-decoders).")
@click.option("--output", type=click.Choice(["probs", "logits", "points"]),
              help="What the decoder returns (default probs; points: point clouds).")
@click.option("--output-shape", help="C,H,W of one output (needed when the decoder returns flat vectors; N,3 for "
                                     "points).")
@click.option("--output-range", help="low,high of the outputs (default 0,1).")
@click.option("--likelihood", help="bernoulli (default) or gaussian:SIGMA, the gradient graph's loss.")
@click.option("--labels", help="Label names of a conditional model: 0..9, or cat,dog,bird.")
@click.option("--data", help="Real examples for parity, calibration and golden vectors: digits, mnist, folder, or "
                             "a .npy/.npz file (images or clouds).")
@click.option("--data-dir", type=click.Path(), help="Where --data mnist or folder lives.")
@click.option("--name", help="The bundle's name (default: the --out directory's).")
@click.option("--path", help="Folder(s) to import --module package.module:NAME from (joined with ':').")
@click.option("--decoder-output", help="The entry of a decoder returning a dict, dataclass or tuple (pythae: "
                                       "reconstruction; a number for a tuple position).")
@click.option("--encoder-keys", help="The encoder's mean and log-variance entries, e.g. embedding,log_covariance "
                                     "(one key: a deterministic code).")
@click.option("--encoder-input", type=click.Choice(["auto", "image", "flat", "channels_first"]),
              help="What the encoder takes: images, flat vectors, or clouds (B, 3, N) (default: found by trying).")
@click.option("--condition", type=click.Choice(["separate", "concat"]),
              help="Conditional models: decode(z, y) (separate, default) or decode(cat([z, y], 1)) (concat).")
@click.option("--prior", help="normal (default), a prior description (.json file or JSON object: gaussian, "
                              "exponential, uniform or gmm), or a latent table .npy to fit.")
@click.option("--prior-components", type=int, help="With a .npy --prior: fit a mixture of this many gaussians.")
@click.option("--kind", help="The bundle's kind (vae, cvae, ad, vad, atlasnet; default from the model).")
@click.option("--arch", help="The architecture name the manifest records (default custom).")
@click.option("--patches", type=int, help="Points: the decoder's K patches.")
@click.option("--grid", type=int, help="Points: each patch is a G x G grid (N = K*G*G).")
@click.option("--faces", help="Points: the mesh's int (F, 3) .npy file, or grid (default: two triangles per cell).")
@click.option("--encoder-points", type=int, help="Points: the encoder's fixed number of input points.")
@click.option("--target-points", type=int, help="Points: observed points per completion call (default 1024).")
@click.option("--loss-scale", type=float, help="Points: completion minimises loss_scale * Chamfer + ...")
@click.option("--prior-weight", type=float, help="Points: ... + prior_weight * the prior term.")
@click.option("--spec", "spec_path", type=click.Path(), help="JSON file holding these options (snake_case keys).")
@click.option("--force", is_flag=True, default=None, help="Replace an existing bundle at --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and check report as JSON.")
@click.option("--sign", "sign_key", type=click.Path(dir_okay=False), metavar="KEYFILE",
              help="Sign the bundle with this key file (as jetgen sign does).")
def export(run, as_json, spec_path, sign_key, **options):
    """Export the trained RUN directory, or your own model (--module, --weights), to a bundle for a board."""
    from jetgen import signing

    log = (lambda message: None) if as_json else (lambda message: click.echo(message, err=True))
    started = time.time()
    key = signing.read_key(sign_key) if sign_key else None  # a bad key file fails before minutes of export
    with signing.unchecked():  # the bundle being made is not signed yet: JETGEN_BUNDLE_KEY does not apply to it
        manifest, out = _export(run, spec_path, options, log)
        if key is not None:
            log("signed with key {} ({})".format(signing.key_id(key), signing.sign(out, key)))
    seconds = time.time() - started
    report = manifest.check
    if as_json:
        emit_json({"bundle": out, "seconds": round(seconds, 2), "manifest": manifest, "check": report})
        return
    from jetgen.export.check import int64_harmless
    from jetgen.export.exporter import parity_ok

    int64_ok = bool(report) and int64_harmless(out, report)
    click.echo(summary_table(manifest, report, parity_ok, int64_ok))
    for line in notes(manifest, report, int64_ok):
        click.echo(line)
    if manifest.get("quality"):
        click.echo("")
        click.echo(quality_lines(manifest["quality"]))
    click.echo("")
    click.echo("Wrote {} for {} ({}) in {:.1f} s.".format(out, manifest["target"]["name"],
                                                           manifest["target"]["board"], seconds))
    if report is not None:
        from jetgen.export.check import verdict

        click.echo("Check: " + (verdict(report, int64_ok) if "findings" in report else report.get("error", "")))


def _export(run, spec_path, options, log):
    """Run the export the arguments ask for; (the manifest, the bundle's path)."""
    own_model = options["module"] is not None or spec_path is not None
    if run is not None and own_model:
        raise JetgenError("Give either a RUN directory or --module/--spec for your own model, not both.")
    if own_model:
        from jetgen.export.from_files import export_from_files, resolve_options

        opts = resolve_options(options, spec_path)
        manifest = export_from_files(opts, log)
        out = opts["out"]
    else:
        if run is None:
            raise JetgenError("Give a RUN directory to export, or --module FILE.py:NAME --weights FILE for your "
                              "own model.")
        for key in ("target", "out"):
            if options[key] is None:
                raise JetgenError("jetgen export needs --{}.".format(key))
        from jetgen.export.from_run import export_run

        manifest = export_run(run, options["target"], options["out"], precision=options["precision"] or "fp32",
                              calib_samples=options["calib_samples"] or 500, max_batch=options["max_batch"],
                              force=bool(options["force"]), log=log)
        out = options["out"]
    return manifest, out


def _int64_warnings(report):
    return [f for f in (report or {}).get("findings", ()) if f["severity"] == "warning" and "INT64 tensors" in f["where"]]


def _int64_only(findings):
    return bool(findings) and all("INT64 tensors" in f["where"] for f in findings)


def _status(graph, entry, report, parity_ok, int64_ok=False):
    if entry["precision"] == "fp32" and not parity_ok(entry["parity"]):
        return "parity!"
    if not report or "findings" not in report:
        return "ok"
    mine = [f for f in report["findings"] if f.get("graph") in (graph, entry["file"])]
    if any(f["severity"] == "error" for f in mine):
        return "check error"
    warnings = [f for f in mine if f["severity"] == "warning"]
    if warnings and not (int64_ok and _int64_only(warnings)):
        return "ok (warnings)"
    return "ok"


def summary_table(manifest, report, parity_ok, int64_ok=False):
    """One row per graph: file, size, opset, precision, inputs, parity, status (``int64_ok``: INT64
    warnings alone leave a graph "ok")."""
    rows = []
    for name, entry in manifest["graphs"].items():
        inputs = ", ".join("{}{}".format(t["name"], tuple(t["shape"][1:]) if len(t["shape"]) > 2
                                         else "({})".format(t["shape"][1]) if len(t["shape"]) == 2 else "")
                           for t in entry["inputs"])
        parity = "{:.1e} / {:.1e}".format(entry["parity"]["max_abs"], entry["parity"]["max_rel"])
        rows.append((name, entry["file"], human_size(entry["bytes"]), str(entry["opset"]), entry["precision"],
                     inputs, parity, _status(name, entry, report, parity_ok, int64_ok)))
    return table(("graph", "file", "size", "opset", "prec", "inputs", "parity (abs / rel)", "status"), rows)


def notes(manifest, report, int64_ok):
    """One line each for what the table's statuses leave unexplained."""
    lines = []
    graphs = manifest["graphs"]
    if manifest.get("precision") == "int8" and graphs.get("latent_grad", {}).get("precision") == "fp16":
        lines.append(INT8_GRADIENT_NOTE)
    if int64_ok:
        graphs_named = sorted({f["graph"] for f in _int64_warnings(report)})
        lines.append(INT64_NOTE.format("The " + ", ".join(graphs_named) + " graphs'",
                                       "TensorRT {}".format(manifest["target"]["tensorrt"])))
    return lines


def quality_lines(quality):
    """The reduced-precision quality table as text."""
    prec = quality["precision"]
    lines = ["Quality of {} against fp32 on the {}:".format(prec, quality.get("data", "prior draws only"))]
    lines.append("  max decode error            {:.2e}".format(quality["max_decode_error"]))
    lines.append("  latent_grad max rel error   {:.2e}".format(quality["latent_grad_max_rel_error"]))
    for key in ("neg_elbo", "recon_error", "conditional_accuracy"):
        if key in quality:
            row = quality[key]
            lines.append("  {:<27} fp32 {:.4g}  {} {:.4g}  (delta {:+.3g}; {})".format(
                key.replace("_", " "), row["fp32"], prec, row[prec], row["delta"], row["unit"]))
    return "\n".join(lines)
