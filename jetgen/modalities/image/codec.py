"""Reading inputs and writing outputs: PNG grids and strips, .npy arrays.

Arrays are float32 (n, C, H, W) in [0, 1]. PNGs are written with pillow when it is installed, else
with a small built-in writer (zlib, 8-bit grey or RGB); image inputs are read with pillow (PNG, JPEG
and the other IMAGE_EXTENSIONS), else with the built-in reader (PNG only: 8- or 16-bit grey,
grey+alpha, RGB or RGBA, not interlaced). Every file is written atomically. Every problem raises
JetgenError.

Inputs are bounded before anything is allocated: an input file has at most MAX_INPUT_BYTES, an
image at most MAX_IMAGE_PIXELS (read from the PNG header, or pillow's, before decoding), a .npy
array at most MAX_INPUT_BYTES of data and MAX_NPY_DIMS dimensions (read from its header). 16-bit
images are scaled by 65535, 8-bit ones by 255. numpy and the standard library; Python 3.6 compatible.
"""
import io
import os
import struct
import zlib

import numpy as np

from jetgen.atomic import atomic_write_bytes
from jetgen.errors import JetgenError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}  # colour type: bit depths
MAX_IMAGE_SIDE = 4096
MAX_IMAGE_PIXELS = MAX_IMAGE_SIDE * MAX_IMAGE_SIDE  # 16.8 Mpx; a float32 RGB copy of that is 200 MB
MAX_INPUT_BYTES = 256 * 1024 * 1024  # an input file (image or .npy) larger than this is refused unread
MAX_NPY_DIMS = 8
MAX_NPY_HEADER = 65536  # bytes; numpy's own default limit since 1.24 is 10000
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
GRID_COLUMNS = 8
MASK_REGIONS = ("bottom-half", "top-half", "left-half", "right-half", "center")


# -- PNG bytes -----------------------------------------------------------------------------------
def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels):
    """PNG bytes for a uint8 image (H, W) grey or (H, W, 3) RGB, or a uint16 one (16-bit samples: depth
    images), with the built-in writer."""
    bits = 16 if np.asarray(pixels).dtype == np.uint16 else 8
    pixels = np.ascontiguousarray(pixels, dtype=">u2" if bits == 16 else np.uint8)  # PNG samples are big-endian
    h, w = pixels.shape[:2]
    colour = 0 if pixels.ndim == 2 else 2
    rows = pixels.reshape(h, -1)
    raw = b"".join(b"\x00" + rows[i].tobytes() for i in range(h))  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", w, h, bits, colour, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _check_pixels(width, height, name):
    """JetgenError when an image of ``width`` x ``height`` exceeds MAX_IMAGE_PIXELS (checked before decoding)."""
    if width < 1 or height < 1:
        raise JetgenError("{} claims a size of {}x{} pixels; it is not a readable image.".format(name, width, height))
    if width * height > MAX_IMAGE_PIXELS:
        raise JetgenError("{} is {}x{} pixels, more than the {} pixels ({}x{}) this reader accepts; shrink it "
                          "first.".format(name, width, height, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))


def png_header(data, name="the PNG"):
    """(width, height, bit depth, colour type, interlace) from a PNG's first 33 bytes, size-checked.

    Raises JetgenError when ``data`` is not a PNG, its first chunk is not a valid IHDR, the bit depth
    does not exist for the colour type, or the image has more than MAX_IMAGE_PIXELS pixels; all of
    this before a byte of pixel data is decompressed.
    """
    if data[:8] != PNG_SIGNATURE:
        raise JetgenError("{} is not a PNG file.".format(name))
    if len(data) < 33 or data[12:16] != b"IHDR" or struct.unpack(">I", data[8:12])[0] != 13:
        raise JetgenError("Cannot read {}: it is not a readable PNG (its first chunk is not IHDR).".format(name))
    w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if depth not in PNG_DEPTHS.get(colour, ()) or interlace not in (0, 1):
        raise JetgenError("Cannot read {}: it is not a readable PNG (bit depth {} with colour type {}, interlace {})."
                          .format(
            name, depth, colour, interlace))
    _check_pixels(w, h, name)
    return w, h, depth, colour, interlace


