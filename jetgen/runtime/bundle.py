"""Open a bundle directory and check its manifest before anything in it is used.

    bundle = Bundle.open("digits.jetgen")      # manifest checked, every graph's bytes and sha256 too
    bundle.graph_path("decoder")               # path of a verified graph file
    bundle.graph("decoder")                    # its manifest entry

The rules are those of docs/bundle.md ("Trust rules for readers"): a known format and version,
plain file names inside the bundle, sizes and hashes checked before a graph is loaded, interface
names and shapes as the format fixes them. Nothing is ever unpickled. Every problem raises
``JetgenError`` with a sentence. Standard library only, Python 3.6 compatible.
"""
import json
import os

from jetgen.atomic import recover
from jetgen.digest import sha256_file  # noqa: F401  (re-exported: part of this module's API)
from jetgen.errors import JetgenError

FORMAT = "jetgen-bundle"
FORMAT_VERSIONS = (1,)
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024  # a manifest is a few kB; refuse to parse anything huge
KINDS = ("vae", "cvae", "ad", "vad")
GRAPHS = ("decoder", "encoder", "latent_grad")
PRIOR_PARAMS = {"gaussian": ("mean", "std"), "exponential": ("rate",), "uniform": ("low", "high")}


def check_file_name(name, where):
    """Raise JetgenError unless ``name`` is a plain file name (no directories, no ``..``)."""
    if not isinstance(name, str) or not name:
        raise JetgenError("The manifest gives {} no file name; re-export the bundle.".format(where))
    if ("/" in name or "\\" in name or "\x00" in name or name in (".", "..")
            or os.path.isabs(name) or ":" in name):
        raise JetgenError("The manifest names {!r} for {}, which is not a plain file name inside the "
                          "bundle; refusing to read it (re-export the bundle).".format(name, where))
    return name


def expected_interface(graph, latent_dim, n_labels, output_shape):
    """The inputs and outputs the format fixes for ``graph``: two lists of (name, shape-after-batch)."""
    d, k, out = [latent_dim], [n_labels], list(output_shape)
    label = [("y", k)] if n_labels else []
    if graph == "decoder":
        return [("z", d)] + label, [("x", out)]
    if graph == "encoder":
        return [("x", out)] + label, [("mu", d), ("logvar", d)]
    return [("z", d), ("target", out), ("mask", out)] + label, [("loss", []), ("grad", d)]


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
                              "not belong to this manifest.".format(
                                  graph, side, sorted(found), sorted(declared)))
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


