"""Inputs are bounded before they are allocated, and read at their real bit depth (issue 8, items 7, 9, 13).

Each test feeds a small hostile file (a header that claims a huge image or array, a compression bomb,
a 16-bit PNG) to the public readers: ``load_images``/``read_image``/``decode_png``/``load_npy`` (the
runtime's inputs) and ``read_idx``/``load_dataset`` (training data), with pillow and with the
built-in PNG reader. Memory is measured with tracemalloc, which sees every bytes object zlib, gzip
and numpy hand to Python.
"""
import gzip
import io
import struct
import sys
import tracemalloc
import zlib

import numpy as np
import pytest

from jetgen.errors import JetgenError
from jetgen.runtime import images
from jetgen.runtime.images import (MAX_IMAGE_PIXELS, MAX_INPUT_BYTES, PNG_SIGNATURE, _chunk, decode_png, load_images,
                                   load_npy, read_image)
from jetgen.train.data import MAX_IDX_VALUES, load_dataset, read_idx
from tests.conftest import _write_idx, tiny_images

MB = 1024 * 1024


def png_bytes(width, height, depth, colour, rows=None, idat=None):
    """A PNG with the given header; ``rows`` (raw scanlines, filter byte included) or raw ``idat``."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    if idat is None:
        idat = zlib.compress(rows)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png16(array, colour):
    """A 16-bit PNG from a uint16 array (H, W) grey or (H, W, C) for colour types 2, 4, 6."""
    big = np.ascontiguousarray(array, dtype=">u2")
    h, w = big.shape[:2]
    rows = b"".join(b"\x00" + big[i].tobytes() for i in range(h))
    return png_bytes(w, h, 16, colour, rows)


@pytest.fixture(params=["pillow", "built-in"])
def reader(request, monkeypatch):
    """Run the test with pillow, and again with pillow hidden (the built-in PNG reader)."""
    if request.param == "built-in":
        monkeypatch.setitem(sys.modules, "PIL", None)
    return request.param


def peak_bytes(func, *args):
    """(result or exception, peak bytes Python allocated while ``func(*args)`` ran)."""
    tracemalloc.start()
    try:
        try:
            out = func(*args)
        except JetgenError as err:
            out = err
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- images --------------------------------------------------------------------------------------
def test_huge_png_refused_before_decompression(tmp_path, reader, monkeypatch):
    # 10000x10000 in a few hundred bytes: the header alone must stop it
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(10000, 10000, 8, 0, idat=zlib.compress(b"\x00" * 10001 * 8)))

    def no_decompression(*args, **kwargs):
        raise AssertionError("pixel data was decompressed")
    monkeypatch.setattr(images.zlib, "decompressobj", no_decompression)
    if reader == "pillow":
        from PIL import Image
        monkeypatch.setattr(Image, "open", no_decompression)
    with pytest.raises(JetgenError, match=r"10000x10000 pixels, more than the {} pixels \(4096x4096\)".format(
            MAX_IMAGE_PIXELS)):
        load_images(str(path), (1, 8, 8))


def test_png_whose_pixel_data_is_a_zlib_bomb_costs_no_memory():
    # an honest 8x8 header, then 64 MB of zeros in 64 kB of deflate: decompress no more than 8 rows
    rows = b"\x00" * (64 * MB)
    data = png_bytes(8, 8, 8, 0, idat=zlib.compress(rows, 9))
    out, peak = peak_bytes(decode_png, data, "bomb.png")
    assert isinstance(out, JetgenError) and "wrong amount of pixel data" in str(out)
    assert peak < 2 * MB, peak


def test_other_format_too_large_refused_before_decoding(tmp_path, monkeypatch):
    from PIL import Image, ImageFile

    # a 54-byte BMP header claiming 10000x10000 24-bit pixels (pillow reads sizes lazily, decodes on load)
    path = tmp_path / "big.bmp"
    path.write_bytes(b"BM" + struct.pack("<IHHI", 54 + 3 * 10 ** 8, 0, 0, 54) +
                     struct.pack("<IiiHHIIiiII", 40, 10000, 10000, 1, 24, 0, 0, 2835, 2835, 0, 0))

    def no_load(self):
        raise AssertionError("pixels were decoded")
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_load)
    with pytest.raises(JetgenError, match="10000x10000 pixels, more than"):
        read_image(str(path))
    with pytest.warns(Image.DecompressionBombWarning):
        assert Image.open(str(path)).size == (10000, 10000)  # the file really claims that size


def test_16bit_grey_png_scaled_by_its_bit_depth(tmp_path, reader):
    # the case: a 0..65535 gradient was 99.5% 1.0 through convert("L")
    gradient = np.linspace(0, 65535, 64).round().astype(np.uint16).reshape(8, 8)
    path = tmp_path / "g16.png"
    path.write_bytes(png16(gradient, colour=0))
    x = load_images(str(path), (1, 8, 8))
    assert x.shape == (1, 1, 8, 8)
    assert np.abs(x[0, 0] - gradient / 65535.0).max() < 1e-6
    assert (x >= 0.999).mean() < 0.05


def test_16bit_colour_png_scaled_by_its_bit_depth(tmp_path, reader):
    rgb = (np.random.RandomState(0).rand(8, 8, 3) * 65535).astype(np.uint16)
    path = tmp_path / "rgb16.png"
    path.write_bytes(png16(rgb, colour=2))
    x = load_images(str(path), (3, 8, 8))
    want = np.transpose(rgb / 65535.0, (2, 0, 1))
    tolerance = 1e-6 if reader == "built-in" else 1.0 / 255  # pillow keeps the high byte of 16-bit colour
    assert np.abs(x[0] - want).max() <= tolerance


def test_16bit_folder_images_keep_their_range(tmp_path):
    root = tmp_path / "folder"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            (root / cls / "{}.png".format(i)).write_bytes(png16(np.full((8, 8), 16384 * (i + 1), np.uint16), 0))
    data = load_dataset("folder", str(root), image_size=8, test_fraction=0.25)
    values = sorted(set(np.round(np.concatenate([data.train_x.numpy().ravel(), data.test_x.numpy().ravel()]), 4)))
    assert values == [round(16384 / 65535.0, 4), round(32768 / 65535.0, 4)]


def test_jpeg_inputs_read_with_pillow(tmp_path):
    from PIL import Image

    smooth = (np.add.outer(np.arange(8), np.arange(8)) * 16).astype(np.uint8)
    path = tmp_path / "x.jpg"
    Image.fromarray(smooth).save(str(path), quality=100)
    x = load_images(str(path), (1, 8, 8))
    assert x.shape == (1, 1, 8, 8) and np.abs(x[0, 0] - smooth / 255.0).max() < 0.05


def test_jpeg_without_pillow_is_one_sentence(tmp_path, monkeypatch):
    from PIL import Image

    path = tmp_path / "x.jpg"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(str(path))
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(JetgenError, match="needs pillow"):
        load_images(str(path), (1, 8, 8))


def test_resize_only_when_asked(tmp_path):
    from PIL import Image

    big = (np.random.RandomState(1).rand(16, 16) * 255).astype(np.uint8)
    path = tmp_path / "big.png"
    Image.fromarray(big).save(str(path))
    with pytest.raises(JetgenError, match=r"holds shape \(1, 1, 16, 16\)"):
        load_images(str(path), (1, 8, 8))  # the default is unchanged: a wrong size is refused
    x = load_images(str(path), (1, 8, 8), resize=True)
    want = np.asarray(Image.fromarray(big).resize((8, 8), Image.BILINEAR)) / 255.0
    assert x.shape == (1, 1, 8, 8) and np.abs(x[0, 0] - want).max() < 1e-6


def test_oversized_input_file_refused_unread(tmp_path):
    path = tmp_path / "huge.png"
    with open(str(path), "wb") as handle:
        handle.write(png_bytes(8, 8, 8, 0, rows=b"\x00" * 72))
        handle.truncate(MAX_INPUT_BYTES + 1)  # sparse: no disk used
    with pytest.raises(JetgenError, match="more than the {} bytes".format(MAX_INPUT_BYTES)):
        load_images(str(path), (1, 8, 8))


# -- .npy ----------------------------------------------------------------------------------------
def npy_with_header(shape, descr="<f4", data=b"", version=(1, 0), header_len=None):
    """.npy bytes whose header claims ``shape``/``descr`` followed by ``data`` (any length)."""
    text = "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}".format(descr, tuple(shape))
    text += " " * (64 - (len(text) + 11) % 64 - 1) + "\n"
    size = header_len if header_len is not None else len(text)
    packed = struct.pack("<H", size) if version == (1, 0) else struct.pack("<I", size)
    return b"\x93NUMPY" + bytes(bytearray(version)) + packed + text.encode("latin1") + data


@pytest.mark.parametrize("case,match", [
    ("huge shape", "more than the {} bytes an input may take".format(MAX_INPUT_BYTES)),
    ("huge header", "more than the 65536 a numeric array needs"),
    ("object dtype", "does not hold a numeric array"),
    ("complex dtype", "does not hold a numeric array"),
    ("truncated", "is truncated"),
    ("nan", "NaN or infinite"),
    ("too many dimensions", "not a shape an input can have"),
])
def test_npy_headers_checked_before_loading(tmp_path, case, match):
    path = tmp_path / "x.npy"
    if case == "huge shape":  # the (1e12, 1, 28, 28) with no data behind it
        path.write_bytes(npy_with_header((10 ** 12, 1, 28, 28)))
    elif case == "huge header":
        path.write_bytes(npy_with_header((1, 8, 8), version=(2, 0), header_len=2 ** 31))
    elif case == "object dtype":
        buf = io.BytesIO()
        np.save(buf, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
        path.write_bytes(buf.getvalue())
    elif case == "complex dtype":
        np.save(str(path), np.zeros((1, 8, 8), np.complex64))
    elif case == "truncated":
        path.write_bytes(npy_with_header((4, 1, 8, 8), data=b"\x00" * 100))
    elif case == "nan":
        np.save(str(path), np.full((1, 8, 8), np.nan, np.float32))
    else:
        path.write_bytes(npy_with_header((1,) * 9, data=b"\x00" * 4))
    out, peak = peak_bytes(load_npy, str(path))
    assert isinstance(out, JetgenError), out
    assert match in str(out) and "\n" not in str(out)
    assert peak < 2 * MB, peak


def test_npy_inputs_still_load(tmp_path):
    x = np.random.RandomState(0).rand(3, 1, 8, 8)
    np.save(str(tmp_path / "x.npy"), x)  # float64, converted
    np.save(str(tmp_path / "big-endian.npy"), x.astype(">f4"))
    assert np.allclose(load_images(str(tmp_path / "x.npy"), (1, 8, 8)), x)
    assert np.allclose(load_images(str(tmp_path / "big-endian.npy"), (1, 8, 8)), x)


# -- IDX and gzip ----------------------------------------------------------------------------------
def test_idx_dims_that_overflow_np_prod_refused(tmp_path):
    # 4194304 * 2097152 * 2097152 = 2**66: np.prod wraps it to 0, which matched an empty body
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(struct.pack(">HBB", 0, 8, 3) + struct.pack(">III", 4194304, 2097152, 2097152))
    with pytest.raises(JetgenError, match="more than the {} values this reader accepts".format(MAX_IDX_VALUES)):
        read_idx(str(path))


def test_idx_length_checked_before_reading(tmp_path):
    # the header promises 10 MB; the (sparse) file holds 300 MB: refused from its length, unread
    path = tmp_path / "x-idx3-ubyte"
    with open(str(path), "wb") as handle:
        handle.write(struct.pack(">HBB", 0, 8, 3) + struct.pack(">III", 1000, 100, 100))
        handle.truncate(300 * MB)
    out, peak = peak_bytes(read_idx, str(path))
    assert isinstance(out, JetgenError) and "truncated or padded" in str(out), out
    assert peak < 2 * MB, peak


def test_gzip_bomb_is_streamed_with_a_cap(tmp_path):
    # an honest header for 2x4x4 values, then 64 MB of zeros: the 1.5 GB bomb in small
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(str(path), "wb", compresslevel=1) as handle:
        handle.write(struct.pack(">HBB", 0, 8, 3) + struct.pack(">III", 2, 4, 4))
        block = b"\x00" * MB
        for _ in range(64):
            handle.write(block)
    out, peak = peak_bytes(read_idx, str(path))
    assert isinstance(out, JetgenError) and "padded" in str(out), out
    assert peak < 4 * MB, peak


def test_corrupt_deflate_stream_is_one_sentence(tmp_path):
    data = gzip.compress(struct.pack(">HBB", 0, 8, 1) + struct.pack(">I", 4000) + bytes(4000))
    broken = data[:20] + bytes(b ^ 0x5A for b in data[20:40]) + data[40:]
    path = tmp_path / "x.gz"
    path.write_bytes(broken)
    with pytest.raises(JetgenError, match="Cannot read|truncated|padded"):
        read_idx(str(path))


def test_idx_test_images_of_another_size_refused_before_training(tmp_path):
    directory = tmp_path / "mnist"
    directory.mkdir()
    train_x, train_y = tiny_images(16, 0)
    _write_idx(directory / "train-images-idx3-ubyte", train_x)
    _write_idx(directory / "train-labels-idx1-ubyte", train_y)
    _write_idx(directory / "t10k-images-idx3-ubyte", np.zeros((4, 32, 32), np.uint8))
    _write_idx(directory / "t10k-labels-idx1-ubyte", train_y[:4])
    with pytest.raises(JetgenError, match="32x32 images but the training images are 28x28"):
        load_dataset("mnist", str(directory))
