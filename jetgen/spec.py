"""The bundle format in one place: what a bundle may hold and the one reader that checks it.

Everything that reads a bundle (the runtime's ``Bundle``, ``jetgen check``, ``jetgen build``,
``jetgen info``, ``jetgen serve``) goes through :func:`read_manifest`, and everything that writes
one (the exporter) takes its names from here: model kinds, graphs and their interface tensors,
precisions, prior families and their parameters, batch ranges. docs/bundle.md describes the same
format for people. Standard library only, Python 3.6 compatible (it runs on the device).

Reading trusts nothing: the manifest's size, JSON nesting, every field's type and range, file
names (plain names inside the bundle, never through a link that leaves it) and interface shapes
are checked before any value is used; each problem raises ``JetgenError`` with one sentence.
"""
import json
import os

from jetgen.atomic import recover
from jetgen.errors import JetgenError

FORMAT = "jetgen-bundle"
FORMAT_VERSION = 1  # what the exporter writes for image models (every reader since 0.1 reads them)
POINTS_FORMAT_VERSION = 2  # point-cloud (atlasnet) bundles: version 1 readers refuse them with a sentence
# (both are MODALITIES[m]["format_version"]; kept as names for the readers and tests that use them)
FORMAT_VERSIONS = (1, 2)  # what readers accept
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024  # a manifest is a few kB; refuse to parse anything huge
MAX_JSON_DEPTH = 32  # a real manifest nests 5 deep; deeper input is refused before json recurses
MAX_BATCH = 1 << 20  # no graph is declared for more than a million examples per call
MAX_TENSOR_ELEMENTS = 1 << 26  # per example (a 8192x8192 RGB image is 2e8: refused)

GOLDEN_DIR = "golden"  # golden vectors: graphs.G.golden lists .npy files in BUNDLE/golden/ (docs/bundle.md)
MAX_GOLDEN_CASES = 16  # per graph; an exporter writes about four (prior and test data, batch 1 and larger)
MAX_GOLDEN_BATCH = 4096
MAX_GOLDEN_ELEMENTS = 1 << 22  # per file (16 MB of float32); every file is checked against it before loading
MAX_GOLDEN_NAME = 64
# modality (what kind of data a model makes) -> its model kinds, the format_version its bundles carry, and the
# model section that holds its own settings (None: none). The one table of modality names; jetgen.modalities
# says where each modality's code lives. A manifest names its modality in model.modality; one without it
# (written before the field existed) is read by its format_version: 1 -> image, 2 -> points.
MODALITIES = {
    "image": {"title": "image", "kinds": ("vae", "cvae", "ad", "vad"), "format_version": 1, "section": None},
    "points": {"title": "point-cloud", "kinds": ("atlasnet",), "format_version": 2,  # clouds (N, 3) with faces
               "section": "points"},
}
KINDS = tuple(k for m in ("image", "points") for k in MODALITIES[m]["kinds"])  # model kinds a bundle may declare
GRAPHS = ("decoder", "encoder", "latent_grad")  # in bundle order
PRECISIONS = ("fp32", "fp16", "int8")
LIKELIHOODS = ("bernoulli", "gaussian", "chamfer")  # chamfer: one-sided, observed points to decoded ones
FACES_FILE = "faces.npy"
MAX_FACES = 1 << 22
MAX_CLOUD_POINTS = 1 << 20  # per cloud, in any interface tensor
# prior family -> its parameters, each a vector of latent_dim numbers (jetgen.runtime.priors does the maths)
PRIOR_FAMILIES = {"gaussian": ("mean", "std"), "exponential": ("rate",), "uniform": ("low", "high")}
# Semantic bounds: a trained decoder sees latents of a few units; a prior that draws beyond MAX_LATENT
# (a std of 1e30) only gives saturated garbage, and a scale below MIN_SCALE is a point mass
MAX_LATENT = 1e3
MIN_SCALE = 1e-6
MAX_OUTPUT = 1e4     # |value| of a declared output range (images in [0, 1], [-1, 1] or 0..255; clouds of unit size)
MAX_SIGMA = 1e4      # a gaussian likelihood's sigma
MAX_POINT_WEIGHT = 1e6  # model.points.loss_scale and prior_weight
# how each family's parameters must be ordered, signed and bounded, for error messages
_PRIOR_RULES = {
    "gaussian": lambda p: (
        "a std that is not positive" if min(p["std"]) <= 0 else
        "a std outside [{:g}, {:g}]".format(MIN_SCALE, MAX_LATENT) if not MIN_SCALE <= min(p["std"]) <= max(p["std"]) <= MAX_LATENT else
        "a mean beyond +-{:g}".format(MAX_LATENT) if max(abs(v) for v in p["mean"]) > MAX_LATENT else None),
    "exponential": lambda p: (
        "a rate that is not positive" if min(p["rate"]) <= 0 else
        "a rate outside [{:g}, {:g}]".format(1 / MAX_LATENT, 1 / MIN_SCALE)
        if not 1 / MAX_LATENT <= min(p["rate"]) <= max(p["rate"]) <= 1 / MIN_SCALE else None),
    "uniform": lambda p: (
        "low >= high somewhere" if not all(lo < hi for lo, hi in zip(p["low"], p["high"])) else
        "a bound beyond +-{:g}".format(MAX_LATENT) if max(abs(v) for v in p["low"] + p["high"]) > MAX_LATENT else None),
}
# the output range each likelihood allows: bernoulli outputs are probabilities
_RANGE_RULES = {
    "bernoulli": lambda lo, hi: None if 0.0 <= lo < hi <= 1.0 else "a bernoulli likelihood's outputs lie in [0, 1]",
    "gaussian": lambda lo, hi: None if -MAX_OUTPUT <= lo < hi <= MAX_OUTPUT else
    "a gaussian likelihood's outputs must lie within +-{:g}".format(MAX_OUTPUT),
    "chamfer": lambda lo, hi: None if -MAX_OUTPUT <= lo < hi <= MAX_OUTPUT else
    "point coordinates must lie within +-{:g}".format(MAX_OUTPUT),
}


