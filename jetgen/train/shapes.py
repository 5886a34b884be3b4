"""3D shape data sets as point clouds: a float32 tensor (N, P, 3) per split, int64 labels.

- ``shapes`` (default for 3D): a procedural data set built from primitives with trimesh, generated
  deterministically from a seed: swords, planes, chairs, tables, lamps and mugs, each instance with its
  own random parameters (blade length, width, curvature, guard and handle; fuselage, wing span, sweep,
  dihedral, tail and engines; seat, legs, back and arms; top, legs or pedestal, shelf; base, stem, arm
  and shade; body, taper and handle). ``n_train`` + ``n_test`` instances per class, a fixed split.
  Cached on disk after the first generation (see ``cache_path``).
- ``meshes``: ``data_dir`` holds one sub-folder of mesh files (.obj, .ply, .stl, .off, .glb) per
  class, or ``train/`` and ``test/`` folders that each hold the class folders. Files that cannot be
  read, or hold no triangles or no area, are skipped and listed in ``Dataset.skipped``.
- ``points``: the same layout with point clouds (.ply, .xyz, .npy) instead of meshes.

Every shape is normalised to the unit sphere: its bounding-box centre moved to the origin, then scaled
so that the farthest vertex (point, for clouds) is at distance 1. Mesh points are sampled uniformly by
area. Coordinates are y-up. Every problem a user can cause raises JetgenError.
"""
import hashlib
import io
import json
import os
import zipfile

import numpy as np
import torch

from jetgen.atomic import atomic_write_bytes
from jetgen.errors import JetgenError
from jetgen.train.data import Dataset

SHAPE_CLASSES = ("sword", "plane", "chair", "table", "lamp", "mug")
MESH_EXTENSIONS = (".obj", ".ply", ".stl", ".off", ".glb")
CLOUD_EXTENSIONS = (".ply", ".xyz", ".npy")
GENERATOR_VERSION = 1  # bump whenever a class generator changes, so old caches are not reused
DEFAULT_POINTS = 2500
DEFAULT_TRAIN, DEFAULT_TEST = 300, 80
CACHE_ENV = "JETGEN_CACHE"


# -- primitives (all y-up) -----------------------------------------------------------------------
def _trimesh():
    try:
        import trimesh
    except ImportError:
        raise JetgenError("3D shape data needs trimesh, which is not installed; run pip install trimesh.")
    return trimesh


def _box(extents, centre=(0.0, 0.0, 0.0), subdivide=0, warp=None):
    """A box; subdivided ``subdivide`` times so that ``warp`` (vertices -> vertices) can bend it."""
    mesh = _trimesh().creation.box(extents=extents)
    for _ in range(subdivide):
        mesh = mesh.subdivide()
    vertices = np.array(mesh.vertices)
    if warp is not None:
        vertices = warp(vertices)
    mesh.vertices = vertices + np.asarray(centre, dtype=np.float64)
    return mesh


def _rod(p0, p1, radius, sections=16):
    """A closed cylinder from p0 to p1."""
    return _trimesh().creation.cylinder(radius=radius, segment=[p0, p1], sections=sections)


def _ycyl(radius, height, centre=(0.0, 0.0, 0.0), sections=24, top_scale=1.0):
    """A closed vertical cylinder (a frustum when ``top_scale`` != 1) centred at ``centre``."""
    c = np.asarray(centre, dtype=np.float64)
    mesh = _rod(c - [0, height / 2.0, 0], c + [0, height / 2.0, 0], radius, sections)
    if top_scale != 1.0:
        v = np.array(mesh.vertices)
        s = 1.0 + (top_scale - 1.0) * (v[:, 1] - c[1] + height / 2.0) / height
        v[:, 0] = c[0] + (v[:, 0] - c[0]) * s
        v[:, 2] = c[2] + (v[:, 2] - c[2]) * s
        mesh.vertices = v
    return mesh


def _tube(r_inner, r_outer, height, centre, top_scale=1.0, sections=32):
    """An open vertical tube with walls (a thick annulus), optionally widening to the top."""
    mesh = _trimesh().creation.annulus(r_min=r_inner, r_max=r_outer, height=height, sections=sections)
    v = np.array(mesh.vertices)
    v = np.stack([v[:, 0], v[:, 2], -v[:, 1]], 1)  # the annulus is along z: rotate it to stand along y
    s = 1.0 + (top_scale - 1.0) * (v[:, 1] + height / 2.0) / height
    v[:, 0] *= s
    v[:, 2] *= s
    mesh.vertices = v + np.asarray(centre, dtype=np.float64)
    return mesh


