"""The PyTorch eager reference a benchmark compares against: the same model, from its run directory
(desktop only; torch is imported when one is made)."""
import numpy as np


class TorchReference(object):
    """The same model in PyTorch eager, from the run directory (desktop only)."""

    def __init__(self, run_dir, threads=None):
        import torch  # noqa: F401  (fails fast when torch is absent)
        from jetgen.train.rundir import load_run

        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        self.run = load_run(run_dir)
        self.model = self.run.model.eval()

    def _y(self, labels):
        if labels is None:
            return None
        return self.torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32))

    def decode(self, z, y=None):
        with self.torch.inference_mode():
            return self.model.decode(self.torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)),
                                     self._y(y)).numpy()

    def sample(self, n, y=None, generator=None):
        with self.torch.inference_mode():
            z = self.model.prior_sample(n, generator=generator)
            return self.model.decode(z, self._y(y)).numpy()

    def complete(self, x, mask, y, z0, prior, steps, lr, tol=None, window=10):
        """The runtime's loop (jetgen.runtime.model.Model.complete) written with torch autograd: Adam on z,
        masked NLL + gaussian prior term, the best objective per example kept, and with ``tol`` the
        same per-example stopping rule (a stopped example is no longer evaluated or moved).
        Returns (best z as float32 numpy, steps run)."""
        torch = self.torch
        target, m = torch.from_numpy(x), torch.from_numpy(mask)
        yt = self._y(y)
        z = torch.tensor(z0, requires_grad=True)
        opt = torch.optim.Adam([z], lr=lr)
        mean = torch.tensor(np.asarray(prior["params"].get("mean", 0.0), dtype=np.float32))
        std = torch.tensor(np.asarray(prior["params"].get("std", 1.0), dtype=np.float32))
        n = len(x)
        active = torch.ones(n, dtype=torch.bool)
        best, best_z = torch.full((n,), float("inf")), z.detach().clone()
        history, best_history = [], []
        for step in range(steps + 1):
            rows = torch.nonzero(active).flatten()
            opt.zero_grad()
            zr = z[rows]
            obj = self.model.nll(self.model.decode_logits(zr, None if yt is None else yt[rows]), target[rows], m[rows])
            if prior["family"] == "gaussian":
                obj = obj + 0.5 * (((zr - mean) / std) ** 2).sum(1)
            current = history[-1].clone() if history else torch.zeros(n)
            current[rows] = obj.detach()
            history.append(current)
            better = obj.detach() < best[rows]
            best[rows[better]], best_z[rows[better]] = obj.detach()[better], zr.detach()[better]
            best_history.append(best.clone())
            if step == steps:
                break
            if tol is not None and step >= window:
                before = best_history[step - window][rows]
                done = (before - best[rows]) <= tol * before.abs().clamp_min(1e-12)
                active[rows[done]] = False
                if not bool(active.any()):
                    break
            obj.sum().backward()
            frozen = z.detach()[~active].clone()
            opt.step()
            with torch.no_grad():
                z[~active] = frozen  # Adam's momentum would move a stopped example
        return best_z.numpy().astype(np.float32), len(history) - 1

    def _prior_term(self, prior):
        """-log p(z) up to a constant, as a torch function of z (B, D): the runtime's prior term."""
        torch = self.torch
        params = prior["params"]
        if prior["family"] == "gaussian":
            mean = torch.tensor(np.asarray(params.get("mean", 0.0), dtype=np.float32))
            std = torch.tensor(np.asarray(params.get("std", 1.0), dtype=np.float32))
            return lambda z: 0.5 * (((z - mean) / std) ** 2).sum(1)
        if prior["family"] == "gmm":
            means = torch.tensor(np.asarray(params["means"], dtype=np.float32))
            cov = np.asarray(params["covariances"], dtype=np.float32)
            if params.get("covariance_type", "full") == "diag":
                cov = np.stack([np.diag(c) for c in cov])
            mix = torch.distributions.MixtureSameFamily(
                torch.distributions.Categorical(probs=torch.tensor(np.asarray(params["weights"], dtype=np.float32))),
                torch.distributions.MultivariateNormal(means, covariance_matrix=torch.tensor(cov)))
            return lambda z: -mix.log_prob(z)
        raise ValueError("no torch prior term for the {!r} family".format(prior["family"]))

    def complete_points(self, target, mask, z0, prior, loss_scale, prior_weight, steps, lr):
        """The runtime's 3D completion (jetgen.runtime.points.PointModel.complete) in torch autograd:
        Adam on z over loss_scale * one-sided Chamfer (observed -> decoded) + prior_weight * prior term,
        every example every step (tol=None, as timed). Returns (last z as float32 numpy, steps)."""
        from jetgen.models.chamfer import one_sided_chamfer

        torch = self.torch
        observed, m = torch.from_numpy(target), torch.from_numpy(mask)
        term = self._prior_term(prior)
        z = torch.tensor(z0, requires_grad=True)
        opt = torch.optim.Adam([z], lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            obj = loss_scale * one_sided_chamfer(observed, self.model.decode(z), m) + prior_weight * term(z)
            obj.sum().backward()
            opt.step()
        return z.detach().numpy().astype(np.float32), steps