# -- modalities ----------------------------------------------------------------------------------

def kind_modality(kind):
    """The modality whose models a ``kind`` is; JetgenError naming the known kinds otherwise."""
    for name, row in MODALITIES.items():
        if kind in row["kinds"]:
            return name
    raise JetgenError("kind must be one of {}, not {!r}.".format(", ".join(KINDS), _short(kind)))


def format_version(modality):
    """The format_version a bundle of ``modality`` is written with (older readers refuse what they cannot read)."""
    return MODALITIES[modality]["format_version"]


def modality_section(model):
    """A checked manifest model section's own modality settings (``model.points`` for point clouds), or None."""
    section = MODALITIES[model["modality"]]["section"]
    return model.get(section) if section else None


# -- interfaces ----------------------------------------------------------------------------------

def input_names(graph, conditional):
    """The input tensor names of ``graph``, in order (``y`` last, for conditional models)."""
    label = ["y"] if conditional else []
    return {"decoder": ["z"] + label, "encoder": ["x"] + label,
            "latent_grad": ["z", "target", "mask"] + label}[graph]


def output_names(graph):
    return {"decoder": ["x"], "encoder": ["mu", "logvar"], "latent_grad": ["loss", "grad"]}[graph]


def expected_interface(graph, latent_dim, n_labels, output_shape, points=None):
    """The tensors the format fixes for ``graph``: (inputs, outputs), each a list of (name, shape after batch).

    ``points`` (a point-cloud model's ``model.points`` section): the encoder reads ``encoder_points``
    points (Ne, 3) and latent_grad ``target`` (M, 3) with ``mask`` (M,), M = ``target_points``."""
    out = list(output_shape)
    shapes = {"z": [latent_dim], "y": [n_labels], "x": out, "mu": [latent_dim], "logvar": [latent_dim],
              "target": out, "mask": out, "loss": [], "grad": [latent_dim]}
    if points is not None:
        shapes.update(target=[points["target_points"], 3], mask=[points["target_points"]])
        if graph == "encoder":
            shapes["x"] = [points["encoder_points"], 3]
    return ([(n, shapes[n]) for n in input_names(graph, bool(n_labels))],
            [(n, shapes[n]) for n in output_names(graph)])


def check_graph_interface(graph, entry, inputs, outputs):
    """Compare a loaded graph's own tensors with its manifest entry.

    ``inputs``/``outputs`` are lists of (name, shape) as the backend reports them, a shape entry
    being an int or a symbolic name/None for dynamic axes. Raises JetgenError on a different name
    set or a fixed dimension that disagrees.
    """
    for side, actual in (("inputs", inputs), ("outputs", outputs)):
        declared = dict((t["name"], t["shape"]) for t in entry[side])
        found = dict((name, list(shape) if shape is not None else None) for name, shape in actual)
        if set(declared) != set(found):
            raise JetgenError("The {} graph's {} are {} but the manifest says {}; the graph file does "
                              "not belong to this manifest.".format(graph, side, sorted(found), sorted(declared)))
        for name, shape in declared.items():
            real = found[name]
            if real is None:
                continue
            if len(real) != len(shape):
                raise JetgenError("The {} graph's tensor {!r} has {} dimensions but the manifest says {}."
                                  .format(graph, name, len(real), len(shape)))
            for want, got in zip(shape, real):
                if isinstance(want, int) and isinstance(got, int) and got > 0 and want != got:
                    raise JetgenError("The {} graph's tensor {!r} has shape {} but the manifest says {}."
                                      .format(graph, name, real, shape))


# -- field checks --------------------------------------------------------------------------------

def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and value == value and value not in (float("inf"), float("-inf")))


def need(mapping, key, kind, where):
    """``mapping[key]`` when present and of type ``kind`` (int excludes bool); JetgenError otherwise."""
    if not isinstance(mapping, dict) or key not in mapping:
        raise JetgenError("The manifest lacks {}; re-export the bundle.".format(where))
    value = mapping[key]
    if kind is int and not is_int(value):
        raise JetgenError("The manifest's {} must be an integer, not {!r}.".format(where, value))
    if kind is not int and not isinstance(value, kind):
        raise JetgenError("The manifest's {} has the wrong type ({!r}); re-export the bundle.".format(
            where, _short(value)))
    return value


def optional(mapping, key, kind, where):
    """``mapping[key]`` when present and not None, checked like :func:`need`; None when absent."""
    if mapping.get(key) is None:
        return None
    return need(mapping, key, kind, where)


class _Shown(str):
    """Text already in repr form: formatting it with {!r} shows it unchanged."""

    def __repr__(self):
        return str(self)


def _short(value):
    """repr(value), cut to 60 characters, for messages (works with {} and {!r} alike)."""
    text = repr(value)
    return _Shown(text if len(text) <= 60 else text[:57] + "...")