def decode_png(data, name="the PNG"):
    """Pixels (H, W) or (H, W, channels) from PNG bytes, with the built-in reader: uint8 for 8-bit
    files, uint16 for 16-bit ones (the dtype says the bit depth).

    Reads 8- and 16-bit grey (0), RGB (2), grey+alpha (4) and RGBA (6), not interlaced. The size is
    checked from the header before decompression, and no more than the header's amount of pixel data
    is ever decompressed. JetgenError otherwise.
    """
    w, h, depth, colour, interlace = png_header(data, name)
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    if depth not in (8, 16) or channels is None or interlace:
        raise JetgenError("{} is a PNG this reader cannot decode (bit depth {}, colour type {}, interlace {}); "
                          "install pillow or save it as 8- or 16-bit grey or RGB.".format(name, depth, colour, interlace))
    pos, idat = 8, []
    nbytes = depth // 8
    bpp = channels * nbytes  # bytes per pixel: the filters' left neighbour is this far back
    stride = w * bpp
    expected = h * (stride + 1)
    try:
        while pos < len(data):
            length, kind = struct.unpack(">I4s", data[pos:pos + 8])
            body = data[pos + 8:pos + 8 + length]
            if len(body) != length:
                raise ValueError("truncated chunk")
            pos += 12 + length
            if kind == b"IDAT":
                idat.append(body)
            elif kind == b"IEND":
                break
        # a few bytes of deflate can expand to gigabytes: never take more than the header promises
        raw = zlib.decompressobj().decompress(b"".join(idat), expected + 1)
    except (struct.error, zlib.error, ValueError) as err:
        raise JetgenError("{} is not a readable PNG ({}).".format(name, err))
    if len(raw) > expected:  # the one reader's bound, as the serve API said before it used this reader
        raise JetgenError("{} holds more pixel data than its size says; it is not a readable PNG (wrong amount of "
                          "pixel data).".format(name))
    if len(raw) != expected:
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
                left = cur[j - bpp] if j >= bpp else 0
                if ftype == 1:
                    pred = left
                elif ftype == 3:
                    pred = (left + prev[j]) // 2
                else:
                    pred = _paeth(left, prev[j], prev[j - bpp] if j >= bpp else 0)
                cur[j] = (line[j] + pred) & 0xFF
        else:
            raise JetgenError("{} is not a readable PNG (unknown filter {}).".format(name, ftype))
        out[i] = cur
        prev = cur
    if nbytes == 2:  # samples are big-endian 16-bit
        out = out.view(">u2").astype(np.uint16)
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


def read_image(path, size=None, grey=False):
    """float32 (H, W) or (H, W, 3) in [0, 1] from an image file (alpha dropped); JetgenError when unreadable.

    PNG with the built-in reader or pillow; JPEG and the other formats pillow reads need pillow. The
    file size (MAX_INPUT_BYTES) and pixel count (MAX_IMAGE_PIXELS) are checked before decoding, from
    the PNG header or pillow's. Samples are scaled by their real bit depth (16-bit PNGs by 65535).
    ``size`` = (width, height) resizes (bilinear, pillow); ``grey`` converts colour to grey
    (ITU-R 601 luma, as pillow's "L").
    """
    if not os.path.isfile(path):
        raise JetgenError("No file at {}.".format(path))
    if os.path.getsize(path) > MAX_INPUT_BYTES:
        raise JetgenError("{} is {} bytes, more than the {} bytes an input image may have.".format(
            path, os.path.getsize(path), MAX_INPUT_BYTES))
    with open(path, "rb") as handle:
        head = handle.read(33)
    depth = png_header(head, path)[2] if head[:8] == PNG_SIGNATURE else None
    try:
        from PIL import Image
    except ImportError:
        if depth is None:
            raise JetgenError("{} is not a PNG; reading JPEG and other image formats needs pillow "
                              "(pip install pillow).".format(path))
        with open(path, "rb") as handle:
            pixels = decode_png(handle.read(), path)
        return _builtin_pixels(pixels, path, size, grey)
    return _read_with_pillow(Image, path, size, grey, depth)


