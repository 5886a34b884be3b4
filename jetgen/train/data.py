"""Data sets as tensors: images (N, C, H, W) float32 in [0, 1] and int64 labels.

- ``digits`` (default): scikit-learn's bundled handwritten digits, 8x8 upsampled to 28x28, a fixed
  seeded split of 1500 train / 297 test. Never touches the network.
- ``mnist``, ``fashion-mnist``, ``kmnist``: the standard IDX files (raw or .gz) from ``data_dir``.
- ``folder``: one sub-folder of images per class (``train/`` and ``test/`` splits if present).
"""
import gzip
import os
import struct
import zlib

import numpy as np
import torch

from jetgen import modalities
from jetgen.errors import JetgenError

DATASETS = ("digits", "mnist", "fashion-mnist", "kmnist", "folder")  # images; every modality's: modalities.datasets()
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_CLASSES = {
    "mnist": [str(i) for i in range(10)],
    "kmnist": ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
}
TORCHVISION_DIRS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_IDX_VALUES = 2 ** 29  # 512 MiB of pixels in one IDX file: eleven times MNIST's training images


class Dataset:
    """A split data set held in memory."""

    def __init__(self, name, train_x, train_y, test_x, test_y, classes):
        self.name = name
        self.train_x, self.train_y = train_x, train_y
        self.test_x, self.test_y = test_x, test_y
        self.classes = list(classes)

    @property
    def image_shape(self):
        return tuple(self.train_x.shape[1:])

    @property
    def num_classes(self):
        return len(self.classes)

    def __repr__(self):
        return "Dataset({!r}, train={}, test={}, shape={}, classes={})".format(
            self.name, len(self.train_x), len(self.test_x), self.image_shape, self.num_classes)


def load_dataset(name, data_dir=None, download=False, image_size=28, seed=0, test_fraction=0.15):
    """Load a data set by name; raise JetgenError with what to do when it cannot be loaded."""
    if name == "digits":
        return load_digits(image_size)
    if name in IDX_CLASSES:
        return load_idx_dataset(name, data_dir, download)
    if name == "folder":
        return load_folder(data_dir, image_size, seed, test_fraction)
    raise JetgenError("Unknown data set {!r}; choose one of: {}.".format(name, ", ".join(DATASETS)))


def load_for_run(config, log=None):
    """The data set a run's options (or a stored config.json) name, loaded by the training part of the
    modality that owns the name (jetgen/modalities/<modality>/train.py: images by ``load_dataset``, 3D shapes
    by ``jetgen.train.shapes.load_shape_dataset`` with the run's points, classes and sizes); ``log`` hears
    of skipped files. JetgenError when it cannot be loaded."""
    name = config.get("data") or "digits"
    modality = modalities.of_data(name) or "image"  # an unknown name: load_dataset's sentence naming the choices
    return modalities.part(modality, "train").load(config, log)


def load_digits(image_size=28, n_train=1500, split_seed=0):
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]
    if image_size != 8:
        x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear",
                                            align_corners=False).clamp(0.0, 1.0)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.from_numpy(np.random.RandomState(split_seed).permutation(len(x)))
    tr, te = order[:n_train], order[n_train:]
    return Dataset("digits", x[tr].contiguous(), y[tr], x[te].contiguous(), y[te],
                   [str(i) for i in range(10)])


