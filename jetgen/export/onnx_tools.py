"""ONNX plumbing for export: torch to ONNX, simplify, down-convert opsets, TensorRT fixes, checks,
metadata, fp16 and int8 conversion. Every user-facing failure is a JetgenError sentence.

Two exporters, chosen by trying (torch 2.13): the legacy TorchScript exporter (``dynamo=False``) writes
the plain decoder and encoder directly at the target's opset in well under a second; the traced
latent-gradient graph only exports with ``dynamo=True``, which emits opset 18, so it is brought down
to the target's opset by ``downgrade`` (onnx.version_converter, or a table-driven relabel where the
converter lacks an adapter) and verified against the opset-18 graph.
"""
import re
import warnings

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from jetgen.errors import JetgenError

DYNAMO_OPSET = 18
# ops that must never appear in a bundle graph (randomness belongs to the runtime; FACTS.md)
RANDOM_OPS = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                        "Bernoulli", "Multinomial"})
# TensorRT 8.2 has no Reciprocal; post-processing rewrites it, so finding one afterwards is a bug
FORBIDDEN_OPS = RANDOM_OPS | {"Reciprocal"}


# ---------------------------------------------------------------- torch -> ONNX

def export_torch(module, args, input_names, output_names, opset, graph, legacy=True, max_batch=1024,
                 where="the model", notes=None, strict=False):
    """Export ``module(*args)`` to an ONNX ModelProto with a dynamic axis 0 named "batch".

    ``legacy`` tries the TorchScript exporter at ``opset`` first and falls back to the dynamo
    exporter (opset 18, then ``downgrade``). Raises JetgenError naming the op (and what in
    ``where``, the model's description, it comes from) when neither works. ``notes``, a list, receives
    the TorchScript tracer's warnings as (file, line, message): where a trace may have baked a Python
    value (a batch size from len(x)) into the graph. ``strict``: the dynamo exporter reads the Python
    code (torch.export strict mode), so len(x) and x.size(0) stay symbolic in the batch.
    """
    errors = []
    if legacy:
        try:
            return _export_legacy(module, args, input_names, output_names, opset, notes)
        except Exception as err:  # the exporters raise many types; report them as one sentence
            errors.append(err)
    try:
        model = _export_dynamo(module, args, input_names, output_names, max_batch, strict)
    except Exception as err:
        from jetgen.export.refusals import export_failure

        errors.append(err)
        raise export_failure(errors, graph, opset, where)
    return model


# messages in which an exporter says it has no translation for an op (and names it); an aten op named
# in any other message (a tracing error, a fake-tensor assertion) is not a missing translation
_UNSUPPORTED_PATTERNS = (
    r"Exporting the operator '([^']+)' to ONNX opset version \d+ is not supported",
    r"No ONNX function found for <OpOverload\(op='([^']+)'",
    r"[Uu]nsupported(?: FX)? nodes?: .*?\b((?:aten|prims)(?:::|\.)[A-Za-z0-9_]+)",
)


def describe_export_error(*errors):
    """A one-line account of exporter errors: "operation X has no ONNX translation" only when an
    exporter says so, else the last error's first line."""
    texts = [re.sub(r"\x1b\[[0-9;]*m", "", str(err)) for err in errors]
    for pattern in _UNSUPPORTED_PATTERNS:
        for text in texts:
            found = re.search(pattern, text)
            if found:
                return "operation {} has no ONNX translation".format(found.group(1))
    text = texts[-1] if texts else ""
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(errors[-1]).__name__)
    return first if len(first) <= 300 else first[:300] + "..."


def _export_legacy(module, args, input_names, output_names, opset, notes=None):
    import io

    import torch

    buf = io.BytesIO()
    axes = {name: {0: "batch"} for name in list(input_names) + list(output_names)}
    with warnings.catch_warnings(record=True) as caught, _quiet_fds():
        warnings.simplefilter("always")
        torch.onnx.export(module, tuple(args), buf, dynamo=False, opset_version=opset,
                          input_names=list(input_names), output_names=list(output_names),
                          dynamic_axes=axes, do_constant_folding=True)
    if notes is not None:
        notes.extend((w.filename, w.lineno, str(w.message)) for w in caught
                     if getattr(w.category, "__name__", "") == "TracerWarning")
    return onnx.load_from_string(buf.getvalue())


