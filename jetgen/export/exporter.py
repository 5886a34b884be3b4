"""Export a trained run to a bundle (docs/bundle.md): graphs, parity, reduced precision, manifest.

    manifest = export_run("runs/cvae", "nano", "digits-cvae.jetgen")

Every graph is measured against PyTorch at export, on random latents and on real test data;
the latent gradient against torch autograd. fp32 parity worse than ``PARITY_TOL`` (both absolute
and relative to the output's scale) fails the export. The bundle is built in an AtomicDirectory,
so a failure at any point leaves no half-written bundle.
"""
import datetime
import json
import os
import platform
import time

import numpy as np

from jetgen.errors import JetgenError

PRECISIONS = ("fp32", "fp16", "int8")
PARITY_TOL = 1e-4
FORMAT = "jetgen-bundle"
FORMAT_VERSION = 1
BATCH_OPT = 64
TRACE_BATCH = 3  # tracing batch: not 1, so the batch axis is never specialised away
CALIB_BATCH = 32


def export_run(run_dir, target, out, precision="fp32", calib_samples=500, max_batch=1024, force=False, log=None):
    """Export the run at ``run_dir`` for ``target`` into the bundle directory ``out``; return the manifest.

    ``precision``: fp32, fp16 (fp16 arithmetic, float32 interfaces) or int8 (static QDQ calibrated on
    ``calib_samples`` training examples; the latent gradient stays fp16). ``log`` is an optional
    callable taking progress sentences. Raises JetgenError for an unknown target or precision, int8 on
    a board without INT8, an existing ``out`` without ``force``, a missing or corrupt run, a model the
    ONNX exporters cannot translate, or fp32 parity worse than PARITY_TOL.
    """
    from jetgen.atomic import AtomicDirectory, atomic_write_json
    from jetgen.runtime.targets import get_target

    log = log or (lambda message: None)
    row = get_target(target)
    _check_options(row, precision, calib_samples, max_batch)
    out = os.path.abspath(os.fspath(out))
    if os.path.exists(out) and not force:
        raise JetgenError("{} already exists; choose another --out or pass --force to replace it.".format(out))

    from jetgen.train.rundir import load_run

    run = load_run(run_dir)
    ctx = _Context(run, row, precision, int(calib_samples), int(max_batch), log)
    started = time.time()
    try:
        with AtomicDirectory(out, force=force) as tmp:
            graphs = {}
            for name in ctx.graph_names:
                graphs[name] = _export_graph(ctx, name, tmp)
            quality = _quality(ctx) if precision != "fp32" else None
            manifest = _manifest(ctx, out, graphs, quality)
            atomic_write_json(os.path.join(tmp, "manifest.json"), manifest)
    except FileExistsError:
        raise JetgenError("{} already exists; choose another --out or pass --force to replace it.".format(out))
    log("exported {} graphs in {:.1f} s".format(len(graphs), time.time() - started))
    return manifest


def _check_options(row, precision, calib_samples, max_batch):
    if precision not in PRECISIONS:
        raise JetgenError("Unknown precision {!r}; choose one of: {}.".format(precision, ", ".join(PRECISIONS)))
    if precision == "int8" and not row["int8"]:
        raise JetgenError("The {} ({}) has no INT8 support in hardware; export it with --precision fp16 or "
                          "fp32.".format(row["name"], row["board"]))
    if precision == "fp16" and not row["fp16"]:
        raise JetgenError("The {} ({}) has no fast FP16; export it with --precision fp32.".format(
            row["name"], row["board"]))
    if int(max_batch) < 1:
        raise JetgenError("--max-batch must be at least 1, not {}.".format(max_batch))
    if precision == "int8" and int(calib_samples) < 1:
        raise JetgenError("--calib-samples must be at least 1 for int8, not {}.".format(calib_samples))


