"""Turn the latent-gradient function into an exportable module of plain aten ops.

``torch.onnx.export`` cannot export ``torch.autograd.grad`` directly (pytorch issues 110866, 125984).
The route (shared/FACTS.md): write loss-and-gradient with the parameters as explicit inputs
(``torch.func.functional_call``), trace it with ``make_fx(tracing_mode="symbolic")`` into aten ops
(autograd's backward included), and wrap the traced graph in a module that holds the parameters as
buffers. ``aten.convolution_backward`` has no ONNX lowering and no stock decomposition, so tracing uses
``convolution_backward_decomposition`` below.
"""
import torch
from torch import nn

from jetgen.export.graphs import latent_loss

aten = torch.ops.aten


def _static(value):
    """A non-batch size as a plain int (image sizes are fixed; only the batch axis is dynamic)."""
    return int(value)


def convolution_backward_decomposition(grad_output, input, weight, bias_sizes, stride, padding, dilation,
                                       transposed, output_padding, groups, output_mask):
    """grad_input of a 2-d (transposed) convolution as a convolution; weight and bias gradients are
    never needed (the parameters are constants of the graph) and are returned as None.

    - ConvTranspose forward: its input-gradient is a Conv with the same weight, stride, padding,
      dilation and groups.
    - Conv forward: its input-gradient is a ConvTranspose with the same weight, whose output padding
      makes the result the input's shape.
    """
    if output_mask[1] or output_mask[2]:
        raise NotImplementedError("weight or bias gradients of a convolution are not exported")
    if not output_mask[0]:
        return None, None, None
    if len(stride) != 2:
        raise NotImplementedError("only 2-d convolutions are exported (got {}-d)".format(len(stride)))
    if transposed:
        grad_input = aten.convolution.default(grad_output, weight, None, list(stride), list(padding),
                                              list(dilation), False, [0, 0], groups)
    else:
        out_pad = []
        for axis in range(2):
            size_in = _static(input.shape[2 + axis])
            size_out = _static(grad_output.shape[2 + axis])
            k = _static(weight.shape[2 + axis])
            full = (size_out - 1) * stride[axis] - 2 * padding[axis] + dilation[axis] * (k - 1) + 1
            out_pad.append(size_in - full)
        grad_input = aten.convolution.default(grad_output, weight, None, list(stride), list(padding),
                                              list(dilation), True, out_pad, groups)
    return grad_input, None, None


def decompositions():
    """make_fx decomposition table: the core aten decompositions plus convolution_backward."""
    from torch._decomp import core_aten_decompositions

    table = dict(core_aten_decompositions())
    table[aten.convolution_backward.default] = convolution_backward_decomposition
    return table


class LatentGradModule(nn.Module):
    """(z, target, mask[, y]) -> (loss, grad), a traced aten graph with the parameters as buffers."""

    def __init__(self, traced, params, conditional):
        super().__init__()
        self.traced = traced
        self.names = []
        for i, (name, value) in enumerate(params.items()):
            key = "p{}_{}".format(i, name.replace(".", "_"))
            self.register_buffer(key, value.detach().clone())
            self.names.append(key)
        self.conditional = conditional

    def forward(self, z, target, mask, y=None):
        params = [getattr(self, k) for k in self.names]
        extra = [y] if self.conditional else []
        loss, grad = self.traced(*params, z, target, mask, *extra)
        return loss, grad


def trace_latent_grad(model, example_inputs):
    """Trace the latent gradient of ``model`` (an inference copy: eval mode, BN folded) into a
    ``LatentGradModule``. ``example_inputs`` is (z, target, mask[, y]) with a batch of at least 2."""
    from torch.fx.experimental.proxy_tensor import make_fx

    params = {k: v.detach() for k, v in model.named_parameters()}
    params.update({k: v.detach() for k, v in model.named_buffers()})
    names = list(params)
    conditional = model.conditional

    def fn(*args):
        values, rest = args[:len(names)], args[len(names):]
        z, target, mask = rest[:3]
        y = rest[3] if conditional else None
        state = dict(zip(names, values))

        with torch.enable_grad():
            zz = z.detach().requires_grad_(True)
            loss = _loss_call(model, state, zz, target, mask, y)
            (grad,) = torch.autograd.grad(loss.sum(), zz)
        return loss.detach(), grad

    args = list(params.values()) + list(example_inputs)
    traced = make_fx(fn, decomposition_table=decompositions(), tracing_mode="symbolic")(*args)
    return LatentGradModule(traced, params, conditional)


class _LossModule(nn.Module):
    """Calls ``latent_loss`` so functional_call can swap the model's parameters."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, z, target, mask, y=None):
        return latent_loss(self.model, z, target, mask, y)


def _loss_call(model, state, z, target, mask, y):
    wrapper = _LossModule(model)
    prefixed = {"model." + k: v for k, v in state.items()}
    return torch.func.functional_call(wrapper, prefixed, (z, target, mask, y))
