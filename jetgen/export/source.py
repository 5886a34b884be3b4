"""What an export reads about one model: ``Source``.

A Source holds the decoder (and encoder) as a torch module plus the name of the method that computes
the graph, the likelihood, prior, labels, output shape and range, real examples (jetgen.export.feeds
.ExportData) and what the manifest records about where the model came from. ``export_model`` builds
one from a user's arguments and jetgen's own runs go through the same function; the exporter reads
nothing else. The user's modules are never changed: the exporter works on eval-mode deep copies
(BatchNorm folded for export, unfolded as the reference that parity is measured against).
"""
import copy

import numpy as np
import torch
from torch import nn

from jetgen import modalities, spec


class Part(object):
    """A torch module and the name of its method that computes one graph."""

    def __init__(self, module, method="forward"):
        self.module, self.method = module, method

    def describe(self):
        if isinstance(self.module, FunctionModule):
            return self.module.describe()
        cls = type(self.module)
        return "{}.{}.{}".format(cls.__module__, cls.__qualname__, self.method)


class FunctionModule(nn.Module):
    """A plain function (a lambda, a closure) as a module. The modules, parameters and tensors it
    reaches through its closure cells and the globals it names are registered on this module
    (``captured``), and each call runs the function with this module's own copies bound in their
    place: an eval-mode or BatchNorm-folded deep copy computes with its own weights, and tracers
    that swap parameters (torch.func.functional_call) see the swapped ones."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.slots = []  # (where, name, kind): "cell"/"global", the cell index or global name, module/tensor
        code = getattr(fn, "__code__", None)
        cells = getattr(fn, "__closure__", None) or ()
        for i, cell in enumerate(cells):
            self._capture("cell", i, _cell_value(cell))
        names = _global_names(code) if code is not None else ()
        for name in names:
            if name in getattr(fn, "__globals__", {}):
                self._capture("global", name, fn.__globals__[name])

    def _capture(self, where, name, value):
        key = "captured_{}".format(len(self.slots))
        if isinstance(value, nn.Module):
            self.add_module(key, value)
        elif isinstance(value, torch.Tensor):
            if isinstance(value, nn.Parameter):
                self.register_parameter(key, value)
            else:
                self.register_buffer(key, value, persistent=False)
        else:
            return
        self.slots.append((where, name, key))

    def _bound(self):
        """``fn`` with this module's registered copies in place of what it captured."""
        import types

        if not self.slots:
            return self.fn
        fn = self.fn
        cells = list(fn.__closure__ or ())
        scope = None
        for where, name, key in self.slots:
            value = getattr(self, key)
            if where == "cell":
                cells[name] = types.CellType(value)
            else:
                if scope is None:
                    scope = dict(fn.__globals__)
                scope[name] = value
        bound = types.FunctionType(fn.__code__, scope if scope is not None else fn.__globals__, fn.__name__,
                                   fn.__defaults__, tuple(cells) if cells else None)
        bound.__kwdefaults__ = fn.__kwdefaults__
        return bound

    def __deepcopy__(self, memo):
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            new.__dict__[key] = value if key in ("fn", "_cached") else copy.deepcopy(value, memo)
        new.__dict__["_cached"] = None
        return new

    def forward(self, *args):
        # captured modules: bind once (a plain function call that torch.export can follow); captured
        # tensors are swapped by functional_call on this module, so they are bound at every call
        if any(isinstance(getattr(self, key), torch.Tensor) for _, _, key in self.slots):
            return self._bound()(*args)
        if self.__dict__.get("_cached") is None:
            self.__dict__["_cached"] = self._bound()
        return self.__dict__["_cached"](*args)

    def describe(self):
        """The function's module and name, with the file and line where it is defined."""
        code = getattr(self.fn, "__code__", None)
        where = " ({}:{})".format(code.co_filename, code.co_firstlineno) if code is not None else ""
        return "{}.{}{}".format(getattr(self.fn, "__module__", None) or "?",
                                getattr(self.fn, "__qualname__", type(self.fn).__name__), where)


