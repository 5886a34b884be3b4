"""The TensorRT backend: one engine, one execution context, fixed GPU buffers, one stream.

    session = TrtSession("b.jetgen/decoder.onnx", manifest["graphs"]["decoder"], "b.jetgen", precision="auto")
    session.run({"z": z})  -> {"x": float32 array}

The engine is loaded from, or built into, the bundle's engine cache (jetgen.runtime.backends.trt.build).
Buffers are allocated once for the profile's largest batch. Each call follows the hardware's order,
as TensorRT's samples/python/common.py does: set the input shapes, copy inputs in, execute, copy
outputs out, synchronise. Batches come within the profile's range (``Model.run`` chunks them).
Every call that touches the GPU (open, ``run``, ``hold``, ``close``) runs inside the device's one CUDA
context owner (``cuda_mem.DeviceContext.active()``), so a session opened in one thread serves calls
from any other (``jetgen serve``'s request and job threads) and one thread at a time uses the device.
TensorRT 8.0-8.4 are driven through bindings (execute_async_v2), 8.5 and newer
through named tensors (execute_async_v3), as jetgen.runtime.backends.trt.api says. Python 3.6 compatible;
tensorrt, pycuda and cuda are imported only inside functions.
"""
from typing import TYPE_CHECKING

import numpy as np

from jetgen.errors import JetgenError
from jetgen.runtime.backends.trt import cuda_mem, api as trt_api, build as trt_build
from jetgen.runtime.feeds import check_feeds, sample_shape

if TYPE_CHECKING:  # pragma: no cover - for mypy only
    from typing import Dict, List, Sequence, Tuple  # noqa: F401
    import tensorrt as trt  # noqa: F401


class _BindingIO(object):
    """TensorRT 8.0-8.4: inputs and outputs are binding indices; execute_async_v2(bindings, stream)."""

    def __init__(self, engine):
        import tensorrt as trt
        self._trt = trt
        self.engine = engine
        self.context = engine.create_execution_context()
        self.index = {}
        self.inputs, self.outputs = [], []
        for i in range(engine.num_bindings):
            name = engine.get_binding_name(i)
            self.index[name] = i
            (self.inputs if engine.binding_is_input(i) else self.outputs).append(name)

    def dtype(self, name):
        return np.dtype(self._trt.nptype(self.engine.get_binding_dtype(self.index[name])))

    def set_input_shape(self, name, shape):
        return bool(self.context.set_binding_shape(self.index[name], tuple(shape)))

    def output_shape(self, name):
        return trt_build.dims_tuple(self.context.get_binding_shape(self.index[name]))

    def execute(self, pointers, stream_handle):
        bindings = [0] * len(self.index)
        for name, i in self.index.items():
            bindings[i] = pointers[name]
        return bool(self.context.execute_async_v2(bindings=bindings, stream_handle=stream_handle))


class _TensorIO(object):
    """TensorRT 8.5+: inputs and outputs are named tensors; set_tensor_address + execute_async_v3."""

    def __init__(self, engine):
        # type: (trt.ICudaEngine) -> None
        import tensorrt as trt
        self._trt = trt
        self.engine = engine
        self.context = engine.create_execution_context()  # type: trt.IExecutionContext
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]  # type: List[str]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]  # type: List[str]

    def dtype(self, name):
        # type: (str) -> np.dtype
        return np.dtype(self._trt.nptype(self.engine.get_tensor_dtype(name)))

    def set_input_shape(self, name, shape):
        # type: (str, Tuple[int, ...]) -> bool
        return bool(self.context.set_input_shape(name, tuple(shape)))

    def output_shape(self, name):
        # type: (str) -> Tuple[int, ...]
        return trt_build.dims_tuple(self.context.get_tensor_shape(name))

    def execute(self, pointers, stream_handle):
        # type: (Dict[str, int], int) -> bool
        for name in self.inputs + self.outputs:
            self.context.set_tensor_address(name, pointers[name])
        return bool(self.context.execute_async_v3(stream_handle))