def float_list(values, length, where):
    if not isinstance(values, list) or len(values) != length:
        raise JetgenError("The manifest's {} must be a list of {} numbers.".format(where, length))
    for v in values:
        if not _number(v):
            raise JetgenError("The manifest's {} holds {!r}, not a finite number.".format(where, _short(v)))
    return [float(v) for v in values]


def check_file_name(name, where):
    """Raise JetgenError unless ``name`` is a plain file name (no directories, no ``..``)."""
    if not isinstance(name, str) or not name:
        raise JetgenError("The manifest gives {} no file name; re-export the bundle.".format(where))
    if ("/" in name or "\\" in name or "\x00" in name or name in (".", "..")
            or os.path.isabs(name) or ":" in name or len(name) > 255):
        raise JetgenError("The manifest names {!r} for {}, which is not a plain file name inside the "
                          "bundle; refusing to read it (re-export the bundle).".format(_short(name), where))
    return name


def check_precision(value, where):
    if value not in PRECISIONS:
        raise JetgenError("The manifest's {} is {!r}; expected one of {}.".format(
            where, _short(value), ", ".join(PRECISIONS)))
    return value


def batch_range(entry, where="a graph", required=False):
    """The entry's batch range as {"min", "opt", "max"} (ints, 1 <= min <= opt <= max <= MAX_BATCH).

    A missing ``opt`` becomes min(64, max); a missing ``max`` means no upper bound is declared
    (returned as None when ``required`` is false). Returns None for an entry without a range unless
    ``required``. JetgenError for anything malformed.
    """
    batch = entry.get("batch")
    if batch is None:
        if required:
            raise JetgenError("The manifest's {} has no batch range (min/opt/max); re-export the bundle.".format(where))
        return None
    if not isinstance(batch, dict):
        raise JetgenError("The manifest's batch range of {} must be an object with min, opt and max, not {!r}."
                          .format(where, _short(batch)))
    lo, hi, opt = batch.get("min", 1), batch.get("max"), batch.get("opt")
    if required and hi is None:
        raise JetgenError("The manifest's {} has no batch.max; re-export the bundle.".format(where))
    ok = is_int(lo) and 1 <= lo <= MAX_BATCH and (hi is None or (is_int(hi) and lo <= hi <= MAX_BATCH))
    if ok and opt is not None:
        ok = is_int(opt) and lo <= opt <= (hi if hi is not None else MAX_BATCH)
    if not ok:
        raise JetgenError("The manifest's batch range {} for {} is not valid: it needs whole numbers with "
                          "1 <= min <= opt <= max <= {}.".format(_short(batch), where, MAX_BATCH))
    if opt is None:
        opt = min(64, hi) if hi is not None else max(lo, 64)
    return {"min": lo, "opt": max(lo, opt), "max": hi}


# -- golden vectors ------------------------------------------------------------------------------

# Tolerances of ``jetgen verify`` per precision the graph runs at: an output passes when its largest
# absolute error is within "abs" OR its largest error relative to the output's largest magnitude
# (normwise) is within "rel"; with the two equal, that is: error <= tolerance x max(1, largest |output|).
# Chosen from measured exports (benchmarks/results.md, "Golden tolerances"): three times the worst
# error seen, rounded up to 1, 2 or 5, so a correct engine passes and a broken one (wrong weights, a
# layer dropped, inputs swapped) does not. fp32 allows TensorRT's TF32, its default on Ampere GPUs
# (Orin), which rounds matrix-product inputs to fp16's 10 mantissa bits: hence fp32 = fp16 here.
GOLDEN_TOLERANCES = {
    "fp32": {"abs": 2e-2, "rel": 2e-2},
    "fp16": {"abs": 2e-2, "rel": 2e-2},
    "int8": {"abs": 2e-1, "rel": 2e-1},
}


def _golden_name(value, where):
    ok = (isinstance(value, str) and 0 < len(value) <= MAX_GOLDEN_NAME
          and all(c.isalnum() or c in "._-" for c in value))
    if not ok:
        raise JetgenError("The manifest's {} has the name {!r}; golden case names are 1 to {} letters, digits, "
                          "'.', '_' or '-'.".format(where, _short(value), MAX_GOLDEN_NAME))
    return value


def _golden_tensor(entry, where):
    """One golden .npy entry: a plain .npy name, a sha256, a shape with a bounded batch and size."""
    if not isinstance(entry, dict):
        raise JetgenError("The manifest's {} must be an object with file, sha256 and shape.".format(where))
    name = check_file_name(entry.get("file"), where)
    if not name.endswith(".npy"):
        raise JetgenError("The manifest names {!r} for {}; golden files are .npy arrays.".format(_short(name), where))
    sha = need(entry, "sha256", str, where + ".sha256")
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower()):
        raise JetgenError("The manifest's {}.sha256 is not a sha256 hex digest.".format(where))
    shape = need(entry, "shape", list, where + ".shape")
    size = 1
    for dim in shape:
        if not is_int(dim) or dim < 1:
            raise JetgenError("The manifest's {}.shape {} must hold positive whole numbers.".format(where, _short(shape)))
        size *= dim
    if not shape or shape[0] > MAX_GOLDEN_BATCH or size > MAX_GOLDEN_ELEMENTS:
        raise JetgenError("The manifest's {}.shape {} is empty or larger than a golden case may be (batch <= {}, "
                          "<= {} values).".format(where, _short(shape), MAX_GOLDEN_BATCH, MAX_GOLDEN_ELEMENTS))
    return {"file": name, "sha256": sha.lower(), "shape": list(shape)}