def decode_image(data, name="the image", size=None, grey=False):
    """float32 (H, W) or (H, W, 3) in [0, 1] from the bytes of an image file, as ``read_image`` reads a
    file (the same checks and limits; ``name`` in its sentences). JetgenError when unreadable."""
    if len(data) > MAX_INPUT_BYTES:
        raise JetgenError("{} is {} bytes, more than the {} bytes an input image may have.".format(
            name, len(data), MAX_INPUT_BYTES))
    depth = png_header(data[:33], name)[2] if data[:8] == PNG_SIGNATURE else None
    try:
        from PIL import Image
    except ImportError:
        if depth is None:
            raise JetgenError("{} is not a PNG; reading JPEG and other image formats needs pillow "
                              "(pip install pillow).".format(name))
        return _builtin_pixels(decode_png(data, name), name, size, grey)
    return _read_with_pillow(Image, io.BytesIO(data), size, grey, depth, name)


def _builtin_pixels(pixels, path, size, grey):
    """decode_png's pixels as read_image returns them (scaled by their bit depth, alpha dropped)."""
    if size is not None and tuple(size) != (pixels.shape[1], pixels.shape[0]):
        raise JetgenError("{} is {}x{} pixels; resizing it to {}x{} needs pillow (pip install pillow).".format(
            path, pixels.shape[1], pixels.shape[0], size[0], size[1]))
    pixels = pixels.astype(np.float32) / float(np.iinfo(pixels.dtype).max)
    if pixels.ndim == 3:
        pixels = pixels[..., :3] if pixels.shape[2] >= 3 else pixels[..., 0]
    if grey and pixels.ndim == 3:
        pixels = pixels.dot(np.array([0.299, 0.587, 0.114], dtype=np.float32))
    return pixels


def _read_with_pillow(Image, path, size, grey, png_depth, name=None):
    import warnings

    source, path = path, name or path  # ``path`` (a file name or a file object) opens; ``name`` is said
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is lower
            img = Image.open(source)
        with img:
            _check_pixels(img.size[0], img.size[1], path)
            mode = img.mode
            if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N") and (png_depth == 16 or mode != "I"):
                # 16-bit grey: convert("L") would clip it, so scale by 65535 through a float image
                arr = np.asarray(img).astype(np.float32) / 65535.0
                if size is not None and tuple(size) != img.size:
                    arr = np.asarray(Image.fromarray(arr, mode="F").resize(tuple(size), Image.BILINEAR))
                return np.clip(arr, 0.0, 1.0).astype(np.float32)
            if mode in ("I", "F"):
                raise JetgenError("{} holds 32-bit samples; save it as an 8- or 16-bit image.".format(path))
            to_grey = grey or mode in ("1", "L", "LA", "La")
            img = img.convert("L" if to_grey else "RGB")
            if size is not None and tuple(size) != img.size:
                img = img.resize(tuple(size), Image.BILINEAR)
            pixels = np.asarray(img)
    except JetgenError:
        raise
    except Image.DecompressionBombError:
        raise JetgenError("{} has more than the {} pixels this reader accepts; shrink it first.".format(
            path, MAX_IMAGE_PIXELS))
    except Exception as err:  # pillow raises many types (OSError, SyntaxError, struct.error, ...) for a bad file
        raise JetgenError("Cannot read {} as an image ({}: {}).".format(path, type(err).__name__, err))
    return pixels.astype(np.float32) / 255.0


def read_png(path):
    """float32 (H, W) or (H, W, 3) in [0, 1] from an image file; see ``read_image``."""
    return read_image(path)


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


def npy_header(handle, name):
    """(shape, fortran_order, dtype) of an open .npy file, read without reading its data.

    Raises JetgenError for a file that is not .npy, a header over MAX_NPY_HEADER bytes, or format
    version 3.0 (non-ASCII field names, which no numeric array has).
    """
    from numpy.lib import format as npy_format

    try:
        version = npy_format.read_magic(handle)
        if version not in ((1, 0), (2, 0)):
            raise JetgenError("{} is a .npy file of format version {}.{}, which this reader does not take; save a "
                              "plain numeric array with numpy.save.".format(name, version[0], version[1]))
        start = handle.tell()
        size_bytes = handle.read(2 if version == (1, 0) else 4)
        length = struct.unpack("<H" if version == (1, 0) else "<I", size_bytes)[0]
        if length > MAX_NPY_HEADER:  # numpy before 1.24 would read a header of any length the file claims
            raise JetgenError("{} has a .npy header of {} bytes, more than the {} a numeric array needs.".format(
                name, length, MAX_NPY_HEADER))
        handle.seek(start)
        if version == (1, 0):
            return npy_format.read_array_header_1_0(handle)
        return npy_format.read_array_header_2_0(handle)
    except JetgenError:
        raise
    except Exception as err:  # numpy's header parser raises ValueError, SyntaxError, tokenize.TokenError, ...
        raise JetgenError("Cannot read {} as a .npy array ({}: {}).".format(name, type(err).__name__, err))


