"""AtlasNet point-cloud autoencoder and VAE (Groueix et al. 2018, with the 2019 refactor's decoder).

- Encoder: PointNet, a shared per-point MLP 3-64-128-H (ReLU), max-pool over points, FC H-H, then a
  linear head to the latent (``ae``) or a mean and a log-variance head (``vae``).
- Decoder: K square patches. Patch k maps a 2-D point u in [0, 1]^2 to 3-D by an MLP whose first
  layer's output gets the latent added as a bias (2019 refactor): h = W0_k u + b0_k + z, then ReLU
  layers of width H and a linear layer to 3-D. The K MLPs are batched (parameters stacked on a first
  axis of size K), so a decoder is a handful of batched MatMuls whatever K is.
- Training decodes random 2-D points (``train_points`` split evenly over the patches); inference
  decodes a regular G x G grid per patch, so each patch is a triangulated sheet (``faces``) and the
  output is a mesh of K*G*G vertices.

The model interface matches jetgen.models.latent_models: ``terms(x, y, idx)`` returns ``recon`` (B,)
= ``recon_scale`` x squared Chamfer (both directions, on ``train_points`` points; scale 1000 makes it
read as the reported Chamfer-L2 x1000, so ``beta`` weighs the KL against that), ``kl`` (B, D), ``reg``
(B,), ``z`` and, for both variants, ``mu`` and ``logvar``.
"""
import math

import torch
from torch import nn

from jetgen.models.chamfer import ChamferLatentGrad, chamfer_terms
from jetgen.models.families import Gaussian

VARIANTS = ("ae", "vae")
AE_LOGVAR = -20.0  # the AE's encoder reports this log-variance: its code is a point (variance e^-20)


def grid_uv(grid):
    """(G*G, 2) float32 points of a regular G x G grid on [0, 1]^2, row-major (u over rows)."""
    t = torch.linspace(0.0, 1.0, int(grid))
    u, v = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([u.reshape(-1), v.reshape(-1)], 1)


def grid_faces(patches, grid):
    """int32 (K * 2 * (G-1)^2, 3) triangles over K patches of G x G grid vertices, indexed into the
    (K*G*G, 3) output of ``AtlasNet.decode`` (patch-major, each grid row-major)."""
    import numpy as np

    g = int(grid)
    r, c = np.meshgrid(np.arange(g - 1), np.arange(g - 1), indexing="ij")
    v00 = (r * g + c).reshape(-1)
    v01, v10, v11 = v00 + 1, v00 + g, v00 + g + 1
    one = np.concatenate([np.stack([v00, v10, v01], 1), np.stack([v01, v10, v11], 1)])
    offsets = (np.arange(int(patches)) * g * g)[:, None, None]
    return (one[None] + offsets).reshape(-1, 3).astype(np.int32)


class PointNetEncoder(nn.Module):
    """x (B, N, 3) -> (mu (B, D), logvar (B, D) or None for the AE)."""

    def __init__(self, latent_dim, hidden=256, widths=(64, 128), variational=True, init_logvar=-4.0):
        super().__init__()
        layers, width = [], 3
        for size in tuple(widths) + (hidden,):
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.point_mlp = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU())
        self.mu_head = nn.Linear(hidden, latent_dim)
        self.logvar_head = nn.Linear(hidden, latent_dim) if variational else None
        if self.logvar_head is not None:
            # start with a narrow posterior so an AE's weights (or a fresh decoder) see clean codes
            nn.init.zeros_(self.logvar_head.weight)
            nn.init.constant_(self.logvar_head.bias, float(init_logvar))

    def forward(self, x):
        h = self.fc(torch.amax(self.point_mlp(x), dim=1))
        return self.mu_head(h), (self.logvar_head(h) if self.logvar_head is not None else None)


