"""The four model kinds behind one interface.

Every model has ``decode_logits(z, y)`` / ``decode(z, y)`` (mean image in [0, 1]) and
``terms(x, y, idx)`` returning per-example tensors the training loop combines:
``recon`` (B,) negative log-likelihood in nats, ``kl`` (B, D) KL per latent dimension,
``reg`` (B,) any other penalty, and ``z`` (B, D) the latent used.
``y`` is a float one-hot label (B, K) for conditional models and None otherwise; ``idx`` are the
training-example indices that auto-decoders use to look up their latent tables.
"""
import torch
from torch import nn

from jetgen.models import likelihoods
from jetgen.models.families import Gaussian, get_family
from jetgen.models.nets import ConvDecoder, ConvEncoder, DCGANDecoder, MLPDecoder, MLPEncoder


class LatentModel(nn.Module):
    kind = None
    has_encoder = False

    def __init__(self, image_shape, latent_dim, likelihood="bernoulli", sigma=0.1, num_classes=0,
                 family="gaussian"):
        super().__init__()
        if likelihood not in likelihoods.LIKELIHOODS:
            raise ValueError("unknown likelihood {!r}".format(likelihood))
        self.image_shape = tuple(image_shape)
        self.latent_dim = int(latent_dim)
        self.likelihood = likelihood
        self.sigma = float(sigma)
        self.num_classes = int(num_classes)
        self.family = get_family(family)

    @property
    def conditional(self):
        return self.num_classes > 0

    def decode_logits(self, z, y=None):
        return self.decoder(z, y if self.conditional else None)

    def decode(self, z, y=None):
        return torch.sigmoid(self.decode_logits(z, y))

    def nll(self, logits, x, mask=None):
        return likelihoods.nll(self.likelihood, logits, x, mask, self.sigma)

    def prior_sample(self, n, generator=None):
        return self.family.prior_sample(n, self.latent_dim, generator=generator)

    def prior_spec(self):
        return self.family.prior_spec(self.latent_dim)


class VAE(LatentModel):
    """Gaussian encoder q(z|x[,y]) = N(mu, diag exp(logvar)), standard-normal prior, decoder p(x|z[,y])."""
    kind = "vae"
    has_encoder = True

    def __init__(self, image_shape, latent_dim, arch="mlp", hidden=(500,), num_classes=0, **kw):
        super().__init__(image_shape, latent_dim, num_classes=num_classes, family="gaussian", **kw)
        if arch == "mlp":
            self.encoder = MLPEncoder(image_shape, latent_dim, hidden, num_classes)
            self.decoder = MLPDecoder(image_shape, latent_dim, hidden, num_classes)
        elif arch == "conv":
            self.encoder = ConvEncoder(image_shape, latent_dim, num_classes=num_classes)
            self.decoder = ConvDecoder(image_shape, latent_dim, num_classes=num_classes)
        else:
            raise ValueError("unknown architecture {!r} for a VAE (mlp or conv)".format(arch))

    def encode(self, x, y=None):
        return self.encoder(x, y if self.conditional else None)

    def terms(self, x, y=None, idx=None):
        mu, logvar = self.encode(x, y)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        logits = self.decode_logits(z, y)
        return {"recon": self.nll(logits, x), "kl": Gaussian.kl(torch.cat([mu, logvar], 1)),
                "reg": torch.zeros_like(mu[:, 0]), "z": z, "mu": mu, "logvar": logvar}


class CVAE(VAE):
    """VAE with a one-hot label concatenated to the encoder input and to the decoder input."""
    kind = "cvae"

    def __init__(self, image_shape, latent_dim, num_classes, **kw):
        if num_classes < 2:
            raise ValueError("a conditional VAE needs labelled data with at least 2 classes")
        super().__init__(image_shape, latent_dim, num_classes=num_classes, **kw)


class AutoDecoder(LatentModel):
    """No encoder: a per-example latent table trained jointly with the decoder (DeepSDF-style code
    regularisation ``code_reg * |z|^2``). New data is encoded by optimising z with the decoder frozen."""
    kind = "ad"

    def __init__(self, image_shape, latent_dim, num_train, arch="dcgan", channels=(512, 256, 128),
                 hidden=(500,), code_reg=1e-4, **kw):
        super().__init__(image_shape, latent_dim, family="gaussian", **kw)
        self.decoder = _decoder(arch, image_shape, latent_dim, channels, hidden)
        self.code_reg = float(code_reg)
        self.latents = nn.Embedding(num_train, latent_dim)
        nn.init.normal_(self.latents.weight, 0.0, 0.01)

    def terms(self, x, y=None, idx=None):
        z = self.latents(idx)
        return {"recon": self.nll(self.decode_logits(z), x), "kl": torch.zeros_like(z),
                "reg": self.code_reg * z.pow(2).sum(1), "z": z}

    def inference_loss(self, z, x, mask=None):
        """What test-time optimisation minimises per example, latent z (B, D)."""
        return self.nll(self.decode_logits(z), x, mask) + self.code_reg * z.pow(2).sum(1)


class VariationalAutoDecoder(LatentModel):
    """Auto-decoder whose per-example entries are variational parameters of a family
    (gaussian, exponential, uniform), trained on the ELBO with reparameterised samples."""
    kind = "vad"

    def __init__(self, image_shape, latent_dim, num_train, family="gaussian", arch="dcgan",
                 channels=(512, 256, 128), hidden=(500,), **kw):
        super().__init__(image_shape, latent_dim, family=family, **kw)
        self.decoder = _decoder(arch, image_shape, latent_dim, channels, hidden)
        init = self.family.init_params(num_train, latent_dim, torch.Generator().manual_seed(0))
        self.params_table = nn.Embedding(num_train, init.shape[1])
        with torch.no_grad():
            self.params_table.weight.copy_(init)

    def terms(self, x, y=None, idx=None):
        params = self.params_table(idx)
        z = self.family.rsample(params)
        return {"recon": self.nll(self.decode_logits(z), x), "kl": self.family.kl(params),
                "reg": torch.zeros_like(z[:, 0]), "z": z, "mean": self.family.mean(params)}

    def inference_loss(self, params, x, mask=None):
        """Negative ELBO per example for variational parameters ``params`` (B, P*D)."""
        z = self.family.rsample(params)
        return self.nll(self.decode_logits(z), x, mask) + self.family.kl(params).sum(1)


def _decoder(arch, image_shape, latent_dim, channels, hidden):
    if arch == "dcgan":
        return DCGANDecoder(image_shape, latent_dim, tuple(channels))
    if arch == "mlp":
        return MLPDecoder(image_shape, latent_dim, tuple(hidden))
    if arch == "conv":
        return ConvDecoder(image_shape, latent_dim)
    raise ValueError("unknown decoder architecture {!r} (dcgan, mlp or conv)".format(arch))
