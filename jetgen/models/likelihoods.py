"""Observation models p(x | z): per-example negative log-likelihood in nats, from decoder logits.

Decoders output logits; the mean image is ``sigmoid(logits)`` in [0, 1] for both likelihoods.
``mask`` (same shape as x, 1 = observed) restricts the sum to observed pixels; that is what
test-time completion and the exported ``latent_grad`` graph optimise.
"""
import math

import torch
import torch.nn.functional as F

LIKELIHOODS = ("bernoulli", "gaussian")


def bernoulli_nll(logits, x, mask=None):
    """sum_pixels BCE(sigmoid(logits), x), stable from logits; x may be grey levels in [0, 1]."""
    nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    if mask is not None:
        nll = nll * mask
    return nll.flatten(1).sum(1)


def gaussian_nll(logits, x, mask=None, sigma=0.1):
    """sum_pixels -log N(x; sigmoid(logits), sigma^2): the MSE likelihood with a fixed scale."""
    mean = torch.sigmoid(logits)
    nll = 0.5 * ((x - mean) / sigma) ** 2 + 0.5 * math.log(2 * math.pi * sigma ** 2)
    if mask is not None:
        nll = nll * mask
    return nll.flatten(1).sum(1)


def nll(name, logits, x, mask=None, sigma=0.1):
    """Dispatch on the likelihood name; returns a (B,) tensor of nats."""
    if name == "bernoulli":
        return bernoulli_nll(logits, x, mask)
    if name == "gaussian":
        return gaussian_nll(logits, x, mask, sigma)
    raise ValueError("unknown likelihood {!r}".format(name))
