"""The one export pipeline (docs/bundle.md): graphs, parity, reduced precision, golden vectors,
manifest, offline check. Every export goes through ``write_bundle``: ``jetgen.export.export_model``
for any PyTorch model, which jetgen's own run directories reach through jetgen.export.from_run.export_run.

Every graph is measured against the original PyTorch model at export, on random inputs and real test
data; the latent gradient against torch autograd. fp32 parity worse than ``PARITY_TOL`` (both
absolute and relative to the output's scale) fails the export. The bundle is built in an
AtomicDirectory, so a failure at any point leaves no half-written bundle.
"""
import json
import os
import re
import time

import numpy as np

from jetgen import __version__, modalities
from jetgen.atomic import AtomicDirectory, atomic_write_bytes, atomic_write_json
from jetgen.digest import sha256_file
from jetgen.errors import JetgenError
from jetgen.export import onnx_tools
from jetgen.export.check import check_model
from jetgen.export.feeds import calibration_feeds, parity_feeds
from jetgen.export.feeds import sample_prior  # noqa: F401  (part of this module's API)
from jetgen.export.golden import write_golden
from jetgen.export.grad_export import LatentGradModule
from jetgen.export.manifest import build_manifest
from jetgen.export.quality import quality_table
from jetgen.export.refusals import origin, trace_failure, unsupported_op_error, user_lines
from jetgen.runtime.targets import get_target
from jetgen.spec import FORMAT

PRECISIONS = ("fp32", "fp16", "int8")
PARITY_TOL = 1e-4
BATCH_OPT = 64
MAX_BATCH = 1024  # export_run's default largest batch
POINTS_MAX_BATCH = 16  # point clouds: a (16, 1024, 1024) distance matrix fits a Nano's memory budget
TRACE_BATCH = 3  # tracing batch: not 1, so the batch axis is never specialised away


class ExportedManifest(dict):
    """The manifest written (a dict), with ``check``: the offline check's report on the bundle."""

    check = None


def write_bundle(source, target, out, precision="fp32", calib_samples=500, max_batch=1024, force=False, log=None):
    """Export ``source`` (jetgen.export.source.Source) for ``target`` into the bundle directory ``out``.

    Returns the manifest (an ExportedManifest). Raises JetgenError for an unknown target or
    precision, int8 on a board without INT8 or without data to calibrate on, an existing ``out``
    without ``force``, a model that cannot be traced or exported, an operator the target cannot run,
    or fp32 parity worse than PARITY_TOL.
    """
    log = log or (lambda message: None)
    row = get_target(target)
    _check_options(row, precision, calib_samples, max_batch, source)
    out = os.path.abspath(os.fspath(out))
    if os.path.exists(out) and not force:
        raise JetgenError("{} already exists; choose another --out or pass --force to replace it.".format(out))
    job = _Job(source, row, precision, int(calib_samples), int(max_batch), log)
    started = time.time()
    _prepare_latent_grad(job)
    try:
        with AtomicDirectory(out, force=force) as tmp:
            graphs = {}
            half = modalities.part(source.modality, "export")
            if half is not None:  # the modality's own files (faces.npy)
                half.write_files(tmp, source)
            for name in source.graph_names:
                graphs[name] = _export_graph(job, name, tmp)

            quality = quality_table(job) if precision != "fp32" else None
            manifest = ExportedManifest(build_manifest(job, out, graphs, quality))
            atomic_write_json(os.path.join(tmp, "manifest.json"), manifest)
            manifest.check = _offline_check(job, tmp)
    except FileExistsError:
        raise JetgenError("{} already exists; choose another --out or pass --force to replace it.".format(out))
    log("exported {} graphs in {:.1f} s".format(len(graphs), time.time() - started))
    return manifest


def _check_options(row, precision, calib_samples, max_batch, source):
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
    if precision == "int8" and source.data is None:
        raise JetgenError("int8 calibrates on real examples: give data=(images, labels) (--data on the command "
                          "line), or export fp16.")


