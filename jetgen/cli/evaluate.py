"""``jetgen eval RUN``: numbers as a table (or JSON with --json) and pictures in RUN/plots/."""
import contextlib
import json
import signal
import sys

import click

# keys printed by --json, in this order, when they apply to the model kind
JSON_KEYS = ("model", "latent_dim", "family", "likelihood", "neg_elbo", "recon", "kl", "iwae_nll",
             "active_units", "kl_active_units", "baseline_nll", "cond_accuracy", "classifier_accuracy", "recon_before",
             "recon_after", "recon_metric", "kl_per_dim", "cond_accuracy_per_label", "iw_samples",
             "test_images", "epoch", "data", "variant", "test_shapes", "test_shapes_in_split", "chamfer_x1000",
             "chamfer_over_oracle", "reconstruction", "generation", "mixture_source", "init_from", "eval_grid",
             "pictures", "options", "eval_file")
# rows of the 3D tables: reconstruction rows, then generation rows, as eval names them
SHAPE_RECON_ROWS = (("model", "model (encoder mean)"), ("floor", "floor: a second sampling of the same shapes"),
                    ("class_medoid", "class medoid (baseline)"),
                    ("retrieval_oracle", "retrieval oracle: nearest training shape (baseline)"))

# (key, label, format) rows of the human table
TABLE_ROWS = (
    ("neg_elbo", "negative ELBO (nats/image)", "{:.2f}"),
    ("recon", "  reconstruction part", "{:.2f}"),
    ("kl", "  KL part", "{:.2f}"),
    ("iwae_nll", "IWAE NLL, k={iw_samples} (nats/image)", "{:.2f}"),
    ("baseline_nll", "per-pixel baseline NLL (nats/image)", "{:.2f}"),
    ("active_units", "active units (Cov_x E_q[z_u|x] > 0.01)", "{} of {latent_dim}"),
    ("recon_before", "recon error before inference ({recon_metric})", "{:.2f}"),
    ("recon_after", "recon error after {inference_steps} steps", "{:.2f}"),
    ("cond_accuracy", "samples classified as their label", "{:.1%}"),
    ("classifier_accuracy", "classifier accuracy on real test images", "{:.1%}"),
)