def read_idx(path):
    """Read an IDX file (raw or gzip) of unsigned bytes into a numpy array; JetgenError if corrupt.

    The header is read first and its dimensions multiplied as Python integers: more than
    MAX_IDX_VALUES values, or a raw file whose length differs from what the header promises, is
    refused before anything is allocated. A .gz file is decompressed as a stream, never past the
    header's promise plus one byte, so a gzip bomb costs no more memory than an honest file.
    """
    gz = path.endswith(".gz")
    try:
        with (gzip.open if gz else open)(path, "rb") as handle:
            head = handle.read(4)
            if len(head) < 4:
                raise JetgenError("{} is not an IDX file: it is only {} bytes long.".format(path, len(head)))
            zero, dtype_code, ndim = struct.unpack(">HBB", head)
            if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 4:
                raise JetgenError("{} is not an unsigned-byte IDX file (wrong magic number {}); check that it is "
                                  "the right, uncorrupted download.".format(path, head.hex()))
            raw_dims = handle.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise JetgenError("{} is truncated inside its header.".format(path))
            dims = struct.unpack(">" + "I" * ndim, raw_dims)
            expected = 1
            for d in dims:
                expected *= d  # Python integers: np.prod would overflow to a small number
            if expected > MAX_IDX_VALUES:
                raise JetgenError("{} claims shape {} ({} values), more than the {} values this reader accepts; "
                                  "check that it is the right, uncorrupted file.".format(
                                      path, dims, expected, MAX_IDX_VALUES))
            if not gz and os.path.getsize(path) - (4 + 4 * ndim) != expected:
                raise JetgenError("{} is truncated or padded: its header promises {} values of shape {} but it "
                                  "holds {}.".format(path, expected, dims, os.path.getsize(path) - 4 - 4 * ndim))
            data = handle.read(expected)
            if len(data) != expected:
                raise JetgenError("{} is truncated: its header promises {} values of shape {} but it holds {}."
                                  .format(path, expected, dims, len(data)))
            if handle.read(1):
                raise JetgenError("{} is padded: it holds more than the {} values of shape {} its header promises."
                                  .format(path, expected, dims))
    except (OSError, EOFError, zlib.error) as err:
        raise JetgenError("Cannot read {}: {}. Replace it with an intact copy.".format(path, err))
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _find_idx(directory, stem):
    for candidate in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    return None


def _idx_directory(name, data_dir):
    for directory in (os.path.join(data_dir, name), os.path.join(data_dir, TORCHVISION_DIRS[name], "raw"), data_dir):
        if _find_idx(directory, IDX_FILES["train"][0]):
            return directory
    return None


def load_idx_dataset(name, data_dir, download=False):
    if data_dir is None:
        raise JetgenError("The {} data set needs --data-dir pointing to its IDX files ({}, {}, {}, {}, raw or "
                          ".gz).".format(name, *(IDX_FILES["train"] + IDX_FILES["test"])))
    if not os.path.isdir(data_dir):
        if not download:
            raise JetgenError("Data directory {} does not exist; create it and put the {} IDX files there (jetgen "
                              "downloads nothing).".format(data_dir, name))
        os.makedirs(data_dir, exist_ok=True)
    directory = _idx_directory(name, data_dir)
    if directory is None and download:
        _download_with_torchvision(name, data_dir)
        directory = _idx_directory(name, data_dir)
    if directory is None:
        raise JetgenError("No {} IDX files found in {}: put {} and the three other files ({}, {}, {}) there "
                          "(raw or .gz); jetgen downloads nothing.".format(
                              name, data_dir, IDX_FILES["train"][0], IDX_FILES["train"][1], *IDX_FILES["test"]))
    splits = {}
    for split, (images_stem, labels_stem) in IDX_FILES.items():
        images_path, labels_path = _find_idx(directory, images_stem), _find_idx(directory, labels_stem)
        if images_path is None or labels_path is None:
            raise JetgenError("The {} split of {} is incomplete in {}: {} and {} are both needed.".format(
                split, name, directory, images_stem, labels_stem))
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or labels.ndim != 1:
            raise JetgenError("{} should hold (N, H, W) images and {} (N,) labels; got shapes {} and {}.".format(
                images_path, labels_path, images.shape, labels.shape))
        if len(images) != len(labels):
            raise JetgenError("{} holds {} images but {} holds {} labels; the files do not belong together.".format(
                images_path, len(images), labels_path, len(labels)))
        if labels.size and labels.max() >= len(IDX_CLASSES[name]):
            raise JetgenError("{} has label {} but {} has only {} classes.".format(
                labels_path, int(labels.max()), name, len(IDX_CLASSES[name])))
        if split == "test" and images.shape[1:] != splits["train"][0].shape[2:]:
            raise JetgenError("{} holds {}x{} images but the training images are {}x{}; both splits must have "
                              "the same image size.".format(images_path, images.shape[1], images.shape[2],
                                                           *splits["train"][0].shape[2:]))
        splits[split] = (torch.from_numpy(images.astype(np.float32) / 255.0)[:, None].contiguous(),
                         torch.from_numpy(labels.astype(np.int64)))
    return Dataset(name, splits["train"][0], splits["train"][1], splits["test"][0], splits["test"][1],
                   IDX_CLASSES[name])


