"""GPU memory for the TensorRT backend: pinned host buffers, device buffers, one stream.

Two ways to reach CUDA from Python, chosen by what is installed:
- pycuda: the only option on JetPack 4 (Python 3.6; pycuda 2022.1 is the last for 3.6);
- cuda-python (``cuda.bindings.runtime``, formerly ``cuda.cudart``): Python 3.9+ and CUDA 11+.
Both give the same small object (see :class:`PycudaMemory`): ``pinned(shape, dtype)`` -> numpy array
in page-locked memory, ``alloc(nbytes)`` -> device pointer (int), ``htod(ptr, array)`` and
``dtoh(array, ptr)`` (asynchronous, on the one stream), ``stream_handle`` (int for TensorRT's
execute calls), ``synchronize()``, ``device_info()`` and ``close()``. Copies are asynchronous: read
a host buffer only after ``synchronize()``. Python 3.6 compatible; pycuda and cuda are imported only
inside functions.
"""
import ctypes

import numpy as np

from jetgen.errors import JetgenError

APIS = ("pycuda", "cudart")


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
            raise JetgenError("The CUDA binding {} was asked for but is not installed.".format(prefer))
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


def _have_pycuda():
    try:
        import pycuda.driver  # noqa: F401
        return True
    except ImportError:
        return False


def open_memory(prefer=None, device=None):
    """A memory object for device ``device`` (index, default 0) through the binding :func:`pick_api` picks."""
    cudart = _import_cudart()
    api = pick_api(_have_pycuda(), cudart is not None, prefer)
    if api == "cudart":
        return CudartMemory(cudart, device or 0)
    return PycudaMemory(device or 0)


class PycudaMemory(object):
    """pycuda: pagelocked_empty, mem_alloc, memcpy_htod_async / memcpy_dtoh_async on one Stream."""

    api = "pycuda"

    def __init__(self, device=0):
        import pycuda.driver as cuda
        self._cuda = cuda
        self._context = None
        if device == 0:
            import pycuda.autoinit  # noqa: F401  (creates and activates a context on device 0)
        else:
            cuda.init()
            self._context = cuda.Device(device).make_context()
        self._device = device
        self._stream = cuda.Stream()
        self._allocations = {}

    @property
    def stream_handle(self):
        return int(self._stream.handle)

    def device_info(self):
        dev = self._cuda.Device(self._device)
        major, minor = dev.compute_capability()
        return {"name": str(dev.name()), "sm": "{}.{}".format(major, minor)}

    def pinned(self, shape, dtype):
        return self._cuda.pagelocked_empty(shape, dtype)

    def alloc(self, nbytes):
        allocation = self._cuda.mem_alloc(max(int(nbytes), 1))
        ptr = int(allocation)
        self._allocations[ptr] = allocation
        return ptr

    def htod(self, ptr, host):
        self._cuda.memcpy_htod_async(self._allocations[ptr], host, self._stream)

    def dtoh(self, host, ptr):
        self._cuda.memcpy_dtoh_async(host, self._allocations[ptr], self._stream)

    def synchronize(self):
        self._stream.synchronize()

    def close(self):
        for allocation in self._allocations.values():
            allocation.free()
        self._allocations = {}
        if self._context is not None:
            self._context.pop()
            self._context = None


def _check(result, what):
    """cuda-python calls return (error, *values); raise JetgenError unless error is success."""
    err, values = result[0], result[1:]
    if int(getattr(err, "value", err)) != 0:  # cudaError_t is an enum; cudaSuccess is 0
        raise JetgenError("CUDA call {} failed with {}; check that the GPU is free and the driver works "
                          "(nvidia-smi or tegrastats).".format(what, err))
    return values[0] if len(values) == 1 else values


class CudartMemory(object):
    """cuda-python runtime: cudaMallocHost, cudaMalloc, cudaMemcpyAsync on one cudaStream_t."""

    api = "cudart"

    def __init__(self, cudart, device=0):
        self._rt = cudart
        self._device = device
        _check(cudart.cudaSetDevice(device), "cudaSetDevice")
        self._stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._device_ptrs = []
        self._host_ptrs = []

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
        ptr = _check(self._rt.cudaMallocHost(max(count * dtype.itemsize, 1)), "cudaMallocHost")
        self._host_ptrs.append(ptr)
        pointer = ctypes.cast(int(ptr), ctypes.POINTER(np.ctypeslib.as_ctypes_type(dtype)))
        return np.ctypeslib.as_array(pointer, (max(count, 1),))[:count].reshape(shape)

    def alloc(self, nbytes):
        ptr = int(_check(self._rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc"))
        self._device_ptrs.append(ptr)
        return ptr

    def htod(self, ptr, host):
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        _check(self._rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, self._stream), "cudaMemcpyAsync")

    def dtoh(self, host, ptr):
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(self._rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, self._stream), "cudaMemcpyAsync")

    def synchronize(self):
        _check(self._rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def close(self):
        for ptr in self._device_ptrs:
            self._rt.cudaFree(ptr)
        for ptr in self._host_ptrs:
            self._rt.cudaFreeHost(ptr)
        self._device_ptrs, self._host_ptrs = [], []
        if self._stream is not None:
            self._rt.cudaStreamDestroy(self._stream)
            self._stream = None