def _sphere(radius, centre):
    mesh = _trimesh().creation.icosphere(subdivisions=2, radius=radius)
    mesh.vertices = np.array(mesh.vertices) + np.asarray(centre, dtype=np.float64)
    return mesh


# -- the classes ---------------------------------------------------------------------------------
def _sword(rng):
    length, width = rng.uniform(1.0, 2.0), rng.uniform(0.08, 0.24)
    thick = width * rng.uniform(0.15, 0.3)
    tip, taper = rng.uniform(0.08, 0.35), rng.uniform(0.0, 0.5)
    curve = 0.0 if rng.rand() < 0.5 else rng.uniform(-0.3, 0.3)

    def blade(v):
        s = np.clip(v[:, 1] / length + 0.5, 0.0, 1.0)
        scale = (1.0 - taper * s) * np.clip((1.0 - s) / tip, 0.03, 1.0)
        v = v.copy()
        v[:, 0] = v[:, 0] * scale + curve * length * s ** 2
        v[:, 2] *= np.clip(scale, 0.3, 1.0)
        return v

    parts = [_box([width, length, thick], (0.0, length / 2.0, 0.0), 3, blade)]
    guard_w, guard_h = width * rng.uniform(1.8, 5.0), rng.uniform(0.03, 0.09)
    bend = rng.uniform(-0.15, 0.15) * guard_w

    def guard(v):
        v = v.copy()
        v[:, 1] += bend * (2.0 * v[:, 0] / guard_w) ** 2
        return v

    parts.append(_box([guard_w, guard_h, thick * rng.uniform(1.5, 3.0)], (0.0, -guard_h / 2.0, 0.0), 2, guard))
    grip_r, grip_l = rng.uniform(0.025, 0.05), rng.uniform(0.18, 0.45)
    parts.append(_rod([0.0, -guard_h - grip_l, 0.0], [0.0, -guard_h, 0.0], grip_r))
    if rng.rand() < 0.8:
        parts.append(_sphere(grip_r * rng.uniform(1.3, 2.2), (0.0, -guard_h - grip_l, 0.0)))
    return parts


def _wing(span, chord, thick, tip_ratio, sweep, dihedral, centre, vertical=False):
    """A tapered, swept slab: span along x (or up along y for a fin), chord along z, nose at +z."""
    tan_s, tan_d = np.tan(np.radians(sweep)), np.tan(np.radians(dihedral))

    def warp(v):
        v = v.copy()
        a = np.abs(v[:, 1] if vertical else v[:, 0])
        frac = a / (span if vertical else span / 2.0)
        v[:, 2] = v[:, 2] * (1.0 - (1.0 - tip_ratio) * frac) - tan_s * a
        if not vertical:
            v[:, 1] += tan_d * a
        return v

    if vertical:  # a fin grows up from its root
        mesh = _box([thick, span, chord], (0.0, span / 2.0, 0.0), 2)
        mesh.vertices = warp(np.array(mesh.vertices)) + np.asarray(centre, dtype=np.float64)
        return mesh
    return _box([span, thick, chord], centre, 3, warp)


