"""Shape metrics (Chamfer x1000, F-score, nearest-shape search, MMD/COV/1-NNA) and the latent mixture."""
import json

import numpy as np
import pytest
import torch

from jetgen.errors import JetgenError
from jetgen.runtime.gmm import GaussianMixturePrior
from jetgen.train import shape_metrics as M
from jetgen.train.latent_gmm import fit_latent_gmm

pytest.importorskip("scipy")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clouds():
    from jetgen.train.shapes import procedural_shapes

    data = procedural_shapes(n_train=6, n_test=3, points=256)
    return M.as_clouds(data.train_x), M.as_clouds(data.test_x), data


def _grid_cloud(step=0.1):
    t = np.arange(-0.5, 0.5 + 1e-9, step)
    return np.stack(np.meshgrid(t, t, [0.0], indexing="ij"), -1).reshape(-1, 3).astype(np.float32)


def test_reconstruction_metrics_on_known_shifts():
    a = _grid_cloud()
    same = M.reconstruction_metrics(a[None], a[None])
    assert same["chamfer_x1000"][0] == 0.0 and same["fscore@1%"][0] == 1.0 and same["fscore@2%"][0] == 1.0
    near = M.reconstruction_metrics((a + [0.01, 0, 0])[None], a[None])  # each point's neighbour is its copy
    assert near["chamfer_x1000"][0] == pytest.approx(1000 * 2 * 0.01 ** 2, rel=1e-4)
    assert near["fscore@1%"][0] == 1.0  # 1% of the diameter 2 is a distance of 0.02
    far = M.reconstruction_metrics((a + [0, 0, 0.03])[None], a[None])
    assert far["fscore@1%"][0] == 0.0 and far["fscore@2%"][0] == 1.0
    assert M.summarise(far)["chamfer_x1000"] == pytest.approx(1000 * 2 * 0.03 ** 2, rel=1e-4)


def test_nearest_shape_search_equals_brute_force(clouds):
    train, test, _ = clouds
    queries, refs = np.concatenate([test, train[::5]]), train
    brute = M.brute_force_chamfer_matrix(queries, refs)
    # short lists so that the three stages really prune: 12 of 36 by descriptor, then 3 by the coarse Chamfer
    index, value = M.nearest_shapes(M.ShapeIndex(queries, 64), M.ShapeIndex(refs, 64), candidates=3, shortlist=12)
    assert index.tolist() == brute.argmin(1).tolist()
    np.testing.assert_allclose(value, brute.min(1), rtol=1e-5)
    both = M.ShapeIndex(refs, 64)
    index, _ = M.nearest_shapes(both, both, candidates=3, shortlist=12, exclude_self=True)
    square = M.brute_force_chamfer_matrix(refs, refs)
    np.fill_diagonal(square, np.inf)
    assert index.tolist() == square.argmin(1).tolist()
    approx = M.coarse_chamfer_matrix(queries[:3], refs[:4])
    np.testing.assert_allclose(approx, brute[:3, :4], rtol=1e-3)  # all points: the coarse formula is exact


def test_generation_metrics_on_sets_with_known_answers(clouds):
    train, _, _ = clouds
    refs = train[:12]
    same = M.generation_metrics(refs, refs, points=128)
    assert same["mmd_cd_x1000"] == 0.0 and same["cov_cd"] == 1.0
    assert same["nna_cd"] == 0.0  # every shape's nearest other shape is its twin in the other set
    collapsed = M.generation_metrics(np.repeat(refs[:1], 12, axis=0), refs, points=128)
    assert collapsed["cov_cd"] == pytest.approx(1 / 12.0) and collapsed["mmd_cd_x1000"] > 0
    assert collapsed["nna_cd"] >= 0.5
    disjoint = M.generation_metrics(refs[:6] * 0.3, refs[6:], points=128)  # shrunken shapes: easy to tell apart
    assert disjoint["nna_cd"] == 1.0 and (disjoint["samples"], disjoint["refs"], disjoint["nna_each"]) == (6, 6, 6)


def test_baselines_pick_shapes_of_the_right_class(clouds):
    train, test, data = clouds
    index, retrieved = M.retrieval_baseline(test, data.test_y, train, data.train_y, candidates=2, shortlist=4)
    assert (data.train_y.numpy()[index] == data.test_y.numpy()).all()
    brute = M.brute_force_chamfer_matrix(test, train)
    for i, y in enumerate(data.test_y.tolist()):
        pool = np.flatnonzero(data.train_y.numpy() == y)
        assert index[i] == pool[brute[i, pool].argmin()]
    medoid = M.medoid_baseline(data.test_y, train, data.train_y)
    assert medoid.shape == test.shape
    oracle = M.summarise(M.reconstruction_metrics(retrieved, test))["chamfer_x1000"]
    assert oracle <= M.summarise(M.reconstruction_metrics(medoid, test))["chamfer_x1000"]