class _Context(object):
    """What every step of one export needs: the run, models, data, target and derived values."""

    def __init__(self, run, row, precision, calib_samples, max_batch, log):
        from jetgen.export.graphs import graph_names, inference_copy

        self.run, self.row, self.precision, self.log = run, row, precision, log
        self.calib_samples, self.max_batch = calib_samples, max_batch
        self.model = run.model.eval()
        self.inf = inference_copy(self.model)
        self.graph_names = graph_names(self.inf)
        self.opset = int(row["opset_max"])
        self.prior = self.model.manifest_prior()
        self.data = _load_data(run)
        self.labels = _labels(run.config, self.model)
        self.fp32 = {}  # graph -> fp32 ModelProto, for the quality table
        self.final = {}  # graph -> ModelProto as written


def _load_data(run):
    from jetgen.train.data import load_dataset

    config = run.config
    name = config.get("data", "digits")
    shape = tuple(config["image_shape"])
    try:
        # the same arguments as training and eval, so a folder data set splits the same way
        data = load_dataset(name, config.get("data_dir"), False, int(config.get("image_size", shape[-1])),
                            seed=int(config.get("seed", 0)))
    except JetgenError as err:
        raise JetgenError("Export measures parity and calibrates on the run's data set, which cannot be "
                          "loaded: {}".format(err))
    if tuple(data.image_shape) != shape:
        raise JetgenError("The {} data set has images of shape {} but the run's model makes {}; export needs "
                          "the data the run was trained on.".format(name, data.image_shape, shape))
    return data


def _labels(config, model):
    if not model.conditional:
        return []
    classes = config.get("classes")
    if isinstance(classes, list) and len(classes) == model.num_classes:
        return [str(c) for c in classes]
    return [str(i) for i in range(model.num_classes)]


def sample_prior(prior, n, rng):
    """numpy draws (n, D) float32 from a manifest prior spec: the runtime's own sampler, so parity
    and calibration data come from exactly the distribution the device samples."""
    from jetgen.runtime.priors import prior_from_manifest

    return prior_from_manifest(prior).sample(n, 1.0, rng)


def _one_hot(labels, k):
    return np.eye(k, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]


# ------------------------------------------------------------------- inputs from data

def _real_latents(ctx, x, y, sample=False, seed=0):
    """Latents of real images: posterior means (or samples) for models with an encoder; for
    auto-decoders the table entries of the first len(x) training examples."""
    import torch

    model = ctx.model
    with torch.no_grad():
        table = model.train_latents(len(x), sample=sample, seed=seed)
        if table is not None:
            return table.numpy().astype(np.float32)
        mu, logvar = model.encode(torch.from_numpy(x), torch.from_numpy(y) if y is not None else None)
        if sample:
            gen = torch.Generator().manual_seed(seed)
            mu = mu + torch.randn(mu.shape, generator=gen) * torch.exp(0.5 * logvar)
        return mu.numpy().astype(np.float32)


def _split(ctx, split, n=None):
    d = ctx.data
    x, y = (d.test_x, d.test_y) if split == "test" else (d.train_x, d.train_y)
    if n is not None:
        x, y = x[:n], y[:n]
    x = x.numpy().astype(np.float32)
    onehot = _one_hot(y.numpy(), ctx.model.num_classes) if ctx.model.conditional else None
    return x, onehot


def _parity_feeds(ctx, graph):
    """[(what, feeds)] for ``graph``: random inputs (batches 1 and 5) and real test data."""
    rng = np.random.RandomState(0)
    model = ctx.model
    shape = tuple(model.image_shape)
    x_test, y_test = _split(ctx, "test", 64)
    if not model.has_encoder:  # table latents belong to training examples
        x_train, y_train = _split(ctx, "train", 64)
        z_real = _real_latents(ctx, x_train, y_train)
    else:
        z_real = _real_latents(ctx, x_test, y_test)
    out = []
    for n in (1, 5):
        y = _one_hot(rng.randint(0, model.num_classes, n), model.num_classes) if model.conditional else None
        feeds = {"z": sample_prior(ctx.prior, n, rng), "x": rng.random_sample((n,) + shape).astype(np.float32),
                 "target": rng.random_sample((n,) + shape).astype(np.float32),
                 "mask": (rng.random_sample((n,) + shape) > 0.5).astype(np.float32), "y": y}
        out.append(("random", feeds))
    real = {"z": z_real[:len(x_test)], "x": x_test, "target": x_test,
            "mask": (rng.random_sample(x_test.shape) > 0.5).astype(np.float32), "y": y_test}
    out.append(("test data", real))
    from jetgen.export.graphs import input_names

    names = input_names(model, graph)
    return [(what, {k: feeds[k] for k in names}) for what, feeds in out]


