"""Numbers for 3D shapes: reconstruction, baselines and generation, on normalised point clouds.

Conventions (issue 11; docs/shapes.md):
- Chamfer-L2 x1000: for clouds a and b, mean_i min_j |a_i - b_j|^2 + mean_j min_i |a_i - b_j|^2 (the
  SUM of both one-way means of squared distances), on the unit-sphere scale, times 1000.
- F-score at a threshold t given as a fraction of the diameter of the unit sphere (2): precision is the
  share of predicted points within 2t of a true point, recall the share of true points within 2t of a
  predicted point, F = 2PR / (P + R). Reported at 1% and 2%.
- Baselines on the same split: the class medoid (the training shape of the test shape's class with the
  smallest mean Chamfer to the others: the "mean training shape" as a real shape) and the retrieval
  oracle (the training shape nearest to the test shape by Chamfer, found with the test shape itself).
- Generation (Achlioptas et al. 2018, PointFlow 2019), samples S against references R:
  MMD-CD = mean over r of min over s of CD (x1000); COV-CD = share of references that are the nearest
  reference of at least one sample; 1-NNA = leave-one-out 1-NN accuracy on S' and R' of
  n = min(|S|, |R|) shapes each (a seeded random subset of the larger set, so that an ordered test set
  keeps its class mix), where 50% is ideal and 100% means the two sets never mix.

Speed: one-way nearest distances come from scipy's cKDTree. A nearest-shape search (retrieval, MMD,
COV, 1-NNA) never computes all pairs exactly, which took minutes: per query it keeps the ``shortlist``
shapes with the closest distance-field descriptors (distances from fixed probe points to the cloud,
compared with one matrix product), then the ``candidates`` of those with the smallest Chamfer between
``coarse_points`` farthest-point subsets, then computes the exact Chamfer of those (a candidate is
dropped once one direction alone exceeds the best so far). On the procedural shapes it gave the
brute-force answer for every query checked (60 x 120 shapes of 1,024 points; tests/test_shapes_metrics.py
repeats the check with shorter lists than the defaults), and 200 samples against 480 test shapes take
about 10 s on 2 busy cores instead of about 13 minutes.
"""
import numpy as np
import torch
from scipy.spatial import cKDTree

DIAMETER = 2.0
F_THRESHOLDS = (0.01, 0.02)
COARSE_POINTS = 128
PROBES = 512
SHORTLIST = 32
CANDIDATES = 4
GENERATION_POINTS = 1024
CHUNK_ELEMENTS = 1 << 23