def check_golden(graph, cases):
    """The golden cases of one graph entry, checked: a list of at most MAX_GOLDEN_CASES objects, each
    with a plain ``name`` and ``inputs``/``outputs`` mapping tensor names to checked .npy entries
    whose batch sizes agree. Returns a normalised copy; JetgenError for anything else."""
    where = "graphs.{}.golden".format(graph)
    if not isinstance(cases, list) or len(cases) > MAX_GOLDEN_CASES:
        raise JetgenError("The manifest's {} must be a list of at most {} cases.".format(where, MAX_GOLDEN_CASES))
    out, seen = [], set()
    for i, case in enumerate(cases):
        if not isinstance(case, dict):
            raise JetgenError("The manifest's {}[{}] is not an object.".format(where, i))
        name = _golden_name(case.get("name"), "{}[{}]".format(where, i))
        if name in seen:
            raise JetgenError("The manifest's {} lists the case {!r} twice.".format(where, name))
        seen.add(name)
        checked = {"name": name}
        for side in ("inputs", "outputs"):
            tensors = need(case, side, dict, "{}.{}.{}".format(where, name, side))
            checked[side] = dict((str(t), _golden_tensor(entry, "{}.{}.{}.{}".format(where, name, side, t)))
                                 for t, entry in tensors.items())
        batches = set(t["shape"][0] for side in ("inputs", "outputs") for t in checked[side].values())
        if len(batches) > 1:
            raise JetgenError("The manifest's golden case {}.{} mixes batch sizes {}; re-export the bundle.".format(
                graph, name, sorted(batches)))
        out.append(checked)
    return out


def _check_golden_interface(graph, cases, inputs, outputs):
    """Every golden case holds exactly the graph's tensors, each with the interface's per-example shape."""
    for case in cases:
        for side, expected in (("inputs", inputs), ("outputs", outputs)):
            want = dict(expected)
            if set(case[side]) != set(want):
                raise JetgenError("The golden case {}.{} has {} {}, but the graph has {}; re-export the bundle."
                                  .format(graph, case["name"], side, sorted(case[side]), sorted(want)))
            for name, tensor in case[side].items():
                if tensor["shape"][1:] != list(want[name]):
                    raise JetgenError("The golden case {}.{} stores {!r} with shape {}, expected [batch] + {}."
                                      .format(graph, case["name"], name, tensor["shape"], list(want[name])))


def golden_path(bundle_dir, name):
    """Path of golden file ``name`` in BUNDLE/golden/, refusing a name or a link that leads elsewhere."""
    check_file_name(name, "a golden file")
    root = os.path.realpath(bundle_dir)
    folder = os.path.join(bundle_dir, GOLDEN_DIR)
    full = os.path.join(folder, name)
    if (os.path.realpath(folder) != os.path.join(root, GOLDEN_DIR)
            or os.path.dirname(os.path.realpath(full)) != os.path.join(root, GOLDEN_DIR)):
        raise JetgenError("{} points outside the bundle's golden/ directory; refusing to read it.".format(full))
    return full


# -- what runtime a graph needs -------------------------------------------------------------------

# ONNX Runtime release -> the newest ai.onnx opset and ONNX IR version it implements. From
# onnxruntime's docs/Versioning.md, which points to docs/reference/compatibility.md (read at commit
# 109c0ba, rows 1.6 to 1.20). Not confirmed: releases after 1.20 (not in that table); a graph that
# needs more than 1.20 gets "newer than 1.20". FACTS.md: 1.15 refuses opset 20.
ONNXRUNTIME_SUPPORT = (
    ("1.6", 13, 7), ("1.7", 13, 7), ("1.8", 14, 7), ("1.9", 15, 8), ("1.10", 15, 8), ("1.11", 16, 8),
    ("1.12", 17, 8), ("1.13", 17, 8), ("1.14", 18, 8), ("1.15", 19, 8), ("1.16", 19, 9), ("1.17", 20, 9),
    ("1.18", 21, 10), ("1.19", 21, 10), ("1.20", 21, 10),
)
# TensorRT release -> the newest ai.onnx opset its ONNX parser takes. onnx-tensorrt docs/operators.md:
# 8.0 and 8.2 "up to Opset 13", 8.5 "up to Opset 17", 9.2 "up to Opset 19", 10.0 "opset 9 to opset
# 20", 10.15 "opset 9 to opset 24"; 8.6 from FACTS.md (as 8.5). Not confirmed: which 10.1 to 10.14
# release first took opsets 21 to 24 (10.15 is the first table read that does), and whether a newer IR
# version than the parser's own onnx stops it (the parser only warns, as far as read).
TENSORRT_SUPPORT = (("8.0", 13), ("8.2", 13), ("8.5", 17), ("8.6", 17), ("9.2", 19), ("10.0", 20), ("10.15", 24))
TENSORRT_MIN_OPSET_FROM_10 = 9  # TensorRT 10's parser starts at opset 9


def version_tuple(text):
    """'1.17.3' -> (1, 17, 3); '1.18.0.dev20240101' -> (1, 18, 0); None when it does not start with digits."""
    parts = []
    for piece in str(text).split(".")[:3]:
        digits = ""
        for c in piece:
            if not c.isdigit():
                break
            digits += c
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts) if parts else None


