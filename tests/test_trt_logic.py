"""The TensorRT backend's logic, on CPU: version dispatch, precision choice, engine cache, chunking.

The end-to-end tests drive TrtSession, trt_build and `jetgen build` through a FAKE ``tensorrt``
module (one per API generation: 8.0/8.2 bindings, 8.5/8.6 both, 10.x tensors only, 10.14 strongly
typed) and fake ``pycuda`` / ``cuda.cudart`` modules whose "device memory" is host memory and whose
asynchronous copies and executions only happen at ``synchronize()``. The fake engine computes with
onnxruntime. This proves the call order and which API each version is driven through, not GPU
results (tests/test_trt_gpu.py does that where a GPU exists).
"""
import ctypes
import importlib.abc
import importlib.util
import json
import os
import sys
import threading
import types

import numpy as np
import pytest
from click.testing import CliRunner

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from jetgen import atomic  # noqa: E402
from jetgen.errors import JetgenError  # noqa: E402
from jetgen.runtime.backends.trt import cuda_mem, engine_cache, precision, api as trt_api, build as trt_build  # noqa: E402
from jetgen.runtime import feeds  # noqa: E402
from jetgen.runtime.backends.trt import session as trt_backend  # noqa: E402

VERSIONS = ["8.0.1", "8.2.1", "8.5.2", "8.6.2", "10.3", "10.14"]


# ----------------------------------------------------------------------------------------------
# version parsing and dispatch

@pytest.mark.parametrize("text,io,workspace,explicit,typing", [
    ("8.0.1.6", "bindings", "max_workspace_size", True, "flags"),
    ("8.2.1.8", "bindings", "max_workspace_size", True, "flags"),
    ("8.5.2.2", "tensors", "memory_pool", True, "flags"),
    ("8.6.2.3", "tensors", "memory_pool", True, "flags"),
    ("10.3.0.30", "tensors", "memory_pool", False, "flags"),
    ("10.14", "tensors", "memory_pool", False, "strong"),
])
def test_api_dispatch_by_version(text, io, workspace, explicit, typing):
    api = trt_api.api_for(text)
    assert (api["io"], api["workspace"], api["explicit_batch"], api["typing"]) == (io, workspace, explicit, typing)
    assert api["calibrator"] == (trt_api.parse_version(text) < (10, 0, 0))


def test_parse_version_forms_and_errors():
    assert trt_api.parse_version("8.2.1.8") == (8, 2, 1)
    assert trt_api.parse_version("10.3") == (10, 3, 0)
    assert trt_api.parse_version("10.3.0.26+cuda12.6") == (10, 3, 0)
    assert trt_api.format_version("8.6.2.3") == "8.6.2"
    with pytest.raises(JetgenError, match="Cannot read the TensorRT version"):
        trt_api.parse_version("dev")
    with pytest.raises(JetgenError, match="too old"):
        trt_api.api_for("7.1.3")


def test_missing_or_stub_only_tensorrt_is_a_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # like tensorrt-stubs alone
    with pytest.raises(JetgenError) as err:
        trt_api.import_tensorrt()
    assert "python3-libnvinfer" in str(err.value) and "jetson/README.md" in str(err.value)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(JetgenError, match="JetPack"):
        trt_api.import_tensorrt()


# ----------------------------------------------------------------------------------------------
# precision

@pytest.mark.parametrize("sm,fp16,int8", [("5.3", True, False), ("6.2", True, False), ("7.2", True, True),
                                          ("8.7", True, True), ("6.1", False, True), ("8.6", True, True)])
def test_capabilities_per_sm(sm, fp16, int8):
    caps = precision.capabilities(sm)
    assert (caps["fp16"], caps["int8"]) == (fp16, int8)


def test_capabilities_ask_the_builder_for_unknown_gpus():
    builder = types.SimpleNamespace(platform_has_fast_fp16=False, platform_has_fast_int8=True)
    assert precision.capabilities("9.0", builder) == {"fp16": False, "int8": True, "source": "the TensorRT builder"}
    assert precision.capabilities("5.3", builder)["int8"] is False  # a Jetson row wins


def test_choose_precision_per_target():
    nano, orin = precision.capabilities("5.3"), precision.capabilities("8.7")
    assert precision.choose_precision("auto", nano)[0] == "fp16"
    assert precision.choose_precision("fp32", nano) == ("fp32", "requested")
    assert precision.choose_precision("auto", orin, quantized=True)[0] == "int8"
    assert precision.choose_precision("int8", orin, calibration_cache=True)[0] == "int8"
    assert precision.choose_precision("auto", {"fp16": False, "int8": False, "source": "x"})[0] == "fp32"
    with pytest.raises(JetgenError, match="no INT8 support.*fp16 or auto"):
        precision.choose_precision("int8", nano, board="the Jetson Nano")
    with pytest.raises(JetgenError, match="has no INT8"):
        precision.choose_precision("auto", nano, quantized=True)
    with pytest.raises(JetgenError, match="QDQ"):
        precision.choose_precision("int8", orin)
    with pytest.raises(JetgenError, match="no fast FP16"):
        precision.choose_precision("fp16", {"fp16": False, "int8": False, "source": "x"})
    with pytest.raises(JetgenError, match="Unknown precision"):
        precision.choose_precision("fp8", orin)


def test_strong_typing_takes_the_graphs_precision():
    orin = precision.capabilities("8.7")
    assert precision.choose_precision("auto", orin, graph_precision="fp16", typing="strong")[0] == "fp16"
    assert precision.choose_precision("fp32", orin, graph_precision="fp32", typing="strong")[0] == "fp32"
    with pytest.raises(JetgenError, match="strongly typed.*--precision fp16"):
        precision.choose_precision("fp16", orin, graph_precision="fp32", typing="strong")


def test_quantized_graph_detection():
    assert precision.graph_is_quantized({"precision": "int8"})
    assert precision.graph_is_quantized({}, b"...DequantizeLinear...")
    assert not precision.graph_is_quantized({"precision": "fp32"}, b"MatMul")


# ----------------------------------------------------------------------------------------------
# engine cache

def _fields(**change):
    base = dict(onnx_sha256="ab" * 32, tensorrt="8.2.1", gpu="NVIDIA Tegra X1", sm="5.3", precision="fp16",
                batch=(1, 64, 1024), workspace_mb=256)
    base.update(change)
    return engine_cache.engine_fields(**base)


def test_cache_key_is_stable():
    assert engine_cache.cache_key(_fields()) == engine_cache.cache_key(_fields())
    assert engine_cache.cache_key(_fields()) == engine_cache.cache_key(dict(reversed(list(_fields().items()))))
    path = engine_cache.engine_path("b.jetgen", "decoder", _fields())
    assert os.path.basename(path) == "decoder-fp16-{}.engine".format(engine_cache.cache_key(_fields())[:12])
    assert os.path.dirname(path) == os.path.join("b.jetgen", "engines")


