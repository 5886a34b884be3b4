"""Old import paths of modules that moved into jetgen.modalities (issue 17), kept working: importing an
old name gives the moved module itself (the same object, so every attribute, private ones included, and
monkeypatching behave as before). The README's ``from jetgen.runtime.shapes import cut_by_plane`` is one.
Standard library only; Python 3.6 compatible.
"""
import importlib
import importlib.abc
import importlib.util
import sys

# old module name -> where it lives now
MOVED = {
    "jetgen.runtime.images": "jetgen.modalities.image.codec",
    "jetgen.runtime.shapes": "jetgen.modalities.points.codec",
    "jetgen.runtime.points": "jetgen.modalities.points.model",
    "jetgen.serve.shapes_api": "jetgen.modalities.points.serve",
    "jetgen.cli.clouds": "jetgen.modalities.points.cli",
    "jetgen.export.points": "jetgen.modalities.points.export",
    "jetgen.runtime.depth": "jetgen.modalities.points.depth",
    "jetgen.runtime.pose": "jetgen.modalities.points.pose",
    "jetgen.runtime.raster": "jetgen.modalities.points.raster",
}


class MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """A meta path finder and loader for the names in MOVED: the old name's module is the new module."""

    def find_spec(self, name, path=None, target=None):
        if name not in MOVED:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        pass  # the moved module ran when it was imported under its own name


def install():
    """Put one MovedFinder on sys.meta_path (once)."""
    if not any(isinstance(f, MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedFinder())