def runtime_requirements(opset, ir_version=None):
    """The oldest ONNX Runtime and TensorRT releases that load a graph of ``opset`` (ai.onnx) and
    ``ir_version``: {"onnxruntime": "1.17" or None, "tensorrt": "10.0" or None, "notes": [...]}.
    None means no release in the tables does (the note says which is the newest known)."""
    notes = []
    ort = next((r for r, o, ir in ONNXRUNTIME_SUPPORT if o >= opset and (ir_version is None or ir >= ir_version)), None)
    if ort is None:
        notes.append("ONNX Runtime newer than {} (opset {}, IR {}: beyond the table in jetgen.spec)".format(
            ONNXRUNTIME_SUPPORT[-1][0], opset, ir_version))
    trt = next((r for r, o in TENSORRT_SUPPORT if o >= opset), None)
    if trt is None:
        notes.append("TensorRT newer than {} (opset {} is beyond the table in jetgen.spec)".format(
            TENSORRT_SUPPORT[-1][0], opset))
    elif opset < TENSORRT_MIN_OPSET_FROM_10:
        notes.append("TensorRT 10 parses opset 9 and later only; opset {} needs TensorRT 8".format(opset))
    return {"onnxruntime": ort, "tensorrt": trt, "notes": notes}


def check_runtime_version(runtime, found, needed, graph, why, newest=None):
    """JetgenError unless ``found`` (a version string) is at least ``needed`` ("1.17"; None: newer than
    ``newest``, the last release the table knows). ``runtime`` names it ("ONNX Runtime"), ``why`` says
    what needs it (opset, IR version). An unreadable ``found`` passes: the runtime's own check decides."""
    have = version_tuple(found)
    floor = needed if needed is not None else newest
    if have is None or floor is None or (have >= version_tuple(floor) if needed else have > version_tuple(floor)):
        return
    need_text = "{} {} or newer".format(runtime, needed) if needed else "{} newer than {}".format(runtime, newest)
    raise JetgenError("The {} graph ({}) needs {}, but this machine has {} {}: upgrade it (on a Jetson, the build "
                      "for your JetPack: see jetson/README.md) or re-export the bundle for this board's target "
                      "(jetgen export RUN --target ...).".format(graph, why, need_text, runtime, found))


# -- the manifest --------------------------------------------------------------------------------

def _check_tensors(graph, entry, side, expected):
    tensors = need(entry, side, list, "graphs.{}.{}".format(graph, side))
    declared = {}
    for t in tensors:
        name = need(t, "name", str, "a tensor name in graphs.{}.{}".format(graph, side))
        if t.get("dtype", "float32") != "float32":
            raise JetgenError("The {} graph's tensor {!r} is {}, but every interface tensor must be float32."
                              .format(graph, name, _short(t.get("dtype"))))
        declared[name] = need(t, "shape", list, "graphs.{}.{}[{}].shape".format(graph, side, name))
    want = dict(expected)
    if set(declared) != set(want):
        raise JetgenError("The {} graph's {} are {} in the manifest, but this model needs {}; re-export "
                          "the bundle.".format(graph, side, sorted(declared), sorted(want)))
    for name, rest in want.items():
        shape = declared[name]
        if len(shape) != 1 + len(rest) or list(shape[1:]) != list(rest):
            raise JetgenError("The {} graph's tensor {!r} has shape {} in the manifest, expected {}."
                              .format(graph, name, _short(shape), ["batch"] + list(rest)))


def check_graph_entry(graph, entry):
    """Check the file-level fields of one graph entry (file, sha256, bytes, opset, precision, batch,
    parity); return a copy with ``batch`` normalised. Used alone by ``jetgen check``, which also reads
    minimal hand-written manifests, and by :func:`check_manifest`."""
    if not isinstance(entry, dict):
        raise JetgenError("The manifest's graphs.{} is not an object.".format(graph))
    check_file_name(entry.get("file"), "the {} graph".format(graph))
    sha = optional(entry, "sha256", str, "graphs.{}.sha256".format(graph))
    if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower())):
        raise JetgenError("The manifest's graphs.{}.sha256 is not a sha256 hex digest.".format(graph))
    size = optional(entry, "bytes", int, "graphs.{}.bytes".format(graph))
    if size is not None and size < 0:
        raise JetgenError("The manifest's graphs.{}.bytes is negative.".format(graph))
    opset = optional(entry, "opset", int, "graphs.{}.opset".format(graph))
    if opset is not None and not 1 <= opset <= 1000:
        raise JetgenError("The manifest's graphs.{}.opset {} is not an ONNX opset.".format(graph, opset))
    if entry.get("precision") is not None:
        check_precision(entry["precision"], "graphs.{}.precision".format(graph))
    parity = optional(entry, "parity", dict, "graphs.{}.parity".format(graph))
    for key in ("max_abs", "max_rel"):
        if parity is not None and parity.get(key) is not None and not _number(parity[key]):
            raise JetgenError("The manifest's graphs.{}.parity.{} is not a number.".format(graph, key))
    entry = dict(entry)
    entry["batch"] = batch_range(entry, "the {} graph".format(graph))
    if entry.get("golden") is not None:
        entry["golden"] = check_golden(graph, entry["golden"])
    requires = optional(entry, "requires", dict, "graphs.{}.requires".format(graph))
    for key in ("onnxruntime", "tensorrt"):
        if requires is not None and requires.get(key) is not None and version_tuple(requires[key]) is None:
            raise JetgenError("The manifest's graphs.{}.requires.{} {!r} is not a version.".format(
                graph, key, _short(requires[key])))
    return entry


MAX_MIXTURE_COMPONENTS = 1024
COVARIANCE_TYPES = ("full", "diag")


