"""TensorRT engines on disk, named by everything they depend on.

An engine only runs on the TensorRT version and GPU that built it, and only means the graph,
precision, batch range and workspace it was built for. Each engine ``BUNDLE/engines/<graph>-<precision>-
<key12>.engine`` has a JSON sidecar ``<same stem>.json`` holding every key field, the engine's size
and sha256. Loading trusts an engine only when the sidecar parses, every field equals the current
one and the bytes hash to the sidecar's sha256; otherwise :func:`lookup` says what differs
("engine was built with TensorRT 8.2.1, this is 8.5.2: rebuilding") and the caller rebuilds.
Writes go through jetgen.atomic (temp file + rename), engine first and sidecar last, so a kill
mid-write leaves either no engine or one without a sidecar, which is never trusted.
Python 3.6 compatible, standard library only.
"""
import collections
import hashlib
import json
import os
import re

from jetgen.atomic import atomic_write_bytes, atomic_write_json
from jetgen.digest import sha256_file

CACHE_FORMAT = 1
ENGINES_DIR = "engines"
# The key fields, in the order messages mention them.
KEY_FIELDS = ("cache_format", "onnx_sha256", "tensorrt", "gpu", "sm", "precision",
              "batch_min", "batch_opt", "batch_max", "workspace_mb")

Lookup = collections.namedtuple("Lookup", "hit path sidecar reason")


def engine_fields(onnx_sha256, tensorrt, gpu, sm, precision, batch, workspace_mb):
    """The key fields as a dict; ``batch`` is (min, opt, max) or a dict with those keys."""
    if isinstance(batch, dict):
        batch = (batch["min"], batch["opt"], batch["max"])
    bmin, bopt, bmax = (int(b) for b in batch)
    return {"cache_format": CACHE_FORMAT, "onnx_sha256": str(onnx_sha256), "tensorrt": str(tensorrt),
            "gpu": str(gpu), "sm": str(sm), "precision": str(precision), "batch_min": bmin,
            "batch_opt": bopt, "batch_max": bmax, "workspace_mb": int(workspace_mb)}


