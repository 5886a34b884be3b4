"""Modalities: what kind of data a model makes (images; point clouds and meshes), one folder each.

``jetgen.spec.MODALITIES`` names them and says which model kinds belong to each (a manifest's
``model.modality``); this table says where each layer's part of a modality lives, as import paths that
are resolved on first use, so that this package imports nothing heavy and no layer imports another
modality's code to ask "which kind is this?". Generic layers (the runtime's ``Model.open``, serve, the
CLI, bench, export) look a part up here and call it:

    part("points", "serve").sample(model, n, temperature, seed)

Each modality's folder holds files of the same names: ``codec.py`` (its data I/O), ``model.py`` (its
runtime model class), ``serve.py`` (its half of the JSON API), ``cli.py`` (its input and output handling
in ``jetgen sample/complete/...``), ``bench.py`` (its bench inputs): device side, numpy and the standard
library, Python 3.6; and ``export.py`` (its export settings, example inputs and feeds) and ``train.py`` (its
data sets, options and training hooks, asked by jetgen.train instead of "is this 3D"): desktop side, torch. A new modality is its folder, one row here and its name in ``jetgen.spec.MODALITIES``.
Python 3.6 compatible, standard library only.
"""
import importlib

from jetgen import spec
from jetgen.errors import JetgenError

# modality -> layer -> "module" or "module:attribute"; rows have the same layers (never looked up by position)
# (None: the generic layer's own code handles that layer for this modality; the image halves of serve, the
# CLI, bench and export still live in those generic modules)
MODALITIES = {
    "image": {
        "codec": "jetgen.modalities.image.codec",
        "runtime_model": "jetgen.runtime.model:Model",
        "serve": None,
        "cli": None,
        "bench": None,
        "export": None,
        "train": "jetgen.modalities.image.train",
    },
    "points": {
        "codec": "jetgen.modalities.points.codec",
        "runtime_model": "jetgen.modalities.points.model:PointModel",
        "serve": "jetgen.modalities.points.serve",
        "cli": "jetgen.modalities.points.cli",
        "bench": "jetgen.modalities.points.bench",
        "export": "jetgen.modalities.points.export",
        "train": "jetgen.modalities.points.train",
    },
}
DESKTOP_LAYERS = ("export", "train")  # parts that import torch; every other part runs on the device


def names():
    """The modality names, in spec's order."""
    return [m for m in spec.MODALITIES if m in MODALITIES]


def part(modality, layer):
    """The module (or attribute) holding ``layer``'s part of ``modality``, imported on first use; None when
    the generic layer handles ``modality`` itself (a None in the table).

    JetgenError for an unknown modality; KeyError for a layer no row has (a programming error)."""
    if modality not in MODALITIES:
        raise JetgenError("Unknown modality {!r}; this jetgen knows {}.".format(modality, ", ".join(names())))
    ref = MODALITIES[modality][layer]
    if ref is None:
        return None
    module, _, attr = ref.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attr) if attr else loaded


def of_kind(kind):
    """The modality of a model kind (jetgen.spec.kind_modality)."""
    return spec.kind_modality(kind)


def of_data(name):
    """The modality whose training part loads the data set ``name`` (``--data``), or None for an unknown name.
    Imports the training parts (desktop side, torch)."""
    for modality in names():
        if name in part(modality, "train").DATASETS:
            return modality
    return None


def datasets():
    """Every ``--data`` name of every modality's training part, in modality order (desktop side, torch)."""
    return tuple(name for modality in names() for name in part(modality, "train").DATASETS)


def of_model(model):
    """The modality of an open runtime model (its bundle's checked ``model.modality``)."""
    return model.bundle.model["modality"]


def device_modules():
    """Import paths of every device-side module of the modalities (for the torch-free and Python 3.6
    checks): each modality folder's modules but its desktop parts (DESKTOP_LAYERS), so a helper module
    added beside the parts is checked too."""
    import os

    out = ["jetgen.modalities"]
    here = os.path.dirname(os.path.abspath(__file__))
    for modality in names():
        package = "jetgen.modalities." + modality
        desktop = set((MODALITIES[modality][layer] or "").partition(":")[0] for layer in DESKTOP_LAYERS)
        out.append(package)
        for name in sorted(os.listdir(os.path.join(here, modality))):
            module = package + "." + name[:-3]
            if name.endswith(".py") and name != "__init__.py" and module not in desktop:
                out.append(module)
    return out
