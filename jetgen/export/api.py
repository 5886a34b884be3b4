"""``export_model``: any PyTorch latent model to a bundle, gradient graph included.

    from jetgen.export import export_model
    export_model(vae.decode, latent_dim=20, out="my.jetgen", target="nano", encoder=vae.encode,
                 output="probs", output_shape=(1, 28, 28), data=(x_test, y_test))

The arguments are checked and the model is called once on small inputs before anything is traced, so
a decoder that takes or returns the wrong thing fails with a sentence saying what it got; then the
one export pipeline (jetgen.export.exporter.write_bundle) writes the bundle.
"""
import json

import numpy as np

from jetgen import spec
from jetgen.errors import JetgenError

NORMAL = ("normal", "gaussian", "standard_normal")


def export_model(decoder, latent_dim, out, target, encoder=None, output="probs", output_shape=None,
                 output_range=None, likelihood=None, prior="normal", labels=None, data=None,
                 precision="fp32", max_batch=1024, name=None, metadata=None, force=False, log=None,
                 calib_samples=500, kind=None, arch="custom", encoder_input="auto", encoder_keys=("mu", "logvar"),
                 points=None, output_key=None, condition="separate"):
    """Export a PyTorch latent model to the bundle directory ``out`` for ``target``; return the manifest.

    ``decoder``: an nn.Module (its forward), a bound method of one (``vae.decode``) or a function,
    called as decoder(z) or, with ``labels``, decoder(z, y_onehot); it returns (B, C, H, W) or
    (B, C*H*W) ``output="probs"`` (values in ``output_range``) or ``"logits"`` (the bundle applies
    the sigmoid and scales to the range), or ``"points"``: point clouds (B, N, 3) (or (B, 3N)),
    ``output_shape`` (N, 3), exported as they are (``output_range`` describes the data, default
    (-1, 1); nothing is clamped), with ``points`` = {"patches", "grid", "faces" (int (F, 3)),
    "encoder_points", "target_points" (default 1024), "loss_scale", "prior_weight"} (see
    jetgen.export.points), the encoder taking (B, encoder_points, 3), likelihood "chamfer" (or a
    jetgen.export.Chamfer with its own latent_grad module) and ``data`` test clouds (N, P, 3).
    A point decoder may also return (B, 3, N), (B, K, P, 3) or (B, K, 3, P) (K patches of P points;
    made (B, K*P, 3) patch-major); its encoder is tried with (B, N, 3) and then channel-first
    (B, 3, N) (``encoder_input="channels_first"`` says so).
    ``encoder`` (optional): likewise, called with images
    (B, C, H, W) or, when that fails or ``encoder_input="flat"``, (B, C*H*W); it returns (mu, logvar),
    a dict or dataclass with ``encoder_keys`` (one key: a deterministic code), one (B, 2D) tensor, or
    one (B, D) code (a deterministic auto-encoder; its log-variance is recorded as -20).
    ``output_key``: the entry of a decoder returning a dict, dataclass or tuple (pythae's
    ModelOutput: "reconstruction"). ``condition="concat"``: a conditional decoder takes one tensor
    cat([z, y], 1) and the encoder cat([x.flatten(1), y], 1), as many research CVAEs do.
    ``likelihood``: "bernoulli" (default), ("gaussian", sigma) or a jetgen.export.Likelihood.
    ``prior``: "normal" or {"family", "params"} (jetgen.spec.PRIOR_FAMILIES, "gmm" included; scalars
    are broadcast). ``labels``: label names (conditional
    models). ``data``: (images, labels) or a jetgen.export.ExportData of real examples for parity,
    int8 calibration, the quality table and golden vectors. ``metadata``: JSON values recorded in
    the manifest's provenance. ``kind``: vae/cvae/ad/vad (default from encoder and labels).
    Raises JetgenError with one sentence for anything the model or the arguments get wrong.
    """
    from jetgen.export.exporter import write_bundle
    from jetgen.export.feeds import as_export_data
    from jetgen.export.losses import make_likelihood
    from jetgen.export.source import Source
    from jetgen.runtime.targets import get_target

    get_target(target)
    cloud = output == "points"
    latent_dim = _positive_int(latent_dim, "latent_dim")
    labels = _label_names(labels)
    output_range = _range(output_range if output_range is not None else (-1.0, 1.0) if cloud else (0.0, 1.0))
    lik = make_likelihood(likelihood or ("chamfer" if cloud else "bernoulli"), output, output_range)
    prior = _prior(prior, latent_dim)
    dec = _part(decoder, "decoder")
    enc = _part(encoder, "encoder") if encoder is not None else None
    if condition not in ("separate", "concat"):
        raise JetgenError("condition must be \"separate\" (decoder(z, y)) or \"concat\" (decoder(cat([z, y], 1))), "
                          "not {!r}.".format(condition))
    concat = condition == "concat" and bool(labels)
    shape, layout = _probe_decoder(dec, latent_dim, labels, output, output_shape, output_range, data, output_key,
                                   concat)
    source = Source(dec, latent_dim, shape, output_range, lik, prior, labels, enc, encoder_keys=_keys(encoder_keys),
                    kind=_kind(kind, enc, labels, cloud), arch=str(arch))
    source.decoder_output, source.concat, source.cloud_layout = output_key, concat, layout
    if cloud:
        from jetgen.export.points import as_cloud_data, check_points

        source.points = check_points(points, shape)
    elif points is not None:
        raise JetgenError("points=... describes point-cloud decoders; pass output=\"points\" with it.")
    if enc is not None:
        source.encoder_flatten = _probe_encoder(source, encoder_input)
    if cloud:
        source.data = as_cloud_data(data, source.points)
    else:
        source.data = as_export_data(data, shape, len(labels), source.output_range)
    source.name = name
    source.provenance = _provenance(source, metadata)
    _check_model_section(source)
    return write_bundle(source, target, out, precision=precision, calib_samples=calib_samples,
                        max_batch=max_batch, force=force, log=log)


