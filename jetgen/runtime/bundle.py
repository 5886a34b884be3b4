"""Open a bundle directory: its manifest checked by ``jetgen.spec``, its files checked before use.

    bundle = Bundle.open("digits.jetgen")      # manifest checked, every graph's bytes and sha256 too
    bundle.graph_path("decoder")               # path of a verified graph file
    bundle.graph("decoder")                    # its manifest entry

Nothing is ever unpickled, and no file is read through a link that leaves the bundle. Every problem
raises ``JetgenError`` with a sentence. Standard library only, Python 3.6 compatible.
"""
import json
import os

from jetgen import spec
from jetgen.runtime import backends, requirements
from jetgen.digest import sha256_file
from jetgen.errors import JetgenError

ENGINES_DIR = "engines"
MAX_SIDECAR_BYTES = 1 << 20


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
    def open(cls, path, verify=True, key=None):
        """Read and check ``path/manifest.json``; with ``verify`` also hash every graph file.

        ``key``: as for ``jetgen.spec.read_manifest`` (bytes, a key file, None for JETGEN_BUNDLE_KEY's,
        False for none); with one, a bundle not signed under it is refused.
        Raises JetgenError for a missing directory or manifest, unreadable JSON, any manifest rule
        broken, a signature that does not verify, a missing graph file, or a size or sha256 that
        differs from the manifest.
        """
        path = os.path.abspath(os.fspath(path))
        bundle = cls(path, spec.read_manifest(path, key=key))
        if verify:
            for name in bundle.graph_names():
                bundle.verify(name)
        return bundle

    @property
    def model(self):
        return self.manifest["model"]

    def graph_names(self):
        return [g for g in spec.GRAPHS if g in self.manifest["graphs"]]

    def has(self, graph):
        return graph in self.manifest["graphs"]

    def graph(self, name):
        """The manifest entry of graph ``name``; JetgenError when the bundle has no such graph."""
        try:
            return self.manifest["graphs"][name]
        except KeyError:
            raise JetgenError("This bundle has no {} graph.".format(name))

    def file_path(self, name):
        """Path of plain file ``name`` inside the bundle, refusing links that lead outside it."""
        return spec.inside(self.path, name)

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

    def engine_files(self):
        """Files under BUNDLE/engines/ as dicts (file, bytes, sidecar: the JSON describing it or None).

        Links are not followed: an ``engines`` directory that is a link lists nothing (``describe``
        says so), and files that are links are listed with their size unread, so nothing outside the
        bundle is read through them."""
        root = os.path.join(self.path, ENGINES_DIR)
        if os.path.islink(root) or not os.path.isdir(root):
            return []
        files = []
        for here, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(here, d)))
            files.extend(os.path.join(here, name) for name in sorted(names))
        sidecars, rows = set(), []
        for path in files:
            if path.endswith(".json"):
                continue
            side, meta = _sidecar(path)
            if side:
                sidecars.add(side)
            rows.append(_file_row(self.path, path, meta))
        rows.extend(_file_row(self.path, p, None) for p in files if p.endswith(".json") and p not in sidecars)
        return rows


def _file_row(bundle_dir, path, meta):
    link = os.path.islink(path)
    return {"file": os.path.relpath(path, bundle_dir), "bytes": None if link else os.path.getsize(path),
            "sidecar": {"error": "a link; not followed"} if link else meta}


def _sidecar(path):
    for candidate in (path + ".json", os.path.splitext(path)[0] + ".json"):
        if candidate != path and os.path.isfile(candidate) and not os.path.islink(candidate):
            if os.path.getsize(candidate) > MAX_SIDECAR_BYTES:
                return candidate, {"error": "sidecar too large to read"}
            try:
                with open(candidate, "rb") as handle:
                    return candidate, json.loads(handle.read().decode("utf-8"))
            except (ValueError, UnicodeDecodeError, RecursionError) as err:
                return candidate, {"error": "unreadable JSON: {}".format(err)}
    return None, None


def describe(path):
    """Everything ``jetgen info`` and ``jetgen serve`` show about a bundle, as a JSON-ready dict.

    Each graph's file is checked (size, sha256, and that its header loads as an ONNX model) rather
    than trusted; a failing graph has its problem in ``check`` instead of "ok"."""
    bundle = Bundle.open(path, verify=False)
    man, model = bundle.manifest, bundle.model
    graphs = {}
    for name in bundle.graph_names():
        entry = bundle.graph(name)
        requires = None
        try:
            path = bundle.check_graph_file(name)
            requires = requirements.graph_requirements(path, entry)
            status = backends.probe(path) or "ok"
        except JetgenError as err:
            status = str(err)
        if status.startswith("not loaded"):  # no backend here to load it with: the hash is all we can check
            status = "ok"
        graphs[name] = {"file": entry["file"], "bytes": entry["bytes"], "opset": entry.get("opset"),
                        "precision": entry.get("precision"), "batch": entry.get("batch"),
                        "parity": entry.get("parity"), "sha256": entry["sha256"], "check": status,
                        "requires": requires, "golden": len(entry.get("golden") or [])}
    return {
        "bundle": bundle.path, "name": man.get("name"), "created": man.get("created"),
        "format_version": man["format_version"], "modality": model["modality"], "kind": model["kind"],
        "arch": model.get("arch"),
        "latent_dim": model["latent_dim"], "prior": model["prior"], "conditional": model["conditional"],
        "labels": model["labels"], "output": model["output"], "likelihood": model["likelihood"],
        # each modality's own settings section (model.points), None for a bundle of another modality
        **{row["section"]: model.get(row["section"]) for row in spec.MODALITIES.values() if row["section"]},
        "precision": man.get("precision"), "graphs": graphs, "target": man.get("target"),
        "provenance": man.get("provenance"), "versions": man.get("versions"), "quality": man.get("quality"),
        "engines": bundle.engine_files(),
        "notes": (["engines/ is a link out of the bundle; not followed (remove it: jetgen build makes the "
                   "directory)"] if os.path.islink(os.path.join(bundle.path, ENGINES_DIR)) else []),
    }