@pytest.mark.parametrize("change", [
    {"onnx_sha256": "cd" * 32}, {"tensorrt": "8.5.2"}, {"gpu": "Orin"}, {"sm": "8.7"}, {"precision": "fp32"},
    {"batch": (2, 64, 1024)}, {"batch": (1, 32, 1024)}, {"batch": (1, 64, 512)}, {"workspace_mb": 512}])
def test_cache_key_changes_with_every_field(change):
    assert engine_cache.cache_key(_fields(**change)) != engine_cache.cache_key(_fields())


@pytest.mark.parametrize("change,message", [
    ({"tensorrt": "8.5.2"}, "engine was built with TensorRT 8.2.1, this is 8.5.2: rebuilding"),
    ({"gpu": "Orin"}, "built on GPU 'NVIDIA Tegra X1', this is 'Orin'"),
    ({"sm": "6.2"}, "compute capability 5.3, this GPU is 6.2"),
    ({"precision": "fp32"}, "built at fp16, fp32 is wanted"),
    ({"batch": (1, 8, 16)}, "batch sizes 1/64/1024 (min/opt/max), the bundle asks for 1/8/16"),
    ({"workspace_mb": 128}, "256 MB workspace, 128 MB is wanted"),
    ({"onnx_sha256": "cd" * 32}, "different ONNX graph"),
])
def test_mismatch_rebuilds_with_a_message_naming_the_field(tmp_path, change, message):
    engine_cache.store(str(tmp_path), "decoder", _fields(), b"engine-bytes")
    found = engine_cache.lookup(str(tmp_path), "decoder", _fields(**change))
    assert not found.hit
    assert message in found.reason and found.reason.endswith(": rebuilding")
    hit = engine_cache.lookup(str(tmp_path), "decoder", _fields())
    assert hit.hit and engine_cache.read_engine(hit.path) == b"engine-bytes"


def test_any_workspace_accepts_an_engine_built_with_another_cap(tmp_path):
    engine_cache.store(str(tmp_path), "decoder", _fields(workspace_mb=128), b"e")
    assert engine_cache.lookup(str(tmp_path), "decoder", _fields(), any_workspace=True).hit
    assert not engine_cache.lookup(str(tmp_path), "decoder", _fields()).hit


def test_tampered_or_orphaned_engines_are_rebuilt(tmp_path):
    bundle = str(tmp_path)
    path = engine_cache.store(bundle, "decoder", _fields(), b"good engine")
    with open(path, "wb") as handle:
        handle.write(b"evil engine")
    assert "does not match its sidecar's sha256" in engine_cache.lookup(bundle, "decoder", _fields()).reason
    with open(engine_cache.sidecar_path(path), "w") as handle:
        handle.write("{not json")
    assert "unreadable" in engine_cache.lookup(bundle, "decoder", _fields()).reason
    os.unlink(engine_cache.sidecar_path(path))
    assert "no sidecar" in engine_cache.lookup(bundle, "decoder", _fields()).reason


