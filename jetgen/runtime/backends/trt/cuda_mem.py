"""GPU memory for the TensorRT backend: pinned host buffers, device buffers, one stream, and the one
owner of each device's CUDA context.

Two ways to reach CUDA from Python, chosen by what is installed:
- pycuda: the only option on JetPack 4 (Python 3.6; pycuda 2022.1 is the last for 3.6);
- cuda-python (``cuda.bindings.runtime``, formerly ``cuda.cudart``): Python 3.9+ and CUDA 11+.

CUDA contexts are per thread. A pycuda context is current only in the thread that made it current
(``pycuda.autoinit`` makes one at import, in the importing thread); any other thread that copies or
launches must push it first, or pycuda raises "invalid device context". cuda-python's runtime binds the
device's primary context to each thread on first use, on device 0 unless ``cudaSetDevice`` says
otherwise. ``jetgen serve`` answers requests and runs jobs in many threads, so every device has one
:class:`DeviceContext` per binding in this process (:func:`device_context`): the device's *primary*
context (the one the CUDA runtime, TensorRT and PyTorch use), and a lock. ``with owner.active():``
makes that context current in the calling thread (pycuda: push, then pop on the way out; cudart:
``cudaSetDevice``) and holds the lock, so one thread at a time works on the device; nested
``active()`` in one thread only counts. Every method below runs inside ``active()`` itself; callers
wrap a whole inference in it so that TensorRT's own calls see the same context.

Both bindings give the same small object (see :class:`PycudaMemory`): ``pinned(shape, dtype)`` ->
numpy array in page-locked memory, ``alloc(nbytes)`` -> device pointer (int), ``htod(ptr, array)`` and
``dtoh(array, ptr)`` (asynchronous, on the one stream), ``stream_handle`` (int for TensorRT's
execute calls), ``synchronize()``, ``device_info()``, ``active()`` and ``close()``. Copies are
asynchronous: read a host buffer only after ``synchronize()``. Python 3.6 compatible; pycuda and cuda
are imported only inside functions.
"""
import contextlib
import ctypes
import re
import threading

import numpy as np

from jetgen.errors import JetgenError

APIS = ("pycuda", "cudart")

# --device for the TensorRT backend: what each spelling means (None: refused with the sentence)
_DEVICE_FORMS = (
    (re.compile(r"^(?:cuda|gpu)?$"), lambda m: 0),
    (re.compile(r"^(?:cuda:|gpu:)?(\d+)$"), lambda m: int(m.group(1))),
)
_NOT_A_GPU = {
    "cpu": "TensorRT runs on the GPU only; for the CPU use --backend ort --device cpu.",
    "tensorrt": "--device tensorrt picks ONNX Runtime's TensorRT provider (--backend ort); with --backend trt "
                "leave --device out or give cuda or cuda:N.",
    "trt": "--device trt is not a device; with --backend trt leave --device out or give cuda or cuda:N.",
}


def parse_device(device):
    """The CUDA device index for a ``--device`` given to the TensorRT backend: None, '', 'cuda' and 'gpu'
    are device 0; 'cuda:N', 'gpu:N', 'N' or an int N are device N. JetgenError with the reason otherwise."""
    if device is None:
        return 0
    if isinstance(device, int) and not isinstance(device, bool):
        if device < 0:
            raise JetgenError("CUDA device {} does not exist; device numbers start at 0.".format(device))
        return device
    text = str(device).strip().lower()
    if text in _NOT_A_GPU:
        raise JetgenError(_NOT_A_GPU[text])
    for pattern, index in _DEVICE_FORMS:
        match = pattern.match(text)
        if match:
            return index(match)
    raise JetgenError("Cannot read device {!r} for the TensorRT backend; use cuda, cuda:N or N "
                      "(or leave --device out for the first GPU).".format(device))


def pick_api(have_pycuda, have_cudart, prefer=None):
    """Which CUDA binding to use: 'pycuda' or 'cudart'; JetgenError when none (or not the preferred one).

    cuda-python is preferred where both exist (it is maintained by NVIDIA and needs no compiler);
    pycuda is the JetPack 4 answer.
    """
    have = {"pycuda": have_pycuda, "cudart": have_cudart}
    if prefer is not None:
        if prefer not in APIS:
            raise JetgenError("Unknown CUDA binding {!r}; choose one of: {}.".format(prefer, ", ".join(APIS)))
        if not have[prefer]:
            raise JetgenError("The CUDA binding {} was asked for but is not installed{}.".format(
                prefer, "; pycuda is, so leave cuda_api out or ask for pycuda" if have["pycuda"] else
                "; cuda-python is, so leave cuda_api out or ask for cudart" if have["cudart"] else ""))
        return prefer
    if have_cudart:
        return "cudart"
    if have_pycuda:
        return "pycuda"
    raise JetgenError(
        "The TensorRT backend needs pycuda or cuda-python to move data to the GPU, and neither is "
        "installed. On JetPack 4 (Python 3.6) install pycuda 2022.1 with /usr/local/cuda/bin on PATH; "
        "on JetPack 5/6 'pip install cuda-python' (matching the CUDA major version) or pycuda. "
        "See jetson/README.md.")


