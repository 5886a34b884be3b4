"""``Model``: a bundle opened for inference with numpy and one backend.

    m = Model.open("digits.jetgen")                  # manifest and every graph's sha256 checked
    x = m.sample(16, labels=[3], seed=0)            # (16, 1, 28, 28) float32 in [0, 1]
    r = m.complete(x, mask, labels=3)               # latent optimisation: r.x, r.z, r.loss, r.history

Sessions open lazily, one per graph, through ``jetgen.runtime.backends.open_session``; batches
larger than a graph's ``batch.max`` run in chunks. Every problem a caller can cause raises
``JetgenError`` with a sentence. numpy only (the backend imports its own runtime). Python 3.6+.
"""
import math

import numpy as np

from jetgen import modalities
from jetgen.errors import JetgenError
from jetgen.runtime import backends, completion
from jetgen.runtime.completion import COMPLETE_STEPS, COMPLETE_TOL, COMPLETE_WINDOW  # noqa: F401  (their old home)
from jetgen.runtime.bundle import Bundle
from jetgen.runtime.feeds import run_in_chunks
from jetgen.runtime.priors import make_rng, prior_from_manifest
from jetgen.spec import PRECISIONS
INITS = ("prior_mean", "encoder", "random", "multistart")  # multistart: point-cloud bundles only
RANGE_SLACK = 1e-4  # inputs a hair outside the output range (rounding in a file) are accepted
SMALL = 256  # arrays up to this size are checked as Python lists (cheaper than a numpy reduction's overhead)


class Completion(object):
    """What ``Model.complete`` returns; attributes, also readable as ``result["z"]``.

    z        (B, D) float32  the latent with the lowest objective seen (after projection)
    x        (B, C, H, W)    the completed inputs: observed pixels from the input, hidden from ``decoded``
    decoded  (B, C, H, W)    the decoder output at ``z``
    loss     (B,)            the objective at ``z``: masked negative log-likelihood + prior_weight * prior term
    nll      (B,)            the likelihood part of ``loss`` (nats)
    history  (S + 1, B)      the objective before the first step and after each step (S = steps run)
    steps    int             steps run (fewer than asked when every example met ``tol``)
    labels   (B,) int or None  labels used (inferred ones when labels="infer")
    label_losses (B, K) or None  final objective per candidate label when labels="infer"
    """

    FIELDS = ("z", "x", "decoded", "loss", "nll", "history", "steps", "labels", "label_losses")

    def __init__(self, **values):
        for key in self.FIELDS:
            setattr(self, key, values.get(key))

    def __getitem__(self, key):
        if key not in self.FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __repr__(self):
        return "Completion(n={}, steps={}, mean loss {:.4g})".format(
            len(self.z) if self.z is not None else 0, self.steps,
            float(np.mean(self.loss)) if self.loss is not None and len(self.loss) else float("nan"))


MAX_LATENT_INPUT = 1e6  # |z| given to decode/interpolate/complete; float32 overflows at 3.4e38


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _all_finite(arr):
    """True when ``arr`` holds no NaN or infinity. A batch-1 input is a handful of values, and a numpy
    reduction costs microseconds of fixed overhead; up to SMALL values the check runs on a list."""
    if arr.size <= SMALL:
        return all(map(math.isfinite, arr.ravel().tolist()))
    return bool(np.isfinite(arr).all())


def _top_bits(lo, hi):
    """For ``_in_range``: the bit pattern of the largest float32 <= hi when lo <= 0 <= hi, else None."""
    top = np.float32(hi)
    if float(top) > hi:
        top = np.nextafter(top, np.float32(-np.inf))
    return int(np.array(top, np.float32).view(np.uint32)) if lo <= 0 <= float(top) else None


def _in_range(x, lo, hi, top_bits=None):
    """True when every value of ``x`` lies in [lo, hi] (NaN and infinity do not).

    Batch-1 decode is hot, and right after a graph run (caches cold) every numpy call costs
    microseconds. With ``top_bits`` (``_top_bits(lo, hi)``) and float32 values, one argmax over the
    unsigned bit patterns accepts the common case: non-negative float32 values order like their
    bits, and negative values, NaN and infinity have larger patterns than any such bound. Otherwise,
    or when that rejects, argmin and argmax (which return the first NaN) decide exactly."""
    if not x.size:
        return True
    flat = x.reshape(-1)
    if top_bits is not None and flat.dtype is _F32:
        bits = flat.view(np.uint32)
        if bits[bits.argmax()] <= top_bits:
            return True
    return bool(flat[flat.argmin()] >= lo and flat[flat.argmax()] <= hi)


