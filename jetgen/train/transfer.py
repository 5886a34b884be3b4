"""``--init-from RUN`` (or ``base``): start a new run from the weights of a run the user named (issue 11, transfer).

Only the run named is read, and only after checking that it is a jetgen run of the same model kind
whose checkpoint matches its sha256 and belongs to it (``rundir.read_weights``). What was copied goes
into the new run's config.json as ``init_from`` (the exporter copies it into bundle provenance):
``{"run": <absolute path>, "checkpoint_sha256": <hex>, "loaded": n, "partial": n, "skipped": n, "new": n}``.
"""
import os

from jetgen.errors import JetgenError
from jetgen.train import rundir

NAMES_SHOWN = 8  # tensor names listed per category in the log line
BASE = "base"  # --init-from base: the base model jetgen builds itself (a run directory named so: ./base)


def init_from_run(model, source, run_dir, log, quiet=False, device="auto"):
    """Copy the fitting tensors of the run ``source`` into ``model`` (``jetgen.models.atlasnet.init_from``),
    tell ``log`` the loaded / partial / skipped / new counts with their names, and return the record for
    config.json. JetgenError when ``source`` is not a trained jetgen run of ``model``'s kind, its
    checkpoint is corrupt or foreign, or it is the run directory being created. ``source`` "base" names
    the base model (``jetgen.train.base_model``), built first when it is not cached; the record then
    also holds ``base``: its key and the parameters it was built from."""
    from jetgen.models.atlasnet import init_from

    base = None
    if source == BASE:
        from jetgen.train.base_model import base_key, ensure_base

        source = ensure_base(model.settings, log, quiet=quiet, device=device)
        base = {"key": base_key(model.settings)[0], "params": base_key(model.settings)[1]}
    if os.path.abspath(source) == os.path.abspath(run_dir):
        raise JetgenError("--init-from {} names the run directory being created; name another run.".format(source))
    config = rundir.read_config(source)
    if config["model"] != model.kind:
        raise JetgenError("--init-from {} is a {} run; a {} run can only start from another {} run.".format(
            source, config["model"], model.kind, model.kind))
    state, meta = rundir.read_weights(source, config=config)
    report = init_from(model, state)
    record = {"run": os.path.abspath(source), "checkpoint_sha256": meta["model_sha256"]}
    record.update((key, len(report[key])) for key in ("loaded", "partial", "skipped", "new"))
    if base is not None:
        record["base"] = base
    parts = []
    for key in ("partial", "skipped", "new", "unused"):
        names = report[key]
        if names:
            parts.append("{}: {}{}".format(key, ", ".join(names[:NAMES_SHOWN]),
                                           " and {} more".format(len(names) - NAMES_SHOWN) if len(names) > NAMES_SHOWN
                                           else ""))
    log("Started from run {} ({} {}, epoch {}, checkpoint sha256 {}): {} tensors loaded, {} partial, {} skipped "
        "(other shape), {} new{}.".format(record["run"], config["model"], config.get("variant", ""), meta["epoch"],
                                          record["checkpoint_sha256"][:12], record["loaded"], record["partial"],
                                          record["skipped"], record["new"],
                                          "; " + "; ".join(parts) if parts else ""))
    return record