def _plane(rng):
    length, radius = rng.uniform(1.6, 3.0), rng.uniform(0.08, 0.18)
    body = _trimesh().creation.capsule(height=length - 2 * radius, radius=radius, count=[16, 16])
    v = np.array(body.vertices)
    v[:, 1] *= rng.uniform(0.9, 1.3)
    body.vertices = v
    parts = [body]
    span, chord = rng.uniform(1.6, 3.2), rng.uniform(0.22, 0.55)
    sweep, dihedral = rng.uniform(-5.0, 40.0), rng.uniform(-4.0, 10.0)
    wing_z, wing_y = rng.uniform(-0.1, 0.2) * length, rng.uniform(-0.6, 0.5) * radius
    thick = rng.uniform(0.025, 0.05)
    parts.append(_wing(span, chord, thick, rng.uniform(0.3, 1.0), sweep, dihedral, (0.0, wing_y, wing_z)))
    tail_z = -0.42 * length
    parts.append(_wing(span * rng.uniform(0.25, 0.45), chord * rng.uniform(0.4, 0.7), thick * 0.8,
                       rng.uniform(0.4, 1.0), sweep * rng.uniform(0.5, 1.2), rng.uniform(-3.0, 8.0),
                       (0.0, rng.uniform(0.0, 0.5) * radius, tail_z)))
    parts.append(_wing(rng.uniform(0.25, 0.55), chord * rng.uniform(0.5, 0.9), thick * 0.8,
                       rng.uniform(0.3, 0.9), rng.uniform(15.0, 45.0), 0.0, (0.0, 0.5 * radius, tail_z),
                       vertical=True))
    engines = rng.choice([0, 2, 2, 4])
    eng_r, eng_l = rng.uniform(0.04, 0.09), rng.uniform(0.25, 0.55)
    for k in range(engines):
        side = 1.0 if k % 2 == 0 else -1.0
        x = side * span * (0.18 if k < 2 else 0.34)
        z = wing_z + chord * 0.3 - np.tan(np.radians(sweep)) * abs(x)
        y = wing_y + np.tan(np.radians(dihedral)) * abs(x) - eng_r - thick
        parts.append(_rod([x, y, z - eng_l / 2.0], [x, y, z + eng_l / 2.0], eng_r))
    return parts


def _legs(width, depth, height, thick, inset, round_legs, top_y):
    parts = []
    for sx in (-1.0, 1.0):
        for sz in (-1.0, 1.0):
            x, z = sx * (width / 2.0 - inset - thick / 2.0), sz * (depth / 2.0 - inset - thick / 2.0)
            if round_legs:
                parts.append(_rod([x, top_y - height, z], [x, top_y, z], thick / 2.0))
            else:
                parts.append(_box([thick, height, thick], (x, top_y - height / 2.0, z)))
    return parts


def _chair(rng):
    width = rng.uniform(0.8, 1.2)
    depth, seat_t, height = width * rng.uniform(0.8, 1.2), rng.uniform(0.05, 0.12), rng.uniform(0.7, 1.1)
    leg = rng.uniform(0.04, 0.1)
    parts = [_box([width, seat_t, depth], (0.0, height + seat_t / 2.0, 0.0))]
    parts += _legs(width, depth, height, leg, rng.uniform(0.0, 0.08), rng.rand() < 0.4, height)
    back_h, back_t = rng.uniform(0.6, 1.2), rng.uniform(0.04, 0.1)
    tilt = np.tan(np.radians(rng.uniform(0.0, 15.0)))
    base_y, back_z = height + seat_t, -depth / 2.0 + back_t / 2.0

    def lean(v):
        v = v.copy()
        v[:, 2] -= tilt * (v[:, 1] + back_h / 2.0)
        return v

    if rng.rand() < 0.6:
        parts.append(_box([width, back_h, back_t], (0.0, base_y + back_h / 2.0, back_z), 1, lean))
    else:
        rail = rng.uniform(0.08, 0.2)
        parts.append(_box([width, rail, back_t], (0.0, base_y + back_h - rail / 2.0, back_z - tilt * (back_h - rail / 2.0))))
        bars = rng.randint(2, 6)
        for x in np.linspace(-width / 2.0 + leg / 2.0, width / 2.0 - leg / 2.0, bars):
            parts.append(_box([leg * 0.8, back_h, back_t], (x, base_y + back_h / 2.0, back_z), 1, lean))
    if rng.rand() < 0.35:
        arm_h = rng.uniform(0.2, 0.35)
        for sx in (-1.0, 1.0):
            x = sx * (width / 2.0 - leg / 2.0)
            parts.append(_box([leg, leg * 0.8, depth], (x, base_y + arm_h, 0.0)))
            parts.append(_box([leg * 0.8, arm_h, leg * 0.8], (x, base_y + arm_h / 2.0, depth / 2.0 - leg)))
    return parts


