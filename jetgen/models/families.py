"""Latent distribution families: the variational posterior q, its prior p, and KL(q || p).

Each family is one class holding all of its maths: parameters and their initialisation,
reparameterised sampling, mean, KL per dimension, log q, log p, prior sampling, the prior's inverse
CDF (for manifold plots) and the prior's manifest entry (whose numpy twin is jetgen.runtime.priors).

Each family is reparameterised so gradients flow to its parameters:
- gaussian:    params (mu, logvar);  z = mu + eps * exp(logvar / 2);  prior N(0, 1)
- exponential: params (k,) with rate lambda = exp(k);  z = -log(u) / lambda;  prior Exp(1)
- uniform:     params (c_raw, w_raw); centre c = tanh(c_raw), half-width w = sigmoid(w_raw) * (1 - |c|)
               so the interval [c - w, c + w] stays inside the prior's support;  prior U(-1, 1)
KL is returned per latent dimension, shape (B, D), so free bits can floor it per dimension.
"""
import math
from statistics import NormalDist

import numpy as np
import torch

_EPS = 1e-6


class Gaussian:
    name = "gaussian"
    num_params = 2

    @staticmethod
    def init_params(n, dim, generator=None):
        mu = 0.1 * torch.randn(n, dim, generator=generator)
        logvar = torch.full((n, dim), -2.0)
        return torch.cat([mu, logvar], 1)

    @staticmethod
    def split(params):
        return params.chunk(2, dim=1)

    @classmethod
    def rsample(cls, params):
        mu, logvar = cls.split(params)
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    @classmethod
    def mean(cls, params):
        return cls.split(params)[0]

    @classmethod
    def kl(cls, params):
        mu, logvar = cls.split(params)
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)

    @staticmethod
    def prior_sample(n, dim, generator=None):
        return torch.randn(n, dim, generator=generator)

    @staticmethod
    def prior_spec(dim):
        return {"family": "gaussian", "params": {"mean": [0.0] * dim, "std": [1.0] * dim}}

    @classmethod
    def log_q(cls, params, z):
        mu, logvar = cls.split(params)
        return log_normal(z, mu, logvar)

    @staticmethod
    def log_prior(z):
        return (-0.5 * (math.log(2 * math.pi) + z ** 2)).sum(-1)

    @staticmethod
    def prior_icdf(u):
        return np.array([NormalDist().inv_cdf(float(v)) for v in np.ravel(u)]).reshape(np.shape(u))

    @classmethod
    def sigma(cls, params):
        """Posterior standard deviations (B, D): the posterior-collapse view of latent statistics."""
        return torch.exp(0.5 * cls.split(params)[1])


class Exponential:
    name = "exponential"
    num_params = 1

    @staticmethod
    def init_params(n, dim, generator=None):
        return 1.0 + 0.1 * torch.randn(n, dim, generator=generator)

    @staticmethod
    def rsample(params):
        u = torch.rand_like(params).clamp(_EPS, 1.0)
        return -torch.log(u) * torch.exp(-params)

    @staticmethod
    def mean(params):
        return torch.exp(-params)

    @staticmethod
    def kl(params):
        # KL(Exp(l) || Exp(1)) = log l - 1 + 1 / l, with k = log l
        return params - 1.0 + torch.exp(-params)

    @staticmethod
    def prior_sample(n, dim, generator=None):
        u = torch.rand(n, dim, generator=generator).clamp(_EPS, 1.0)
        return -torch.log(u)

    @staticmethod
    def prior_spec(dim):
        return {"family": "exponential", "params": {"rate": [1.0] * dim}}

    @staticmethod
    def log_q(params, z):
        # q(z) = l exp(-l z), l = exp(k)
        return (params - torch.exp(params) * z).sum(-1)

    @staticmethod
    def log_prior(z):
        return (-z).sum(-1)

    @staticmethod
    def prior_icdf(u):
        return -np.log1p(-np.asarray(u, dtype=float))

    @staticmethod
    def sigma(params):
        return None


class Uniform:
    name = "uniform"
    num_params = 2

    @staticmethod
    def init_params(n, dim, generator=None):
        c_raw = 0.1 * torch.randn(n, dim, generator=generator)
        w_raw = torch.zeros(n, dim)
        return torch.cat([c_raw, w_raw], 1)

    @staticmethod
    def interval(params):
        c_raw, w_raw = params.chunk(2, dim=1)
        c = torch.tanh(c_raw)
        w = torch.sigmoid(w_raw) * (1.0 - c.abs()) + _EPS
        return c, w

    @classmethod
    def rsample(cls, params):
        c, w = cls.interval(params)
        return c - w + 2.0 * w * torch.rand_like(c)

    @classmethod
    def mean(cls, params):
        return cls.interval(params)[0]

    @classmethod
    def kl(cls, params):
        # KL(U(c-w, c+w) || U(-1, 1)) = log(2 / 2w); finite because the interval stays inside
        _, w = cls.interval(params)
        return -torch.log(w)

    @staticmethod
    def prior_sample(n, dim, generator=None):
        return 2.0 * torch.rand(n, dim, generator=generator) - 1.0

    @staticmethod
    def prior_spec(dim):
        return {"family": "uniform", "params": {"low": [-1.0] * dim, "high": [1.0] * dim}}

    @classmethod
    def log_q(cls, params, z):
        _, w = cls.interval(params)
        return (-torch.log(2.0 * w)).sum(-1)

    @staticmethod
    def log_prior(z):
        return torch.full(z.shape[:1], -z.shape[1] * math.log(2.0), dtype=z.dtype, device=z.device)

    @staticmethod
    def prior_icdf(u):
        return 2.0 * np.asarray(u, dtype=float) - 1.0

    @staticmethod
    def sigma(params):
        return None


FAMILY_CLASSES = dict((cls.name, cls) for cls in (Gaussian, Exponential, Uniform))
FAMILIES = tuple(FAMILY_CLASSES)


def get_family(name):
    try:
        return FAMILY_CLASSES[name]
    except KeyError:
        raise ValueError("unknown family {!r}".format(name))


def log_normal(z, mu, logvar):
    """log N(z; mu, exp(logvar)) summed over the last dimension."""
    return (-0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / logvar.exp())).sum(-1)
