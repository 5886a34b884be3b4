"""Build a TensorRT engine from one ONNX graph of a bundle, or reuse the cached one.

The steps follow TensorRT's own order: builder -> network (EXPLICIT_BATCH on 8.x) -> ONNX parser ->
builder config (workspace cap, optimisation profile over the manifest's batch range, timing cache,
precision flags where the precision is flag-based) -> ``build_serialized_network``. Which calls a
TensorRT version needs comes from jetgen.runtime.backends.trt.api; the decisions (shapes, messages, precision)
are plain functions tested without TensorRT. Python 3.6 compatible; tensorrt is imported only
inside functions (the ``TYPE_CHECKING`` import only feeds mypy, see mypy-trt.ini).
"""
import os
import time
from typing import TYPE_CHECKING

from jetgen.digest import sha256_file
from jetgen import spec
from jetgen.errors import JetgenError
from jetgen.runtime.backends.trt import engine_cache, precision as precision_mod, api as trt_api
from jetgen.runtime.requirements import check_tensorrt
from jetgen.runtime.targets import TARGETS

if TYPE_CHECKING:  # pragma: no cover - for mypy only
    from typing import Any, List, Optional, Sequence, Tuple  # noqa: F401
    import tensorrt as trt  # noqa: F401

DEFAULT_WORKSPACE_MB = 1024
_LOGGER = []  # type: List[Any]  # one trt.Logger per process, as TensorRT recommends


def default_workspace_mb(sm):
    """The workspace cap for a GPU: the target table's ``workspace_mb`` for a Jetson SM, else 1024."""
    for name in sorted(TARGETS):
        row = TARGETS[name]
        if row["sm"] is not None and str(row["sm"]) == str(sm):
            return int(row["workspace_mb"])
    return DEFAULT_WORKSPACE_MB


def dims_tuple(dims):
    # type: (Any) -> Tuple[int, ...]
    """A trt.Dims (or any sequence of ints) as a tuple; Dims has __len__ and __getitem__, not __iter__."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def graph_name_of(onnx_path):
    """'bundle/decoder.onnx' -> 'decoder'"""
    return os.path.splitext(os.path.basename(str(onnx_path)))[0]


def onnx_sha256(onnx_path, graph=None):
    """The file's sha256; JetgenError when the manifest entry ``graph`` records a different one."""
    digest = sha256_file(onnx_path)
    expected = (graph or {}).get("sha256")
    if expected and expected != digest:
        raise JetgenError("{} does not match the sha256 in manifest.json; the bundle is damaged or was "
                          "edited: export it again.".format(os.path.basename(str(onnx_path))))
    return digest


def batch_range(graph):
    """(min, opt, max) from a manifest graph entry; JetgenError unless 1 <= min <= opt <= max (jetgen.spec)."""
    batch = spec.batch_range(graph, required=True)
    return batch["min"], batch["opt"], batch["max"]


def profile_shapes(network_shape, manifest_shape, batch):
    """(min, opt, max) shapes for one input: axis 0 takes the batch range, other axes must be fixed.

    ``network_shape`` is what the parsed network reports (-1 for dynamic axes); a dynamic non-batch
    axis is taken from ``manifest_shape`` (e.g. ['batch', 10]); JetgenError when neither fixes it.
    """
    dims = [int(d) for d in network_shape]
    if not dims:
        raise JetgenError("A graph input is a scalar; jetgen graphs take a batch axis first.")
    rest = []
    for axis, dim in enumerate(dims[1:], start=1):
        if dim < 0:
            wanted = manifest_shape[axis] if manifest_shape is not None and axis < len(manifest_shape) else None
            if not isinstance(wanted, int):
                raise JetgenError("Input axis {} is dynamic in the ONNX graph and not fixed in the manifest; "
                                  "only the batch axis may be dynamic.".format(axis))
            dim = wanted
        rest.append(dim)
    if dims[0] >= 0 and not batch[0] == batch[2] == dims[0]:
        raise JetgenError("The graph's batch axis is fixed to {}; export it with a dynamic batch axis.".format(dims[0]))
    return tuple(tuple([b] + rest) for b in batch)