class _Job(object):
    """One export: the source, target row, options, and the graphs made so far."""

    def __init__(self, source, row, precision, calib_samples, max_batch, log):
        self.source, self.row, self.precision, self.log = source, row, precision, log
        self.calib_samples, self.max_batch = calib_samples, max_batch
        self.opset = int(row["opset_max"])
        self.where = source.provenance.get("decoder") or "this {} model".format(source.kind)
        self.grad_key = self.grad_module = None  # the latent gradient's cache key and traced module
        self.fp32 = {}  # graph -> fp32 ModelProto, for the quality table
        self.final = {}  # graph -> ModelProto as written


# ------------------------------------------------------------------- parity

def measure_parity(job, graph, model_proto):
    """Worst absolute error and worst error relative to each output's largest magnitude, ONNX
    Runtime against the original PyTorch model, over every parity feed."""
    sess = onnx_tools.session(model_proto)
    worst_abs, worst_rel = 0.0, 0.0
    for _, feeds in parity_feeds(job.source, graph):
        got = onnx_tools.run(sess, feeds)
        want = job.source.reference(graph, feeds)
        for g, w in zip(got, want):
            err = float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64))))
            scale = float(np.max(np.abs(w))) or 1.0
            worst_abs, worst_rel = max(worst_abs, err), max(worst_rel, err / scale)
    return {"max_abs": worst_abs, "max_rel": worst_rel, "against": "torch"}


def parity_ok(parity, tol=PARITY_TOL):
    """Pass when the error is small absolutely or relative to the output's scale (a summed loss of
    hundreds of nats cannot match to 1e-4 absolutely in float32)."""
    return parity["max_abs"] <= tol or parity["max_rel"] <= tol


def _parity_failure(job, graph, parity):
    if job.source.provenance.get("run"):
        return JetgenError("The exported {} graph does not match PyTorch: worst error {:.3g} (relative {:.3g}), "
                           "above the {:g} allowed; this is a jetgen bug, please report it.".format(
                               graph, parity["max_abs"], parity["max_rel"], PARITY_TOL))
    return JetgenError("The exported {} graph of {} does not match the module: worst error {:.3g} (relative {:.3g}), "
                       "above the {:g} allowed; this happens when the module branches on tensor values or keeps "
                       "state between calls (a trace follows one input), so make it compute the same way for every "
                       "input, or report a jetgen bug if it does.".format(graph, job.where, parity["max_abs"],
                                                                          parity["max_rel"], PARITY_TOL))


# ------------------------------------------------------------------- one graph

def _build_fp32(job, graph):
    """Export ``graph`` to a checked fp32 ModelProto at the target's opset, run at two batch sizes
    other than the tracing batch (``_batch_problem``). A TorchScript trace that baked the batch into
    the graph (len(x), x.size(0) used as a Python int) is exported again with the dynamo exporter,
    which keeps the batch symbolic; JetgenError naming the user's line when that fails too."""
    if graph == "latent_grad":
        proto = _finish(job, graph, _traced_latent_grad(job))
        problem = _batch_problem(job, graph, proto)
        if problem:
            raise _fixed_batch_failure(job, graph, problem, [], None)
        return proto
    module = job.source.graph_module(graph)
    notes = []
    proto = _finish(job, graph, _export_torch(job, graph, module, notes=notes))
    problem = _batch_problem(job, graph, proto)
    if problem is None:
        return proto
    try:
        proto = _finish(job, graph, _export_torch(job, graph, module, legacy=False, strict=True))
    except JetgenError as err:
        raise _fixed_batch_failure(job, graph, problem, notes, err)
    second = _batch_problem(job, graph, proto)
    if second:
        raise _fixed_batch_failure(job, graph, second, notes, None)
    job.log("the {} graph fixed its batch size in a TorchScript trace; exported with torch.export".format(graph))
    return proto


