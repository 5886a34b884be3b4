"""Test-time latent inference: optimise latents (or variational parameters) with the decoder frozen.
Each kind's own ``infer`` (jetgen.models.latent_models) chooses the start and the loss; this module
holds what they share.

- ``ad``:  z starts at the prior mean (zeros) and Adam minimises ``model.inference_loss`` (masked
  reconstruction NLL + code regulariser).
- ``vad``: the family's variational parameters start from ``family.init_params`` and Adam minimises the
  negative ELBO (``model.inference_loss``, one reparameterised sample per step); z is ``family.mean``.
- ``vae`` / ``cvae``: z starts at the encoder mean (``init="encoder"``) or at zeros (``init="prior"``)
  and Adam minimises the negative log joint ``nll(x | z) + |z|^2 / 2`` (MAP under the N(0, 1) prior).

Each row of ``x`` is an independent problem: the loss is a sum of per-example terms and Adam acts
elementwise, so one batch solves many problems at once with the same answer as solving them one by one.
The model's parameters are frozen and the model is in eval mode (BatchNorm uses running statistics)
while optimising; both are restored afterwards. Randomness uses a forked, seeded RNG so the caller's
global RNG state is untouched.
"""
import contextlib

import torch


@contextlib.contextmanager
def frozen(model):
    """Freeze ``model`` (requires_grad off, eval mode) inside the block; restore both on exit."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    for p, _ in flags:
        p.requires_grad_(False)
    model.eval()
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def optimise(start, loss_fn, steps, lr):
    """Adam on a copy of ``start`` minimising ``loss_fn(values).sum()`` for ``steps`` steps; the result
    detached. Each row is an independent problem when ``loss_fn`` is a sum of per-row terms."""
    values = start.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([values], lr=lr)
    for _ in range(int(steps)):
        opt.zero_grad()
        loss_fn(values).sum().backward()
        opt.step()
    return values.detach()


def infer_params(model, x, mask=None, steps=100, lr=1e-2, seed=0):
    """Variational parameters (B, P*D) of a ``vad`` model's family fitted to ``x`` by minimising the
    negative ELBO with the decoder frozen. Raises ValueError for other model kinds."""
    return model.infer_params(x, mask=mask, steps=steps, lr=lr, seed=seed)


def infer_latents(model, x, y=None, mask=None, steps=100, lr=1e-2, seed=0, init="auto"):
    """Latents z (B, D) that explain images ``x`` (B, C, H, W) under ``model`` with its weights frozen.

    ``y`` is the float one-hot label (B, K) for conditional models; ``mask`` (like x, 1 = observed)
    restricts the reconstruction term to observed pixels. ``init``: "auto" means zeros for ad, the
    family's init_params for vad and the encoder mean for vae/cvae; "prior" starts vae/cvae at zeros;
    "encoder" starts at the encoder mean. With ``steps=0`` the starting latent is returned.
    Raises ValueError for something that is not a jetgen latent model or an init it cannot use.
    """
    if not callable(getattr(model, "infer", None)) or getattr(model, "kind", None) is None:
        raise ValueError("infer_latents needs a jetgen latent model, got {!r}".format(type(model).__name__))
    if init not in ("auto", "prior", "encoder"):
        raise ValueError("init must be 'auto', 'prior' or 'encoder', got {!r}".format(init))
    return model.infer(x, y=y, mask=mask, steps=steps, lr=lr, seed=seed, init=init)
