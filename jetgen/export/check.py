"""Offline deployability check: will this bundle or .onnx build and run with TensorRT on a target?

No TensorRT needed. The checks read the graph, the target row (jetgen.runtime.targets) and the
parser's support tables (jetgen.export.parser_tables):
- opset of the default domain against the target's range; ops from other domains;
- each op against the parser of the target's TensorRT version, inputs it needs constant, the
  attribute and value limits of its importer (Resize modes, ConvTranspose rank, QDQ zero points,
  TopK's sorted and K: ``parser_tables.ATTRIBUTE_LIMITS``), INT64 tensors (cast and clamped to INT32 before TensorRT 9), randomness inside the graph;
- dynamic dimensions: only axis 0 (batch) may be dynamic, and it needs a batch range;
- precision against the hardware (int8 on Nano/TX2), fp16 range of the weights and, given a
  calibration array, of the activations; QDQ ops;
- memory: weights + activations at the largest batch + TensorRT workspace against the board.

A report is a plain dict (JSON-ready):
``{"target": name, "deployable": bool, "findings": [finding, ...], "memory": {...}}``, each finding
``{"severity": "error"|"warning"|"info", "graph", "where", "what", "fix"}``. Deployable means no
finding is an error.
"""
import os
import textwrap

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from jetgen import spec
from jetgen.digest import sha256_file
from jetgen.errors import JetgenError
from jetgen.export import parser_tables as trt_support
from jetgen.runtime.targets import get_target, trt_major_minor

PRECISIONS = spec.PRECISIONS
FP16_MAX = 65504.0
FP16_MIN_NORMAL = 6.1e-5  # 2**-14; below it fp16 goes subnormal (less precision) then to zero
# Tiny weights are a warning from this share on, an info row below it (a few are harmless).
TINY_WEIGHTS_WARN_SHARE = 0.01
# Batch range assumed for a single .onnx with a dynamic batch axis and no --max-batch.
DEFAULT_BATCH = {"min": 1, "opt": 64, "max": 64}
# Share of board memory one bundle may take. Jetson memory is shared by CPU, GPU and the OS; on
# the 4 GB Nano (and the TX2 with the same desktop JetPack 4) half is what is left in practice.
MEMORY_BUDGET_SHARE = {"nano": 0.5, "tx2": 0.5}
DEFAULT_MEMORY_BUDGET_SHARE = 0.75
MEMORY_RULE = ("estimate = weights + activations at the largest batch (sum of every intermediate "
               "tensor: an upper bound, TensorRT reuses memory) + the target's TensorRT workspace, "
               "for all graphs together; error above {:.0%} of the board's {:.1f} GB")


def finding(severity, graph, where, what, fix=""):
    """One row of a report."""
    assert severity in ("error", "warning", "info")
    return {"severity": severity, "graph": graph, "where": where, "what": what, "fix": fix}


def check_model(path, target, precision=None, max_batch=None, calib=None):
    """Check a bundle directory or a single .onnx file against ``target`` (a name in TARGETS).

    ``precision`` ("fp32", "fp16", "int8") overrides the manifest's; ``max_batch`` overrides the
    batch range's maximum (single .onnx: the range becomes 1..max_batch); ``calib`` is a .npy array
    for the first input of a single .onnx, run through onnxruntime to find activations beyond fp16.
    Returns a report dict (see the module docstring). Raises JetgenError for an unknown target or
    precision, a missing or unreadable file, or a malformed manifest.
    """
    row = get_target(target)
    if precision is not None and precision not in PRECISIONS:
        raise JetgenError("Unknown precision {!r}; choose one of: {}.".format(
            precision, ", ".join(PRECISIONS)))
    if max_batch is not None and (not isinstance(max_batch, int) or max_batch < 1):
        raise JetgenError("--max-batch must be a whole number of at least 1, not {!r}.".format(max_batch))
    if os.path.isdir(path):
        findings, memories = _check_bundle(path, row, precision, max_batch)
    elif os.path.isfile(path):
        if calib is not None and not os.path.isfile(calib):
            raise JetgenError("No calibration array at {}; pass a .npy file saved with numpy.save.".format(calib))
        name = os.path.basename(path)
        if max_batch is None:
            batch, required = None, False
        else:
            batch, required = {"min": 1, "opt": max_batch, "max": max_batch}, True
        model = load_onnx(path)
        prec = precision or "fp32"
        findings, mem = check_graph(model, row, name, prec, batch, batch_required=required, calib=calib)
        memories = {name: mem}
    else:
        raise JetgenError("Nothing at {}; give a bundle directory (NAME.jetgen/) or an .onnx file.".format(path))
    memory, mem_findings = _judge_memory(memories, row)
    findings.extend(mem_findings)
    order = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: order[f["severity"]])  # stable: keeps graph order within a severity
    deployable = not any(f["severity"] == "error" for f in findings)
    return {"target": row["name"], "deployable": deployable, "findings": findings, "memory": memory}


