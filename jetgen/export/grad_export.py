"""Turn the latent-gradient function (jetgen.export.losses) into an exportable module of plain aten ops.

``torch.onnx.export`` cannot export ``torch.autograd.grad`` directly (pytorch issues 110866, 125984).
The route (torch.func and make_fx, as pytorch's docs describe them): write loss-and-gradient with the
parameters as explicit inputs (``torch.func.functional_call``), trace it with
``make_fx(tracing_mode="symbolic")`` into aten ops (autograd's backward included), and wrap the traced
graph in a module that holds the parameters as buffers. ``aten.convolution_backward`` has no ONNX lowering and no stock decomposition, so tracing uses
``convolution_backward_decomposition`` below.
"""
import torch
from torch import nn

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


class _Raw(nn.Module):
    """Calls ``decoder.raw`` so functional_call can swap the decoder's parameters for graph inputs."""

    def __init__(self, decoder):
        super().__init__()
        self.g = decoder

    def forward(self, z, y=None):
        return self.g.raw(z, y)


def trace_latent_grad(decoder, likelihood, example_inputs):
    """Trace ``likelihood.traced_loss_and_grad`` through ``decoder`` (a DecoderGraph around an
    eval-mode, BatchNorm-folded model) into a ``LatentGradModule``. ``example_inputs`` is
    (z, target, mask[, y]) with a batch of at least 2. Raises whatever make_fx raises."""
    from torch.fx.experimental.proxy_tensor import make_fx

    params = {k: v.detach() for k, v in decoder.named_parameters()}
    params.update({k: v.detach() for k, v in decoder.named_buffers()})
    names = list(params)
    conditional = decoder.conditional
    wrapper = _Raw(decoder)

    def decode(state):
        prefixed = {"g." + k: v for k, v in state.items()}
        return lambda z, y: torch.func.functional_call(wrapper, prefixed, (z, y))

    def fn(*args):
        values, rest = args[:len(names)], args[len(names):]
        z, target, mask = rest[:3]
        y = rest[3] if conditional else None
        loss, grad = likelihood.traced_loss_and_grad(decode(dict(zip(names, values))), z, target, mask, y)
        return loss, grad

    args = list(params.values()) + list(example_inputs)
    traced = make_fx(fn, decomposition_table=decompositions(), tracing_mode="symbolic")(*args)
    return LatentGradModule(traced, params, conditional)
