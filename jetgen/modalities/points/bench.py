"""The points modality's bench inputs (jetgen.bench): what a 3D completion is timed on, the batch it is
timed at, and how each bench backend completes a cloud. numpy only; Python 3.6 compatible."""
import numpy as np


def complete_inputs(model, z):
    """What a 3D completion gets: the decoded shapes of ``z`` cut in half by a random plane through each
    centre, padded to the gradient graph's M points (targets (B, M, 3), mask (B, M)), and the prior mean."""
    from jetgen.modalities.points.codec import pad_clouds

    rng = np.random.RandomState(3)
    halves = []
    for cloud in model.decode(z):
        normal = rng.standard_normal(3)
        height = (cloud - cloud.mean(0)).dot(normal)
        halves.append(cloud[np.argsort(height)[len(cloud) // 2:]])
    targets, mask = pad_clouds(halves, model.points["target_points"])
    return {"targets": targets, "mask": mask, "z0": np.tile(model.prior.mean(), (len(z), 1)).astype(np.float32)}


def complete_batch(manifest, asked):
    """A point-cloud bundle's gradient graph holds a (B, M, N) distance matrix, so its exports cap the
    batch (16 by default); completions are timed at most at that batch, on every backend alike."""
    entry = manifest["graphs"].get("latent_grad") or {}
    if not isinstance(entry.get("batch"), dict):
        return asked
    return min(int(asked), int(entry["batch"].get("max", asked)))


def objective_weights(manifest):
    """(loss_scale, prior_weight): a point-cloud bundle's objective is loss_scale * Chamfer + prior_weight
    * prior term (docs/bundle.md)."""
    points = manifest["model"]["points"]
    return points["loss_scale"], points["prior_weight"]


def torch_complete(ref, manifest, x, mask, z0, steps, lr):
    """The torch reference's 3D completion (jetgen.bench.torch_ref.TorchReference.complete_points)."""
    scale, weight = objective_weights(manifest)
    return ref.complete_points(x, mask, z0, manifest["model"]["prior"], scale, weight, steps, lr)


def model_complete(model, x, mask, z0, steps, lr):
    """PointModel.complete of the observed points of each padded cloud, as a user would pass them."""
    clouds = [c[m > 0] for c, m in zip(x, mask)]
    return model.complete(clouds, steps=steps, lr=lr, tol=None, init=z0).z