def load_onnx(path):
    """Load an ONNX model; raise JetgenError with one sentence when it is missing or unreadable."""
    if not os.path.isfile(path):
        raise JetgenError("No ONNX file at {}; check the path or re-export the model.".format(path))
    try:
        model = onnx.load(path)
    except Exception as err:  # protobuf raises several types on corrupt input
        raise JetgenError("{} is not a readable ONNX model ({}); re-export it.".format(
            path, str(err).splitlines()[0] if str(err) else type(err).__name__))
    if model.ir_version == 0 or not model.graph.output:
        raise JetgenError("{} is not a readable ONNX model (no IR version or no outputs); "
                          "re-export it.".format(path))
    return model


def check_graph(model, target_row, graph="model", precision="fp32", batch=None,
                batch_required=False, calib=None, reexport=None):
    """Check one ONNX ``model`` (ModelProto) for ``target_row`` (jetgen.runtime.targets.get_target).

    ``batch`` is {"min", "opt", "max"} or None; with a dynamic batch axis and no range, it is an
    error when ``batch_required`` (bundles) and otherwise a warning assuming DEFAULT_BATCH.
    ``reexport`` is the command that re-exports a jetgen bundle (its fixes name it instead of
    torch.onnx.export).
    Returns (findings, memory) where memory is this graph's {"weights_bytes", "activation_bytes",
    "batch", "unknown_tensors"}.
    """
    findings = []
    add = lambda sev, where, what, fix="": findings.append(finding(sev, graph, where, what, fix))
    trt = trt_major_minor(target_row["tensorrt"])
    key = trt_support.table_key(*trt)
    if key is None:
        raise JetgenError("No ONNX parser table for TensorRT {}; add one to jetgen/export/"
                          "trt_support.py.".format(target_row["tensorrt"]))
    trt_name = "TensorRT {}".format(target_row["tensorrt"])

    try:
        onnx.checker.check_model(model)
    except Exception as err:
        add("warning", "model", "the ONNX checker rejects the graph: {}".format(
            str(err).splitlines()[0] if str(err) else type(err).__name__),
            "re-export the model; TensorRT may reject it too")

    opset = _check_opset(model, target_row, add, reexport)
    _report_requirements(model, opset, add)
    constants = _constant_names(model.graph)
    _check_ops(model.graph, key, trt_name, constants, target_row, opset, precision, add)
    _check_attributes(model.graph, key, trt_name, add)

    batch = _check_dims(model.graph, batch, batch_required, add)
    inferred = _infer_with_batch(model, batch["max"] if batch else 1, add)
    if trt < trt_support.INT64_NATIVE_FROM:
        _check_int64(model.graph, inferred, trt_name, add)
    _check_precision(model, target_row, precision, add)
    if calib is not None:
        _check_calibration(model, inferred, calib, precision, add)
    memory = _estimate_memory(model, inferred)
    memory["batch"] = batch["max"] if batch else None
    return findings, memory


# -- the individual checks ----------------------------------------------------------------------

def _report_requirements(model, opset, add):
    """An info row: the oldest ONNX Runtime and TensorRT that load this graph (jetgen.spec's table)."""
    needs = spec.runtime_requirements(opset or 1, model.ir_version)
    add("info", "runtime versions", "needs ONNX Runtime >= {} and TensorRT >= {} (opset {}, IR version {})".format(
        needs["onnxruntime"] or "(newer than the table)", needs["tensorrt"] or "(newer than the table)", opset,
        model.ir_version) + "".join("; " + note for note in needs["notes"]),
        "from the table in jetgen/spec.py; the runtime refuses older versions before loading")