def _import_cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        return cudart
    except ImportError:
        pass
    try:
        from cuda import cudart  # older cuda-python
        return cudart
    except ImportError:
        return None


def _import_pycuda():
    try:
        import pycuda.driver as driver
        return driver
    except ImportError:
        return None


def _no_device(api, device, err):
    """The sentence for a device the binding cannot open (raw binding errors stay in the detail)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return JetgenError(
        "Cannot open CUDA device {} through {}: {}. Check that the GPU is visible (nvidia-smi, or tegrastats "
        "on a Jetson), that --device names one that exists (cuda or cuda:N), and that this user may use "
        "it.".format(device, api, text))


class DeviceContext(object):
    """The one owner of device ``device``'s primary CUDA context for one binding, in this process.

    ``active()`` makes the context current in the calling thread and holds the device's lock for the
    duration (reentrant in one thread); ``release()`` gives up one user's claim (the context is let go
    when the last user releases it). Get one through :func:`device_context`, never directly.
    """

    def __init__(self, api, module, device):
        self.api, self.device, self._module = api, device, module
        self.lock = threading.RLock()
        self.users = 0
        self._local = threading.local()
        self._context = None
        if api == "pycuda":
            module.init()
            count = module.Device.count()
            if device >= count:
                raise JetgenError("CUDA device {} does not exist: this machine has {} (cuda:0 to cuda:{}).".format(
                    device, count, count - 1) if count else "No CUDA device is visible to pycuda; check the driver "
                    "(nvidia-smi, or tegrastats on a Jetson).")
            self._context = module.Device(device).retain_primary_context()  # not current anywhere yet
        else:
            count = int(_check(module.cudaGetDeviceCount(), "cudaGetDeviceCount"))
            if device >= count:
                raise JetgenError("CUDA device {} does not exist: this machine has {} (cuda:0 to cuda:{}).".format(
                    device, count, count - 1) if count else "No CUDA device is visible to cuda-python; check the "
                    "driver (nvidia-smi, or tegrastats on a Jetson).")

    @contextlib.contextmanager
    def active(self):
        """Hold the device and make its context current in this thread until the block ends."""
        with self.lock:
            depth = getattr(self._local, "depth", 0)
            if depth == 0:
                if self.api == "pycuda":
                    self._context.push()
                else:
                    _check(self._module.cudaSetDevice(self.device), "cudaSetDevice")
            self._local.depth = depth + 1
            try:
                yield self
            finally:
                self._local.depth = depth
                if depth == 0 and self.api == "pycuda":
                    self._module.Context.pop()

    def release(self):
        """One user fewer; the last one lets go of the primary context (pycuda: detach)."""
        with _OWNERS_LOCK:
            self.users -= 1
            if self.users > 0:
                return
            _OWNERS.pop((self.api, id(self._module), self.device), None)
        if self._context is not None:
            with self.lock:
                self._context.detach()
            self._context = None


_OWNERS = {}  # (api, id(binding module), device) -> DeviceContext
_OWNERS_LOCK = threading.Lock()


def device_context(api, module, device):
    """The process's one :class:`DeviceContext` for ``device`` through binding ``api`` (made on first use),
    with one more user counted; JetgenError when the device cannot be opened."""
    key = (api, id(module), device)
    with _OWNERS_LOCK:
        owner = _OWNERS.get(key)
        if owner is None:
            try:
                owner = DeviceContext(api, module, device)
            except JetgenError:
                raise
            except Exception as err:  # pycuda / cuda-python raise their own types: say it as a sentence
                raise _no_device(api, device, err)
            _OWNERS[key] = owner
        owner.users += 1
        return owner


def open_memory(prefer=None, device=None):
    """A memory object for ``device`` (see :func:`parse_device`; default the first GPU) through the binding
    :func:`pick_api` picks, on that device's one :class:`DeviceContext`. JetgenError for a device that
    is not a GPU, does not exist or cannot be opened, or when no binding is installed."""
    index = parse_device(device)
    cudart, driver = _import_cudart(), _import_pycuda()
    api = pick_api(driver is not None, cudart is not None, prefer)
    owner = device_context(api, cudart if api == "cudart" else driver, index)
    try:
        with owner.active():
            return CudartMemory(cudart, owner) if api == "cudart" else PycudaMemory(driver, owner)
    except JetgenError:
        owner.release()
        raise
    except Exception as err:
        owner.release()
        raise _no_device(api, index, err)


class PycudaMemory(object):
    """pycuda: pagelocked_empty, mem_alloc, memcpy_htod_async / memcpy_dtoh_async on one Stream, all in
    the device's primary context (``owner``)."""

    api = "pycuda"

    def __init__(self, driver, owner):
        self._cuda = driver
        self.owner = owner
        self._device = owner.device
        with owner.active():
            self._stream = driver.Stream()
        self._allocations = {}
        self._pinned = []

    def active(self):
        """The device's context current in this thread, the device held (see :class:`DeviceContext`)."""
        return self.owner.active()

    @property
    def stream_handle(self):
        return int(self._stream.handle)

    def device_info(self):
        dev = self._cuda.Device(self._device)
        major, minor = dev.compute_capability()
        return {"name": str(dev.name()), "sm": "{}.{}".format(major, minor)}

    def pinned(self, shape, dtype):
        with self.owner.active():
            array = self._cuda.pagelocked_empty(shape, dtype)
        self._pinned.append(array)
        return array

    def alloc(self, nbytes):
        with self.owner.active():
            allocation = self._cuda.mem_alloc(max(int(nbytes), 1))
        ptr = int(allocation)
        self._allocations[ptr] = allocation
        return ptr

    def htod(self, ptr, host):
        with self.owner.active():
            self._cuda.memcpy_htod_async(self._allocations[ptr], host, self._stream)

    def dtoh(self, host, ptr):
        with self.owner.active():
            self._cuda.memcpy_dtoh_async(host, self._allocations[ptr], self._stream)

    def synchronize(self):
        with self.owner.active():
            self._stream.synchronize()

    def close(self):
        """Free the buffers and the stream in the device's context, then give up this user's claim on it."""
        if self.owner is None:
            return
        with self.owner.active():
            for allocation in self._allocations.values():
                allocation.free()
            for array in self._pinned:
                base = getattr(array, "base", None)
                if hasattr(base, "free"):
                    base.free()
            self._allocations, self._pinned = {}, []
            self._stream = None
        self.owner.release()
        self.owner = None