def _export_dynamo(module, args, input_names, output_names, max_batch, strict=False):
    import contextlib
    import io
    import logging

    import torch

    batch = torch.export.Dim("batch", min=1, max=max(int(max_batch), 2))
    dynamic = tuple({0: batch} for _ in args)
    quiet = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
            warnings.simplefilter("ignore")
            if strict:  # torch.export reads the bytecode: len(x) stays a symbol (non-strict specialises it)
                module, dynamic = torch.export.export(module, tuple(args), dynamic_shapes=dynamic, strict=True), None
            program = torch.onnx.export(module, tuple(args), dynamo=True, opset_version=DYNAMO_OPSET,
                                        input_names=list(input_names), output_names=list(output_names),
                                        dynamic_shapes=dynamic, optimize=True, verbose=False, report=False)
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    model = program.model_proto
    _rename_batch_dims(model)
    return model


def _rename_batch_dims(model):
    """Name the dynamic axis 0 of every interface tensor "batch" (the dynamo exporter may say "s0")."""
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"


# ---------------------------------------------------------------- simplify, down-convert, fix

def simplify(model):
    """Constant-fold and simplify with onnxslim; the input model is returned if slimming fails."""
    try:
        import onnxslim
    except ImportError:
        return model
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slim = onnxslim.slim(model)
    except Exception:  # onnxslim is an optimisation; never fail an export because of it
        return model
    return slim if isinstance(slim, onnx.ModelProto) else model


def default_opset(model):
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    raise JetgenError("The exported graph imports no default ONNX opset.")


def downgrade(model, opset, graph="model"):
    """Return ``model`` converted to default-domain ``opset`` (<= its own).

    Tries onnx.version_converter; where that lacks an adapter (e.g. Identity 16, Shape 15) the graph
    is relabelled op by op: ops whose schema is the same at both versions pass unchanged, known
    changes are rewritten (Shape start/end, Split num_outputs, Reduce* axes inputs, Reshape
    allowzero, BatchNormalization training_mode), anything else raises JetgenError naming the op.
    """
    source = default_opset(model)
    if source == opset:
        return model
    if source < opset:
        raise JetgenError("The {} graph has opset {} but opset {} was asked for; only down-conversion is "
                          "supported.".format(graph, source, opset))
    try:
        from onnx import version_converter

        converted = version_converter.convert_version(model, opset)
        onnx.checker.check_model(converted)
        return set_min_ir_version(converted)
    except Exception:
        pass
    return relabel(model, opset, graph)


_REDUCE_AXES_18 = ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                   "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")


def relabel(model, opset, graph="model"):
    """Down-convert by rewriting the few ops whose schema changed (see ``downgrade``)."""
    model = _copy(model)
    source = default_opset(model)
    shapes = _static_shapes(_infer(model))
    consts = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(attr.t)
    new_nodes, new_inits = [], []
    for node in model.graph.node:
        nodes, inits = _relabel_node(node, graph, source, opset, shapes, consts)
        new_nodes.extend(nodes)
        new_inits.extend(inits)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    model.graph.initializer.extend(new_inits)
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            imp.version = opset
    set_min_ir_version(model)
    return model


