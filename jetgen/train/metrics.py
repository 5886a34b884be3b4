"""Evaluation numbers as plain functions of a model and tensors. All NLLs are nats per image.

- ``neg_elbo``: -ELBO = E_q[-log p(x|z)] + KL(q || p), with its recon and KL parts and KL per dimension.
  q is the encoder's Gaussian for vae/cvae and the per-example variational parameters found by
  test-time inference for vad.
- ``iwae_nll``: the importance-weighted bound -log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q (Burda et al.),
  which is >= the true NLL and <= -ELBO in expectation, and equals -ELBO in expectation for k = 1.
  It works for every family (gaussian, exponential, uniform) through the exact log densities below.
- ``active_units``: a unit u is active if Cov_x(E_q[z_u | x]) > 0.01 (Burda et al.).
- ``baseline_nll``: a factorised per-pixel model fitted on the training images.
- ``conditional_accuracy``: share of a CVAE's samples for label k that a logistic regression trained
  on real images classifies as k.
- ``reconstruction_error``: per-image squared-error sum of the decoded mean image (any likelihood).
"""
import math

import numpy as np
from sklearn.linear_model import LogisticRegression

import torch
import torch.nn.functional as F


ACTIVE_THRESHOLD = 0.01
KL_ACTIVE_THRESHOLD = 0.01  # nats: a unit carrying less KL than this is called collapsed next to the Burda count


def _batches(n, size):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _one_hot(model, y):
    if not model.conditional or y is None:
        return None
    if y.dim() == 1:
        return F.one_hot(y.long(), model.num_classes).float()
    return y.float()


def posterior_params(model, x, y=None, params=None, batch_size=500):
    """Parameters of q(z|x) per example: the encoder's (mu, logvar) concatenated for vae/cvae,
    or ``params`` as given (vad, from test-time inference). Raises ValueError for ad (no q)."""
    if params is not None:
        return params
    if not getattr(model, "has_encoder", False):
        raise ValueError("a {} model has no encoder: pass variational params from inference".format(model.kind))
    yh = _one_hot(model, y)
    out = []
    with torch.no_grad():
        for s in _batches(len(x), batch_size):
            mu, logvar = model.encode(x[s], None if yh is None else yh[s])
            out.append(torch.cat([mu, logvar], 1))
    return torch.cat(out)


def neg_elbo(model, x, y=None, params=None, samples=1, batch_size=500, seed=0):
    """-ELBO per image averaged over ``x``, as a dict: neg_elbo, recon, kl (nats/image) and
    kl_per_dim (list of D floats). ``samples`` reparameterised draws per image estimate E_q."""
    params = posterior_params(model, x, y, params, batch_size)
    yh = _one_hot(model, y)
    family = model.family
    recon_sum = 0.0
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for s in _batches(len(x), batch_size):
            for _ in range(samples):
                z = family.rsample(params[s])
                logits = model.decode_logits(z, None if yh is None else yh[s])
                recon_sum += float(model.nll(logits, x[s]).sum())
        kl = family.kl(params)
    recon = recon_sum / (samples * len(x))
    kl_per_dim = kl.mean(0)
    total_kl = float(kl_per_dim.sum())
    return {"neg_elbo": recon + total_kl, "recon": recon, "kl": total_kl,
            "kl_per_dim": [float(v) for v in kl_per_dim]}


