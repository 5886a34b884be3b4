"""Completion of a scan whose pose and scale in the model's frame are unknown.

A depth camera gives points in its own frame (metres, y down). ``complete_posed`` finds, together
with the latent, the similarity transform that carries them into the model's normalised frame:

    q = s * R (p - c) + t        p: observed points (input frame), c: their centroid (fixed)
                                 s: scale, R: rotation (about the up axis, or any), t: translation

and returns the completed shape mapped back into the input frame, where a robot needs it.

Objective. The latent takes Adam steps on the model's own completion objective (``loss_scale`` *
one-sided Chamfer of q to the decoded cloud + ``prior_weight`` * prior term), through the bundle's
latent_grad graph (``Model.loss_grad``). The transform takes Adam steps on the one-sided Chamfer
measured in the input frame, E = mean_i w_i |q_i - n_i|^2 / s^2 (n_i: the decoded point nearest q_i):
in the model frame shrinking the scan onto one point of the surface would drive the Chamfer to 0,
in the input frame it costs the scan's own spread. Its gradient is closed form
(``transform_gradient``): with r_i = q_i - n_i and g_i = 2 w_i r_i / (s^2 W),

    dE/dt = sum g_i,   dE/dlog s = sum g_i . (q_i - t) - 2E,   dE/ddelta = sum (q_i - t) x g_i

where delta is a small rotation applied on the left (R <- exp([delta]x) R); about the up axis only,
its y component. Starts: a few yaws about the up axis (the camera's -y for a level camera), the
scale from the scan's extent against the prior mean shape, the scan's centroid placed on the camera's
side of the shape; the worse starts are dropped after a fifth of the steps. numpy only; Python 3.6.
"""
import numpy as np

from jetgen.errors import JetgenError
from jetgen.runtime.optim import Adam
from jetgen.modalities.points.model import as_clouds, resample

CAMERA_UP = (0.0, -1.0, 0.0)  # OpenCV camera frame: y points down, so up is -y for a level camera
YAW_STARTS = 8  # 4 lost a plane seen edge-on to a wrong yaw in benchmarks/depth_completion.py
POSE_STEPS = 120
POSE_LR = 5e-2  # the latent's Adam step
TRANSFORM_LR = (0.02, 0.02, 0.02, 0.02, 0.04, 0.04, 0.04)  # Adam steps of t (model units), log s, rotation (rad)
TRANSFORM_POINTS = 384  # observed points the transform's gradient uses (nearest neighbours are the cost)
SCALE_RANGE = 1.3  # the scale stays within this factor of its start (2.5 let a table grow 1.7x:
# benchmarks/depth_completion.md)
KEEP_AFTER = 0.2  # after this fraction of the steps only the best start per scan goes on
CHUNK = 1 << 21  # distance-matrix entries per chunk