def _torch_reference(ctx, graph, feeds):
    """The original (unfolded) PyTorch model's outputs for ``feeds``; the gradient by autograd."""
    from jetgen.export.graphs import DecoderGraph, EncoderGraph, input_names, loss_and_grad

    import torch

    args = [torch.from_numpy(feeds[k]) for k in input_names(ctx.model, graph)]
    if graph == "latent_grad":
        return [t.numpy() for t in loss_and_grad(ctx.model, *args)]
    module = DecoderGraph(ctx.model) if graph == "decoder" else EncoderGraph(ctx.model)
    with torch.no_grad():
        outs = module(*args)
    outs = outs if isinstance(outs, tuple) else (outs,)
    return [o.numpy() for o in outs]


def measure_parity(ctx, graph, model_proto):
    """Worst absolute error and worst error relative to each output's largest magnitude, ONNX
    Runtime against PyTorch, over every parity feed."""
    from jetgen.export import onnx_tools

    sess = onnx_tools.session(model_proto)
    worst_abs, worst_rel = 0.0, 0.0
    for _, feeds in _parity_feeds(ctx, graph):
        got = onnx_tools.run(sess, feeds)
        want = _torch_reference(ctx, graph, feeds)
        for g, w in zip(got, want):
            err = float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64))))
            scale = float(np.max(np.abs(w))) or 1.0
            worst_abs, worst_rel = max(worst_abs, err), max(worst_rel, err / scale)
    return {"max_abs": worst_abs, "max_rel": worst_rel, "against": "torch"}


def parity_ok(parity, tol=PARITY_TOL):
    """Pass when the error is small absolutely or relative to the output's scale (a summed loss of
    hundreds of nats cannot match to 1e-4 absolutely in float32)."""
    return parity["max_abs"] <= tol or parity["max_rel"] <= tol


# ------------------------------------------------------------------- one graph

def _build_fp32(ctx, graph):
    """Export ``graph`` to a checked fp32 ModelProto at the target's opset."""
    from jetgen.export import onnx_tools

    if graph == "latent_grad":
        key = (ctx.run.checkpoint_sha256, json.dumps(ctx.run.config, sort_keys=True, default=str), ctx.max_batch)
        proto = _TRACED.get(key)
        if proto is None:
            proto = onnx_tools.simplify(_export_torch(ctx, graph))
            _remember(_TRACED, key, proto)
    else:
        proto = onnx_tools.simplify(_export_torch(ctx, graph))
    proto = onnx_tools.downgrade(proto, min(ctx.opset, onnx_tools.default_opset(proto)), graph)
    proto = onnx_tools.trt_fixes(proto)
    onnx_tools.set_min_ir_version(proto)
    proto.producer_name, proto.producer_version = "jetgen", _jetgen_version()
    onnx_tools.check(proto, graph, ctx.opset)
    if onnx_tools.default_opset(proto) < ctx.row["opset_min"]:
        raise JetgenError("The {} graph came out at opset {}, below the {} minimum of {}.".format(
            graph, onnx_tools.default_opset(proto), ctx.row["name"], ctx.row["opset_min"]))
    return proto


def _export_torch(ctx, graph):
    """The raw ONNX export of ``graph``: legacy exporter at the target opset for the decoder and
    encoder, make_fx trace plus the dynamo exporter (opset 18) for the latent gradient."""
    from jetgen.export import onnx_tools
    from jetgen.export.graphs import DecoderGraph, EncoderGraph, input_names, make_example_inputs, output_names

    example = make_example_inputs(ctx.inf, graph, batch=TRACE_BATCH)
    if graph == "latent_grad":
        from jetgen.export.grad_export import trace_latent_grad

        try:
            module = trace_latent_grad(ctx.inf, example)
        except Exception as err:  # tracing raises many types; translate into one sentence
            raise JetgenError("Cannot trace the latent gradient of this {} model into plain operations: {}."
                              .format(ctx.model.kind, onnx_tools.describe_export_error(err)))
    else:
        module = DecoderGraph(ctx.inf) if graph == "decoder" else EncoderGraph(ctx.inf)
    return onnx_tools.export_torch(module, example, input_names(ctx.inf, graph), output_names(graph), ctx.opset,
                                   graph, legacy=graph != "latent_grad", max_batch=ctx.max_batch)