_F32 = np.dtype(np.float32)
ONE_BITS = _top_bits(0.0, 1.0)


def _float_array(value, what):
    if isinstance(value, np.ndarray) and value.dtype in (np.float32, np.float64):
        arr = value  # no copy on the hot path (decode of a float32 batch)
    else:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise JetgenError("The {} is not an array of numbers.".format(what))
    if not _all_finite(arr):
        raise JetgenError("The {} holds NaN or infinite values; give finite numbers.".format(what))
    return arr


def _slerp(a, b, t):
    """Spherical interpolation of rows a, b (float64 vectors) at fractions t; linear when nearly parallel."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < 1e-12 or nb < 1e-12:
        return np.outer(1 - t, a) + np.outer(t, b)
    omega = np.arccos(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))
    if np.sin(omega) < 1e-6:
        return np.outer(1 - t, a) + np.outer(t, b)
    s = np.sin(omega)
    return np.outer(np.sin((1 - t) * omega) / s, a) + np.outer(np.sin(t * omega) / s, b)


class Model(object):
    """A bundle ready to decode, sample, encode, interpolate, reconstruct and complete."""

    def __init__(self, bundle, backend=backends.DEFAULT, precision=None, device=None, backend_options=None):
        # a backend may pick its own precision ("auto": TensorRT takes fp16/int8 where the GPU has them)
        default = backends.get(backend)["default_precision"]
        precision = precision or default or bundle.manifest.get("precision") or "fp32"
        if precision not in PRECISIONS and precision != default:
            raise JetgenError("Unknown precision {!r}; choose one of: {}.".format(precision, ", ".join(PRECISIONS)))
        self.bundle = bundle
        self.backend = backend
        self.precision = precision
        self.device = device
        self.backend_options = dict(backend_options or {})
        self._sessions = {}
        self._runners = {}  # graph -> (session.run, batch min, batch max): the hot path looks up one dict
        self._prior = prior_from_manifest(bundle.model["prior"])
        self._eye = np.eye(len(bundle.model.get("labels") or []), dtype=np.float32)
        self._latent_dim = bundle.model["latent_dim"]
        self._out_range = tuple(bundle.model["output"]["range"])
        lo, hi = self._out_range[0] - RANGE_SLACK, self._out_range[1] + RANGE_SLACK
        self._checked_range = (lo, hi, _top_bits(lo, hi))
        self._conditional = bool(bundle.model["conditional"])
        self._decoder = None  # (run, batch min, batch max, the session's direct run of "x" or None), on first decode
        self._rng = None  # drawn from fresh entropy on the first unseeded sample (a RandomState is costly to seed)

    def __repr__(self):
        labels = self.labels
        if not labels:
            shown = "unconditional"
        elif len(labels) <= 10:
            shown = "labels " + ",".join(labels)
        else:
            shown = "{} labels {}..{}".format(len(labels), labels[0], labels[-1])
        return "Model({!r}: {}, {}-D {} latent, {}, output {}, {} {})".format(
            self.bundle.path, self.kind, self.latent_dim, self._prior.family, shown,
            "x".join(str(s) for s in self.output_shape), self.backend, self.precision)

    @classmethod
    def open(cls, bundle, backend=backends.DEFAULT, precision=None, device=None, key=None, **backend_options):
        """Open a bundle directory: check its manifest and every graph's size and sha256.

        ``backend`` a name in jetgen.runtime.backends (ort: ONNX Runtime, trt: TensorRT); ``precision``
        defaults to the backend's choice, else the bundle's; ``key`` (bytes or a key file's path; default:
        the file JETGEN_BUNDLE_KEY names) refuses a bundle not signed under it (jetgen.signing);
        ``device`` and ``backend_options`` go to the backend (see jetgen.runtime.backends.ort).
        Raises JetgenError when the bundle is missing, damaged, unsigned while a key is given, or of an
        unknown format.
        """
        if not isinstance(bundle, Bundle):
            bundle = Bundle.open(bundle, verify=True, key=key)
        if cls is Model:  # the modality's own model class (jetgen.modalities)
            cls = modalities.part(bundle.model["modality"], "runtime_model")
        return cls(bundle, backend, precision, device, backend_options)

    # -- what the bundle holds -------------------------------------------------------------------
    @property
    def manifest(self):
        return self.bundle.manifest

    @property
    def kind(self):
        return self.bundle.model["kind"]

    @property
    def modality(self):
        """What the model makes: a name in jetgen.spec.MODALITIES ("image", "points")."""
        return self.bundle.model["modality"]

    @property
    def latent_dim(self):
        return self.bundle.model["latent_dim"]

    @property
    def labels(self):
        return list(self.bundle.model["labels"])

    @property
    def conditional(self):
        return self.bundle.model["conditional"]

    @property
    def output_shape(self):
        return tuple(self.bundle.model["output"]["shape"])

    @property
    def output_range(self):
        return tuple(self.bundle.model["output"]["range"])

    @property
    def prior(self):
        """The latent prior (a jetgen.runtime.priors.Prior: ``family``, ``sample``, ``term``, ``project``)."""
        return self._prior

    @property
    def has_encoder(self):
        return self.bundle.has("encoder")

    # -- sessions --------------------------------------------------------------------------------
    def session(self, graph):
        """The backend session of ``graph`` (opened on first use)."""
        if graph not in self._sessions:
            path = self.bundle.graph_path(graph)
            self._sessions[graph] = backends.open_session(self.backend, path, self.bundle.graph(graph), self.bundle.path,
                                                 precision=self.precision, device=self.device,
                                                 **self.backend_options)
        return self._sessions[graph]

    def close(self):
        for session in self._sessions.values():
            session.close()
        self._sessions = {}
        self._runners = {}
        self._decoder = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _runner(self, graph):
        """(session.run, batch min, batch max) of ``graph``, looked up once per Model."""
        runner = self._runners.get(graph)
        if runner is None:
            if not self.bundle.has(graph):
                what = {"encoder": "an encoder", "latent_grad": "a latent_grad graph"}.get(graph, graph)
                raise JetgenError("This bundle ({}) has no {}; re-export it with one.".format(self.kind, what))
            batch = self.bundle.graph(graph)["batch"]
            runner = self._runners[graph] = (self.session(graph).run, batch["min"], batch["max"])
        return runner

    def run(self, graph, feeds, validate=True):
        """Run ``graph`` on float32 feeds of any batch size, in chunks that fit its batch range.

        The backend checks the feeds' names, shapes and batch unless ``validate`` is false, which this
        class's own methods pass because they checked their inputs already (batch-1 decode is hot)."""
        run, bmin, bmax = self._runners.get(graph) or self._runner(graph)
        feeds = dict((k, np.ascontiguousarray(v, dtype=np.float32)) for k, v in feeds.items())
        first = feeds[next(iter(feeds))] if feeds else None
        n = first.shape[0] if first is not None and first.ndim else None
        if n is None or (bmin <= n and (bmax is None or n <= bmax)):  # the hot path: one call, no chunking
            return run(feeds, validate)  # (n None: no inputs or a scalar, which the session's check names)
        return run_in_chunks(lambda chunk: run(chunk, validate), feeds, bmin, bmax)

    # -- argument checking -----------------------------------------------------------------------
    def label_matrix(self, labels, n):
        """(n, K) float32 one-hot rows and (n,) ints for ``labels``, or (None, None) for an unconditional model.

        ``labels``: an int or label name (used for all n), a list of ints/names of length n (or 1),
        or one-hot rows (n, K). JetgenError when missing on a conditional model, given to an
        unconditional one, out of range, or of the wrong count.
        """
        k = len(self.labels)
        if not self.conditional:
            if labels is not None:
                raise JetgenError("This model is not conditional; do not give labels.")
            return None, None
        if labels is None:
            raise JetgenError("This model is conditional: give labels (integers 0 to {}, or names {}).".format(
                k - 1, ", ".join(self.labels)))
        if isinstance(labels, (bool, np.bool_)) or (isinstance(labels, (list, tuple)) and any(
                isinstance(v, (bool, np.bool_)) or (isinstance(v, (list, tuple)) and any(
                    isinstance(u, (bool, np.bool_)) for u in v)) for v in labels)):  # True is an int: never label 1
            raise JetgenError("Labels are integers 0 to {} or names ({}), not true or false.".format(
                k - 1, ", ".join(self.labels[:10])))
        if _is_int(labels) and 0 <= labels < k:  # the common case, without building arrays
            return np.repeat(self._eye[labels:labels + 1], n, axis=0), np.full(n, int(labels), dtype=np.int64)
        if isinstance(labels, (list, tuple)) and labels and all(_is_int(v) for v in labels):
            labels = np.asarray(labels, dtype=np.int64)
        if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu" and labels.size:
            if labels.min() < 0 or labels.max() >= k:  # integer labels: index the one-hot rows directly
                bad = labels[(labels < 0) | (labels >= k)][0]
                raise JetgenError("Label {} is out of range; this model has labels 0 to {}.".format(int(bad), k - 1))
            return self._fit_count(self._eye[labels], labels.astype(np.int64, copy=False), n)
        if isinstance(labels, (str, float, np.number)) or _is_int(labels):  # one label, maybe 2.0 or 1.5
            labels = [labels]
        values = list(labels) if not isinstance(labels, np.ndarray) else labels
        if len(values) and all(isinstance(v, str) for v in values):
            unknown = [v for v in values if v not in self.labels]
            if unknown:
                raise JetgenError("Unknown label {!r}; this model's labels are {}.".format(unknown[0], ", ".join(self.labels)))
            values = [self.labels.index(v) for v in values]
        arr = _float_array(values, "labels")
        if arr.ndim == 2:
            if arr.shape[1] != k:
                raise JetgenError("One-hot labels need {} columns, not {}.".format(k, arr.shape[1]))
            if arr.size and (arr.min() < 0 or arr.max() > 1):
                raise JetgenError("One-hot labels must lie in [0, 1].")
            onehot = arr
            ints = np.argmax(arr, axis=1)
        elif arr.ndim == 1:
            if np.any(arr != np.round(arr)):
                raise JetgenError("Labels must be whole numbers from 0 to {}.".format(k - 1))
            if np.any(arr < 0) or np.any(arr >= k):
                bad = arr[(arr < 0) | (arr >= k)][0]
                raise JetgenError("Label {} is out of range; this model has labels 0 to {}.".format(int(bad), k - 1))
            ints = arr.astype(np.int64)
            onehot = self._eye[ints]
        else:
            raise JetgenError("Labels must be an int, a list of ints, or one-hot rows.")
        return self._fit_count(onehot, ints, n)

    @staticmethod
    def _fit_count(onehot, ints, n):
        """One label for all n examples, or exactly n; float32 one-hot rows and int labels."""
        if len(onehot) == 1 and n != 1:
            onehot, ints = np.repeat(onehot, n, axis=0), np.repeat(ints, n)
        if len(onehot) != n:
            raise JetgenError("Got {} labels for {} examples; give one label per example, or a single label.".format(
                len(onehot), n))
        return onehot.astype(np.float32, copy=False), ints

    def _latents(self, z):
        arr = _float_array(z, "latent")
        if arr.size and float(np.abs(arr).max()) > MAX_LATENT_INPUT:  # 1e39 is valid JSON but overflows float32
            raise JetgenError("The latent holds values up to {:.3g}; latents must lie within +-{:g} (this model's "
                              "prior draws lie within about +-{:.3g}).".format(float(np.abs(arr).max()), MAX_LATENT_INPUT,
                                                                              self._prior_reach()))
        if arr.ndim == 2 and arr.shape[1] == self._latent_dim:  # the usual (n, D) batch
            return arr
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != self.latent_dim:
            raise JetgenError("Latents must have {} values each (shape (n, {})), not shape {}.".format(
                self.latent_dim, self.latent_dim, tuple(np.shape(z))))
        return arr

    def _prior_reach(self):
        """About the largest |z| the prior draws (6 standard deviations, or its bounds), from the manifest."""
        reach = getattr(self, "_reach", None)
        if reach is None:
            p = self.bundle.model["prior"]["params"]
            family = self.bundle.model["prior"]["family"]
            if family == "gaussian":
                reach = max(abs(m) + 6 * s for m, s in zip(p["mean"], p["std"]))
            elif family == "exponential":
                reach = 40.0 / min(p["rate"])  # -log(U) of a float64 uniform stays below 40
            elif family == "uniform":
                reach = max(abs(v) for v in p["low"] + p["high"])
            else:  # gmm
                spread = [v for c in p["covariances"] for v in (c if p["covariance_type"] == "diag" else
                                                                [row[i] for i, row in enumerate(c)])]
                reach = max(abs(v) for m in p["means"] for v in m) + 6 * max(spread) ** 0.5
            self._reach = reach = max(float(reach), 1.0)
        return reach

    def _label_rows(self, labels, n):
        """(n, K) float32 one-hot rows, or None for an unconditional model: ``label_matrix`` without
        the integer labels, with the two common forms (one int, float32 one-hot rows) checked directly."""
        if self._conditional and labels is not None:
            if type(labels) is np.ndarray and labels.dtype is _F32 and labels.shape == (n, len(self._eye)):
                if not _in_range(labels, 0.0, 1.0, ONE_BITS):
                    raise JetgenError("One-hot labels must lie in [0, 1].")
                return labels
            if _is_int(labels) and 0 <= labels < len(self._eye):
                row = self._eye[labels:labels + 1]
                return row if n == 1 else np.repeat(row, n, axis=0)
        return self.label_matrix(labels, n)[0]

    def _inputs(self, x, what="input"):
        arr = _float_array(x, what)
        shape = self.output_shape
        if arr.shape == shape:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[1:] != shape:
            raise JetgenError("The {} must have shape (n, {}, {}, {}) or ({}, {}, {}), not {}.".format(
                what, *(shape + shape + (tuple(arr.shape),))))
        lo, hi = self.output_range
        if arr.size and (arr.min() < lo - RANGE_SLACK or arr.max() > hi + RANGE_SLACK):
            raise JetgenError("The {} has values from {:.3g} to {:.3g}, outside this model's range [{}, {}].".format(
                what, arr.min(), arr.max(), lo, hi))
        return np.clip(arr, lo, hi)

    def _mask(self, mask, shape):
        arr = _float_array(mask, "mask")
        if arr.shape == tuple(shape[1:]) or arr.shape == tuple(shape[2:]):  # one (C, H, W) or (H, W) mask for all
            arr = np.broadcast_to(arr, shape)
        if arr.shape != tuple(shape):
            raise JetgenError("The mask has shape {} but the input has shape {}; give one mask per input or one "
                              "for all.".format(tuple(np.shape(mask)), tuple(shape)))
        if np.any((arr != 0) & (arr != 1)):
            raise JetgenError("The mask must hold only 0 (hidden) and 1 (observed).")
        return np.ascontiguousarray(arr)

    @staticmethod
    def _count(n, what="n"):
        if not _is_int(n) or n < 1:
            raise JetgenError("{} must be a positive integer, not {!r}.".format(what, n))
        return int(n)

    # -- generation ------------------------------------------------------------------------------
    def decode(self, z, labels=None):
        """Decode latents (n, D) (or one (D,)) to outputs (n, C, H, W) float32. ``labels`` as in
        ``label_matrix``. JetgenError for latents of the wrong shape or with NaN or infinity, bad labels,
        and decoder outputs outside the declared range (a broken graph or engine)."""
        if not (type(z) is np.ndarray and z.dtype is _F32 and z.ndim == 2 and z.shape[1] == self._latent_dim
                and _all_finite(z)):  # anything but a finite float32 (n, D) batch: the full check
            z = self._latents(z)
        return self._decode(z, self._label_rows(labels, len(z)))

    def _decode(self, z, y):
        """The decoder on checked latents and one-hot rows (None: unconditional)."""
        if self._decoder is None:
            direct = getattr(self.session("decoder"), "output_runner", None)
            self._decoder = self._runner("decoder") + ((direct("x") if direct else None),)
        run, bmin, bmax, direct = self._decoder
        if z.dtype is not _F32 or not z.flags.c_contiguous:
            z = np.ascontiguousarray(z, dtype=np.float32)
        if y is None:
            feeds = {"z": z}
        else:
            feeds = {"z": z, "y": y if y.dtype is _F32 and y.flags.c_contiguous else
                     np.ascontiguousarray(y, dtype=np.float32)}
        n = len(z)
        if bmin <= n and (bmax is None or n <= bmax):  # batch-1 decode is the hottest path there is
            x = direct(feeds) if direct is not None else run(feeds, False)["x"]
        else:
            x = run_in_chunks(lambda chunk: run(chunk, False), feeds, bmin, bmax)["x"]
        if not _in_range(x, *self._checked_range):  # NaN, infinity or outside the declared range
            lo, hi = self._out_range
            reach = float(np.abs(z).max()) if z.size else 0.0
            if reach > 10 * self._prior_reach():  # the caller's latents, not the bundle, are the cause
                raise JetgenError("The decoder's outputs left its declared range [{:g}, {:g}] because the latents lie "
                                  "far outside the prior (values up to {:.3g}; prior draws lie within about +-{:.3g}); "
                                  "give latents nearer the prior.".format(lo, hi, reach, self._prior_reach()))
            raise JetgenError("The decoder graph returned values outside its declared range [{:g}, {:g}] (from {} to "
                              "{}, at {} precision); the graph or its engine is broken: run jetgen verify.".format(
                                  lo, hi, x.min(), x.max(), self.precision))
        return x

    def sample(self, n, labels=None, temperature=1.0, seed=None, return_latents=False):
        """Draw n latents from the model's prior (scaled by ``temperature``) and decode them.

        Returns (n, C, H, W) float32, or (x, z) with ``return_latents``. ``labels`` as in
        ``label_matrix``; a conditional model given none shares the n samples evenly among all its
        labels, in label order. The same seed gives the same samples; without one, draws continue one
        stream seeded from fresh entropy when the first unseeded sample is drawn.
        """
        n = n if type(n) is int and n > 0 else self._count(n)
        if labels is None and self._conditional:
            labels = np.arange(n) * len(self.labels) // n
        y = self._label_rows(labels, n)
        if seed is None:
            if self._rng is None:
                self._rng = make_rng(None)
            rng = self._rng
        else:
            rng = make_rng(seed)
        z = self._prior.sample(n, temperature, rng)
        if not _all_finite(z):
            raise JetgenError("A temperature of {!r} makes the prior draw overflow; give a smaller one.".format(
                temperature))
        x = self._decode(z, y)
        return (x, z) if return_latents else x

    def encode(self, x, labels=None):
        """Posterior (mu, logvar), each (n, D) float32, for inputs (n, C, H, W); needs an encoder."""
        if not self.has_encoder:
            raise JetgenError("This bundle ({}) has no encoder; use complete() with a full mask to find latents."
                              .format(self.kind))
        x = self._inputs(x)
        y, _ = self.label_matrix(labels, len(x))
        feeds = {"x": x}
        if y is not None:
            feeds["y"] = y
        out = self.run("encoder", feeds, validate=False)
        return out["mu"], out["logvar"]

    def _to_latent(self, value, y, seed):
        arr = np.asarray(value, dtype=np.float64) if not isinstance(value, np.ndarray) else value
        if arr.ndim == 1 or (arr.ndim == 2 and arr.shape[0] == 1 and arr.shape[1] == self.latent_dim):
            return self._latents(arr)[0]
        x = self._inputs(arr, "interpolation end point")
        if len(x) != 1:
            raise JetgenError("An interpolation end point must be one latent or one input, not {}.".format(len(x)))
        if self.has_encoder:
            return self.encode(x, y)[0][0].astype(np.float64)
        return self.complete(x, np.ones_like(x), labels=y, seed=seed, steps=200).z[0].astype(np.float64)

    def interpolate(self, a, b, steps=10, mode="linear", labels=None, seed=0):
        """Decode a path of ``steps`` points from a to b; returns (x (steps, C, H, W), z (steps, D)).

        a and b are latents (D,) or inputs of the output shape; inputs become latents through the
        encoder mean, or for encoder-less models through ``complete`` with a full mask. ``mode``
        "linear" or "slerp" (great circle in the prior's standardised coordinates).
        """
        steps = self._count(steps, "steps")
        if steps < 2:
            raise JetgenError("Interpolation needs at least 2 steps.")
        if mode not in ("linear", "slerp"):
            raise JetgenError("Interpolation mode must be linear or slerp, not {!r}.".format(mode))
        y, _ = self.label_matrix(labels, steps)
        za = self._to_latent(a, None if y is None else y[:1], seed)
        zb = self._to_latent(b, None if y is None else y[-1:], seed)
        t = np.linspace(0.0, 1.0, steps)
        if mode == "linear":
            z = np.outer(1 - t, za) + np.outer(t, zb)
        else:
            u = _slerp(self._prior.standardise(za[None])[0], self._prior.standardise(zb[None])[0], t)
            z = self._prior.unstandardise(u)
        z = self._prior.project(z).astype(np.float32)
        return self.decode(z, y), z

    def reconstruct(self, x, labels=None):
        """Inputs (n, C, H, W) through the encoder mean and the decoder; encoder-less: latent optimisation."""
        x = self._inputs(x)
        y, _ = self.label_matrix(labels, len(x))
        if self.has_encoder:
            return self.decode(self.encode(x, y)[0], y)
        return self.complete(x, np.ones_like(x), labels=y, seed=0).decoded

    # -- completion by latent optimisation -------------------------------------------------------
    def loss_grad(self, z, target, mask, y=None):
        """The latent_grad graph: per-example masked NLL (B,) and its gradient (B, D), float64."""
        feeds = {"z": np.asarray(z, np.float32), "target": target, "mask": mask}
        if y is not None:
            feeds["y"] = y
        out = self.run("latent_grad", feeds)  # public: its feeds are not checked before this
        loss, grad = out["loss"].astype(np.float64), out["grad"].astype(np.float64)
        if not (np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))):
            raise JetgenError("The latent_grad graph returned NaN or infinite values (at {} precision); try fp32 "
                              "or a smaller lr.".format(self.precision))
        return loss.reshape(-1), grad

    def _init(self, init, x, mask, y, seed):
        n = len(x)
        if isinstance(init, str):
            if init == "prior_mean":
                z = np.tile(self._prior.mean(), (n, 1))
            elif init == "encoder":
                z = self.encode(x * mask, y)[0]
            elif init == "random":
                z = self._prior.sample(n, 1.0, make_rng(seed))
            else:
                raise JetgenError("init must be one of {} or an array of latents, not {!r}{}.".format(
                    ", ".join(i for i in INITS if i != "multistart"), init,
                    " (multistart is for point-cloud bundles)" if init == "multistart" else ""))
        else:
            z = self._latents(init)
            if len(z) == 1:
                z = np.repeat(z, n, axis=0)
            if len(z) != n:
                raise JetgenError("Got {} initial latents for {} inputs.".format(len(z), n))
        return self._prior.project(np.asarray(z, dtype=np.float64))

    def complete(self, x, mask, labels=None, steps=COMPLETE_STEPS, lr=5e-2, tol=COMPLETE_TOL, init="prior_mean",
                 seed=None, prior_weight=1.0, window=COMPLETE_WINDOW, callback=None):
        """Fill the hidden part (mask 0) of inputs by optimising their latents with Adam.

        Minimises, per example, the masked negative log-likelihood from ``latent_grad.onnx`` plus
        ``prior_weight`` times the prior term, projecting onto the prior's support after each step.
        Examples are independent (a batch gives the same answers as one at a time). ``init``:
        "prior_mean" (default), "encoder" (encoder mean of the masked input), "random" (a seeded
        prior draw) or an array of latents. With ``tol``, an example stops when its best objective so
        far improved by less than ``tol`` (relative) over the last ``window`` steps; the run ends when
        all have stopped (``tol=None``: always ``steps`` steps). The defaults (COMPLETE_STEPS,
        COMPLETE_TOL, COMPLETE_WINDOW) were chosen by measurement (benchmarks/results.md).
        ``labels="infer"`` tries every label (in one batch) and keeps, per example, the one with the
        lowest final objective.
        ``callback(step, z, objective)``, when given, is called after each evaluation with the float64
        latents (B, D) and objectives (B,) at that step (with labels="infer" the rows are every
        (example, label) pair, example-major); an exception it raises ends the run.
        Returns a ``Completion``. Raises JetgenError for bad shapes, NaN, a mask not of 0/1, bad
        labels or a bundle without a latent_grad graph.
        """
        x = self._inputs(x)
        mask = self._mask(mask, x.shape)
        steps, lr, tol, prior_weight, window = self._complete_args(steps, lr, tol, prior_weight, window)
        if isinstance(labels, str) and labels == "infer":
            return self._complete_infer(x, mask, steps, lr, tol, init, seed, prior_weight, window, callback)
        y, ints = self.label_matrix(labels, len(x))
        if not self.bundle.has("latent_grad"):
            raise JetgenError("This bundle has no latent_grad graph, which complete() needs; re-export it.")
        z = self._init(init, x, mask, y, seed)
        evaluate, release = self._evaluator(x, mask, y)
        try:
            best_z, best, best_nll, history = self._optimise(evaluate, z, steps, lr, tol, prior_weight, window,
                                                             callback)
        finally:
            release()
        decoded = self._decode(best_z, y)
        completed = np.where(mask == 1, x, decoded).astype(np.float32)
        return Completion(z=best_z, x=completed, decoded=decoded, loss=best, nll=best_nll,
                          history=np.array(history), steps=len(history) - 1, labels=ints)

    def _complete_args(self, steps, lr, tol, prior_weight, window):
        steps = int(steps) if _is_int(steps) and steps >= 0 else self._count(steps, "steps")
        try:
            lr, prior_weight = float(lr), float(prior_weight)
        except (TypeError, ValueError):
            raise JetgenError("lr and prior_weight must be numbers.")
        if not (lr > 0 and np.isfinite(lr)) or not (prior_weight >= 0 and np.isfinite(prior_weight)):
            raise JetgenError("lr must be positive and prior_weight >= 0.")
        if tol is not None:
            try:
                tol = float(tol)
            except (TypeError, ValueError):
                tol = float("nan")
            if not tol >= 0:
                raise JetgenError("tol must be a number >= 0.")
        return steps, lr, tol, prior_weight, self._count(window, "window")

    def _evaluator(self, x, mask, y):
        """(evaluate(z, rows) -> (nll (len(rows),), grad (len(rows), D)) float64, release()) for the
        loop of ``complete``, on checked inputs. Where the session keeps inputs on its device
        (TensorRT), target, mask and labels are copied there once per call and each step moves only z
        in and loss and grad out; the whole batch runs every step (rows that stopped are ignored, a
        GPU runs them for nothing). Elsewhere each step runs only the rows still active."""
        run, bmin, bmax = self._runner("latent_grad")
        session = self.session("latent_grad")
        fixed = {"target": x, "mask": mask}
        if y is not None:
            fixed["y"] = y
        n = len(x)
        if getattr(session, "device_resident", False) and bmin <= n and (bmax is None or n <= bmax):
            session.hold(fixed)
            resident = True
        else:
            resident = False

        def evaluate(z, rows):
            if resident:
                out = run({"z": np.ascontiguousarray(z, dtype=np.float32)}, False)
                loss, grad = out["loss"].reshape(-1)[rows], out["grad"][rows]
            else:
                feeds = dict(fixed) if len(rows) == n else dict((k, v[rows]) for k, v in fixed.items())
                feeds["z"] = z if len(rows) == n else z[rows]
                out = self.run("latent_grad", feeds, validate=False)
                loss, grad = out["loss"].reshape(-1), out["grad"]
            if not (_all_finite(loss) and _all_finite(grad)):
                raise JetgenError("The latent_grad graph returned NaN or infinite values (at {} precision); try "
                                  "fp32 or a smaller lr.".format(self.precision))
            return loss.astype(np.float64), grad.astype(np.float64)

        return evaluate, (session.release if resident else (lambda: None))

    def _optimise(self, evaluate, z, steps, lr, tol, prior_weight, window, callback=None):
        """Adam on the rows of z with per-row early stopping (jetgen.runtime.completion.optimise)."""
        return completion.optimise(evaluate, self._prior, z, steps, lr, tol, prior_weight, window, callback)

    def _complete_infer(self, x, mask, steps, lr, tol, init, seed, prior_weight, window, callback=None):
        if not self.conditional:
            raise JetgenError("labels='infer' needs a conditional model.")
        n, k = len(x), len(self.labels)
        if not isinstance(init, str):
            init = np.repeat(self._latents(init), k, axis=0) if len(self._latents(init)) == n else init
        cand = np.tile(np.arange(k), n)
        r = self.complete(np.repeat(x, k, axis=0), np.repeat(mask, k, axis=0), labels=cand, steps=steps, lr=lr,
                          tol=tol, init=init, seed=seed, prior_weight=prior_weight, window=window, callback=callback)
        table = r.loss.reshape(n, k)
        pick = np.argmin(table, axis=1)
        idx = np.arange(n) * k + pick
        return Completion(z=r.z[idx], x=r.x[idx], decoded=r.decoded[idx], loss=r.loss[idx], nll=r.nll[idx],
                          history=r.history[:, idx], steps=r.steps, labels=pick, label_losses=table)
