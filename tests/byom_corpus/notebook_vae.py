"""A convolutional VAE from a notebook (written for jetgen's tests): the batch size comes from Python
ints (len(x), x.size(0), x.shape[0]), which a TorchScript trace bakes into the graph."""
import torch
from torch import nn
from torch.nn import functional as F


class NotebookVAE(nn.Module):
    def __init__(self, latent=8):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 4, 2, 1)
        self.fc = nn.Linear(8 * 14 * 14, 2 * latent)
        self.fc_dec = nn.Linear(latent, 8 * 7 * 7)
        self.deconv1 = nn.ConvTranspose2d(8, 8, 4, 2, 1)
        self.deconv2 = nn.ConvTranspose2d(8, 1, 4, 2, 1)

    def encode(self, x):
        h = x.reshape(len(x), 1, 28, 28)
        h = F.relu(self.conv(h))
        h = h.view(h.shape[0], -1)
        mu, logvar = self.fc(h).chunk(2, dim=1)
        return mu.reshape(x.size(0), -1), logvar

    def decode(self, z):
        h = F.relu(self.fc_dec(z)).view(len(z), 8, 7, 7)
        return self.deconv2(F.relu(self.deconv1(h)))  # logits


class FixedBatchVAE(NotebookVAE):
    """A decoder that really fixes the batch: a view to a constant batch of 3 (a bug to be named)."""

    def decode(self, z):
        h = F.relu(self.fc_dec(z)).view(3, 8, 7, 7)
        return self.deconv2(F.relu(self.deconv1(h)))