def _table(rng):
    height, top_t = rng.uniform(0.6, 1.0), rng.uniform(0.04, 0.1)
    parts = []
    if rng.rand() < 0.3:
        radius = rng.uniform(0.5, 1.0)
        parts.append(_ycyl(radius, top_t, (0.0, height + top_t / 2.0, 0.0), sections=40))
        parts.append(_ycyl(rng.uniform(0.04, 0.1), height, (0.0, height / 2.0, 0.0)))
        base = rng.uniform(0.25, 0.6) * radius
        if rng.rand() < 0.5:
            parts.append(_ycyl(base, 0.04, (0.0, 0.02, 0.0), sections=32))
        else:
            for angle in np.arange(rng.choice([3, 4])) * 2 * np.pi / 4.0:
                parts.append(_rod([0.0, 0.03, 0.0], [base * np.cos(angle), 0.03, base * np.sin(angle)], 0.03))
        return parts
    width = rng.uniform(1.2, 2.4)
    depth, leg = width * rng.uniform(0.4, 0.8), rng.uniform(0.05, 0.12)
    parts.append(_box([width, top_t, depth], (0.0, height + top_t / 2.0, 0.0)))
    parts += _legs(width, depth, height, leg, rng.uniform(0.0, 0.12), rng.rand() < 0.3, height)
    if rng.rand() < 0.3:
        shelf_y = rng.uniform(0.1, 0.35) * height
        parts.append(_box([width * 0.85, top_t * 0.7, depth * 0.85], (0.0, shelf_y, 0.0)))
    return parts


def _lamp(rng):
    base_r, base_h = rng.uniform(0.15, 0.35), rng.uniform(0.03, 0.08)
    stem_h, stem_r = rng.uniform(0.6, 1.5), rng.uniform(0.015, 0.04)
    parts = [_ycyl(base_r, base_h, (0.0, base_h / 2.0, 0.0), sections=32) if rng.rand() < 0.75 else
             _box([2 * base_r, base_h, 2 * base_r], (0.0, base_h / 2.0, 0.0))]
    top = np.array([0.0, base_h + stem_h, 0.0])
    parts.append(_rod([0.0, base_h, 0.0], top, stem_r))
    shade_h, shade_r = rng.uniform(0.2, 0.45), rng.uniform(0.18, 0.4)
    if rng.rand() < 0.6:  # a table lamp: a shade around the top of the stem, narrower at the top
        parts.append(_tube(shade_r * 0.95, shade_r, shade_h, top + [0.0, -shade_h * 0.3, 0.0],
                           top_scale=rng.uniform(0.45, 0.9)))
        return parts
    # an arm lamp: an angled arm ending in a downward cone
    reach, rise = rng.uniform(0.3, 0.8), rng.uniform(-0.1, 0.3)
    end = top + [reach, rise, 0.0]
    parts.append(_rod(top, end, stem_r))
    parts.append(_sphere(stem_r * 2.0, top))
    parts.append(_tube(shade_r * 0.1, shade_r * 0.15, shade_h, end - [0.0, shade_h / 2.0, 0.0],
                       top_scale=1.0 / max(rng.uniform(4.0, 8.0), 1.0)))
    return parts


def _mug(rng):
    radius, height = rng.uniform(0.3, 0.5), rng.uniform(0.5, 1.1)
    wall = rng.uniform(0.03, 0.06)
    top_scale = rng.uniform(0.9, 1.25)
    parts = [_tube(radius - wall, radius, height, (0.0, height / 2.0, 0.0), top_scale=top_scale),
             _ycyl(radius - wall * 0.5, wall, (0.0, wall / 2.0, 0.0), sections=32)]
    reach, span = rng.uniform(0.12, 0.3), height * rng.uniform(0.4, 0.75)
    centre_y, tube_r = height * rng.uniform(0.45, 0.6), rng.uniform(0.025, 0.05)
    angles = np.linspace(-np.pi / 2.0, np.pi / 2.0, 9)
    attach = radius * (1.0 + (top_scale - 1.0) * centre_y / height) - wall
    path = np.stack([attach + reach * np.cos(angles), centre_y + span / 2.0 * np.sin(angles), np.zeros(9)], 1)
    for p0, p1 in zip(path[:-1], path[1:]):
        parts.append(_rod(p0, p1, tube_r, sections=12))
        parts.append(_sphere(tube_r, p1))
    return parts


GENERATORS = {"sword": _sword, "plane": _plane, "chair": _chair, "table": _table, "lamp": _lamp, "mug": _mug}


