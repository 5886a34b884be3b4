"""An ex-post latent density: a Gaussian mixture fitted on the training codes after training
(Ghosh et al. 2020), sampled and scored in numpy.

A bundle describes it as plain lists::

    {"family": "gmm", "params": {"covariance_type": "full" or "diag",
                                 "weights": [K], "means": [K][D],
                                 "covariances": [K][D][D] (full) or [K][D] (diag)}}

``GaussianMixturePrior`` follows the ``jetgen.runtime.priors.Prior`` interface: ``sample`` (temperature
scales each component's spread), ``mean``, ``term`` (negative log density up to a constant and its
gradient, for ``complete``'s prior term), ``describe``. numpy only; Python 3.6 compatible.
"""
import numpy as np

from jetgen.errors import JetgenError
from jetgen.runtime.priors import Prior, _check_temperature, make_rng

COVARIANCE_TYPES = ("full", "diag")
MAX_COMPONENTS = 1024


def _array(value, name, ndim):
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise JetgenError("The mixture's {} are not numbers; re-export the bundle.".format(name))
    if arr.ndim != ndim or not np.all(np.isfinite(arr)):
        raise JetgenError("The mixture's {} must be a finite {}-dimensional array, not shape {}; re-export the "
                          "bundle.".format(name, ndim, arr.shape))
    return arr


class GaussianMixturePrior(Prior):
    family = "gmm"

    def __init__(self, weights, means, covariances, covariance_type="full"):
        if covariance_type not in COVARIANCE_TYPES:
            raise JetgenError("The mixture's covariance type {!r} is not one of: {}.".format(
                covariance_type, ", ".join(COVARIANCE_TYPES)))
        weights = _array(weights, "weights", 1)
        means = _array(means, "means", 2)
        k, d = means.shape
        if not 1 <= k <= MAX_COMPONENTS or len(weights) != k:
            raise JetgenError("The mixture has {} weights for {} means (at most {} components); re-export the "
                              "bundle.".format(len(weights), k, MAX_COMPONENTS))
        if np.any(weights < 0) or not 0.999 <= weights.sum() <= 1.001:
            raise JetgenError("The mixture's weights must be >= 0 and sum to 1 (they sum to {:.4g}).".format(
                weights.sum()))
        cov = _array(covariances, "covariances", 3 if covariance_type == "full" else 2)
        if cov.shape != ((k, d, d) if covariance_type == "full" else (k, d)):
            raise JetgenError("The mixture's covariances have shape {} for {} components of dimension {}.".format(
                cov.shape, k, d))
        Prior.__init__(self, d)
        self.covariance_type = covariance_type
        self.weights, self.means, self.covariances = weights / weights.sum(), means, cov
        if covariance_type == "full":
            try:
                self.chol = np.linalg.cholesky(cov)  # (K, D, D) lower, cov = L L^T
            except np.linalg.LinAlgError:
                raise JetgenError("A covariance of the mixture is not positive definite; refit it with a larger "
                                  "regularisation.")
            inv_chol = np.linalg.inv(self.chol)
            self.precisions = np.einsum("kji,kjl->kil", inv_chol, inv_chol)
            self.log_dets = 2.0 * np.log(np.diagonal(self.chol, axis1=1, axis2=2)).sum(1)
        else:
            if np.any(cov <= 0):
                raise JetgenError("A variance of the mixture is not positive; refit it.")
            self.chol, self.precisions, self.log_dets = np.sqrt(cov), 1.0 / cov, np.log(cov).sum(1)

    @classmethod
    def from_spec(cls, spec):
        """Build from the {"family": "gmm", "params": {...}} description; JetgenError when malformed."""
        if not isinstance(spec, dict) or spec.get("family") != "gmm" or not isinstance(spec.get("params"), dict):
            raise JetgenError("The latent density is not a {'family': 'gmm', 'params': {...}} description.")
        p = spec["params"]
        missing = [k for k in ("weights", "means", "covariances") if k not in p]
        if missing:
            raise JetgenError("The mixture description lacks {}; re-export the bundle.".format(", ".join(missing)))
        return cls(p["weights"], p["means"], p["covariances"], p.get("covariance_type", "full"))

    def describe(self):
        """The {"family": "gmm", "params": {...}} description ``from_spec`` reads (plain lists, JSON-ready)."""
        return {"family": "gmm", "params": {"weights": self.weights.tolist(), "means": self.means.tolist(),
                                            "covariances": self.covariances.tolist(),
                                            "covariance_type": self.covariance_type}}

    def sample(self, n, temperature=1.0, rng=None):
        t = _check_temperature(temperature)
        rng = make_rng(rng)
        comp = rng.choice(len(self.weights), size=int(n), p=self.weights)
        eps = rng.standard_normal((int(n), self.dim))
        if self.covariance_type == "full":
            spread = np.einsum("nij,nj->ni", self.chol[comp], eps)
        else:
            spread = self.chol[comp] * eps
        return (self.means[comp] + t * spread).astype(np.float32)

    def mean(self):
        return self.weights.dot(self.means).astype(np.float32)

    def _log_components(self, z):
        """(B, K) log w_k + log N(z; mu_k, Sigma_k) + D/2 log(2 pi), and the (B, K, D) precision-weighted offsets."""
        diff = np.asarray(z, dtype=np.float64)[:, None, :] - self.means[None]
        if self.covariance_type == "full":
            scaled = np.einsum("kij,bkj->bki", self.precisions, diff)
        else:
            scaled = diff * self.precisions[None]
        maha = np.sum(diff * scaled, axis=2)
        return np.log(np.maximum(self.weights, 1e-300))[None] - 0.5 * (maha + self.log_dets[None]), scaled

    def log_density(self, z):
        """(B,) log p(z) including the normalising constant."""
        logc, _ = self._log_components(z)
        top = logc.max(1, keepdims=True)
        return (top[:, 0] + np.log(np.exp(logc - top).sum(1))) - 0.5 * self.dim * np.log(2.0 * np.pi)

    def term(self, z):
        logc, scaled = self._log_components(z)
        top = logc.max(1, keepdims=True)
        resp = np.exp(logc - top)
        total = resp.sum(1, keepdims=True)
        resp /= total
        value = -(top[:, 0] + np.log(total[:, 0]))
        return value, np.einsum("bk,bki->bi", resp, scaled)

    def standardise(self, z):
        mu, std = self._moments()
        return (np.asarray(z, dtype=np.float64) - mu) / std

    def unstandardise(self, u):
        mu, std = self._moments()
        return mu + std * np.asarray(u, dtype=np.float64)

    def _moments(self):
        mu = self.weights.dot(self.means)
        var_k = np.diagonal(self.covariances, axis1=1, axis2=2) if self.covariance_type == "full" else self.covariances
        var = self.weights.dot(var_k + self.means ** 2) - mu ** 2
        return mu, np.sqrt(np.maximum(var, 1e-12))