def _finish(job, graph, proto):
    """Simplify, down-convert, TensorRT fixes, checks: the raw export as it is written."""
    if graph != "latent_grad":
        proto = onnx_tools.simplify(proto)
    proto = _downgrade(job, graph, proto)
    proto = onnx_tools.trt_fixes(proto)
    onnx_tools.set_min_ir_version(proto)

    proto.producer_name, proto.producer_version = "jetgen", __version__
    onnx_tools.check(proto, graph, job.opset)
    if onnx_tools.default_opset(proto) < job.row["opset_min"]:
        raise JetgenError("The {} graph came out at opset {}, below the {} minimum of {}.".format(
            graph, onnx_tools.default_opset(proto), job.row["name"], job.row["opset_min"]))
    return proto


CHECK_BATCHES = (1, 2)  # neither is TRACE_BATCH: a batch baked into a graph fails at one of them


def _batch_problem(job, graph, proto):
    """None when ONNX Runtime runs ``proto`` at every CHECK_BATCHES size with outputs of that batch
    and values within PARITY_TOL of the PyTorch module; else what went wrong, in words."""
    sess = onnx_tools.session(proto, quiet=True)
    source = job.source
    for batch in CHECK_BATCHES:
        args = source.example_inputs(graph, batch)
        feeds = {k: np.ascontiguousarray(t.detach().numpy(), dtype=np.float32)
                 for k, t in zip(source.input_names(graph), args)}
        try:
            got = onnx_tools.run(sess, feeds)
        except Exception as err:  # ONNX Runtime's own errors: a Reshape to the traced batch, ...
            return "at batch {} ONNX Runtime fails ({})".format(batch, _first_line(err))
        want = source.reference(graph, feeds)
        for g, w in zip(got, want):
            if g.shape != w.shape:
                return "at batch {} it returns shape {} instead of {}".format(batch, g.shape, w.shape)
            err = float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64)))) if g.size else 0.0
            if not parity_ok({"max_abs": err, "max_rel": err / (float(np.max(np.abs(w))) or 1.0)}):
                return "at batch {} its outputs differ from the module's by {:.3g}".format(batch, err)
    return None


def _first_line(err):
    text = re.sub(r"\s+", " ", str(err)).strip()
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    return (text[:240] + "...") if len(text) > 240 else text or type(err).__name__


def _fixed_batch_failure(job, graph, problem, notes, dynamo_error):
    """The refusal for a graph that only works at the tracing batch: the tracer's warnings name the
    user's line (len(x), a tensor size used as a Python number)."""
    lines = user_lines(notes)
    where = " ({})".format("; ".join(lines)) if lines else ""
    also = " and torch.export could not keep it symbolic ({})".format(_first_line(dynamo_error)) \
        if dynamo_error is not None else ""
    return JetgenError("The exported {} graph of {} only works at the batch size it was traced with: {}{}{}. The "
                       "model takes the batch size as a Python number (len(x), x.size(0) or x.shape[0] kept in a "
                       "variable, or a constant); write the batch as -1 instead (x.reshape(-1, ...), x.flatten(1), "
                       "torch.zeros_like(mu)).".format(graph, job.where, problem, where, also))


def _downgrade(job, graph, proto):
    try:
        return onnx_tools.downgrade(proto, min(job.opset, onnx_tools.default_opset(proto)), graph)
    except JetgenError as err:
        known = origin(" ".join(onnx_tools.op_types(proto)))
        if known is None:
            raise
        raise JetgenError("The {} graph of {} uses {}, which cannot be written at opset {} for the {}; {}.".format(
            graph, job.where, known[0], job.opset, job.row["name"], known[1]))


def _export_torch(job, graph, module, legacy=True, notes=None, strict=False):
    """The raw ONNX export of ``module``: the legacy exporter at the target opset for the decoder and
    encoder (``legacy``; else the dynamo exporter), the dynamo exporter (opset 18) for the traced
    latent gradient. ``notes`` collects the TorchScript tracer's warnings."""
    source = job.source
    # only a make_fx-traced gradient needs the dynamo exporter; a hand-written one exports like a decoder
    legacy = legacy and not isinstance(module, LatentGradModule)
    return onnx_tools.export_torch(module, source.example_inputs(graph, TRACE_BATCH), source.input_names(graph),
                                   source.output_names(graph), job.opset, graph, legacy=legacy,
                                   max_batch=job.max_batch, where=job.where, notes=notes, strict=strict)