def _check_mixture(params, latent_dim):
    """A gmm prior's params (jetgen.runtime.gmm): weights [K], means [K][D], covariances [K][D][D] (full)
    or [K][D] (diag), as plain lists of finite numbers; the runtime checks definiteness when it builds it."""
    kind = params.get("covariance_type", "full")
    if kind not in COVARIANCE_TYPES:
        raise JetgenError("The manifest's gmm prior has covariance_type {!r}; expected full or diag.".format(_short(kind)))
    weights = need(params, "weights", list, "model.prior.params.weights")
    k = len(weights)
    if not 1 <= k <= MAX_MIXTURE_COMPONENTS:
        raise JetgenError("The manifest's gmm prior has {} components; it needs 1 to {}.".format(k, MAX_MIXTURE_COMPONENTS))
    weights = float_list(weights, k, "model.prior.params.weights")
    if min(weights) < 0 or not 0.999 <= sum(weights) <= 1.001:
        raise JetgenError("The manifest's gmm prior weights must be >= 0 and sum to 1.")
    means = need(params, "means", list, "model.prior.params.means")
    if len(means) != k:
        raise JetgenError("The manifest's gmm prior has {} weights but {} means.".format(k, len(means)))
    means = [float_list(m, latent_dim, "model.prior.params.means[{}]".format(i)) for i, m in enumerate(means)]
    covs = need(params, "covariances", list, "model.prior.params.covariances")
    if len(covs) != k:
        raise JetgenError("The manifest's gmm prior has {} weights but {} covariances.".format(k, len(covs)))
    where = "model.prior.params.covariances[{}]"
    if kind == "diag":
        covs = [float_list(c, latent_dim, where.format(i)) for i, c in enumerate(covs)]
    else:
        covs = [[float_list(row, latent_dim, where.format(i)) for row in need({"c": c}, "c", list, where.format(i))]
                for i, c in enumerate(covs)]
        if any(len(c) != latent_dim for c in covs):
            raise JetgenError("The manifest's gmm prior covariances must be {0} x {0} matrices.".format(latent_dim))
    if max(abs(v) for m in means for v in m) > MAX_LATENT:
        raise JetgenError("The manifest's gmm prior has a mean beyond +-{:g}; a decoder never saw such latents, "
                          "re-export the bundle.".format(MAX_LATENT))
    variances = [v for c in covs for v in c] if kind == "diag" else [c[i][i] for c in covs for i in range(latent_dim)]
    off = [] if kind == "diag" else [abs(v) for c in covs for row in c for v in row]
    if not all(MIN_SCALE ** 2 <= v <= MAX_LATENT ** 2 for v in variances) or any(v > MAX_LATENT ** 2 for v in off):
        raise JetgenError("The manifest's gmm prior has a variance outside [{:g}, {:g}]; re-export the bundle.".format(
            MIN_SCALE ** 2, MAX_LATENT ** 2))
    return {"family": "gmm", "params": {"covariance_type": kind, "weights": weights, "means": means,
                                        "covariances": covs}}


def _check_prior(prior, latent_dim):
    family = need(prior, "family", str, "model.prior.family")
    if family == "gmm":
        return _check_mixture(need(prior, "params", dict, "model.prior.params"), latent_dim)
    if family not in PRIOR_FAMILIES:
        raise JetgenError("The manifest's prior family {!r} is unknown to this runtime (known: {}); "
                          "update jetgen.".format(_short(family), ", ".join(sorted(PRIOR_FAMILIES))))
    params = need(prior, "params", dict, "model.prior.params")
    out = dict((key, float_list(params.get(key), latent_dim, "model.prior.params.{}".format(key)))
               for key in PRIOR_FAMILIES[family])
    problem = _PRIOR_RULES[family](out)
    if problem:
        raise JetgenError("The manifest's {} prior has {}.".format(family, problem))
    return {"family": family, "params": out}


def _check_likelihood(model):
    lik = model.get("likelihood")
    if lik is None:
        return {"name": "bernoulli", "sigma": None}
    if not isinstance(lik, dict):
        raise JetgenError("The manifest's model.likelihood must be an object with a name, not {!r}.".format(_short(lik)))
    name = need(lik, "name", str, "model.likelihood.name")
    if name not in LIKELIHOODS:
        raise JetgenError("The manifest's likelihood {!r} is unknown (known: {}).".format(
            _short(name), ", ".join(LIKELIHOODS)))
    sigma = lik.get("sigma")
    if name == "gaussian" and not (_number(sigma) and 0 < sigma <= MAX_SIGMA):
        raise JetgenError("The manifest's gaussian likelihood needs a sigma in (0, {:g}], not {!r}.".format(
            MAX_SIGMA, _short(sigma)))
    return {"name": name, "sigma": float(sigma) if name == "gaussian" else None}


