"""The JSON API of ``jetgen serve``: models, sample, decode, interpolate, encode, complete (jobs), directions.

Every handler takes a parsed JSON body (or query) and returns a JSON-ready dict, or raises
``ApiError(status, sentence)``. Inputs are checked by the runtime's own functions (``Model.sample``,
``Model.label_matrix``, ``jetgen.runtime.images``), so a bad request gets the same sentence as the
CLI; the few limits that exist only because a server is shared (how many samples in one request,
how many steps) are checked here first. One inference runs at a time per model (``ModelSlot``);
waiting requests form a bounded queue. Images travel as base64 PNG. The endpoints are listed in
docs/serve.md. numpy and the standard library; Python 3.6 compatible.
"""
import base64
import binascii
import math
import os
import secrets
import struct
import sys
import threading
import time

import numpy as np

from jetgen import __version__
from jetgen import modalities
from jetgen.errors import JetgenError
from jetgen.modalities.image.codec import (MASK_REGIONS, as_batch, decode_image, encode_png, grid, png_header,
                                           region_mask)
from jetgen.runtime import Model, backends

MAX_SAMPLES = 256          # images in one sample/decode request
MAX_PATH_STEPS = 64        # points on one interpolation path
MAX_COMPLETE_STEPS = 2000  # optimisation steps of one completion
MAX_INPUTS = 16            # images in one encode/complete request
MAX_DIRECTIONS = 16        # latent directions for the Explore sliders
DIRECTION_SAMPLES = 512    # prior draws whose decoded outputs give the directions
MAX_JOBS = 64              # finished completion jobs remembered (oldest forgotten first)
JOB_KEEP_S = 600.0         # a finished job can be read for this long
PROGRESS_EVERY_S = 0.08    # at most this often a progress image is decoded during a completion
RGB_TO_GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # as jetgen.runtime.images.load_images


