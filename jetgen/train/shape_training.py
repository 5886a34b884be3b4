"""What a 3D (atlasnet) run chooses from its data, and what it watches while it trains (issue 19).

- **Schedule from the data set's size** (``fill_shape_schedule``): a run needs about ``TARGET_STEPS``
  optimiser steps whatever the number of shapes (180 mesh shapes: 80 steps gave a collapsed model
  worse than the class medoid, 1,000 steps one better than retrieval; docs/shapes.md), half that when
  it starts from other weights (``--init-from``). The batch is the largest of ``BATCHES`` that still
  gives ``MIN_STEPS_PER_PASS`` steps per pass over the data; small sets take several passes per epoch
  (``passes``), so a run has about ``TARGET_EPOCHS`` epochs (log lines and checkpoints) whatever its
  size. A few timed steps on a throw-away copy of the model give the time estimate; an estimate over
  ``MAX_SECONDS`` is said on the first line with the flags that shorten it, but never changes the
  schedule: the same flags and data give the same run on any machine, however busy.
- **Augmentation for small sets** (``choose_augmentation``): below ``AUGMENT_BELOW`` training shapes,
  each step's clouds are scaled by a random factor per axis, then normalised again (centre, farthest
  point at 1: the data's convention), and turned by a random angle about the up (y) axis when the
  training shapes have no common heading (``heading_alignment``). The model already reads a fresh
  random subset of each shape's points at every step (point resampling).
- **Collapse watch** (``latent_warning``): a loud line when the encoder's means do not depend on the
  input (no active unit), with what to do.
"""
import copy
import math
import time

import numpy as np
import torch

TARGET_STEPS = 1000  # from scratch; measured on 3 x 60 mesh shapes (issue 19) and 3 x 30 (docs/shapes.md)
TRANSFER_STEPS = 500  # from another run's weights (--init-from): half
MIN_PASSES = 16  # at least this many passes over a large data set (the measured 1,800-shape default)
BATCHES = ((32, 2e-3), (16, 2e-3), (8, 1e-3))  # (batch, peak lr of one-cycle), largest first
MIN_STEPS_PER_PASS = 3
TARGET_EPOCHS = 20
MAX_SECONDS = 600.0  # an estimate above this (10 minutes) is flagged on the first line, with how to shorten it
PROBE_STEPS = 3  # timed steps (after one untimed) for the estimate

AUGMENT_BELOW = 1000  # training shapes: augmentation is on below this size
SCALE_RANGE = (0.8, 1.25)  # per-axis scale factors (log-uniform), before normalising again
ALIGNED = 0.5  # heading alignment above this: the shapes share a heading, so no rotation
ANISOTROPIC = 0.1  # footprints rounder than this have no heading and do not vote


def choose_batch(n_train):
    """(batch, lr): the largest batch of BATCHES that gives MIN_STEPS_PER_PASS steps per pass."""
    for batch, lr in BATCHES:
        if n_train / float(batch) >= MIN_STEPS_PER_PASS:
            return batch, lr
    return BATCHES[-1]


def choose_shape_schedule(n_train, batch, transfer=False):
    """(passes, epochs, steps, why) for ``n_train`` training shapes at ``batch``: enough steps
    (TARGET_STEPS, TRANSFER_STEPS with ``transfer``; at least MIN_PASSES passes), spread over about
    TARGET_EPOCHS epochs of whole passes. Depends on the data and options only, never on timing."""
    per_pass = int(math.ceil(n_train / float(batch)))
    target = TRANSFER_STEPS if transfer else TARGET_STEPS
    min_passes = MIN_PASSES // 2 if transfer else MIN_PASSES
    steps = max(target, min_passes * per_pass)
    passes = max(1, int(round(steps / float(TARGET_EPOCHS * per_pass))))
    epochs = max(1, int(round(steps / float(passes * per_pass))))
    total = epochs * passes * per_pass
    why = "{} training shapes: batch {} ({} steps per pass), {} pass{} per epoch, {} epochs = {} steps ({})".format(
        n_train, batch, per_pass, passes, "" if passes == 1 else "es", epochs, total,
        "the target: {} steps{}".format(target, " from the --init-from weights" if transfer else "") if steps == target
        else "{} passes over the data".format(min_passes))
    return passes, epochs, total, why