def _download_with_torchvision(name, data_dir):
    try:
        import torchvision.datasets as tvd
    except ImportError:
        raise JetgenError("--download needs torchvision, which is not installed; put the IDX files in {} "
                          "yourself instead.".format(data_dir))
    cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "kmnist": tvd.KMNIST}[name]
    for train in (True, False):
        cls(data_dir, train=train, download=True)


def _load_image(path, image_size):
    """One grey image resized to image_size x image_size, in [0, 1]; size and bit depth checked by the reader."""
    from jetgen.runtime.images import read_image

    return read_image(path, size=(image_size, image_size), grey=True)


def _scan_class_folders(root, image_size, classes=None):
    found = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if classes is None:
        classes = found
    elif set(found) - set(classes):
        raise JetgenError("{} has class folders {} that the training split does not have.".format(
            root, sorted(set(found) - set(classes))))
    images, labels = [], []
    for label, cls in enumerate(classes):
        folder = os.path.join(root, cls)
        if not os.path.isdir(folder):
            continue
        for fname in sorted(os.listdir(folder)):
            if fname.lower().endswith(IMAGE_EXTENSIONS):
                images.append(_load_image(os.path.join(folder, fname), image_size))
                labels.append(label)
    return images, labels, classes


def load_folder(data_dir, image_size=28, seed=0, test_fraction=0.15):
    if data_dir is None or not os.path.isdir(data_dir):
        raise JetgenError("The folder data set needs --data-dir pointing to a directory with one sub-folder of "
                          "images per class; {!r} is not a directory.".format(data_dir))
    if os.path.isdir(os.path.join(data_dir, "train")) and os.path.isdir(os.path.join(data_dir, "test")):
        tr_x, tr_y, classes = _scan_class_folders(os.path.join(data_dir, "train"), image_size)
        te_x, te_y, _ = _scan_class_folders(os.path.join(data_dir, "test"), image_size, classes)
    else:
        xs, ys, classes = _scan_class_folders(data_dir, image_size)
        order = np.random.RandomState(seed).permutation(len(xs))
        n_test = max(1, int(round(test_fraction * len(xs)))) if len(xs) > 1 else 0
        te_idx, tr_idx = order[:n_test], order[n_test:]
        tr_x, tr_y = [xs[i] for i in tr_idx], [ys[i] for i in tr_idx]
        te_x, te_y = [xs[i] for i in te_idx], [ys[i] for i in te_idx]
    if len(classes) == 0 or len(tr_x) == 0:
        raise JetgenError("{} holds no images in class sub-folders (extensions: {}).".format(
            data_dir, ", ".join(IMAGE_EXTENSIONS)))

    def stack(xs, ys):
        if not xs:
            return torch.zeros(0, 1, image_size, image_size), torch.zeros(0, dtype=torch.int64)
        return torch.from_numpy(np.stack(xs))[:, None].contiguous(), torch.tensor(ys, dtype=torch.int64)

    return Dataset("folder", *stack(tr_x, tr_y), *stack(te_x, te_y), classes)
