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
    """grad_input of a 1-d or 2-d (transposed) convolution as a convolution; weight and bias gradients are
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
    dims = len(stride)
    if dims not in (1, 2):
        raise NotImplementedError("only 1-d and 2-d convolutions are exported (got {}-d)".format(dims))
    if transposed:
        grad_input = aten.convolution.default(grad_output, weight, None, list(stride), list(padding),
                                              list(dilation), False, [0] * dims, groups)
    else:
        out_pad = []
        for axis in range(dims):
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
    (z, target, mask[, y]) with a batch of at least 2. A decoder that reads its batch size as a Python
    int (``len(z)``) is baked into make_fx's trace; when the traced module fails at batch 1 the
    decoder is first captured with ``torch.export`` (strict: len() stays symbolic) and traced again.
    Raises whatever make_fx or torch.export raise."""
    notes = _tracer_notes(decoder, example_inputs)
    blocked = None
    if notes:  # the TorchScript tracer saw a size read as a Python number: capture with torch.export first
        try:
            module = _trace(_ExportedDecoder(decoder, example_inputs), likelihood, example_inputs)
            if _works_at_batch_1(module, decoder, likelihood, example_inputs):
                return module
        except Exception as err:  # torch.export refuses many constructs; make_fx may still manage
            blocked = err
    module = _trace(decoder, likelihood, example_inputs)
    if _works_at_batch_1(module, decoder, likelihood, example_inputs):
        return module
    if not notes:
        try:
            module = _trace(_ExportedDecoder(decoder, example_inputs), likelihood, example_inputs)
        except Exception as err:  # the batch is what to report
            blocked = err
        else:
            if _works_at_batch_1(module, decoder, likelihood, example_inputs):
                return module
    raise _fixed_batch(notes, blocked)


def _tracer_notes(decoder, example_inputs):
    """The TorchScript tracer's warnings on the decoder, as (file, line, message) in the user's code:
    where a size is read as a Python number (len(z), int(z.size(0)))."""
    import warnings

    from jetgen.export.onnx_tools import _quiet_fds
    from jetgen.export.refusals import _internal

    args = (example_inputs[0],) + ((example_inputs[3],) if decoder.conditional else ())
    try:
        with warnings.catch_warnings(record=True) as caught, _quiet_fds(), torch.no_grad():
            warnings.simplefilter("always")
            torch.jit.trace(_Raw(decoder), args, check_trace=False)
    except Exception:  # the TorchScript tracer only serves to find such lines
        return []
    return [(w.filename, w.lineno, str(w.message)) for w in caught
            if getattr(w.category, "__name__", "") == "TracerWarning" and not _internal(w.filename)]


def _fixed_batch(notes, err):
    """JetgenError for a decoder whose gradient trace keeps the tracing batch, naming the user's lines
    that the TorchScript tracer flags and the line torch.export could not follow."""
    from jetgen.errors import JetgenError
    from jetgen.export.refusals import user_lines

    lines = user_lines(notes)
    where = " ({})".format("; ".join(lines)) if lines else ""
    blocked = user_lines(_frames_in(str(err)), limit=1) if err is not None else []
    if blocked:
        where += ", and torch.export, which keeps such sizes symbolic, cannot follow {}".format(blocked[0])
    return JetgenError("The decoder's gradient graph only works at the batch size it was traced with{}: the decoder "
                       "takes the batch size as a Python number (len(z), z.size(0) or z.shape[0] kept in a variable, "
                       "or a constant); write the batch as -1 instead (h.view(-1, ...), h.flatten(1)).".format(where))


def _works_at_batch_1(module, decoder, likelihood, example_inputs):
    one = [t[:1] for t in example_inputs]
    try:
        with torch.no_grad():
            loss, grad = module(*one)
    except Exception:  # a shape baked into the trace: any error means it does not
        return False
    want_loss, want_grad = likelihood.latent_loss_and_grad(decoder.raw, *one)
    return grad.shape == want_grad.shape and bool(torch.allclose(grad, want_grad, rtol=1e-3, atol=1e-4))


def _frames_in(text):
    """(file, line, "") of the 'File "X", line N' frames a torch.export message lists, innermost last
    first (the user's line that stopped it)."""
    import re

    return [(f, int(n), "") for f, n in reversed(re.findall(r'File "([^"]+)", line (\d+)', text))]


class _ExportedDecoder(nn.Module):
    """A DecoderGraph's ``raw`` captured by torch.export (strict) with a dynamic batch: the same
    computation as an fx graph in which Python ints taken from the batch are symbols."""

    def __init__(self, decoder, example_inputs):
        super().__init__()
        self.conditional = decoder.conditional
        batch = torch.export.Dim("batch", min=1, max=1 << 16)
        args = (example_inputs[0],) + ((example_inputs[3],) if self.conditional else ())
        import warnings

        with torch.no_grad():  # fills what the model (or a FunctionModule) caches on the first call
            decoder.raw(*args)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # dynamo warns before it raises; the error is reported
            program = torch.export.export(_Raw(decoder), args, dynamic_shapes=tuple({0: batch} for _ in args),
                                          strict=True)
        self.g = program.module()

    def raw(self, z, y=None):
        return self.g(z, y) if self.conditional else self.g(z)


def _trace(decoder, likelihood, example_inputs):
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
    with torch.no_grad():  # one real call first: what the model caches on plain objects stays a real tensor
        decoder.raw(example_inputs[0], example_inputs[3] if conditional else None)
    # tensors the model keeps outside its parameters and buffers (a template on a plain Python object)
    # are real tensors inside the trace: they become constants of the graph
    # no duck shaping: a batch equal to another size (3, a point's coordinates) must stay its own symbol,
    # or a guard on that size specialises the batch too
    from torch.fx.experimental import _config as shape_config

    with shape_config.patch(use_duck_shape=False):
        traced = make_fx(fn, decomposition_table=decompositions(), tracing_mode="symbolic",
                         _allow_non_fake_inputs=True)(*args)
    return LatentGradModule(traced, params, conditional)
