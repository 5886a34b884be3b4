"""Export to bundles (docs/bundle.md). The public API, imported lazily so that ``jetgen.export.check``
does not pull in torch:

    from jetgen.export import export_model, ExportData, Likelihood
"""

_PUBLIC = {
    "export_model": "jetgen.export.api",
    "ExportData": "jetgen.export.feeds",
    "Likelihood": "jetgen.export.losses",
    "Bernoulli": "jetgen.export.losses",
    "Gaussian": "jetgen.export.losses",
    "Chamfer": "jetgen.export.losses",
    "export_run": "jetgen.export.from_run",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError("module 'jetgen.export' has no attribute {!r}".format(name))
    import importlib

    return getattr(importlib.import_module(_PUBLIC[name]), name)