# Tracing and exporting the gradient graph is the slow step (seconds); exporting one run for several
# targets in a process reuses the opset-18 graph, keyed by checkpoint hash, config and batch range.
_TRACED = {}
_CLASSIFIERS = {}
_CACHE_SIZE = 8


def _remember(cache, key, value):
    if len(cache) >= _CACHE_SIZE:
        cache.pop(next(iter(cache)))
    cache[key] = value


def _calibration_feeds(ctx, graph):
    """Feed dicts of real training data for int8 calibration, CALIB_BATCH examples each."""
    x, y = _split(ctx, "train", ctx.calib_samples)
    if graph == "encoder":
        feeds = {"x": x, "y": y}
    else:
        feeds = {"z": _real_latents(ctx, x, y, sample=True), "y": y}
    from jetgen.export.graphs import input_names

    names = input_names(ctx.model, graph)
    return [{k: feeds[k][i:i + CALIB_BATCH] for k in names} for i in range(0, len(x), CALIB_BATCH)]


def _graph_precision(ctx, graph):
    if ctx.precision == "int8" and graph == "latent_grad":
        return "fp16"  # a quantised gradient is too coarse for latent optimisation
    return ctx.precision


def _export_graph(ctx, graph, directory):
    from jetgen.export import onnx_tools

    ctx.log("exporting {} ...".format(graph))
    fp32 = _build_fp32(ctx, graph)
    parity = measure_parity(ctx, graph, fp32)
    if not parity_ok(parity):
        raise JetgenError("The exported {} graph does not match PyTorch: worst error {:.3g} (relative {:.3g}), "
                          "above the {:g} allowed; this is a jetgen bug, please report it.".format(
                              graph, parity["max_abs"], parity["max_rel"], PARITY_TOL))
    ctx.fp32[graph] = fp32
    precision = _graph_precision(ctx, graph)
    final = fp32
    if precision == "fp16":
        final = onnx_tools.to_fp16(fp32, graph)
    elif precision == "int8":
        final = onnx_tools.quantize_int8(fp32, graph, _calibration_feeds(ctx, graph))
    if final is not fp32:
        parity = measure_parity(ctx, graph, final)
    onnx_tools.add_metadata(final, _metadata(ctx, graph, precision))
    ctx.final[graph] = final
    return _write_graph(ctx, graph, final, directory, precision, parity)


def _write_graph(ctx, graph, proto, directory, precision, parity):
    from jetgen.atomic import atomic_write_bytes
    from jetgen.export import onnx_tools
    from jetgen.export.graphs import interface_shapes
    from jetgen.digest import sha256_file

    fname = graph + ".onnx"
    path = os.path.join(directory, fname)
    atomic_write_bytes(path, proto.SerializeToString())
    ins, outs = interface_shapes(ctx.model, graph)
    return {
        "file": fname, "sha256": sha256_file(path), "bytes": os.path.getsize(path),
        "opset": onnx_tools.default_opset(proto), "precision": precision,
        "inputs": [{"name": n, "dtype": "float32", "shape": ["batch"] + s} for n, s in ins],
        "outputs": [{"name": n, "dtype": "float32", "shape": ["batch"] + s} for n, s in outs],
        "batch": {"min": 1, "opt": min(BATCH_OPT, ctx.max_batch), "max": ctx.max_batch},
        "parity": parity,
    }


def _metadata(ctx, graph, precision):
    return {
        "jetgen.format": FORMAT, "jetgen.version": _jetgen_version(), "jetgen.graph": graph,
        "jetgen.kind": ctx.model.kind, "jetgen.latent_dim": ctx.model.latent_dim,
        "jetgen.labels": json.dumps(ctx.labels), "jetgen.target": ctx.row["name"],
        "jetgen.precision": precision, "jetgen.checkpoint_sha256": ctx.run.checkpoint_sha256,
    }