def _need(mapping, key, kind, where):
    if not isinstance(mapping, dict) or key not in mapping:
        raise JetgenError("The manifest lacks {}; re-export the bundle.".format(where))
    value = mapping[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise JetgenError("The manifest's {} must be an integer, not {!r}.".format(where, value))
    if kind is not int and not isinstance(value, kind):
        raise JetgenError("The manifest's {} has the wrong type ({!r}).".format(where, value))
    return value


def _float_list(values, length, where):
    if not isinstance(values, list) or len(values) != length:
        raise JetgenError("The manifest's {} must be a list of {} numbers.".format(where, length))
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
            raise JetgenError("The manifest's {} holds {!r}, not a finite number.".format(where, v))
    return [float(v) for v in values]


def _check_prior(prior, latent_dim):
    family = _need(prior, "family", str, "model.prior.family")
    if family not in PRIOR_PARAMS:
        raise JetgenError("The manifest's prior family {!r} is unknown to this runtime (known: {}); "
                          "update jetgen.".format(family, ", ".join(sorted(PRIOR_PARAMS))))
    params = _need(prior, "params", dict, "model.prior.params")
    out = {}
    for key in PRIOR_PARAMS[family]:
        out[key] = _float_list(params.get(key), latent_dim, "model.prior.params.{}".format(key))
    if family == "gaussian" and min(out["std"]) <= 0:
        raise JetgenError("The manifest's gaussian prior has a std that is not positive.")
    if family == "exponential" and min(out["rate"]) <= 0:
        raise JetgenError("The manifest's exponential prior has a rate that is not positive.")
    if family == "uniform" and any(lo >= hi for lo, hi in zip(out["low"], out["high"])):
        raise JetgenError("The manifest's uniform prior has low >= high somewhere.")
    return {"family": family, "params": out}


def _check_tensors(graph, entry, side, expected):
    tensors = _need(entry, side, list, "graphs.{}.{}".format(graph, side))
    declared = {}
    for t in tensors:
        name = _need(t, "name", str, "a tensor name in graphs.{}.{}".format(graph, side))
        if t.get("dtype", "float32") != "float32":
            raise JetgenError("The {} graph's tensor {!r} is {}, but every interface tensor must be float32."
                              .format(graph, name, t.get("dtype")))
        shape = _need(t, "shape", list, "graphs.{}.{}[{}].shape".format(graph, side, name))
        declared[name] = shape
    want = dict(expected)
    if set(declared) != set(want):
        raise JetgenError("The {} graph's {} are {} in the manifest, but this model needs {}; re-export "
                          "the bundle.".format(graph, side, sorted(declared), sorted(want)))
    for name, rest in want.items():
        shape = declared[name]
        if len(shape) != 1 + len(rest) or list(shape[1:]) != list(rest):
            raise JetgenError("The {} graph's tensor {!r} has shape {} in the manifest, expected {}."
                              .format(graph, name, shape, ["batch"] + list(rest)))


def _check_graph(graph, entry, model):
    if not isinstance(entry, dict):
        raise JetgenError("The manifest's graphs.{} is not an object.".format(graph))
    check_file_name(entry.get("file"), "the {} graph".format(graph))
    sha = _need(entry, "sha256", str, "graphs.{}.sha256".format(graph))
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower()):
        raise JetgenError("The manifest's graphs.{}.sha256 is not a sha256 hex digest.".format(graph))
    if _need(entry, "bytes", int, "graphs.{}.bytes".format(graph)) < 0:
        raise JetgenError("The manifest's graphs.{}.bytes is negative.".format(graph))
    inputs, outputs = expected_interface(graph, model["latent_dim"], len(model["labels"]) if model["conditional"] else 0,
                                         model["output"]["shape"])
    _check_tensors(graph, entry, "inputs", inputs)
    _check_tensors(graph, entry, "outputs", outputs)
    batch = entry.get("batch") or {}
    lo = batch.get("min", 1)
    hi = batch.get("max")
    if isinstance(lo, bool) or not isinstance(lo, int) or lo < 1 or (
            hi is not None and (isinstance(hi, bool) or not isinstance(hi, int) or hi < lo)):
        raise JetgenError("The manifest's graphs.{}.batch range {!r} is not valid.".format(graph, batch))
    entry = dict(entry)
    entry["batch"] = dict(batch, min=lo, max=hi)
    return entry


def check_manifest(manifest):
    """Check a parsed manifest against format_version 1; return it with normalised model fields.

    Raises JetgenError on an unknown format or version, a missing or ill-typed field, a prior whose
    parameters do not fit the latent size, a file name outside the bundle, or interface tensors that
    differ from docs/bundle.md.
    """
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise JetgenError("This is not a jetgen bundle manifest (format is not {!r}).".format(FORMAT))
    version = manifest.get("format_version")
    if version not in FORMAT_VERSIONS or isinstance(version, bool):
        raise JetgenError("The bundle has format_version {!r}, which this runtime does not read (it reads {}); "
                          "update jetgen or re-export the bundle.".format(version, ", ".join(map(str, FORMAT_VERSIONS))))
    model = dict(_need(manifest, "model", dict, "the model section"))
    kind = _need(model, "kind", str, "model.kind")
    if kind not in KINDS:
        raise JetgenError("The manifest's model kind {!r} is unknown (known: {}).".format(kind, ", ".join(KINDS)))
    d = _need(model, "latent_dim", int, "model.latent_dim")
    if d < 1:
        raise JetgenError("The manifest's model.latent_dim must be positive.")
    model["conditional"] = bool(_need(model, "conditional", bool, "model.conditional"))
    labels = model.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise JetgenError("The manifest's model.labels must be a list of strings.")
    if model["conditional"] and not labels:
        raise JetgenError("The manifest says the model is conditional but lists no labels.")
    model["labels"] = list(labels) if model["conditional"] else []
    output = dict(_need(model, "output", dict, "model.output"))
    shape = _need(output, "shape", list, "model.output.shape")
    if len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise JetgenError("The manifest's model.output.shape must be three positive integers (C, H, W).")
    rng = output.get("range", [0.0, 1.0])
    output["range"] = _float_list(rng, 2, "model.output.range")
    model["output"] = output
    model["likelihood"] = model.get("likelihood") or {"name": "bernoulli", "sigma": None}
    model["prior"] = _check_prior(_need(model, "prior", dict, "model.prior"), d)
    graphs = _need(manifest, "graphs", dict, "the graphs section")
    if "decoder" not in graphs:
        raise JetgenError("The manifest lists no decoder graph; re-export the bundle.")
    checked = {}
    for name, entry in graphs.items():
        if name not in GRAPHS:
            raise JetgenError("The manifest lists an unknown graph {!r} (known: {}).".format(name, ", ".join(GRAPHS)))
        checked[name] = _check_graph(name, entry, model)
    manifest = dict(manifest)
    manifest["model"] = model
    manifest["graphs"] = checked
    return manifest


