"""jetgen's own run directories -> bundles: ``export_run`` reads a run (its model, config, data set and
provenance) into ``export_model``'s arguments, beside ``from_files.py`` (a user's module files). The
pipeline itself is jetgen.export.exporter.write_bundle; a modality with its own run export
(jetgen.modalities: points) takes its runs.

    manifest = export_run("runs/cvae", "nano", "digits-cvae.jetgen")
"""
import os

import torch

from jetgen import modalities, spec
from jetgen.errors import JetgenError
from jetgen.export.api import export_model
from jetgen.export.exporter import MAX_BATCH, POINTS_MAX_BATCH
from jetgen.export.feeds import ExportData
from jetgen.export.manifest import run_provenance
from jetgen.runtime.targets import get_target
from jetgen.train.data import load_dataset
from jetgen.train.rundir import load_run


def export_run(run_dir, target, out, precision="fp32", calib_samples=500, max_batch=None, force=False, log=None):
    """Export the run at ``run_dir`` for ``target`` into the bundle directory ``out``; return the manifest.

    ``precision``: fp32, fp16 (fp16 arithmetic, float32 interfaces) or int8 (static QDQ calibrated on
    ``calib_samples`` training examples; the latent gradient stays fp16). ``max_batch``: the largest
    batch the graphs declare (default 1024; point clouds 16, whose gradient graph at batch 1024 would
    need tens of GB). ``log`` is an optional
    callable taking progress sentences. Raises JetgenError for an unknown target or precision, int8 on
    a board without INT8, an existing ``out`` without ``force``, a missing or corrupt run, a model the
    ONNX exporters cannot translate, or fp32 parity worse than PARITY_TOL.
    """
    get_target(target)
    kind = _run_kind(run_dir)
    half = modalities.part(spec.kind_modality(kind), "export") if kind in spec.KINDS else None
    if half is not None:  # the modality's own run export (jetgen.modalities.points.export)
        return half.export_run(load_run(run_dir), target, out, precision=precision,
                                 calib_samples=calib_samples, max_batch=max_batch or POINTS_MAX_BATCH, force=force,
                                 log=log)
    max_batch = max_batch or MAX_BATCH
    run = load_run(run_dir)
    model = run.model.eval()
    config = run.config
    likelihood = ("gaussian", model.sigma) if model.likelihood == "gaussian" else model.likelihood
    return export_model(
        model.decode_logits, model.latent_dim, out, target, encoder=model.encode if model.has_encoder else None,
        output="logits", output_shape=model.image_shape, likelihood=likelihood, prior=model.manifest_prior(),
        labels=_labels(config, model) or None, data=_run_data(run), precision=precision, max_batch=max_batch,
        metadata=run_provenance(run), force=force, log=log, calib_samples=calib_samples, kind=model.kind,
        arch=config.get("arch") or model.archs[0])


def _run_kind(run_dir):
    """The ``model`` a run's config.json names (None when it cannot be read: load_run says why)."""
    path = os.path.join(os.fspath(run_dir), "config.json")
    try:
        config = spec.load_json(path, "run configuration") if os.path.isfile(path) else None
    except JetgenError:
        return None
    return config.get("model") if isinstance(config, dict) else None


def _run_data(run):
    """The run's data set as ExportData: test split for parity and quality, training split for int8
    calibration (with an auto-decoder's table latents), the model's own test-time inference."""
    config, model = run.config, run.model
    name, shape = config.get("data", "digits"), tuple(config["image_shape"])
    try:
        # the same arguments as training and eval, so a folder data set splits the same way
        data = load_dataset(name, config.get("data_dir"), False, int(config.get("image_size", shape[-1])),
                            seed=int(config.get("seed", 0)))
    except JetgenError as err:
        raise JetgenError("Export measures parity and calibrates on the run's data set, which cannot be "
                          "loaded: {}".format(err))
    if tuple(data.image_shape) != shape:
        raise JetgenError("The {} data set has images of shape {} but the run's model makes {}; export needs "
                          "the data the run was trained on.".format(name, data.image_shape, shape))
    with torch.no_grad():
        table = model.train_latents(len(data.train_x))

    def infer(x, y):
        from jetgen.models.inference import infer_latents
        from jetgen.train.evaluate import INFERENCE_LR, INFERENCE_STEPS

        y = None if y is None else torch.from_numpy(y)
        z = infer_latents(model, torch.from_numpy(x), y, steps=INFERENCE_STEPS, lr=INFERENCE_LR, seed=0)
        return z.detach().numpy()

    return ExportData(data.test_x.numpy(), data.test_y.numpy(), data.train_x.numpy(), data.train_y.numpy(),
                      None if table is None else table.numpy(), name=data.name, infer=infer)


def _labels(config, model):
    if not model.conditional:
        return []
    classes = config.get("classes")
    if isinstance(classes, list) and len(classes) == model.num_classes:
        return [str(c) for c in classes]
    return [str(i) for i in range(model.num_classes)]