class TrtSession(object):
    """Runs one graph of a bundle with TensorRT (the session interface of jetgen.runtime.backends).

    Options: ``workspace_mb`` (builder workspace cap; default the target table's), ``force``
    (rebuild the engine), ``cuda_api`` ('pycuda' or 'cudart'; default whichever is installed),
    ``calibration_cache`` (INT8 cache file, TensorRT 8 only). ``engine_info`` says which engine runs
    and whether it was reused or built. Raises JetgenError when TensorRT or a CUDA binding is
    missing, the engine cannot be built or loaded, or its tensors do not match the manifest.
    """

    def __init__(self, onnx_path, graph, bundle_dir, precision="fp32", device=None, workspace_mb=None,
                 force=False, cuda_api=None, calibration_cache=None, **options):
        if options:
            raise JetgenError("Unknown TensorRT backend option(s): {}.".format(", ".join(sorted(options))))
        trt = trt_api.import_tensorrt()
        api = trt_api.api_for(trt.__version__)
        self.input_names = [e["name"] for e in graph["inputs"]]
        self.output_names = [e["name"] for e in graph["outputs"]]
        self.providers = ["tensorrt"]
        self._shapes = {e["name"]: sample_shape(e) for e in list(graph["inputs"]) + list(graph["outputs"])}
        self._batch = trt_build.batch_range(graph)
        # The CUDA context must exist, and be current, before TensorRT deserializes on it.
        self._mem = cuda_mem.open_memory(prefer=cuda_api, device=device)
        try:
            with self._mem.active():
                self._open(trt, api, onnx_path, graph, bundle_dir, precision, workspace_mb, force, calibration_cache)
        except BaseException:
            self._release()
            raise

    def _open(self, trt, api, onnx_path, graph, bundle_dir, precision, workspace_mb, force, calibration_cache):
        """Engine (cached or built), execution context and buffers; inside the device's context."""
        result = trt_build.ensure_engine(onnx_path, graph, bundle_dir, precision, self._mem.device_info(),
                                         workspace_mb=workspace_mb, force=force,
                                         calibration_cache=calibration_cache)
        self.engine_info = {k: v for k, v in result.items() if k != "engine_bytes"}
        self._runtime = trt.Runtime(trt_build._logger(trt))
        engine = self._runtime.deserialize_cuda_engine(result["engine_bytes"])
        if engine is None:
            raise JetgenError("TensorRT could not load the engine {}; build it again with "
                              "`jetgen build --force`.".format(result["engine"]))
        self._io = _TensorIO(engine) if api["io"] == "tensors" else _BindingIO(engine)
        if sorted(self._io.inputs) != sorted(self.input_names) or \
                sorted(self._io.outputs) != sorted(self.output_names):
            raise JetgenError("The engine's tensors ({} -> {}) do not match the manifest ({} -> {}); "
                              "build it again with `jetgen build --force`.".format(
                                  ", ".join(self._io.inputs), ", ".join(self._io.outputs),
                                  ", ".join(self.input_names), ", ".join(self.output_names)))
        self._allocate()

    def _allocate(self):
        """Pinned host and device buffers for every tensor, sized for the profile's largest batch."""
        bmax = self._batch[2]
        self._host, self._device = {}, {}
        for name in self.input_names + self.output_names:
            dtype = self._io.dtype(name)
            shape = (bmax,) + self._shapes[name]
            self._host[name] = self._mem.pinned((int(np.prod(shape)),), dtype)
            self._device[name] = self._mem.alloc(self._host[name].nbytes)

    # Model.complete keeps target, mask and labels on the device for a whole optimisation (hold/release)
    device_resident = True
    _io = _runtime = _mem = None  # set while open
    _held = None  # (batch, names) of inputs already on the device

    def hold(self, feeds):
        """Copy ``feeds`` (some of the inputs, one batch within the profile's range) to the device now;
        until ``release()``, ``run`` takes them from there and is given only the other inputs, of the
        same batch. JetgenError for unknown names or a wrong shape or batch."""
        names = sorted(feeds)
        unknown = [name for name in names if name not in self.input_names]
        if unknown or not names:
            raise JetgenError("Only this engine's inputs ({}) can be held on the device, not {}.".format(
                ", ".join(self.input_names), ", ".join(unknown) or "nothing"))
        n, arrays = check_feeds(feeds, names, self._shapes, "this engine's", (self._batch[0], self._batch[2]))
        with self._live().active():
            for name in names:
                self._copy_in(name, arrays[name])
            self._mem.synchronize()
        self._held = (n, frozenset(names))

    def release(self):
        """Forget the held inputs: the next ``run`` needs every input again."""
        self._held = None

    def run(self, feeds, validate=True):  # always validates: the checks also shape the device buffers
        """dict name -> float32 array (batch first, within the profile's range) in, dict output name ->
        float32 array out. ``Model.run`` splits larger batches; JetgenError for a batch outside the range.
        After ``hold``, only the inputs not held, with the held batch size."""
        held_batch, held = self._held or (None, frozenset())
        names = [name for name in self.input_names if name not in held]
        n, arrays = check_feeds(feeds, names, self._shapes, "this engine's", (self._batch[0], self._batch[2]))
        if held and n != held_batch:
            raise JetgenError("This engine holds inputs of batch {} on the device, but got a batch of {}.".format(
                held_batch, n))
        with self._live().active():
            return self._run_batch(arrays, n)

    def _live(self):
        """The memory object; JetgenError once the session is closed."""
        if self._mem is None or self._io is None:
            raise JetgenError("This TensorRT session is closed; open the model again.")
        return self._mem

    def _copy_in(self, name, array):
        """Host -> device through the pinned buffer, on the stream (asynchronous)."""
        host = self._host[name][:array.size]
        host[...] = array.reshape(-1)
        self._mem.htod(self._device[name], host)

    def _run_batch(self, arrays, size):
        # 1. shapes for this call, within the optimisation profile
        for name in self.input_names:
            if not self._io.set_input_shape(name, (size,) + self._shapes[name]):
                raise JetgenError("TensorRT refused input shape {} for {!r} (profile batch {}..{}).".format(
                    (size,) + self._shapes[name], name, self._batch[0], self._batch[2]))
        # 2. copy in: into the pinned buffer, then host -> device on the stream (held inputs are there)
        for name in arrays:
            self._copy_in(name, arrays[name])
        # 3. execute
        if not self._io.execute(self._device, self._mem.stream_handle):
            raise JetgenError("TensorRT failed to run the engine (see its log above).")
        # 4. copy out, device -> host on the same stream
        views = {}
        for name in self.output_names:
            shape = self._io.output_shape(name)
            count = int(np.prod(shape))
            if count > self._host[name].size:
                raise JetgenError("Output {!r} of shape {} does not fit its buffer; the engine does not match "
                                  "the manifest: build it again with `jetgen build --force`.".format(name, shape))
            views[name] = (self._host[name][:count], shape)
            self._mem.dtoh(views[name][0], self._device[name])
        # 5. synchronise, then read the host buffers
        self._mem.synchronize()
        return {name: np.array(view, dtype=np.float32).reshape(shape) for name, (view, shape) in views.items()}

    def close(self):
        """Free the engine, the GPU buffers and the stream (in the device's context, from whichever thread
        calls); the session cannot run afterwards."""
        self._release()

    def _release(self):
        memory = getattr(self, "_mem", None)
        if memory is None:
            return
        with memory.active():
            # the execution context goes before the engine, the engine before the memory it points at
            self._io = None
            self._runtime = None
        memory.close()  # frees in the context, then lets go of it (never while it is current here)
        self._mem = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
