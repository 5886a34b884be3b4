"""A conditional VAE as research repositories write it (written for jetgen's tests): encode and
decode each take one tensor, the label already concatenated to the input."""
import torch
from torch import nn
from torch.nn import functional as F


class CVAE(nn.Module):
    def __init__(self, feature_size=784, latent_size=8, class_size=10, hidden=64):
        super(CVAE, self).__init__()
        self.feature_size, self.class_size = feature_size, class_size
        self.fc1 = nn.Linear(feature_size + class_size, hidden)
        self.fc21 = nn.Linear(hidden, latent_size)
        self.fc22 = nn.Linear(hidden, latent_size)
        self.fc3 = nn.Linear(latent_size + class_size, hidden)
        self.fc4 = nn.Linear(hidden, feature_size)

    def encode(self, inputs):  # inputs: cat([x.view(-1, 784), c], 1)
        h1 = F.elu(self.fc1(inputs))
        return self.fc21(h1), self.fc22(h1)

    def decode(self, inputs):  # inputs: cat([z, c], 1)
        h3 = F.elu(self.fc3(inputs))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x, c):
        mu, logvar = self.encode(torch.cat([x.view(-1, self.feature_size), c], 1))
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(torch.cat([z, c], 1)), mu, logvar
