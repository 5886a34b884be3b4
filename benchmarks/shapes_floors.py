"""The 3D quality floors of issue 11, measured through the CLI (about 20 minutes of one quiet CPU core).

Trains with the defaults (`jetgen train atlasnet`, procedural shapes, seed 0): an AE, a VAE from
scratch, and a VAE started from the AE (`--init-from`) with half the epochs; evaluates each with
`jetgen eval --json`; prints a markdown table of the numbers reached against the floors:

- AE: test Chamfer-L2 x1000 at most 1.25 x the retrieval oracle on the same test shapes;
- VAE (default beta): test Chamfer at most 1.3 x the AE's;
- sampling from the fitted mixture (latent_prior.json): COV-CD >= 0.35 and 1-NNA <= 0.85 against the
  test shapes (real training shapes as the reference row; random latents through the AE beside it);
- transfer: the VAE from the AE reaches the VAE floor (1.3 x the AE's test reconstruction loss, from
  metrics.csv: the same measure every epoch) in at most half the epochs the VAE from scratch needs.

    nice -n 15 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/shapes_floors.py --out out/floors

Finished runs are reused (delete a run directory to train it again); numbers go to OUT/floors.json.
"""
import argparse
import csv
import json
import math
import os
import subprocess
import sys

MIXTURE, REAL, RANDOM = "fitted mixture", "real training shapes (reference)", "random latents N(0, I) (AE)"


def cli(*args):
    """Run ``jetgen ARGS`` in a child process (this interpreter); its stdout, or exit with its error."""
    done = subprocess.run([sys.executable, "-m", "jetgen.cli"] + [str(a) for a in args], stdout=subprocess.PIPE,
                          universal_newlines=True)
    if done.returncode != 0:
        sys.exit("jetgen {} failed (exit {})".format(" ".join(map(str, args)), done.returncode))
    return done.stdout


def train(out, name, epochs, *extra):
    run = os.path.join(out, name)
    meta = os.path.join(run, "checkpoint", "meta.json")
    if os.path.isfile(meta) and json.load(open(meta)).get("complete"):
        print("reusing {}".format(run), flush=True)
    else:
        print("training {} ({} epochs) ...".format(run, epochs), flush=True)
        cli("train", "atlasnet", "--epochs", epochs, "--quiet", "--force", "--out", run, *extra)
    return run


def evaluate(run, max_shapes):
    return json.loads(cli("eval", run, "--json", "--quiet", "--max-shapes", max_shapes, "--out",
                          os.path.join(run, "eval")))


def test_recon(run):
    """Per-epoch test reconstruction loss (Chamfer x1000 on the training point counts) from metrics.csv."""
    with open(os.path.join(run, "metrics.csv")) as handle:
        return [float(r["test_recon"]) for r in csv.DictReader(handle)]


def first_below(curve, level):
    return next((i + 1 for i, v in enumerate(curve) if v <= level), math.inf)


