"""Adam in numpy, one independent problem per row.

Adam is elementwise, so a batch of B latent problems is one (B, D) array; each row keeps its own
step count, so a row can be frozen (converged) while the others go on, and a row's trajectory is
the same whether it runs alone or in a batch. Python 3.6 compatible.
"""
import numpy as np


class Adam(object):
    """Adam (Kingma and Ba 2015) over the rows of a (B, D) parameter array, float64 state."""

    def __init__(self, shape, lr=5e-2, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = float(lr), float(beta1), float(beta2), float(eps)
        self.m = np.zeros(shape, dtype=np.float64)
        self.v = np.zeros(shape, dtype=np.float64)
        self.t = np.zeros((shape[0], 1), dtype=np.float64)

    def step(self, params, grad, rows=None):
        """Return ``params`` after one step along ``grad``, updating only ``rows`` (index array or None: all).

        ``params`` and ``grad`` have the full (B, D) shape; rows not updated are returned unchanged.
        """
        params = np.array(params, dtype=np.float64, copy=True)
        if rows is None:
            rows = slice(None)
        g = np.asarray(grad, dtype=np.float64)[rows]
        self.t[rows] += 1
        t = self.t[rows]
        self.m[rows] = self.beta1 * self.m[rows] + (1 - self.beta1) * g
        self.v[rows] = self.beta2 * self.v[rows] + (1 - self.beta2) * g * g
        m_hat = self.m[rows] / (1 - self.beta1 ** t)
        v_hat = self.v[rows] / (1 - self.beta2 ** t)
        params[rows] -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
        return params