def _relabel_node(node, graph, source, opset, shapes, consts):
    """([nodes], [initializers]) expressing ``node`` at ``opset``; JetgenError when no rule can."""
    from onnx import defs

    if node.domain not in ("", "ai.onnx"):
        return [node], []
    try:
        src = defs.get_schema(node.op_type, source)
        dst = defs.get_schema(node.op_type, opset)
    except Exception:
        raise JetgenError("The {} graph uses {}, which does not exist at opset {}; export for a target "
                          "with a newer TensorRT.".format(graph, node.op_type, opset))
    if src.since_version == dst.since_version:
        return [node], []
    op = node.op_type
    attrs = {a.name: a for a in node.attribute}
    if op == "Shape" and ("start" in attrs or "end" in attrs):
        return _shape_as_slice(node, attrs)
    if op == "Split" and "num_outputs" in attrs and opset < 18:
        return _split_with_sizes(node, attrs, graph, opset, shapes)
    if op in _REDUCE_AXES_18 and opset < 18:
        kept = [a for a in node.attribute if a.name != "noop_with_empty_axes"]
        extra = []
        if len(node.input) > 1 and node.input[1]:
            if node.input[1] not in consts:
                raise JetgenError("The {} graph's {} has axes computed at run time; cannot express it at "
                                  "opset {}.".format(graph, op, opset))
            extra = [helper.make_attribute("axes", [int(v) for v in consts[node.input[1]].ravel()])]
        return [_remake(node, [node.input[0]], kept + extra)], []
    if op == "Reshape" and opset < 14 and "allowzero" in attrs:
        # allowzero=1 differs from the old semantics only for a 0 in the shape; a run-time shape
        # comes from real (non-empty, batch >= 1) tensors, so only a constant 0 matters
        shape_const = consts.get(node.input[1])
        if helper.get_attribute_value(attrs["allowzero"]) and shape_const is not None and (shape_const == 0).any():
            raise JetgenError("The {} graph reshapes with allowzero=1 to a shape with a 0, which opset {} "
                              "cannot express.".format(graph, opset))
        return [_remake(node, list(node.input), [a for a in node.attribute if a.name != "allowzero"])], []
    if op == "BatchNormalization" and "training_mode" in attrs:
        if helper.get_attribute_value(attrs["training_mode"]):
            raise JetgenError("The {} graph holds a BatchNormalization in training mode.".format(graph))
        return [_remake(node, list(node.input), [a for a in node.attribute if a.name != "training_mode"])], []
    # a schema change that only widened types or added defaults: keep the node if it fits
    dst_attrs = set(dst.attributes)
    max_inputs = len(dst.inputs) if not any(
        i.option == defs.OpSchema.FormalParameterOption.Variadic for i in dst.inputs) else 1 << 30
    if set(attrs) - dst_attrs or len([i for i in node.input if i]) > max_inputs:
        raise JetgenError("The {} graph uses {} in a form (attributes {}) that opset {} does not have, and "
                          "jetgen has no rule to rewrite it; export for a target with a newer TensorRT."
                          .format(graph, op, sorted(set(attrs) - dst_attrs) or "-", opset))
    return [node], []


def _shape_as_slice(node, attrs):
    """Shape(start, end) (opset 15) as Shape then Slice."""
    start = helper.get_attribute_value(attrs["start"]) if "start" in attrs else 0
    end = helper.get_attribute_value(attrs["end"]) if "end" in attrs else np.iinfo(np.int64).max
    full = node.output[0] + "__full_shape"
    names = [node.output[0] + s for s in ("__starts", "__ends", "__axes")]
    inits = [numpy_helper.from_array(np.array([value], np.int64), name)
             for name, value in zip(names, (start, end, 0))]
    nodes = [helper.make_node("Shape", [node.input[0]], [full], name=node.name),
             helper.make_node("Slice", [full] + names, [node.output[0]], name=node.name + "_slice")]
    return nodes, inits


