"""``--init-from base``: a 3D base model jetgen trains itself on its procedural shapes, once, then reuses.

The base run is an ordinary run directory under ``$JETGEN_CACHE/base/`` (see
``jetgen.train.shapes.cache_dir``), named by a hash of the generator's parameters (``BASE_DATA`` and the
generator version) and the model's configuration (variant, latent size, patches, widths, point counts),
so another configuration, or a changed generator, builds another base. Nothing is downloaded. The first
build says what it does and how long it should take (the trainer's first line), and shows its epochs.
"""
import hashlib
import json
import os
import shutil
import uuid

from jetgen.errors import JetgenError
from jetgen.train import rundir

BASE_NAME = "base"
# the procedural set the base trains on: every class, 100 + 10 shapes each
BASE_DATA = {"shape_classes": ["sword", "plane", "chair", "table", "lamp", "mug"], "shapes_per_class": 100,
             "test_shapes_per_class": 10, "points": 2500, "seed": 0}
MODEL_KEYS = ("variant", "latent_dim", "patches", "hidden", "layers", "train_points", "encoder_points", "grid")
BASE_VERSION = 1  # bump when the base's training recipe changes


def base_key(settings, data=None):
    """16 hex digits naming the base for model ``settings`` (a dict holding MODEL_KEYS) and base ``data``."""
    from jetgen.train.shapes import GENERATOR_VERSION

    params = {"version": BASE_VERSION, "generator": GENERATOR_VERSION, "data": data or BASE_DATA,
              "model": {k: settings[k] for k in MODEL_KEYS}}
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode("utf-8")).hexdigest()[:16], params


def base_dir(settings, data=None):
    from jetgen.train.shapes import cache_dir

    key, _ = base_key(settings, data)
    return os.path.join(cache_dir(), BASE_NAME, "atlasnet-{}".format(key))


def _complete(run):
    try:
        return bool(rundir.read_meta(run).get("complete"))
    except (JetgenError, OSError, ValueError):
        return False


def ensure_base(settings, log, quiet=False, device="auto", data=None):
    """The run directory of the base model for model ``settings``: the cached one when complete, else
    trained now (into a temporary directory beside it, then moved into place). ``log`` hears what is
    built and where. JetgenError when it cannot be built (the trainer's errors) or stored."""
    from jetgen.train.trainer import train

    data = dict(data or BASE_DATA)
    target = base_dir(settings, data)
    if _complete(target):
        log("Using the base model {} (built earlier; delete it to build again).".format(target))
        return target
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise JetgenError("The base model {} is not built yet; build it once with a single process (the same "
                          "jetgen train command without torchrun), then start the distributed run.".format(target))
    n_shapes = len(data["shape_classes"]) * data["shapes_per_class"]
    log("Building the base model once: atlasnet {} on jetgen's procedural shapes ({} classes, {} training shapes); "
        "it is cached in {} for later runs with this configuration.".format(
            settings["variant"], len(data["shape_classes"]), n_shapes, target))
    partial = "{}.partial-{}".format(target, uuid.uuid4().hex[:8])
    options = {k: settings[k] for k in MODEL_KEYS}
    options.update(model="atlasnet", data="shapes", out=partial, quiet=quiet, device=device, **data)
    try:
        train(options)
        if os.path.isdir(target):  # an unfinished or broken earlier build
            shutil.rmtree(target)
        os.replace(partial, target)
    except OSError as err:
        raise JetgenError("Cannot store the base model in {} ({}); set JETGEN_CACHE to a writable directory.".format(
            target, err))
    finally:
        if os.path.isdir(partial):
            shutil.rmtree(partial, ignore_errors=True)
    return target