# ------------------------------------------------------------------- reduced-precision quality

def _quality(ctx):
    """Reduced precision against fp32 (both as ONNX) on the test split."""
    from jetgen.export import onnx_tools

    model = ctx.model
    sess = {p: {g: onnx_tools.session(m) for g, m in graphs.items()}
            for p, graphs in (("fp32", ctx.fp32), ("reduced", ctx.final))}
    x, y = _split(ctx, "test")
    rng = np.random.RandomState(0)
    table = {"precision": ctx.precision, "against": "fp32", "data": "{} test split ({} images)".format(
        ctx.data.name, len(x))}

    def decode(which, z, labels):
        feeds = {"z": z}
        if model.conditional:
            feeds["y"] = labels
        return onnx_tools.run(sess[which]["decoder"], feeds)[0]

    prior_labels = _one_hot(rng.randint(0, model.num_classes, len(x)), model.num_classes) \
        if model.conditional else None
    z_prior = sample_prior(ctx.prior, len(x), rng)
    worst = float(np.max(np.abs(decode("fp32", z_prior, prior_labels) - decode("reduced", z_prior, prior_labels))))
    if model.has_encoder:
        z_test = _real_latents(ctx, x, y)
        worst = max(worst, float(np.max(np.abs(decode("fp32", z_test, y) - decode("reduced", z_test, y)))))
        eps = np.random.RandomState(1).standard_normal((len(x), model.latent_dim)).astype(np.float32)
        values = {}
        for which in ("fp32", "reduced"):
            feeds = {"x": x, "y": y} if model.conditional else {"x": x}
            mu, logvar = onnx_tools.run(sess[which]["encoder"], feeds)
            z = mu + eps * np.exp(0.5 * logvar)
            recon = _nll(model, decode(which, z, y), x)
            kl = 0.5 * np.sum(mu ** 2 + np.exp(logvar) - 1.0 - logvar, axis=1)
            values[which] = float(np.mean(recon + kl))
        table["neg_elbo"] = _row(ctx, values, "nats/image, 1-sample Monte Carlo, encoder and decoder graphs")
    else:
        # auto-decoders have no encoder: find test latents by test-time optimisation (torch, fp32, the
        # settings of `jetgen eval`), then decode them at both precisions
        import torch

        from jetgen.models.inference import infer_latents
        from jetgen.train.evaluate import INFERENCE_LR, INFERENCE_STEPS

        z = infer_latents(model, torch.from_numpy(x), steps=INFERENCE_STEPS, lr=INFERENCE_LR, seed=0)
        z = z.detach().numpy().astype(np.float32)
        worst = max(worst, float(np.max(np.abs(decode("fp32", z, None) - decode("reduced", z, None)))))
        values = {w: float(np.mean(np.sum((decode(w, z, None) - x).reshape(len(x), -1) ** 2, axis=1)))
                  for w in ("fp32", "reduced")}
        table["recon_error"] = _row(ctx, values, "squared error summed per test image, latents found by "
                                                 "{} steps of test-time optimisation".format(INFERENCE_STEPS))
    table["max_decode_error"] = worst
    # gradient error of the latent_grad graph at its precision against fp32
    feeds = dict(_parity_feeds(ctx, "latent_grad")[-1][1])
    g32 = onnx_tools.run(sess["fp32"]["latent_grad"], feeds)[1]
    g16 = onnx_tools.run(sess["reduced"]["latent_grad"], feeds)[1]
    table["latent_grad_max_rel_error"] = float(np.max(np.abs(g16 - g32)) / (np.max(np.abs(g32)) or 1.0))
    if model.conditional:
        table["conditional_accuracy"] = _conditional_accuracy(ctx, decode)
    return table


def _row(ctx, values, unit):
    return {"fp32": values["fp32"], ctx.precision: values["reduced"], "delta": values["reduced"] - values["fp32"],
            "unit": unit}


