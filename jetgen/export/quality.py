"""The reduced-precision study: an fp16 or int8 bundle's graphs against their fp32 versions (both
ONNX) on real test data, as the manifest's ``quality`` table.

Rows: ``max_decode_error`` (prior draws and real latents), ``neg_elbo`` (models with an encoder and a
likelihood that has a numpy NLL) or ``recon_error`` (encoder-less models, latents found by test-time
optimisation), ``latent_grad_max_rel_error``, and ``conditional_accuracy`` for conditional models.
"""
import numpy as np

from jetgen import modalities
from jetgen.export.feeds import one_hot, parity_feeds, sample_prior

_CLASSIFIERS = {}
_CACHE_SIZE = 8


def quality_table(job):
    """The quality table of ``job`` (jetgen.export.exporter's job: source, precision, fp32 and final
    graphs); without data only the prior-draw decode error and the gradient error."""
    from jetgen.export import onnx_tools

    source = job.source
    sess = {p: {g: onnx_tools.session(m) for g, m in graphs.items()}
            for p, graphs in (("fp32", job.fp32), ("reduced", job.final))}

    def decode(which, z, labels):
        feeds = {"z": z, "y": labels} if source.conditional else {"z": z}
        return onnx_tools.run(sess[which]["decoder"], feeds)[0]

    data = source.data
    table = {"precision": job.precision, "against": "fp32"}
    rng = np.random.RandomState(0)
    n = len(data.test_x) if data is not None else 256
    labels = one_hot(rng.randint(0, source.num_classes, n), source.num_classes) if source.conditional else None
    z_prior = sample_prior(source.prior, n, rng)
    worst = _max_diff(decode("fp32", z_prior, labels), decode("reduced", z_prior, labels))
    half = modalities.part(source.modality, "export")
    if data is not None:
        table["data"] = "{} test split ({} {})".format(data.name, n, "clouds" if half is not None else "images")
    if data is not None and half is not None:
        if source.has_encoder:
            table["test_chamfer"], err = half.quality_rows(job, sess, decode)
            worst = max(worst, err)
    elif data is not None:
        x, y = data.test_x, one_hot(data.test_y, source.num_classes) if source.conditional else None
        if source.has_encoder:
            worst = max(worst, _max_diff(*(decode(w, source.real_latents(x, y), y) for w in ("fp32", "reduced"))))
            row = _neg_elbo(job, sess, decode, x, y)
            if row is not None:
                table["neg_elbo"] = row
        else:
            table["recon_error"], err = _recon_error(job, decode, x, y)
            worst = max(worst, err)
        if source.conditional:
            table["conditional_accuracy"] = _conditional_accuracy(job, decode)
    table["max_decode_error"] = worst
    feeds = dict(parity_feeds(source, "latent_grad")[-1][1])
    g32 = onnx_tools.run(sess["fp32"]["latent_grad"], feeds)[1]
    g16 = onnx_tools.run(sess["reduced"]["latent_grad"], feeds)[1]
    table["latent_grad_max_rel_error"] = float(np.max(np.abs(g16 - g32)) / (np.max(np.abs(g32)) or 1.0))
    return table


def _max_diff(a, b):
    return float(np.max(np.abs(a - b)))


def _row(job, values, unit):
    return {"fp32": values["fp32"], job.precision: values["reduced"], "delta": values["reduced"] - values["fp32"],
            "unit": unit}


def _neg_elbo(job, sess, decode, x, y):
    """1-sample Monte Carlo negative ELBO with the encoder and decoder graphs at both precisions."""
    from jetgen.export import onnx_tools

    source = job.source
    eps = np.random.RandomState(1).standard_normal((len(x), source.latent_dim)).astype(np.float32)
    values = {}
    for which in ("fp32", "reduced"):
        feeds = {"x": x, "y": y} if source.conditional else {"x": x}
        mu, logvar = onnx_tools.run(sess[which]["encoder"], feeds)
        recon = source.likelihood.nll_numpy(decode(which, mu + eps * np.exp(0.5 * logvar), y), x)
        if recon is None:
            return None  # a likelihood without a numpy NLL: no ELBO row
        kl = 0.5 * np.sum(mu ** 2 + np.exp(logvar) - 1.0 - logvar, axis=1)
        values[which] = float(np.mean(recon + kl))
    return _row(job, values, "nats/image, 1-sample Monte Carlo, encoder and decoder graphs")


def _recon_error(job, decode, x, y):
    """Squared error per test image at latents found by test-time optimisation (torch, fp32)."""
    from jetgen.train.evaluate import INFERENCE_LR, INFERENCE_STEPS

    z = job.source.infer_latents(x, y, steps=INFERENCE_STEPS, lr=INFERENCE_LR)
    decoded = {w: decode(w, z, y) for w in ("fp32", "reduced")}
    values = {w: float(np.mean(np.sum((d - x).reshape(len(x), -1) ** 2, axis=1))) for w, d in decoded.items()}
    unit = "squared error summed per test image, latents found by {} steps of test-time optimisation".format(
        INFERENCE_STEPS)
    return _row(job, values, unit), _max_diff(decoded["fp32"], decoded["reduced"])


class _DecoderAsModel(object):
    """Duck-typed model for jetgen.train.metrics.conditional_accuracy: decodes with an ONNX graph and
    draws latents from the bundle's prior with the runtime's sampler."""

    def __init__(self, source, decode, which):
        self.source, self._decode, self.which = source, decode, which
        self.conditional, self.num_classes = True, source.num_classes

    def prior_sample(self, n, generator=None):
        import torch

        return torch.from_numpy(sample_prior(self.source.prior, n, np.random.RandomState(0)))

    def decode(self, z, y):
        return self._decode(self.which, z.numpy().astype(np.float32), y.numpy().astype(np.float32))


def _conditional_accuracy(job, decode, per_class=100):
    """Share of prior samples decoded with label k that a logistic regression trained on the
    calibration images classifies as k, for fp32 and the reduced precision."""
    from jetgen.train.metrics import conditional_accuracy, fit_digit_classifier

    d = job.source.data
    key = (d.name, d.calib_x.shape, float(d.calib_x.sum()))
    clf = _CLASSIFIERS.get(key)
    if clf is None:
        clf = fit_digit_classifier(d.calib_x, d.calib_y)
        if len(_CLASSIFIERS) >= _CACHE_SIZE:
            _CLASSIFIERS.pop(next(iter(_CLASSIFIERS)))
        _CLASSIFIERS[key] = clf
    values, real = {}, None
    for which in ("fp32", "reduced"):
        values[which], real, _ = conditional_accuracy(_DecoderAsModel(job.source, decode, which), d.calib_x,
                                                      d.calib_y, d.test_x, d.test_y, per_class=per_class,
                                                      classifier=clf)
    row = _row(job, values, "share of label-conditioned samples classified as their label")
    row["classifier_test_accuracy"] = real
    return row