def _keys(keys):
    if isinstance(keys, str):
        keys = [k.strip() for k in keys.split(",") if k.strip()]
    try:
        keys = tuple(keys)
    except TypeError:
        keys = ()
    if len(keys) not in (1, 2):
        raise JetgenError("encoder_keys must name the mean and log-variance entries (or the code alone), not {!r}."
                          .format(keys))
    return keys


def _positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise JetgenError("{} must be a positive integer, not {!r}.".format(what, value))
    return int(value)


def _kind(kind, encoder, labels, cloud=False):
    if kind is None:
        if cloud:
            return spec.MODALITIES["points"]["kinds"][0]
        return ("cvae" if labels else "vae") if encoder is not None else "ad"
    if kind not in spec.KINDS:
        raise JetgenError("kind must be one of {}, not {!r}.".format(", ".join(spec.KINDS), kind))
    if (spec.kind_modality(kind) == "points") != cloud:
        raise JetgenError("kind {!r} {} output=\"points\".".format(kind, "needs" if not cloud else "does not fit"))
    if cloud and labels:
        raise JetgenError("Point-cloud bundles are unconditional; drop labels.")
    return kind


def _range(output_range):
    try:
        lo, hi = (float(v) for v in output_range)
    except (TypeError, ValueError):
        raise JetgenError("output_range must be two numbers (low, high), not {!r}.".format(output_range))
    if not lo < hi:
        raise JetgenError("output_range must be (low, high) with low < high, not {!r}.".format(output_range))
    return lo, hi


def _label_names(labels):
    if labels is None:
        return []
    if isinstance(labels, (int, np.integer)) and not isinstance(labels, bool):
        labels = list(range(int(labels)))
    if isinstance(labels, str) or not hasattr(labels, "__iter__"):
        raise JetgenError("labels must be a list of label names (or their number), not {!r}.".format(labels))
    names = [str(v) for v in labels]
    if len(set(names)) != len(names):
        raise JetgenError("labels must be distinct names; {} repeats one.".format(names))
    return names


def _prior(prior, latent_dim):
    """The manifest prior spec for ``prior``: "normal" or {"family", "params"} with scalars broadcast."""
    if isinstance(prior, str) and prior in NORMAL:
        prior = {"family": "gaussian", "params": {"mean": 0.0, "std": 1.0}}
    if isinstance(prior, dict) and prior.get("family") == "gmm":
        from jetgen.runtime.gmm import GaussianMixturePrior

        mixture = GaussianMixturePrior.from_spec(prior)
        if mixture.dim != latent_dim:
            raise JetgenError("The gmm prior has {}-D means but the latent size is {}.".format(mixture.dim, latent_dim))
        return mixture.describe()
    if not isinstance(prior, dict) or prior.get("family") not in spec.PRIOR_FAMILIES:
        raise JetgenError("prior must be \"normal\" or {{\"family\": one of {}, \"params\": {{...}}}}, not {!r}."
                          .format(", ".join(sorted(spec.PRIOR_FAMILIES)), prior))
    family, params = prior["family"], prior.get("params") or {}
    out = {}
    for key in spec.PRIOR_FAMILIES[family]:
        if key not in params:
            raise JetgenError("The {} prior needs the parameter {!r} (one number or {} numbers).".format(
                family, key, latent_dim))
        values = np.broadcast_to(np.asarray(params[key], dtype=np.float64), (latent_dim,)) \
            if np.ndim(params[key]) == 0 else np.asarray(params[key], dtype=np.float64)
        if values.shape != (latent_dim,) or not np.isfinite(values).all():
            raise JetgenError("The {} prior's {!r} must be one number or {} finite numbers.".format(
                family, key, latent_dim))
        out[key] = [float(v) for v in values]
    return {"family": family, "params": out}


