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
            return self.model.decode(self.torch.from_numpy(z), self._y(y)).numpy()

    def sample(self, n, y=None, generator=None):
        with self.torch.inference_mode():
            z = self.model.prior_sample(n, generator=generator)
            return self.model.decode(z, self._y(y)).numpy()

    def complete(self, x, mask, y, z0, prior, steps, lr):
        """The runtime's loop written with torch autograd: Adam on z, masked NLL + gaussian prior term."""
        torch = self.torch
        target, m = torch.from_numpy(x), torch.from_numpy(mask)
        yt = self._y(y)
        z = torch.tensor(z0, requires_grad=True)
        opt = torch.optim.Adam([z], lr=lr)
        mean = torch.tensor(np.asarray(prior["params"].get("mean", 0.0), dtype=np.float32))
        std = torch.tensor(np.asarray(prior["params"].get("std", 1.0), dtype=np.float32))
        for _ in range(steps):
            opt.zero_grad()
            loss = self.model.nll(self.model.decode_logits(z, yt), target, m)
            if prior["family"] == "gaussian":
                loss = loss + 0.5 * (((z - mean) / std) ** 2).sum(1)
            loss.sum().backward()
            opt.step()
        return z.detach().numpy()
