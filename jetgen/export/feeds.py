"""The inputs an export runs its graphs on: real examples (``ExportData``) and the feeds made from them.

- ``parity_feeds``: random inputs (batches 1 and 5) and real test data, ONNX against PyTorch;
- ``calibration_feeds``: real examples for int8 calibration;
- ``golden_cases``: the few inputs whose PyTorch outputs travel in the bundle (``golden/``).

Latents of real data come from ``Source.real_latents`` (encoder means, or an auto-decoder's table);
everything else is drawn from the bundle's own prior with the runtime's sampler, so the feeds come
from exactly the distribution the device sees. Feeds are float32 numpy dicts, labels one-hot.
"""
import numpy as np

from jetgen import modalities
from jetgen.errors import JetgenError

REAL_BATCH = 64  # real examples per parity feed
CALIB_BATCH = 32
GOLDEN_BATCH = 16  # the larger golden batch (the other is 1)
RANGE_SLACK = 1e-4


class ExportData(object):
    """Real examples an export measures on (numpy float32 images (N, C, H, W), int labels or None).

    ``test_x``/``test_y``: parity, the quality table and golden vectors. ``calib_x``/``calib_y``: int8
    calibration and the classifier of the conditional-accuracy row (default: the test examples).
    ``calib_z``: latents of the calibration examples when they are known (an auto-decoder's table).
    ``infer``: optional callable (x, y_onehot) -> z (numpy) finding latents of new inputs, for the
    quality table of models without an encoder (default: Adam on the latent through the decoder).
    ``name``: what the quality table calls the data.
    """

    def __init__(self, test_x, test_y=None, calib_x=None, calib_y=None, calib_z=None, name="data", infer=None):
        self.test_x, self.test_y = test_x, test_y
        self.calib_x = test_x if calib_x is None else calib_x
        self.calib_y = test_y if calib_x is None else calib_y
        self.calib_z, self.name, self.infer = calib_z, name, infer


def as_export_data(data, output_shape, num_classes, output_range):
    """An ExportData with checked arrays from ``data``: None, images, (images, labels) or an ExportData.

    Images may be numpy or torch, (N, C, H, W) or flat (N, C*H*W), within the output range; labels
    ints (N,) or one-hot (N, K). Raises JetgenError for other shapes, values or a conditional model
    without labels."""
    if data is None:
        return None
    if not isinstance(data, ExportData):
        x, y = (data if isinstance(data, (tuple, list)) and len(data) == 2 else (data, None))
        data = ExportData(x, y)
    if data.calib_z is not None and len(_array(data.calib_z, "calib_z")) != len(_array(data.calib_x, "images")):
        raise JetgenError("calib_z must hold one latent per calibration example.")
    test_x = _images(data.test_x, output_shape, output_range)
    calib_x = test_x if data.calib_x is data.test_x else _images(data.calib_x, output_shape, output_range)
    calib_z = None if data.calib_z is None else _array(data.calib_z, "calib_z").astype(np.float32)
    return ExportData(test_x, _labels(data.test_y, len(test_x), num_classes), calib_x,
                      _labels(data.calib_y, len(calib_x), num_classes), calib_z, data.name, data.infer)


def _array(value, what):
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError):
        raise JetgenError("The {} are not an array of numbers.".format(what))


def _images(x, output_shape, output_range):
    arr = _array(x, "example images")
    shape = tuple(output_shape)
    if arr.ndim == 2 and arr.shape[1] == int(np.prod(shape)):
        arr = arr.reshape((len(arr),) + shape)
    if arr.ndim != 4 or arr.shape[1:] != shape or not len(arr):
        raise JetgenError("The example images must have shape (N, {}) or (N, {}), not {}.".format(
            ", ".join(map(str, shape)), int(np.prod(shape)), tuple(arr.shape)))
    if arr.dtype.kind not in "fiu" or not np.isfinite(arr).all():
        raise JetgenError("The example images must hold finite numbers.")
    lo, hi = output_range
    if arr.min() < lo - RANGE_SLACK or arr.max() > hi + RANGE_SLACK:
        raise JetgenError("The example images range from {:.3g} to {:.3g}, outside output_range {}; scale them "
                          "to the range the decoder outputs.".format(float(arr.min()), float(arr.max()),
                                                                      (lo, hi)))
    return np.clip(arr, lo, hi).astype(np.float32)


def _labels(y, n, num_classes):
    if not num_classes:
        return None
    if y is None:
        raise JetgenError("This model is conditional: give data=(images, labels) with one label per image.")
    arr = _array(y, "labels")
    if arr.ndim == 2 and arr.shape[1] == num_classes:
        arr = arr.argmax(1)
    if arr.shape != (n,) or arr.dtype.kind not in "iu" and not np.all(arr == np.round(arr)):
        raise JetgenError("The labels must be {} integers (or one-hot rows), not an array of shape {}.".format(
            n, tuple(arr.shape)))
    arr = arr.astype(np.int64)
    if arr.min() < 0 or arr.max() >= num_classes:
        raise JetgenError("The labels must lie in 0..{} (one per label name).".format(num_classes - 1))
    return arr


