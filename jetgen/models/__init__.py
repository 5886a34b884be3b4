"""Torch modules for the model kinds, their likelihoods and latent families.

``build_model(config)`` is the one way to make a model from a run's ``config.json``.
"""
MODEL_KINDS = ("vae", "cvae", "ad", "vad")
DEFAULT_ARCH = {"vae": "mlp", "cvae": "mlp", "ad": "dcgan", "vad": "dcgan"}
ARCHS = {"vae": ("mlp", "conv"), "cvae": ("mlp", "conv"), "ad": ("dcgan", "mlp", "conv"),
         "vad": ("dcgan", "mlp", "conv")}


def build_model(config):
    """Build the torch module a config describes.

    Keys: model, arch, latent_dim, image_shape, num_classes, likelihood, sigma, hidden,
    channels (dcgan), family (vad), code_reg (ad), num_train (ad, vad).
    Raises ValueError naming the bad value.
    """
    from jetgen.models.latent_models import CVAE, VAE, AutoDecoder, VariationalAutoDecoder

    kind = config["model"]
    if kind not in MODEL_KINDS:
        raise ValueError("unknown model {!r}; choose one of: {}".format(kind, ", ".join(MODEL_KINDS)))
    arch = config.get("arch") or DEFAULT_ARCH[kind]
    if arch not in ARCHS[kind]:
        raise ValueError("architecture {!r} does not fit model {!r} (choose {})".format(
            arch, kind, ", ".join(ARCHS[kind])))
    common = dict(likelihood=config.get("likelihood", "bernoulli"), sigma=config.get("sigma", 0.1))
    shape = tuple(config["image_shape"])
    dim = int(config["latent_dim"])
    hidden = tuple(config.get("hidden", (500,)))
    if kind == "vae":
        return VAE(shape, dim, arch=arch, hidden=hidden, **common)
    if kind == "cvae":
        return CVAE(shape, dim, num_classes=int(config["num_classes"]), arch=arch, hidden=hidden, **common)
    channels = tuple(config.get("channels", (512, 256, 128)))
    if kind == "ad":
        return AutoDecoder(shape, dim, int(config["num_train"]), arch=arch, channels=channels, hidden=hidden,
                           code_reg=config.get("code_reg", 1e-4), **common)
    return VariationalAutoDecoder(shape, dim, int(config["num_train"]), family=config.get("family", "gaussian"),
                                  arch=arch, channels=channels, hidden=hidden, **common)