def _check_points(points, n_points):
    """A point-cloud model's ``model.points``: patches, grid (n_points = patches * grid^2),
    encoder_points, target_points (M), loss_scale, prior_weight, and the faces file entry."""
    out = {}
    for key, low, high in (("patches", 1, 4096), ("grid", 2, 1024), ("encoder_points", 1, MAX_CLOUD_POINTS),
                           ("target_points", 1, MAX_CLOUD_POINTS)):
        value = need(points, key, int, "model.points." + key)
        if not low <= value <= high:
            raise JetgenError("The manifest's model.points.{} must be from {} to {}, not {}.".format(key, low, high, value))
        out[key] = value
    if out["patches"] * out["grid"] ** 2 != n_points:
        raise JetgenError("The manifest's model.output.shape has {} points but {} patches of {}x{} make {}; "
                          "re-export the bundle.".format(n_points, out["patches"], out["grid"], out["grid"],
                                                         out["patches"] * out["grid"] ** 2))
    for key in ("loss_scale", "prior_weight"):
        value = points.get(key)
        if not _number(value) or not 0 <= value <= MAX_POINT_WEIGHT:
            raise JetgenError("The manifest's model.points.{} must be a number from 0 to {:g}, not {!r}.".format(
                key, MAX_POINT_WEIGHT, _short(value)))
        out[key] = float(value)
    faces = need(points, "faces", dict, "model.points.faces")
    name = check_file_name(faces.get("file"), "the faces")
    sha = need(faces, "sha256", str, "model.points.faces.sha256")
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower()):
        raise JetgenError("The manifest's model.points.faces.sha256 is not a sha256 hex digest.")
    count = need(faces, "count", int, "model.points.faces.count")
    if count != out["patches"] * 2 * (out["grid"] - 1) ** 2 or count > MAX_FACES:
        raise JetgenError("The manifest's model.points.faces.count {} does not fit {} patches of a {}x{} grid; "
                          "re-export the bundle.".format(count, out["patches"], out["grid"], out["grid"]))
    out["faces"] = {"file": name, "sha256": sha.lower(), "count": count}
    return out


def _check_model(model):
    model = dict(need({"model": model}, "model", dict, "the model section"))
    kind = need(model, "kind", str, "model.kind")
    if kind not in KINDS:
        raise JetgenError("The manifest's model kind {!r} is unknown (known: {}).".format(_short(kind), ", ".join(KINDS)))
    d = need(model, "latent_dim", int, "model.latent_dim")
    if not 1 <= d <= 65536:
        raise JetgenError("The manifest's model.latent_dim must be from 1 to 65536, not {}.".format(d))
    model["conditional"] = need(model, "conditional", bool, "model.conditional")
    labels = model.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels) or len(labels) > 65536:
        raise JetgenError("The manifest's model.labels must be a list of strings.")
    if model["conditional"] and len(labels) < 1:
        raise JetgenError("The manifest says the model is conditional but lists no labels.")
    if len(set(labels)) != len(labels) or any(not x.strip() or len(x) > 256 for x in labels):
        repeated = sorted(set(x for x in labels if labels.count(x) > 1))[:3] if len(labels) <= 4096 else []
        raise JetgenError("The manifest's model.labels must be distinct, non-empty names of at most 256 characters"
                          "{}; re-export the bundle.".format(" ({} repeats)".format(_short(repeated)) if repeated else ""))
    model["labels"] = list(labels) if model["conditional"] else []
    output = dict(need(model, "output", dict, "model.output"))
    shape = need(output, "shape", list, "model.output.shape")
    modality = kind_modality(kind)
    declared = optional(model, "modality", str, "model.modality")
    if declared is not None and declared != modality:
        raise JetgenError("The manifest's model.modality {!r} does not match its kind {} ({}); re-export the "
                          "bundle.".format(_short(declared), kind, modality))
    model["modality"] = modality
    section = MODALITIES[modality]["section"]
    if section == "points":
        if len(shape) != 2 or not is_int(shape[0]) or not 1 <= shape[0] <= MAX_CLOUD_POINTS or shape[1] != 3:
            raise JetgenError("The manifest's model.output.shape must be [points, 3] for a {} model, with at most "
                              "{} points.".format(kind, MAX_CLOUD_POINTS))
        model[section] = _check_points(need(model, section, dict, "model.points"), shape[0])
        shape = [1] + list(shape)  # the size check below, as one (1, N, 3) block
    elif len(shape) != 3 or not all(is_int(s) and s > 0 for s in shape):
        raise JetgenError("The manifest's model.output.shape must be three positive integers (C, H, W).")
    if shape[0] * shape[1] * shape[2] > MAX_TENSOR_ELEMENTS:
        raise JetgenError("The manifest's model.output.shape {} is larger than this runtime accepts ({} values "
                          "per example).".format(shape, MAX_TENSOR_ELEMENTS))
    output["range"] = float_list(output.get("range", [0.0, 1.0]), 2, "model.output.range")
    if not output["range"][0] < output["range"][1]:
        raise JetgenError("The manifest's model.output.range must be [low, high] with low < high.")
    model["output"] = output
    model["likelihood"] = _check_likelihood(model)
    problem = _RANGE_RULES[model["likelihood"]["name"]](*output["range"])
    if problem:  # the runtime checks outputs against this range: a huge one would switch that check off
        raise JetgenError("The manifest's model.output.range {} does not fit its {} likelihood: {}; re-export the "
                          "bundle.".format(_short(output["range"]), model["likelihood"]["name"], problem))
    model["prior"] = _check_prior(need(model, "prior", dict, "model.prior"), d)
    return model


