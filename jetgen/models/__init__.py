"""Torch modules for the model kinds, their likelihoods and latent families.

``build_model(config)`` is the one way to make a model from a run's ``config.json``; ``kind_class``
gives a kind's class (what it accepts and how it behaves). The tables below are derived from the
classes in jetgen.models.latent_models, so a new kind is a new class registered in ``_kinds``.
"""
from jetgen.spec import KINDS as MODEL_KINDS  # noqa: F401  (a bundle declares the kind it was trained as)


def _kinds():
    from jetgen.models.atlasnet import AtlasNet
    from jetgen.models.latent_models import CVAE, VAE, AutoDecoder, VariationalAutoDecoder

    return dict((cls.kind, cls) for cls in (VAE, CVAE, AutoDecoder, VariationalAutoDecoder, AtlasNet))


def kind_class(kind):
    """The model class of ``kind``; ValueError naming the known kinds otherwise."""
    kinds = _kinds()
    if kind not in kinds:
        raise ValueError("unknown model {!r}; choose one of: {}".format(kind, ", ".join(MODEL_KINDS)))
    return kinds[kind]


def build_model(config):
    """Build the torch module a config describes.

    Keys: model, arch, latent_dim, image_shape, num_classes, likelihood, sigma, hidden,
    channels (dcgan), family (vad), code_reg (ad), num_train (ad, vad).
    Raises ValueError naming the bad value.
    """
    cls = kind_class(config["model"])
    arch = config.get("arch") or cls.archs[0]
    if arch not in cls.archs:
        raise ValueError("architecture {!r} does not fit model {!r} (choose {})".format(
            arch, cls.kind, ", ".join(cls.archs)))
    return cls.from_config(config)
