"""The four model kinds behind one interface; each kind is a class that carries what the trainer,
evaluator and exporter need to know about it, so none of them compares kind names.

Every model has ``decode_logits(z, y)`` / ``decode(z, y)`` (mean image in [0, 1]) and
``terms(x, y, idx)`` returning per-example tensors the training loop combines:
``recon`` (B,) negative log-likelihood in nats, ``kl`` (B, D) KL per latent dimension,
``reg`` (B,) any other penalty, and ``z`` (B, D) the latent used.
``y`` is a float one-hot label (B, K) for conditional models and None otherwise; ``idx`` are the
training-example indices that auto-decoders use to look up their latent tables.

What a kind says about itself (class attributes and methods):
- ``kind``, ``archs`` (the first is the default), ``labelled`` (trains on labels), ``has_encoder``,
  ``variational`` (has a posterior q), ``families`` (latent families it accepts), ``from_config(config)``;
- ``table_parameters()``: per-example tables (trained at ``latent_lr``), ``table_statistics()``:
  (means, KL per dimension, posterior std or None) of those tables;
- ``train_latents(n, sample, seed)``: latents of the first n training examples (auto-decoders);
- ``manifest_prior()``: the prior a bundle declares (an auto-decoder's is fitted to its table);
- ``infer(x, y, mask, steps, lr, seed, init)``: latents for new data by test-time optimisation.
"""
import torch
from torch import nn

from jetgen.models import likelihoods
from jetgen.models.families import FAMILIES, Gaussian, get_family
from jetgen.models.inference import frozen, optimise
from jetgen.models.nets import ConvDecoder, ConvEncoder, DCGANDecoder, MLPDecoder, MLPEncoder


class LatentModel(nn.Module):
    kind = None
    archs = ()
    labelled = False
    has_encoder = False
    variational = True  # has a posterior q (an ELBO); a plain auto-decoder has point latents
    families = ("gaussian",)

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

    def manifest_prior(self):
        """The prior a bundle declares for this model (jetgen.spec's prior format)."""
        return self.prior_spec()

    @classmethod
    def common_config(cls, config):
        """Constructor arguments every kind reads from a run config."""
        return dict(likelihood=config.get("likelihood", "bernoulli"), sigma=config.get("sigma", 0.1))

    def table_parameters(self):
        """Per-example latent tables (auto-decoders), trained at their own learning rate."""
        return []

    def table_statistics(self):
        """(means (N, D), KL per dimension (N, D), posterior std (N, D) or None) of the latent table."""
        raise NotImplementedError("{} has no latent table".format(self.kind))

    def train_latents(self, n, sample=False, seed=0):
        """Latents of the first ``n`` training examples from the table; None for encoder models."""
        return None

    def infer(self, x, y=None, mask=None, steps=100, lr=1e-2, seed=0, init="auto"):
        """Latents z (B, D) explaining ``x`` with the weights frozen (see jetgen.models.inference)."""
        raise NotImplementedError

    def infer_params(self, x, mask=None, steps=100, lr=1e-2, seed=0):
        """Variational parameters fitted to ``x`` (kinds with a variational table only)."""
        raise ValueError("infer_params is for variational auto-decoders (vad) only")


class VAE(LatentModel):
    """Gaussian encoder q(z|x[,y]) = N(mu, diag exp(logvar)), standard-normal prior, decoder p(x|z[,y])."""
    kind = "vae"
    archs = ("mlp", "conv")
    has_encoder = True

    @classmethod
    def from_config(cls, config):
        return cls(tuple(config["image_shape"]), int(config["latent_dim"]), arch=config.get("arch") or cls.archs[0],
                   hidden=tuple(config.get("hidden", (500,))), **cls.common_config(config))

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

    def infer(self, x, y=None, mask=None, steps=100, lr=1e-2, seed=0, init="auto"):
        """MAP latents: Adam on nll(x | z) + |z|^2 / 2 from the encoder mean ("auto", "encoder") or zeros ("prior")."""
        if self.conditional and y is None:
            raise ValueError("a conditional model needs labels y to infer latents")
        x = x.detach()
        with frozen(self), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if init in ("auto", "encoder"):
                z0 = self.encode(x, y)[0]
            else:
                z0 = torch.zeros(x.shape[0], self.latent_dim, device=x.device)
            return optimise(z0, lambda z: self.nll(self.decode_logits(z, y), x, mask) + 0.5 * z.pow(2).sum(1),
                            steps, lr)


