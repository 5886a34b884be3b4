"""Same numbers for the same flags: a short cvae and a short atlasnet run trained through the CLI with fixed
seeds, exported, and sampled / completed through the torch-free runtime; prints one sha256 per artefact
so that two checkouts can be compared bit for bit (issue 17: the modality restructure must not move them).

    python benchmarks/same_numbers.py [--out DIR] [--json FILE]

Artefacts hashed: each run's checkpoint/model.safetensors, its metrics.csv without the wall-clock columns,
the atlasnet run's latent_prior.json, and the float32 bytes of the runtime's outputs (cvae: sample by label,
complete of a half-masked sample; atlasnet: sample, decode, reconstruct, complete of a cut cloud).
Bundle files themselves are not hashed (their manifest records export time and versions).
"""
import argparse
import csv
import hashlib
import io
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CVAE = ("train", "cvae", "--arch", "mlp", "--latent-dim", "10", "--epochs", "3", "--batch-size", "32", "--lr", "3e-3",
        "--seed", "0")
# --lr 2e-3 and --no-augment were the atlasnet defaults when same_numbers-7fbe3b7.json was written; since issue
# 19 the lr comes from the data set's size (1e-3 for 24 shapes) and small data sets are augmented, so they are
# given explicitly to train the same run as then (7fbe3b7 itself has no --no-augment: run it without the flag)
ATLASNET = ("train", "atlasnet", "--epochs", "2", "--seed", "0", "--shape-classes", "sword,chair",
            "--shapes-per-class", "12", "--test-shapes-per-class", "4", "--points", "512", "--latent-dim", "16",
            "--patches", "4", "--hidden", "64", "--batch-size", "8", "--train-points", "256", "--encoder-points", "256",
            "--lr", "2e-3", "--no-augment")
TIME_COLUMNS = ("time", "seconds", "epoch_seconds", "wall")


def _cli(*args):
    from click.testing import CliRunner

    from jetgen.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exit_code != 0:
        raise SystemExit("jetgen {} failed:\n{}\n{}".format(" ".join(args), result.output, result.exception))
    return result.output


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def _file_sha(path):
    with open(path, "rb") as handle:
        return _sha(handle.read())


def _metrics_sha(path):
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    keep = [k for k in rows[0] if not any(t in k for t in TIME_COLUMNS)]
    out = io.StringIO()
    for row in rows:
        out.write(",".join(row[k] for k in keep) + "\n")
    return _sha(out.getvalue().encode()), {k: rows[-1][k] for k in keep}


def _array_sha(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
    return h.hexdigest()


def measure(root):
    from jetgen.runtime import Model
    from jetgen.runtime.shapes import cut_by_plane

    out = {}
    cvae, atlas = os.path.join(root, "cvae"), os.path.join(root, "atlasnet")
    _cli(*(CVAE + ("--out", cvae, "--quiet")))
    _cli(*(ATLASNET + ("--out", atlas, "--quiet")))
    for name, run in (("cvae", cvae), ("atlasnet", atlas)):
        out[name + "/model.safetensors"] = _file_sha(os.path.join(run, "checkpoint", "model.safetensors"))
        out[name + "/metrics.csv"], out[name + "/last_metrics"] = _metrics_sha(os.path.join(run, "metrics.csv"))
    out["atlasnet/latent_prior.json"] = _file_sha(os.path.join(atlas, "latent_prior.json"))

    _cli("export", cvae, "--target", "desktop", "--out", os.path.join(root, "cvae.jetgen"))
    _cli("export", atlas, "--target", "desktop", "--out", os.path.join(root, "atlasnet.jetgen"))
    m = Model.open(os.path.join(root, "cvae.jetgen"), intra_op_threads=1)
    x = m.sample(4, labels=[0, 1, 2, 3], seed=0)
    mask = np.ones_like(x)
    mask[:, :, 14:] = 0
    r = m.complete(x, mask, labels=[0, 1, 2, 3], steps=20, seed=0)
    out["cvae/runtime"] = _array_sha(x, r.x, r.z, np.asarray(r.history))
    p = Model.open(os.path.join(root, "atlasnet.jetgen"), intra_op_threads=1)
    clouds = p.sample(3, seed=0)
    z = np.random.RandomState(1).standard_normal((2, p.latent_dim)).astype(np.float32)
    decoded = p.decode(z)
    recon = p.reconstruct(clouds)
    part, _ = cut_by_plane(clouds[0], rng=0)
    c = p.complete(part, steps=20, seed=0)
    out["atlasnet/runtime"] = _array_sha(clouds, decoded, recon, c.x, c.z, c.chamfer, np.asarray(c.history))
    out.update(fixtures())
    return out


def fixtures():
    """Hashes of what today's runtime gives on the two old bundles kept under tests/fixtures/."""
    from jetgen.runtime import Model

    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures")
    m = Model.open(os.path.join(here, "bundle-v1", "cvae-ac40d87.jetgen"), intra_op_threads=1)
    x = m.sample(4, labels=[0, 1, 2, 3], seed=0)
    mask = np.ones_like(x)
    mask[:, :, 14:] = 0
    r = m.complete(x, mask, labels=[0, 1, 2, 3], steps=20, seed=0)
    p = Model.open(os.path.join(here, "bundle-v2-points", "atlasnet-7fbe3b7.jetgen"), intra_op_threads=1)
    clouds = p.sample(3, seed=0)
    c = p.complete(clouds[:, :10], steps=20, seed=0)
    return {"fixture-v1/runtime": _array_sha(x, r.x, r.z, np.asarray(r.history)),
            "fixture-v2-points/runtime": _array_sha(clouds, p.reconstruct(clouds), c.x, c.z, c.chamfer,
                                                    np.asarray(c.history))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="work directory (default: a temporary one)")
    p.add_argument("--json", default=None, help="also write the hashes here")
    p.add_argument("--fixtures-only", action="store_true", help="only the old bundles under tests/fixtures/")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    root = args.out or tempfile.mkdtemp(prefix="same-numbers-")
    os.environ.setdefault("JETGEN_CACHE", os.path.join(root, "cache"))
    result = fixtures() if args.fixtures_only else measure(root)
    text = json.dumps(result, indent=1, sort_keys=True)
    print(text)
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
