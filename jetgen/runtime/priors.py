"""The latent priors a bundle can name, in numpy: sampling, the prior term of ``complete``, constraints.

One class per family, each following the table in docs/bundle.md:

| family      | sample                                   | term (value; gradient)            | constraint |
|-------------|------------------------------------------|-----------------------------------|------------|
| gaussian    | mean + std * N(0,1) * temperature        | 0.5 sum(((z-mean)/std)^2); (z-mean)/std^2 | none |
| exponential | temperature * -log(U(0,1)) / rate        | sum(rate * z); rate               | z >= 0     |
| uniform     | centre + temperature * (U(0,1)-0.5) * (high-low) | 0; 0                       | low <= z <= high |

Randomness comes from ``numpy.random.RandomState(seed)``, whose streams numpy keeps fixed across
versions, so a seed gives the same draw on a desktop and on a JetPack 4 board. Python 3.6 compatible.
"""
import numpy as np

from jetgen.errors import JetgenError


def make_rng(seed):
    """A RandomState for ``seed`` (None: fresh entropy); JetgenError for a seed that is not an int >= 0."""
    if isinstance(seed, np.random.RandomState):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
                             or seed >= 2 ** 32):
        raise JetgenError("A seed must be an integer from 0 to 2**32-1, not {!r}.".format(seed))
    return np.random.RandomState(seed)


def _check_temperature(temperature):
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        t = float("nan")
    if not np.isfinite(t) or t < 0:
        raise JetgenError("The temperature must be a finite number >= 0, not {!r}.".format(temperature))
    return t


class Prior(object):
    """Base class: ``family``, ``dim`` and the float64 parameter vectors of one family."""

    family = None

    def __init__(self, dim):
        self.dim = dim

    def sample(self, n, temperature=1.0, rng=None):
        """(n, dim) float32 draws; ``rng`` a RandomState or seed."""
        raise NotImplementedError

    def mean(self):
        """(dim,) float32: where ``complete`` starts by default."""
        raise NotImplementedError

    def term(self, z):
        """Negative log density up to a constant: (value (B,), gradient (B, dim)), float64."""
        raise NotImplementedError

    def project(self, z):
        """``z`` moved onto the support (a copy; unchanged when the family has no constraint)."""
        return np.array(z, copy=True)

    def contains(self, z):
        """Boolean (B,) saying which rows satisfy the constraint."""
        return np.ones(np.asarray(z).shape[0], dtype=bool)

    def standardise(self, z):
        """Coordinates in which the family is centred, for slerp; identity by default."""
        return np.asarray(z, dtype=np.float64)

    def unstandardise(self, u):
        return np.asarray(u, dtype=np.float64)


class GaussianPrior(Prior):
    family = "gaussian"

    def __init__(self, mean, std):
        Prior.__init__(self, len(mean))
        self.mu = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)

    def sample(self, n, temperature=1.0, rng=None):
        t = _check_temperature(temperature)
        eps = make_rng(rng).standard_normal((n, self.dim))
        return (self.mu + self.std * eps * t).astype(np.float32)

    def mean(self):
        return self.mu.astype(np.float32)

    def term(self, z):
        u = (np.asarray(z, dtype=np.float64) - self.mu) / self.std
        return 0.5 * np.sum(u * u, axis=1), u / self.std

    def standardise(self, z):
        return (np.asarray(z, dtype=np.float64) - self.mu) / self.std

    def unstandardise(self, u):
        return self.mu + self.std * np.asarray(u, dtype=np.float64)


class ExponentialPrior(Prior):
    family = "exponential"

    def __init__(self, rate):
        Prior.__init__(self, len(rate))
        self.rate = np.asarray(rate, dtype=np.float64)

    def sample(self, n, temperature=1.0, rng=None):
        t = _check_temperature(temperature)
        # 1 - U lies in (0, 1], so the log is finite
        u = 1.0 - make_rng(rng).random_sample((n, self.dim))
        return (-np.log(u) / self.rate * t).astype(np.float32)

    def mean(self):
        return (1.0 / self.rate).astype(np.float32)

    def term(self, z):
        z = np.asarray(z, dtype=np.float64)
        return np.sum(self.rate * z, axis=1), np.broadcast_to(self.rate, z.shape).copy()

    def project(self, z):
        return np.maximum(z, 0)

    def contains(self, z):
        return np.all(np.asarray(z) >= 0, axis=1)


class UniformPrior(Prior):
    family = "uniform"

    def __init__(self, low, high):
        Prior.__init__(self, len(low))
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)

    def sample(self, n, temperature=1.0, rng=None):
        # temperature shrinks the box around its centre (1: the whole box); above 1 the draw is clipped
        t = _check_temperature(temperature)
        u = make_rng(rng).random_sample((n, self.dim))
        z = 0.5 * (self.low + self.high) + t * (u - 0.5) * (self.high - self.low)
        return self.project(z).astype(np.float32)

    def mean(self):
        return (0.5 * (self.low + self.high)).astype(np.float32)

    def term(self, z):
        z = np.asarray(z, dtype=np.float64)
        return np.zeros(z.shape[0]), np.zeros(z.shape)

    def project(self, z):
        return np.clip(z, self.low.astype(np.asarray(z).dtype), self.high.astype(np.asarray(z).dtype))

    def contains(self, z):
        z = np.asarray(z)
        return np.all((z >= self.low) & (z <= self.high), axis=1)

    def standardise(self, z):
        return (np.asarray(z, dtype=np.float64) - 0.5 * (self.low + self.high)) / (self.high - self.low)

    def unstandardise(self, u):
        return 0.5 * (self.low + self.high) + (self.high - self.low) * np.asarray(u, dtype=np.float64)


# family name (jetgen.spec.PRIOR_FAMILIES) -> class; each constructor takes the family's parameters by name
FAMILIES = dict((cls.family, cls) for cls in (GaussianPrior, ExponentialPrior, UniformPrior))


def prior_from_manifest(prior):
    """Build the Prior named by a checked manifest's ``model.prior`` entry."""
    if prior.get("family") == "gmm":  # a fitted mixture (jetgen.runtime.gmm imports this module)
        from jetgen.runtime.gmm import GaussianMixturePrior

        return GaussianMixturePrior.from_spec(prior)
    try:
        cls = FAMILIES[prior["family"]]
    except KeyError:
        raise JetgenError("Unknown prior family {!r}.".format(prior["family"]))
    return cls(**prior["params"])