def load_npy(path):
    """A finite numeric array from a .npy file (never unpickled); JetgenError when missing or unreadable.

    The header is read first: object, structured and non-numeric dtypes, more than MAX_NPY_DIMS
    dimensions, more than MAX_INPUT_BYTES of data (also as float32) and a file shorter than its header
    promises are refused before anything is allocated. NaN or infinite values are refused too.
    """
    if not os.path.isfile(path):
        raise JetgenError("No file at {}.".format(path))
    with open(path, "rb") as handle:
        shape, _, dtype = npy_header(handle, path)
        data_start = handle.tell()
    if dtype.hasobject or dtype.kind not in "biuf":
        raise JetgenError("{} does not hold a numeric array (its dtype is {}).".format(path, dtype))
    if len(shape) > MAX_NPY_DIMS or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise JetgenError("{} claims an array of shape {}, which is not a shape an input can have.".format(path, shape))
    count = 1
    for d in shape:
        count *= d  # Python integers: no overflow, unlike np.prod
    if count * max(dtype.itemsize, 4) > MAX_INPUT_BYTES:
        raise JetgenError("{} holds an array of shape {} ({} values), more than the {} bytes an input may take; "
                          "split it into smaller files.".format(path, tuple(shape), count, MAX_INPUT_BYTES))
    if os.path.getsize(path) - data_start < count * dtype.itemsize:
        raise JetgenError("{} is truncated: its header promises {} values of shape {} but the file is shorter."
                          .format(path, count, tuple(shape)))
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise JetgenError("Cannot read {} as a .npy array ({}).".format(path, err))
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise JetgenError("{} does not hold a numeric array.".format(path))
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise JetgenError("{} holds NaN or infinite values; inputs must be finite numbers.".format(path))
    return arr


def as_batch(arr, shape):
    """``arr`` as a batch (n, C, H, W) for images of ``shape``: (C, H, W) becomes one image, and for
    one-channel models (H, W) and (n, H, W) gain the channel axis; any other shape is returned as it is
    (the caller says what is wrong)."""
    c, h, w = shape
    if arr.shape == (h, w) and c == 1:
        return arr[None, None]
    if arr.ndim == 3 and arr.shape[1:] == (h, w) and c == 1 and arr.shape[0] != 1:
        return arr[:, None]
    if arr.shape == (c, h, w):
        return arr[None]
    return arr


def load_images(path, shape, resize=False):
    """Inputs (n, C, H, W) float32 for a model of output ``shape`` from a .npy or an image file.

    .npy: (C, H, W), (n, C, H, W), or (H, W) / (n, H, W) for one-channel models. An image (.png, or
    .jpg and the other IMAGE_EXTENSIONS with pillow): one image of H x W (RGB converted to grey for
    one-channel models, 16-bit scaled by 65535); with ``resize`` an image of another size is resized
    to W x H (bilinear, pillow). JetgenError on any other shape or an unreadable file.
    """
    c, h, w = shape
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        arr = as_batch(load_npy(path).astype(np.float32), shape)
    elif ext in IMAGE_EXTENSIONS:
        img = read_image(path, size=(w, h) if resize else None)
        if img.ndim == 3 and c == 1:
            img = img.dot(np.array([0.299, 0.587, 0.114], dtype=np.float32))
        if img.ndim == 2 and c == 3:
            img = np.repeat(img[..., None], 3, axis=2)
        arr = img[None, None] if img.ndim == 2 else np.transpose(img, (2, 0, 1))[None]
    else:
        raise JetgenError("Cannot read {}: inputs must be .png, .jpg or .npy files.".format(path))
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
    """A mask from a .npy (0/1 values) or image (white = observed, threshold 0.5) file, shaped like inputs."""
    ext = os.path.splitext(path)[1].lower()
    if ext in IMAGE_EXTENSIONS:
        arr = load_images(path, shape)
        return (arr >= 0.5).astype(np.float32)
    return load_images(path, shape)