def _check_opset(model, row, add, reexport=None):
    opset = None
    for imp in model.opset_import:
        if imp.domain in trt_support.DEFAULT_DOMAINS:
            opset = imp.version
    if opset is None:
        add("error", "opset_import", "the graph declares no default-domain opset",
            "re-export with an explicit opset")
        return 0
    if not row["opset_min"] <= opset <= row["opset_max"]:
        wanted = min(max(opset, row["opset_min"]), row["opset_max"])
        add("error", "opset {}".format(opset),
            "opset {} is outside {}..{} accepted by the TensorRT {} ONNX parser on {}".format(
                opset, row["opset_min"], row["opset_max"], row["tensorrt"], row["name"]),
            "re-export for this board: {} (opset {})".format(reexport, wanted) if reexport else
            "re-export with opset {} (torch.onnx.export(..., opset_version={}))".format(wanted, wanted))
    return opset


def _walk_nodes(graph):
    """Every node of ``graph`` and of its subgraphs (If/Loop/Scan bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                for sub in _walk_nodes(attr.g):
                    yield sub
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    for sub in _walk_nodes(g):
                        yield sub


def _walk_graphs(graph):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for g in subs:
                for sub in _walk_graphs(g):
                    yield sub


def _constant_names(graph):
    """Names of tensors known at build time: initializers and Constant node outputs."""
    names = set()
    for g in _walk_graphs(graph):
        names.update(init.name for init in g.initializer)
    for node in _walk_nodes(graph):
        if node.op_type == "Constant" and node.domain in trt_support.DEFAULT_DOMAINS:
            names.update(node.output)
    return names


def _node_where(node):
    return "{} ({})".format(node.name or (node.output[0] if node.output else "?"), node.op_type)


def _check_ops(graph, key, trt_name, constants, row, opset, precision, add):
    supported = trt_support.SUPPORTED_OPS[key]["ops"]
    const_inputs = trt_support.CONSTANT_INPUTS.get(key, {})
    qdq = []
    for node in _walk_nodes(graph):
        where = _node_where(node)
        op = node.op_type
        if node.domain not in trt_support.DEFAULT_DOMAINS:
            add("error", where, "op from domain '{}' has no {} ONNX parser support (needs a "
                "TensorRT plugin)".format(node.domain, trt_name),
                "export without runtime-specific (e.g. ONNX Runtime) optimisation or quantisation; "
                "for int8 use QuantizeLinear/DequantizeLinear at opset 13+")
            continue
        if op in trt_support.QDQ_OPS:
            qdq.append(node)
        if op not in supported:
            add("error", where, "{} is not supported by the {} ONNX parser".format(op, trt_name),
                trt_support.REWRITES.get(op, "rewrite the model so the export avoids {}".format(op)))
            continue
        if op in trt_support.RANDOM_OPS:
            add("warning", where, "random numbers drawn inside the graph (seed ignored by TensorRT)",
                trt_support.REWRITES.get(op, "draw the noise in the runtime and pass it in"))
        for index, label in const_inputs.get(op, ()):
            if len(node.input) > index and node.input[index] and node.input[index] not in constants:
                add("error", where, "input '{}' ({}) must be an initializer or Constant for the {} "
                    "parser, but is computed in the graph".format(label, node.input[index], trt_name),
                    "make {} a constant (bake it into the weights) before export".format(label))
    if qdq:
        where = "{} QDQ nodes (e.g. {})".format(len(qdq), _node_where(qdq[0]))
        if opset and opset < trt_support.QDQ_MIN_OPSET:
            add("error", where, "QuantizeLinear/DequantizeLinear need opset >= {} for TensorRT, the "
                "graph has opset {}".format(trt_support.QDQ_MIN_OPSET, opset),
                "re-export or re-quantise at opset 13 or later")
        if not row["int8"]:
            add("error", where, "int8 (QDQ) ops in the graph, but {} has no int8 support".format(
                row["board"]), "export an fp32 or fp16 bundle for {}".format(row["name"]))
        elif precision != "int8":
            add("warning", where, "the graph is quantised (QDQ) but the precision is {}".format(precision),
                "build with precision int8 or export the graph without QDQ ops")


def _constant_values(graph):
    """name -> numpy array of every initializer and Constant node output (with a ``value`` tensor)."""
    values = {}
    for g in _walk_graphs(graph):
        for init in g.initializer:
            values[init.name] = numpy_helper.to_array(init)
    for node in _walk_nodes(graph):
        if node.op_type == "Constant" and node.domain in trt_support.DEFAULT_DOMAINS and node.output:
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _attribute(node, name, default):
    for attr in node.attribute:
        if attr.name == name:
            value = onnx.helper.get_attribute_value(attr)
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return default


def _spatial_dims(node, values):
    """The spatial rank of a convolution-like node: len(kernel_shape), else its weight's rank - 2; None
    when neither is known."""
    kernel = _attribute(node, "kernel_shape", None)
    if kernel:
        return len(kernel)
    weight = values.get(node.input[1]) if len(node.input) > 1 else None
    return weight.ndim - 2 if weight is not None else None


def _input_value(node, index, values):
    return values.get(node.input[index]) if len(node.input) > index and node.input[index] else None


def _rule_problem(rule, node, values):
    """What breaks ``rule`` (a parser_tables.ATTRIBUTE_LIMITS entry) in ``node``, or None."""
    kind = rule["kind"]
    if kind in ("attr_in", "attr_equals"):
        value = _attribute(node, rule["attr"], rule["default"])
        ok = value in rule["allowed"] if kind == "attr_in" else value == rule["value"]
        if not ok:
            wanted = ", ".join(rule["allowed"]) if kind == "attr_in" else repr(rule["value"])
            return "{}={!r} is not imported (allowed: {})".format(rule["attr"], value, wanted)
    elif kind == "spatial_dims":
        dims = _spatial_dims(node, values)
        if dims is not None and dims not in rule["allowed"]:
            return "a {}-D {} is not imported (allowed: {}-D)".format(
                dims, node.op_type, "/".join(str(d) for d in rule["allowed"]))
    elif kind == "zero_point":
        value = _input_value(node, rule["input"], values)
        if value is not None and np.any(np.asarray(value) != 0):
            return "zero point {} is not 0".format(np.asarray(value).reshape(-1)[:4].tolist())
    elif kind == "const_at_most":
        value = _input_value(node, rule["input"], values)
        if value is not None and np.asarray(value).size and int(np.max(value)) > rule["max"]:
            return "{} {} is above the limit of {}".format(node.input[rule["input"]], int(np.max(value)), rule["max"])
    else:
        raise ValueError("unknown rule kind {!r} in parser_tables.ATTRIBUTE_LIMITS".format(kind))
    return None


def _check_attributes(graph, key, trt_name, add):
    """An error per node that breaks an attribute or value limit of the target's parser table."""
    limits = trt_support.ATTRIBUTE_LIMITS.get(key, {})
    if not limits:
        return
    values = _constant_values(graph)
    for node in _walk_nodes(graph):
        if node.domain not in trt_support.DEFAULT_DOMAINS:
            continue
        for rule in limits.get(node.op_type, ()):
            problem = _rule_problem(rule, node, values)
            if problem:
                add("error", _node_where(node), "{}: {} for the {} ONNX parser ({})".format(
                    node.op_type, problem, trt_name, rule["why"]), rule["fix"])