class ApiError(Exception):
    """A request the API refuses: ``status`` (HTTP code), ``message`` (one sentence), extra ``headers``."""

    def __init__(self, status, message, headers=None):
        Exception.__init__(self, message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class _Stop(Exception):
    """Raised inside a completion's callback to end it (cancelled, or past its time limit)."""


def _stop_at_once(step, z, objective):
    raise _Stop("checked")


# -- request fields ------------------------------------------------------------------------------
def _fields(body, allowed):
    """The body as a dict; 400 for a non-object or a field this endpoint does not take."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    for key in body:
        if key not in allowed:
            raise ApiError(400, "Unknown field {!r}; this endpoint takes: {}.".format(key, ", ".join(allowed)))
    return body


def _labels_fit(slot, body):
    """The body, after refusing ``labels`` for a model that is not conditional (docs/serve.md: never ignored)."""
    if body.get("labels") is not None and not slot.model.conditional:
        raise ApiError(400, "This model is not conditional; do not give labels (model {}).".format(slot.name))
    return body


def _at_most(value, limit, what):
    """400 when an integer ``value`` is above the server's ``limit``; other types go on to the runtime's checks."""
    if isinstance(value, int) and not isinstance(value, bool) and value > limit:
        raise ApiError(400, "{} must be at most {} in one request to this server.".format(what, limit))
    return value


def _rows_at_most(value, limit, what):
    if isinstance(value, list) and value and isinstance(value[0], list) and len(value) > limit:
        raise ApiError(400, "At most {} {} fit in one request to this server, not {}.".format(limit, what, len(value)))
    return value


def _flag(body, key, default=False):
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise ApiError(400, "{} must be true or false.".format(key))
    return value


def _half(model):
    """The model's modality's own half of this API (jetgen.modalities), or None when this module serves it."""
    return modalities.part(model.modality, "serve")


def fresh_seed():
    """A random seed from 0 to 2**32-1, returned to the caller so a draw can be repeated."""
    return struct.unpack(">I", os.urandom(4))[0]


# -- images in and out ---------------------------------------------------------------------------
def png_b64(x):
    """Base64 PNG strings, one per image of (n, C, H, W) in [0, 1] (the runtime's grid and PNG writer)."""
    x = np.asarray(x, dtype=np.float32)
    return [base64.b64encode(encode_png(grid(x[i:i + 1]))).decode("ascii") for i in range(len(x))]


def _png_pixels(data, shape, what):
    """float32 (H, W) or (H, W, 3) in [0, 1] from PNG bytes of exactly the model's H x W (the image codec's
    reader: alpha dropped, the size checked from the header before anything is decoded)."""
    c, h, w = shape
    width, height = png_header(data[:33], "The " + what)[:2]
    if (height, width) != (h, w):  # checked before decoding, so a huge declared size costs nothing
        raise JetgenError("The {} is {}x{} pixels, but this model takes {}x{} images.".format(what, width, height, w, h))
    return decode_image(data, "The " + what)


def read_images(value, shape, what="image", limit=MAX_INPUTS):
    """Inputs (n, C, H, W) float32 for a model of output ``shape`` from a request field.

    ``{"png": BASE64}`` (one image of H x W; RGB to grey for one-channel models, grey to RGB for
    three) or ``{"array": NESTED_LIST}`` / a nested list: (C, H, W), (n, C, H, W), or (H, W) /
    (n, H, W) for one-channel models, as ``jetgen.runtime.images.load_images`` reads .npy files.
    Values are checked (finite, in range) by the Model method that receives them.
    """
    c, h, w = shape
    if isinstance(value, dict) and set(value) == {"png"}:
        text = value["png"]
        if not isinstance(text, str):
            raise JetgenError("The {}'s png must be a base64 string.".format(what))
        if text.startswith("data:"):  # a data URL from canvas.toDataURL
            text = text.split(",", 1)[-1]
        try:
            data = base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise JetgenError("The {}'s png is not valid base64.".format(what))
        img = _png_pixels(data, shape, what)
        if img.ndim == 3 and c == 1:
            img = img.dot(RGB_TO_GREY)
        if img.ndim == 2 and c == 3:
            img = np.repeat(img[..., None], 3, axis=2)
        return img[None, None] if img.ndim == 2 else np.transpose(img, (2, 0, 1))[None]
    if isinstance(value, dict) and set(value) == {"array"}:
        value = value["array"]
    if not isinstance(value, list):
        raise JetgenError('The {} must be {{"png": BASE64}}, {{"array": NESTED_LIST}} or a nested list of numbers.'
                          .format(what))
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise JetgenError("The {} is not an array of numbers.".format(what))
    arr = as_batch(arr, shape)
    if arr.ndim != 4 or arr.shape[1:] != (c, h, w):
        raise JetgenError("The {} has shape {}, but this model takes ({}, {}, {}) images.".format(
            what, tuple(arr.shape), c, h, w))
    if len(arr) > limit:
        raise ApiError(400, "At most {} {}s fit in one request to this server, not {}.".format(limit, what, len(arr)))
    return arr


def read_mask(body, shape, n):
    """The mask (1 = observed) from ``mask`` (an image field: PNG white = observed, or 0/1 numbers) or
    ``region`` (one of jetgen.runtime.images.MASK_REGIONS); exactly one of them, as the CLI asks."""
    has_mask, has_region = body.get("mask") is not None, body.get("region") is not None
    if has_mask == has_region:
        raise JetgenError("Give exactly one of mask or region ({}).".format(", ".join(MASK_REGIONS)))
    if has_region:
        return region_mask(body["region"], shape)
    mask = body["mask"]
    if isinstance(mask, dict) and "png" in mask:  # as load_mask reads a PNG: white = observed
        return (read_images(mask, shape, "mask") >= 0.5).astype(np.float32)[0]
    arr = read_images(mask, shape, "mask")
    return arr[0] if len(arr) == 1 and n > 1 else arr


# -- a model and its turn ------------------------------------------------------------------------
class ModelSlot(object):
    """One opened model, its lock (one inference at a time) and a bounded queue of waiting requests."""

    def __init__(self, name, path, model, max_queue):
        self.name = name
        self.path = path
        self.model = model
        self.max_queue = max_queue
        self.lock = threading.Lock()
        self._count = threading.Lock()
        self.pending = 0          # running + waiting requests and jobs
        self.mean_s = 0.05        # running mean of one turn, for Retry-After
        self.card = None
        self._directions = None
        self.closing = False      # set when the server stops: no new turn starts

    def reserve(self):
        """Take a place in the queue; 429 with Retry-After when it is full."""
        with self._count:
            if self.pending >= 1 + self.max_queue:
                wait = max(1, int(math.ceil(self.pending * self.mean_s)))
                raise ApiError(429, "Model {} is busy ({} requests waiting); try again in {} s.".format(
                    self.name, self.pending - 1, wait), {"Retry-After": str(wait)})
            self.pending += 1

    def release_place(self):
        with self._count:
            self.pending -= 1

    def acquire(self, timeout):
        """Wait up to ``timeout`` seconds for the model; 503 with Retry-After when it stays busy."""
        if not self.lock.acquire(timeout=max(0.0, timeout)):
            raise ApiError(503, "Model {} stayed busy for {:.0f} s; try again later.".format(self.name, timeout),
                           {"Retry-After": str(max(1, int(math.ceil(self.pending * self.mean_s))))})
        if self.closing:
            self.lock.release()
            raise ApiError(503, "The server is stopping; try again when it is back.")
        return time.monotonic()

    def done(self, started):
        self.mean_s = 0.8 * self.mean_s + 0.2 * (time.monotonic() - started)
        self.lock.release()

    def run(self, func, timeout):
        """``func(model)`` in this model's turn: queue place, lock, run, release."""
        self.reserve()
        try:
            started = self.acquire(timeout)
            try:
                return func(self.model)
            finally:
                self.done(started)
        finally:
            self.release_place()


# -- completion jobs -----------------------------------------------------------------------------
class Job(object):
    """A completion running in its own thread; progress readable by polling or as server-sent events."""

    def __init__(self, job_id, slot, steps):
        self.id = job_id
        self.slot = slot
        self.steps = steps
        self.state = "queued"        # queued, running, done, error, cancelled
        self.step = 0
        self.losses = []             # mean objective over the inputs, before the first step and after each
        self.image = None            # latest progress images (base64 PNG list)
        self.labels = None           # current best label per input (conditional models)
        self.render = None           # latest progress render of a 3D completion (base64 PNG)
        self.result = None
        self.error = None            # (status, sentence)
        self.version = 0
        self.finished = None
        self.cancelled = False
        self.cond = threading.Condition()

    @property
    def over(self):
        return self.state in ("done", "error", "cancelled")

    def update(self, loss=None, **values):
        """Set attributes (and append ``loss`` to ``losses``), then wake whoever waits on the job."""
        with self.cond:
            for key, value in values.items():
                setattr(self, key, value)
            if loss is not None:
                self.losses.append(loss)
            self.version += 1
            if self.over and self.finished is None:
                self.finished = time.monotonic()
            self.cond.notify_all()

    def wait(self, version, timeout):
        """Block until the job changed past ``version``, ended, or ``timeout`` passed; return the version."""
        with self.cond:
            if self.version == version and not self.over:
                self.cond.wait(timeout)
            return self.version

    def snapshot(self, since=0):
        """What polling returns: state, step, losses from index ``since``, latest images, result or error."""
        with self.cond:
            out = {"job": self.id, "model": self.slot.name, "state": self.state, "version": self.version, "step": self.step,
                   "steps": self.steps, "losses_from": since, "losses": self.losses[since:],
                   "images": self.image, "labels": self.labels}
            if self.render is not None:
                out["render"] = self.render
            if self.result is not None:
                out["result"] = self.result
            if self.error is not None:
                out["error"] = self.error[1]
            return out


# -- the API -------------------------------------------------------------------------------------
def _model_name(path, taken):
    base = os.path.basename(os.path.normpath(path))
    if base.endswith(".jetgen"):
        base = base[:-len(".jetgen")]
    base = "".join(ch if (ch.isalnum() and ord(ch) < 128) or ch in "._-" else "-" for ch in base).strip(".") or "model"
    name, k = base, 2
    while name in taken:
        name, k = "{}-{}".format(base, k), k + 1
    return name


class Api(object):
    """The models a server holds and the handlers of every endpoint (see docs/serve.md)."""

    def __init__(self, bundles, backend=backends.DEFAULT, precision=None, device=None, threads=None, max_queue=16,
                 request_timeout=30.0, job_timeout=120.0, log=None):
        if not bundles:
            raise JetgenError("Give at least one bundle to serve.")
        self.backend, self.request_timeout, self.job_timeout = backend, float(request_timeout), float(job_timeout)
        self.log = log or (lambda line: None)
        self.slots = {}
        self.order = []
        self.jobs = {}
        self._jobs_lock = threading.Lock()
        extra = backends.session_options(backend, threads)  # as the CLI's open_model
        try:
            for path in bundles:
                model = Model.open(path, backend=backend, precision=precision, device=device, **extra)
                name = _model_name(path, self.slots)
                self.slots[name] = ModelSlot(name, os.path.abspath(path), model, max_queue)
                self.order.append(name)
                self.slots[name].card = self._card(self.slots[name])
        except BaseException:
            self.close()
            raise
        from jetgen.bench.device_info import describe
        self.device = describe(include_modules=False)
        # versions of what the backends loaded: importing tensorrt only to name it costs memory on a Nano
        self.device["versions"] = dict((name, getattr(sys.modules[name], "__version__", None))
                                       for name in ("numpy", "onnxruntime", "tensorrt") if name in sys.modules)

    def close(self):
        for slot in self.slots.values():
            slot.model.close()

    def stop(self, grace):
        """Cancel every job, wait up to ``grace`` seconds for each model's running inference to end,
        and close the sessions of the models that became idle (their turn is then held for good, so no
        request starts another). Returns how many models were still busy and were left open."""
        for slot in self.slots.values():
            slot.closing = True
        with self._jobs_lock:
            for job in self.jobs.values():
                job.cancelled = True
        deadline, busy = time.monotonic() + grace, 0
        for slot in self.slots.values():
            if slot.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                slot.model.close()
            else:
                busy += 1
        return busy

    # -- helpers ---------------------------------------------------------------------------------
    def slot(self, name):
        if name not in self.slots:
            raise ApiError(404, "No model named {!r} here; the models are: {}.".format(name, ", ".join(self.order)))
        return self.slots[name]

    @staticmethod
    def _images_only(slot):
        # encode and directions take images; a 3D model is sampled, decoded, interpolated and completed
        if slot.card["output"]["type"] != "image":
            raise ApiError(400, "Model {} is a {} model; this endpoint takes image models.".format(
                slot.name, slot.card["output"]["type"]))

    def _card(self, slot):
        """What the page shows about a model; warms its decoder and measures batch-1 decode latency."""
        m = slot.model
        man = m.manifest
        graphs = dict((name, {"parity": m.bundle.graph(name).get("parity"), "batch": m.bundle.graph(name).get("batch")})
                      for name in m.bundle.graph_names())
        z = m.prior.sample(1, 1.0, 0)
        y = 0 if m.conditional else None
        times = []
        for _ in range(6):
            t0 = time.perf_counter()
            m.decode(z, y)
            times.append((time.perf_counter() - t0) * 1000.0)
        providers = getattr(m.session("decoder"), "providers", None)
        target = man.get("target")
        prov = man.get("provenance") or {}
        card = {
            "name": slot.name, "bundle_name": man.get("name"), "kind": m.kind, "arch": m.bundle.model.get("arch"),
            "output": {"type": "image", "shape": list(m.output_shape), "range": list(getattr(m, "output_range", ()))},
            "latent_dim": m.latent_dim, "prior": m.prior.family, "conditional": m.conditional,
            "labels": m.labels, "likelihood": (m.bundle.model.get("likelihood") or {}).get("name"),
            "precision": m.precision, "backend": m.backend, "device": m.device, "providers": providers,
            "target": target.get("name") if isinstance(target, dict) else target,
            "graphs": graphs, "can": {"encode": m.has_encoder, "complete": m.bundle.has("latent_grad")},
            "latency_ms": {"decode_batch1_median": round(float(np.median(times[1:])), 3)},
            "quality": man.get("quality"), "metrics": prov.get("metrics"), "data": prov.get("data"),
            "created": man.get("created"),
        }
        half = _half(m)
        if half is not None:
            card.update(half.card(m))
        return card

    # -- endpoints -------------------------------------------------------------------------------
    def info(self):
        return {"jetgen": __version__, "device": self.device, "backend": self.backend,
                "models": list(self.order),
                "limits": {"samples": MAX_SAMPLES, "path_steps": MAX_PATH_STEPS, "complete_steps": MAX_COMPLETE_STEPS,
                           "inputs": MAX_INPUTS, "directions": MAX_DIRECTIONS,
                           "request_timeout_s": self.request_timeout, "job_timeout_s": self.job_timeout}}

    def models(self):
        return {"models": [self.slots[name].card for name in self.order]}

    def model(self, name):
        return self.slot(name).card

    def sample(self, name, body):
        slot = self.slot(name)
        body = _labels_fit(slot, _fields(body, ("n", "labels", "temperature", "seed")))
        half = _half(slot.model)
        if half is not None:
            return half.sample_endpoint(self, slot, name, body)
        n = _at_most(body.get("n", 16), MAX_SAMPLES, "n")
        labels, temperature = body.get("labels"), body.get("temperature", 1.0)
        seed = body.get("seed")
        seed = fresh_seed() if seed is None else seed

        def work(m):
            x, z = m.sample(n, labels=labels, temperature=temperature, seed=seed, return_latents=True)
            return x, z, m.label_matrix(labels, len(x))[1]
        x, z, ints = slot.run(work, self.request_timeout)
        return {"model": name, "n": len(x), "seed": seed, "temperature": temperature, "images": png_b64(x),
                "latents": z.tolist(), "labels": None if ints is None else ints.tolist()}

    def decode(self, name, body):
        slot = self.slot(name)
        body = _labels_fit(slot, _fields(body, ("z", "labels", "project")))
        half = _half(slot.model)
        if half is not None:
            return half.decode_endpoint(self, slot, name, body)
        if "z" not in body:
            raise ApiError(400, "Give z: a latent of {} numbers or a list of them.".format(slot.model.latent_dim))
        z = _rows_at_most(body["z"], MAX_SAMPLES, "latents")
        labels, project = body.get("labels"), _flag(body, "project")

        def work(m):
            zz = z
            if project:  # onto the prior's support (exponential: z >= 0, uniform: the box), as complete does
                try:
                    arr = np.asarray(z, dtype=np.float64)
                except (TypeError, ValueError):
                    arr = None
                if arr is not None and arr.ndim in (1, 2) and arr.shape[-1] == m.latent_dim:
                    zz = m.prior.project(arr.reshape(-1, m.latent_dim))
            x = m.decode(zz, labels)
            return x, np.asarray(zz, dtype=np.float32).reshape(len(x), -1), m.label_matrix(labels, len(x))[1]
        x, zz, ints = slot.run(work, self.request_timeout)
        return {"model": name, "n": len(x), "images": png_b64(x), "latents": zz.tolist(),
                "labels": None if ints is None else ints.tolist()}

    def _endpoint(self, value, shape, what):
        """An interpolation end point: a latent (list of numbers) or one image field."""
        if isinstance(value, dict):
            x = read_images(value, shape, what, limit=1)
            if len(x) != 1:
                raise JetgenError("An interpolation end point must be one latent or one input, not {}.".format(len(x)))
            return x
        if value is None:
            raise ApiError(400, "Give a and b: latents (lists of numbers) or images ({{\"png\": BASE64}}).")
        return value

    def interpolate(self, name, body):
        slot = self.slot(name)
        body = _labels_fit(slot, _fields(body, ("a", "b", "steps", "mode", "labels", "seed")))
        steps = _at_most(body.get("steps", 8), MAX_PATH_STEPS, "steps")
        mode, labels, seed = body.get("mode", "linear"), body.get("labels"), body.get("seed", 0)
        half = _half(slot.model)
        if half is not None:
            return half.interpolate_endpoint(self, slot, name, body, steps, mode, seed)
        shape = slot.model.output_shape
        a, b = self._endpoint(body.get("a"), shape, "a"), self._endpoint(body.get("b"), shape, "b")
        _rows_at_most(labels, MAX_PATH_STEPS, "label rows")

        def work(m):
            x, z = m.interpolate(a, b, steps=steps, mode=mode, labels=labels, seed=seed)
            return x, z
        x, z = slot.run(work, self.request_timeout)
        return {"model": name, "steps": len(x), "mode": mode, "images": png_b64(x), "latents": z.tolist()}

    def encode(self, name, body):
        slot = self.slot(name)
        self._images_only(slot)
        body = _fields(body, ("image", "labels"))
        if body.get("image") is None:
            raise ApiError(400, 'Give image: {"png": BASE64} or a nested list of numbers.')
        x = read_images(body["image"], slot.model.output_shape)
        labels = body.get("labels")

        def work(m):
            mu, logvar = m.encode(x, labels)
            return mu, logvar, m.decode(mu, labels)
        mu, logvar, rec = slot.run(work, self.request_timeout)
        return {"model": name, "n": len(mu), "latents": mu.tolist(), "logvar": logvar.tolist(),
                "images": png_b64(rec)}

    def directions(self, name, query):
        """The principal directions of the model's decoded prior samples, as latent vectors.

        DIRECTION_SAMPLES seeded prior draws are decoded (labels cycling, per-label means removed, for
        conditional models). The outputs are regressed linearly on the whitened latents, X ~ U C, and
        the singular value decomposition of C (D x pixels) gives the latent directions along which the
        outputs vary most, in order; each is returned in latent coordinates scaled to one standard
        deviation of the draws, so moving a latent by t times it moves the output by t standard
        deviations along that mode. ``explained``: each direction's share of the output variance.
        """
        slot = self.slot(name)
        self._images_only(slot)
        k = query.get("k", "6")
        try:
            k = int(k)
        except ValueError:
            raise ApiError(400, "k must be a whole number from 1 to {}, not {!r}.".format(MAX_DIRECTIONS, k))
        if not 1 <= k <= MAX_DIRECTIONS:
            raise ApiError(400, "k must be a whole number from 1 to {}, not {}.".format(MAX_DIRECTIONS, k))
        if slot._directions is None:
            slot._directions = slot.run(self._principal, self.request_timeout)
        vectors, explained = slot._directions
        k = min(k, len(vectors))
        return {"model": name, "k": k, "directions": vectors[:k].tolist(), "explained": explained[:k].tolist()}

    @staticmethod
    def _principal(m):
        n = DIRECTION_SAMPLES
        z = m.prior.sample(n, 1.0, 0).astype(np.float64)
        ints = np.arange(n) % len(m.labels) if m.conditional else None
        x = m.decode(z, ints).reshape(n, -1).astype(np.float64)
        if ints is None:
            x -= x.mean(axis=0)
        else:  # the label moves the output too: keep only what the latent moves
            for label in np.unique(ints):
                x[ints == label] -= x[ints == label].mean(axis=0)
        zc = z - z.mean(axis=0)
        w, v = np.linalg.eigh(zc.T.dot(zc) / n)
        root = (v * np.sqrt(np.maximum(w, 0))).dot(v.T)  # the draws' covariance^(1/2)
        white = zc.dot(np.linalg.pinv(root))              # unit covariance
        c = white.T.dot(x) / n                            # (D, pixels): least squares, as white'white = n I
        u, s, _ = np.linalg.svd(c, full_matrices=False)   # D x D problem: cheap for any image size
        total = max(float(np.sum(x * x)) / n, 1e-12)
        keep = min(MAX_DIRECTIONS, len(s))
        return root.dot(u[:, :keep]).T.astype(np.float32), (s[:keep] ** 2 / total).astype(np.float64)

    # -- completion ------------------------------------------------------------------------------
    def complete(self, name, body):
        """Start a completion job (202 with its id) or, with ``wait``, run it and return the result."""
        slot = self.slot(name)
        half = _half(slot.model)
        if half is not None:
            return half.complete_endpoint(self, slot, name, body)
        body = _fields(body, ("image", "mask", "region", "labels", "steps", "lr", "tol", "init", "seed", "wait"))
        wait = _flag(body, "wait")
        m = slot.model
        if body.get("image") is None:
            raise ApiError(400, 'Give image: {"png": BASE64} or a nested list of numbers.')
        x = read_images(body["image"], m.output_shape)
        mask = read_mask(body, m.output_shape, len(x))
        steps = _at_most(body.get("steps", 100), MAX_COMPLETE_STEPS, "steps")
        labels = body.get("labels")
        if isinstance(labels, list):
            _rows_at_most(labels, MAX_INPUTS, "label rows")
        infer = m.conditional and labels is None  # as the CLI: a conditional model given no label tries them all
        kwargs = dict(labels="infer" if infer else labels, steps=steps, lr=body.get("lr", 5e-2), tol=body.get("tol"),
                      init=body.get("init", "prior_mean"), seed=body.get("seed"))
        # Model.complete checks every argument before its first evaluation; stopping it there turns a bad
        # request into a 400 now rather than a failed job later
        def check(model):
            try:
                model.complete(x, mask, callback=_stop_at_once, **kwargs)
            except _Stop:
                pass
        slot.run(check, self.request_timeout)
        k = len(m.labels) if infer else 1
        ints = None if infer or kwargs["labels"] is None else m.label_matrix(kwargs["labels"], len(x))[1]

        def summary(model, step, z, objective, due):
            table = np.asarray(objective, dtype=np.float64).reshape(len(x), k)
            values = {"loss": float(np.mean(table.min(axis=1)))}
            if due:
                pick = np.argmin(table, axis=1) if infer else None
                rows = np.arange(len(x)) * k + (pick if infer else 0)
                decoded = model.decode(np.asarray(z, dtype=np.float32)[rows], pick if infer else ints)
                values["image"] = png_b64(np.where(np.broadcast_to(mask, x.shape) == 1, x, decoded))
                values["labels"] = pick.tolist() if infer else (None if ints is None else ints.tolist())
            return values

        def finish(r):
            result = {"steps": r.steps, "loss": r.loss.tolist(), "nll": r.nll.tolist(), "loss_start": r.history[0].tolist(),
                      "labels": None if r.labels is None else r.labels.tolist(), "labels_inferred": infer,
                      "latents": r.z.tolist(), "images": png_b64(r.x), "decoded": png_b64(r.decoded)}
            return result, {"image": result["images"], "labels": result["labels"]}

        return self._start_job(slot, name, steps, wait,
                               lambda model, progress: model.complete(x, mask, callback=progress, **kwargs),
                               summary, finish)

    def _start_job(self, slot, name, steps, wait, call, summary, finish):
        """Queue a completion job (202 with its id) or, with ``wait``, run it and return the result."""
        job = Job(secrets.token_hex(8), slot, steps)
        slot.reserve()
        with self._jobs_lock:
            self._forget_old_jobs()
            self.jobs[job.id] = job
        thread = threading.Thread(target=self._run_job, args=(job, call, summary, finish), name="job-" + job.id)
        thread.daemon = True
        thread.start()
        if wait:
            version = 0
            deadline = time.monotonic() + self.job_timeout + 5.0
            while not job.over and time.monotonic() < deadline:
                version = job.wait(version, 1.0)
            out = job.snapshot()
            if job.state == "error":
                raise ApiError(job.error[0], job.error[1])
            return 200, out
        return 202, {"job": job.id, "model": name, "state": job.state, "steps": steps,
                     "poll": "/api/jobs/" + job.id, "events": "/api/jobs/{}/events".format(job.id)}

    def _forget_old_jobs(self):
        now = time.monotonic()
        done = sorted((j.finished, j.id) for j in self.jobs.values() if j.finished is not None)
        for finished, job_id in done:
            if now - finished > JOB_KEEP_S or len(done) > MAX_JOBS:
                del self.jobs[job_id]
                done = done[1:]

    def _run_job(self, job, call, summary, finish):
        """Run ``call(model, progress)`` for ``job``: ``summary(model, step, z, objective, due)`` gives each
        step's progress values (a picture only when ``due``), ``finish(result)`` the result and last values."""
        slot, m = job.slot, job.slot.model
        deadline = time.monotonic() + self.job_timeout
        started = None
        try:
            started = slot.acquire(deadline - time.monotonic())
            if job.cancelled:
                raise _Stop("cancelled")
            job.update(state="running")
            last = [0.0]

            def progress(step, z, objective):
                if job.cancelled:
                    raise _Stop("cancelled")
                if time.monotonic() > deadline:
                    raise _Stop("timeout")
                now = time.monotonic()
                due = now - last[0] >= PROGRESS_EVERY_S or step == job.steps
                if due:
                    last[0] = now
                values = summary(m, step, z, objective, due)
                values["step"] = step
                job.update(**values)

            r = call(m, progress)
            result, values = finish(r)
            job.update(state="done", result=result, step=r.steps, **values)
        except _Stop as stop:
            if str(stop) == "cancelled":
                job.update(state="cancelled", error=(409, "The completion was cancelled."))
            else:
                job.update(state="error", error=(503, "The completion ran past this server's {:.0f} s limit; ask for "
                                                       "fewer steps.".format(self.job_timeout)))
        except ApiError as err:
            job.update(state="error", error=(err.status, err.message))
        except JetgenError as err:
            job.update(state="error", error=(400, str(err)))
        except Exception as err:  # a bug: the sentence stays generic, the log gets the details
            self.log("job {} failed: {!r}".format(job.id, err))
            job.update(state="error", error=(500, "The completion failed inside the server; see its log."))
        finally:
            if started is not None:
                slot.done(started)
            slot.release_place()

    def job(self, job_id):
        with self._jobs_lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise ApiError(404, "No job {!r} here (finished jobs are kept {:.0f} minutes).".format(
                job_id, JOB_KEEP_S / 60))
        return job

    def poll(self, job_id, query):
        since = query.get("since", "0")
        try:
            since = int(since)
        except ValueError:
            since = -1
        if since < 0:
            raise ApiError(400, "since must be a whole number >= 0.")
        return self.job(job_id).snapshot(since)

    def cancel(self, job_id):
        """Ask a job to stop; ``cancelled`` is false (and the state final) for a job that had already ended."""
        job = self.job(job_id)
        with job.cond:
            if job.over:
                return {"job": job.id, "state": job.state, "cancelled": False}
            job.cancelled = True  # the job's thread stops at its next step (or as soon as it gets the model)
            return {"job": job.id, "state": job.state, "cancelled": True}