def _part(obj, what):
    """A Part (module, method) from a module, a bound method of a module, or a plain function."""
    from torch import nn

    from jetgen.export.source import FunctionModule, Part

    if isinstance(obj, nn.Module):
        return Part(obj, "forward")
    owner = getattr(obj, "__self__", None)
    if isinstance(owner, nn.Module) and callable(obj):
        return Part(owner, obj.__name__)
    if callable(obj):
        return Part(FunctionModule(obj), "forward")
    raise JetgenError("The {} must be an nn.Module, a method of one (like vae.decode) or a function, not {}."
                      .format(what, type(obj).__name__))


def _describe_call(inputs):
    return " and ".join("{} of shape {}".format(n, tuple(t.shape)) for n, t in inputs)


def _call(fn, inputs, what, accepts):
    """``fn(*inputs)`` without gradients; JetgenError saying what it was called with (and the user's
    line that raised) when it raises."""
    import os

    import torch

    from jetgen.export.refusals import user_frame

    try:
        with torch.no_grad():
            return fn(*[t for _, t in inputs])
    except JetgenError:
        raise
    except Exception as err:  # the user's code can raise anything; say what it was called with
        frame = user_frame(err)
        at = " at {} line {} in {}".format(os.path.basename(frame[0]), frame[1], frame[2]) if frame else ""
        raise JetgenError("Calling the {} with {} failed{} ({}: {}); it must accept {}.".format(
            what, _describe_call(inputs), at, type(err).__name__,
            str(err).splitlines()[0][:200] if str(err) else "",
            accepts + (" and y one-hot (B, K) (or, with condition=\"concat\" / --condition concat, one tensor "
                       "cat([z or x, y], 1))" if len(inputs) > 1 and "cat(" not in accepts else "")))


def _probe_decoder(part, latent_dim, labels, output, output_shape, output_range, data, output_key=None,
                   concat=False):
    """Call the decoder on 2 latents; return the output shape (C, H, W) (or (N, 3)) and the layout of
    a point decoder's output. JetgenError when it fails, returns no float tensor (or a dict without
    ``output_key``), the wrong size, or probabilities outside the output range."""
    import torch

    from jetgen.export.graphs import DecoderGraph

    inputs = [("z", torch.randn(2, latent_dim, generator=torch.Generator().manual_seed(0)))]
    if labels:
        inputs.append(("y", torch.eye(len(labels))[torch.arange(2) % len(labels)]))
    module = DecoderGraph(_eval_copy(part.module), part.method, bool(labels), None, lambda t: t, output_key, concat,
                          None)
    out = _call(module.raw, inputs, "decoder", "cat([z, y], 1)" if concat else "z (B, latent_dim)")
    layout = "points"
    if output == "points" and isinstance(out, torch.Tensor):
        from jetgen.export.graphs import cloud_layout, to_points

        layout = cloud_layout(out) or "points"  # (B, 3N) flat: reshaped as (B, N, 3)
        out = to_points(out, layout)
    if not isinstance(out, torch.Tensor) or not out.is_floating_point() or out.dim() < 2 or out.shape[0] != 2:
        raise JetgenError("The decoder must return one float tensor with the batch first; given {} it returned {}."
                          .format(_describe_call(inputs), _what(out)))
    shape = _cloud_shape(output_shape, out) if output == "points" else _output_shape(output_shape, out, data)
    if out[0].numel() != int(np.prod(shape)):
        raise JetgenError("The decoder returns {} values per example (shape {}), but output_shape {} needs {}."
                          .format(out[0].numel(), tuple(out.shape[1:]), shape, int(np.prod(shape))))
    lo, hi = _range(output_range)
    if output == "probs" and (float(out.min()) < lo - 1e-4 or float(out.max()) > hi + 1e-4):
        raise JetgenError("The decoder returned values from {:.3g} to {:.3g}, outside output_range {}; pass "
                          "output=\"logits\" if it ends without a sigmoid, or the range it really has.".format(
                              float(out.min()), float(out.max()), (lo, hi)))
    return shape, layout


def _what(out):
    import torch

    if isinstance(out, torch.Tensor):
        return "a {} tensor of shape {}".format(str(out.dtype).replace("torch.", ""), tuple(out.shape))
    return "a {}".format(type(out).__name__)