def _shape_of(value_info):
    """List of dims (int or None for dynamic) or None when the rank is unknown."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]


def _check_dims(graph, batch, batch_required, add):
    """Dynamic dimension rules; returns the batch range to use (None when the batch is static)."""
    initializers = set(init.name for init in graph.initializer)
    dynamic_batch = []
    for inp in graph.input:
        if inp.name in initializers:
            continue
        shape = _shape_of(inp)
        if shape is None:
            add("error", "input {}".format(inp.name), "the input has no known rank/shape",
                "export with an explicit input shape (axis 0 named 'batch', others fixed)")
            continue
        for axis, dim in enumerate(shape):
            if dim is not None:
                continue
            if axis == 0:
                dynamic_batch.append(inp.name)
            else:
                add("error", "input {}".format(inp.name),
                    "axis {} is dynamic; TensorRT's optimisation profile only gets a range for the "
                    "batch axis".format(axis),
                    "export with axis {} fixed (only axis 0, 'batch', may be dynamic)".format(axis))
    if not dynamic_batch:
        return None  # a fixed batch needs no profile; the graph's own shapes give the memory
    names = ", ".join(dynamic_batch)
    if batch is None:
        if batch_required:
            add("error", "input {}".format(names), "dynamic batch axis but the manifest gives no "
                "batch range", "add \"batch\": {\"min\": 1, \"opt\": 64, \"max\": 1024} to the "
                "graph's manifest entry (re-export)")
        else:
            add("warning", "input {}".format(names), "dynamic batch axis and no batch range given; "
                "assuming {min}..{max}".format(**DEFAULT_BATCH),
                "pass --max-batch N for the largest batch you will run")
        return dict(DEFAULT_BATCH)
    add("info", "input {}".format(names), "dynamic batch; optimisation profile min {min}, opt {opt}, "
        "max {max}".format(**batch))
    return batch


def _infer_with_batch(model, batch, add):
    """Shape-inferred copy of ``model`` with the dynamic batch axis set to ``batch`` (or None)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    initializers = set(init.name for init in m.graph.initializer)
    for inp in m.graph.input:
        if inp.name in initializers or not inp.type.tensor_type.HasField("shape"):
            continue
        dims = inp.type.tensor_type.shape.dim
        if len(dims) and not (dims[0].HasField("dim_value") and dims[0].dim_value > 0):
            dims[0].dim_value = int(batch)
    # Inference merges with what the exporter declared; drop symbolic declarations so that the
    # concrete batch propagates everywhere.
    m.graph.ClearField("value_info")
    for out in m.graph.output:
        if out.type.tensor_type.HasField("shape"):
            out.type.tensor_type.ClearField("shape")
    try:
        return shape_inference.infer_shapes(m, data_prop=True)
    except Exception as err:
        add("warning", "shape inference", "ONNX shape inference failed ({}); the memory estimate and "
            "INT64 check cover less".format(str(err).splitlines()[0] if str(err) else type(err).__name__),
            "check the export; TensorRT runs the same inference")
        return None


