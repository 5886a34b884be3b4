"""The manifest an export writes (docs/bundle.md): the model section from a Source, the graphs'
entries, the target, provenance and tool versions, checked by jetgen.spec before it is written."""
import datetime
import json
import os
import platform

from jetgen import modalities, spec


def format_version(source):
    """The format version a bundle of ``source`` is written at: its modality's (point clouds need a newer reader)."""
    return spec.format_version(source.modality)


def model_section(source):
    """The manifest's ``model`` object for ``source``."""
    section = {
        "kind": source.kind,
        "modality": source.modality,
        "arch": source.arch,
        "latent_dim": source.latent_dim,
        "conditional": source.conditional,
        "labels": list(source.labels),
        "output": {"shape": list(source.output_shape), "range": list(source.output_range)},
        "likelihood": source.likelihood.manifest(),
        "prior": source.prior,
    }
    half = modalities.part(source.modality, "export")
    if half is not None:  # the modality's own settings (model.points)
        section.update(half.manifest_sections(source))
    return section


def build_manifest(job, out, graphs, quality):
    """The complete manifest of one export, checked against the format (JetgenError if it breaks it)."""
    name = os.path.basename(out)
    if name.endswith(".jetgen"):
        name = name[:-len(".jetgen")]
    manifest = {
        "format": spec.FORMAT,
        "format_version": format_version(job.source),
        "name": job.source.name or name,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": model_section(job.source),
        "graphs": graphs,
        "target": dict(job.row),
        "precision": job.precision,
        "provenance": job.source.provenance,
        "versions": versions(job.precision),
    }
    if quality is not None:
        manifest["quality"] = quality
    spec.check_manifest(json.loads(json.dumps(manifest)))
    return manifest


def versions(precision):
    import onnx
    import onnxruntime
    import torch

    from jetgen import __version__

    found = {"jetgen": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
             "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}
    for name in ("onnxslim", "onnxscript") + (("onnxconverter_common",) if precision != "fp32" else ()):
        try:
            found[name] = __import__(name).__version__
        except (ImportError, AttributeError):
            pass
    return found


def run_provenance(run):
    """Where a jetgen run's bundle came from: run directory, checkpoint hash, data, epochs, metrics."""
    from jetgen.train.rundir import read_metrics

    metrics = {}
    rows = read_metrics(run.path)
    if rows:
        for key, value in rows[-1].items():
            if value in (None, ""):
                continue
            try:
                metrics[key] = float(value)
            except ValueError:
                metrics[key] = value
    eval_path = os.path.join(run.path, "eval.json")
    if os.path.isfile(eval_path):
        try:
            with open(eval_path) as handle:
                metrics["eval"] = json.load(handle)
        except (ValueError, OSError):
            pass  # a broken eval.json is not worth failing an export over
    return {"run": os.fspath(run.path), "checkpoint_sha256": run.checkpoint_sha256,
            "data": run.config.get("data", "digits"), "epochs": run.meta.get("epoch", run.config.get("epochs")),
            "metrics": metrics}
