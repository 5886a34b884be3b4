"""The likelihoods a bundle's ``latent_grad`` graph computes, and the one latent-gradient function.

A likelihood turns the decoder's raw output (probabilities, logits or values, reshaped to
(B, C, H, W)) into the per-example masked negative log-likelihood in nats (docs/bundle.md). The
gradient with respect to the latent comes from :func:`latent_loss_and_grad`, which every export
(jetgen's own runs and ``export_model``) traces into ``latent_grad.onnx`` and uses as the torch
reference for parity. A likelihood can supply its gradient three ways, from least to most work:

- ``loss(output, target, mask)``: autograd differentiates it (the built-in likelihoods do this);
- ``loss_and_output_grad(output, target, mask)``: the loss and d loss / d output as explicit
  tensors, for losses whose autograd backward exports badly (a Chamfer distance's ``min`` backward
  becomes ScatterElements); autograd then only runs through the decoder;
- ``latent_loss_and_grad(decode, z, target, mask, y)``: everything, for full control.

``manifest()`` is what the bundle records (``{"name", "sigma"}``, a name jetgen.spec knows).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from jetgen.errors import JetgenError

OUTPUTS = ("probs", "logits", "points")


class Likelihood(object):
    """Base class: subclasses set ``name`` (and ``sigma``) and override one of the three methods."""

    name = None
    sigma = None

    def manifest(self):
        return {"name": self.name, "sigma": self.sigma}

    def loss(self, output, target, mask):
        """Per-example masked negative log-likelihood (B,) of ``target`` under ``output`` (torch)."""
        raise NotImplementedError("{} defines no loss".format(type(self).__name__))

    def loss_and_output_grad(self, output, target, mask):
        """(loss (B,), d sum(loss) / d output) as explicit tensors, or None to let autograd work."""
        return None

    def latent_loss_and_grad(self, decode, z, target, mask, y=None):
        """(loss (B,), d sum(loss) / d z (B, D)); ``decode(z, y)`` gives the raw decoder output."""
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            output = decode(z, y)
            explicit = self.loss_and_output_grad(output, target, mask)
            if explicit is None:
                loss = self.loss(output, target, mask)
                (grad,) = torch.autograd.grad(loss.sum(), z)
            else:
                loss, output_grad = explicit
                (grad,) = torch.autograd.grad(output, z, grad_outputs=output_grad)
        return loss.detach(), grad.detach()

    def traced_loss_and_grad(self, decode, z, target, mask, y=None):
        """What the exported latent_grad graph computes (traced by make_fx); the same as
        ``latent_loss_and_grad`` unless a subclass writes an export-friendly form."""
        return self.latent_loss_and_grad(decode, z, target, mask, y)

    def latent_grad_module(self, decoder):
        """A torch module (z, target, mask) -> (loss, grad) to export as written (legacy exporter at
        the target's opset), or None to trace ``traced_loss_and_grad`` through ``decoder``."""
        return None

    def mean(self, output):
        """The decoded mean in the output range for a raw ``output`` (what decoder.onnx returns)."""
        return output

    def nll_numpy(self, mean, x):
        """Per-example NLL (N,) of ``x`` under decoded means (numpy, for the quality table), or None."""
        return None


def _masked_sum(values, mask):
    if mask is not None:
        values = values * mask
    return values.flatten(1).sum(1)


class Bernoulli(Likelihood):
    """Pixels in [0, 1] as Bernoulli (grey levels allowed): BCE summed over observed pixels."""

    name = "bernoulli"

    def __init__(self, output="probs"):
        self.output = output

    def loss(self, output, target, mask):
        if self.output == "logits":  # jetgen's own decoders: stable BCE from logits
            from jetgen.models.likelihoods import bernoulli_nll
            return bernoulli_nll(output, target, mask)
        # torch clamps each log term at -100, so saturated probabilities give finite losses
        return _masked_sum(F.binary_cross_entropy(output, target, reduction="none"), mask)

    def mean(self, output):
        return torch.sigmoid(output) if self.output == "logits" else output

    def nll_numpy(self, mean, x):
        p = np.clip(mean.astype(np.float64), 1e-6, 1 - 1e-6)
        return (-(x * np.log(p) + (1 - x) * np.log(1 - p))).reshape(len(x), -1).sum(1)


class Gaussian(Likelihood):
    """Fixed-scale Gaussian around the decoded mean: 0.5*((x-mean)/sigma)^2 + 0.5*log(2*pi*sigma^2)."""

    name = "gaussian"

    def __init__(self, sigma, output="probs", output_range=(0.0, 1.0)):
        self.sigma, self.output = float(sigma), output
        self.low, self.high = float(output_range[0]), float(output_range[1])

    def mean(self, output):
        if self.output != "logits":
            return output
        if (self.low, self.high) == (0.0, 1.0):
            return torch.sigmoid(output)
        return self.low + (self.high - self.low) * torch.sigmoid(output)

    def loss(self, output, target, mask):
        s = self.sigma
        return _masked_sum(0.5 * ((target - self.mean(output)) / s) ** 2 + 0.5 * math.log(2 * math.pi * s * s), mask)

    def nll_numpy(self, mean, x):
        s = self.sigma
        return (0.5 * ((x - mean) / s) ** 2 + 0.5 * np.log(2 * np.pi * s * s)).reshape(len(x), -1).sum(1)


class Chamfer(Likelihood):
    """Point clouds: the one-sided squared Chamfer distance from the observed points ``target``
    (B, M, 3), ``mask`` (B, M) marking the valid ones, to the decoded cloud (B, N, 3): the mean over
    valid observed points of the squared distance to the nearest decoded point (plain units; the
    manifest's ``loss_scale`` turns it into training units). The target has another shape than the
    output. Its gradient cannot go through autograd's ``min`` backward into ONNX (ScatterElements):
    ``latent_grad`` is a module written out by hand (jetgen.models.chamfer.ChamferLatentGrad), or,
    without one, the explicit output gradient (one-hot of the nearest point, MatMul) traced through
    the decoder. The parity reference stays torch autograd of ``loss``.
    """

    name = "chamfer"

    def __init__(self, latent_grad=None):
        self.module = latent_grad

    def loss(self, output, target, mask):
        from jetgen.models.chamfer import one_sided_chamfer

        return one_sided_chamfer(target, output, mask)

    def traced_loss_and_grad(self, decode, z, target, mask, y=None):
        from jetgen.models.chamfer import one_sided_chamfer_and_grad

        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            output = decode(z, y)
            loss, output_grad = one_sided_chamfer_and_grad(target, mask, output)
            (grad,) = torch.autograd.grad(output, z, grad_outputs=output_grad)
        return loss.detach(), grad.detach()

    def latent_grad_module(self, decoder):
        return self.module

    def __repr__(self):
        return "Chamfer({})".format(type(self.module).__qualname__ if self.module is not None else "traced")


def make_likelihood(spec, output="probs", output_range=(0.0, 1.0)):
    """A Likelihood from ``spec``: "bernoulli", ("gaussian", sigma), "gaussian:SIGMA", {"name", "sigma"}
    or a Likelihood instance (returned as it is). Raises JetgenError for anything else, a gaussian
    without a positive sigma, or a Bernoulli likelihood on outputs outside [0, 1]."""
    if isinstance(spec, Likelihood):
        if output == "points" and not isinstance(spec, Chamfer):
            raise JetgenError("A point-cloud decoder (output=\"points\") needs likelihood=\"chamfer\" or a "
                              "jetgen.export.Chamfer, not {}.".format(type(spec).__name__))
        return spec
    if output not in OUTPUTS:
        raise JetgenError("output must be one of {}, not {!r}.".format(", ".join(OUTPUTS), output))
    name, sigma = _parse(spec)
    if (name == "chamfer") != (output == "points"):
        raise JetgenError("likelihood \"chamfer\" goes with output=\"points\" (point-cloud decoders) and only "
                          "with it; got likelihood {!r} with output {!r}.".format(name, output))
    if name == "chamfer":
        return Chamfer()
    if name == "bernoulli":
        if tuple(float(v) for v in output_range) != (0.0, 1.0):
            raise JetgenError("A Bernoulli likelihood needs outputs in [0, 1], but output_range is {}; use "
                              "likelihood=(\"gaussian\", sigma) instead.".format(tuple(output_range)))
        return Bernoulli(output)
    if not (isinstance(sigma, (int, float)) and not isinstance(sigma, bool) and sigma > 0 and math.isfinite(sigma)):
        raise JetgenError("A gaussian likelihood needs a positive sigma, e.g. (\"gaussian\", 0.1), not {!r}."
                          .format(sigma))
    return Gaussian(sigma, output, output_range)


def _parse(spec):
    if isinstance(spec, str):
        name, _, sigma = spec.partition(":")
        try:
            return _known(name), (float(sigma) if sigma else None)
        except ValueError:
            raise JetgenError("Cannot read the sigma in likelihood {!r}; write gaussian:0.1.".format(spec))
    if isinstance(spec, dict):
        return _known(spec.get("name")), spec.get("sigma")
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        return _known(spec[0]), spec[1]
    raise JetgenError("likelihood must be \"bernoulli\", (\"gaussian\", sigma) or a jetgen.export.Likelihood, "
                      "not {!r}.".format(spec))


def _known(name):
    if name not in ("bernoulli", "gaussian", "chamfer"):
        raise JetgenError("Unknown likelihood {!r}; use \"bernoulli\", (\"gaussian\", sigma) or a "
                          "jetgen.export.Likelihood subclass.".format(name))
    return name