def cache_key(fields):
    """sha256 hex of the key fields (canonical JSON), stable across runs and Python versions."""
    canon = json.dumps({k: fields[k] for k in KEY_FIELDS}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def engine_path(bundle_dir, graph_name, fields):
    """BUNDLE/engines/<graph>-<precision>-<key12>.engine"""
    name = "{}-{}-{}.engine".format(graph_name, fields["precision"], cache_key(fields)[:12])
    return os.path.join(str(bundle_dir), ENGINES_DIR, name)


def sidecar_path(path):
    return os.path.splitext(path)[0] + ".json"




def _batch_text(fields):
    return "{}/{}/{}".format(fields.get("batch_min"), fields.get("batch_opt"), fields.get("batch_max"))


def describe_difference(old, new):
    """A phrase for the first key field that differs between sidecar ``old`` and current ``new``.

    None when every key field is equal.
    """
    for field in KEY_FIELDS:
        if field.startswith("batch_"):
            if any(old.get(f) != new.get(f) for f in ("batch_min", "batch_opt", "batch_max")):
                return "engine was built for batch sizes {} (min/opt/max), the bundle asks for {}".format(
                    _batch_text(old), _batch_text(new))
            continue
        if old.get(field) == new.get(field):
            continue
        was, now = old.get(field), new.get(field)
        if field == "tensorrt":
            return "engine was built with TensorRT {}, this is {}".format(was, now)
        if field == "gpu":
            return "engine was built on GPU {!r}, this is {!r}".format(was, now)
        if field == "sm":
            return "engine was built for compute capability {}, this GPU is {}".format(was, now)
        if field == "onnx_sha256":
            return "engine was built from a different ONNX graph (sha256 {}..., now {}...)".format(
                str(was)[:12], str(now)[:12])
        if field == "precision":
            return "engine was built at {}, {} is wanted".format(was, now)
        if field == "workspace_mb":
            return "engine was built with a {} MB workspace, {} MB is wanted".format(was, now)
        return "engine cache field {} was {!r}, now {!r}".format(field, was, now)
    return None


def read_sidecar(path):
    """(sidecar dict, None) for engine ``path``, or (None, problem) when it is missing or unreadable."""
    side = sidecar_path(path)
    if not os.path.exists(side):
        return None, "engine {} has no sidecar (an interrupted build?)".format(os.path.basename(path))
    try:
        with open(side, "r") as handle:
            data = json.load(handle)
        if not isinstance(data, dict) or not isinstance(data.get("fields"), dict):
            raise ValueError("no fields")
    except (OSError, ValueError):
        return None, "engine sidecar {} is unreadable".format(os.path.basename(side))
    return data, None


def validate(path, fields, ignore=()):
    """None when engine ``path`` can be trusted for ``fields``, else the reason it cannot.

    ``ignore`` names key fields that may differ (e.g. ('workspace_mb',) when the caller has no
    preference for the workspace).
    """
    if not os.path.exists(path):
        return "no engine built yet"
    sidecar, problem = read_sidecar(path)
    if problem:
        return problem
    old = dict(sidecar["fields"])
    for field in ignore:
        old[field] = fields.get(field)
    difference = describe_difference(old, fields)
    if difference:
        return difference
    if os.path.getsize(path) != sidecar.get("engine_bytes") or sha256_file(path) != sidecar.get("engine_sha256"):
        return "engine file {} does not match its sidecar's sha256 (damaged or replaced)".format(
            os.path.basename(path))
    return None


def _same_graph_engines(bundle_dir, graph_name):
    directory = os.path.join(str(bundle_dir), ENGINES_DIR)
    if not os.path.isdir(directory):
        return []
    pattern = re.compile(r"^{}-(fp32|fp16|int8)-[0-9a-f]{{12}}\.engine$".format(re.escape(graph_name)))
    found = [os.path.join(directory, n) for n in os.listdir(directory) if pattern.match(n)]
    return sorted(found, key=lambda p: os.path.getmtime(p), reverse=True)


def lookup(bundle_dir, graph_name, fields, any_workspace=False):
    """Find a trustworthy engine for ``fields``: Lookup(hit, path, sidecar, reason).

    ``hit`` is True when ``path`` can be loaded. On a miss ``path`` is where to write the new
    engine and ``reason`` a sentence fragment ending in ': rebuilding' that says what differed from
    the closest engine on disk (or 'no engine built yet'). With ``any_workspace`` an engine built
    with another workspace cap is accepted (the cap changes build time, not results).
    """
    path = engine_path(bundle_dir, graph_name, fields)
    reason = validate(path, fields)
    if reason is None:
        return Lookup(True, path, sidecar_path(path), None)
    if not os.path.exists(path):
        others = _same_graph_engines(bundle_dir, graph_name)
        if any_workspace:
            for other in others:
                if validate(other, fields, ignore=("workspace_mb",)) is None:
                    return Lookup(True, other, sidecar_path(other), None)
        # Explain against the newest engine of the same precision, else of any precision.
        same = [o for o in others if "-{}-".format(fields["precision"]) in os.path.basename(o)]
        for other in same + others:
            sidecar, problem = read_sidecar(other)
            reason = problem or describe_difference(sidecar["fields"], fields) or reason
            break
    return Lookup(False, path, sidecar_path(path), reason + ": rebuilding")


def store(bundle_dir, graph_name, fields, engine_bytes, build_seconds=None, extra=None):
    """Write an engine and its sidecar atomically; return the engine path.

    The old sidecar goes first and the new one is written last: a crash in between leaves an
    engine without a sidecar, which :func:`validate` refuses.
    """
    path = engine_path(bundle_dir, graph_name, fields)
    side = sidecar_path(path)
    if os.path.exists(side):
        os.unlink(side)
    engine_bytes = bytes(engine_bytes)
    atomic_write_bytes(path, engine_bytes)
    sidecar = {"fields": dict(fields), "key": cache_key(fields), "graph": graph_name,
               "engine_file": os.path.basename(path), "engine_bytes": len(engine_bytes),
               "engine_sha256": hashlib.sha256(engine_bytes).hexdigest(),
               "build_seconds": None if build_seconds is None else round(float(build_seconds), 3)}
    if extra:
        sidecar.update(extra)
    atomic_write_json(side, sidecar)
    return path


def read_engine(path):
    with open(path, "rb") as handle:
        return handle.read()


def cleanup_engines(bundle_dir):
    """Remove leftovers from BUNDLE/engines (``jetgen build`` calls it) and return the removed paths:
    temporary files of interrupted writes, engines without a readable sidecar (never trusted, so
    only taking space) and sidecars without an engine. Good engines and timing caches stay."""
    directory = os.path.join(str(bundle_dir), ENGINES_DIR)
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        drop = False
        if name.startswith(".") and name.endswith(".tmp"):
            drop = True
        elif name.endswith(".engine"):
            drop = read_sidecar(path)[1] is not None
        elif name.endswith(".json"):
            drop = not os.path.exists(os.path.splitext(path)[0] + ".engine")
        if drop and os.path.isfile(path):
            os.unlink(path)
            removed.append(path)
    # An engine dropped above leaves its sidecar; sweep those too.
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.endswith(".json") and not os.path.exists(os.path.splitext(path)[0] + ".engine"):
            os.unlink(path)
            removed.append(path)
    return removed


def _slug(text):
    return re.sub(r"[^A-Za-z0-9.]+", "_", str(text)).strip("_") or "gpu"


def timing_cache_path(bundle_dir, tensorrt, gpu):
    """BUNDLE/engines/timing-trt<version>-<gpu>.cache: one timing cache per TensorRT version and GPU."""
    return os.path.join(str(bundle_dir), ENGINES_DIR, "timing-trt{}-{}.cache".format(_slug(tensorrt), _slug(gpu)))


def read_timing_cache(path):
    """The cache's bytes, or b'' when there is none yet (TensorRT then starts an empty cache)."""
    if path is None or not os.path.exists(path):
        return b""
    with open(path, "rb") as handle:
        return handle.read()


def write_timing_cache(path, data):
    atomic_write_bytes(path, bytes(data))