def _cell_value(cell):
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


def _global_names(code):
    """The global names ``code`` (and the functions nested in it) may read."""
    names, todo = [], [code]
    while todo:
        c = todo.pop()
        names.extend(n for n in c.co_names if n not in names)
        todo.extend(k for k in c.co_consts if hasattr(k, "co_names"))
    return names


class Source(object):
    """One model to export (see the module docstring). ``encoder_flatten``: the encoder takes
    (B, C*H*W) rather than images; ``encoder_keys``: the names of mean and log-variance when the
    encoder returns a dict."""

    def __init__(self, decoder, latent_dim, output_shape, output_range, likelihood, prior, labels=(),
                 encoder=None, encoder_flatten=False, encoder_keys=("mu", "logvar"), data=None, kind="vae",
                 arch="custom", provenance=None, name=None, points=None):
        self.decoder, self.encoder = decoder, encoder
        self.latent_dim, self.output_shape = int(latent_dim), tuple(int(s) for s in output_shape)
        self.output_range = (float(output_range[0]), float(output_range[1]))
        self.likelihood, self.prior, self.labels = likelihood, prior, list(labels)
        self.encoder_flatten, self.encoder_keys = encoder_flatten, tuple(encoder_keys)
        self.data, self.kind, self.arch = data, kind, arch
        self.provenance, self.name = dict(provenance or {}), name
        self.points = points  # point-cloud settings (jetgen.export.points.check_points) or None for images
        # how the user's functions are called (jetgen.export.graphs): the output entry, one concatenated
        # input for conditional models, the point layouts
        self.decoder_output, self.concat, self.cloud_layout, self.channels_first = None, False, "points", False
        self._reference, self._folded = {}, {}

    # -- interfaces -------------------------------------------------------------------------------
    @property
    def modality(self):
        """What the model makes (jetgen.spec.MODALITIES), from its kind: "image" or "points"."""
        return spec.kind_modality(self.kind)

    @property
    def conditional(self):
        return bool(self.labels)

    @property
    def num_classes(self):
        return len(self.labels)

    @property
    def has_encoder(self):
        return self.encoder is not None

    @property
    def graph_names(self):
        return ["decoder"] + (["encoder"] if self.has_encoder else []) + ["latent_grad"]

    def input_names(self, graph):
        return spec.input_names(graph, self.conditional)

    def output_names(self, graph):
        return spec.output_names(graph)

    @property
    def input_shape(self):
        """Shape of one encoder input: the output shape, or (encoder_points, 3) for point clouds."""
        return (self.points["encoder_points"], 3) if self.points else self.output_shape

    def interface(self, graph):
        """(inputs, outputs) as lists of (name, shape after the batch axis)."""
        return spec.expected_interface(graph, self.latent_dim, self.num_classes, self.output_shape, self.points)

    # -- torch modules ----------------------------------------------------------------------------
    def _module(self, part, folded):
        """An eval-mode copy of ``part.module``: unfolded (shared, the reference) or BatchNorm-folded."""
        if not folded:
            key = id(part.module)
            if key not in self._reference:
                self._reference[key] = copy.deepcopy(part.module).eval()
            return self._reference[key]
        key = (id(part.module), part.method)
        if key not in self._folded:
            from jetgen.export.batchnorm import folded_copy

            self._folded[key] = folded_copy(part.module, part.method, 2 if self.conditional else 1)
        return self._folded[key]

    def graph_module(self, graph, folded=True):
        """The torch module of the decoder or encoder graph (folded: what is exported)."""
        from jetgen.export.graphs import DecoderGraph, EncoderGraph

        if graph == "encoder":
            return EncoderGraph(self._module(self.encoder, folded), self.encoder.method, self.conditional,
                                self.encoder_flatten, self.encoder_keys, self.concat, self.channels_first,
                                self.latent_dim)
        return DecoderGraph(self._module(self.decoder, folded), self.decoder.method, self.conditional,
                            self.output_shape, self.likelihood.mean, self.decoder_output, self.concat,
                            self.cloud_layout)

    def example_inputs(self, graph, batch):
        half = modalities.part(self.modality, "export")
        if half is not None:  # the modality's own example inputs (jetgen.modalities)
            return half.example_inputs(self, graph, batch)
        from jetgen.export.graphs import make_example_inputs

        return make_example_inputs(graph, self.latent_dim, self.output_shape, self.num_classes, batch=batch)

    def trace_latent_grad(self, batch):
        """The latent gradient of the folded decoder traced into plain aten ops (a LatentGradModule)."""
        from jetgen.export.grad_export import trace_latent_grad

        module = self.likelihood.latent_grad_module(self.graph_module("decoder"))
        if module is not None:  # written out by hand: exported as it is
            return copy.deepcopy(module).eval()
        return trace_latent_grad(self.graph_module("decoder"), self.likelihood,
                                 self.example_inputs("latent_grad", batch))

    def reference(self, graph, feeds):
        """The unfolded PyTorch model's outputs (numpy) for numpy ``feeds``; the gradient by autograd."""
        args = [torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in self.input_names(graph)]
        if graph == "latent_grad":
            decoder = self.graph_module("decoder", folded=False)
            return [t.numpy() for t in self.likelihood.latent_loss_and_grad(decoder.raw, *args)]
        with torch.no_grad():
            outs = self.graph_module(graph, folded=False)(*args)
        outs = outs if isinstance(outs, tuple) else (outs,)
        return [o.detach().numpy().astype(np.float32) for o in outs]

    # -- latents of real data ---------------------------------------------------------------------
    def real_latents(self, x, y, sample=False, seed=0):
        """Encoder means (or posterior samples) of ``x`` as float32 numpy; None without an encoder."""
        if not self.has_encoder:
            return None
        mu, logvar = self.reference("encoder", {"x": x, "y": y})
        if sample:
            eps = np.random.RandomState(seed).standard_normal(mu.shape).astype(np.float32)
            mu = mu + eps * np.exp(0.5 * logvar)
        return mu.astype(np.float32)

    def infer_latents(self, x, y, steps=100, lr=5e-2):
        """Latents explaining ``x``: the data's own ``infer``, encoder means, or Adam on the latent
        (likelihood plus prior term, from the prior mean) through the unfolded decoder."""
        if self.data is not None and self.data.infer is not None:
            return np.asarray(self.data.infer(x, y), dtype=np.float32)
        if self.has_encoder:
            return self.real_latents(x, y)
        return _optimise_latents(self, x, y, steps, lr)

    def weights_sha256(self):
        """sha256 over the decoder's and encoder's parameters and buffers (names, shapes, bytes)."""
        import hashlib

        digest = hashlib.sha256()
        parts = [self.decoder] + ([self.encoder] if self.has_encoder else [])
        for part in parts:
            for name, value in sorted(part.module.state_dict().items()):
                digest.update(name.encode() + str(tuple(value.shape)).encode())
                digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


def _optimise_latents(source, x, y, steps, lr):
    """The runtime's completion loop (numpy Adam, prior term, projection) with a full mask, run on
    the torch decoder: the latents the device would find."""
    from jetgen.runtime.optim import Adam
    from jetgen.runtime.priors import prior_from_manifest

    prior = prior_from_manifest(source.prior)
    decoder = source.graph_module("decoder", folded=False)
    target = torch.from_numpy(x)
    labels, ones = None if y is None else torch.from_numpy(y), torch.ones_like(target)
    z = np.tile(prior.mean(), (len(x), 1)).astype(np.float64)
    adam = Adam(z.shape, lr=lr)
    for _ in range(int(steps)):
        _, grad = source.likelihood.latent_loss_and_grad(decoder.raw, torch.from_numpy(z.astype(np.float32)),
                                                         target, ones, labels)
        z = prior.project(adam.step(z, grad.numpy().astype(np.float64) + prior.term(z)[1]))
    return z.astype(np.float32)