def _cloud_shape(output_shape, out):
    """(N, 3) of a point decoder: from ``output_shape`` or a (B, N, 3) output."""
    if output_shape is None and out.dim() == 3 and out.shape[2] == 3:
        return (int(out.shape[1]), 3)
    try:
        shape = tuple(int(s) for s in output_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 2 or shape[0] < 1 or shape[1] != 3:
        raise JetgenError("A point decoder needs output_shape=(N, 3) (or to return (B, N, 3)), not {!r}.".format(
            output_shape))
    return shape


def _output_shape(output_shape, out, data):
    if output_shape is not None:
        try:
            shape = tuple(int(s) for s in output_shape)
        except (TypeError, ValueError):
            shape = ()
        if len(shape) != 3 or min(shape) < 1:
            raise JetgenError("output_shape must be three positive integers (C, H, W), not {!r}.".format(output_shape))
        return shape
    if out.dim() == 4:
        return tuple(int(s) for s in out.shape[1:])
    images = data[0] if isinstance(data, (tuple, list)) else getattr(data, "test_x", None)
    if images is not None and np.ndim(images) == 4:
        return tuple(int(s) for s in np.shape(images)[1:])
    raise JetgenError("The decoder returns flat outputs {}; give output_shape=(C, H, W).".format(tuple(out.shape)))


def _eval_copy(module):
    import copy

    return copy.deepcopy(module).eval()


def _probe_encoder(source, encoder_input):
    """Call the encoder on 2 images (then flattened ones, for "auto"); return whether it takes them
    flat. JetgenError when neither works or it does not return (mu, logvar) of (B, latent_dim)."""
    import torch

    if encoder_input not in ("auto", "image", "flat", "channels_first"):
        raise JetgenError("encoder_input must be auto, image, flat or channels_first (point clouds (B, 3, N)), not "
                          "{!r}.".format(encoder_input))
    x = torch.rand((2,) + source.input_shape, generator=torch.Generator().manual_seed(0))
    lo, hi = source.output_range
    inputs = [("x", lo + (hi - lo) * x)]
    if source.conditional:
        inputs.append(("y", torch.eye(source.num_classes)[torch.arange(2) % source.num_classes]))
    if source.points:  # (flatten, channels first) for clouds: (B, N, 3), then (B, 3, N)
        tries = {"auto": ((False, False), (False, True)), "image": ((False, False),), "flat": ((True, False),),
                 "channels_first": ((False, True),)}[encoder_input]
        accepts = "clouds (B, N, 3) or (B, 3, N)"
    else:
        tries = {"auto": ((False, False), (True, False)), "image": ((False, False),), "flat": ((True, False),),
                 "channels_first": ((False, True),)}[encoder_input]
        accepts = "cat([x.flatten(1), y], 1)" if source.concat else "images (B, C, H, W) or (B, C*H*W)"
    first = None
    for flat, channels_first in tries:
        source.encoder_flatten, source.channels_first = flat, channels_first
        try:
            mu, logvar = _call(source.graph_module("encoder", folded=False), inputs, "encoder",
                               "{}, returning (mu, logvar), a dict with keys {}, one (B, 2D) tensor or one (B, D) "
                               "code,".format(accepts, source.encoder_keys))
        except JetgenError as err:
            first = first or err
            continue
        if tuple(mu.shape) == tuple(logvar.shape) == (2, source.latent_dim):
            return flat
        first = first or JetgenError("The encoder must return mu and logvar of shape (B, {}) each; it returned {} "
                                     "and {}.".format(source.latent_dim, _what(mu), _what(logvar)))
    raise first


def _provenance(source, metadata):
    record = {"source": "jetgen.export.export_model", "decoder": source.decoder.describe(),
              "checkpoint_sha256": source.weights_sha256()}
    if source.has_encoder:
        record["encoder"] = source.encoder.describe()
    if source.data is not None:
        record["data"] = source.data.name
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise JetgenError("metadata must be a dict of JSON values, not {}.".format(type(metadata).__name__))
        record.update(metadata)
    try:
        json.dumps(record, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise JetgenError("metadata must hold JSON values (str, numbers, lists, dicts): {}.".format(err))
    return record


def _check_model_section(source):
    """Check the manifest's model section before any work, with the same reader a device uses."""
    from jetgen.export.manifest import format_version, model_section

    ins, outs = source.interface("decoder")
    stub = {"file": "decoder.onnx", "sha256": "0" * 64, "bytes": 0,
            "inputs": [{"name": n, "shape": ["batch"] + list(s)} for n, s in ins],
            "outputs": [{"name": n, "shape": ["batch"] + list(s)} for n, s in outs]}
    spec.check_manifest({"format": spec.FORMAT, "format_version": format_version(source),
                         "model": model_section(source), "graphs": {"decoder": stub}})