@click.command("eval")
@click.argument("run", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print only a JSON object with the numbers.")
@click.option("--iw-samples", "-k", type=click.IntRange(min=1), default=100, show_default=True,
              help="Importance samples per test image for the IWAE NLL.")
@click.option("--no-pictures", is_flag=True, help="Skip the PNG pictures.")
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Directory to write the pictures and the numbers' JSON into [default: RUN/plots/ and RUN/].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling and inference.")
@click.option("--steps", type=click.IntRange(min=0), default=None,
              help="Test-time inference steps for ad/vad [default: 100].")
@click.option("--max-shapes", type=click.IntRange(min=2), default=240, show_default=True,
              help="atlasnet: test shapes evaluated (spread over the split) and samples drawn per row.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
def evaluate(run, as_json, iw_samples, no_pictures, out_dir, seed, steps, max_shapes, quiet):
    """Evaluate RUN on its test split: ELBO, IWAE NLL, active units, baseline, pictures (for atlasnet:
    Chamfer and F-scores against baselines, generation metrics, 3D pictures).

    Progress goes to stderr, one line per phase with its time. The numbers go to RUN/eval.json with
    the options that made them; other options than the defaults write RUN/eval-k10.json (and the
    like) instead, so the default numbers, which `jetgen export` copies, are kept.
    """
    from jetgen.train.evaluate import INFERENCE_STEPS, evaluate_run

    with stopped_by_signals() as caught:
        try:
            result = evaluate_run(run, iw_samples=iw_samples, pictures=not no_pictures, out_dir=out_dir, seed=seed,
                                  inference_steps=INFERENCE_STEPS if steps is None else steps,
                                  progress=None if quiet else report_phase, max_shapes=max_shapes)
        except BaseException as err:
            end_phase_line("interrupted" if isinstance(err, KeyboardInterrupt) else "failed")
            if not isinstance(err, KeyboardInterrupt):
                raise
            signum = caught[0] if caught else signal.SIGINT
            click.echo("eval: interrupted by {}; no numbers were written (eval.json is written last, whole)."
                       .format(signal.Signals(signum).name), err=True)
            sys.exit(128 + signum)  # 130 after Ctrl-C, 143 after SIGTERM
    if as_json:
        click.echo(json.dumps({k: result[k] for k in JSON_KEYS if k in result}, indent=2))
        return
    click.echo(format_table(result))


@contextlib.contextmanager
def stopped_by_signals():
    """SIGTERM (a service manager's or job scheduler's stop) interrupts as Ctrl-C does; yields the list of
    signals caught."""
    caught = []

    def handle(signum, frame):
        caught.append(signum)
        raise KeyboardInterrupt()
    previous = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, handle)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield caught
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


_PHASE_OPEN = []  # holds True while a phase's stderr line waits for its time


def report_phase(name, seconds):
    """One stderr line per phase: its name when it starts, its time when it ends."""
    if seconds is None:
        click.echo("eval: {} ...".format(name), err=True, nl=False)
        _PHASE_OPEN[:] = [True]
    else:
        click.echo(" {:.1f} s".format(seconds), err=True)
        del _PHASE_OPEN[:]


def end_phase_line(word="failed"):
    """End a phase line left open by a failure, so the error that follows stands on its own line."""
    if _PHASE_OPEN:
        click.echo(" " + word, err=True)
        del _PHASE_OPEN[:]


def kl_rows(result):
    """The KL-per-dimension rows: the values (3 significant digits, so 0.009 is not shown as 0.01), the
    units above the KL threshold, and the units the variance criterion calls active that carry less KL."""
    from jetgen.train.metrics import ACTIVE_THRESHOLD, KL_ACTIVE_THRESHOLD

    kl = result["kl_per_dim"]
    carrying = [u for u, v in enumerate(kl) if v > KL_ACTIVE_THRESHOLD]
    by_variance = [u for u, v in enumerate(result.get("latent_variance") or ()) if v > ACTIVE_THRESHOLD]
    rows = [("KL per dimension (nats)", " ".join("{:.3g}".format(v) for v in kl)),
            ("units carrying KL > {:g} nats".format(KL_ACTIVE_THRESHOLD), "{} of {}".format(len(carrying), len(kl)))]
    near = [u for u in by_variance if u not in carrying]
    if near:
        rows.append(("  active by Cov but KL <= {:g}".format(KL_ACTIVE_THRESHOLD), "{} (near collapse: {})".format(
            ", ".join("dim {}".format(u) for u in near), ", ".join("KL {:.3g}".format(kl[u]) for u in near))))
    return rows


def format_table(result):
    """The numbers of ``evaluate_run`` as aligned text lines."""
    if "reconstruction" in result:
        return format_shape_table(result)
    lines = ["{} ({}, {}-D {} latent, epoch {}) on {} test images of {}".format(
        result["run"], result["model"], result["latent_dim"], result["family"], result["epoch"],
        result["test_images"], result["data"])]
    rows = []
    for key, label, fmt in TABLE_ROWS:
        if key == "recon" and "neg_elbo" not in result:
            label = "reconstruction NLL at inferred latent (nats/image)"
        if key in result:
            rows.append((label.format(**result), fmt.format(result[key], **result)))
    if "kl_per_dim" in result:
        rows += kl_rows(result)
    width = max(len(r[0]) for r in rows)
    lines += ["  {}  {}".format(label.ljust(width), value) for label, value in rows]
    if result.get("pictures"):
        lines.append("  pictures: {}".format(", ".join(sorted(set(p.rsplit("/", 1)[-1] for p in result["pictures"])))))
        lines.append("  in {}".format(result["pictures"][0].rsplit("/", 1)[0]))
    lines.append("  written to {}".format(result["eval_file"]))
    return "\n".join(lines)


def format_shape_table(result):
    """The numbers of a 3D (atlasnet) evaluation as aligned text lines."""
    lines = ["{} (atlasnet {}, {}-D latent, epoch {}) on {} of {} test shapes of {}".format(
        result["run"], result["variant"], result["latent_dim"], result["epoch"], result["test_shapes"],
        result["test_shapes_in_split"], result["data"])]
    source = result.get("init_from")
    if source:
        lines.append("  started from {} (checkpoint sha256 {}): {} tensors loaded, {} partial, {} skipped, {} new".format(
            source["run"], source["checkpoint_sha256"], source["loaded"], source["partial"], source["skipped"],
            source["new"]))
    recon = result["reconstruction"]
    rows = [("reconstruction on the test split", "Chamfer-L2 x1000", "F@1%", "F@2%")]
    rows += [(label, "{:.2f}".format(recon[key]["chamfer_x1000"]), "{:.3f}".format(recon[key]["fscore@1%"]),
              "{:.3f}".format(recon[key]["fscore@2%"])) for key, label in SHAPE_RECON_ROWS if key in recon]
    lines += _aligned(rows)
    if result.get("chamfer_over_oracle") is not None:
        lines.append("  model / retrieval oracle: {:.2f}x".format(result["chamfer_over_oracle"]))
    rows = [("generation against the test shapes", "MMD-CD x1000", "COV-CD", "1-NNA")]
    rows += [(name, "{:.2f}".format(g["mmd_cd_x1000"]), "{:.2f}".format(g["cov_cd"]), "{:.2f}".format(g["nna_cd"]))
             for name, g in result["generation"].items()]
    lines += _aligned(rows)
    lines.append("  fitted mixture: {}; active units {} of {}".format(result["mixture_source"], result["active_units"],
                                                                     result["latent_dim"]))
    lines += result.get("warnings") or []
    if result.get("pictures"):
        lines.append("  pictures: {}".format(", ".join(sorted(p.rsplit("/", 1)[-1] for p in result["pictures"]))))
        lines.append("  in {}".format(result["pictures"][0].rsplit("/", 1)[0]))
    lines.append("  written to {}".format(result["eval_file"]))
    return "\n".join(lines)


def _aligned(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
            for r in rows]
