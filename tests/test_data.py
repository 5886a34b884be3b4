"""Data sets: the bundled digits, IDX files (raw and gzip, and broken ones), image folders."""
import os

import numpy as np
import pytest
import torch

from jetgen.errors import JetgenError
from jetgen.train.data import load_dataset, read_idx


def test_digits_split_sizes_and_range():
    data = load_dataset("digits")
    assert (len(data.train_x), len(data.test_x)) == (1500, 297)
    assert data.image_shape == (1, 28, 28)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert 0.0 <= float(data.train_x.min()) and float(data.train_x.max()) <= 1.0
    assert float(data.train_x.max()) > 0.9
    assert data.classes == [str(i) for i in range(10)]
    assert set(data.train_y.tolist()) == set(range(10))
    again = load_dataset("digits")
    assert torch.equal(again.test_x, data.test_x) and torch.equal(again.test_y, data.test_y)


def test_digits_other_image_size():
    assert load_dataset("digits", image_size=16).image_shape == (1, 16, 16)


def test_idx_directory_loads_gz_and_raw(tiny_idx_dir):
    from tests.conftest import tiny_images

    data = load_dataset("mnist", tiny_idx_dir)
    assert (len(data.train_x), len(data.test_x)) == (64, 16)
    assert data.image_shape == (1, 28, 28)
    images, labels = tiny_images(16, 1)
    assert torch.allclose(data.test_x[:, 0], torch.from_numpy(images / 255.0).float())
    assert data.test_y.tolist() == labels.tolist()
    assert data.classes[:2] == ["0", "1"]


def test_read_idx_raw_equals_gz(tmp_path, write_idx):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = read_idx(write_idx(tmp_path / "a-idx3-ubyte", array))
    gz = read_idx(write_idx(tmp_path / "a-idx3-ubyte.gz", array))
    assert np.array_equal(raw, array) and np.array_equal(gz, array)


def test_idx_wrong_magic(tmp_path, write_idx):
    path = write_idx(tmp_path / "x", np.zeros((2, 4, 4), np.uint8), magic=b"\x00\x00\x0d\x03")
    with pytest.raises(JetgenError, match="magic"):
        read_idx(path)


def test_idx_truncated(tmp_path, write_idx):
    path = write_idx(tmp_path / "x.gz", np.zeros((2, 4, 4), np.uint8), truncate=5)
    with pytest.raises(JetgenError, match="truncated"):
        read_idx(path)
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00")
    with pytest.raises(JetgenError, match="only 2 bytes"):
        read_idx(str(short))


def test_idx_corrupt_gzip(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(b"this is not gzip")
    with pytest.raises(JetgenError, match="Cannot read"):
        read_idx(str(path))


def test_idx_label_count_mismatch(tiny_idx_dir, write_idx):
    write_idx(os.path.join(tiny_idx_dir, "t10k-labels-idx1-ubyte"), np.zeros(15, np.uint8))
    with pytest.raises(JetgenError, match="do not belong together"):
        load_dataset("mnist", tiny_idx_dir)


def test_idx_label_out_of_range(tiny_idx_dir, write_idx):
    write_idx(os.path.join(tiny_idx_dir, "t10k-labels-idx1-ubyte"), np.full(16, 12, np.uint8))
    with pytest.raises(JetgenError, match="label 12"):
        load_dataset("mnist", tiny_idx_dir)


def test_idx_missing_directory_and_files(tmp_path):
    with pytest.raises(JetgenError, match="does not exist"):
        load_dataset("mnist", str(tmp_path / "nowhere"))
    with pytest.raises(JetgenError, match="No fashion-mnist IDX files"):
        load_dataset("fashion-mnist", str(tmp_path))
    with pytest.raises(JetgenError, match="--data-dir"):
        load_dataset("kmnist", None)


def test_unknown_dataset():
    with pytest.raises(JetgenError, match="Unknown data set"):
        load_dataset("cifar")


def _write_pngs(root, classes, per_class):
    from PIL import Image

    rng = np.random.RandomState(0)
    for cls in classes:
        os.makedirs(os.path.join(root, cls))
        for i in range(per_class):
            pixels = (rng.rand(10, 12) * 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(os.path.join(root, cls, "{}.png".format(i)))


def test_folder_dataset(tmp_path):
    root = str(tmp_path / "shapes")
    _write_pngs(root, ["circle", "square", "triangle"], 4)
    data = load_dataset("folder", root, image_size=16)
    assert data.classes == ["circle", "square", "triangle"]
    assert len(data.train_x) + len(data.test_x) == 12 and len(data.test_x) >= 1
    assert data.image_shape == (1, 16, 16)
    assert 0.0 <= float(data.train_x.min()) and float(data.train_x.max()) <= 1.0
    assert set(data.train_y.tolist()) | set(data.test_y.tolist()) == {0, 1, 2}


def test_folder_dataset_with_splits_and_errors(tmp_path):
    root = tmp_path / "split"
    _write_pngs(str(root / "train"), ["a", "b"], 3)
    _write_pngs(str(root / "test"), ["a", "b"], 1)
    data = load_dataset("folder", str(root))
    assert (len(data.train_x), len(data.test_x)) == (6, 2)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(JetgenError, match="no images"):
        load_dataset("folder", str(empty))
    with pytest.raises(JetgenError, match="not a directory"):
        load_dataset("folder", str(tmp_path / "missing"))
