"""Encoder and decoder networks. Decoders return logits of shape (B, C, H, W)."""
import torch
from torch import nn


class MLPEncoder(nn.Module):
    """x (and one-hot y) -> hidden layers with ReLU -> (mu, logvar). Kingma and Welling: 1 x 500."""

    def __init__(self, image_shape, latent_dim, hidden=(500,), num_classes=0):
        super().__init__()
        c, h, w = image_shape
        layers, width = [], c * h * w + num_classes
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 2 * latent_dim)

    def forward(self, x, y=None):
        h = x.flatten(1)
        if y is not None:
            h = torch.cat([h, y], 1)
        return self.head(self.body(h)).chunk(2, dim=1)


class MLPDecoder(nn.Module):
    def __init__(self, image_shape, latent_dim, hidden=(500,), num_classes=0):
        super().__init__()
        self.image_shape = tuple(image_shape)
        layers, width = [], latent_dim + num_classes
        for size in reversed(tuple(hidden)):
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, int(torch.tensor(self.image_shape).prod())))
        self.body = nn.Sequential(*layers)

    def forward(self, z, y=None):
        if y is not None:
            z = torch.cat([z, y], 1)
        return self.body(z).view(-1, *self.image_shape)


def _check_conv_shape(image_shape, factor):
    _, h, w = image_shape
    if h % factor or w % factor:
        raise ValueError("the conv architecture needs image sides divisible by {}, got {}x{}".format(factor, h, w))


class ConvEncoder(nn.Module):
    """2 conv layers (64 channels, kernel 4, stride 2) then fc 256; a label enters as constant channels."""

    def __init__(self, image_shape, latent_dim, channels=64, fc=256, num_classes=0):
        super().__init__()
        _check_conv_shape(image_shape, 4)
        c, h, w = image_shape
        self.convs = nn.Sequential(
            nn.Conv2d(c + num_classes, channels, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(channels, channels, 4, 2, 1), nn.ReLU(),
        )
        self.fc = nn.Sequential(nn.Linear(channels * (h // 4) * (w // 4), fc), nn.ReLU())
        self.head = nn.Linear(fc, 2 * latent_dim)

    def forward(self, x, y=None):
        if y is not None:
            x = torch.cat([x, y[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])], 1)
        return self.head(self.fc(self.convs(x).flatten(1))).chunk(2, dim=1)


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder: fc 256, fc to 64 x H/4 x W/4, two ConvTranspose (kernel 4, stride 2)."""

    def __init__(self, image_shape, latent_dim, channels=64, fc=256, num_classes=0):
        super().__init__()
        _check_conv_shape(image_shape, 4)
        c, h, w = image_shape
        self.grid = (channels, h // 4, w // 4)
        self.fc = nn.Sequential(
            nn.Linear(latent_dim + num_classes, fc), nn.ReLU(),
            nn.Linear(fc, channels * (h // 4) * (w // 4)), nn.ReLU(),
        )
        self.deconvs = nn.Sequential(
            nn.ConvTranspose2d(channels, channels, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(channels, c, 4, 2, 1),
        )

    def forward(self, z, y=None):
        if y is not None:
            z = torch.cat([z, y], 1)
        return self.deconvs(self.fc(z).view(-1, *self.grid))


class DCGANDecoder(nn.Module):
    """fc to C0 x 4 x 4 (8192 for C0 = 512), ConvTranspose C0 -> C1 -> C2 with BatchNorm and ReLU,
    then to the image channels. 4 -> 7 -> 14 -> 28 for 28 x 28 images, 4 -> 8 -> 16 -> 32 for 32 x 32."""

    def __init__(self, image_shape, latent_dim, channels=(512, 256, 128), num_classes=0):
        super().__init__()
        c, h, w = image_shape
        if (h, w) not in ((28, 28), (32, 32)):
            raise ValueError("the dcgan decoder makes 28x28 or 32x32 images, got {}x{}".format(h, w))
        c0, c1, c2 = channels
        first_kernel = 3 if h == 28 else 4
        self.c0 = c0
        self.fc = nn.Linear(latent_dim + num_classes, c0 * 16)
        self.body = nn.Sequential(
            nn.BatchNorm2d(c0), nn.ReLU(),
            nn.ConvTranspose2d(c0, c1, first_kernel, 2, 1), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.ConvTranspose2d(c1, c2, 4, 2, 1), nn.BatchNorm2d(c2), nn.ReLU(),
            nn.ConvTranspose2d(c2, c, 4, 2, 1),
        )

    def forward(self, z, y=None):
        if y is not None:
            z = torch.cat([z, y], 1)
        return self.body(self.fc(z).view(-1, self.c0, 4, 4))
