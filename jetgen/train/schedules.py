"""KL weight schedules and the free-bits KL objective, as pure functions of the step.

- constant:  beta at every step.
- linear:    0 for ``warmup_delay`` steps, then rising linearly to beta over ``warmup_steps``.
- cyclical:  ``cycles`` cycles over the whole run; within each, rise linearly over the first
             ``cycle_ratio`` of the cycle, then flat at beta (Fu et al. 2019).
- free-bits: weight beta, but the KL term is sum_d max(lambda, mean_batch KL_d) (Kingma et al. 2016).
- warmup:    0 for the first WARMUP_START of the run (reconstruction gets a foothold), then rising
             linearly to beta by WARMUP_END of the run, flat after: the same shape for runs of any length.
"""
import math

import torch

KL_SCHEDULES = ("constant", "linear", "cyclical", "free-bits", "warmup")
WARMUP_START, WARMUP_END = 0.1, 0.4  # shares of the run (warmup)


def kl_weight(schedule, step, total_steps, beta=1.0, warmup_delay=0, warmup_steps=1000, cycles=4,
              cycle_ratio=0.5):
    """The KL weight at ``step`` (0-based global optimiser step) of a run of ``total_steps`` steps."""
    if schedule in ("constant", "free-bits"):
        return float(beta)
    if schedule == "linear":
        if step < warmup_delay:
            return 0.0
        if warmup_steps <= 0:
            return float(beta)
        return float(beta) * min(1.0, (step - warmup_delay) / float(warmup_steps))
    if schedule == "warmup":
        start, end = WARMUP_START * total_steps, WARMUP_END * total_steps
        return float(beta) * min(1.0, max(0.0, (step - start) / max(1.0, end - start)))
    if schedule == "cyclical":
        period = max(1.0, total_steps / float(cycles))
        tau = (step % period) / period
        return float(beta) * min(1.0, tau / cycle_ratio)
    raise ValueError("unknown KL schedule {!r}; choose one of: {}".format(schedule, ", ".join(KL_SCHEDULES)))


def kl_term(kl, free_bits=None):
    """The KL part of the objective for a batch, from per-example per-dimension KL ``kl`` (B, D).

    Without free bits: mean over the batch of sum_d KL_d. With a floor ``free_bits`` = lambda nats
    per dimension: sum_d max(lambda, mean_batch KL_d), so dimensions below the floor get no push
    towards the prior.
    """
    if free_bits is None:
        return kl.sum(1).mean()
    return torch.clamp(kl.mean(0), min=float(free_bits)).sum()


LR_SCHEDULES = ("constant", "one-cycle")
ONE_CYCLE_WARMUP = 0.15  # share of the run rising to the peak (the shapes experiment's setting)
ONE_CYCLE_START, ONE_CYCLE_END = 1.0 / 25.0, 1.0 / 25.0 / 1e4  # torch OneCycleLR's div_factor, final_div_factor


def lr_factor(schedule, step, total_steps):
    """The learning rate at ``step`` as a fraction of the peak (``--lr``): 1 for ``constant``; for
    ``one-cycle`` a cosine rise from 1/25 to 1 over the first 15% of the run, then a cosine fall to
    1/25e4 (torch's OneCycleLR with its defaults). A pure function of the step, so resuming needs no state."""
    if schedule == "constant":
        return 1.0
    if schedule != "one-cycle":
        raise ValueError("unknown learning-rate schedule {!r}; choose one of: {}".format(
            schedule, ", ".join(LR_SCHEDULES)))
    total = max(1, int(total_steps))
    rise = max(1.0, ONE_CYCLE_WARMUP * total)
    if step < rise:
        low, high, t = ONE_CYCLE_START, 1.0, step / rise
    else:
        low, high, t = 1.0, ONE_CYCLE_END, min(1.0, (step - rise) / max(1.0, total - rise))
    return high + (low - high) * (1.0 + math.cos(math.pi * t)) / 2.0