# -- meshes to normalised points -----------------------------------------------------------------
def normalise_mesh(mesh):
    """A copy of ``mesh`` with its bounding-box centre at the origin and its farthest vertex at distance 1."""
    mesh = mesh.copy()
    v = np.asarray(mesh.vertices, dtype=np.float64)
    v = v - 0.5 * (v.min(axis=0) + v.max(axis=0))
    mesh.vertices = v / max(np.sqrt((v * v).sum(1).max()), 1e-12)
    return mesh


def normalise_points(points):
    """``points`` (N, 3) with the bounding-box centre at the origin and the farthest point at distance 1."""
    p = np.asarray(points, dtype=np.float64)
    p = p - 0.5 * (p.min(axis=0) + p.max(axis=0))
    return (p / max(np.sqrt((p * p).sum(1).max()), 1e-12)).astype(np.float32)


def make_mesh(name, seed):
    """The normalised procedural mesh (a trimesh.Trimesh) of class ``name`` for an integer ``seed``."""
    if name not in GENERATORS:
        raise JetgenError("Unknown shape class {!r}; choose from: {}.".format(name, ", ".join(SHAPE_CLASSES)))
    parts = GENERATORS[name](np.random.RandomState(int(seed) % 2 ** 32))
    return normalise_mesh(_trimesh().util.concatenate(parts))


def sample_points(mesh, count, seed):
    """(count, 3) float32 points uniformly distributed by area on ``mesh`` (reproducible from ``seed``)."""
    points, _ = _trimesh().sample.sample_surface(mesh, int(count), seed=int(seed) % 2 ** 32)
    return np.asarray(points, dtype=np.float32)


def instance_seed(seed, class_index, index):
    """The seed of instance ``index`` of class ``class_index``: train instances come first."""
    return (int(seed) * 1000003 + class_index * 100003 + index * 7 + 1) % 2 ** 32


# -- cache ---------------------------------------------------------------------------------------
def cache_dir():
    """Where generated data sets are cached: $JETGEN_CACHE, else ~/.cache/jetgen."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "jetgen")


def cache_path(kind, params, directory=None):
    """The cache file for a data set of ``kind`` made with ``params`` (a JSON-able dict): named by the
    first 16 hex digits of the sha256 of the parameters, so any change makes a new file."""
    key = hashlib.sha256(json.dumps([kind, params], sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return os.path.join(directory or cache_dir(), "{}-{}.npz".format(kind, key)), key


def _save_cache(path, key, arrays):
    buf = io.BytesIO()
    np.savez(buf, key=np.array(key), **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _load_cache(path, key, expect):
    """The arrays of a cache file when it is intact and made for ``key``, else None.

    ``expect`` maps array names to (dtype kind, shape with None for any size)."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None
            out = {name: npz[name] for name in expect}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    for name, (kind, shape) in expect.items():
        arr = out[name]
        if arr.dtype.kind != kind or arr.ndim != len(shape) or any(
                s is not None and s != a for s, a in zip(shape, arr.shape)):
            return None
        if kind == "f" and not np.all(np.isfinite(arr)):
            return None
    return out


def _cached(kind, params, expect, build, directory=None, log=None):
    path, key = cache_path(kind, params, directory)
    arrays = _load_cache(path, key, expect)
    if arrays is not None:
        return arrays
    if os.path.exists(path) and log:
        log("The cached data set {} is unreadable or does not match; generating it again.".format(path))
    arrays = build()
    try:
        _save_cache(path, key, arrays)
    except OSError as err:  # a read-only cache costs time, not correctness
        if log:
            log("Cannot write the data-set cache {} ({}); continuing without it.".format(path, err))
    return arrays


def _dataset(name, arrays, classes):
    t = {k: torch.from_numpy(np.ascontiguousarray(arrays[k])) for k in ("train_x", "train_y", "test_x", "test_y")}
    return Dataset(name, t["train_x"], t["train_y"].long(), t["test_x"], t["test_y"].long(), classes)