class PatchDecoder(nn.Module):
    """(z (B, D), uv (K, P, 2) or (K, B, P, 2)) -> points (B, K*P, 3), patch-major.

    Parameters ``weights.i`` (K, in, out) and ``biases.i`` (K, 1, out): layer 0 maps 2 -> D (the
    latent is added after it), then D -> H, ``layers``-1 times H -> H, and H -> 3. Activations are
    kept as (K, B*P, width), so every layer is one batched MatMul of K large products.
    """

    def __init__(self, latent_dim, patches=16, hidden=256, layers=2):
        super().__init__()
        self.patches, self.latent_dim = int(patches), int(latent_dim)
        sizes = [2, self.latent_dim] + [int(hidden)] * int(layers) + [3]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default initialisation, per patch
            self.weights.append(nn.Parameter(torch.empty(self.patches, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(self.patches, 1, fan_out).uniform_(-bound, bound)))

    def _layers(self, z, uv):
        """Pre-activations of every layer, (K, B*P, width) each, the last being the output, and P."""
        k, d = self.patches, self.latent_dim
        points = uv.shape[-2]
        if uv.dim() == 3:  # one set of 2-D points for the whole batch: the first layer runs once
            first = (torch.matmul(uv, self.weights[0]) + self.biases[0]).unsqueeze(1)
        else:
            first = torch.matmul(uv.reshape(k, -1, 2), self.weights[0]).reshape(k, -1, points, d) + \
                self.biases[0].unsqueeze(1)
        h = (first + z.unsqueeze(0).unsqueeze(2)).reshape(k, -1, d)
        pre = [h]
        for w, b in zip(list(self.weights)[1:], list(self.biases)[1:]):
            h = torch.matmul(torch.relu(h), w) + b
            pre.append(h)
        return pre, points

    def _flatten(self, out, points):
        """(K, B*P, 3) -> (B, K*P, 3)."""
        return out.reshape(self.patches, -1, points, 3).transpose(0, 1).reshape(-1, self.patches * points, 3)

    def forward(self, z, uv):
        pre, points = self._layers(z, uv)
        return self._flatten(pre[-1], points)

    def forward_with_cache(self, z, uv):
        pre, points = self._layers(z, uv)
        return self._flatten(pre[-1], points), (pre[:-1], points)

    def vjp(self, cache, grad_points):
        """d <grad_points, decoder(z)> / dz (B, D) from ``forward_with_cache``'s cache, by hand:
        back through the linear layers (MatMul with transposed weights) and ReLU masks."""
        pre, points = cache
        k = self.patches
        g = grad_points.reshape(-1, k, points, 3).transpose(0, 1).reshape(k, -1, 3)
        for w, act in zip(reversed(list(self.weights)[1:]), reversed(pre)):
            g = torch.matmul(g, w.transpose(1, 2)) * (act > 0).to(g.dtype)
        return g.reshape(k, -1, points, self.latent_dim).sum(dim=(0, 2))


class GridDecoder(nn.Module):
    """The inference decoder: z (B, D) -> points (B, K*G*G, 3) on the regular grid (a buffer), with
    the ``forward_with_cache`` / ``vjp`` pair that ``ChamferLatentGrad`` needs."""

    def __init__(self, decoder, grid):
        super().__init__()
        self.decoder = decoder
        uv = grid_uv(grid).to(decoder.weights[0].dtype)
        self.register_buffer("uv", uv.unsqueeze(0).expand(decoder.patches, -1, -1).contiguous())

    def forward(self, z):
        return self.decoder(z, self.uv)

    def forward_with_cache(self, z):
        return self.decoder.forward_with_cache(z, self.uv)

    def vjp(self, cache, grad_points):
        return self.decoder.vjp(cache, grad_points)


class AtlasNet(nn.Module):
    """AtlasNet autoencoder (``variant="ae"``) or VAE (``"vae"``) on point clouds (B, N, 3)."""

    kind = "atlasnet"
    archs = ("atlasnet",)
    labelled = False
    has_encoder = True
    variational = True  # the AE variant has no posterior; terms() gives it a zero KL
    families = ("gaussian",)
    conditional = False
    num_classes = 0
    likelihood = "chamfer"

    @classmethod
    def from_config(cls, config):
        """The model a run's config.json describes (keys as ``settings``; missing ones take the defaults)."""
        keys = ("latent_dim", "patches", "hidden", "layers", "train_points", "encoder_points", "grid", "recon_scale",
                "init_logvar")
        kwargs = dict((k, config[k]) for k in keys if config.get(k) is not None)
        return cls(config.get("variant", "vae"), **kwargs)

    def __init__(self, variant="vae", latent_dim=128, patches=16, hidden=256, layers=2, train_points=512,
                 encoder_points=512, grid=8, recon_scale=1000.0, init_logvar=-4.0):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError("unknown AtlasNet variant {!r} (ae or vae)".format(variant))
        for name, value, low in (("latent_dim", latent_dim, 1), ("patches", patches, 1), ("hidden", hidden, 1),
                                 ("layers", layers, 1), ("train_points", train_points, 1),
                                 ("encoder_points", encoder_points, 1), ("grid", grid, 2)):
            if int(value) < low:
                raise ValueError("{} must be at least {}, not {}".format(name, low, value))
        self.variant = variant
        self.latent_dim, self.patches, self.grid = int(latent_dim), int(patches), int(grid)
        self.train_points, self.encoder_points = int(train_points), int(encoder_points)
        self.recon_scale = float(recon_scale)
        self.family = Gaussian
        self.settings = dict(variant=variant, latent_dim=self.latent_dim, patches=self.patches, hidden=int(hidden),
                             layers=int(layers), train_points=self.train_points, encoder_points=self.encoder_points,
                             grid=self.grid, recon_scale=self.recon_scale, init_logvar=float(init_logvar))
        self.encoder = PointNetEncoder(self.latent_dim, int(hidden), variational=variant == "vae",
                                       init_logvar=init_logvar)
        self.decoder = PatchDecoder(self.latent_dim, self.patches, int(hidden), int(layers))

    # -- shapes of the interface ------------------------------------------------------------------
    @property
    def output_shape(self):
        """Shape of one decoded cloud: (K*G*G, 3)."""
        return (self.patches * self.grid * self.grid, 3)

    @property
    def input_shape(self):
        """Shape of one encoder input: (encoder_points, 3)."""
        return (self.encoder_points, 3)

    def faces(self, grid=None):
        """int32 triangles of the decoded grid mesh (see ``grid_faces``)."""
        return grid_faces(self.patches, grid or self.grid)

    # -- encoder and decoder ------------------------------------------------------------------------
    def encode(self, x, y=None):
        """(mu, logvar) each (B, D) for points x (B, N, 3); the AE's logvar is the constant AE_LOGVAR."""
        mu, logvar = self.encoder(x)
        if logvar is None:
            logvar = torch.full_like(mu, AE_LOGVAR)
        return mu, logvar

    def decode(self, z, y=None, grid=None):
        """Points (B, K*G*G, 3) on the regular grid of each patch (G = ``grid`` or the model's)."""
        uv = grid_uv(grid or self.grid).to(z.device, z.dtype)
        return self.decoder(z, uv.unsqueeze(0).expand(self.patches, -1, -1))

    def grid_decoder(self, grid=None):
        """The module the decoder graph exports: z -> grid points, with a hand-written VJP."""
        return GridDecoder(self.decoder, grid or self.grid)

    def latent_grad_module(self, grid=None):
        """(z, target (B, M, 3), mask (B, M)) -> (one-sided Chamfer loss (B,), grad (B, D)); exportable
        at ONNX opset 13. The loss is the plain Chamfer (not multiplied by ``recon_scale``)."""
        return ChamferLatentGrad(self.grid_decoder(grid))

    def _subset(self, x, count):
        """A random subset of ``count`` points per cloud in training, the first ``count`` otherwise
        (the points are i.i.d. samples, so the first ones are as good as any)."""
        n = x.shape[1]
        if n <= count:
            return x
        if not self.training:
            return x[:, :count]
        return x[:, torch.randperm(n, device=x.device)[:count]]

    def terms(self, x, y=None, idx=None):
        mu, logvar = self.encode(self._subset(x, self.encoder_points))
        if self.variant == "vae":
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            kl = Gaussian.kl(torch.cat([mu, logvar], 1))
        else:
            z, kl = mu, torch.zeros_like(mu)
        per_patch = -(-self.train_points // self.patches)
        uv = torch.rand(self.patches, x.shape[0], per_patch, 2, device=x.device, dtype=x.dtype)
        pred = self.decoder(z, uv)
        # nearest neighbours from |a|^2 + |b|^2 - 2ab lose the small distances in float16: Chamfer in float32
        with torch.autocast(x.device.type, enabled=False):
            d_ab, d_ba = chamfer_terms(pred.float(), self._subset(x, self.train_points).float())
        return {"recon": self.recon_scale * (d_ab + d_ba), "kl": kl, "reg": torch.zeros_like(mu[:, 0]), "z": z,
                "mu": mu, "logvar": logvar}

    # -- what the trainer and exporter ask every kind -----------------------------------------------
    def table_parameters(self):
        return []

    def train_latents(self, n, sample=False, seed=0):
        return None

    def manifest_prior(self):
        return self.prior_spec()

    # -- prior ------------------------------------------------------------------------------------
    def prior_sample(self, n, generator=None):
        return Gaussian.prior_sample(n, self.latent_dim, generator=generator)

    def prior_spec(self):
        return Gaussian.prior_spec(self.latent_dim)


def init_from(model, state_dict):
    """Copy the tensors of ``state_dict`` that fit ``model`` into it, and say what happened.

    Returns a dict of name lists: ``loaded`` (same name and shape), ``partial`` (stacked patch
    tensors of another patch count: the first min(K, K') patches copied, the rest keep their fresh
    initialisation), ``skipped`` (same name, other shape), ``new`` (not in ``state_dict``: freshly
    initialised) and ``unused`` (in ``state_dict`` only).
    """
    own = model.state_dict()
    report = {"loaded": [], "partial": [], "skipped": [], "new": [], "unused": sorted(set(state_dict) - set(own))}
    for name, tensor in own.items():
        if name not in state_dict:
            report["new"].append(name)
            continue
        source = state_dict[name]
        if tuple(source.shape) == tuple(tensor.shape):
            own[name] = source.detach().to(tensor.dtype).clone()
            report["loaded"].append(name)
        elif (name.startswith("decoder.weights.") or name.startswith("decoder.biases.")) and \
                source.dim() == tensor.dim() and tuple(source.shape[1:]) == tuple(tensor.shape[1:]):
            k = min(source.shape[0], tensor.shape[0])
            merged = tensor.clone()
            merged[:k] = source[:k].to(tensor.dtype)
            own[name] = merged
            report["partial"].append(name)
        else:
            report["skipped"].append(name)
    model.load_state_dict(own)
    return report