def _split_with_sizes(node, attrs, graph, opset, shapes):
    """Split(num_outputs) (opset 18) as Split with a constant sizes input."""
    axis = helper.get_attribute_value(attrs["axis"]) if "axis" in attrs else 0
    shape = shapes.get(node.input[0])
    n = helper.get_attribute_value(attrs["num_outputs"])
    if shape is None or shape[axis] is None:
        raise JetgenError("The {} graph splits a tensor of unknown size; cannot express it at opset {}."
                          .format(graph, opset))
    size = shape[axis]
    chunk = -(-size // n)
    parts = [min(chunk, size - i * chunk) for i in range(n)]
    name = node.output[0] + "__split"
    init = numpy_helper.from_array(np.array(parts, np.int64), name)
    return [helper.make_node("Split", [node.input[0], name], list(node.output), name=node.name, axis=axis)], [init]


def _remake(node, inputs, attributes):
    new = helper.make_node(node.op_type, inputs, list(node.output), name=node.name, domain=node.domain)
    new.attribute.extend(attributes)
    return new


def _copy(model):
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _infer(model):
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:
        return model


def _static_shapes(model):
    shapes = {}
    for value in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def set_min_ir_version(model):
    """Lower the IR version to the oldest one that knows the model's opsets, so older runtimes
    (ONNX Runtime 1.11 on JetPack 4) can read it."""
    try:
        ir = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    except TypeError:
        ir = helper.find_min_ir_version_for(list(model.opset_import))
    model.ir_version = max(int(ir), 7)
    return model


def trt_fixes(model):
    """Rewrite what TensorRT 8.2's parser rejects: Reciprocal(x) -> Div(1, x); Constant nodes that hold
    tensors become initializers (ConvTranspose weights must be initializers). Returns a new model."""
    model = _copy(model)
    nodes, inits, one = [], [], None
    for node in model.graph.node:
        if node.op_type == "Reciprocal" and node.domain in ("", "ai.onnx"):
            if one is None:
                one = "jetgen_const_one"
                inits.append(numpy_helper.from_array(np.array(1.0, np.float32), one))
            nodes.append(helper.make_node("Div", [one, node.input[0]], list(node.output), name=node.name))
            continue
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1 \
                and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            inits.append(tensor)
            continue
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    return model


# ---------------------------------------------------------------- checks and metadata

def op_types(model):
    return sorted({n.op_type for n in model.graph.node})


def check(model, graph, opset=None, io_float=True):
    """onnx.checker (full) and strict shape inference; interfaces float32 with axis 0 dynamic; no
    Random*/Reciprocal; the default opset at most ``opset``. Raises JetgenError."""
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as err:
        raise JetgenError("The exported {} graph fails the ONNX checker ({}); this is a jetgen bug, please "
                          "report it.".format(graph, str(err).splitlines()[0][:300]))
    bad = sorted(FORBIDDEN_OPS & set(op_types(model)))
    if bad:
        raise JetgenError("The exported {} graph contains {}, which the runtime and TensorRT 8.2 do not "
                          "accept.".format(graph, ", ".join(bad)))
    if opset is not None and default_opset(model) > opset:
        raise JetgenError("The {} graph has opset {} but the target accepts at most {}.".format(
            graph, default_opset(model), opset))
    if io_float:
        for value in list(model.graph.input) + list(model.graph.output):
            if value.type.tensor_type.elem_type != TensorProto.FLOAT:
                raise JetgenError("The {} graph's interface tensor {!r} is {}, not float32.".format(
                    graph, value.name, TensorProto.DataType.Name(value.type.tensor_type.elem_type)))


def add_metadata(model, props):
    """Add (or replace) metadata_props entries; unlike helper.set_model_props nothing else is wiped."""
    existing = {p.key: p for p in model.metadata_props}
    for key, value in props.items():
        if key in existing:
            existing[key].value = str(value)
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, str(value)
    return model


def interface(model):
    """[(name, shape)] of inputs and outputs, a shape listing ints and dim names."""
    def describe(values):
        out = []
        for v in values:
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                    for d in v.type.tensor_type.shape.dim]
            out.append((v.name, dims))
        return out
    inits = {i.name for i in model.graph.initializer}
    return describe([i for i in model.graph.input if i.name not in inits]), describe(model.graph.output)


# ---------------------------------------------------------------- running