# Tracing and exporting the gradient graph is the slow step (seconds); exporting one model for several
# targets in a process reuses the opset-18 graph, keyed by the weights, the model's code and the loss.
_TRACED = {}
_CACHE_SIZE = 8


def _prepare_latent_grad(job):
    """Trace the latent gradient before anything is exported (unless a graph for the same model is
    cached), so a model that cannot be traced fails first, with a sentence."""
    source = job.source
    lik = source.likelihood
    job.grad_key = (source.weights_sha256(), type(source.decoder.module).__qualname__, source.decoder.method,
                    type(lik).__qualname__, repr(sorted(vars(lik).items())), source.output_shape,
                    source.num_classes, job.max_batch, source.points and source.points["target_points"])
    if job.grad_key in _TRACED:
        return
    try:
        job.grad_module = source.trace_latent_grad(TRACE_BATCH)
    except JetgenError:
        raise
    except Exception as err:  # tracing raises many types; translate into one sentence
        raise trace_failure(err, "latent gradient", job.where)


def _traced_latent_grad(job):
    if job.grad_key not in _TRACED:
        if len(_TRACED) >= _CACHE_SIZE:
            _TRACED.pop(next(iter(_TRACED)))
        _TRACED[job.grad_key] = onnx_tools.simplify(_export_torch(job, "latent_grad", job.grad_module))
    return _TRACED[job.grad_key]


def _graph_precision(job, graph):
    if job.precision == "int8" and graph == "latent_grad":
        return "fp16"  # a quantised gradient is too coarse for latent optimisation
    return job.precision


def _export_graph(job, graph, directory):
    job.log("exporting {} ...".format(graph))
    fp32 = _build_fp32(job, graph)
    parity = measure_parity(job, graph, fp32)
    if not parity_ok(parity):
        raise _parity_failure(job, graph, parity)
    job.fp32[graph] = fp32
    precision = _graph_precision(job, graph)
    final = fp32
    if precision == "fp16":
        final = onnx_tools.to_fp16(fp32, graph)
    elif precision == "int8":
        final = onnx_tools.quantize_int8(fp32, graph, calibration_feeds(job.source, graph, job.calib_samples))
    if final is not fp32:
        parity = measure_parity(job, graph, final)
    onnx_tools.add_metadata(final, _metadata(job, graph, precision))
    job.final[graph] = final
    entry = _write_graph(job, graph, final, directory, precision, parity)
    entry["golden"] = write_golden(job.source, graph, directory, job.max_batch)
    return entry


def _write_graph(job, graph, proto, directory, precision, parity):
    fname = graph + ".onnx"
    path = os.path.join(directory, fname)
    atomic_write_bytes(path, proto.SerializeToString())
    ins, outs = job.source.interface(graph)
    return {
        "file": fname, "sha256": sha256_file(path), "bytes": os.path.getsize(path),
        "opset": onnx_tools.default_opset(proto), "precision": precision,
        "inputs": [{"name": n, "dtype": "float32", "shape": ["batch"] + list(s)} for n, s in ins],
        "outputs": [{"name": n, "dtype": "float32", "shape": ["batch"] + list(s)} for n, s in outs],
        "batch": {"min": 1, "opt": min(BATCH_OPT, job.max_batch), "max": job.max_batch},
        "parity": parity,
    }


def _metadata(job, graph, precision):

    source = job.source
    return {
        "jetgen.format": FORMAT, "jetgen.version": __version__, "jetgen.graph": graph,
        "jetgen.kind": source.kind, "jetgen.latent_dim": source.latent_dim,
        "jetgen.labels": json.dumps(source.labels), "jetgen.target": job.row["name"],
        "jetgen.precision": precision, "jetgen.checkpoint_sha256": source.provenance.get("checkpoint_sha256", ""),
    }


def _offline_check(job, directory):
    """The offline check's report on the finished bundle; an operator the target cannot run fails the
    export (other findings are reported, not enforced)."""
    report = check_model(directory, job.row["name"])
    refusal = unsupported_op_error(report, job.row, job.where)
    if refusal is not None:
        raise refusal
    return report