def test_latent_mixture_fits_serialises_and_samples_in_numpy():
    rng = np.random.RandomState(0)
    codes = np.concatenate([rng.randn(400, 3) * 0.1 + [2, 0, 0], rng.randn(200, 3) * [0.3, 0.1, 0.1] - [2, 0, 0]])
    for kind in ("full", "diag"):
        spec = json.loads(json.dumps(fit_latent_gmm(torch.from_numpy(codes), 2, kind)))  # plain lists
        prior = GaussianMixturePrior.from_spec(spec)
        assert prior.describe()["params"]["covariance_type"] == kind and prior.dim == 3
        z = prior.sample(6000, rng=1)
        assert z.dtype == np.float32 and z.shape == (6000, 3)
        assert np.mean(z[:, 0] > 0) == pytest.approx(2 / 3.0, abs=0.03)
        assert np.std(z[z[:, 0] < 0, 0]) == pytest.approx(0.3, rel=0.1)
        assert np.array_equal(prior.sample(5, rng=3), prior.sample(5, rng=3))
        assert np.allclose(prior.sample(5, temperature=0.0, rng=2)[:, 1:], 0.0, atol=0.05)
        from sklearn.mixture import GaussianMixture

        sk = GaussianMixture(2, covariance_type=kind, reg_covar=1e-3, random_state=0).fit(codes)
        points = codes[::50]
        np.testing.assert_allclose(prior.log_density(points), sk.score_samples(points), rtol=1e-6)
        value, grad = prior.term(points)
        np.testing.assert_allclose(value, -sk.score_samples(points) - 1.5 * np.log(2 * np.pi), rtol=1e-6)
        eps = 1e-6
        for d in range(3):
            step = np.zeros(3)
            step[d] = eps
            numeric = (prior.term(points + step)[0] - prior.term(points - step)[0]) / (2 * eps)
            np.testing.assert_allclose(grad[:, d], numeric, rtol=1e-4, atol=1e-5)


def test_malformed_mixtures_are_refused_with_a_sentence():
    good = {"family": "gmm", "params": {"covariance_type": "diag", "weights": [0.5, 0.5],
                                        "means": [[0.0], [1.0]], "covariances": [[1.0], [2.0]]}}
    GaussianMixturePrior.from_spec(good)
    for change, message in ((("weights", [0.5, 0.6]), "sum to 1"), (("covariances", [[1.0], [-1.0]]), "not positive"),
                            (("means", [[0.0], [float("nan")]]), "finite"), (("weights", [1.0]), "1 weights for 2"),
                            (("covariance_type", "spherical"), "not one of")):
        bad = json.loads(json.dumps(good))
        bad["params"][change[0]] = change[1]
        with pytest.raises(JetgenError, match=message):
            GaussianMixturePrior.from_spec(bad)
    singular = {"family": "gmm", "params": {"covariance_type": "full", "weights": [1.0], "means": [[0.0, 0.0]],
                                            "covariances": [[[1.0, 1.0], [1.0, 1.0]]]}}
    with pytest.raises(JetgenError, match="positive definite"):
        GaussianMixturePrior.from_spec(singular)
    with pytest.raises(JetgenError, match="gmm"):
        GaussianMixturePrior.from_spec({"family": "gaussian", "params": {}})


def test_partial_baselines_retrieve_the_shape_a_partial_was_cut_from():
    from jetgen.runtime.shapes import cut_by_plane

    rng = np.random.RandomState(0)
    train_x = rng.standard_normal((12, 600, 3)).astype(np.float32) * np.repeat([0.5, 1.0, 2.0], 4)[:, None, None]
    train_y = np.repeat([0, 1, 2], 4)
    partials = [cut_by_plane(train_x[i], i)[0] for i in (1, 6, 10)]
    retrieval, medoid = M.partial_baselines(partials, train_x, train_y)
    np.testing.assert_array_equal(retrieval, train_x[[1, 6, 10]])
    medoids = M.class_medoids(train_x, train_y)
    np.testing.assert_array_equal(medoid, train_x[[medoids[0], medoids[1], medoids[2]]])  # the right scale's class