def check_manifest(manifest):
    """Check a parsed manifest against the format; return it with normalised model and graph fields.

    Raises JetgenError on an unknown format or version, a missing or ill-typed field, a prior whose
    parameters do not fit the latent size, a file name outside the bundle, interface tensors that
    differ from docs/bundle.md, or a bad batch range.
    """
    check_format(manifest)
    model = _check_model(manifest.get("model"))
    graphs = need(manifest, "graphs", dict, "the graphs section")
    if "decoder" not in graphs:
        raise JetgenError("The manifest lists no decoder graph; re-export the bundle.")
    checked = {}
    n_labels = len(model["labels"]) if model["conditional"] else 0
    if manifest["format_version"] < format_version(model["modality"]):
        raise JetgenError("The manifest declares a {} model at format_version {}, but {} bundles are "
                          "version {}; re-export the bundle.".format(model["kind"], manifest["format_version"],
                                                                     MODALITIES[model["modality"]]["title"],
                                                                     format_version(model["modality"])))
    for name, entry in graphs.items():
        if name not in GRAPHS:
            raise JetgenError("The manifest lists an unknown graph {!r} (known: {}).".format(_short(name), ", ".join(GRAPHS)))
        entry = check_graph_entry(name, entry)
        for key in ("sha256", "bytes"):
            need(entry, key, str if key == "sha256" else int, "graphs.{}.{}".format(name, key))
        inputs, outputs = expected_interface(name, model["latent_dim"], n_labels, model["output"]["shape"],
                                             modality_section(model))
        _check_tensors(name, entry, "inputs", inputs)
        _check_tensors(name, entry, "outputs", outputs)
        _check_golden_interface(name, entry.get("golden") or [], inputs, outputs)
        if entry["batch"] is None:
            entry["batch"] = {"min": 1, "opt": 64, "max": None}
        checked[name] = entry
    manifest = dict(manifest)
    for key in ("provenance", "versions", "quality", "target"):
        optional(manifest, key, dict, key)
    if manifest.get("precision") is not None:
        check_precision(manifest["precision"], "precision")
    manifest["model"] = model
    manifest["graphs"] = checked
    return manifest


def check_format(manifest):
    """JetgenError unless ``manifest`` is a dict of this format at a version this reader knows."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise JetgenError("This is not a jetgen bundle manifest (\"format\" is not {!r}).".format(FORMAT))
    version = manifest.get("format_version")
    if isinstance(version, bool) or version not in FORMAT_VERSIONS:
        raise JetgenError("The bundle has format_version {!r}, which this jetgen does not read (it reads {}); "
                          "update jetgen or re-export the bundle.".format(
                              _short(version), ", ".join(map(str, FORMAT_VERSIONS))))
    return manifest


# -- reading -------------------------------------------------------------------------------------

def inside(bundle_dir, name, where="a file"):
    """Path of plain file ``name`` in ``bundle_dir``; JetgenError when it is a link leading outside."""
    check_file_name(name, where)
    full = os.path.join(bundle_dir, name)
    if os.path.dirname(os.path.realpath(full)) != os.path.realpath(bundle_dir):
        raise JetgenError("{} points outside the bundle; refusing to read it.".format(full))
    return full


def _json_depth_ok(text, limit=MAX_JSON_DEPTH):
    """True when brackets outside strings never nest deeper than ``limit`` (checked before parsing,
    so a hostile file cannot make the parser recurse)."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def load_json(path, what="manifest"):
    """Parse a small JSON file safely: size and nesting bounded, one sentence on any problem."""
    try:
        size = os.path.getsize(path)
        if size > MAX_MANIFEST_BYTES:
            raise JetgenError("{} is {} bytes, too large to be a {} (limit {}).".format(
                path, size, what, MAX_MANIFEST_BYTES))
        with open(path, "rb") as handle:
            text = handle.read(MAX_MANIFEST_BYTES + 1).decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise JetgenError("Cannot read {}: {}; the {} is damaged, re-export the bundle.".format(path, err, what))
    if not _json_depth_ok(text):
        raise JetgenError("{} nests deeper than {} levels; it is not a jetgen {}.".format(path, MAX_JSON_DEPTH, what))
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise JetgenError("Cannot read {}: {}; the {} is damaged, re-export the bundle.".format(path, err, what))


def read_manifest(bundle_dir, full=True, key=None):
    """The checked manifest of the bundle directory ``bundle_dir``.

    ``key`` (bytes, a key file's path, None for the file JETGEN_BUNDLE_KEY names, False for none): when
    there is one, the bundle must carry a signature of this manifest under it (jetgen.signing).

    ``full`` checks the whole format (the runtime's needs); ``full=False`` only the format, version
    and each graph entry's file-level fields (``jetgen check`` accepts minimal hand-written
    manifests). JetgenError with one sentence for a missing directory or manifest, a manifest that
    is a link out of the bundle, unreadable or hostile JSON, or any broken rule.
    """
    bundle_dir = os.path.abspath(os.fspath(bundle_dir))
    recover(bundle_dir)  # an export killed mid-swap leaves the last complete copy beside bundle_dir
    if not os.path.isdir(bundle_dir):
        raise JetgenError("No bundle directory at {}; give the path of a NAME.jetgen directory.".format(bundle_dir))
    path = os.path.join(bundle_dir, MANIFEST)
    if not os.path.isfile(path):
        raise JetgenError("{} has no {}; it is not a jetgen bundle.".format(bundle_dir, MANIFEST))
    inside(bundle_dir, MANIFEST, "the manifest")
    manifest = load_json(path)
    from jetgen import signing
    secret = signing.resolve_key(key)
    if secret is not None:  # origin before content: an unsigned or re-signed manifest is not even parsed further
        signing.check_signature(bundle_dir, secret, manifest)
    if full:
        return check_manifest(manifest)
    check_format(manifest)
    graphs = need(manifest, "graphs", dict, "the graphs section")
    if not graphs:
        raise JetgenError("{} lists no graphs; re-export the bundle.".format(path))
    manifest = dict(manifest)
    manifest["graphs"] = dict((name, check_graph_entry(str(name), entry)) for name, entry in graphs.items())
    return manifest
