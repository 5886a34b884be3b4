"""How much arithmetic a graph does, and how much this machine can do: the two sides of "% of peak".

``graph_flops`` counts the multiply-adds of a graph's MatMul, Gemm, Conv and ConvTranspose nodes at a
given batch (2 FLOPs each; elementwise ops are left out: they are memory-bound and a few percent
of a decoder's FLOPs), reading shapes from ONNX shape inference; it needs the onnx package and returns
None without it (as on a Jetson). ``matmul_peak`` times a float32 matrix product with numpy, grown until
one call takes long enough to time, in the process and with the threads the caller set up.
Python 3.6 compatible.
"""
import time

import numpy as np

COUNTED = ("MatMul", "Gemm", "Conv", "ConvTranspose")


def _shapes(model, batch):
    """name -> tuple of ints for every tensor whose shape inference knows, the batch axis set to ``batch``."""
    from onnx import shape_inference

    inits = set(i.name for i in model.graph.initializer)
    for vi in model.graph.input:
        dims = vi.type.tensor_type.shape.dim
        if vi.name not in inits and len(dims) and not dims[0].dim_value:
            dims[0].dim_value = int(batch)
    model.graph.ClearField("value_info")
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    shapes = dict((i.name, tuple(i.dims)) for i in model.graph.initializer)
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if all(d.dim_value > 0 for d in dims):
            shapes[vi.name] = tuple(d.dim_value for d in dims)
    return shapes


def _attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return a.i
    return default


def node_flops(node, shapes):
    """FLOPs (2 per multiply-add) of one node, or None when a shape it needs is unknown."""
    ins = [shapes.get(name) for name in node.input[:2]]
    out = shapes.get(node.output[0])
    if any(s is None for s in ins) or out is None:
        return None
    a, b = ins
    if node.op_type == "MatMul":
        return 2 * int(np.prod(out)) * a[-1]
    if node.op_type == "Gemm":
        k = a[0] if _attr(node, "transA", 0) else a[-1]
        return 2 * int(np.prod(out)) * k
    kernel = int(np.prod(b[2:]))
    if node.op_type == "Conv":  # weight (Cout, Cin/group, k...): each output value takes Cin/group * kernel
        return 2 * int(np.prod(out)) * b[1] * kernel
    # ConvTranspose, weight (Cin, Cout/group, k...): each input value scatters into Cout/group * kernel outputs
    return 2 * int(np.prod(a)) * b[1] * kernel


def graph_flops(onnx_path, batch):
    """FLOPs of one run of the graph at ``batch`` (MatMul, Gemm, Conv, ConvTranspose), or None when the
    onnx package is missing or some counted node's shape cannot be inferred."""
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(onnx_path)
    try:
        shapes = _shapes(model, batch)
    except Exception:  # inference failures are the graph's business, not the benchmark's
        return None
    total = 0
    for node in model.graph.node:
        if node.op_type in COUNTED:
            flops = node_flops(node, shapes)
            if flops is None:
                return None
            total += flops
    return total


def _best_rate(call, n, min_time, clock):
    call()
    times, start = [], clock()
    while clock() - start < min_time or len(times) < 3:
        t0 = clock()
        call()
        times.append(clock() - t0)
    flop = 2.0 * n ** 3
    return flop / min(times) / 1e9, flop / float(np.median(times)) / 1e9, len(times)


def _onnxruntime_matmul(a, b, threads):
    """A call running a*b through ONNX Runtime's own MatMul kernel, or None without onnx and onnxruntime."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    n = a.shape[0]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "peak",
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in ("a", "b")],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"a": a, "b": b})


def matmul_peak(min_time=1.0, max_size=2048, threads=None, clock=time.perf_counter):
    """The best float32 matrix-product rate this process shows: {"gflops", "median_gflops", "size",
    "calls", "engine", "engines": {engine: gflops}}.

    Engines: numpy's BLAS and, where onnx and onnxruntime are installed, ONNX Runtime's MatMul
    (``threads`` threads). n doubles from 256 until the faster engine's call takes 20 ms (or reaches
    ``max_size``), so a slow board is not kept busy for minutes; then each engine is timed for
    ``min_time`` seconds. The peak is the faster engine's best call: the most this machine showed it
    can do, in this run."""
    rng = np.random.RandomState(0)
    n = 256
    while True:  # grow until the faster engine needs 20 ms per call
        a = rng.standard_normal((n, n)).astype(np.float32)
        b = rng.standard_normal((n, n)).astype(np.float32)
        calls = {"numpy": lambda: np.dot(a, b)}
        ort_call = _onnxruntime_matmul(a, b, threads)
        if ort_call is not None:
            calls["onnxruntime"] = ort_call
        fastest = None
        for call in calls.values():
            call()
            t0 = clock()
            call()
            fastest = min(fastest or float("inf"), clock() - t0)
        if fastest >= 0.02 or n >= max_size:
            break
        n *= 2
    rates = dict((engine, _best_rate(call, n, min_time, clock)) for engine, call in calls.items())
    engine = max(rates, key=lambda e: rates[e][0])
    best, median, calls = rates[engine]
    return {"gflops": best, "median_gflops": median, "size": n, "calls": calls, "engine": engine,
            "engines": dict((e, r[0]) for e, r in rates.items())}