def iwae_nll(model, x, y=None, params=None, k=100, batch_size=None, seed=0, max_rows=2000):
    """Importance-weighted NLL estimate (nats/image, averaged over ``x``) with ``k`` samples per image
    from q (the encoder for vae/cvae, ``params`` for vad). Decodes at most ``max_rows`` latents at once."""
    if k < 1:
        raise ValueError("the IWAE bound needs k >= 1 samples, got {}".format(k))
    params = posterior_params(model, x, y, params)
    yh = _one_hot(model, y)
    family = model.family
    batch_size = batch_size or max(1, max_rows // k)
    total = 0.0
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for s in _batches(len(x), batch_size):
            xb, pb = x[s], params[s]
            b = len(xb)
            # rows ordered sample-major: row i*b + j is sample i of example j
            p_rep = pb.repeat(k, 1)
            z = family.rsample(p_rep)
            y_rep = None if yh is None else yh[s].repeat(k, 1)
            x_rep = xb.repeat(k, *([1] * (xb.dim() - 1)))
            log_px_z = -model.nll(model.decode_logits(z, y_rep), x_rep)
            log_w = (log_px_z + family.log_prior(z) - family.log_q(p_rep, z)).view(k, b)
            total += float((math.log(k) - torch.logsumexp(log_w, 0)).sum())
    return total / len(x)


def active_units(means, threshold=ACTIVE_THRESHOLD):
    """(count, per-dimension variance): units whose posterior mean varies over the data by more than
    ``threshold`` (unbiased variance across rows of ``means`` (N, D))."""
    means = torch.as_tensor(means, dtype=torch.float64)
    if means.shape[0] < 2:
        raise ValueError("active units need at least 2 examples")
    var = means.var(0, unbiased=True)
    return int((var > threshold).sum()), [float(v) for v in var]


def kl_active_units(kl_per_dim, threshold=KL_ACTIVE_THRESHOLD):
    """(count, dimensions) of the units whose KL(q(z_u|x) || p(z_u)), averaged over the data, exceeds
    ``threshold`` nats: the per-dimension KL that latent_stats.png shows; a collapsed unit carries ~0."""
    dims = [u for u, v in enumerate(kl_per_dim) if v > threshold]
    return len(dims), dims


def baseline_nll(train_x, test_x, likelihood="bernoulli", sigma=0.1, clamp=1e-3):
    """NLL (nats/image averaged over ``test_x``) of a factorised per-pixel model fitted on ``train_x``:
    bernoulli with p_i = train mean clamped to [clamp, 1 - clamp], or gaussian with the per-pixel
    train mean and the model's fixed ``sigma``."""
    train_x = torch.as_tensor(train_x, dtype=torch.float64)
    test_x = torch.as_tensor(test_x, dtype=torch.float64)
    mean = train_x.mean(0)
    if likelihood == "bernoulli":
        p = mean.clamp(clamp, 1.0 - clamp)
        nll = -(test_x * torch.log(p) + (1.0 - test_x) * torch.log1p(-p))
    elif likelihood == "gaussian":
        nll = 0.5 * ((test_x - mean) / sigma) ** 2 + 0.5 * math.log(2 * math.pi * sigma ** 2)
    else:
        raise ValueError("unknown likelihood {!r}".format(likelihood))
    return float(nll.flatten(1).sum(1).mean())


def reconstruction_error(model, x, z, y=None, batch_size=500):
    """Per-image squared error sum between ``x`` and the decoded mean image of ``z``, (N,) tensor.

    Squared error rather than BCE for every likelihood: on grey-level images the BCE of a perfect
    reconstruction is the pixels' entropy (~253 nats/image on digits), not zero, so BCE cannot show
    how much of the error inference removes."""
    yh = _one_hot(model, y)
    out = []
    with torch.no_grad():
        for s in _batches(len(x), batch_size):
            mean = model.decode(z[s], None if yh is None else yh[s])
            out.append((mean - x[s]).pow(2).flatten(1).sum(1))
    return torch.cat(out)


RECON_METRIC = "squared_error_sum"


def fit_digit_classifier(train_x, train_y, seed=0, max_iter=3000, max_train=10000):
    """A scikit-learn LogisticRegression on flattened pixels of real training images (a seeded random
    subset of ``max_train`` images when there are more, which keeps MNIST-sized sets to seconds)."""

    x, y = _flat(train_x), _np(train_y)
    if len(x) > max_train:
        keep = np.random.RandomState(seed).choice(len(x), max_train, replace=False)
        x, y = x[keep], y[keep]
    clf = LogisticRegression(max_iter=max_iter, random_state=seed)
    clf.fit(x, y)
    return clf


def _flat(x):
    return _np(x).reshape(len(x), -1)


def _np(t):
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t


def conditional_accuracy(model, train_x, train_y, test_x, test_y, per_class=100, seed=0, classifier=None):
    """For a conditional model: draw ``per_class`` prior samples for each label k, decode the mean
    image and classify it with a logistic regression trained on the real training images.
    Returns (share classified as their label, the classifier's accuracy on real test images,
    per-class shares as a list)."""
    if not model.conditional:
        raise ValueError("conditional accuracy needs a conditional model (cvae)")
    clf = classifier or fit_digit_classifier(train_x, train_y, seed=seed)
    clf_acc = float((clf.predict(_flat(test_x)) == _np(test_y)).mean())
    k = model.num_classes
    labels = torch.arange(k).repeat_interleave(per_class)
    gen = torch.Generator().manual_seed(seed)
    z = model.prior_sample(len(labels), generator=gen)
    with torch.no_grad():
        images = model.decode(z, F.one_hot(labels, k).float())
    pred = clf.predict(_flat(images))
    hits = pred == labels.numpy()
    per_label = [float(hits[labels.numpy() == c].mean()) for c in range(k)]
    return float(hits.mean()), clf_acc, per_label
