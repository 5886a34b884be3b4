"""Train an AtlasNet AE or VAE on the procedural shapes with a plain torch loop, then measure it.

    python benchmarks/shapes_experiment.py baselines --out out/shapes            # floor, oracle, medoid, real shapes
    python benchmarks/shapes_experiment.py train --variant vae --beta 0.01 --out out/shapes/vae
    python benchmarks/shapes_experiment.py eval out/shapes/vae                     # again, from model.pt
    python benchmarks/shapes_experiment.py complete out/shapes/vae                 # cut test shapes, complete them

Each command writes JSON next to its outputs (``baselines.json``, ``results.json``) and prints it.
Reconstruction: the encoder sees the first ``encoder_points`` points of a test shape; the decoder's
grid is made dense enough for 2,500 points (G = ceil(sqrt(2500 / K))); Chamfer-L2 x1000 is the SUM of
both one-way means of squared distances against the 2,500 test points. Generation: as many samples as
test shapes (480), decoded on the model's G x G grid, against the test shapes' first 1,024 points
(MMD-CD x1000, COV-CD, 1-NNA); equal sizes so that COV can reach 1 and 1-NNA is balanced.
Densities compared: the VAE prior N(0, I) (and, for the AE, random N(0, I) latents), and Gaussian
mixtures fitted after training on the training codes (``--gmm``: components[:type], e.g. 1:full,10:full).
Uses 2 threads by default (``--threads``).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jetgen.atomic import atomic_write_json  # noqa: E402
from jetgen.models.atlasnet import AtlasNet  # noqa: E402
from jetgen.runtime.gmm import GaussianMixturePrior  # noqa: E402
from jetgen.runtime.shapes import save_render  # noqa: E402
from jetgen.train import shape_metrics as M  # noqa: E402
from jetgen.train.latent_gmm import encode_means, fit_latent_gmm  # noqa: E402
from jetgen.train.shapes import procedural_shapes  # noqa: E402

EVAL_POINTS = 2500


def data(args):
    return procedural_shapes(args.n_train, args.n_test, EVAL_POINTS, seed=0)


def baselines(args):
    d = data(args)
    out = {"n_train": len(d.train_x), "n_test": len(d.test_x), "points": EVAL_POINTS}
    t = time.time()
    second = procedural_shapes(args.n_train, args.n_test, EVAL_POINTS, seed=0, sample_seed=1)
    out["floor"] = M.summarise(M.reconstruction_metrics(second.test_x, d.test_x))
    _, retrieved = M.retrieval_baseline(d.test_x, d.test_y, d.train_x, d.train_y)
    out["retrieval_oracle"] = M.summarise(M.reconstruction_metrics(retrieved, d.test_x))
    out["class_medoid"] = M.summarise(M.reconstruction_metrics(M.medoid_baseline(d.test_y, d.train_x, d.train_y),
                                                               d.test_x))
    real = d.train_x[np.random.RandomState(0).choice(len(d.train_x), len(d.test_x), replace=False)]
    out["generation_real_training_shapes"] = M.generation_metrics(real, d.test_x)
    out["seconds"] = round(time.time() - t, 1)
    os.makedirs(args.out, exist_ok=True)
    atomic_write_json(os.path.join(args.out, "baselines.json"), out)
    print(json.dumps(out, indent=2))


def train(args):
    torch.manual_seed(args.seed)
    d = data(args)
    model = AtlasNet(args.variant, latent_dim=args.latent, patches=args.patches, hidden=args.hidden,
                     layers=args.layers, train_points=args.train_points, encoder_points=args.encoder_points,
                     grid=args.grid)
    if args.init_from:
        from jetgen.models.atlasnet import init_from
        report = init_from(model, torch.load(os.path.join(args.init_from, "model.pt"))["state_dict"])
        print("init-from", {k: len(v) for k, v in report.items()})
    steps_per_epoch = len(d.train_x) // args.batch
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps_per_epoch * args.epochs,
                                                pct_start=0.15)
    history, start, step = [], time.time(), 0
    for epoch in range(args.epochs):
        order = torch.randperm(len(d.train_x))
        acc = {"recon": 0.0, "kl": 0.0}
        model.train()
        for b in range(steps_per_epoch):
            idx = order[b * args.batch:(b + 1) * args.batch]
            terms = model.terms(d.train_x[idx])
            kl = terms["kl"].mean(0)
            beta = args.beta * min(1.0, step / max(1.0, args.warmup * steps_per_epoch))
            kl_obj = torch.clamp(kl, min=args.free_bits).sum() if args.free_bits > 0 else kl.sum()
            loss = terms["recon"].mean() + beta * kl_obj
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            acc["recon"] += float(terms["recon"].mean())
            acc["kl"] += float(kl.sum())
        row = {"epoch": epoch + 1, "recon": acc["recon"] / steps_per_epoch, "kl": acc["kl"] / steps_per_epoch,
               "beta": beta, "seconds": round(time.time() - start, 1)}
        if args.eval_every and (epoch + 1) % args.eval_every == 0 and epoch + 1 < args.epochs:
            row["test_chamfer_x1000"] = reconstruction(model, d, limit=160)["chamfer_x1000"]
        history.append(row)
        print(json.dumps(row), flush=True)
    os.makedirs(args.out, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "settings": model.settings, "args": vars(args),
                "history": history, "train_seconds": time.time() - start}, os.path.join(args.out, "model.pt"))
    evaluate(args.out, args.gmm, d)


def _eval_grid(model):
    return int(math.ceil(math.sqrt(EVAL_POINTS / float(model.patches))))


@torch.no_grad()
def reconstruction(model, d, limit=None):
    model.eval()
    x = d.test_x if limit is None else d.test_x[::max(1, len(d.test_x) // limit)]
    pred = torch.cat([model.decode(model.encode(x[i:i + 64, :model.encoder_points])[0], grid=_eval_grid(model))
                      for i in range(0, len(x), 64)])
    model.train()
    return M.summarise(M.reconstruction_metrics(pred, x))


@torch.no_grad()
def decode_latents(model, z):
    model.eval()
    return torch.cat([model.decode(torch.as_tensor(z[i:i + 64], dtype=torch.float32)) for i in range(0, len(z), 64)])


def evaluate(out_dir, gmm_specs, d=None):
    ckpt = torch.load(os.path.join(out_dir, "model.pt"))
    args = argparse.Namespace(**ckpt["args"])
    d = d or data(args)
    model = AtlasNet(**ckpt["settings"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    t = time.time()
    res = {"settings": ckpt["settings"], "args": ckpt["args"], "train_seconds": round(ckpt["train_seconds"], 1),
           "history": ckpt["history"], "eval_grid": _eval_grid(model)}
    res["test"] = reconstruction(model, d)
    rng = np.random.RandomState(0)
    samples_n = len(d.test_x)  # as many samples as test shapes, so that COV can reach 1
    z_prior = rng.standard_normal((samples_n, model.latent_dim)).astype(np.float32)
    samples = {"prior N(0,I)": decode_latents(model, z_prior)}
    codes = encode_means(model, d.train_x).numpy()
    # the ceiling for any latent density: the decoder's reconstructions of real training shapes
    real = rng.choice(len(codes), samples_n, replace=False)
    samples["reconstructions of training shapes"] = decode_latents(model, codes[real])
    res["train_codes"] = {"mean_norm": float(np.linalg.norm(codes, axis=1).mean()),
                          "std_mean": float(codes.std(0).mean())}
    for spec in gmm_specs.split(",") if gmm_specs else []:
        k, _, kind = spec.partition(":")
        prior = GaussianMixturePrior.from_spec(fit_latent_gmm(codes, int(k), kind or "full", seed=0))
        samples["gmm {}:{}".format(k, kind or "full")] = decode_latents(model, prior.sample(samples_n, rng=0))
    res["generation"] = {}
    for name, clouds in samples.items():
        res["generation"][name] = M.generation_metrics(clouds, d.test_x)
        print(name, res["generation"][name], flush=True)
    save_render(os.path.join(out_dir, "samples.png"),
                [c.numpy() for c in list(samples.values())[-1][:6]] + [c.numpy() for c in samples["prior N(0,I)"][:3]],
                size=120)  # rows: the last density's samples, then three prior samples
    res["eval_seconds"] = round(time.time() - t, 1)
    atomic_write_json(os.path.join(out_dir, "results.json"), res)
    print(json.dumps({k: v for k, v in res.items() if k not in ("history", "args")}, indent=2))


def _resample(cloud, count, rng):
    return cloud[rng.choice(len(cloud), count, replace=len(cloud) < count)]


def completion(args):
    """Cut test shapes by a random plane through the centroid (half kept) and complete them: retrieval
    and class medoid by the one-sided Chamfer from the partial, the encoder on the partial, and latent
    optimisation (Adam on z against the one-sided Chamfer by the hand-written gradient, plus the prior
    term beta * |z|^2 / 2) from the encoder's code or from the mean code."""
    from jetgen.runtime.shapes import cut_by_plane, pad_clouds

    ckpt = torch.load(os.path.join(args.path, "model.pt"))
    run = argparse.Namespace(**ckpt["args"])
    d = data(run)
    model = AtlasNet(**ckpt["settings"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval().requires_grad_(False)
    rng = np.random.RandomState(0)
    pick = np.arange(0, len(d.test_x), max(1, len(d.test_x) // args.complete_n))[:args.complete_n]
    full = d.test_x[pick].numpy()
    partial = [cut_by_plane(c, rng=int(i))[0] for i, c in zip(pick, full)]
    observed, mask = pad_clouds([_resample(p, args.observed_points, rng) for p in partial])
    observed_t, mask_t = torch.from_numpy(observed), torch.from_numpy(mask)
    grid = _eval_grid(model)
    res = {"shapes": len(pick), "observed_points": args.observed_points, "steps": args.steps, "lr": args.opt_lr}

    def score(name, clouds):
        res[name] = M.summarise(M.reconstruction_metrics(clouds, full))
        print(name, res[name], flush=True)

    # baselines: the training shape (or class medoid) nearest to the partial by the one-sided Chamfer
    retrieval, medoid = M.partial_baselines(list(observed), d.train_x, d.train_y)
    score("retrieval by one-sided Chamfer", retrieval)
    score("class medoid nearest the partial", medoid)
    with torch.no_grad():
        z_enc = model.encode(torch.from_numpy(np.stack([_resample(p, model.encoder_points, rng) for p in partial])))[0]
        score("encoder on the partial", model.decode(z_enc, grid=grid).numpy())
    codes = encode_means(model, d.train_x)
    module = model.latent_grad_module()
    prior_weight = args.prior_weight if args.prior_weight is not None else float(run.beta)
    for name, z0 in (("optimised from the encoder's code", z_enc), ("optimised from the mean code",
                                                                    codes.mean(0, keepdim=True).expand_as(z_enc))):
        z = torch.nn.Parameter(z0.clone())
        opt = torch.optim.Adam([z], lr=args.opt_lr)
        t = time.time()
        for step in range(args.steps):
            if step == args.steps // 2:
                for group in opt.param_groups:
                    group["lr"] = args.opt_lr / 2.0  # DeepSDF: halve the rate midway
            with torch.no_grad():
                loss, grad = module(z, observed_t, mask_t)
            z.grad = model.recon_scale * grad + prior_weight * z.detach()
            opt.step()
        res[name + " seconds"] = round(time.time() - t, 1)
        with torch.no_grad():
            score(name, model.decode(z.detach(), grid=grid).numpy())
    atomic_write_json(os.path.join(args.path, "completion.json"), res)
    print(json.dumps(res, indent=2))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("baselines", "train", "eval", "complete"))
    p.add_argument("path", nargs="?", help="eval, complete: the run directory")
    p.add_argument("--out", default=os.path.join("out", "shapes"))
    p.add_argument("--variant", default="vae", choices=("ae", "vae"))
    p.add_argument("--latent", type=int, default=128)
    p.add_argument("--patches", type=int, default=16)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--train-points", type=int, default=512)
    p.add_argument("--encoder-points", type=int, default=512)
    p.add_argument("--grid", type=int, default=8)
    p.add_argument("--beta", type=float, default=0.01)
    p.add_argument("--warmup", type=float, default=0.0, help="epochs over which beta rises linearly from 0")
    p.add_argument("--free-bits", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=300)
    p.add_argument("--n-test", type=int, default=80)
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--init-from", default=None)
    p.add_argument("--gmm", default="1:full,10:full,20:diag")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--complete-n", type=int, default=48, help="complete: test shapes to cut and complete")
    p.add_argument("--observed-points", type=int, default=1024)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--opt-lr", type=float, default=0.02)
    p.add_argument("--prior-weight", type=float, default=None, help="complete: default the run's beta")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.command == "baselines":
        baselines(args)
    elif args.command == "train":
        train(args)
    elif args.command == "complete":
        completion(args)
    else:
        evaluate(args.path, args.gmm)


if __name__ == "__main__":
    main()
