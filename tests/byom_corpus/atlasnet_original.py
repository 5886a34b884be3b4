"""Point-cloud auto-encoders in the style of AtlasNet's original model/ code (written for jetgen's
tests): a channel-first PointNet encoder (B, 3, N) -> one latent tensor (a deterministic AE, no
log-variance), patch decoders made of Conv1d layers over a per-patch 2D template that is cached on a
plain Python object, ``Variable(...)`` wrappers, and a BatchNorm1d after a residual add."""
import torch
from torch import nn
from torch.autograd import Variable
from torch.nn import functional as F


class SquareTemplate(object):
    """A unit square's regular grid, computed once and cached (not a module: no buffers)."""

    def __init__(self):
        self.regular_num_points = 0

    def get_regular_points(self, npoints, device="cpu"):
        if self.regular_num_points != npoints:
            side = int(round(npoints ** 0.5))
            t = torch.linspace(0.0, 1.0, side)
            u, v = torch.meshgrid(t, t, indexing="ij")
            self.vertex = torch.stack([u.reshape(-1), v.reshape(-1)], 0)  # (2, side*side)
            self.regular_num_points = npoints
        return Variable(self.vertex.to(device))


class PointNetfeat(nn.Module):
    def __init__(self, bottleneck=16, width=32):
        super().__init__()
        self.conv1 = nn.Conv1d(3, width, 1)
        self.conv2 = nn.Conv1d(width, width, 1)
        self.bn1 = nn.BatchNorm1d(width)
        self.bn2 = nn.BatchNorm1d(width)  # after the residual add: not foldable
        self.lin = nn.Linear(width, bottleneck)

    def forward(self, x):  # x: (B, 3, N), channel first
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h) + h))
        h, _ = torch.max(h, 2)
        return self.lin(h)


class PatchDeformation(nn.Module):
    def __init__(self, bottleneck=16, width=32):
        super().__init__()
        self.conv1 = nn.Conv1d(2 + bottleneck, width, 1)
        self.conv2 = nn.Conv1d(width, width, 1)
        self.bn1 = nn.BatchNorm1d(width)
        self.last = nn.Conv1d(width, 3, 1)

    def forward(self, uv, latent):  # uv (B, 2, P), latent (B, D, 1)
        x = torch.cat([uv, latent.expand(-1, -1, uv.size(2))], 1)
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.conv2(h) + h)
        return torch.tanh(self.last(h))  # (B, 3, P)


class AtlasNetAE(nn.Module):
    """encode(x (B, 3, N)) -> latent (B, D); decode(latent) -> (B, K, 3, P) (K patches of P points)."""

    def __init__(self, patches=2, points_per_patch=16, bottleneck=16):
        super().__init__()
        self.nb_primitives, self.P = patches, points_per_patch
        self.encoder = PointNetfeat(bottleneck)
        self.decoder = nn.ModuleList([PatchDeformation(bottleneck) for _ in range(patches)])
        self.template = [SquareTemplate() for _ in range(patches)]

    def encode(self, x):
        return self.encoder(x)

    def decode(self, latent):
        outs = []
        for i in range(self.nb_primitives):
            uv = self.template[i].get_regular_points(self.P, latent.device)
            uv = uv.unsqueeze(0).expand(latent.size(0), -1, -1)
            outs.append(self.decoder[i](uv, latent.unsqueeze(2)).unsqueeze(1))
        return torch.cat(outs, 1)  # (B, K, 3, P)

    def forward(self, x):
        return self.decode(self.encode(x))


class AtlasNetFlat(AtlasNetAE):
    """The same model whose decoder concatenates the patches: (B, 3, K*P)."""

    def decode(self, latent):
        out = AtlasNetAE.decode(self, latent)
        return out.transpose(1, 2).reshape(latent.size(0), 3, -1)


def chamfer(a, b):
    """Symmetric Chamfer between clouds (B, N, 3) and (B, M, 3), for training."""
    d = torch.cdist(a, b) ** 2
    return d.min(2)[0].mean(1) + d.min(1)[0].mean(1)
