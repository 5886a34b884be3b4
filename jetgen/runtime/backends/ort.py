"""ONNX Runtime backend: one InferenceSession per graph.

Providers: ``providers=[...]`` (names, as ONNX Runtime spells them) wins; otherwise ``device``:
``"cpu"``; ``"cuda"`` or ``"cuda:N"``; ``"tensorrt"`` (TensorRT EP, then CUDA, then CPU); None picks
CUDA when this onnxruntime has it, else CPU (the TensorRT EP is opt-in because its first run builds
engines, minutes on a Nano). TensorRT EP engines are cached in ``BUNDLE/engines/ort-trt/``, built in
fp16 when ``precision`` is fp16, for the manifest's whole batch range where this onnxruntime takes
explicit profile shapes (:func:`trt_profile_options`; otherwise the EP rebuilds whenever a batch falls
outside the sizes it has seen). On a GPU, inputs and outputs go through I/O binding; on CPU a plain
``run``. onnxruntime is imported here, inside the constructor only. Python 3.6 compatible.

Options: ``providers``, ``intra_op_threads`` (default: the CPUs available, at most 8), ``inter_op_threads``, ``graph_optimization``
("disable" | "basic" | "extended" | "all"), ``io_binding`` (None: on when a GPU provider runs),
``trt_options`` (extra TensorRT EP options), ``trt_workspace_mb``.
"""
import os

import numpy as np

from jetgen.errors import JetgenError
from jetgen.runtime.feeds import check_feeds, sample_shape
from jetgen.runtime.requirements import check_onnxruntime
from jetgen.spec import check_graph_interface, version_tuple

MISSING = ("The ONNX Runtime backend needs onnxruntime: install onnxruntime, or on a Jetson NVIDIA's "
           "onnxruntime-gpu wheel: see jetson/README.md.")
OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
              "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
TRT_EP, CUDA_EP, CPU_EP = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
# TensorRT EP options by the first ONNX Runtime release that takes them (its TensorRT EP docs)
TRT_EP_OPTIONS_SINCE = {"trt_profile_min_shapes": (1, 15), "trt_profile_opt_shapes": (1, 15),
                        "trt_profile_max_shapes": (1, 15)}
_PROFILE_KEYS = (("trt_profile_min_shapes", "min"), ("trt_profile_opt_shapes", "opt"),
                 ("trt_profile_max_shapes", "max"))


def trt_profile_options(graph, ort_version):
    """The TensorRT EP's explicit optimisation profile for a manifest ``graph``: {'trt_profile_min_shapes':
    'z:1x4,y:1x3', 'trt_profile_opt_shapes': ..., 'trt_profile_max_shapes': ...} from its batch range
    (min/opt/max; opt defaults to max, max to min when absent) and fixed per-example shapes; {} for an
    ONNX Runtime older than these options (1.15) or a version that cannot be read."""
    version = version_tuple(ort_version or "")
    if version is None:
        return {}
    batch = graph.get("batch") or {}
    low = int(batch.get("min", 1))
    high = int(batch.get("max") or low)
    sizes = {"min": low, "opt": int(batch.get("opt") or high), "max": high}
    out = {}
    for key, which in _PROFILE_KEYS:
        if tuple(version[:2]) < TRT_EP_OPTIONS_SINCE[key]:
            continue
        out[key] = ",".join("{}:{}".format(t["name"], "x".join(str(d) for d in (sizes[which],) + sample_shape(t)))
                            for t in graph["inputs"])
    return out