class CVAE(VAE):
    """VAE with a one-hot label concatenated to the encoder input and to the decoder input."""
    kind = "cvae"
    labelled = True

    @classmethod
    def from_config(cls, config):
        return cls(tuple(config["image_shape"]), int(config["latent_dim"]), num_classes=int(config["num_classes"]),
                   arch=config.get("arch") or cls.archs[0], hidden=tuple(config.get("hidden", (500,))),
                   **cls.common_config(config))

    def __init__(self, image_shape, latent_dim, num_classes, **kw):
        if num_classes < 2:
            raise ValueError("a conditional VAE needs labelled data with at least 2 classes")
        super().__init__(image_shape, latent_dim, num_classes=num_classes, **kw)


class AutoDecoder(LatentModel):
    """No encoder: a per-example latent table trained jointly with the decoder (DeepSDF-style code
    regularisation ``code_reg * |z|^2``). New data is encoded by optimising z with the decoder frozen."""
    kind = "ad"
    archs = ("dcgan", "mlp", "conv")
    variational = False

    @classmethod
    def from_config(cls, config):
        return cls(tuple(config["image_shape"]), int(config["latent_dim"]), int(config["num_train"]),
                   arch=config.get("arch") or cls.archs[0], channels=tuple(config.get("channels", (512, 256, 128))),
                   hidden=tuple(config.get("hidden", (500,))), code_reg=config.get("code_reg", 1e-4),
                   **cls.common_config(config))

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

    def table_parameters(self):
        return [self.latents.weight]

    def table_statistics(self):
        mu = self.latents.weight.detach().float().cpu()
        return mu, torch.zeros_like(mu), None

    def train_latents(self, n, sample=False, seed=0):
        return self.latents.weight[:n].detach()

    def manifest_prior(self):
        """A diagonal gaussian fitted to the latent table: where the training codes actually lie."""
        table = self.latents.weight.detach().double()
        std = table.std(0, unbiased=False).clamp_min(1e-6)
        return {"family": "gaussian", "params": {"mean": [float(v) for v in table.mean(0)],
                                                 "std": [float(v) for v in std]}}

    def infer(self, x, y=None, mask=None, steps=100, lr=1e-2, seed=0, init="auto"):
        """Adam on ``inference_loss`` from zeros (the prior mean); ``init="encoder"`` is refused."""
        if init == "encoder":
            raise ValueError("init='encoder' needs a model with an encoder (vae, cvae), not 'ad'")
        x = x.detach()
        with frozen(self), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            z0 = torch.zeros(x.shape[0], self.latent_dim, device=x.device)
            return optimise(z0, lambda z: self.inference_loss(z, x, mask), steps, lr)


class VariationalAutoDecoder(LatentModel):
    """Auto-decoder whose per-example entries are variational parameters of a family
    (gaussian, exponential, uniform), trained on the ELBO with reparameterised samples."""
    kind = "vad"
    archs = ("dcgan", "mlp", "conv")
    families = FAMILIES

    @classmethod
    def from_config(cls, config):
        return cls(tuple(config["image_shape"]), int(config["latent_dim"]), int(config["num_train"]),
                   family=config.get("family", "gaussian"), arch=config.get("arch") or cls.archs[0],
                   channels=tuple(config.get("channels", (512, 256, 128))), hidden=tuple(config.get("hidden", (500,))),
                   **cls.common_config(config))

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

    def table_parameters(self):
        return [self.params_table.weight]

    def table_statistics(self):
        params = self.params_table.weight.detach().float().cpu()
        sigma = self.family.sigma(params)
        return self.family.mean(params), self.family.kl(params), sigma

    def train_latents(self, n, sample=False, seed=0):
        params = self.params_table.weight[:n].detach()
        if not sample:
            return self.family.mean(params)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return self.family.rsample(params)

    def infer_params(self, x, mask=None, steps=100, lr=1e-2, seed=0):
        """The family's variational parameters (B, P*D) fitted to ``x`` by minimising the negative ELBO
        with the decoder frozen, from the family's ``init_params``."""
        x = x.detach()
        with frozen(self), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            init = self.family.init_params(x.shape[0], self.latent_dim, torch.Generator().manual_seed(seed))
            return optimise(init.to(x.device), lambda p: self.inference_loss(p, x, mask), steps, lr)

    def infer(self, x, y=None, mask=None, steps=100, lr=1e-2, seed=0, init="auto"):
        """The family mean of the fitted variational parameters."""
        if init == "encoder":
            raise ValueError("init='encoder' needs a model with an encoder (vae, cvae), not 'vad'")
        return self.family.mean(self.infer_params(x, mask=mask, steps=steps, lr=lr, seed=seed))


def _decoder(arch, image_shape, latent_dim, channels, hidden):
    if arch == "dcgan":
        return DCGANDecoder(image_shape, latent_dim, tuple(channels))
    if arch == "mlp":
        return MLPDecoder(image_shape, latent_dim, tuple(hidden))
    if arch == "conv":
        return ConvDecoder(image_shape, latent_dim)
    raise ValueError("unknown decoder architecture {!r} (dcgan, mlp or conv)".format(arch))