def one_hot(labels, k):
    return np.eye(k, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]


def sample_prior(prior, n, rng):
    """numpy draws (n, D) float32 from a manifest prior spec: the runtime's own sampler."""
    from jetgen.runtime.priors import prior_from_manifest

    return prior_from_manifest(prior).sample(n, 1.0, rng)


def _random(source, n, rng):
    """Random inputs of every interface tensor, batch n (images uniform over the output range)."""
    shape = (n,) + tuple(source.output_shape)
    lo, hi = source.output_range
    feeds = {"z": sample_prior(source.prior, n, rng), "x": (lo + (hi - lo) * rng.random_sample(shape)).astype(np.float32),
             "target": (lo + (hi - lo) * rng.random_sample(shape)).astype(np.float32),
             "mask": (rng.random_sample(shape) > 0.5).astype(np.float32)}
    if source.conditional:
        feeds["y"] = one_hot(rng.randint(0, source.num_classes, n), source.num_classes)
    return feeds


def real_examples(source, n=REAL_BATCH):
    """(x, y one-hot or None, z or None): test examples with their encoder means, or calibration
    examples with their known latents, or test examples without latents; None without data."""
    data = source.data
    if data is None:
        return None
    if not source.has_encoder and data.calib_z is not None:
        x, y = data.calib_x[:n], data.calib_y
        return x, _hot(source, y, len(x)), data.calib_z[:n]
    x = data.test_x[:n]
    y = _hot(source, data.test_y, len(x))
    return x, y, source.real_latents(x, y)


def _hot(source, labels, n):
    return one_hot(labels[:n], source.num_classes) if source.conditional else None


def _pick(source, graph, feeds):
    return {k: feeds[k] for k in source.input_names(graph)}


def parity_feeds(source, graph):
    """[(what, feeds)] for ``graph``: random inputs (batches 1 and 5) and real test data."""
    half = modalities.part(source.modality, "export")
    if half is not None:  # the modality's own feeds (jetgen.modalities)
        return half.parity_feeds(source, graph)
    rng = np.random.RandomState(0)
    out = [("random", _pick(source, graph, _random(source, n, rng))) for n in (1, 5)]
    real = real_examples(source)
    if real is not None:
        x, y, z = real
        feeds = _random(source, len(x), rng)
        feeds.update({"x": x, "target": x, "mask": (rng.random_sample(x.shape) > 0.5).astype(np.float32), "y": y})
        if z is not None:
            feeds["z"] = z
        out.append(("test data", _pick(source, graph, feeds)))
    return out


def calibration_feeds(source, graph, n):
    """Feed dicts of ``n`` real examples for int8 calibration, CALIB_BATCH each: encoder inputs, or
    latents (encoder posterior samples, known latents, else prior draws)."""
    half = modalities.part(source.modality, "export")
    if half is not None:
        return half.calibration_feeds(source, graph, n, CALIB_BATCH)
    data = source.data
    x = data.calib_x[:n]
    y = _hot(source, data.calib_y, len(x))
    if graph == "encoder":
        feeds = {"x": x, "y": y}
    elif source.has_encoder:
        feeds = {"z": source.real_latents(x, y, sample=True), "y": y}
    elif data.calib_z is not None:
        feeds = {"z": data.calib_z[:n], "y": y}
    else:
        feeds = {"z": sample_prior(source.prior, len(x), np.random.RandomState(1)), "y": y}
    names = source.input_names(graph)
    return [{k: feeds[k][i:i + CALIB_BATCH] for k in names} for i in range(0, len(x), CALIB_BATCH)]


def golden_cases(source, graph, max_batch):
    """[(case name, feeds)]: batch 1 and a larger batch of prior draws and real test data (random
    inputs in the output range when the export has no data)."""
    half = modalities.part(source.modality, "export")
    if half is not None:
        return half.golden_cases(source, graph, max_batch)
    rng = np.random.RandomState(2)
    big = max(1, min(GOLDEN_BATCH, max_batch))
    real = real_examples(source, big)
    if real is not None:
        big = len(real[0])
    cases = []
    for n in sorted({1, big}):
        feeds = _random(source, n, rng)
        if source.conditional:
            feeds["y"] = one_hot(np.arange(n) % source.num_classes, source.num_classes)
        if graph == "decoder":
            cases.append(("prior-b{}".format(n), feeds))
            if real is not None and real[2] is not None and n > 1:
                cases.append(("test-b{}".format(n), dict(feeds, z=real[2][:n], y=_first(real[1], n))))
            continue
        what = "random"
        if real is not None:
            what = "test"
            feeds.update({"x": real[0][:n], "target": real[0][:n], "y": _first(real[1], n)})
        # latent_grad: half-hidden targets, as in completion
        feeds["mask"] = np.ones_like(feeds["target"])
        feeds["mask"][:, :, feeds["mask"].shape[2] // 2:] = 0
        cases.append(("{}-b{}".format(what, n), feeds))
    return [(name, _pick(source, graph, feeds)) for name, feeds in cases]


def _first(y, n):
    return None if y is None else y[:n]