def describe_parse_errors(errors, onnx_name, tensorrt_version):
    """One sentence for the ONNX parser's errors; ``errors`` are dicts (node, name, op, desc)."""
    parts = []
    for err in errors[:3]:
        where = "node {}".format(err.get("node"))
        if err.get("name") or err.get("op"):
            where += " ({}{})".format(err.get("op") or "", " '{}'".format(err["name"]) if err.get("name") else "")
        parts.append("{}: {}".format(where, str(err.get("desc", "")).strip()))
    more = "" if len(errors) <= 3 else " (and {} more)".format(len(errors) - 3)
    return ("TensorRT {} could not parse {}: {}{}. Export for this board's target (its opset and "
            "operators; `jetgen check` lists them) and build again.".format(
                tensorrt_version, onnx_name, "; ".join(parts) or "no detail given", more))


def _node_names(onnx_bytes):
    """Node index -> (name, op_type) via the onnx package when it is installed, else {}."""
    try:
        import onnx
    except ImportError:
        return {}
    try:
        model = onnx.load_from_string(onnx_bytes)
    except Exception:  # a file TensorRT could not parse may not load either
        return {}
    return {i: (node.name, node.op_type) for i, node in enumerate(model.graph.node)}


def _logger(trt):
    if not _LOGGER or _LOGGER[0][0] is not trt:
        _LOGGER[:] = [(trt, trt.Logger(trt.Logger.WARNING))]
    return _LOGGER[0][1]


def _parse(trt, parser, onnx_bytes, onnx_name, version):
    if parser.parse(onnx_bytes):
        return
    names = _node_names(onnx_bytes)
    errors = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node = err.node()
        name, op = names.get(node, (None, None))
        # node_name()/node_operator() exist on newer parsers (10.x); 8.x gives only the index.
        if hasattr(err, "node_name"):
            name = err.node_name() or name
        if hasattr(err, "node_operator"):
            op = err.node_operator() or op
        errors.append({"node": node, "name": name, "op": op, "desc": err.desc()})
    raise JetgenError(describe_parse_errors(errors, onnx_name, version))


def _set_max_workspace(config, nbytes):
    # TensorRT 8.0-8.3: the attribute defaults to 0, so it must be set.
    config.max_workspace_size = nbytes


def _set_memory_pool(config, nbytes):
    # type: (trt.IBuilderConfig, int) -> None
    import tensorrt as trt
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, nbytes)


def _add_profile(builder, network, config, batch, manifest_inputs):
    # type: (trt.Builder, trt.INetworkDefinition, trt.IBuilderConfig, Tuple[int, int, int], List[Any]) -> None
    shapes_by_name = {}
    for entry in manifest_inputs:
        shapes_by_name[entry["name"]] = entry.get("shape")
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if tensor.name not in shapes_by_name:
            raise JetgenError("The ONNX graph has an input {!r} the manifest does not list; export the bundle "
                              "again.".format(tensor.name))
        low, opt, high = profile_shapes(dims_tuple(tensor.shape), shapes_by_name[tensor.name], batch)
        profile.set_shape(tensor.name, low, opt, high)
    config.add_optimization_profile(profile)


def _attach_timing_cache(config, data):
    # type: (trt.IBuilderConfig, bytes) -> trt.ITimingCache
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, False)
    return cache


def _cache_calibrator(trt, cache_bytes):
    """An IInt8EntropyCalibrator2 that only replays a calibration cache (TensorRT 8.x)."""

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            return None  # no data: the scales come from the cache

        def read_calibration_cache(self):
            return cache_bytes

        def write_calibration_cache(self, cache):
            return None

    return CacheCalibrator()