def default_threads(cap=8):
    """CPUs this process may use, at most ``cap``. ONNX Runtime's own default counts physical cores,
    which some VMs report as fewer than the CPUs they give (here: 1 of 2, and the conv gradient graph
    ran in 7.4 ms instead of 5.6 ms); beyond ``cap`` small graphs gain nothing from more threads."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(cap, n))


def import_onnxruntime():
    """The onnxruntime module, or JetgenError saying how to install it. Its telemetry is switched
    off (on Windows builds it writes an event store under the user's home on every run)."""
    try:
        import onnxruntime
    except ImportError:
        raise JetgenError(MISSING)
    if hasattr(onnxruntime, "disable_telemetry_events"):
        onnxruntime.disable_telemetry_events()
    return onnxruntime


def probe(onnx_path):
    """None when ONNX Runtime loads the graph at ``onnx_path`` on the CPU, else the sentence why not."""
    try:
        ort = import_onnxruntime()
    except JetgenError:
        return "not loaded: onnxruntime is not installed here"
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        ort.InferenceSession(onnx_path, sess_options=so, providers=[CPU_EP])
    except Exception as err:  # onnxruntime raises its own exception types; keep the first line
        text = str(err).strip()
        return "ONNX Runtime cannot load it: {}".format(text.splitlines()[0] if text else type(err).__name__)
    return None


def choose_providers(available, device=None, providers=None):
    """(provider names, device id) for a ``device`` string, given the providers this build has."""
    if providers:
        missing = [p for p in providers if p not in available]
        if missing:
            raise JetgenError("This onnxruntime lacks {} (it has {}).".format(", ".join(missing), ", ".join(available)))
        return list(providers), 0
    device = (device or "").lower()
    name, _, index = device.partition(":")
    try:
        device_id = int(index) if index else 0
    except ValueError:
        raise JetgenError("Cannot read device {!r}; use cpu, cuda, cuda:N or tensorrt.".format(device))
    if name in ("", "auto"):
        wanted = [CUDA_EP, CPU_EP] if CUDA_EP in available else [CPU_EP]
    elif name == "cpu":
        wanted = [CPU_EP]
    elif name in ("cuda", "gpu"):
        wanted = [CUDA_EP, CPU_EP]
    elif name in ("tensorrt", "trt"):
        wanted = [TRT_EP, CUDA_EP, CPU_EP]
    else:
        raise JetgenError("Unknown device {!r}; use cpu, cuda, cuda:N or tensorrt.".format(device))
    if wanted[0] not in available:
        raise JetgenError("Device {!r} needs {}, which this onnxruntime lacks (it has {}); on a Jetson install "
                          "NVIDIA's onnxruntime-gpu wheel: see jetson/README.md.".format(
                              device, wanted[0], ", ".join(available)))
    return [p for p in wanted if p in available], device_id


def _shape(dims):
    return [d if isinstance(d, int) else None for d in dims]


class OrtSession(object):
    """Run one bundle graph with ONNX Runtime (see the module docstring for options)."""

    def __init__(self, onnx_path, graph, bundle_dir, precision="fp32", device=None, providers=None,
                 intra_op_threads=None, inter_op_threads=None, graph_optimization="all", io_binding=None,
                 trt_options=None, trt_workspace_mb=None, name=None):
        ort = import_onnxruntime()
        self.graph = graph
        self.name = name or os.path.splitext(os.path.basename(onnx_path))[0]
        self.input_names = [t["name"] for t in graph["inputs"]]
        self.output_names = [t["name"] for t in graph["outputs"]]
        self._shapes = dict((t["name"], sample_shape(t)) for t in graph["inputs"])
        batch = graph.get("batch") or {}
        self.batch_min, self.batch_max = batch.get("min", 1), batch.get("max")
        names, device_id = choose_providers(ort.get_available_providers(), device, providers)
        options = []
        for p in names:
            if p == TRT_EP:
                cache = os.path.join(bundle_dir, "engines", "ort-trt")
                try:
                    os.makedirs(cache, exist_ok=True)
                except OSError as err:
                    raise JetgenError("Cannot create the engine cache {}: {}.".format(cache, err))
                opts = {"device_id": device_id, "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": cache, "trt_fp16_enable": precision == "fp16"}
                if trt_workspace_mb:
                    opts["trt_max_workspace_size"] = int(trt_workspace_mb) * 1024 * 1024
                opts.update(trt_profile_options(graph, getattr(ort, "__version__", "")))
                opts.update(trt_options or {})
                options.append(opts)
            elif p == CUDA_EP:
                options.append({"device_id": device_id})
            else:
                options.append({})
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(intra_op_threads or default_threads())
        if inter_op_threads:
            so.inter_op_num_threads = int(inter_op_threads)
        if graph_optimization not in OPT_LEVELS:
            raise JetgenError("graph_optimization must be one of {}, not {!r}.".format(
                ", ".join(OPT_LEVELS), graph_optimization))
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[graph_optimization])
        # refuse a graph this onnxruntime is too old for, naming both versions, before its own error
        self.requires = check_onnxruntime(getattr(ort, "__version__", ""), onnx_path, self.name, graph)
        try:
            self._session = ort.InferenceSession(onnx_path, sess_options=so, providers=names,
                                                 provider_options=options)
        except Exception as err:  # onnxruntime raises its own exception types; keep the message
            raise JetgenError("ONNX Runtime cannot load {}: {}".format(onnx_path, str(err).strip().splitlines()[0]
                                                                       if str(err).strip() else type(err).__name__))
        self.providers = list(self._session.get_providers())
        check_graph_interface(self.name, graph,
                              [(t.name, _shape(t.shape)) for t in self._session.get_inputs()],
                              [(t.name, _shape(t.shape)) for t in self._session.get_outputs()])
        on_gpu = self.providers[0] in (CUDA_EP, TRT_EP)
        self._binding = on_gpu if io_binding is None else bool(io_binding)
        self._device_type = "cuda" if on_gpu else "cpu"
        self._device_id = device_id
        # what verification must allow: the TensorRT EP computes in fp16 when asked to
        self.run_precision = "fp16" if self.providers[0] == TRT_EP and precision == "fp16" else None
        self._float_outputs = all(t.type == "tensor(float)" for t in self._session.get_outputs())
        # The binding under InferenceSession.run: the public run repeats, per call, the input-name and
        # OrtValue checks this class makes once (about 10 us at batch 1, a third of a small decoder's
        # time). Present in every release jetgen supports; the public run stays the fallback.
        inner = getattr(self._session, "_sess", None)
        self._run = inner.run if inner is not None and hasattr(inner, "run") else self._session.run
        # made once: given None, every run builds default RunOptions (about 1 us of a 45 us batch-1 decode)
        self._run_options = ort.RunOptions()

    def check_feeds(self, feeds):
        """Raise JetgenError unless ``feeds`` has exactly the inputs, the right shapes and batch."""
        check_feeds(feeds, self.input_names, self._shapes, self.name, (self.batch_min, self.batch_max))

    def run(self, feeds, validate=True):
        """Outputs by name (float32 arrays) for ``feeds``; JetgenError on a wrong feed. ``validate=False``
        is for callers that checked the feeds already and pass float32 C-contiguous arrays (``Model``
        does), saving microseconds per call."""
        if validate:
            _, feeds = check_feeds(feeds, self.input_names, self._shapes, self.name, (self.batch_min, self.batch_max))
        if self._binding:
            binding = self._session.io_binding()
            for name, value in feeds.items():
                binding.bind_cpu_input(name, value)
            for name in self.output_names:
                binding.bind_output(name, self._device_type, self._device_id)
            self._session.run_with_iobinding(binding)
            values = binding.copy_outputs_to_cpu()
        else:
            values = self._run(self.output_names, feeds, self._run_options)
        if self._float_outputs:
            return dict(zip(self.output_names, values))
        return dict((n, v if v.dtype == np.float32 else v.astype(np.float32)) for n, v in zip(self.output_names, values))

    def output_runner(self, name):
        """``f(feeds) -> output`` for the output ``name`` (float32), on feeds already checked and float32
        C-contiguous: the binding's run with its arguments bound once, for Model's batch-1 path; None
        where outputs need I/O binding (GPU) or a cast."""
        if self._binding or not self._float_outputs or name not in self.output_names:
            return None
        run, names, options = self._run, [name], self._run_options
        return lambda feeds: run(names, feeds, options)[0]

    def close(self):
        self._session = None
