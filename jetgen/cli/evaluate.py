"""``jetgen eval RUN``: numbers as a table (or JSON with --json) and pictures in RUN/plots/."""
import json

import click

# keys printed by --json, in this order, when they apply to the model kind
JSON_KEYS = ("model", "latent_dim", "family", "likelihood", "neg_elbo", "recon", "kl", "iwae_nll",
             "active_units", "baseline_nll", "cond_accuracy", "classifier_accuracy", "recon_before",
             "recon_after", "recon_metric", "kl_per_dim", "cond_accuracy_per_label", "iw_samples",
             "test_images", "epoch", "data", "pictures", "options", "eval_file")

# (key, label, format) rows of the human table
TABLE_ROWS = (
    ("neg_elbo", "negative ELBO (nats/image)", "{:.2f}"),
    ("recon", "  reconstruction part", "{:.2f}"),
    ("kl", "  KL part", "{:.2f}"),
    ("iwae_nll", "IWAE NLL, k={iw_samples} (nats/image)", "{:.2f}"),
    ("baseline_nll", "per-pixel baseline NLL (nats/image)", "{:.2f}"),
    ("active_units", "active units (Cov > 0.01)", "{} of {latent_dim}"),
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
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
def evaluate(run, as_json, iw_samples, no_pictures, out_dir, seed, steps, quiet):
    """Evaluate RUN on its test split: ELBO, IWAE NLL, active units, baseline, pictures.

    Progress goes to stderr, one line per phase with its time. The numbers go to RUN/eval.json with
    the options that made them; other options than the defaults write RUN/eval-k10.json (and the
    like) instead, so the default numbers, which `jetgen export` copies, are kept.
    """
    from jetgen.train.evaluate import INFERENCE_STEPS, evaluate_run

    result = evaluate_run(run, iw_samples=iw_samples, pictures=not no_pictures, out_dir=out_dir, seed=seed,
                          inference_steps=INFERENCE_STEPS if steps is None else steps,
                          progress=None if quiet else report_phase)
    if as_json:
        click.echo(json.dumps({k: result[k] for k in JSON_KEYS if k in result}, indent=2))
        return
    click.echo(format_table(result))


def report_phase(name, seconds):
    """One stderr line per phase: its name when it starts, its time when it ends."""
    if seconds is None:
        click.echo("eval: {} ...".format(name), err=True, nl=False)
    else:
        click.echo(" {:.1f} s".format(seconds), err=True)


def format_table(result):
    """The numbers of ``evaluate_run`` as aligned text lines."""
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
        rows.append(("KL per dimension", " ".join("{:.2f}".format(v) for v in result["kl_per_dim"])))
    width = max(len(r[0]) for r in rows)
    lines += ["  {}  {}".format(label.ljust(width), value) for label, value in rows]
    if result.get("pictures"):
        lines.append("  pictures: {}".format(", ".join(sorted(set(p.rsplit("/", 1)[-1] for p in result["pictures"])))))
        lines.append("  in {}".format(result["pictures"][0].rsplit("/", 1)[0]))
    lines.append("  written to {}".format(result["eval_file"]))
    return "\n".join(lines)
