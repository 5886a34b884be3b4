"""Test-time latent inference: optimise latents (or variational parameters) with the decoder frozen.

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


def _check_kind(model, init):
    kind = getattr(model, "kind", None)
    if kind not in ("vae", "cvae", "ad", "vad"):
        raise ValueError("infer_latents needs a jetgen latent model, got {!r}".format(type(model).__name__))
    if init not in ("auto", "prior", "encoder"):
        raise ValueError("init must be 'auto', 'prior' or 'encoder', got {!r}".format(init))
    if init == "encoder" and not getattr(model, "has_encoder", False):
        raise ValueError("init='encoder' needs a model with an encoder (vae, cvae), not {!r}".format(kind))
    return kind


def infer_params(model, x, mask=None, steps=100, lr=1e-2, seed=0):
    """Variational parameters (B, P*D) of a ``vad`` model's family fitted to ``x`` by minimising the
    negative ELBO with the decoder frozen. Raises ValueError for other model kinds."""
    if getattr(model, "kind", None) != "vad":
        raise ValueError("infer_params is for variational auto-decoders (vad) only")
    x = x.detach()
    with frozen(model), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        init = model.family.init_params(x.shape[0], model.latent_dim, torch.Generator().manual_seed(seed))
        params = init.to(x.device).requires_grad_(True)
        opt = torch.optim.Adam([params], lr=lr)
        for _ in range(int(steps)):
            opt.zero_grad()
            model.inference_loss(params, x, mask).sum().backward()
            opt.step()
    return params.detach()


def infer_latents(model, x, y=None, mask=None, steps=100, lr=1e-2, seed=0, init="auto"):
    """Latents z (B, D) that explain images ``x`` (B, C, H, W) under ``model`` with its weights frozen.

    ``y`` is the float one-hot label (B, K) for conditional models; ``mask`` (like x, 1 = observed)
    restricts the reconstruction term to observed pixels. ``init``: "auto" means zeros for ad, the
    family's init_params for vad and the encoder mean for vae/cvae; "prior" starts vae/cvae at zeros;
    "encoder" starts at the encoder mean. With ``steps=0`` the starting latent is returned.
    Raises ValueError for an unknown model kind or an init the model cannot use.
    """
    kind = _check_kind(model, init)
    if kind == "vad":
        return model.family.mean(infer_params(model, x, mask=mask, steps=steps, lr=lr, seed=seed))
    x = x.detach()
    if model.conditional and y is None:
        raise ValueError("a conditional model needs labels y to infer latents")
    with frozen(model), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind in ("vae", "cvae") and init in ("auto", "encoder"):
            z0 = model.encode(x, y)[0]
        else:
            z0 = torch.zeros(x.shape[0], model.latent_dim, device=x.device)
        z = z0.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        for _ in range(int(steps)):
            opt.zero_grad()
            if kind == "ad":
                loss = model.inference_loss(z, x, mask)
            else:
                loss = model.nll(model.decode_logits(z, y), x, mask) + 0.5 * z.pow(2).sum(1)
            loss.sum().backward()
            opt.step()
    return z.detach()
