"""A bundle as a Triton Inference Server model repository (docs/triton.md).

    REPO/
      NAME_decoder/config.pbtxt, 1/model.onnx    one model per graph (1/model.plan for --backend tensorrt)
      NAME_encoder/...  NAME_latent_grad/...
      NAME/config.pbtxt, 1/model.py              the Python model: sample, interpolate, complete
           1/jetgen/                             the torch-free runtime it runs (copied from this jetgen)
           1/bundle/                             the bundle (manifest, graphs, golden vectors, faces)
      jetgen-triton.json                         what was written, from which bundle, for which backend

The whole directory is built under a temporary name and published in one step (jetgen.atomic).
Standard library only (the runtime's Bundle checks the bundle first); Python 3.6 compatible.
"""
import collections
import json
import os
import re
import shutil

import jetgen
from jetgen import spec
from jetgen.atomic import AtomicDirectory
from jetgen.errors import JetgenError
from jetgen.runtime.backends.trt import engine_cache
from jetgen.runtime.bundle import Bundle
from jetgen.triton import config as tconfig

INDEX = "jetgen-triton.json"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_MODE = "bls"  # the graphs run in the graph models (TensorRT plans, batching); docs/triton.md measures both
# the parts of jetgen the Python model imports, copied into NAME/1/jetgen (torch-free; modalities/ also holds
# desktop parts, copied along but never imported there)
RUNTIME_FILES = ("__init__.py", "_moved.py", "cells.py", "errors.py", "atomic.py", "digest.py", "spec.py", "signing.py")
RUNTIME_DIRS = ("runtime", "modalities")

Options = collections.namedtuple("Options", "name max_batch instances backend mode tensorrt gpu force")


def options(name=None, max_batch=None, instances=1, backend="onnxruntime", mode=DEFAULT_MODE, tensorrt=None,
            gpu=None, force=False):
    """Checked export options; JetgenError with a sentence for each bad value."""
    if name is not None and not NAME_RE.match(name):
        raise JetgenError("The model name {!r} is not one Triton accepts here: 1 to 64 letters, digits, '_', '.' "
                          "or '-', starting with a letter or digit.".format(name))
    if max_batch is not None and not (spec.is_int(max_batch) and 1 <= max_batch <= spec.MAX_BATCH):
        raise JetgenError("--max-batch must be a whole number from 1 to {}, not {!r}.".format(spec.MAX_BATCH, max_batch))
    if not (spec.is_int(instances) and 1 <= instances <= tconfig.MAX_INSTANCES):
        raise JetgenError("--instances must be from 1 to {}, not {!r}.".format(tconfig.MAX_INSTANCES, instances))
    if backend not in tconfig.PLATFORMS:
        raise JetgenError("Unknown --backend {!r}; choose one of: {}.".format(backend, ", ".join(tconfig.PLATFORMS)))
    if mode not in tconfig.MODES:
        raise JetgenError("Unknown mode {!r}; choose one of: {}.".format(mode, ", ".join(tconfig.MODES)))
    return Options(name, max_batch, instances, backend, mode, tensorrt, gpu, bool(force))


def default_name(manifest):
    """The bundle's name made into a Triton model name (other characters become '_')."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(manifest.get("name") or "jetgen"))[:64].lstrip("._-")
    return name or "jetgen"


def _engines(bundle, graph, opts):
    """(path, sidecar fields) of the newest trustworthy engine of ``graph`` for this graph file and,
    when given, TensorRT version and GPU. JetgenError saying what the engines on disk were built for."""
    directory = os.path.join(bundle.path, engine_cache.ENGINES_DIR)
    pattern = re.compile(r"^{}-(fp32|fp16|int8)-[0-9a-f]{{12}}\.engine$".format(re.escape(graph)))
    found = sorted((os.path.join(directory, n) for n in (os.listdir(directory) if os.path.isdir(directory) else [])
                    if pattern.match(n)), key=os.path.getmtime, reverse=True)
    seen = []
    for path in found:
        sidecar, problem = engine_cache.read_sidecar(path)
        if problem:
            continue
        fields = sidecar["fields"]
        if fields.get("onnx_sha256") != bundle.graph(graph)["sha256"]:
            continue  # built from another graph file
        if engine_cache.validate(path, fields) is not None:
            continue  # damaged: bytes differ from the sidecar
        seen.append("TensorRT {} on {}".format(fields.get("tensorrt"), fields.get("gpu")))
        if opts.tensorrt is not None and str(fields.get("tensorrt")) != str(opts.tensorrt):
            continue
        if opts.gpu is not None and str(fields.get("gpu")) != str(opts.gpu):
            continue
        return path, fields
    if not seen:
        raise JetgenError("{} has no TensorRT engine of its {} graph; run `jetgen build {}` on the GPU that will "
                          "serve it, then export again.".format(bundle.path, graph, bundle.path))
    raise JetgenError("The {} graph's engines were built for {}, not for TensorRT {} on {}; a plan runs only on "
                      "the GPU and TensorRT that built it: run `jetgen build` on the serving machine.".format(
                          graph, ", ".join(sorted(set(seen))), opts.tensorrt or "any version", opts.gpu or "any GPU"))


def _copy_runtime(dest):
    """The torch-free runtime files of this jetgen (sources only) into ``dest/jetgen``."""
    src = os.path.dirname(os.path.abspath(jetgen.__file__))
    root = os.path.join(dest, "jetgen")
    os.makedirs(root)
    for name in RUNTIME_FILES:
        shutil.copyfile(os.path.join(src, name), os.path.join(root, name))
    for name in RUNTIME_DIRS:
        shutil.copytree(os.path.join(src, name), os.path.join(root, name),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _copy_bundle(bundle, dest):
    """The bundle's manifest, graphs, golden vectors and faces (not its engines) into ``dest``."""
    shutil.copytree(bundle.path, dest, ignore=shutil.ignore_patterns(engine_cache.ENGINES_DIR, ".*"))