def fill_shape_schedule(opts, n_train, probe=None, world=1):
    """Put the chosen batch_size, lr, epochs and passes into ``opts`` where they are None; return the
    sentence for the first log line (what was chosen, why, and the time estimate), or None when the user
    gave batch size, lr and epochs. ``probe(batch)`` returns measured seconds per optimiser step (or None).
    Epochs the user gives are single passes unless they give --passes too."""
    auto = [k for k in ("batch_size", "lr", "epochs") if opts.get(k) is None]
    if opts.get("epochs") is not None and opts.get("passes") is None:
        opts["passes"] = 1
    if not auto:
        return None
    per_process = max(1, n_train // max(1, world))
    batch, lr = choose_batch(per_process)
    batch = opts["batch_size"] or batch
    seconds = probe(batch) if probe is not None else None
    per_pass = int(math.ceil(per_process / float(batch)))
    if opts.get("epochs") is None:
        passes, epochs, steps, why = choose_shape_schedule(per_process, batch, bool(opts.get("init_from")))
        if opts.get("passes") is not None:  # the user's passes: as many epochs as the chosen steps need
            passes = opts["passes"]
            epochs = max(1, int(round(steps / float(passes * per_pass))))
            steps = epochs * passes * per_pass
            why = "{} training shapes: batch {} ({} steps per pass), --passes {}, {} epochs = {} steps".format(
                n_train, batch, per_pass, passes, epochs, steps)
    else:
        passes, epochs = opts["passes"], opts["epochs"]
        steps = epochs * passes * per_pass
        why = "{} training shapes: batch {} ({} steps per pass), --epochs {} of {} pass{} = {} steps".format(
            n_train, batch, per_pass, epochs, passes, "" if passes == 1 else "es", steps)
    chosen = {"batch_size": batch, "lr": lr, "epochs": epochs, "passes": passes}
    if opts.get("passes") is None:
        auto.append("passes")
    for key in auto:
        opts[key] = chosen[key]
    opts["auto_schedule"] = [k for k in auto if k != "passes"]
    estimate = "; estimated {} of training ({:.2f} s per step measured)".format(
        _duration(seconds * steps), seconds) if seconds else ""
    if seconds and seconds * steps > MAX_SECONDS:  # said, never acted on: the schedule stays the data's
        estimate += ", over {:.0f} minutes: --epochs {} halves it".format(MAX_SECONDS / 60.0, max(1, epochs // 2))
    return "Chose {} from the data ({}{}); pass them to override.".format(
        ", ".join("--{} {:g}".format(k.replace("_", "-"), chosen[k]) for k in auto), why, estimate)


def _duration(seconds):
    return "{:.0f} s".format(seconds) if seconds < 120 else "{:.1f} minutes".format(seconds / 60.0)


def step_seconds(build, opts, train_x, batch, steps=PROBE_STEPS):
    """Seconds per optimiser step of a fresh model from ``build(opts)`` at ``batch`` on ``train_x``:
    the median of ``steps`` timed Adam steps after one untimed one. Leaves the RNG streams and the real
    model untouched (the copy is thrown away)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build(copy.deepcopy(opts))
        model.train()
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
        times = []
        for i in range(steps + 1):
            idx = torch.randint(0, len(train_x), (batch,))
            start = time.perf_counter()
            terms = model.terms(train_x[idx])
            loss = terms["recon"].mean() + 0.01 * terms["kl"].sum(1).mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if i:
                times.append(time.perf_counter() - start)
    return float(np.median(times))


# ---- augmentation --------------------------------------------------------------------------------

def heading_alignment(clouds):
    """How much the training shapes share a heading about the up (y) axis, in [0, 1]: the length of
    the mean of exp(2i theta) over shapes with an elongated footprint, theta being the angle of the
    footprint's (x, z) principal axis (an axis, so the angle is doubled). 1: all point the same way;
    about 0: headings spread, or no shape has a heading (round footprints). Returns (alignment, voters)."""
    x = torch.as_tensor(clouds, dtype=torch.float64)[..., [0, 2]]
    x = x - x.mean(1, keepdim=True)
    cov = torch.einsum("npi,npj->nij", x, x) / x.shape[1]
    a, b, c = cov[:, 0, 0], cov[:, 1, 1], cov[:, 0, 1]
    spread = torch.sqrt((a - b) ** 2 + 4 * c ** 2)
    anisotropy = spread / (a + b).clamp(min=1e-12)
    theta2 = torch.atan2(2 * c, a - b)  # twice the principal axis angle
    votes = anisotropy > ANISOTROPIC
    if int(votes.sum()) == 0:
        return 0.0, 0
    mean = torch.stack([torch.cos(theta2[votes]).mean(), torch.sin(theta2[votes]).mean()])
    return float(mean.norm()), int(votes.sum())


class Augment(object):
    """Per-step augmentation of training clouds (B, N, 3): per-axis scaling in SCALE_RANGE, a turn about
    y when ``yaw``, then the data's normalisation (bounding-box centre at 0, farthest point at 1). Draws
    from torch's global RNG, so a resumed run repeats it."""

    def __init__(self, yaw):
        self.yaw = bool(yaw)

    def __call__(self, x):
        b = x.shape[0]
        low, high = math.log(SCALE_RANGE[0]), math.log(SCALE_RANGE[1])
        scale = torch.exp(torch.rand(b, 1, 3, device=x.device, dtype=x.dtype) * (high - low) + low)
        x = x * scale
        if self.yaw:
            angle = torch.rand(b, device=x.device, dtype=x.dtype) * (2 * math.pi)
            cos, sin = torch.cos(angle)[:, None], torch.sin(angle)[:, None]
            x = torch.stack([cos * x[..., 0] + sin * x[..., 2], x[..., 1], -sin * x[..., 0] + cos * x[..., 2]], -1)
        x = x - 0.5 * (x.amax(1, keepdim=True) + x.amin(1, keepdim=True))
        return x / x.norm(dim=2).amax(1).clamp(min=1e-12)[:, None, None]

    def describe(self):
        return "per-axis scaling x{:g} to x{:g}{}, then normalised again; a fresh subset of points every step".format(
            SCALE_RANGE[0], SCALE_RANGE[1], ", turns about the up axis" if self.yaw else "")


def choose_augmentation(opts, train_x):
    """(Augment or None, sentence for the log): on below AUGMENT_BELOW shapes unless ``opts["augment"]``
    says otherwise (True/False); turns about y only when the shapes share no heading."""
    wanted = opts.get("augment")
    n = len(train_x)
    if wanted is None:
        wanted = n < AUGMENT_BELOW
        reason = "{} training shapes, {} {}".format(n, "fewer than" if wanted else "at least", AUGMENT_BELOW)
    else:
        reason = "--augment" if wanted else "--no-augment"
    if not wanted:
        return None, "No augmentation ({}).".format(reason)
    alignment, voters = heading_alignment(train_x)
    aug = Augment(yaw=alignment <= ALIGNED)
    why = ("the shapes share a heading about the up axis (alignment {:.2f} over {} elongated footprints), so they "
           "are not turned".format(alignment, voters) if not aug.yaw else
           "the shapes share no heading about the up axis (alignment {:.2f} over {} elongated footprints)".format(
               alignment, voters))
    return aug, "Augmenting ({}): {}; {}.".format(reason, aug.describe(), why)


# ---- collapse watch ------------------------------------------------------------------------------

def latent_warning(active, latent_dim, kl_per_dim=None, variant="vae"):
    """A loud sentence when no latent unit is active (the encoder's output does not depend on the input:
    every shape decodes to about the same cloud), else None."""
    if active > 0:
        return None
    kl = ""
    if kl_per_dim is not None and len(kl_per_dim):
        values = np.asarray(kl_per_dim, dtype=np.float64)
        kl = " (KL per dimension {:.2f} to {:.2f} nats, the same for every shape)".format(values.min(), values.max()) \
            if variant == "vae" else ""
    return ("WARNING: the latent carries nothing: 0 of {} units active{}; the encoder's output does not depend on "
            "the input, so every shape decodes to about the same cloud. Train for more steps (--epochs, --passes), "
            "start from the base model (--init-from base), or lower --beta.".format(latent_dim, kl))