def test_kill_during_engine_write_leaves_no_file(tmp_path, monkeypatch):
    def killed(fd):
        raise KeyboardInterrupt("killed mid-write")
    monkeypatch.setattr(atomic.os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        engine_cache.store(str(tmp_path), "decoder", _fields(), b"x" * 4096)
    assert os.listdir(os.path.join(str(tmp_path), "engines")) == []


def test_kill_between_engine_and_sidecar_is_never_trusted(tmp_path, monkeypatch):
    def killed(path, obj):
        raise KeyboardInterrupt("killed before the sidecar")
    monkeypatch.setattr(engine_cache, "atomic_write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        engine_cache.store(str(tmp_path), "decoder", _fields(), b"engine")
    monkeypatch.undo()
    found = engine_cache.lookup(str(tmp_path), "decoder", _fields())
    assert not found.hit and "no sidecar" in found.reason
    removed = engine_cache.cleanup_engines(str(tmp_path))
    assert [os.path.basename(p) for p in removed] == [os.path.basename(found.path)]


def test_cleanup_keeps_good_engines_and_timing_caches(tmp_path):
    bundle = str(tmp_path)
    keep = engine_cache.store(bundle, "decoder", _fields(), b"a")
    old = engine_cache.store(bundle, "decoder", _fields(tensorrt="8.0.1"), b"b")
    orphan = engine_cache.store(bundle, "encoder", _fields(), b"c")
    os.unlink(orphan)  # its sidecar stays behind
    with open(os.path.join(bundle, "engines", ".decoder.engine.x.tmp"), "wb") as handle:
        handle.write(b"half")
    timing = engine_cache.timing_cache_path(bundle, "8.2.1", "NVIDIA Tegra X1")
    engine_cache.write_timing_cache(timing, b"tc")
    removed = engine_cache.cleanup_engines(bundle)
    left = sorted(os.listdir(os.path.join(bundle, "engines")))
    assert left == sorted([os.path.basename(p) for p in (keep, engine_cache.sidecar_path(keep), old,
                                                         engine_cache.sidecar_path(old), timing)])
    assert len(removed) == 2


def test_timing_cache_per_version_and_gpu(tmp_path):
    a = engine_cache.timing_cache_path("b", "8.2.1", "NVIDIA Tegra X1")
    assert a == os.path.join("b", "engines", "timing-trt8.2.1-NVIDIA_Tegra_X1.cache")
    assert a != engine_cache.timing_cache_path("b", "8.5.2", "NVIDIA Tegra X1")
    assert a != engine_cache.timing_cache_path("b", "8.2.1", "Orin")
    assert engine_cache.read_timing_cache(str(tmp_path / "none.cache")) == b""


# ----------------------------------------------------------------------------------------------
# shapes, profiles, chunks

def test_plan_chunks_and_padding():
    assert feeds.plan_chunks(5, 1, 8) == [(0, 5, 5)]
    assert feeds.plan_chunks(20, 1, 8) == [(0, 8, 8), (8, 16, 8), (16, 20, 4)]
    assert feeds.plan_chunks(5, 4, 4) == [(0, 4, 4), (4, 5, 4)]
    padded = feeds.pad_rows(np.arange(6, dtype=np.float32).reshape(3, 2), 5)
    assert padded.shape == (5, 2) and (padded[3:] == [4, 5]).all()


def test_check_feeds():
    shapes = {"z": (4,), "y": (3,)}
    n, arrays = feeds.check_feeds({"z": np.zeros((2, 4)), "y": np.zeros((2, 3))}, ["z", "y"], shapes)
    assert n == 2 and arrays["z"].dtype == np.float32
    with pytest.raises(JetgenError, match="takes inputs z, y"):
        feeds.check_feeds({"z": np.zeros((2, 4))}, ["z", "y"], shapes)
    with pytest.raises(JetgenError, match=r"shape \(batch, 4\)"):
        feeds.check_feeds({"z": np.zeros((2, 5)), "y": np.zeros((2, 3))}, ["z", "y"], shapes)
    with pytest.raises(JetgenError, match="same batch size"):
        feeds.check_feeds({"z": np.zeros((2, 4)), "y": np.zeros((3, 3))}, ["z", "y"], shapes)
    with pytest.raises(JetgenError, match="empty"):
        feeds.check_feeds({"z": np.zeros((0, 4)), "y": np.zeros((0, 3))}, ["z", "y"], shapes)


def test_profile_shapes():
    assert trt_build.profile_shapes((-1, 10), ["batch", 10], (1, 64, 1024)) == ((1, 10), (64, 10), (1024, 10))
    assert trt_build.profile_shapes((-1, -1, 28), ["batch", 1, 28], (1, 2, 4)) == ((1, 1, 28), (2, 1, 28), (4, 1, 28))
    with pytest.raises(JetgenError, match="only the batch axis"):
        trt_build.profile_shapes((-1, -1), ["batch", "n"], (1, 2, 4))
    with pytest.raises(JetgenError, match="fixed to 8"):
        trt_build.profile_shapes((8, 10), ["batch", 10], (1, 2, 4))


def test_parse_error_sentence_names_the_node():
    text = trt_build.describe_parse_errors(
        [{"node": 3, "name": "dec/up1", "op": "ConvTranspose", "desc": "kernel weights must be an initializer"}],
        "decoder.onnx", "8.2.1")
    assert text.startswith("TensorRT 8.2.1 could not parse decoder.onnx: node 3 (ConvTranspose 'dec/up1'): kernel")


def test_pick_cuda_api():
    assert cuda_mem.pick_api(True, True) == "cudart"
    assert cuda_mem.pick_api(True, False) == "pycuda"
    assert cuda_mem.pick_api(True, True, prefer="pycuda") == "pycuda"
    with pytest.raises(JetgenError, match="neither is installed.*pycuda 2022.1"):
        cuda_mem.pick_api(False, False)
    with pytest.raises(JetgenError, match="not installed"):
        cuda_mem.pick_api(True, False, prefer="cudart")


def test_workspace_default_comes_from_the_target_table():
    assert trt_build.default_workspace_mb("5.3") == 256
    assert trt_build.default_workspace_mb("8.7") == 2048
    assert trt_build.default_workspace_mb("8.6") == trt_build.DEFAULT_WORKSPACE_MB


# ----------------------------------------------------------------------------------------------
# fakes: device memory, pycuda, cuda.cudart, tensorrt

class FakeContext(object):
    """One CUDA context of the fake GPU: primary (one per device, what the runtime API binds) or made."""

    def __init__(self, device, primary):
        self.device, self.primary = device, primary

    def __repr__(self):
        return "<{} context of device {}>".format("primary" if self.primary else "made", self.device)


class FakeCudaError(Exception):
    """What the fake bindings raise where the real ones raise their own errors."""


class FakeGPU(object):
    """Host memory standing in for device memory; streams run their queued work at synchronize().

    It enforces CUDA's per-thread contexts as the real driver does: each thread has a stack of current
    contexts (the driver API's push/pop); the runtime API, where a thread's stack is empty, binds the
    primary context of the thread's device (``cudaSetDevice``; device 0 until then) on first use.
    A stream belongs to the context current where it was made, and copying or executing on it from a
    thread where another (or no) context is current fails.
    """

    def __init__(self, name="Fake Orin", cc=(8, 7), count=1):
        self.name, self.cc, self.count = name, cc, count
        self.log = []          # (event, detail) in call order
        self._buffers = {}
        self._queues = {}
        self._stream_ctx = {}
        self._primary = {}
        self._local = threading.local()
        self._lock = threading.Lock()

    # -- contexts
    def primary(self, device):
        with self._lock:
            return self._primary.setdefault(device, FakeContext(device, True))

    def stack(self):
        if not hasattr(self._local, "stack"):
            self._local.stack, self._local.device, self._local.bound = [], 0, None
        return self._local.stack

    def driver_current(self):
        """The driver API's current context in this thread: the stack's top, else what the runtime bound."""
        stack = self.stack()
        return stack[-1] if stack else self._local.bound

    def runtime_current(self):
        """The runtime API's context: the stack's top, else the thread's device's primary (bound now)."""
        stack = self.stack()
        if stack:
            return stack[-1]
        if self._local.bound is None:
            self._local.bound = self.primary(self._local.device)
        return self._local.bound

    def set_device(self, device):
        self.stack()
        self._local.device, self._local.bound = device, self.primary(device)

    # -- memory and streams
    def alloc(self, nbytes):
        buf = ctypes.create_string_buffer(int(nbytes))
        ptr = ctypes.addressof(buf)
        with self._lock:
            self._buffers[ptr] = buf
        return ptr

    def new_stream(self, context):
        with self._lock:
            handle = 1000 + len(self._queues)
            self._queues[handle] = []
            self._stream_ctx[handle] = context
        return handle

    def stream_context(self, stream):
        return self._stream_ctx[int(stream)]

    def enqueue(self, stream, event, work):
        with self._lock:
            self.log.append((event, threading.current_thread().name))
            self._queues[int(stream)].append(work)

    def memmove_later(self, stream, event, dst, src, nbytes):
        self.enqueue(stream, event, lambda: ctypes.memmove(int(dst), int(src), int(nbytes)))

    def synchronize(self, stream):
        with self._lock:
            queue, self._queues[int(stream)] = self._queues[int(stream)], []
        for work in queue:
            work()
        with self._lock:
            self.log.append(("sync", threading.current_thread().name))

    def events(self):
        return [e for e, _ in self.log]


PYCUDA_NO_CONTEXT = "explicit_context_dependent failed: invalid device context - no currently active context?"


def fake_pycuda_modules(gpu):
    """pycuda.driver + pycuda.autoinit: a context is current only in the threads that pushed it (autoinit
    makes one on device 0 at import and pushes it in the importing thread); work with no context or
    another one current raises pycuda's LogicError."""
    driver = types.ModuleType("pycuda.driver")

    class LogicError(FakeCudaError):
        pass

    def need_context():
        context = gpu.driver_current()
        if context is None:
            raise LogicError(PYCUDA_NO_CONTEXT)
        return context

    def need_stream_context(stream, call):
        context = gpu.driver_current()
        if context is not gpu.stream_context(stream.handle):
            raise LogicError("{} failed: invalid device context".format(call))

    class Stream(object):
        def __init__(self):
            self.handle = gpu.new_stream(need_context())

        def synchronize(self):
            need_stream_context(self, "cuStreamSynchronize")
            gpu.synchronize(self.handle)

    class DeviceAllocation(object):
        def __init__(self, nbytes):
            need_context()
            self.ptr = gpu.alloc(nbytes)

        def __int__(self):
            return self.ptr

        def free(self):
            gpu.log.append(("free", None))

    class Context(object):
        def __init__(self, device, primary):
            self.fake = gpu.primary(device) if primary else FakeContext(device, False)

        def push(self):
            gpu.stack().append(self.fake)

        @staticmethod
        def pop():
            if not gpu.stack():
                raise LogicError("cuCtxPopCurrent failed: invalid device context")
            gpu.stack().pop()

        def detach(self):  # letting go of a context still current here would destroy it under this thread
            if self.fake in gpu.stack():
                raise LogicError("cuDevicePrimaryCtxRelease while the context is current in this thread")
            gpu.log.append(("detach", None))

    class Device(object):
        def __init__(self, index):
            if not 0 <= int(index) < gpu.count:
                raise LogicError("cuDeviceGet failed: invalid device ordinal")
            self.index = int(index)

        @staticmethod
        def count():
            return gpu.count

        def name(self):
            return gpu.name

        def compute_capability(self):
            return gpu.cc

        def make_context(self):
            context = Context(self.index, False)
            context.push()
            return context

        def retain_primary_context(self):
            return Context(self.index, True)

    def pagelocked_empty(shape, dtype):
        need_context()
        return np.empty(shape, dtype)

    def htod(dest, src, stream):
        need_stream_context(stream, "cuMemcpyHtoDAsync")
        gpu.memmove_later(stream.handle, "htod", int(dest), src.ctypes.data, src.nbytes)

    def dtoh(dest, src, stream):
        need_stream_context(stream, "cuMemcpyDtoHAsync")
        gpu.memmove_later(stream.handle, "dtoh", dest.ctypes.data, int(src), dest.nbytes)

    driver.Stream, driver.Device, driver.Context, driver.LogicError = Stream, Device, Context, LogicError
    driver.init = lambda: None
    driver.mem_alloc = DeviceAllocation
    driver.pagelocked_empty = pagelocked_empty
    driver.memcpy_htod_async, driver.memcpy_dtoh_async = htod, dtoh
    package = types.ModuleType("pycuda")
    package.driver = driver
    package.__path__ = []

    class AutoinitLoader(importlib.abc.Loader):  # pycuda.autoinit runs its body at import, in that thread
        def create_module(self, spec):
            return None

        def exec_module(self, module):
            module.device = Device(0)
            module.context = module.device.make_context()

    class AutoinitFinder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "pycuda.autoinit" and sys.modules.get("pycuda") is package:
                return importlib.util.spec_from_loader(name, AutoinitLoader())
            return None

    return {"pycuda": package, "pycuda.driver": driver, "cuda": None, "cuda.cudart": None,
            "cuda.bindings": None}, AutoinitFinder()


def fake_cudart_modules(gpu):
    """cuda.cudart: the runtime binds the primary context of the thread's device on first use; work on a
    stream of another context returns cudaErrorInvalidResourceHandle (400)."""
    rt = types.ModuleType("cuda.cudart")
    ok, invalid_device, invalid_handle = 0, 101, 400
    rt.cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)

    def set_device(device):
        if not 0 <= int(device) < gpu.count:
            return (invalid_device,)
        gpu.set_device(int(device))
        return (ok,)

    def in_stream_context(stream):
        return gpu.runtime_current() is gpu.stream_context(stream)

    def memcpy_async(dst, src, nbytes, kind, stream):
        if not in_stream_context(stream):
            return (invalid_handle,)
        gpu.memmove_later(stream, "htod" if kind == 1 else "dtoh", dst, src, nbytes)
        return (ok,)

    def synchronize(stream):
        if not in_stream_context(stream):
            return (invalid_handle,)
        gpu.synchronize(stream)
        return (ok,)

    rt.cudaSetDevice = set_device
    rt.cudaGetDeviceCount = lambda: (ok, gpu.count)
    rt.cudaStreamCreate = lambda: (ok, gpu.new_stream(gpu.runtime_current()))
    rt.cudaMallocHost = lambda nbytes: (gpu.runtime_current(), ok, gpu.alloc(nbytes))[1:]
    rt.cudaMalloc = lambda nbytes: (gpu.runtime_current(), ok, gpu.alloc(nbytes))[1:]
    rt.cudaMemcpyAsync = memcpy_async
    rt.cudaStreamSynchronize = synchronize
    rt.cudaGetDeviceProperties = lambda device: (ok, types.SimpleNamespace(
        name=gpu.name.encode() + b"\0\0", major=gpu.cc[0], minor=gpu.cc[1]))
    rt.cudaFree = rt.cudaFreeHost = rt.cudaStreamDestroy = lambda x: (ok,)
    package = types.ModuleType("cuda")
    package.cudart = rt
    return {"cuda": package, "cuda.cudart": rt, "cuda.bindings": None,
            "pycuda": None, "pycuda.driver": None, "pycuda.autoinit": None}, None


def _enum(name, **members):
    return type(name, (object,), members)


def fake_tensorrt(version, gpu, calls, unsupported=("Reciprocal",)):
    """A ``tensorrt`` module with just the API surface of ``version``'s generation; calls are recorded."""
    v = trt_api.parse_version(version)
    has_bindings, has_tensors = v < (10, 0, 0), v >= (8, 5, 0)
    mod = types.ModuleType("tensorrt")
    mod.__version__ = version
    mod.Logger = type("Logger", (object,), {"WARNING": 2, "__init__": lambda self, severity=2: None})
    mod.DataType = _enum("DataType", FLOAT="float32")
    mod.float32 = mod.DataType.FLOAT
    mod.nptype = lambda dtype: np.float32
    mod.TensorIOMode = _enum("TensorIOMode", INPUT="INPUT", OUTPUT="OUTPUT")
    mod.BuilderFlag = _enum("BuilderFlag", FP16="FP16", INT8="INT8")
    flags = {"EXPLICIT_BATCH": 0}
    if v >= (10, 0, 0):
        flags["STRONGLY_TYPED"] = 1
    mod.NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag", **flags)
    if v >= (8, 4, 0):
        mod.MemoryPoolType = _enum("MemoryPoolType", WORKSPACE="WORKSPACE")
    if v < (10, 0, 0):
        mod.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (object,), {"__init__": lambda self: None})

    def record(name, *args):
        calls.append((name,) + args)

    class Tensor(object):
        def __init__(self, name, shape):
            self.name, self.shape = name, shape

    class Network(object):
        def __init__(self, flags):
            self.flags, self.inputs, self.outputs, self.onnx = flags, [], [], None

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, i):
            return self.inputs[i]

    class ParserError(object):
        def __init__(self, node, desc, name):
            self._node, self._desc, self._name = node, desc, name

        def node(self):
            return self._node

        def desc(self):
            return self._desc

    if v >= (10, 0, 0):
        ParserError.node_name = lambda self: self._name

    class OnnxParser(object):
        def __init__(self, network, logger):
            self.network, self.errors = network, []

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]

        def parse(self, data):
            record("parse")
            model = onnx.load_from_string(bytes(data))
            for i, node in enumerate(model.graph.node):
                if node.op_type in unsupported:
                    self.errors.append(ParserError(i, "No importer registered for op: " + node.op_type, node.name))
            if self.errors:
                return False
            dims = lambda vi: tuple(d.dim_value if d.HasField("dim_value") else -1
                                    for d in vi.type.tensor_type.shape.dim)
            self.network.inputs = [Tensor(vi.name, dims(vi)) for vi in model.graph.input]
            self.network.outputs = [Tensor(vi.name, dims(vi)) for vi in model.graph.output]
            self.network.onnx = bytes(data)
            return True

    mod.OnnxParser = OnnxParser

    class Profile(object):
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, low, opt, high):
            record("profile.set_shape", name, tuple(low), tuple(opt), tuple(high))
            self.shapes[name] = (tuple(low), tuple(opt), tuple(high))

    class TimingCache(object):
        def __init__(self, data):
            self.data = bytes(data)

        def serialize(self):
            return self.data + b"+"

    class Config(object):
        def __init__(self):
            object.__setattr__(self, "flags", [])
            object.__setattr__(self, "profiles", [])
            object.__setattr__(self, "workspace", None)
            object.__setattr__(self, "cache", None)

        def __setattr__(self, name, value):
            if name == "max_workspace_size" and not has_bindings:
                raise AttributeError("'IBuilderConfig' object has no attribute 'max_workspace_size'")
            if name == "max_workspace_size":
                record("config.max_workspace_size", value)
                object.__setattr__(self, "workspace", value)
                return
            if name == "int8_calibrator":
                record("config.int8_calibrator")
            object.__setattr__(self, name, value)

        def set_flag(self, flag):
            record("config.set_flag", flag)
            self.flags.append(flag)

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return 0

        def create_timing_cache(self, data):
            record("config.create_timing_cache", bytes(data))
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            object.__setattr__(self, "cache", cache)
            return True

        def get_timing_cache(self):
            return self.cache

    if v >= (8, 4, 0):
        def set_memory_pool_limit(self, pool, nbytes):
            record("config.set_memory_pool_limit", pool, nbytes)
            object.__setattr__(self, "workspace", nbytes)
        Config.set_memory_pool_limit = set_memory_pool_limit

    class Builder(object):
        def __init__(self, logger):
            record("Builder")

        platform_has_fast_fp16 = True
        platform_has_fast_int8 = gpu.cc >= (7, 0)

        def create_network(self, flags=0):
            record("create_network", flags)
            if has_bindings and v < (10, 0, 0) and not flags & 1:
                raise RuntimeError("implicit batch network: the ONNX parser needs EXPLICIT_BATCH")
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            record("build_serialized_network")
            assert config.workspace, "workspace was not capped"
            profile = config.profiles[0]
            assert sorted(profile.shapes) == sorted(t.name for t in network.inputs)
            head = {"version": version, "profile": {k: list(map(list, s)) for k, s in profile.shapes.items()},
                    "flags": list(config.flags), "network_flags": network.flags, "workspace": config.workspace,
                    "inputs": [[t.name, list(t.shape)] for t in network.inputs],
                    "outputs": [[t.name, list(t.shape)] for t in network.outputs]}
            return b"FAKEENGINE" + json.dumps(head).encode() + b"\n" + network.onnx

    mod.Builder = Builder

    class Context(object):
        def __init__(self, engine):
            self.engine, self.shapes, self.addresses = engine, {}, {}

        def _set_shape(self, name, shape):
            low, _, high = self.engine.head["profile"][name]
            ok = len(shape) == len(low) and all(lo <= s <= hi for s, lo, hi in zip(shape, low, high))
            if ok:
                self.shapes[name] = tuple(shape)
            return ok

        def _out_shape(self, name):
            batch = list(self.shapes.values())[0][0]
            return (batch,) + tuple(dict(self.engine.head["outputs"])[name][1:])

        def _enqueue(self, addresses, stream):
            # TensorRT runs in the runtime API's current context: the engine's, and the stream's
            current = gpu.runtime_current()
            if current is not self.engine.context or gpu.stream_context(stream) is not current:
                gpu.log.append(("trt-error", "Cuda Runtime (invalid resource handle)"))
                return False

            def work():
                feeds = {}
                for name, shape in self.shapes.items():
                    count = int(np.prod(shape))
                    feeds[name] = np.ctypeslib.as_array(
                        (ctypes.c_float * count).from_address(addresses[name])).reshape(shape).copy()
                for name, value in zip(self.engine.output_names, self.engine.session.run(None, feeds)):
                    value = np.ascontiguousarray(value, dtype=np.float32)
                    ctypes.memmove(addresses[name], value.ctypes.data, value.nbytes)
            gpu.enqueue(stream, "execute", work)
            return True

    if has_bindings:
        def set_binding_shape(self, index, shape):
            record("set_binding_shape", index, tuple(shape))
            return self._set_shape(self.engine.names[index], shape)

        def get_binding_shape(self, index):
            record("get_binding_shape", index)
            return self._out_shape(self.engine.names[index])

        def execute_async_v2(self, bindings, stream_handle):
            record("execute_async_v2", len(bindings))
            return self._enqueue(dict(zip(self.engine.names, bindings)), stream_handle)

        Context.set_binding_shape, Context.get_binding_shape = set_binding_shape, get_binding_shape
        Context.execute_async_v2 = execute_async_v2
    if has_tensors:
        def set_input_shape(self, name, shape):
            record("set_input_shape", name, tuple(shape))
            return self._set_shape(name, shape)

        def get_tensor_shape(self, name):
            record("get_tensor_shape", name)
            return self._out_shape(name)

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr
            return True

        def execute_async_v3(self, stream_handle):
            record("execute_async_v3")
            return self._enqueue(dict(self.addresses), stream_handle)

        Context.set_input_shape, Context.get_tensor_shape = set_input_shape, get_tensor_shape
        Context.set_tensor_address, Context.execute_async_v3 = set_tensor_address, execute_async_v3

    class Engine(object):
        def __init__(self, blob):
            head, onnx_bytes = blob[len(b"FAKEENGINE"):].split(b"\n", 1)
            self.head = json.loads(head.decode())
            self.input_names = [n for n, _ in self.head["inputs"]]
            self.output_names = [n for n, _ in self.head["outputs"]]
            self.names = self.input_names + self.output_names
            self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
            self.context = gpu.runtime_current()

        def create_execution_context(self):
            return Context(self)

    if has_bindings:
        Engine.num_bindings = property(lambda self: (record("num_bindings"), len(self.names))[1])
        Engine.get_binding_name = lambda self, i: self.names[i]
        Engine.binding_is_input = lambda self, i: i < len(self.input_names)
        Engine.get_binding_dtype = lambda self, i: mod.DataType.FLOAT
    if has_tensors:
        Engine.num_io_tensors = property(lambda self: (record("num_io_tensors"), len(self.names))[1])
        Engine.get_tensor_name = lambda self, i: self.names[i]
        Engine.get_tensor_mode = lambda self, name: (
            mod.TensorIOMode.INPUT if name in self.input_names else mod.TensorIOMode.OUTPUT)
        Engine.get_tensor_dtype = lambda self, name: mod.DataType.FLOAT

    class Runtime(object):
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            record("deserialize_cuda_engine")
            return Engine(bytes(blob)) if bytes(blob).startswith(b"FAKEENGINE") else None

    mod.Runtime = Runtime
    return mod


