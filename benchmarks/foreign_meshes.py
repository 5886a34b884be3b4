"""Mesh folders as a user would bring them: not jetgen's procedural classes, written in several formats.

Three classes built from trimesh primitives, each instance with its own random proportions:

- ``capsules``: a capsule (a cylinder with round ends), its length, radius and x/z flattening drawn per
  shape, sometimes with a second, thinner capsule across it (a cross);
- ``benches``: unions of boxes: a seat slab on two panel legs or four square legs, sometimes a backrest
  and a low stretcher between the legs;
- ``bottles``: a cylinder body, a conical shoulder, a neck and sometimes a cap (cylinders and cones).

One sub-folder per class, the files named ``<class>-<i>.<ext>`` cycling through .obj, .ply, .stl and
.off, each shape moved and scaled at random (as files from different sources are), so the loader's
normalisation has work to do. With ``broken=True`` one more file, ``bottles/broken.stl``, holds a
truncated ASCII STL that the loader must skip and report. Used by tests/test_shapes_small.py and by
benchmarks/shapes_small_folders.py:

    python benchmarks/foreign_meshes.py --per-class 30 --out data/foreign-30
"""
import argparse
import os

import numpy as np

CLASSES = ("capsules", "benches", "bottles")
FORMATS = (".obj", ".ply", ".stl", ".off")
BROKEN_NAME = os.path.join("bottles", "broken.stl")


def _trimesh():
    import trimesh

    return trimesh


def _box(extents, centre):
    mesh = _trimesh().creation.box(extents=extents)
    mesh.apply_translation(centre)
    return mesh


def _cylinder(radius, height, y0, sections=24):
    """An upright closed cylinder from height y0 to y0 + height."""
    mesh = _trimesh().creation.cylinder(radius=radius, height=height, sections=sections)
    mesh.apply_transform(_trimesh().transformations.rotation_matrix(-np.pi / 2.0, [1, 0, 0]))
    mesh.apply_translation([0.0, y0 + height / 2.0, 0.0])
    return mesh


def _cone(r_bottom, r_top, height, y0, sections=24):
    """An upright frustum from radius r_bottom at y0 to r_top at y0 + height (a cylinder, then tapered)."""
    mesh = _cylinder(r_bottom, height, y0, sections)
    v = np.array(mesh.vertices)
    t = (v[:, 1] - y0) / height
    s = 1.0 + (r_top / r_bottom - 1.0) * t
    v[:, 0] *= s
    v[:, 2] *= s
    mesh.vertices = v
    return mesh


def capsule(rng):
    length, radius = rng.uniform(0.6, 2.0), rng.uniform(0.15, 0.45)
    main = _trimesh().creation.capsule(height=length, radius=radius, count=[12, 12])
    main.apply_transform(_trimesh().transformations.rotation_matrix(-np.pi / 2.0, [1, 0, 0]))  # along y
    main.apply_scale([rng.uniform(0.6, 1.0), 1.0, rng.uniform(0.6, 1.0)])
    parts = [main]
    if rng.rand() < 0.35:
        cross = _trimesh().creation.capsule(height=length * rng.uniform(0.4, 0.8), radius=radius * 0.5,
                                            count=[10, 10])
        cross.apply_transform(_trimesh().transformations.rotation_matrix(np.pi / 2.0, [0, 1, 0]))  # along x
        cross.apply_translation([0.0, rng.uniform(-0.2, 0.3) * length, 0.0])
        parts.append(cross)
    return parts