class Bundle(object):
    """A bundle directory whose manifest has been checked.

    Attributes: ``path`` (absolute directory), ``manifest`` (dict, normalised), ``verified``
    (graph name -> True when its bytes and sha256 matched).
    """

    def __init__(self, path, manifest):
        self.path = path
        self.manifest = manifest
        self.verified = {}

    @classmethod
    def open(cls, path, verify=True):
        """Read and check ``path/manifest.json``; with ``verify`` also hash every graph file.

        Raises JetgenError for a missing directory or manifest, unreadable JSON, any manifest rule
        broken, a missing graph file, or a size or sha256 that differs from the manifest.
        """
        path = os.path.abspath(os.fspath(path))
        recover(path)  # an export killed mid-swap leaves the last complete copy beside path
        if not os.path.isdir(path):
            raise JetgenError("No bundle directory at {}; give the path of a NAME.jetgen directory.".format(path))
        mpath = os.path.join(path, MANIFEST)
        if not os.path.isfile(mpath):
            raise JetgenError("{} has no {}; it is not a jetgen bundle.".format(path, MANIFEST))
        if os.path.getsize(mpath) > MAX_MANIFEST_BYTES:
            raise JetgenError("{} is too large to be a manifest.".format(mpath))
        try:
            with open(mpath, "rb") as handle:
                manifest = json.loads(handle.read().decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise JetgenError("Cannot read {}: {}; the manifest is damaged, re-export the bundle.".format(mpath, err))
        bundle = cls(path, check_manifest(manifest))
        if verify:
            for name in bundle.graph_names():
                bundle.verify(name)
        return bundle

    @property
    def model(self):
        return self.manifest["model"]

    def graph_names(self):
        return [g for g in GRAPHS if g in self.manifest["graphs"]]

    def has(self, graph):
        return graph in self.manifest["graphs"]

    def graph(self, name):
        """The manifest entry of graph ``name``; JetgenError when the bundle has no such graph."""
        try:
            return self.manifest["graphs"][name]
        except KeyError:
            raise JetgenError("This bundle has no {} graph.".format(name))

    def file_path(self, name):
        """Path of plain file ``name`` inside the bundle, refusing symlinks that lead outside it."""
        check_file_name(name, "a file")
        full = os.path.join(self.path, name)
        real = os.path.realpath(full)
        if os.path.dirname(real) != os.path.realpath(self.path):
            raise JetgenError("{} points outside the bundle; refusing to read it.".format(full))
        return full

    def check_graph_file(self, name):
        """Check graph ``name``'s file: present, size and sha256 as the manifest says. Returns its path."""
        entry = self.graph(name)
        full = self.file_path(entry["file"])
        if not os.path.isfile(full):
            raise JetgenError("The bundle lacks {} (the {} graph); copy the whole bundle directory again."
                              .format(entry["file"], name))
        size = os.path.getsize(full)
        if size != entry["bytes"]:
            raise JetgenError("{} has {} bytes but the manifest says {}; the file changed after export, "
                              "copy the bundle again.".format(entry["file"], size, entry["bytes"]))
        if sha256_file(full) != entry["sha256"].lower():
            raise JetgenError("{} does not match its sha256 in the manifest; the file changed after export, "
                              "copy the bundle again.".format(entry["file"]))
        return full

    def verify(self, name):
        path = self.check_graph_file(name)
        self.verified[name] = True
        return path

    def graph_path(self, name):
        """Path of graph ``name`` after checking its size and sha256 (once per Bundle)."""
        if not self.verified.get(name):
            return self.verify(name)
        return self.file_path(self.graph(name)["file"])