# ----------------------------------------------------------------------------------------------
# a small real bundle

Z, Y, SHAPE = 4, 3, (1, 2, 3)


def _decoder_model(unsupported_op=None):
    rng = np.random.RandomState(0)
    w = numpy_helper.from_array(rng.standard_normal((Z + Y, 6)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "b")
    s = numpy_helper.from_array(np.array([-1, 1, 2, 3], dtype=np.int64), "s")
    nodes = [helper.make_node("Concat", ["z", "y"], ["zy"], axis=1, name="concat"),
             helper.make_node("MatMul", ["zy", "W"], ["h"], name="dec/fc"),
             helper.make_node("Add", ["h", "b"], ["l"], name="dec/bias"),
             helper.make_node(unsupported_op or "Sigmoid", ["l"], ["p"], name="dec/out"),
             helper.make_node("Reshape", ["p", "s"], ["x"], name="dec/reshape")]
    graph = helper.make_graph(
        nodes, "decoder",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", Z]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", Y])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch"] + list(SHAPE))], [w, b, s])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _encoder_model():
    rng = np.random.RandomState(1)
    a = numpy_helper.from_array(rng.standard_normal((6, Z)).astype(np.float32), "A")
    s = numpy_helper.from_array(np.array([-1, 6], dtype=np.int64), "s")
    half = numpy_helper.from_array(np.array(0.5, dtype=np.float32), "half")
    nodes = [helper.make_node("Reshape", ["x", "s"], ["f"], name="enc/flat"),
             helper.make_node("MatMul", ["f", "A"], ["mu"], name="enc/mu"),
             helper.make_node("Mul", ["mu", "half"], ["logvar"], name="enc/logvar")]
    graph = helper.make_graph(
        nodes, "encoder", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch"] + list(SHAPE)),
                           helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", Y])],  # conditional, unused
        [helper.make_tensor_value_info("mu", TensorProto.FLOAT, ["batch", Z]),
         helper.make_tensor_value_info("logvar", TensorProto.FLOAT, ["batch", Z])], [a, s, half])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def make_bundle(root, batch=(1, 2, 4), unsupported_op=None, graph_precision="fp32"):
    bundle = os.path.join(str(root), "tiny.jetgen")
    os.makedirs(bundle)
    graphs = {}
    models = {"decoder": (_decoder_model(unsupported_op), [("z", [Z]), ("y", [Y])], [("x", list(SHAPE))]),
              "encoder": (_encoder_model(), [("x", list(SHAPE)), ("y", [Y])], [("mu", [Z]), ("logvar", [Z])])}
    for name, (model, inputs, outputs) in models.items():
        data = model.SerializeToString()
        with open(os.path.join(bundle, name + ".onnx"), "wb") as handle:
            handle.write(data)
        import hashlib
        graphs[name] = {
            "file": name + ".onnx", "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "opset": 13,
            "precision": graph_precision,
            "inputs": [{"name": n, "dtype": "float32", "shape": ["batch"] + s} for n, s in inputs],
            "outputs": [{"name": n, "dtype": "float32", "shape": ["batch"] + s} for n, s in outputs],
            "batch": {"min": batch[0], "opt": batch[1], "max": batch[2]}}
    manifest = {"format": "jetgen-bundle", "format_version": 1, "name": "tiny", "graphs": graphs,
                "precision": graph_precision,
                "model": {"kind": "cvae", "arch": "mlp", "latent_dim": Z, "conditional": True,
                          "labels": [str(i) for i in range(Y)], "output": {"shape": list(SHAPE), "range": [0.0, 1.0]},
                          "likelihood": {"name": "bernoulli", "sigma": None},
                          "prior": {"family": "gaussian", "params": {"mean": [0.0] * Z, "std": [1.0] * Z}}}}
    with open(os.path.join(bundle, "manifest.json"), "w") as handle:
        json.dump(manifest, handle)
    return bundle, manifest


