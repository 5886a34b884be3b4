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


DETERMINISTIC_LOGVAR = -20.0  # the log-variance of an encoder returning only a code (an AE): a point mass
CLOUD_LAYOUTS = ("points", "channels_first", "patches", "patches_channels_first")


class DecoderGraph(nn.Module):
    """``output_key``: which entry of a dict, dataclass or tuple output is the image (or cloud);
    ``concat``: the decoder takes one tensor cat([z, y], 1); ``layout``: how a point decoder's output
    is laid out (CLOUD_LAYOUTS: (B, N, 3), (B, 3, N), (B, K, P, 3) or (B, K, 3, P)), made (B, K*P, 3)."""

    def __init__(self, model, method="decode_logits", conditional=None, output_shape=None, mean=torch.sigmoid,
                 output_key=None, concat=False, layout="points"):
        super().__init__()
        self.model = model
        self.method = method
        self.conditional = bool(model.conditional if conditional is None else conditional)
        self.output_shape = tuple(output_shape) if output_shape is not None else None
        self.to_mean = mean
        self.output_key, self.concat, self.layout = output_key, bool(concat), layout

    def raw(self, z, y=None):
        decode = getattr(self.model, self.method)
        if self.conditional:
            out = decode(torch.cat([z, y], 1)) if self.concat else decode(z, y)
        else:
            out = decode(z)
        out = to_points(select(out, self.output_key, "decoder"), self.layout)
        if self.output_shape is not None:
            out = out.reshape((-1,) + self.output_shape)
        return out

    def forward(self, z, y=None):
        return self.to_mean(self.raw(z, y))


class EncoderGraph(nn.Module):
    """``keys``: the entries of a dict or dataclass output holding mean and log-variance (one key: a
    deterministic code); ``concat``: the encoder takes one tensor cat([x.flatten(1), y], 1);
    ``channels_first``: point clouds go in as (B, 3, N); ``latent_dim``: an output of that width is
    a deterministic code (else (B, 2D) holds both halves)."""

    def __init__(self, model, method="encode", conditional=None, flatten=False, keys=("mu", "logvar"), concat=False,
                 channels_first=False, latent_dim=None):
        super().__init__()
        self.model = model
        self.method = method
        self.conditional = bool(model.conditional if conditional is None else conditional)
        self.flatten = bool(flatten)
        self.keys = tuple(keys)
        self.concat, self.channels_first, self.latent_dim = bool(concat), bool(channels_first), latent_dim

    def forward(self, x, y=None):
        if self.channels_first:
            x = x.transpose(1, 2)
        if self.flatten or self.concat:
            x = x.flatten(1)
        encode = getattr(self.model, self.method)
        if self.conditional:
            out = encode(torch.cat([x, y], 1)) if self.concat else encode(x, y)
        else:
            out = encode(x)
        return posterior(out, self.keys, self.latent_dim)


def _entries(out):
    """name -> value of a dict, a dataclass or an object with a __dict__ (a ModelOutput), else None."""
    import dataclasses
    from collections.abc import Mapping

    if isinstance(out, Mapping):
        return dict(out)
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        return {f.name: getattr(out, f.name) for f in dataclasses.fields(out)}
    if isinstance(out, tuple) and hasattr(out, "_fields"):
        return dict(zip(out._fields, out))
    return None


def select(out, key, what):
    """The tensor ``key`` names in what the ``what`` returned (a dict / dataclass entry, a tuple
    index); with no key a tensor passes and a dict or tuple holding one tensor gives that one.
    JetgenError naming the entries when the choice is ambiguous or the key is absent."""
    from jetgen.errors import JetgenError

    if isinstance(out, torch.Tensor) and key is None:
        return out
    entries = _entries(out)
    flag = "encoder_keys=(MEAN, LOGVAR) (--encoder-keys MEAN,LOGVAR)" if what == "encoder" else \
        "output_key=KEY (--decoder-output KEY)"
    if entries is not None:
        if key is None:
            tensors = [k for k, v in entries.items() if isinstance(v, torch.Tensor)]
            if len(tensors) == 1:
                return entries[tensors[0]]
            raise JetgenError("The {} returns a {} with entries {}; name the one that is its output with {}.".format(
                what, type(out).__name__, ", ".join(map(repr, entries)), flag))
        if key not in entries:
            raise JetgenError("The {} returns a {} with entries {}, none named {!r}; pass the right {}.".format(
                what, type(out).__name__, ", ".join(map(repr, entries)), key, flag))
        return entries[key]
    if isinstance(out, (tuple, list)):
        if key is None:
            tensors = [v for v in out if isinstance(v, torch.Tensor)]
            if len(out) == 1 or len(tensors) == 1:
                return tensors[0] if tensors else out[0]
            raise JetgenError("The {} returns a {} of {} values; name the position of its output with {} (0 for the "
                              "first).".format(what, type(out).__name__, len(out), flag))
        try:
            return out[int(key)]
        except (ValueError, IndexError, TypeError):
            raise JetgenError("The {} returns a {} of {} values; {!r} is not a position in it.".format(
                what, type(out).__name__, len(out), key))
    if key is not None and hasattr(out, str(key)):
        return getattr(out, str(key))
    return out


def cloud_layout(out):
    """The layout (CLOUD_LAYOUTS) of a point decoder's output tensor, or None when it is none of them."""
    if out.dim() == 3 and out.shape[2] == 3:
        return "points"
    if out.dim() == 3 and out.shape[1] == 3:
        return "channels_first"
    if out.dim() == 4 and out.shape[3] == 3:
        return "patches"
    if out.dim() == 4 and out.shape[2] == 3:
        return "patches_channels_first"
    return None


def to_points(out, layout):
    """A point decoder's output in ``layout`` as (B, N, 3) (patch-major); other layouts pass as they are."""
    if layout == "channels_first":
        return out.transpose(1, 2)
    if layout == "patches":
        return out.flatten(1, 2)
    if layout == "patches_channels_first":
        return out.transpose(2, 3).flatten(1, 2)
    return out


def posterior(out, keys=("mu", "logvar"), latent_dim=None):
    """(mu, logvar) from what an encoder returns: a tuple or list (its first two entries), a dict or
    dataclass (the entries named by ``keys``) or one tensor (B, 2D) holding mu then logvar. A code
    alone (one key, a 1-tuple, or a (B, latent_dim) tensor: a deterministic auto-encoder) gets the
    log-variance DETERMINISTIC_LOGVAR."""
    entries = _entries(out)
    if entries is not None:
        mu = select(out, keys[0], "encoder")
        if len(keys) < 2 or keys[1] is None:
            return mu, torch.full_like(mu, DETERMINISTIC_LOGVAR)
        return mu, select(out, keys[1], "encoder")
    if isinstance(out, (tuple, list)):
        if len(out) == 1:
            return out[0], torch.full_like(out[0], DETERMINISTIC_LOGVAR)
        return out[0], out[1]
    if latent_dim is not None and out.dim() == 2 and out.shape[1] == latent_dim:
        return out, torch.full_like(out, DETERMINISTIC_LOGVAR)
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
