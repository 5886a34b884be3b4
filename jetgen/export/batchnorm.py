"""Fold BatchNorm layers into the layer before them, so exported graphs carry no BatchNormalization.

``folded_copy(module, method, n_inputs)`` returns an eval-mode deep copy in which every BatchNorm
that directly follows a Linear, Conv2d or ConvTranspose2d has been folded into that layer's weight
and bias and replaced by Identity. Two ways find the pairs:

- by structure: consecutive entries of an ``nn.Sequential`` (and jetgen's DCGAN head);
- by tracing: ``torch.fx`` traces the method that will be exported and finds ``bn(layer(x))``
  where each module is called once; modules fx cannot trace keep their BatchNorm (it still
  exports: a BatchNormalization node in eval mode, which TensorRT runs).

Parity against the unfolded module is measured by the exporter, so a wrong fold cannot pass.
"""
import copy

import torch
from torch import nn

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def folded_copy(module, method="forward", n_inputs=1):
    """An eval-mode deep copy of ``module`` with BatchNorm folded (see the module docstring) and no
    parameter requiring grad. ``method`` and ``n_inputs`` say which call to trace for fx folding."""
    module = copy.deepcopy(module).eval()
    for sub in list(module.modules()):
        if isinstance(sub, nn.Sequential):
            _fold_sequential(sub)
        if _is_dcgan_head(sub):
            _fold_dcgan_head(sub)
    _fold_traced(module, method, n_inputs)
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def _bn_scale_shift(bn):
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1.0 / torch.sqrt(
        bn.running_var + bn.eps)
    shift = (bn.bias if bn.affine else 0.0) - bn.running_mean * scale
    return scale.detach(), shift.detach()


def _foldable(layer, bn):
    if not isinstance(bn, _BATCHNORMS) or not bn.track_running_stats or bn.running_mean is None:
        return False
    if isinstance(layer, nn.Linear):
        return isinstance(bn, nn.BatchNorm1d) and bn.num_features == layer.out_features
    if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
        return isinstance(bn, nn.BatchNorm2d) and bn.num_features == layer.out_channels and layer.groups == 1
    return False


@torch.no_grad()
def _fold_into(layer, bn):
    """Fold ``bn`` (per output channel) into ``layer``'s weight and bias in place; False when it cannot."""
    if not _foldable(layer, bn):
        return False
    scale, shift = _bn_scale_shift(bn)
    if isinstance(layer, nn.ConvTranspose2d):
        layer.weight.mul_(scale.view(1, -1, 1, 1))  # weight is (in, out, kH, kW)
    else:
        layer.weight.mul_(scale.view(-1, *([1] * (layer.weight.dim() - 1))))
    bias = layer.bias if layer.bias is not None else torch.zeros_like(scale)
    new_bias = bias * scale + shift
    if layer.bias is None:
        layer.bias = nn.Parameter(new_bias, requires_grad=False)
    else:
        layer.bias.copy_(new_bias)
    return True


def _fold_sequential(seq):
    names = list(seq._modules)
    for prev, cur in zip(names, names[1:]):
        if _fold_into(seq._modules[prev], seq._modules[cur]):
            seq._modules[cur] = nn.Identity()


def _is_dcgan_head(module):
    from jetgen.models.nets import DCGANDecoder

    return isinstance(module, DCGANDecoder)


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


class _Call1(nn.Module):
    def __init__(self, module, method):
        super().__init__()
        self.m, self.method = module, method

    def forward(self, a):
        return getattr(self.m, self.method)(a)


class _Call2(_Call1):
    def forward(self, a, b):
        return getattr(self.m, self.method)(a, b)


def _fold_traced(module, method, n_inputs):
    """Fold ``bn(layer(x))`` pairs found by tracing ``module.method`` with torch.fx; a module fx cannot
    trace (Python control flow on tensor values, unusual calls) is left as it is."""
    wrapper = (_Call2 if n_inputs == 2 else _Call1)(module, method)
    try:
        graph = torch.fx.Tracer().trace(wrapper)
    except Exception:  # fx raises many types; folding is an optimisation, never a reason to fail
        return
    calls = [n for n in graph.nodes if n.op == "call_module"]
    uses = {}
    for node in calls:
        uses[node.target] = uses.get(node.target, 0) + 1
    named = dict(wrapper.named_modules())
    for node in calls:
        source = node.args[0] if node.args else None
        if not isinstance(source, torch.fx.Node) or source.op != "call_module" or len(source.users) != 1:
            continue
        if uses[node.target] != 1 or uses[source.target] != 1:
            continue  # a shared layer or BatchNorm: folding would change its other uses
        if _fold_into(named[source.target], named[node.target]):
            parent, _, leaf = node.target.rpartition(".")
            setattr(named[parent] if parent else wrapper, leaf, nn.Identity())