# -- the three data sets -------------------------------------------------------------------------
def procedural_shapes(n_train=DEFAULT_TRAIN, n_test=DEFAULT_TEST, points=DEFAULT_POINTS, seed=0,
                      classes=SHAPE_CLASSES, sample_seed=0, directory=None, log=None):
    """The ``shapes`` data set: ``n_train`` + ``n_test`` instances of each class in ``classes``
    (train first, a fixed split), ``points`` points each. ``sample_seed`` varies only where the points
    fall on the same meshes (two samplings of one shape give the Chamfer floor). Cached in
    ``directory`` (default ``cache_dir()``); a corrupt or mismatching cache file is regenerated.
    """
    classes = list(classes)
    unknown = [c for c in classes if c not in GENERATORS]
    if unknown or not classes:
        raise JetgenError("Unknown shape classes {}; choose from: {}.".format(unknown, ", ".join(SHAPE_CLASSES)))
    for what, value in (("n_train", n_train), ("n_test", n_test), ("points", points)):
        if int(value) < (1 if what != "n_test" else 0):
            raise JetgenError("The shapes data set needs {} >= {}, not {}.".format(
                what, 1 if what != "n_test" else 0, value))
    n_train, n_test, points = int(n_train), int(n_test), int(points)
    params = {"version": GENERATOR_VERSION, "classes": classes, "n_train": n_train, "n_test": n_test,
              "points": points, "seed": int(seed), "sample_seed": int(sample_seed)}
    c = len(classes)

    def build():
        x = np.empty((c, n_train + n_test, points, 3), dtype=np.float32)
        for ci, name in enumerate(classes):
            class_index = SHAPE_CLASSES.index(name)
            for i in range(n_train + n_test):
                s = instance_seed(seed, class_index, i)
                x[ci, i] = sample_points(make_mesh(name, s), points, s + 7919 * (int(sample_seed) + 1))
        labels = np.repeat(np.arange(c, dtype=np.int64)[:, None], n_train + n_test, 1)
        return {"train_x": x[:, :n_train].reshape(-1, points, 3), "train_y": labels[:, :n_train].reshape(-1),
                "test_x": x[:, n_train:].reshape(-1, points, 3), "test_y": labels[:, n_train:].reshape(-1)}

    expect = {"train_x": ("f", (c * n_train, points, 3)), "train_y": ("i", (c * n_train,)),
              "test_x": ("f", (c * n_test, points, 3)), "test_y": ("i", (c * n_test,))}
    return _dataset("shapes", _cached("shapes", params, expect, build, directory, log), classes)


def _class_files(data_dir, extensions):
    """{split: [(class, path)]} and the classes, from class folders or train/ and test/ folders."""
    if data_dir is None or not os.path.isdir(data_dir):
        raise JetgenError("This data set needs --data-dir pointing to a directory with one sub-folder per "
                          "class; {!r} is not a directory.".format(data_dir))
    split_dirs = [os.path.join(data_dir, s) for s in ("train", "test")]
    roots = {"train": split_dirs[0], "test": split_dirs[1]} if all(map(os.path.isdir, split_dirs)) else {"all": data_dir}
    classes = sorted(d for d in os.listdir(roots.get("train", data_dir))
                     if os.path.isdir(os.path.join(roots.get("train", data_dir), d)))
    found = {}
    for split, root in roots.items():
        extra = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and d not in classes)
        if extra:
            raise JetgenError("{} has class folders {} that the training split does not have.".format(root, extra))
        found[split] = [(cls, os.path.join(root, cls, f)) for cls in classes if os.path.isdir(os.path.join(root, cls))
                        for f in sorted(os.listdir(os.path.join(root, cls))) if f.lower().endswith(extensions)]
    if not classes or not any(found.values()):
        raise JetgenError("{} holds no files with extensions {} in class sub-folders.".format(
            data_dir, ", ".join(extensions)))
    return found, classes


def _split(found, classes, seed, test_fraction):
    """{"train": [...], "test": [...]} of (class, path): as found, or a seeded split per class."""
    if "all" not in found:
        return found
    out = {"train": [], "test": []}
    rng = np.random.RandomState(seed)
    for cls in classes:
        items = [item for item in found["all"] if item[0] == cls]
        order = rng.permutation(len(items))
        n_test = int(round(test_fraction * len(items))) if len(items) > 1 else 0
        out["test"] += [items[i] for i in sorted(order[:n_test])]
        out["train"] += [items[i] for i in sorted(order[n_test:])]
    return out


def _first_line(err):
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]