def _check_int64(graph, inferred, trt_name, add):
    int64 = onnx.TensorProto.INT64
    input_names = set(vi.name for vi in graph.input)
    for vi in list(graph.input) + list(graph.output):
        if vi.type.tensor_type.elem_type == int64:
            add("error", "{} {}".format("input" if vi.name in input_names else "output", vi.name),
                "INT64 at the graph interface; {} casts INT64 to INT32 (clamping), so the bindings "
                "do not match".format(trt_name),
                "cast to float32 (or int32) inside the model before export; bundles carry no INT64 "
                "at interfaces")
    inner = [init.name for g in _walk_graphs(graph) for init in g.initializer if init.data_type == int64]
    interface = set(vi.name for vi in list(graph.input) + list(graph.output))
    if inferred is not None:
        inner.extend(vi.name for vi in inferred.graph.value_info
                     if vi.type.tensor_type.elem_type == int64 and vi.name not in interface)
    inner = sorted(set(inner) - interface)
    if inner:
        add("warning", "{} INT64 tensors (e.g. {})".format(len(inner), ", ".join(inner[:3])),
            "{} casts INT64 tensors to INT32, clamping values beyond +-2^31-1".format(trt_name),
            "usually harmless for shapes and indices; make sure no value needs more than 32 bits")


def _float_weights(model):
    """(name, float32 array) of every float32 initializer and Constant value."""
    out = []
    for g in _walk_graphs(model.graph):
        for init in g.initializer:
            if init.data_type == onnx.TensorProto.FLOAT:
                out.append((init.name, numpy_helper.to_array(init)))
    for node in _walk_nodes(model.graph):
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == onnx.TensorProto.FLOAT:
                    out.append((node.output[0], numpy_helper.to_array(attr.t)))
    return out


def _check_precision(model, row, precision, add):
    if precision == "int8" and not row["int8"]:
        add("error", "precision int8", "{} ({}) has no int8 support".format(row["board"], row["name"]),
            "use fp16 (fast on every Jetson) or fp32")
    if precision in ("fp16", "int8") and not row["fp16"]:
        add("error", "precision {}".format(precision), "{} has no fast fp16".format(row["board"]),
            "use fp32")
    if precision != "fp16":
        return
    total = tiny = 0
    for name, w in _float_weights(model):
        a = np.abs(w.astype(np.float64, copy=False))
        big = int(np.count_nonzero(a > FP16_MAX))
        if big:
            add("error", "initializer {}".format(name),
                "{} weights exceed fp16's maximum 65504 (largest {:.3g}) and overflow to inf".format(
                    big, float(a.max())),
                "keep fp32 for this model, or rescale the layer (e.g. fold the factor into the next "
                "layer) before export")
        total += a.size
        tiny += int(np.count_nonzero((a > 0) & (a < FP16_MIN_NORMAL)))
    if tiny:
        share = tiny / float(total)
        add("warning" if share >= TINY_WEIGHTS_WARN_SHARE else "info", "initializers",
            "{} of {} weights ({:.2%}) are nonzero but below 6.1e-5, where fp16 goes subnormal or "
            "flushes to zero".format(tiny, total, share),
            "compare fp16 against fp32 outputs (parity) before shipping; keep fp32 if they drift")