def _nll(model, probs, x):
    """Per-image negative log-likelihood of ``x`` under decoded means ``probs`` (numpy)."""
    n = len(x)
    if model.likelihood == "bernoulli":
        p = np.clip(probs.astype(np.float64), 1e-6, 1 - 1e-6)
        nll = -(x * np.log(p) + (1 - x) * np.log(1 - p))
    else:
        s = model.sigma
        nll = 0.5 * ((x - probs) / s) ** 2 + 0.5 * np.log(2 * np.pi * s * s)
    return nll.reshape(n, -1).sum(1)


class _DecoderAsModel(object):
    """Duck-typed model for jetgen.train.metrics.conditional_accuracy: decodes with an ONNX graph."""

    def __init__(self, model, decode, which):
        self.model, self._decode, self.which = model, decode, which
        self.conditional, self.num_classes = True, model.num_classes

    def prior_sample(self, n, generator=None):
        return self.model.prior_sample(n, generator=generator)

    def decode(self, z, y):
        return self._decode(self.which, z.numpy().astype(np.float32), y.numpy().astype(np.float32))


def _conditional_accuracy(ctx, decode, per_class=100):
    """Share of prior samples decoded with label k that a logistic regression trained on real training
    images classifies as k, for fp32 and the reduced precision."""
    from jetgen.train.metrics import conditional_accuracy, fit_digit_classifier

    d = ctx.data
    key = (d.name, tuple(d.train_x.shape), float(d.train_x.sum()))
    clf = _CLASSIFIERS.get(key)
    if clf is None:
        clf = fit_digit_classifier(d.train_x, d.train_y)
        _remember(_CLASSIFIERS, key, clf)
    values, real = {}, None
    for which in ("fp32", "reduced"):
        values[which], real, _ = conditional_accuracy(_DecoderAsModel(ctx.model, decode, which), d.train_x,
                                                      d.train_y, d.test_x, d.test_y, per_class=per_class,
                                                      classifier=clf)
    row = _row(ctx, values, "share of label-conditioned samples classified as their label")
    row["classifier_test_accuracy"] = real
    return row


# ------------------------------------------------------------------- manifest

def _jetgen_version():
    from jetgen import __version__
    return __version__


def _versions(precision):
    import onnx
    import onnxruntime
    import torch

    versions = {"jetgen": _jetgen_version(), "torch": torch.__version__, "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}
    for name in ("onnxslim", "onnxscript") + (("onnxconverter_common",) if precision != "fp32" else ()):
        try:
            versions[name] = __import__(name).__version__
        except (ImportError, AttributeError):
            pass
    return versions


def _provenance(run):
    from jetgen.train.rundir import read_metrics

    metrics = {}
    rows = read_metrics(run.path)
    if rows:
        for key, value in rows[-1].items():
            if value in (None, ""):
                continue
            try:
                metrics[key] = float(value)
            except ValueError:
                metrics[key] = value
    eval_path = os.path.join(run.path, "eval.json")
    if os.path.isfile(eval_path):
        try:
            with open(eval_path) as handle:
                metrics["eval"] = json.load(handle)
        except (ValueError, OSError):
            pass  # a broken eval.json is not worth failing an export over
    return {"run": os.fspath(run.path), "checkpoint_sha256": run.checkpoint_sha256,
            "data": run.config.get("data", "digits"), "epochs": run.meta.get("epoch", run.config.get("epochs")),
            "metrics": metrics}


def _manifest(ctx, out, graphs, quality):
    model = ctx.model
    name = os.path.basename(out)
    if name.endswith(".jetgen"):
        name = name[:-len(".jetgen")]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": {
            "kind": model.kind,
            "arch": ctx.run.config.get("arch") or model.archs[0],
            "latent_dim": model.latent_dim,
            "conditional": bool(model.conditional),
            "labels": ctx.labels,
            "output": {"shape": list(model.image_shape), "range": [0.0, 1.0]},
            "likelihood": {"name": model.likelihood,
                           "sigma": model.sigma if model.likelihood == "gaussian" else None},
            "prior": ctx.prior,
        },
        "graphs": graphs,
        "target": dict(ctx.row),
        "precision": ctx.precision,
        "provenance": _provenance(ctx.run),
        "versions": _versions(ctx.precision),
    }
    if quality is not None:
        manifest["quality"] = quality
    return manifest