def nearest(a, b):
    """Index (N,) of the nearest point of ``b`` (M, 3) for each point of ``a`` (N, 3), by
    |b|^2 - 2ab in float32 (the order of distances is all that matters), in chunks of rows."""
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    bb = np.sum(b * b, axis=1)
    out = np.empty(len(a), dtype=np.int64)
    step = max(1, CHUNK // max(1, len(b)))
    for s in range(0, len(a), step):
        part = a[s:s + step]
        out[s:s + step] = np.argmin(bb[None, :] - 2.0 * part.dot(b.T), axis=1)
    return out


def rotation_to_up(up):
    """A rotation (3, 3) taking the unit vector ``up`` to +y (the model frame's up); for the camera's
    -y, the half turn about x (which also turns the camera's forward z into -z: the camera then
    looks at the model from +z). JetgenError for a zero or non-finite vector."""
    u = np.asarray(up, dtype=np.float64).reshape(-1)
    if u.shape != (3,) or not np.isfinite(u).all() or np.linalg.norm(u) < 1e-9:
        raise JetgenError("The up axis must be 3 finite numbers, not all zero, not {!r}.".format(up))
    u = u / np.linalg.norm(u)
    y = np.array([0.0, 1.0, 0.0])
    axis = np.cross(u, y)
    sin, cos = np.linalg.norm(axis), float(u.dot(y))
    if sin < 1e-9:
        return np.eye(3) if cos > 0 else np.diag([1.0, -1.0, -1.0])
    k = axis / sin
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + sin * kx + (1 - cos) * kx.dot(kx)


def rot_exp(delta):
    """exp([delta]x): rotation matrices (B, 3, 3) from rotation vectors (B, 3) (Rodrigues)."""
    delta = np.asarray(delta, dtype=np.float64)
    angle = np.linalg.norm(delta, axis=1)
    k = delta / np.maximum(angle, 1e-12)[:, None]
    kx = np.zeros((len(delta), 3, 3))
    kx[:, 0, 1], kx[:, 0, 2], kx[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    kx[:, 1, 0], kx[:, 2, 0], kx[:, 2, 1] = k[:, 2], -k[:, 1], k[:, 0]
    s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3)[None] + s * kx + (1 - c) * np.matmul(kx, kx)


def yaw(theta):
    """Rotation (3, 3) by ``theta`` radians about the model's +y."""
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def transform_points(points, scale, rotation, translation):
    """q = scale * rotation (points) + translation: points (B, P, 3), scale (B,), rotation (B, 3, 3),
    translation (B, 3) -> (B, P, 3) float64."""
    p = np.asarray(points, dtype=np.float64)
    return np.asarray(scale)[:, None, None] * np.matmul(p, np.transpose(rotation, (0, 2, 1))) + translation[:, None]


def transform_objective(points, weights, scale, rotation, translation, decoded):
    """E (B,): the one-sided Chamfer of the transformed ``points`` (B, P, 3) (centred input frame)
    to ``decoded`` (B, N, 3) (model frame), weighted by ``weights`` (B, P), divided by scale^2: the
    same Chamfer measured in the input frame."""
    q = transform_points(points, scale, rotation, translation)
    out = np.empty(len(q))
    for b in range(len(q)):
        r = q[b] - decoded[b][nearest(q[b], decoded[b])]
        out[b] = np.sum(weights[b] * np.sum(r * r, axis=1)) / (np.sum(weights[b]) * scale[b] ** 2)
    return out


def transform_gradient(points, weights, scale, rotation, translation, decoded):
    """(E (B,), gradient (B, 7)) of ``transform_objective`` with respect to (translation (3),
    log scale (1), a left rotation increment delta (3)) at delta = 0, closed form (module docstring);
    the nearest decoded points are held fixed (the Chamfer is piecewise smooth in them)."""
    q = transform_points(points, scale, rotation, translation)
    energy, grad = np.empty(len(q)), np.empty((len(q), 7))
    for b in range(len(q)):
        r = q[b] - decoded[b][nearest(q[b], decoded[b])]
        norm = np.sum(weights[b]) * scale[b] ** 2
        energy[b] = np.sum(weights[b] * np.sum(r * r, axis=1)) / norm
        g = 2.0 * weights[b][:, None] * r / norm  # dE/dq_i  (P, 3)
        arm = q[b] - translation[b]  # s R p_i  (P, 3)
        grad[b, :3] = g.sum(axis=0)
        grad[b, 3] = np.sum(g * arm) - 2.0 * energy[b]
        grad[b, 4:] = np.cross(arm, g).sum(axis=0)
    return energy, grad


class PosedCompletion(object):
    """What ``complete_posed`` returns (attributes):

    x           (1, N, 3) float32  the completed cloud in the input's own frame (mesh with ``faces``)
    x_model     (1, N, 3) float32  the same in the model's frame (the decoder's output at ``z``)
    z           (1, D) float32     the latent
    faces       (F, 3) int32       the bundle's triangles
    scale, rotation (3, 3), translation (3,)   the transform from the model's frame to the input's:
                                   x = scale * rotation . x_model + translation
    matrix      (4, 4)             the same as one similarity matrix
    yaw_deg     float              the turn about the up axis: rotation = L^T . yaw(yaw_deg) with L
                                   ``rotation_to_up(up)`` (exact when the rotation is about up only)
    chamfer     float              one-sided Chamfer of the observed points to ``x`` (input units^2)
    history     (S + 1,)           the best start's E (input units^2) before the first step and after each
    steps       int                steps run
    """

    def __init__(self, **values):
        self.__dict__.update(values)

    def as_dict(self):
        """The transform and scores as JSON-ready values."""
        return {"scale": float(self.scale), "rotation": self.rotation.tolist(),
                "translation": self.translation.tolist(), "matrix": self.matrix.tolist(),
                "yaw_deg": float(self.yaw_deg), "chamfer": float(self.chamfer), "steps": int(self.steps)}


def _reference(model):
    """(centre (3,), height, width) of the prior mean's decoded shape: the size a scan is scaled to."""
    ref = model.decode(np.asarray(model.prior.mean(), dtype=np.float32)[None])[0].astype(np.float64)
    lo, hi = ref.min(axis=0), ref.max(axis=0)
    return (lo + hi) / 2.0, hi[1] - lo[1], max(hi[0] - lo[0], hi[2] - lo[2])


def initial_poses(points, model, up, viewpoint, yaw_starts):
    """Start transforms (scale (K,), rotation (K, 3, 3), translation (K, 3)) for centred ``points``
    (P, 3) whose centroid lies at ``offset`` = centroid - viewpoint from the camera: one per yaw."""
    centre, ref_height, ref_width = _reference(model)
    base = rotation_to_up(up)
    p = points.dot(base.T)  # the scan with its up along +y: height along y, width across the view
    view = base.dot(viewpoint)
    view[1] = 0.0
    view = view / max(np.linalg.norm(view), 1e-12)
    across = np.cross([0.0, 1.0, 0.0], view)
    height = max(np.ptp(p[:, 1]), 1e-9)
    width = max(np.ptp(p.dot(across)), 1e-9)
    scale = float(np.sqrt((ref_height / height) * (ref_width / width)))
    size = max(ref_height, ref_width)
    yaws = 2.0 * np.pi * np.arange(yaw_starts) / float(yaw_starts)
    rot = np.stack([yaw(a).dot(base) for a in yaws])
    towards_camera = -np.stack([yaw(a).dot(view) for a in yaws])  # the scan is the side facing the camera
    trans = centre[None] + 0.2 * size * towards_camera
    return np.full(yaw_starts, scale), rot, trans


def complete_posed(model, points, up=CAMERA_UP, viewpoint=(0.0, 0.0, 0.0), steps=POSE_STEPS, lr=POSE_LR,
                   yaw_starts=YAW_STARTS, full_rotation=False, prior_weight=None, callback=None,
                   scale_range=SCALE_RANGE):
    """Complete one scan ``points`` (P, 3) given in its own frame (a depth camera's: metres, y down)
    whose position, scale and yaw in the model's frame are unknown.

    ``up``: the scan frame's up axis (the camera's -y when it looks level; after extrinsics, the
    world's up). ``viewpoint``: where the camera is in the scan frame (the origin for camera-frame
    points). ``yaw_starts`` starts spread about the up axis run side by side; the best by E goes on
    after a fifth of the ``steps``. ``full_rotation`` frees the rotation about the other two axes
    too (for a tilted camera). ``callback(step, E (rows,))`` sees each step. The scale stays within a
    factor ``scale_range`` of its start (the one-sided Chamfer does not penalise a shape too large for
    its scan). Returns a
    PosedCompletion (the completed cloud in the scan's frame and the transform found). JetgenError
    for bad points or arguments, or a bundle without a latent_grad graph.
    """
    cloud = as_clouds(points, "scan to complete")
    if len(cloud) != 1:
        raise JetgenError("complete_posed takes one scan, not {}.".format(len(cloud)))
    if not model.bundle.has("latent_grad"):
        raise JetgenError("This bundle has no latent_grad graph, which completion needs; re-export it.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise JetgenError("steps must be a whole number >= 0, not {!r}.".format(steps))
    if isinstance(yaw_starts, bool) or not isinstance(yaw_starts, int) or yaw_starts < 1:
        raise JetgenError("yaw_starts must be a whole number >= 1, not {!r}.".format(yaw_starts))
    scan = cloud[0].astype(np.float64)
    if len(scan) < 3 or np.ptp(scan, axis=0).max() <= 0:
        raise JetgenError("The scan has {} distinct point(s); completion needs a surface.".format(
            len(np.unique(scan, axis=0))))
    pw = model.points["prior_weight"] if prior_weight is None else float(prior_weight)
    loss_scale = model.points["loss_scale"]
    viewpoint = np.asarray(viewpoint, dtype=np.float64).reshape(3)
    centroid = scan.mean(axis=0)
    target_pts = model.points["target_points"]
    obs = resample(scan, target_pts) if len(scan) > target_pts else scan
    mask_row = np.ones(target_pts, dtype=np.float32)
    if len(obs) < target_pts:  # pad as the graph expects: masked copies of the first point
        mask_row[len(obs):] = 0.0
        obs = np.concatenate([obs, np.repeat(obs[:1], target_pts - len(obs), axis=0)])
    obs = obs - centroid
    sub = (resample(scan, TRANSFORM_POINTS) if len(scan) > TRANSFORM_POINTS else scan) - centroid

    scale, rot, trans = initial_poses(sub, model, up, centroid - viewpoint, yaw_starts)
    k = yaw_starts
    obs_b = np.repeat(obs[None], k, axis=0)
    sub_b = np.repeat(sub[None], k, axis=0)
    mask = np.repeat(mask_row[None], k, axis=0)
    weights = np.ones((k, len(sub)))
    q = transform_points(obs_b, scale, rot, trans).astype(np.float32)
    z = model.prior.project(model.encode(q)[0].astype(np.float64) if model.has_encoder else
                            np.tile(model.prior.mean(), (k, 1)).astype(np.float64))
    adam_z = Adam(z.shape, lr=lr)
    units = np.asarray(TRANSFORM_LR, dtype=np.float64)
    adam_t = Adam((k, 7), lr=1.0)  # on parameters divided by their units: each moves about its own step
    log_s = np.log(scale)
    lo, hi = log_s - np.log(scale_range), log_s + np.log(scale_range)
    best = np.full(k, np.inf)
    best_state = [None] * k
    history = []
    keep_at = int(np.ceil(KEEP_AFTER * steps))
    for step in range(steps + 1):
        scale = np.exp(log_s)
        q = transform_points(obs_b, scale, rot, trans).astype(np.float32)
        loss, gz = model.loss_grad(z, q, mask)
        decoded = model.decode(z.astype(np.float32)).astype(np.float64)
        energy, gt = transform_gradient(sub_b, weights, scale, rot, trans, decoded)
        better = energy < best
        for b in np.nonzero(better)[0]:
            best[b] = energy[b]
            best_state[b] = (z[b].copy(), scale[b], rot[b].copy(), trans[b].copy(), decoded[b])
        history.append(float(best.min()))
        if callback is not None:
            callback(step, energy)
        if step == steps:
            break
        if step == keep_at and k > 1:  # drop the worse yaw starts: one scan, one answer
            i = int(np.argmin(best))
            pick = np.array([i])
            z, log_s, rot, trans = z[pick], log_s[pick], rot[pick], trans[pick]
            obs_b, sub_b, mask, weights = obs_b[pick], sub_b[pick], mask[pick], weights[pick]
            gz, gt = gz[pick], gt[pick]
            lo, hi, best, best_state = lo[pick], hi[pick], best[pick], [best_state[i]]
            adam_z.m, adam_z.v, adam_z.t = adam_z.m[pick], adam_z.v[pick], adam_z.t[pick]
            adam_t.m, adam_t.v, adam_t.t = adam_t.m[pick], adam_t.v[pick], adam_t.t[pick]
            k = 1
        pval, pgrad = model.prior.term(z)
        z = model.prior.project(adam_z.step(z, loss_scale * gz + pw * pgrad))
        if not full_rotation:
            gt[:, 4], gt[:, 6] = 0.0, 0.0  # about the up axis (the model's y) only
        move = adam_t.step(np.zeros((k, 7)), gt * units) * units
        trans = trans + move[:, :3]
        log_s = np.clip(log_s + move[:, 3], lo, hi)
        rot = np.matmul(rot_exp(move[:, 4:]), rot)
    i = int(np.argmin(best))
    z_best, s, r, t, x_model = best_state[i]
    # model -> input frame: p = R^T (q - t) / s + c
    rotation = r.T
    out_scale = 1.0 / s
    translation = centroid - rotation.dot(t) / s
    x = (x_model.dot(rotation.T) * out_scale + translation).astype(np.float32)
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = out_scale * rotation, translation
    base = rotation_to_up(up)
    turned = r.dot(base.T)  # the yaw left after levelling the up axis
    yaw_deg = -np.degrees(np.arctan2(turned[0, 2], turned[0, 0]))  # of the model -> input rotation
    return PosedCompletion(x=x[None], x_model=x_model.astype(np.float32)[None], z=z_best.astype(np.float32)[None],
                           faces=model.faces, scale=out_scale, rotation=rotation, translation=translation,
                           matrix=matrix, yaw_deg=yaw_deg, chamfer=float(best[i]), history=np.array(history),
                           steps=len(history) - 1)