def session(model, quiet=False):
    """An ONNX Runtime CPU session for a ModelProto (or serialized bytes); ``quiet``: its errors are
    not logged (the caller reports them)."""
    import onnxruntime as ort

    data = model if isinstance(model, bytes) else model.SerializeToString()
    opts = ort.SessionOptions()
    opts.log_severity_level = 4 if quiet else 3
    opts.intra_op_num_threads = 2
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy threads after a run
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def run(sess, feeds, batch_size=256):
    """Run ``sess`` on numpy ``feeds`` (name -> array) in batches; returns the outputs as arrays."""
    names = [o.name for o in sess.get_outputs()]
    n = len(next(iter(feeds.values())))
    parts = []
    for start in range(0, n, batch_size):
        chunk = {k: np.ascontiguousarray(v[start:start + batch_size], dtype=np.float32) for k, v in feeds.items()}
        parts.append(sess.run(names, chunk))
    return [np.concatenate([p[i] for p in parts]) for i in range(len(names))]


# ---------------------------------------------------------------- reduced precision

def to_fp16(model, graph):
    """fp16 weights and arithmetic with float32 interfaces (Cast at the edges), checked.

    Tries onnxconverter_common's convert_float_to_float16(keep_io_types=True); on the gradient graphs
    it produces mixed-type nodes (a constant shared by several ops keeps float32 for some of them), so
    when its result fails the checker ``cast_to_fp16`` below is used instead. Raises JetgenError when
    neither result checks.
    """
    try:
        from onnxconverter_common import float16

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            half = float16.convert_float_to_float16(_copy(model), keep_io_types=True)
        check(half, graph + " (fp16)")
        return half
    except Exception:
        pass
    half = cast_to_fp16(model)
    check(half, graph + " (fp16)")
    return half


# ops kept in float32 inside an fp16 graph: summed losses keep their precision
KEEP_FP32 = frozenset({"ReduceSum"})