def _write(path, text):
    with open(path, "w") as handle:
        handle.write(text + "\n")


def export_repository(bundle_path, out, opts=None):
    """Write the Triton model repository of the bundle at ``bundle_path`` to ``out``.

    ``opts`` from :func:`options`. Returns the index written to ``out/jetgen-triton.json`` (models,
    backend, engines). JetgenError when the bundle is damaged, ``out`` exists (without ``force``), a
    graph's batch range does not fit Triton, or --backend tensorrt finds no engine for the serving GPU.
    """
    opts = opts or options()
    bundle = Bundle.open(bundle_path, verify=True)
    manifest = bundle.manifest
    name = opts.name or default_name(manifest)
    graphs = bundle.graph_names()
    models, engines, graph_models = {}, {}, {}
    for graph in graphs:
        entry = bundle.graph(graph)
        max_batch = opts.max_batch
        if opts.backend == "tensorrt":
            path, fields = _engines(bundle, graph, opts)
            engines[graph] = (path, fields)
            max_batch = min(max_batch or fields["batch_max"], fields["batch_max"])
        model_name = "{}_{}".format(name, graph)
        models[graph] = tconfig.graph_config(model_name, graph, entry, opts.backend, max_batch, opts.instances)
        graph_models[graph] = (model_name, models[graph]["max_batch_size"])
    trt = set((f["tensorrt"], f["gpu"]) for _, f in engines.values())
    if len(trt) > 1:
        raise JetgenError("The bundle's engines were built on different machines ({}); build them all on the GPU that "
                          "will serve, or give --tensorrt and --gpu.".format(", ".join(sorted(map(" on ".join, trt)))))
    python = tconfig.python_config(name, manifest, graph_models, opts.mode, opts.instances)
    index = {"format": "jetgen-triton", "format_version": 1, "jetgen": jetgen.__version__,
             "bundle": {"name": manifest.get("name"), "kind": bundle.model["kind"],
                        "graphs": dict((g, bundle.graph(g)["sha256"]) for g in graphs)},
             "backend": opts.backend, "mode": opts.mode, "python_model": name,
             "graph_models": dict((g, m["name"]) for g, m in models.items())}
    if engines:
        tensorrt, gpu = trt.pop()
        index["tensorrt"] = {"version": tensorrt, "gpu": gpu,
                             "engines": dict((g, os.path.basename(p)) for g, (p, _) in engines.items())}
    try:
        with AtomicDirectory(out, force=opts.force) as tmp:
            for graph, config in models.items():
                version = os.path.join(tmp, config["name"], tconfig.VERSION)
                os.makedirs(version)
                _write(os.path.join(tmp, config["name"], "config.pbtxt"), tconfig.pbtxt(config))
                target = os.path.join(version, tconfig.PLATFORMS[opts.backend]["file"])
                source = engines[graph][0] if graph in engines else bundle.graph_path(graph)
                shutil.copyfile(source, target)
            version = os.path.join(tmp, name, tconfig.VERSION)
            os.makedirs(version)
            _write(os.path.join(tmp, name, "config.pbtxt"), tconfig.pbtxt(python))
            shutil.copyfile(os.path.join(os.path.dirname(os.path.abspath(__file__)), "python_model.py"),
                            os.path.join(version, "model.py"))
            _copy_runtime(version)
            _copy_bundle(bundle, os.path.join(version, "bundle"))
            _write(os.path.join(tmp, INDEX), json.dumps(index, indent=2, sort_keys=True))
    except FileExistsError:
        raise JetgenError("{} exists; give another -o or --force to replace it.".format(out))
    except OSError as err:
        raise JetgenError("Cannot write the repository {}: {}.".format(out, err))
    return index
