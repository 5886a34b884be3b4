"""Torch wrappers for the three graphs a bundle holds (see docs/bundle.md).

- ``DecoderGraph``: z (B,D) [, y (B,K)] -> x = sigmoid(decode_logits(z, y)) (B,C,H,W) in [0, 1].
- ``EncoderGraph``: x (B,C,H,W) [, y (B,K)] -> mu (B,D), logvar (B,D).
- ``latent_grad_function(model)``: (z, target, mask[, y]) -> loss (B,) = model.nll(decode_logits(z, y),
  target, mask) (likelihood only, no prior term) and grad (B,D) = d sum(loss) / d z.

``inference_copy(model)`` returns an eval-mode copy with every BatchNorm folded into the layer before
it, so no graph carries a training-only op or a BatchNormalization node.
"""
import copy

import torch
from torch import nn


def graph_names(model):
    """The graphs a model exports, in bundle order."""
    return ["decoder"] + (["encoder"] if getattr(model, "has_encoder", False) else []) + ["latent_grad"]


def input_names(model, graph):
    label = ["y"] if model.conditional else []
    return {"decoder": ["z"] + label, "encoder": ["x"] + label,
            "latent_grad": ["z", "target", "mask"] + label}[graph]


def output_names(graph):
    return {"decoder": ["x"], "encoder": ["mu", "logvar"], "latent_grad": ["loss", "grad"]}[graph]


def interface_shapes(model, graph):
    """name -> shape after the batch axis, for inputs then outputs (docs/bundle.md table)."""
    d, k, out = [model.latent_dim], [model.num_classes], list(model.image_shape)
    shapes = {"z": d, "y": k, "x": out, "mu": d, "logvar": d, "target": out, "mask": out, "loss": [], "grad": d}
    return ([(n, shapes[n]) for n in input_names(model, graph)],
            [(n, shapes[n]) for n in output_names(graph)])


class DecoderGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.conditional = model.conditional

    def forward(self, z, y=None):
        return torch.sigmoid(self.model.decode_logits(z, y if self.conditional else None))


class EncoderGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.conditional = model.conditional

    def forward(self, x, y=None):
        mu, logvar = self.model.encode(x, y if self.conditional else None)
        return mu, logvar


def latent_loss(model, z, target, mask, y=None):
    """Per-example masked negative log-likelihood (B,) of ``target`` under the decoder at ``z``."""
    return model.nll(model.decode_logits(z, y if model.conditional else None), target, mask)


def loss_and_grad(model, z, target, mask, y=None):
    """(loss (B,), d sum(loss) / d z (B,D)) by torch autograd: the reference the ONNX graph must match."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        loss = latent_loss(model, z, target, mask, y)
        (grad,) = torch.autograd.grad(loss.sum(), z)
    return loss.detach(), grad.detach()


def make_example_inputs(model, graph, batch=2, generator=None):
    """Random example inputs (float32, labels one-hot) for tracing ``graph``."""
    g = generator or torch.Generator().manual_seed(0)
    d, shape = model.latent_dim, tuple(model.image_shape)
    y = None
    if model.conditional:
        y = nn.functional.one_hot(torch.randint(0, model.num_classes, (batch,), generator=g),
                                  model.num_classes).float()
    if graph == "decoder":
        args = [torch.randn(batch, d, generator=g)]
    elif graph == "encoder":
        args = [torch.rand((batch,) + shape, generator=g)]
    else:
        args = [torch.randn(batch, d, generator=g), torch.rand((batch,) + shape, generator=g),
                (torch.rand((batch,) + shape, generator=g) > 0.3).float()]
    return tuple(args + ([y] if y is not None else []))


def inference_copy(model):
    """An eval-mode deep copy of ``model`` with BatchNorm layers folded into the preceding
    Linear/Conv/ConvTranspose layer (replaced by Identity), and no parameter requiring grad."""
    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            _fold_sequential(module)
        if hasattr(module, "fc") and hasattr(module, "body") and hasattr(module, "c0"):
            _fold_dcgan_head(module)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _bn_scale_shift(bn):
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1.0 / torch.sqrt(
        bn.running_var + bn.eps)
    shift = (bn.bias if bn.affine else 0.0) - bn.running_mean * scale
    return scale.detach(), shift.detach()


@torch.no_grad()
def _fold_into(layer, bn):
    """Fold ``bn`` (per output channel) into ``layer``'s weight and bias in place."""
    scale, shift = _bn_scale_shift(bn)
    if isinstance(layer, nn.ConvTranspose2d):
        if layer.groups != 1:
            return False
        layer.weight.mul_(scale.view(1, -1, 1, 1))  # weight is (in, out, kH, kW)
    elif isinstance(layer, (nn.Conv2d, nn.Linear)):
        layer.weight.mul_(scale.view(-1, *([1] * (layer.weight.dim() - 1))))
    else:
        return False
    bias = layer.bias if layer.bias is not None else torch.zeros_like(scale)
    new_bias = bias * scale + shift
    if layer.bias is None:
        layer.bias = nn.Parameter(new_bias)
    else:
        layer.bias.copy_(new_bias)
    return True


def _fold_sequential(seq):
    names = list(seq._modules)
    for prev, cur in zip(names, names[1:]):
        layer, bn = seq._modules[prev], seq._modules[cur]
        if isinstance(bn, nn.BatchNorm2d) and _fold_into(layer, bn):
            seq._modules[cur] = nn.Identity()


@torch.no_grad()
def _fold_dcgan_head(dec):
    """DCGANDecoder: fc -> view(C0, 4, 4) -> BatchNorm2d(C0); fold the BN into the fc rows."""
    bn = dec.body[0]
    if not isinstance(bn, nn.BatchNorm2d) or not isinstance(dec.fc, nn.Linear):
        return
    scale, shift = _bn_scale_shift(bn)
    spatial = dec.fc.out_features // dec.c0
    scale, shift = scale.repeat_interleave(spatial), shift.repeat_interleave(spatial)
    dec.fc.weight.mul_(scale[:, None])
    dec.fc.bias.copy_(dec.fc.bias * scale + shift)
    dec.body[0] = nn.Identity()
