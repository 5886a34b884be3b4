"""A VAE in the style of pythae (written for jetgen's tests): encoder and decoder are separate
modules returning a dict-like ``ModelOutput``, the model's forward returns one too."""
from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class ModelOutput(OrderedDict):
    """A dict whose entries are also attributes (as pythae.models.base.base_utils.ModelOutput)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)


class BaseEncoder(nn.Module):
    def forward(self, x):
        raise NotImplementedError()


class BaseDecoder(nn.Module):
    def forward(self, z):
        raise NotImplementedError()


class Encoder_VAE_MLP(BaseEncoder):
    def __init__(self, input_dim=(1, 28, 28), latent_dim=8, hidden=64):
        BaseEncoder.__init__(self)
        self.input_dim = input_dim
        self.layers = nn.Sequential(nn.Linear(int(np.prod(input_dim)), hidden), nn.ReLU())
        self.embedding = nn.Linear(hidden, latent_dim)
        self.log_var = nn.Linear(hidden, latent_dim)

    def forward(self, x):
        out = self.layers(x.reshape(-1, int(np.prod(self.input_dim))))
        return ModelOutput(embedding=self.embedding(out), log_covariance=self.log_var(out))


class Decoder_AE_MLP(BaseDecoder):
    def __init__(self, input_dim=(1, 28, 28), latent_dim=8, hidden=64):
        BaseDecoder.__init__(self)
        self.input_dim = input_dim
        self.layers = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(),
                                    nn.Linear(hidden, int(np.prod(input_dim))), nn.Sigmoid())

    def forward(self, z):
        out = self.layers(z)
        return ModelOutput(reconstruction=out.reshape((z.shape[0],) + self.input_dim))


class VAE(nn.Module):
    """encoder and decoder as attributes; forward(inputs) returns a ModelOutput with the loss."""

    def __init__(self, latent_dim=8):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = Encoder_VAE_MLP(latent_dim=latent_dim)
        self.decoder = Decoder_AE_MLP(latent_dim=latent_dim)

    def forward(self, inputs):
        x = inputs["data"]
        enc = self.encoder(x)
        mu, log_var = enc.embedding, enc.log_covariance
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        recon_x = self.decoder(z)["reconstruction"]
        recon = F.binary_cross_entropy(recon_x.reshape(len(x), -1), x.reshape(len(x), -1), reduction="none").sum(-1)
        kld = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp(), dim=-1)
        return ModelOutput(loss=(recon + kld).mean(), recon_x=recon_x, z=z)


def build():
    """What a user's `--module pythae_style.py:build` names: the model, built without arguments."""
    return VAE()