def _load_mesh_points(path, points, seed):
    """(points (P, 3), None) or (None, reason) for one mesh file."""
    trimesh = _trimesh()
    try:
        mesh = trimesh.load(path, force="mesh")
    except Exception as err:  # trimesh raises many types for a broken file: each is a skip with its reason
        return None, "unreadable ({})".format(_first_line(err))
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        return None, "holds no triangles"
    if not np.all(np.isfinite(mesh.vertices)):
        return None, "has NaN or infinite vertices"
    area = float(mesh.area)
    if not np.isfinite(area) or area <= 0.0:
        return None, "has no surface area"
    return sample_points(normalise_mesh(mesh), points, seed), None


def _load_cloud_points(path, points, seed, max_points):
    from jetgen.runtime.shapes import read_points

    try:
        cloud = read_points(path, max_points)
    except JetgenError as err:
        return None, str(err)
    if len(cloud) < 3 or float(np.ptp(cloud, axis=0).max()) <= 0.0:
        return None, "holds fewer than 3 distinct points"
    rng = np.random.RandomState(seed)
    pick = rng.choice(len(cloud), points, replace=len(cloud) < points)
    return normalise_points(cloud)[pick], None


def _load_folder(name, data_dir, points, seed, test_fraction, log, reader, extensions):
    found, classes = _class_files(data_dir, extensions)
    splits = _split(found, classes, seed, test_fraction)
    arrays, skipped = {}, []
    for split in ("train", "test"):
        xs, ys = [], []
        for i, (cls, path) in enumerate(splits[split]):
            cloud, reason = reader(path, points, instance_seed(seed, classes.index(cls), i))
            if cloud is None:
                skipped.append((path, reason))
                continue
            xs.append(cloud)
            ys.append(classes.index(cls))
        arrays[split + "_x"] = np.stack(xs) if xs else np.zeros((0, points, 3), np.float32)
        arrays[split + "_y"] = np.array(ys, dtype=np.int64)
    if skipped and log:
        log("Skipped {} of {} files in {}: {}.".format(
            len(skipped), sum(len(v) for v in splits.values()), data_dir,
            "; ".join("{} {}".format(os.path.relpath(p, data_dir), r) for p, r in skipped[:5]) +
            ("; ..." if len(skipped) > 5 else "")))
    if len(arrays["train_x"]) == 0:
        raise JetgenError("No usable {} in {}: all {} files were skipped (first: {} {}).".format(
            name, data_dir, len(skipped), *(skipped[0] if skipped else ("-", "-"))))
    data = _dataset(name, arrays, classes)
    data.skipped = skipped
    return data


def load_meshes(data_dir, points=DEFAULT_POINTS, seed=0, test_fraction=0.15, log=None):
    """The ``meshes`` data set from class folders of .obj/.ply/.stl/.off/.glb files (see the module
    docstring). Unreadable or empty meshes are skipped; ``Dataset.skipped`` lists (path, reason) and
    ``log`` (a function of one string) is told their count. JetgenError when nothing usable is found."""
    return _load_folder("meshes", data_dir, int(points), seed, test_fraction, log, _load_mesh_points,
                        MESH_EXTENSIONS)


def load_points(data_dir, points=DEFAULT_POINTS, seed=0, test_fraction=0.15, max_points=None, log=None):
    """The ``points`` data set from class folders of .ply/.xyz/.npy point clouds, each normalised and
    resampled to ``points`` points (with repeats when a cloud has fewer). Skips as ``load_meshes``."""
    from jetgen.runtime.shapes import MAX_POINTS

    limit = int(max_points or MAX_POINTS)
    return _load_folder("points", data_dir, int(points), seed, test_fraction, log,
                        lambda path, n, s: _load_cloud_points(path, n, s, limit), CLOUD_EXTENSIONS)


def load_shape_dataset(name, data_dir=None, points=DEFAULT_POINTS, seed=0, n_train=DEFAULT_TRAIN,
                       n_test=DEFAULT_TEST, test_fraction=0.15, log=None, classes=None):
    """A 3D data set by name (shapes, meshes, points); JetgenError with what to do when it cannot be loaded.
    ``classes`` picks procedural classes (all of SHAPE_CLASSES when None)."""
    if name == "shapes":
        return procedural_shapes(n_train, n_test, points, seed, classes=classes or SHAPE_CLASSES, log=log)
    if name == "meshes":
        return load_meshes(data_dir, points, seed, test_fraction, log)
    if name == "points":
        return load_points(data_dir, points, seed, test_fraction, log=log)
    raise JetgenError("Unknown 3D data set {!r}; choose one of: shapes, meshes, points.".format(name))