def build_engine(onnx_path, graph, precision, workspace_mb, timing_cache_path=None, calibration_cache=None):
    """Build and return a serialized engine (bytes) for one graph at ``precision`` (already chosen).

    ``graph`` is the manifest entry (inputs with shapes, batch range). The timing cache at
    ``timing_cache_path`` is read before and written after the build. Raises JetgenError for a
    missing TensorRT, parse errors (naming the node), or a failed build.
    """
    trt = trt_api.import_tensorrt()
    api = trt_api.api_for(trt.__version__)
    batch = batch_range(graph)
    onnx_name = os.path.basename(str(onnx_path))
    with open(str(onnx_path), "rb") as handle:
        onnx_bytes = handle.read()

    logger = _logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if api["explicit_batch"]:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if api["typing"] == "strong":
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    _parse(trt, parser, onnx_bytes, onnx_name, api["version"])

    config = builder.create_builder_config()
    nbytes = int(workspace_mb) << 20
    if api["workspace"] == "memory_pool":
        _set_memory_pool(config, nbytes)
    else:
        _set_max_workspace(config, nbytes)
    _add_profile(builder, network, config, batch, graph.get("inputs") or [])
    cache = None
    if timing_cache_path is not None:
        cache = _attach_timing_cache(config, engine_cache.read_timing_cache(timing_cache_path))

    calibrator = None  # held here so it outlives the build (TensorRT keeps only a raw pointer)
    if api["typing"] == "flags":
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)  # int8 engines keep FP16 for layers without INT8
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            if calibration_cache is not None and not precision_mod.graph_is_quantized(graph, onnx_bytes):
                with open(str(calibration_cache), "rb") as handle:
                    calibrator = _cache_calibrator(trt, handle.read())
                config.int8_calibrator = calibrator

    serialized = builder.build_serialized_network(network, config)
    del calibrator
    if serialized is None:
        raise JetgenError(
            "TensorRT {} could not build an engine for {} at {} (its log above says why). On a "
            "Jetson Nano or TX2, close other programs, add swap, or try a smaller --workspace-mb; "
            "check the graph with `jetgen check`.".format(api["version"], onnx_name, precision))
    if cache is not None:
        engine_cache.write_timing_cache(timing_cache_path, config.get_timing_cache().serialize())
    return bytes(serialized)


def ensure_engine(onnx_path, graph, bundle_dir, requested, device, workspace_mb=None, force=False,
                  calibration_cache=None, builder_caps=None):
    """Load the cached engine for one graph or build it; return a result dict.

    ``device`` is {'name', 'sm'} (jetgen.runtime.backends.trt.cuda_mem). ``requested`` is fp32|fp16|int8|auto.
    With ``workspace_mb`` None the target table's cap is used for a build and a cached engine built
    with any cap is accepted. The result has: graph, precision, precision_reason, engine (path),
    bytes, build_seconds (None when reused), status ('cached' or 'built'), reason (why it was
    rebuilt, or None) and engine_bytes (the serialized engine).
    """
    trt = trt_api.import_tensorrt()
    api = trt_api.api_for(trt.__version__)
    name = graph_name_of(onnx_path)
    # a graph newer than this TensorRT's parser is refused here, naming both versions
    check_tensorrt(api["version"], str(onnx_path), name, graph)
    with open(str(onnx_path), "rb") as handle:
        onnx_bytes = handle.read()
    digest = onnx_sha256(onnx_path, graph)
    if calibration_cache is not None and not api["calibrator"]:
        raise JetgenError("INT8 calibration caches are not used with TensorRT {} (calibration is deprecated "
                          "since 10.1); export the bundle with --precision int8 to get a QDQ graph.".format(
                              api["version"]))
    caps = builder_caps or precision_mod.capabilities(device["sm"])
    chosen, why = precision_mod.choose_precision(
        requested, caps, graph_precision=graph.get("precision", "fp32"),
        quantized=precision_mod.graph_is_quantized(graph, onnx_bytes),
        calibration_cache=calibration_cache is not None and api["calibrator"],
        typing=api["typing"], board="this GPU ({}, sm_{})".format(device["name"], str(device["sm"]).replace(".", "")))
    batch = batch_range(graph)
    chosen_ws = workspace_mb if workspace_mb is not None else default_workspace_mb(device["sm"])
    fields = engine_cache.engine_fields(digest, api["version"], device["name"], device["sm"], chosen, batch, chosen_ws)
    found = engine_cache.lookup(bundle_dir, name, fields, any_workspace=workspace_mb is None)
    result = {"graph": name, "precision": chosen, "precision_reason": why, "workspace_mb": chosen_ws}
    if found.hit and not force:
        data = engine_cache.read_engine(found.path)
        result.update(engine=found.path, bytes=len(data), build_seconds=None, status="cached", reason=None,
                      engine_bytes=data)
        return result
    reason = "--force: rebuilding" if found.hit else found.reason
    start = time.time()
    data = build_engine(onnx_path, graph, chosen, chosen_ws,
                        timing_cache_path=engine_cache.timing_cache_path(bundle_dir, api["version"], device["name"]),
                        calibration_cache=calibration_cache)
    seconds = time.time() - start
    path = engine_cache.store(bundle_dir, name, fields, data, build_seconds=seconds,
                              extra={"precision_reason": why})
    result.update(engine=path, bytes=len(data), build_seconds=seconds, status="built", reason=reason,
                  engine_bytes=data)
    return result