def as_clouds(x, points=None):
    """float32 numpy (n, P, 3) from a tensor, array or list of equal-size clouds; the first ``points``
    points of each when given (the points are i.i.d. samples, so any subset is a fair one)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError("point clouds must have shape (n, P, 3), not {}".format(x.shape))
    return x[:, :points] if points else x


# -- pairs -----------------------------------------------------------------------------------------
def _trees(clouds):
    return [cKDTree(c) for c in clouds]


def _one_way(points, tree):
    return tree.query(points, k=1, workers=-1)[0]


def chamfer_pair(a, b, tree_a=None, tree_b=None):
    """Squared Chamfer (sum of both one-way means) between two clouds (N, 3) and (M, 3)."""
    tree_a, tree_b = tree_a or cKDTree(a), tree_b or cKDTree(b)
    return float(np.mean(_one_way(a, tree_b) ** 2) + np.mean(_one_way(b, tree_a) ** 2))


def reconstruction_metrics(pred, truth, thresholds=F_THRESHOLDS):
    """Per-pair numbers for predicted clouds ``pred`` (n, Q, 3) against true clouds ``truth`` (n, P, 3):
    {"chamfer_x1000": (n,), "fscore@1%": (n,), ...} with one F-score per threshold (fractions of 2)."""
    pred, truth = as_clouds(pred), as_clouds(truth)
    if len(pred) != len(truth):
        raise ValueError("{} predictions for {} true clouds".format(len(pred), len(truth)))
    out = {"chamfer_x1000": np.empty(len(pred))}
    for t in thresholds:
        out[fscore_name(t)] = np.empty(len(pred))
    for i, (p, g) in enumerate(zip(pred, truth)):
        d_pg, d_gp = _one_way(p, cKDTree(g)), _one_way(g, cKDTree(p))
        out["chamfer_x1000"][i] = 1000.0 * (np.mean(d_pg ** 2) + np.mean(d_gp ** 2))
        for t in thresholds:
            precision, recall = np.mean(d_pg < t * DIAMETER), np.mean(d_gp < t * DIAMETER)
            out[fscore_name(t)][i] = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return out


def fscore_name(threshold):
    return "fscore@{:g}%".format(100.0 * threshold)


def summarise(per_shape):
    """Means of a ``reconstruction_metrics`` dict: {name: float}."""
    return {k: float(np.mean(v)) for k, v in per_shape.items()}


# -- coarse ranking --------------------------------------------------------------------------------
def farthest_point_subsets(clouds, count):
    """(n, count, 3): farthest-point samples of every cloud (starting at its first point), computed
    for all clouds at once; the clouds themselves when they have at most ``count`` points."""
    clouds = as_clouds(clouds)
    n, p, _ = clouds.shape
    if p <= count:
        return clouds
    coords = [np.ascontiguousarray(clouds[:, :, k]) for k in range(3)]  # per-axis arrays: contiguous passes
    chosen = np.zeros((n, count), dtype=np.int64)
    dist = np.full((n, p), np.inf, dtype=np.float32)
    rows = np.arange(n)
    step = np.empty((n, p), dtype=np.float32)
    for k in range(1, count):
        step.fill(0.0)
        for c in coords:
            diff = c - c[rows, chosen[:, k - 1]][:, None]
            step += diff * diff
        np.minimum(dist, step, out=dist)
        chosen[:, k] = dist.argmax(1)
    return clouds[rows[:, None], chosen]


def coarse_chamfer_matrix(a, b, chunk_elements=CHUNK_ELEMENTS):
    """(len(a), len(b)) squared Chamfer between every cloud of ``a`` (n, m, 3) and of ``b`` (k, m', 3),
    by one matrix product per chunk of rows: [x, |x|^2, 1] . [-2y, 1, |y|^2] = |x - y|^2."""
    a, b = torch.from_numpy(as_clouds(a)), torch.from_numpy(as_clouds(b))
    n, m, _ = a.shape
    k, mb, _ = b.shape
    bf = b.reshape(-1, 3)
    right = torch.cat([-2.0 * bf, torch.ones(len(bf), 1), (bf * bf).sum(1, keepdim=True)], 1).t().contiguous()
    out = torch.empty(n, k)
    rows = max(1, int(chunk_elements) // max(1, m * k * mb))
    with torch.no_grad():
        for s in range(0, n, rows):
            af = a[s:s + rows].reshape(-1, 3)
            left = torch.cat([af, (af * af).sum(1, keepdim=True), torch.ones(len(af), 1)], 1)
            d = torch.mm(left, right).clamp_(min=0.0).view(-1, m, k, mb)
            out[s:s + rows] = d.amin(3).mean(1) + d.amin(1).mean(2)
    return out.numpy()


def probe_points(count=PROBES, radius=1.05, seed=0):
    """(count, 3) fixed points spread uniformly in a ball a little larger than the unit sphere."""
    rng = np.random.RandomState(seed)
    direction = rng.standard_normal((count, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return (direction * (radius * rng.random_sample(count) ** (1.0 / 3.0))[:, None]).astype(np.float32)


# -- nearest shapes --------------------------------------------------------------------------------
class ShapeIndex(object):
    """Clouds prepared for nearest-shape search: KD-trees, a distance-field descriptor (the distance
    from each of ``probe_points`` to the cloud) and a farthest-point subset of ``coarse_points``."""

    def __init__(self, clouds, coarse_points=COARSE_POINTS):
        self.clouds = as_clouds(clouds)
        self.trees = [cKDTree(c) for c in self.clouds]
        probes = probe_points()
        self.descriptors = np.stack([t.query(probes, k=1)[0] for t in self.trees]).astype(np.float32)
        # farthest points of the first 4x points: as good a ranking as of all of them, at a fraction of the cost
        self.coarse = farthest_point_subsets(self.clouds[:, :4 * coarse_points], coarse_points)

    def __len__(self):
        return len(self.clouds)


def _descriptor_distances(a, b):
    aa, bb = (a * a).sum(1), (b * b).sum(1)
    return aa[:, None] + bb[None, :] - 2.0 * a.dot(b.T)


def _exact(queries, i, refs, j, bound, cache):
    """Exact Chamfer of query i and reference j; inf once the first one-way term alone reaches
    ``bound`` (it cannot be the nearest then). ``cache`` keeps finished values by shape pair."""
    key = tuple(sorted([(id(queries), i), (id(refs), j)]))  # the Chamfer is symmetric
    if key in cache:
        return cache[key]
    first = np.mean(_one_way(queries.clouds[i], refs.trees[j]) ** 2)
    if first >= bound:
        return np.inf
    value = first + np.mean(_one_way(refs.clouds[j], queries.trees[i]) ** 2)
    cache[key] = value
    return value


def nearest_shapes(queries, refs, candidates=CANDIDATES, shortlist=SHORTLIST, exclude_self=False, cache=None):
    """For each query cloud, its nearest reference by exact squared Chamfer: (index (nq,), value (nq,)).

    ``queries`` and ``refs`` are ShapeIndex objects. Three stages per query: the ``shortlist``
    references with the closest distance-field descriptors; of those, the ``candidates`` with the
    smallest Chamfer between farthest-point subsets; of those, the exact Chamfer decides (a candidate
    is dropped as soon as one direction exceeds the best so far). This is brute force unless the true
    nearest shape falls outside a shortlist, which the tests check on the procedural shapes.
    ``exclude_self`` (queries is refs) leaves out each shape itself; ``cache`` (a dict) shares exact
    values between calls.
    """
    cache = {} if cache is None else cache
    desc = _descriptor_distances(queries.descriptors, refs.descriptors)
    if exclude_self:
        np.fill_diagonal(desc, np.inf)
    available = len(refs) - (1 if exclude_self else 0)
    short = np.argsort(desc, axis=1)[:, :min(int(shortlist), available)]
    index, value = np.empty(len(queries), dtype=np.int64), np.empty(len(queries))
    for i in range(len(queries)):
        coarse = coarse_chamfer_matrix(queries.coarse[i:i + 1], refs.coarse[short[i]])[0]
        order = short[i][np.argsort(coarse)[:min(int(candidates), available)]]
        best, best_j = np.inf, -1
        for j in order:
            v = _exact(queries, i, refs, int(j), best, cache)
            if v < best:
                best, best_j = v, int(j)
        index[i], value[i] = best_j, best
    return index, value


def retrieval_baseline(test_x, test_y, train_x, train_y, candidates=CANDIDATES, shortlist=SHORTLIST,
                       coarse_points=COARSE_POINTS):
    """The retrieval oracle: for each test shape, the training shape of its class with the smallest
    Chamfer to it. Returns (indices into train_x (n,), the retrieved clouds (n, P, 3))."""
    test_x, train_x = as_clouds(test_x), as_clouds(train_x)
    test_y, train_y = np.asarray(test_y), np.asarray(train_y)
    index = np.empty(len(test_x), dtype=np.int64)
    for label in np.unique(test_y):
        rows, pool = np.flatnonzero(test_y == label), np.flatnonzero(train_y == label)
        if len(pool) == 0:
            pool = np.arange(len(train_x))
        found, _ = nearest_shapes(ShapeIndex(test_x[rows], coarse_points), ShapeIndex(train_x[pool], coarse_points),
                                  candidates, shortlist)
        index[rows] = pool[found]
    return index, train_x[index]


def class_medoids(train_x, train_y, max_shapes=100, coarse_points=COARSE_POINTS):
    """{label: index into train_x} of each class's medoid: among up to ``max_shapes`` training shapes of
    the class, the one with the smallest mean (coarse) Chamfer to the others."""
    train_x, train_y = as_clouds(train_x), np.asarray(train_y)
    out = {}
    for label in np.unique(train_y):
        pool = np.flatnonzero(train_y == label)[:max_shapes]
        coarse = farthest_point_subsets(train_x[pool][:, :4 * coarse_points], coarse_points)
        out[int(label)] = int(pool[np.argmin(coarse_chamfer_matrix(coarse, coarse).mean(1))])
    return out


def medoid_baseline(test_y, train_x, train_y, max_shapes=100):
    """The class-medoid prediction for every test shape: (n, P, 3)."""
    medoids = class_medoids(train_x, train_y, max_shapes)
    train_x = as_clouds(train_x)
    return np.stack([train_x[medoids[int(y)]] for y in np.asarray(test_y)])


def partial_baselines(partials, train_x, train_y, points=512):
    """Completion baselines for partial clouds (a list of (M_i, 3)): (retrieval, medoid), each (n, P, 3):
    the training shape nearest each partial by the one-sided Chamfer (partial -> shape, the first
    ``points`` points of both), and the class medoid nearest it by the same measure."""
    from scipy.spatial import cKDTree

    train = as_clouds(train_x)
    trees = [cKDTree(t) for t in train[:, :points]]
    one_sided = np.array([[np.mean(t.query(np.asarray(o)[:points])[0] ** 2) for t in trees] for o in partials])
    medoids = class_medoids(train_x, train_y)
    labels = sorted(medoids)
    nearest = [medoids[labels[int(np.argmin(row[[medoids[k] for k in labels]]))]] for row in one_sided]
    return train[one_sided.argmin(1)], train[nearest]


# -- generation ------------------------------------------------------------------------------------
def generation_metrics(samples, refs, points=GENERATION_POINTS, candidates=CANDIDATES, shortlist=SHORTLIST,
                       coarse_points=COARSE_POINTS):
    """MMD-CD (x1000), COV-CD and 1-NNA of ``samples`` (n, Q, 3) against ``refs`` (m, P, 3), both cut
    to their first ``points`` points. Returns a dict with the three numbers and the set sizes."""
    s_idx = ShapeIndex(as_clouds(samples, points), coarse_points)
    r_idx = ShapeIndex(as_clouds(refs, points), coarse_points)
    cache = {}
    nearest_ref, _ = nearest_shapes(s_idx, r_idx, candidates, shortlist, cache=cache)
    _, mmd = nearest_shapes(r_idx, s_idx, candidates, shortlist, cache=cache)
    n = min(len(s_idx), len(r_idx))
    pick = np.random.RandomState(0)

    def subset(index):
        return index.clouds if len(index) == n else index.clouds[np.sort(pick.choice(len(index), n, replace=False))]

    both = ShapeIndex(np.concatenate([subset(s_idx), subset(r_idx)]), coarse_points)
    labels = np.r_[np.zeros(n), np.ones(n)]
    nn, _ = nearest_shapes(both, both, candidates, shortlist, exclude_self=True)
    return {"mmd_cd_x1000": 1000.0 * float(np.mean(mmd)),
            "cov_cd": float(len(np.unique(nearest_ref)) / len(r_idx)),
            "nna_cd": float(np.mean(labels[nn] == labels)),
            "samples": len(s_idx), "refs": len(r_idx), "nna_each": n, "points": int(s_idx.clouds.shape[1])}


def brute_force_chamfer_matrix(a, b):
    """(len(a), len(b)) exact squared Chamfer for every pair, with KD-trees (slow: for checks)."""
    a, b = as_clouds(a), as_clouds(b)
    ta, tb = _trees(a), _trees(b)
    return np.array([[chamfer_pair(x, y, tx, ty) for y, ty in zip(b, tb)] for x, tx in zip(a, ta)])