def cast_to_fp16(model):
    """Every float tensor inside the graph becomes float16: initializers, Constant/ConstantOfShape
    values, Cast targets. Float inputs are cast to fp16 on entry, float outputs back to float32 on
    exit, and KEEP_FP32 ops run in float32 between casts."""
    model = _copy(model)
    g = model.graph
    fp16_max = float(np.finfo(np.float16).max)
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT:
            arr = np.clip(numpy_helper.to_array(init), -fp16_max, fp16_max).astype(np.float16)
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    nodes = []
    inputs = {v.name for v in g.input if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    renamed = {name: name + "__fp16" for name in inputs}
    for name in sorted(inputs):
        nodes.append(helper.make_node("Cast", [name], [renamed[name]], name=name + "__to_fp16",
                                      to=TensorProto.FLOAT16))
    outputs = {v.name for v in g.output if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    out_renamed = {name: name + "__fp16" for name in outputs}
    for node in g.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
        for i, name in enumerate(node.output):
            if name in out_renamed:
                node.output[i] = out_renamed[name]
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
            if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                arr = numpy_helper.to_array(attr.t).astype(np.float16)
                attr.t.CopyFrom(numpy_helper.from_array(arr, attr.t.name))
        if node.op_type in KEEP_FP32:
            data = node.input[0]
            wide, narrow = data + "__fp32_" + node.name, node.output[0]
            nodes.append(helper.make_node("Cast", [data], [wide], name=node.name + "__in32", to=TensorProto.FLOAT))
            node.input[0] = wide
            node.output[0] = narrow + "__fp32"
            nodes.append(node)
            nodes.append(helper.make_node("Cast", [node.output[0]], [narrow], name=node.name + "__out16",
                                          to=TensorProto.FLOAT16))
            continue
        nodes.append(node)
    for name in sorted(outputs):
        nodes.append(helper.make_node("Cast", [out_renamed[name]], [name], name=name + "__to_fp32",
                                      to=TensorProto.FLOAT))
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    return _infer(model)


class _FeedReader(object):
    """A CalibrationDataReader over a list of feed dicts."""

    def __init__(self, feeds):
        self.feeds = list(feeds)
        self.pos = 0

    def get_next(self):
        if self.pos >= len(self.feeds):
            return None
        self.pos += 1
        return self.feeds[self.pos - 1]

    def rewind(self):
        self.pos = 0


def quantize_int8(model, graph, calib_feeds, per_channel=True):
    """Static int8 QDQ quantisation (symmetric, as TensorRT wants) calibrated on ``calib_feeds``
    (a list of feed dicts from real data). Interfaces stay float32. Raises JetgenError."""
    import os
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(_FeedReader, CalibrationDataReader):
        pass

    with tempfile.TemporaryDirectory(prefix="jetgen-int8-") as tmp:
        src, dst = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(model, src)
        try:
            with warnings.catch_warnings(), _quiet_root_logger():
                warnings.simplefilter("ignore")
                quantize_static(src, dst, Reader(calib_feeds), quant_format=QuantFormat.QDQ,
                                per_channel=per_channel, activation_type=QuantType.QInt8,
                                weight_type=QuantType.QInt8,
                                op_types_to_quantize=["Conv", "ConvTranspose", "Gemm", "MatMul"],
                                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
        except Exception as err:
            raise JetgenError("int8 calibration of the {} graph failed: {}.".format(
                graph, str(err).splitlines()[0][:300] if str(err) else type(err).__name__))
        quant = onnx.load(dst)
    set_min_ir_version(quant)
    check(quant, graph + " (int8)")
    return quant


class _quiet_fds(object):
    """Send file descriptors 1 and 2 to /dev/null inside the block: the TorchScript exporter's C++
    logger dumps the whole IR graph to stdout when an export fails (torch 2.13 turns it on
    unconditionally), which would bury the one-sentence error and break --json output."""

    def __enter__(self):
        import os
        import sys

        self.saved = []
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            self.saved = [(fd, os.dup(fd)) for fd in (1, 2)]
        except (OSError, ValueError, AttributeError):  # no real descriptors (closed, pythonw): nothing to hide
            return
        null = os.open(os.devnull, os.O_WRONLY)
        for fd, _ in self.saved:
            os.dup2(null, fd)
        os.close(null)

    def __exit__(self, *exc):
        import os

        for fd, saved in self.saved:
            os.dup2(saved, fd)
            os.close(saved)
        return False


class _quiet_root_logger(object):
    """Silence the root logger inside the block: onnxruntime's quantiser logs "Please consider to run
    pre-processing" through it, and logging.warning() on a bare root would also install a handler."""

    def __enter__(self):
        import logging

        self.root = logging.getLogger()
        self.level, self.null = self.root.level, logging.NullHandler()
        self.root.addHandler(self.null)
        self.root.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.root.removeHandler(self.null)
        self.root.setLevel(self.level)
        return False


# INT64 values a TensorRT before 10 may clamp to INT32 without changing the graph's meaning: the
# "to the end" sentinels of Slice bounds
_INT64_SENTINELS = (np.iinfo(np.int64).max, np.iinfo(np.int64).min, np.iinfo(np.int64).min + 1)


def int64_constants_fit_int32(model):
    """True when every INT64 constant (initializers and Constant nodes) fits in INT32 or is a Slice
    "to the end" sentinel, so a TensorRT that casts INT64 to INT32 computes the same graph (the
    INT64 tensors computed inside an exported graph are shapes, far below 2^31)."""
    arrays = [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == TensorProto.INT64]
    for node in model.graph.node:
        if node.op_type == "Constant":
            arrays.extend(numpy_helper.to_array(a.t) for a in node.attribute
                          if a.name == "value" and a.t.data_type == TensorProto.INT64)
    info = np.iinfo(np.int32)
    for arr in arrays:
        values = arr.ravel()
        values = values[~np.isin(values, _INT64_SENTINELS)]
        if values.size and (values.min() < info.min or values.max() > info.max):
            return False
    return True