def _check(result, what):
    """cuda-python calls return (error, *values); raise JetgenError unless error is success."""
    err, values = result[0], result[1:]
    if int(getattr(err, "value", err)) != 0:  # cudaError_t is an enum; cudaSuccess is 0
        raise JetgenError("CUDA call {} failed with {}; check that the GPU is free and the driver works "
                          "(nvidia-smi or tegrastats).".format(what, err))
    if not values:
        return None
    return values[0] if len(values) == 1 else values


class CudartMemory(object):
    """cuda-python runtime: cudaMallocHost, cudaMalloc, cudaMemcpyAsync on one cudaStream_t, with
    ``cudaSetDevice`` made in whichever thread calls (through ``owner``)."""

    api = "cudart"

    def __init__(self, cudart, owner):
        self._rt = cudart
        self.owner = owner
        self._device = owner.device
        with owner.active():
            self._stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._device_ptrs = []
        self._host_ptrs = []

    def active(self):
        """The device current in this thread, the device held (see :class:`DeviceContext`)."""
        return self.owner.active()

    @property
    def stream_handle(self):
        return int(self._stream)

    def device_info(self):
        props = _check(self._rt.cudaGetDeviceProperties(self._device), "cudaGetDeviceProperties")
        name = props.name
        if isinstance(name, bytes):
            name = name.split(b"\0", 1)[0].decode("utf-8", "replace")
        return {"name": str(name), "sm": "{}.{}".format(props.major, props.minor)}

    def pinned(self, shape, dtype):
        dtype = np.dtype(dtype)
        count = int(np.prod(shape)) if len(shape) else 1
        with self.owner.active():
            ptr = _check(self._rt.cudaMallocHost(max(count * dtype.itemsize, 1)), "cudaMallocHost")
        self._host_ptrs.append(ptr)
        pointer = ctypes.cast(int(ptr), ctypes.POINTER(np.ctypeslib.as_ctypes_type(dtype)))
        return np.ctypeslib.as_array(pointer, (max(count, 1),))[:count].reshape(shape)

    def alloc(self, nbytes):
        with self.owner.active():
            ptr = int(_check(self._rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc"))
        self._device_ptrs.append(ptr)
        return ptr

    def htod(self, ptr, host):
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        with self.owner.active():
            _check(self._rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, self._stream),
                   "cudaMemcpyAsync")

    def dtoh(self, host, ptr):
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        with self.owner.active():
            _check(self._rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, self._stream),
                   "cudaMemcpyAsync")

    def synchronize(self):
        with self.owner.active():
            _check(self._rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def close(self):
        """Free the buffers and the stream on the device, then give up this user's claim on it."""
        if self.owner is None:
            return
        with self.owner.active():
            for ptr in self._device_ptrs:
                self._rt.cudaFree(ptr)
            for ptr in self._host_ptrs:
                self._rt.cudaFreeHost(ptr)
            self._device_ptrs, self._host_ptrs = [], []
            if self._stream is not None:
                self._rt.cudaStreamDestroy(self._stream)
                self._stream = None
        self.owner.release()
        self.owner = None