@pytest.fixture
def fake_device(monkeypatch):
    """Install fake tensorrt + CUDA binding modules: fake_device(version, cuda='pycuda'|'cudart', cc=(8, 7),
    name='Fake Orin', count=1 (GPUs)) -> (FakeGPU, list of recorded TensorRT calls)."""
    def install(version, cuda="pycuda", cc=(8, 7), name="Fake Orin", count=1):
        gpu, calls = FakeGPU(name, cc, count), []
        modules, finder = fake_pycuda_modules(gpu) if cuda == "pycuda" else fake_cudart_modules(gpu)
        modules["tensorrt"] = fake_tensorrt(version, gpu, calls)
        for key, value in modules.items():
            monkeypatch.setitem(sys.modules, key, value)
        if finder is not None:  # pycuda.autoinit is imported for real, making its context in that thread
            monkeypatch.delitem(sys.modules, "pycuda.autoinit", raising=False)
            monkeypatch.setattr(sys, "meta_path", [finder] + sys.meta_path)
        monkeypatch.setattr(cuda_mem, "_OWNERS", {}, raising=False)  # no context owner outlives its fake
        return gpu, calls
    return install


def _reference(bundle, name, feeds):
    session = ort.InferenceSession(os.path.join(bundle, name + ".onnx"), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def _names(calls):
    return [c[0] for c in calls]


@pytest.mark.parametrize("version,cuda", [("8.0.1", "pycuda"), ("8.2.1", "pycuda"), ("8.5.2", "pycuda"),
                                          ("8.6.2", "cudart"), ("10.3", "cudart"), ("10.14", "cudart")])
def test_session_end_to_end_through_each_api_generation(tmp_path, fake_device, version, cuda):
    gpu, calls = fake_device(version, cuda)
    bundle, manifest = make_bundle(tmp_path)
    graph = manifest["graphs"]["decoder"]
    session = trt_backend.TrtSession(os.path.join(bundle, "decoder.onnx"), graph, bundle, precision="auto")
    api = trt_api.api_for(version)
    assert session.engine_info["status"] == "built" and "no engine built yet" in session.engine_info["reason"]
    assert session.engine_info["precision"] == ("fp16" if api["typing"] == "flags" else "fp32")

    rng = np.random.RandomState(2)
    feeds = {"z": rng.standard_normal((3, Z)).astype(np.float32), "y": np.eye(Y, dtype=np.float32)[[0, 1, 2]]}
    out = session.run(feeds)
    assert sorted(out) == ["x"] and out["x"].dtype == np.float32 and out["x"].shape == (3,) + SHAPE
    np.testing.assert_allclose(out["x"], _reference(bundle, "decoder", feeds)["x"], rtol=1e-6, atol=1e-6)

    names = _names(calls)
    # the builder: network flags, workspace call and precision flags of this generation
    net_flags = [c[1] for c in calls if c[0] == "create_network"][0]
    assert bool(net_flags & 1) == api["explicit_batch"]
    assert bool(net_flags & 2) == (api["typing"] == "strong")
    if api["workspace"] == "memory_pool":
        assert ("config.set_memory_pool_limit", "WORKSPACE", 2048 << 20) in calls
        assert "config.max_workspace_size" not in names
    else:
        assert ("config.max_workspace_size", 2048 << 20) in calls
    assert (("config.set_flag", "FP16") in calls) == (api["typing"] == "flags")
    assert ("profile.set_shape", "z", (1, Z), (2, Z), (4, Z)) in calls
    # the runtime: bindings on 8.0-8.4, named tensors from 8.5 (no deprecated binding calls)
    if api["io"] == "bindings":
        assert "execute_async_v2" in names and "set_binding_shape" in names
        assert not {"execute_async_v3", "set_input_shape", "num_io_tensors"} & set(names)
    else:
        assert "execute_async_v3" in names and ("set_input_shape", "z", (3, Z)) in calls
        assert not {"execute_async_v2", "set_binding_shape", "num_bindings"} & set(names)
    # each call: copy in, execute, copy out, synchronise
    assert gpu.events()[-5:] == ["htod", "htod", "execute", "dtoh", "sync"]
    session.close()

    # a second session reuses the engine; the timing cache of this TensorRT + GPU was written
    del calls[:]
    again = trt_backend.TrtSession(os.path.join(bundle, "decoder.onnx"), graph, bundle, precision="auto")
    assert again.engine_info["status"] == "cached" and "build_serialized_network" not in _names(calls)
    assert os.path.exists(engine_cache.timing_cache_path(bundle, api["version"], "Fake Orin"))
    np.testing.assert_allclose(again.run(feeds)["x"], out["x"])
    again.close()


@pytest.mark.parametrize("version", ["8.2.1", "10.3"])
def test_batches_above_the_profile_run_in_chunks(tmp_path, fake_device, version):
    gpu, calls = fake_device(version, "pycuda")
    bundle, manifest = make_bundle(tmp_path, batch=(2, 2, 4))
    session = trt_backend.TrtSession(os.path.join(bundle, "encoder.onnx"), manifest["graphs"]["encoder"], bundle,
                                     precision="fp32")
    x = np.random.RandomState(3).uniform(size=(9,) + SHAPE).astype(np.float32)
    y = np.eye(Y, dtype=np.float32)[np.arange(9) % Y]
    with pytest.raises(JetgenError, match="runs batches of 2 to 4"):
        session.run({"x": x, "y": y})  # a session takes its profile's range; Model.run chunks
    out = feeds.run_in_chunks(session.run, {"x": x, "y": y}, 2, 4)
    ref = _reference(bundle, "encoder", {"x": x, "y": y})
    for name in ("mu", "logvar"):
        assert out[name].shape == (9, Z)
        np.testing.assert_allclose(out[name], ref[name], rtol=1e-5, atol=1e-6)
    shape_call = "set_binding_shape" if version.startswith("8") else "set_input_shape"
    # 9 = 4 + 4 + 1 padded to min 2; the shape is set for both inputs (x, y) of each chunk
    assert [c[-1][0] for c in calls if c[0] == shape_call] == [4, 4, 4, 4, 2, 2]
    assert gpu.events().count("sync") == 3
    session.close()


def test_int8_refused_on_a_nano_and_parse_errors_name_the_node(tmp_path, fake_device):
    fake_device("8.2.1", "pycuda", cc=(5, 3), name="NVIDIA Tegra X1")
    bundle, manifest = make_bundle(tmp_path)
    onnx_path = os.path.join(bundle, "decoder.onnx")
    with pytest.raises(JetgenError, match="no INT8 support"):
        trt_backend.TrtSession(onnx_path, manifest["graphs"]["decoder"], bundle, precision="int8")
    bad_bundle, bad = make_bundle(tmp_path / "bad", unsupported_op="Reciprocal")
    with pytest.raises(JetgenError) as err:
        trt_backend.TrtSession(os.path.join(bad_bundle, "decoder.onnx"), bad["graphs"]["decoder"], bad_bundle)
    assert "could not parse decoder.onnx: node 3 (Reciprocal 'dec/out')" in str(err.value)


def test_session_without_a_cuda_binding_says_what_to_install(tmp_path, fake_device, monkeypatch):
    fake_device("8.2.1", "pycuda")
    for key in ("pycuda", "pycuda.driver", "pycuda.autoinit"):
        monkeypatch.setitem(sys.modules, key, None)
    bundle, manifest = make_bundle(tmp_path)
    with pytest.raises(JetgenError, match="needs pycuda or cuda-python"):
        trt_backend.TrtSession(os.path.join(bundle, "decoder.onnx"), manifest["graphs"]["decoder"], bundle)


def _cli(args):
    from jetgen.cli import main
    return CliRunner().invoke(main, args)


def test_build_command_builds_then_reuses(tmp_path, fake_device):
    fake_device("8.6.2", "cudart", cc=(7, 2), name="Xavier")
    bundle, _ = make_bundle(tmp_path)
    first = _cli(["build", bundle, "--precision", "fp16"])
    assert first.exit_code == 0, first.output
    assert "TensorRT 8.6.2 on Xavier (sm_72)" in first.output
    assert "decoder" in first.output and "built (no engine built yet: rebuilding)" in first.output
    assert "engines/decoder-fp16-" in first.output
    second = _cli(["build", bundle, "--precision", "fp16", "--json"])
    assert second.exit_code == 0, second.output
    report = json.loads(second.output)
    assert [e["status"] for e in report["engines"]] == ["cached", "cached"]
    assert "cached (reused)" in _cli(["build", bundle, "--precision", "fp16", "--graph", "encoder"]).output
    forced = json.loads(_cli(["build", bundle, "--precision", "fp16", "--graph", "decoder", "--force",
                              "--json"]).output)
    assert forced["engines"][0]["status"] == "built" and forced["engines"][0]["reason"] == "--force: rebuilding"


def test_build_command_without_tensorrt_exits_non_zero_with_a_sentence(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    bundle, _ = make_bundle(tmp_path)
    result = _cli(["build", bundle])
    assert result.exit_code != 0
    assert "python3-libnvinfer" in result.output and "jetson/README.md" in result.output


def test_int8_from_a_qdq_graph_or_a_calibration_cache(tmp_path, fake_device):
    gpu, calls = fake_device("8.5.2", "pycuda", cc=(7, 2), name="Xavier")
    bundle, manifest = make_bundle(tmp_path, graph_precision="int8")  # the exporter wrote QDQ
    session = trt_backend.TrtSession(os.path.join(bundle, "decoder.onnx"), manifest["graphs"]["decoder"], bundle,
                                     precision="auto")
    assert session.engine_info["precision"] == "int8"
    assert ("config.set_flag", "INT8") in calls and "config.int8_calibrator" not in _names(calls)
    session.close()

    plain, plain_manifest = make_bundle(tmp_path / "plain")
    cache = tmp_path / "calib.cache"
    cache.write_bytes(b"TRT-8502-EntropyCalibration2\n")
    del calls[:]
    session = trt_backend.TrtSession(os.path.join(plain, "encoder.onnx"), plain_manifest["graphs"]["encoder"], plain,
                                     precision="int8", calibration_cache=str(cache))
    assert session.engine_info["precision_reason"] == "requested; scales from the INT8 calibration cache"
    assert "config.int8_calibrator" in _names(calls)
    session.close()


def test_calibration_caches_are_refused_on_tensorrt_10(tmp_path, fake_device):
    fake_device("10.3", "cudart")
    bundle, manifest = make_bundle(tmp_path)
    cache = tmp_path / "calib.cache"
    cache.write_bytes(b"x")
    with pytest.raises(JetgenError, match="calibration caches are not used with TensorRT 10.3"):
        trt_backend.TrtSession(os.path.join(bundle, "decoder.onnx"), manifest["graphs"]["decoder"], bundle,
                               precision="int8", calibration_cache=str(cache))


# ----------------------------------------------------------------------------------------------
# CUDA contexts and threads

def _in_thread(func):
    """Run ``func()`` in a new thread; return what it returned or raise what it raised."""
    out = {}

    def body():
        try:
            out["value"] = func()
        except BaseException as err:  # handed to the caller
            out["error"] = err
    thread = threading.Thread(target=body)
    thread.start()
    thread.join(30)
    if "error" in out:
        raise out["error"]
    return out.get("value")


def test_the_fake_pycuda_binds_its_context_to_the_importing_thread(fake_device):
    fake_device("8.2.1", "pycuda")
    import pycuda.autoinit  # noqa: F401  (the fake makes its context here, in this thread)
    import pycuda.driver as cuda
    stream = cuda.Stream()
    host = np.zeros(4, np.float32)
    device = cuda.mem_alloc(host.nbytes)
    cuda.memcpy_htod_async(device, host, stream)  # fine here
    with pytest.raises(cuda.LogicError, match="explicit_context_dependent failed: invalid device context"):
        _in_thread(lambda: cuda.mem_alloc(16))
    with pytest.raises(cuda.LogicError, match="invalid device context"):
        _in_thread(lambda: cuda.memcpy_htod_async(device, host, stream))
    pycuda.autoinit.context.push()  # pushing makes it current: what jetgen's context owner does
    cuda.Context.pop()


@pytest.mark.parametrize("version,cuda,device,count", [("8.2.1", "pycuda", None, 1), ("8.6.2", "pycuda", "cuda:1", 2),
                                                       ("10.3", "cudart", None, 1), ("10.3", "cudart", "cuda:1", 2)])
def test_a_session_opened_in_one_thread_runs_and_closes_in_others(tmp_path, fake_device, version, cuda, device, count):
    gpu, _ = fake_device(version, cuda, count=count)
    bundle, manifest = make_bundle(tmp_path)
    path = os.path.join(bundle, "decoder.onnx")
    session = _in_thread(lambda: trt_backend.TrtSession(path, manifest["graphs"]["decoder"], bundle))
    rng = np.random.RandomState(0)
    feeds = [{"z": rng.standard_normal((3, Z)).astype(np.float32), "y": np.eye(Y, dtype=np.float32)[[0, 1, 2]]}
             for _ in range(6)]
    got = [None] * len(feeds)

    def work(i):
        got[i] = session.run(feeds[i])["x"]
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(feeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for i, f in enumerate(feeds):
        np.testing.assert_allclose(got[i], _reference(bundle, "decoder", f)["x"], rtol=1e-6)
    assert "trt-error" not in gpu.events()
    _in_thread(session.close)
    assert cuda_mem._OWNERS == {}
    with pytest.raises(JetgenError, match="session is closed"):
        session.run(feeds[0])


@pytest.mark.parametrize("text,index", [(None, 0), ("", 0), ("cuda", 0), ("GPU", 0), ("cuda:2", 2), ("1", 1), (3, 3)])
def test_parse_device_for_tensorrt(text, index):
    assert cuda_mem.parse_device(text) == index


@pytest.mark.parametrize("cuda,device,options,words", [
    ("pycuda", "cpu", {}, "TensorRT runs on the GPU only; for the CPU use --backend ort"),
    ("pycuda", "tensorrt", {}, "ONNX Runtime's TensorRT provider (--backend ort)"),
    ("pycuda", "cuda:x", {}, "Cannot read device 'cuda:x'"),
    ("pycuda", "cuda:3", {}, "CUDA device 3 does not exist: this machine has 1"),
    ("cudart", "cuda:3", {}, "CUDA device 3 does not exist: this machine has 1"),
    ("pycuda", None, {"cuda_api": "cudart"}, "cudart was asked for but is not installed; pycuda is"),
    ("cudart", None, {"cuda_api": "pycuda"}, "pycuda was asked for but is not installed; cuda-python is"),
    ("cudart", None, {"cuda_api": "numba"}, "Unknown CUDA binding 'numba'"),
])
def test_device_and_binding_mismatches_are_sentences(tmp_path, fake_device, cuda, device, options, words):
    fake_device("10.3" if cuda == "cudart" else "8.2.1", cuda)
    bundle, manifest = make_bundle(tmp_path)
    with pytest.raises(JetgenError) as err:
        trt_backend.TrtSession(os.path.join(bundle, "decoder.onnx"), manifest["graphs"]["decoder"], bundle,
                               device=device, **options)
    assert words in str(err.value)
    assert cuda_mem._OWNERS == {}


def test_a_binding_that_cannot_open_the_device_is_a_sentence(tmp_path, fake_device, monkeypatch):
    fake_device("8.2.1", "pycuda")

    def broken():
        raise sys.modules["pycuda.driver"].LogicError("cuInit failed: no CUDA-capable device is detected")
    monkeypatch.setattr(sys.modules["pycuda.driver"], "init", broken)
    bundle, manifest = make_bundle(tmp_path)
    with pytest.raises(JetgenError, match="Cannot open CUDA device 0 through pycuda: cuInit failed.*nvidia-smi"):
        trt_backend.TrtSession(os.path.join(bundle, "decoder.onnx"), manifest["graphs"]["decoder"], bundle)


def test_cli_backend_trt_device_cuda_runs_and_device_cpu_is_a_sentence(tmp_path, fake_device):
    fake_device("10.3", "cudart")
    bundle, _ = make_bundle(tmp_path)
    out = str(tmp_path / "x.npy")
    ok = _cli(["sample", bundle, "--backend", "trt", "--device", "cuda", "-n", "2", "--label", "1", "--seed", "0",
               "-o", out])
    assert ok.exit_code == 0, ok.output
    assert np.load(out).shape == (2,) + SHAPE
    bad = _cli(["sample", bundle, "--backend", "trt", "--device", "cpu", "-n", "2", "--label", "1", "-o", out])
    assert bad.exit_code == 1 and "TensorRT runs on the GPU only" in bad.output and "Traceback" not in bad.output