def _check_calibration(model, inferred, calib, precision, add):
    """Run onnxruntime on the calibration array with every float intermediate exposed."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise JetgenError("--calib needs onnxruntime; install it (pip install onnxruntime).")
    try:
        data = np.load(calib, allow_pickle=False)
    except Exception as err:
        raise JetgenError("{} is not a readable .npy array ({}); save it with numpy.save.".format(calib, err))
    initializers = set(init.name for init in model.graph.initializer)
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise JetgenError("--calib feeds one input, but the graph has {} inputs; check a single-input "
                          "graph or leave --calib out.".format(len(inputs)))
    m = onnx.ModelProto()
    m.CopyFrom(model)
    present = set(o.name for o in m.graph.output)
    source = inferred if inferred is not None else model
    for vi in source.graph.value_info:
        if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and vi.name not in present:
            m.graph.output.append(onnx.helper.make_tensor_value_info(vi.name, onnx.TensorProto.FLOAT, None))
            present.add(vi.name)
    try:
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        values = sess.run(names, {inputs[0].name: data.astype(np.float32)})
    except Exception as err:
        raise JetgenError("Running the graph on {} failed ({}); check the array's shape and dtype "
                          "against the graph's first input.".format(calib, str(err).splitlines()[0]))
    severity = "error" if precision == "fp16" else "warning"
    worst = []
    for name, value in zip(names, values):
        if value.dtype.kind == "f" and value.size:
            peak = float(np.max(np.abs(value)))
            if peak > FP16_MAX:
                worst.append((peak, name))
    for peak, name in sorted(worst, reverse=True)[:10]:
        add(severity, "tensor {}".format(name),
            "activation reaches {:.3g} on the calibration data, beyond fp16's 65504".format(peak),
            "keep this layer in fp32 or rescale it before export")
    if not worst:
        add("info", "calibration", "all {} float tensors stay within fp16 range on {} ({} rows)".format(
            len(names), os.path.basename(calib), data.shape[0] if data.ndim else 1))


def _tensor_bytes(vi):
    t = vi.type.tensor_type
    if not t.HasField("shape") or t.elem_type == 0:
        return None
    n = 1
    for d in t.shape.dim:
        if not (d.HasField("dim_value") and d.dim_value > 0):
            return None
        n *= d.dim_value
    return n * _itemsize(t.elem_type)


def _estimate_memory(model, inferred):
    weights = 0
    for g in _walk_graphs(model.graph):
        for init in g.initializer:
            weights += _initializer_bytes(init)
    constants = set()
    for node in _walk_nodes(model.graph):
        if node.op_type == "Constant":
            constants.update(node.output)
            for attr in node.attribute:
                if attr.name == "value":
                    weights += _initializer_bytes(attr.t)
    activations, unknown = 0, 0
    if inferred is not None:
        initializers = set(init.name for init in inferred.graph.initializer)
        g = inferred.graph
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            if vi.name in initializers or vi.name in constants:
                continue
            size = _tensor_bytes(vi)
            if size is None:
                unknown += 1
            else:
                activations += size
    return {"weights_bytes": int(weights), "activation_bytes": int(activations), "unknown_tensors": unknown}


def _initializer_bytes(tensor):
    n = 1
    for d in tensor.dims:
        n *= d
    return n * _itemsize(tensor.data_type)


def _itemsize(onnx_type):
    """Bytes per element of an ONNX tensor type; 4 for types numpy cannot name (e.g. string)."""
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(onnx_type)).itemsize
    except Exception:
        return 4


def _judge_memory(memories, row):
    share = MEMORY_BUDGET_SHARE.get(row["name"], DEFAULT_MEMORY_BUDGET_SHARE)
    board = int(row["memory_gb"] * 1024 ** 3)
    budget = int(board * share)
    workspace = int(row.get("workspace_mb", 0)) * 1024 ** 2
    weights = sum(m["weights_bytes"] for m in memories.values())
    acts = sum(m["activation_bytes"] for m in memories.values())
    total = weights + acts + workspace
    batches = [m["batch"] for m in memories.values() if m.get("batch")]
    memory = {
        "weights_bytes": weights, "activation_bytes": acts, "workspace_bytes": workspace,
        "total_bytes": total, "board_bytes": board, "budget_bytes": budget, "budget_share": share,
        "batch": max(batches) if batches else 1,
        "rule": MEMORY_RULE.format(share, row["memory_gb"]),
        "graphs": memories,
    }
    what = "estimate {} = weights {} + activations {} at batch {} + workspace {}; budget {} ({:.0%} of {} GB)".format(
        _human(total), _human(weights), _human(acts), memory["batch"], _human(workspace), _human(budget),
        share, row["memory_gb"])
    unknown = sum(m["unknown_tensors"] for m in memories.values())
    if unknown:
        what += "; {} tensors of unknown size left out".format(unknown)
    findings = [finding("info", "all", "memory", what, "upper-bound heuristic, not a measurement")]
    if total > budget:
        findings.append(finding("error", "all", "memory",
                                "estimated {} exceeds the {} budget for {} ({})".format(
                                    _human(total), _human(budget), row["name"], memory["rule"]),
                                "lower the batch range (--max-batch / manifest batch.max) or shrink the model"))
    return memory, findings


def _human(n):
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return "{:.1f} {}".format(n, unit) if unit != "B" else "{} B".format(int(n))
        n /= 1024.0


# -- bundles ------------------------------------------------------------------------------------

def _reexport_command(manifest, target):
    """`jetgen export RUN --target T`, with the run directory the bundle records when it is a plain string."""
    run = (manifest.get("provenance") or {}).get("run") if isinstance(manifest.get("provenance"), dict) else None
    ok = isinstance(run, str) and 0 < len(run) <= 200 and all(c.isprintable() and not c.isspace() for c in run)
    return "jetgen export {} --target {}".format(run if ok else "RUN", target)


def _check_bundle(bundle_dir, row, precision, max_batch):
    manifest = spec.read_manifest(bundle_dir, full=False)
    findings, memories = [], {}
    exported_for = (manifest.get("target") or {}).get("name") if isinstance(manifest.get("target"), dict) else None
    reexport = _reexport_command(manifest, row["name"])
    if exported_for and exported_for != row["name"]:
        findings.append(finding("warning", "manifest", "target",
                                "the bundle was exported for {}, checked here for {}".format(
                                    exported_for, row["name"]),
                                "{} if you deploy there".format(reexport)))
    for name, entry in sorted(manifest["graphs"].items()):
        fname = entry["file"]  # a plain name inside the bundle (jetgen.spec checked it)
        path = spec.inside(bundle_dir, fname, "graph {!r}".format(name))
        if not os.path.isfile(path):
            raise JetgenError("The manifest lists {} for graph {!r}, but the bundle has no such file; "
                              "re-export the bundle.".format(fname, name))
        expected = entry.get("sha256")
        if isinstance(expected, str) and len(expected) == 64:
            digest = sha256_file(path)
            if digest != expected.lower():
                findings.append(finding("error", name, fname, "sha256 differs from the manifest (file "
                                        "changed or corrupt)", "re-export the bundle"))
        prec = precision or entry.get("precision") or spec.check_precision(manifest.get("precision") or "fp32",
                                                                           "precision")
        batch = entry["batch"]
        if batch is not None and batch["max"] is None:
            batch = None  # no declared maximum: the check reports the missing range
        if max_batch is not None:
            lo = batch["min"] if batch else 1
            batch = {"min": min(lo, max_batch), "opt": min(batch["opt"] if batch else max_batch, max_batch),
                     "max": max_batch}
        model = load_onnx(path)
        graph_findings, mem = check_graph(model, row, name, prec, batch, batch_required=True, reexport=reexport)
        declared = entry.get("opset")
        actual = [i.version for i in model.opset_import if i.domain in trt_support.DEFAULT_DOMAINS]
        if declared is not None and actual and declared != actual[0]:
            graph_findings.append(finding("warning", name, "opset", "manifest says opset {}, the graph "
                                          "has {}".format(declared, actual[0]), "re-export the bundle"))
        findings.extend(graph_findings)
        memories[name] = mem
    return findings, memories


# -- presentation -------------------------------------------------------------------------------

_COLUMNS = (("severity", 8), ("graph", 16), ("where", 30), ("what", 50), ("fix", 44))
_HEADERS = {"severity": "severity", "graph": "graph", "where": "where", "what": "finding", "fix": "fix"}


def format_table(report):
    """The findings as a fixed-width text table (long cells wrap), for people."""
    lines = []
    header = "  ".join(_HEADERS[c].ljust(w) for c, w in _COLUMNS).rstrip()
    lines.append(header)
    lines.append("  ".join("-" * w for _, w in _COLUMNS))
    for f in report["findings"]:
        cells = [textwrap.wrap(str(f[c]), w) or [""] for c, w in _COLUMNS]
        for i in range(max(len(c) for c in cells)):
            lines.append("  ".join((c[i] if i < len(c) else "").ljust(w)
                                   for c, (_, w) in zip(cells, _COLUMNS)).rstrip())
    return "\n".join(lines)


def is_int64_tensor_warning(f):
    """True for the warning about INT64 tensors inside a graph (not at its interface, which is an error)."""
    return f["severity"] == "warning" and "INT64 tensors" in f["where"]


def int64_harmless(path, report):
    """True when ``report`` (check_model's, for the bundle directory or .onnx file at ``path``) warns
    about INT64 tensors and every INT64 constant of the checked graphs fits in 32 bits, so TensorRT's
    cast to INT32 changes nothing. A bundle's graph files come from its checked manifest (its signature,
    if any, was the caller's to check)."""
    from jetgen.export.onnx_tools import int64_constants_fit_int32

    if not any(is_int64_tensor_warning(f) for f in report.get("findings", ())):
        return False
    if os.path.isdir(path):
        manifest = spec.read_manifest(path, full=False, key=False)
        files = [spec.inside(path, e["file"], "graph {}".format(g)) for g, e in manifest["graphs"].items()]
    else:
        files = [path]
    return all(int64_constants_fit_int32(onnx.load(f)) for f in files)


def needs_action(f, int64_ok=False):
    """True for a finding a person must act on or look at: every error and warning, except the INT64-tensor
    warning when ``int64_ok`` (every INT64 constant of the graphs fits in 32 bits, so the cast is harmless).
    Info findings never need action."""
    if f["severity"] == "info":
        return False
    return not (int64_ok and is_int64_tensor_warning(f))


def verdict(report, int64_ok=False):
    """One line: deployable or not, with the counts of errors and warnings that need action and of the
    findings that need none (``int64_ok``: see ``needs_action``)."""
    act = [f for f in report["findings"] if needs_action(f, int64_ok)]
    counts = dict((s, sum(1 for f in act if f["severity"] == s)) for s in ("error", "warning"))
    quiet = len(report["findings"]) - len(act)
    row = get_target(report["target"])
    plural = lambda n, w: "{} {}{}".format(n, w, "" if n == 1 else "s")
    return "{} on {} ({}, TensorRT {}): {}, {}{}.".format(
        "Deployable" if report["deployable"] else "NOT deployable", row["name"], row["board"],
        row["tensorrt"], plural(counts["error"], "error"), plural(counts["warning"], "warning"),
        "; {} that need no action".format(plural(quiet, "finding")) if quiet else "")


def format_report(report, verbose=False, int64_ok=False):
    """The report for people: the verdict first, then the findings that need action as a table; the
    findings that need none (info, harmless INT64 with ``int64_ok``) are a count unless ``verbose``."""
    act = [f for f in report["findings"] if needs_action(f, int64_ok)]
    quiet = [f for f in report["findings"] if not needs_action(f, int64_ok)]
    lines = [verdict(report, int64_ok)]
    if act:
        lines += ["", format_table({"findings": act})]
    if quiet and verbose:
        lines += ["", "Need no action ({}):".format(len(quiet)), format_table({"findings": quiet})]
    elif quiet:
        lines += ["", "{} finding{} need{} no action (versions, batch profiles, memory estimate{}); "
                      "--verbose shows them.".format(len(quiet), "" if len(quiet) == 1 else "s",
                                                     "s" if len(quiet) == 1 else "",
                                                     ", INT64 tensors that fit in 32 bits" if int64_ok else "")]
    return "\n".join(lines)
