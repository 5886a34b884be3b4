"""Torch modules with the interfaces of a bundle's graphs (docs/bundle.md), around any model.

- ``DecoderGraph(model, method, ...)``: z (B,D) [, y (B,K)] -> x (B,C,H,W) in the output range:
  ``model.<method>(z[, y])`` reshaped to the output shape, then mapped to its mean (sigmoid for
  logits). ``raw(z, y)`` is the reshaped output before that mapping: what a likelihood reads.
- ``EncoderGraph(model, method, ...)``: x (B,C,H,W) [, y (B,K)] -> mu (B,D), logvar (B,D), from an
  encode method returning (mu, logvar), a dict, or one tensor holding both halves.

Their defaults fit jetgen's own models (``decode_logits`` and ``encode``), so ``DecoderGraph(model)``
is sigmoid(model.decode_logits(z, y)). ``latent_loss``/``loss_and_grad`` give jetgen models' latent
loss and gradient through the one implementation in jetgen.export.losses.
"""
import torch
from torch import nn


class DecoderGraph(nn.Module):
    def __init__(self, model, method="decode_logits", conditional=None, output_shape=None, mean=torch.sigmoid):
        super().__init__()
        self.model = model
        self.method = method
        self.conditional = bool(model.conditional if conditional is None else conditional)
        self.output_shape = tuple(output_shape) if output_shape is not None else None
        self.to_mean = mean

    def raw(self, z, y=None):
        decode = getattr(self.model, self.method)
        out = decode(z, y) if self.conditional else decode(z)
        if self.output_shape is not None:
            out = out.reshape((-1,) + self.output_shape)
        return out

    def forward(self, z, y=None):
        return self.to_mean(self.raw(z, y))


class EncoderGraph(nn.Module):
    def __init__(self, model, method="encode", conditional=None, flatten=False, keys=("mu", "logvar")):
        super().__init__()
        self.model = model
        self.method = method
        self.conditional = bool(model.conditional if conditional is None else conditional)
        self.flatten = bool(flatten)
        self.keys = tuple(keys)

    def forward(self, x, y=None):
        if self.flatten:
            x = x.flatten(1)
        encode = getattr(self.model, self.method)
        return posterior(encode(x, y) if self.conditional else encode(x), self.keys)


def posterior(out, keys=("mu", "logvar")):
    """(mu, logvar) from what an encoder returns: a tuple or list (its first two entries), a dict
    (the entries named by ``keys``) or one tensor (B, 2D) holding mu then logvar."""
    if isinstance(out, dict):
        return out[keys[0]], out[keys[1]]
    if isinstance(out, (tuple, list)):
        return out[0], out[1]
    mu, logvar = out.chunk(2, dim=1)
    return mu, logvar


def likelihood_of(model):
    """The export likelihood of a jetgen model (its decoders output logits in [0, 1] images)."""
    from jetgen.export.losses import make_likelihood

    spec = ("gaussian", model.sigma) if model.likelihood == "gaussian" else model.likelihood
    return make_likelihood(spec, output="logits")


def latent_loss(model, z, target, mask, y=None):
    """Per-example masked negative log-likelihood (B,) of ``target`` under a jetgen model's decoder at ``z``."""
    return likelihood_of(model).loss(model.decode_logits(z, y if model.conditional else None), target, mask)


def loss_and_grad(model, z, target, mask, y=None):
    """(loss (B,), d sum(loss) / d z (B,D)) of a jetgen model by torch autograd, the reference its
    exported graph must match."""
    return likelihood_of(model).latent_loss_and_grad(DecoderGraph(model).raw, z, target, mask, y)


def make_example_inputs(graph, latent_dim, output_shape, num_classes=0, batch=2, generator=None):
    """Random example inputs (float32, labels one-hot) for tracing ``graph`` (inputs in [0, 1])."""
    g = generator or torch.Generator().manual_seed(0)
    shape = (batch,) + tuple(output_shape)
    y = None
    if num_classes:
        y = nn.functional.one_hot(torch.randint(0, num_classes, (batch,), generator=g), num_classes).float()
    if graph == "decoder":
        args = [torch.randn(batch, latent_dim, generator=g)]
    elif graph == "encoder":
        args = [torch.rand(shape, generator=g)]
    else:
        args = [torch.randn(batch, latent_dim, generator=g), torch.rand(shape, generator=g),
                (torch.rand(shape, generator=g) > 0.3).float()]
    return tuple(args + ([y] if y is not None else []))
