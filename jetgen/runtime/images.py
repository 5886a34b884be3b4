"""Reading inputs and writing outputs: PNG grids and strips, .npy arrays.

Arrays are float32 (n, C, H, W) in [0, 1]. PNGs are written with pillow when it is installed, else
with a small built-in writer (zlib, 8-bit grey or RGB); PNG inputs are read with pillow, else with
the built-in reader (8-bit grey, grey+alpha, RGB or RGBA, not interlaced). Every file is written
atomically. Every problem raises JetgenError. numpy and the standard library; Python 3.6 compatible.
"""
import io
import os
import struct
import zlib

import numpy as np

from jetgen.atomic import atomic_write_bytes
from jetgen.errors import JetgenError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GRID_COLUMNS = 8
MASK_REGIONS = ("bottom-half", "top-half", "left-half", "right-half", "center")


# -- PNG bytes -----------------------------------------------------------------------------------
def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels):
    """PNG bytes for a uint8 image (H, W) grey or (H, W, 3) RGB, with the built-in writer."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    h, w = pixels.shape[:2]
    colour = 0 if pixels.ndim == 2 else 2
    rows = pixels.reshape(h, -1)
    raw = b"".join(b"\x00" + rows[i].tobytes() for i in range(h))  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode_png(data, name="the PNG"):
    """uint8 array (H, W) or (H, W, channels) from PNG bytes, with the built-in reader.

    Reads 8-bit grey (0), RGB (2), grey+alpha (4) and RGBA (6), not interlaced; JetgenError otherwise.
    """
    if data[:8] != PNG_SIGNATURE:
        raise JetgenError("{} is not a PNG file.".format(name))
    pos, header, idat = 8, None, []
    try:
        while pos < len(data):
            length, kind = struct.unpack(">I4s", data[pos:pos + 8])
            body = data[pos + 8:pos + 8 + length]
            if len(body) != length:
                raise ValueError("truncated chunk")
            pos += 12 + length
            if kind == b"IHDR":
                header = struct.unpack(">IIBBBBB", body)
            elif kind == b"IDAT":
                idat.append(body)
            elif kind == b"IEND":
                break
        if header is None:
            raise ValueError("no IHDR chunk")
        w, h, depth, colour, _, _, interlace = header
        channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
        if depth != 8 or channels is None or interlace:
            raise JetgenError("{} is a PNG this reader cannot decode (bit depth {}, colour type {}, interlace {}); "
                              "install pillow or save it as 8-bit grey or RGB.".format(name, depth, colour, interlace))
        raw = zlib.decompress(b"".join(idat))
    except (struct.error, zlib.error, ValueError) as err:
        raise JetgenError("{} is not a readable PNG ({}).".format(name, err))
    stride = w * channels
    if len(raw) != h * (stride + 1):
        raise JetgenError("{} is not a readable PNG (wrong amount of pixel data).".format(name))
    out = np.zeros((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int64)
    for i in range(h):
        ftype = raw[i * (stride + 1)]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=i * (stride + 1) + 1).astype(np.int64)
        if ftype == 0:
            cur = line
        elif ftype == 2:
            cur = (line + prev) & 0xFF
        elif ftype in (1, 3, 4):  # these depend on the pixel to the left: decode byte by byte
            cur = np.zeros(stride, dtype=np.int64)
            for j in range(stride):
                left = cur[j - channels] if j >= channels else 0
                if ftype == 1:
                    pred = left
                elif ftype == 3:
                    pred = (left + prev[j]) // 2
                else:
                    pred = _paeth(left, prev[j], prev[j - channels] if j >= channels else 0)
                cur[j] = (line[j] + pred) & 0xFF
        else:
            raise JetgenError("{} is not a readable PNG (unknown filter {}).".format(name, ftype))
        out[i] = cur
        prev = cur
    return out.reshape(h, w) if channels == 1 else out.reshape(h, w, channels)


def write_png(path, pixels):
    """Write a uint8 (H, W) or (H, W, 3) image to ``path`` atomically (pillow if present)."""
    try:
        from PIL import Image
    except ImportError:
        data = encode_png(pixels)
    else:
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buf, format="PNG")
        data = buf.getvalue()
    atomic_write_bytes(path, data)


def read_png(path):
    """float32 (H, W) or (H, W, 3) in [0, 1] from a PNG file (alpha dropped); JetgenError when unreadable."""
    if not os.path.isfile(path):
        raise JetgenError("No file at {}.".format(path))
    try:
        from PIL import Image
    except ImportError:
        with open(path, "rb") as handle:
            pixels = decode_png(handle.read(), path)
    else:
        try:
            with Image.open(path) as img:
                grey = img.mode in ("1", "L", "LA", "I", "I;16", "F")
                pixels = np.asarray(img.convert("L" if grey else "RGB"))
        except (OSError, ValueError, SyntaxError) as err:
            raise JetgenError("Cannot read {} as an image ({}).".format(path, err))
    if pixels.ndim == 3:
        pixels = pixels[..., :3] if pixels.shape[2] >= 3 else pixels[..., 0]
    return pixels.astype(np.float32) / 255.0


# -- arrays <-> files ----------------------------------------------------------------------------
def grid(x, columns=GRID_COLUMNS, pad=2, scale=None):
    """uint8 image tiling (n, C, H, W) in [0, 1] in rows of ``columns``; grey for C=1, RGB for C=3.

    One image is written as itself (no border, no scaling), so it can be read back as an input.
    Several are enlarged ``scale`` times (default: 2 for images smaller than 64 pixels a side).
    """
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    n, c, h, w = x.shape
    if scale is None:
        scale = 2 if max(h, w) < 64 else 1
    if n == 1:
        pad = 0
    if c not in (1, 3):
        raise JetgenError("Only 1- or 3-channel outputs can be written as PNG; use a .npy output.")
    columns = max(1, min(columns, n))
    rows = (n + columns - 1) // columns
    canvas = np.zeros((c, rows * (h + pad) + pad, columns * (w + pad) + pad), dtype=np.float32)
    for i in range(n):
        r, k = divmod(i, columns)
        canvas[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = x[i]
    pixels = np.round(canvas * 255.0).astype(np.uint8)
    if n > 1 and scale > 1:  # small images are easier to look at enlarged (nearest neighbour)
        pixels = pixels.repeat(scale, axis=1).repeat(scale, axis=2)
    return pixels[0] if c == 1 else np.transpose(pixels, (1, 2, 0))


def save_outputs(path, x, columns=GRID_COLUMNS):
    """Write outputs (n, C, H, W) to ``path``: .npy float32 array or .png grid; atomically."""
    ext = os.path.splitext(path)[1].lower()
    x = np.asarray(x, dtype=np.float32)
    if ext == ".npy":
        buf = io.BytesIO()
        np.save(buf, x, allow_pickle=False)
        atomic_write_bytes(path, buf.getvalue())
    elif ext == ".png":
        write_png(path, grid(x, columns))
    else:
        raise JetgenError("Cannot write {}: the output must end in .png or .npy.".format(path))


def completion_sheet(x, mask, completed, columns=GRID_COLUMNS, hidden_grey=0.35):
    """Images (m, C, H, W) to draw as a grid of ``columns``: for each group of up to ``columns``
    inputs, a row of the masked inputs (hidden pixels grey), a row of the completions and a row of the
    original inputs, so a person can compare them column by column."""
    x, completed = np.asarray(x, np.float32), np.asarray(completed, np.float32)
    mask = np.broadcast_to(np.asarray(mask, np.float32), x.shape)
    shown = x * mask + (1.0 - mask) * hidden_grey
    blank = np.zeros_like(x[:1])
    rows = []
    for start in range(0, len(x), columns):
        for block in (shown, completed, x):
            part = block[start:start + columns]
            rows.append(np.concatenate([part] + [blank] * (columns - len(part))) if len(part) < columns else part)
    return np.concatenate(rows)


def load_npy(path):
    """A numeric array from a .npy file (never unpickled); JetgenError when missing or unreadable."""
    if not os.path.isfile(path):
        raise JetgenError("No file at {}.".format(path))
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise JetgenError("Cannot read {} as a .npy array ({}).".format(path, err))
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise JetgenError("{} does not hold a numeric array.".format(path))
    return arr


def load_images(path, shape):
    """Inputs (n, C, H, W) float32 for a model of output ``shape`` from a .npy or .png file.

    .npy: (C, H, W), (n, C, H, W), or (H, W) / (n, H, W) for one-channel models. .png: one image
    of H x W (RGB converted to grey for one-channel models). JetgenError on any other shape.
    """
    c, h, w = shape
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        arr = load_npy(path).astype(np.float32)
        if arr.shape == (h, w) and c == 1:
            arr = arr[None, None]
        elif arr.ndim == 3 and arr.shape[1:] == (h, w) and c == 1 and arr.shape[0] != 1:
            arr = arr[:, None]
        elif arr.shape == (c, h, w):
            arr = arr[None]
    elif ext == ".png":
        img = read_png(path)
        if img.ndim == 3 and c == 1:
            img = img.dot(np.array([0.299, 0.587, 0.114], dtype=np.float32))
        if img.ndim == 2 and c == 3:
            img = np.repeat(img[..., None], 3, axis=2)
        arr = img[None, None] if img.ndim == 2 else np.transpose(img, (2, 0, 1))[None]
    else:
        raise JetgenError("Cannot read {}: inputs must be .png or .npy files.".format(path))
    if arr.ndim != 4 or arr.shape[1:] != (c, h, w):
        raise JetgenError("{} holds shape {}, but this model takes ({}, {}, {}) images.".format(
            path, tuple(arr.shape), c, h, w))
    return arr


def region_mask(region, shape):
    """A (C, H, W) mask, 1 = observed, hiding the named region: bottom-half, top-half, left-half,
    right-half or center (the middle half in each direction)."""
    c, h, w = shape
    mask = np.ones(shape, dtype=np.float32)
    if region == "bottom-half":
        mask[:, h // 2:, :] = 0
    elif region == "top-half":
        mask[:, :h - h // 2, :] = 0
    elif region == "left-half":
        mask[:, :, :w - w // 2] = 0
    elif region == "right-half":
        mask[:, :, w // 2:] = 0
    elif region == "center":
        mask[:, h // 4:h - h // 4, w // 4:w - w // 4] = 0
    else:
        raise JetgenError("Unknown mask region {!r}; choose one of: {}.".format(region, ", ".join(MASK_REGIONS)))
    return mask


def load_mask(path, shape):
    """A mask from a .npy (0/1 values) or .png (white = observed, threshold 0.5) file, shaped like inputs."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".png":
        arr = load_images(path, shape)
        return (arr >= 0.5).astype(np.float32)
    return load_images(path, shape)
