"""Fit the ex-post latent density (a Gaussian mixture on the training codes, Ghosh et al. 2020).

After training, the encoder's means of the training shapes are fitted with scikit-learn's
GaussianMixture; the result is a plain description a manifest can hold and
``jetgen.runtime.gmm.GaussianMixturePrior`` samples without sklearn. One component with a full
covariance is "the AE with a latent fitted Gaussian".
"""
import numpy as np
import torch


def fit_latent_gmm(codes, components=10, covariance_type="full", seed=0, reg_covar=1e-3, max_iter=200):
    """{"family": "gmm", "params": {...}} fitted to ``codes`` (N, D); ``components`` is capped at N.

    ``reg_covar`` is added to every variance: it keeps the covariances invertible when N is not much
    larger than D, and slightly widens the samples."""
    from sklearn.mixture import GaussianMixture

    if isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().numpy()
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or len(codes) < 2:
        raise ValueError("need at least 2 codes of shape (N, D), got {}".format(codes.shape))
    gmm = GaussianMixture(n_components=max(1, min(int(components), len(codes))), covariance_type=covariance_type,
                          reg_covar=reg_covar, max_iter=max_iter, random_state=seed)
    gmm.fit(codes)
    return {"family": "gmm", "params": {"covariance_type": covariance_type, "weights": gmm.weights_.tolist(),
                                        "means": gmm.means_.tolist(), "covariances": gmm.covariances_.tolist()}}


@torch.no_grad()
def encode_means(model, clouds, batch=64):
    """The encoder's means (N, D) for clouds (N, P, 3), in eval mode on the model's device and with its
    first ``encoder_points`` points (as the exported encoder sees them)."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        out = [model.encode(clouds[i:i + batch, :model.encoder_points].to(device))[0].cpu()
               for i in range(0, len(clouds), batch)]
    finally:
        model.train(was)
    return torch.cat(out)


PRIOR_COMPONENTS, PRIOR_COVARIANCE = 10, "full"  # measured: benchmarks/shapes_results.md


def fit_run_prior(model, train_x, seed=0):
    """The latent density written after training: ``fit_latent_gmm(encode_means(model, train_x), 10,
    "full")``, or None when there are fewer than 2 training shapes to fit."""
    if len(train_x) < 2:
        return None
    return fit_latent_gmm(encode_means(model, train_x), PRIOR_COMPONENTS, PRIOR_COVARIANCE, seed=seed)