def floors(results, curves):
    ae, vae, tr = results["ae"], results["vae"], results["vae_from_ae"]
    chamfer = {k: r["reconstruction"]["model"]["chamfer_x1000"] for k, r in results.items()}
    oracle = ae["reconstruction"]["retrieval_oracle"]["chamfer_x1000"]
    level = 1.3 * curves["ae"][-1]
    scratch, transfer = first_below(curves["vae"], level), first_below(curves["vae_from_ae"], level)
    rows = [
        ("AE Chamfer / retrieval oracle", "{:.2f} / {:.2f} = {:.2f}".format(chamfer["ae"], oracle, chamfer["ae"] / oracle),
         "<= 1.25", chamfer["ae"] <= 1.25 * oracle),
        ("VAE Chamfer / AE Chamfer", "{:.2f} / {:.2f} = {:.2f}".format(chamfer["vae"], chamfer["ae"],
                                                                       chamfer["vae"] / chamfer["ae"]),
         "<= 1.3", chamfer["vae"] <= 1.3 * chamfer["ae"]),
        ("VAE from AE Chamfer / AE Chamfer", "{:.2f} / {:.2f} = {:.2f}".format(
            chamfer["vae_from_ae"], chamfer["ae"], chamfer["vae_from_ae"] / chamfer["ae"]), "<= 1.3",
         chamfer["vae_from_ae"] <= 1.3 * chamfer["ae"]),
    ]
    for key, label in (("vae", "VAE"), ("vae_from_ae", "VAE from AE"), ("ae", "AE")):
        g = results[key]["generation"][MIXTURE]
        rows.append(("{}: mixture samples COV-CD".format(label), "{:.2f}".format(g["cov_cd"]), ">= 0.35",
                     g["cov_cd"] >= 0.35))
        rows.append(("{}: mixture samples 1-NNA".format(label), "{:.2f}".format(g["nna_cd"]), "<= 0.85",
                     g["nna_cd"] <= 0.85))
    rows.append(("AE: random latents COV-CD / 1-NNA (shown beside)", "{:.2f} / {:.2f}".format(
        ae["generation"][RANDOM]["cov_cd"], ae["generation"][RANDOM]["nna_cd"]), "worse than the mixture", None))
    rows.append(("real training shapes COV-CD / 1-NNA (reference)", "{:.2f} / {:.2f}".format(
        vae["generation"][REAL]["cov_cd"], vae["generation"][REAL]["nna_cd"]), "", None))
    rows.append(("epochs to the VAE floor ({:.1f}): scratch / from AE".format(level),
                 "{} / {}".format(scratch, transfer), "from AE <= half", transfer <= scratch / 2.0))
    return rows


def plot_curves(curves, floor, path):
    """The transfer picture: test reconstruction loss per epoch of the VAE from scratch and from the AE
    (and the AE itself), with the VAE floor as a line; PNG at ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for key, label, style in (("ae", "AE (from scratch)", ":"), ("vae", "VAE from scratch", "-"),
                              ("vae_from_ae", "VAE started from the AE (--init-from)", "-")):
        ax.plot(range(1, len(curves[key]) + 1), curves[key], style, marker="o", ms=3, label=label)
    ax.axhline(floor, color="grey", lw=0.8, ls="--", label="VAE floor (1.3 x the AE's final loss)")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test loss (1000 x Chamfer)")
    ax.set_title("Transfer: a VAE started from a trained AE")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join("out", "floors"))
    p.add_argument("--epochs", type=int, default=16, help="epochs of the AE and the VAE from scratch")
    p.add_argument("--max-shapes", type=int, default=240, help="test shapes per evaluation (eval --max-shapes)")
    p.add_argument("extra", nargs="*", help="more `jetgen train` options for every run (after --)")
    args = p.parse_args()
    runs = {"ae": train(args.out, "ae", args.epochs, "--variant", "ae", *args.extra),
            "vae": train(args.out, "vae", args.epochs, "--variant", "vae", *args.extra)}
    runs["vae_from_ae"] = train(args.out, "vae_from_ae", max(1, args.epochs // 2), "--variant", "vae", "--init-from",
                                runs["ae"], *args.extra)
    results = {k: evaluate(r, args.max_shapes) for k, r in runs.items()}
    curves = {k: test_recon(r) for k, r in runs.items()}
    rows = floors(results, curves)
    lines = ["| floor | reached | target | met |", "|---|---|---|---|"]
    lines += ["| {} | {} | {} | {} |".format(name, value, target, "" if ok is None else ("yes" if ok else "**no**"))
              for name, value, target, ok in rows]
    lines.append("")
    lines.append("| test reconstruction loss per epoch | " + " | ".join(str(i + 1) for i in range(len(curves["vae"]))) + " |")
    lines.append("|---|" + "---|" * len(curves["vae"]))
    for key in ("ae", "vae", "vae_from_ae"):
        lines.append("| {} | ".format(key) + " | ".join("{:.2f}".format(v) for v in curves[key]) + " |")
    print("\n".join(lines))
    plot_curves(curves, 1.3 * curves["ae"][-1], os.path.join(args.out, "transfer.png"))
    with open(os.path.join(args.out, "floors.json"), "w") as handle:
        json.dump({"results": results, "curves": curves, "table": lines}, handle, indent=2)


if __name__ == "__main__":
    main()