def bench(rng):
    width, depth, height = rng.uniform(1.2, 2.6), rng.uniform(0.3, 0.7), rng.uniform(0.35, 0.8)
    seat = rng.uniform(0.05, 0.14)
    parts = [_box([width, seat, depth], [0.0, height + seat / 2.0, 0.0])]
    inset = rng.uniform(0.0, 0.2) * width / 2.0
    if rng.rand() < 0.5:  # two panel legs
        t = rng.uniform(0.04, 0.1)
        for sx in (-1.0, 1.0):
            parts.append(_box([t, height, depth * rng.uniform(0.8, 1.0)], [sx * (width / 2.0 - inset - t / 2.0),
                                                                           height / 2.0, 0.0]))
    else:  # four square legs
        t = rng.uniform(0.04, 0.09)
        for sx in (-1.0, 1.0):
            for sz in (-1.0, 1.0):
                parts.append(_box([t, height, t], [sx * (width / 2.0 - inset - t / 2.0), height / 2.0,
                                                   sz * (depth / 2.0 - t / 2.0)]))
    if rng.rand() < 0.5:
        back = rng.uniform(0.3, 0.7)
        parts.append(_box([width, back, 0.05], [0.0, height + seat + back / 2.0, -depth / 2.0 + 0.025]))
    if rng.rand() < 0.4:
        parts.append(_box([width - 2 * inset, 0.04, 0.05], [0.0, height * rng.uniform(0.15, 0.4), 0.0]))
    return parts


def bottle(rng):
    radius, body = rng.uniform(0.2, 0.45), rng.uniform(0.6, 1.6)
    shoulder, neck_r = rng.uniform(0.1, 0.5), radius * rng.uniform(0.2, 0.45)
    neck = rng.uniform(0.1, 0.45)
    parts = [_cylinder(radius, body, 0.0), _cone(radius, neck_r, shoulder, body),
             _cylinder(neck_r, neck, body + shoulder)]
    if rng.rand() < 0.6:
        parts.append(_cylinder(neck_r * 1.25, 0.06, body + shoulder + neck))
    return parts


BUILDERS = {"capsules": capsule, "benches": bench, "bottles": bottle}


def make_mesh(name, rng):
    """One mesh of class ``name`` (a trimesh.Trimesh), y-up, moved and scaled at random."""
    mesh = _trimesh().util.concatenate(BUILDERS[name](rng))
    mesh.apply_scale(rng.uniform(0.5, 20.0))
    mesh.apply_translation(rng.uniform(-5.0, 5.0, 3))
    return mesh


def write_folder(root, per_class, seed=0, classes=CLASSES, broken=True, test_per_class=0):
    """Write ``per_class`` meshes of each class into ``root/<class>/`` (formats cycling through FORMATS)
    and, with ``broken``, the unreadable ``root/bottles/broken.stl``. Same ``seed``, same files. With
    ``test_per_class`` > 0 the training shapes go to ``root/train/<class>/`` and that many more, drawn
    from seed ``seed + 1000`` (so folders of any size share one test set), to ``root/test/<class>/``.
    Returns {class: [paths]} of the good training files."""
    if test_per_class:
        write_folder(os.path.join(str(root), "test"), test_per_class, seed + 1000, classes, False)
        root = os.path.join(str(root), "train")
    written = {}
    for ci, name in enumerate(classes):
        folder = os.path.join(str(root), name)
        os.makedirs(folder, exist_ok=True)
        rng = np.random.RandomState(int(seed) * 7919 + ci)
        written[name] = []
        for i in range(int(per_class)):
            path = os.path.join(folder, "{}-{:03d}{}".format(name, i, FORMATS[(i + ci) % len(FORMATS)]))
            make_mesh(name, rng).export(path)
            written[name].append(path)
    if broken and "bottles" in classes:
        with open(os.path.join(str(root), BROKEN_NAME), "w") as handle:
            handle.write("solid bottle\nfacet normal 0 0 1\n outer loop\n  vertex 0 0 0\n  vertex 1 0")
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--test-per-class", type=int, default=0, help="a train/ and test/ layout with this many "
                        "test shapes per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    written = write_folder(args.out, args.per_class, args.seed, test_per_class=args.test_per_class)
    print("wrote {} meshes in {} classes to {} (and {})".format(sum(map(len, written.values())), len(written),
                                                                args.out, BROKEN_NAME))


if __name__ == "__main__":
    main()
