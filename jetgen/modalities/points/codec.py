"""3D shapes on the device: meshes and point clouds in and out, a picture, Chamfer, cut scans.

- Writers (atomic): meshes as .obj or .ply (binary or ascii), point clouds as .ply, .npy or .xyz;
  ``scene`` lays several meshes or clouds out side by side in one file.
- ``read_points``: a partial scan (.ply, .xyz, .npy) as float32 (N, 3). Sizes claimed by a header are
  checked against ``max_points`` and the file's length before anything is allocated.
- ``render``: depth-shaded point splatting from several views into an RGB image (no matplotlib),
  ``save_render`` writes it as PNG.
- ``chamfer_one_sided`` / ``chamfer``: mean squared nearest-neighbour distances, in chunks.
- ``cut_by_plane``: keep the points on one side of a random plane through the cloud's centroid.
- ``pad_clouds``: clouds of different sizes as one (B, M, 3) batch with a (B, M) validity mask.

Coordinates are y-up, as the procedural shapes and most .obj files. numpy and the standard library;
Python 3.6 compatible. Every problem a user can cause raises JetgenError.
"""
import io
import os
import struct

import numpy as np

from jetgen.atomic import atomic_write_bytes, atomic_write_text
from jetgen.errors import JetgenError
from jetgen.modalities.image.codec import npy_header, write_png

MESH_EXTENSIONS = (".obj", ".ply")
POINT_EXTENSIONS = (".ply", ".npy", ".xyz")
READ_EXTENSIONS = POINT_EXTENSIONS + (".obj",)  # read_points also takes a mesh's vertices
MAX_POINTS = 5000000  # larger scans are refused before reading: downsample them first
MAX_HEADER_BYTES = 65536
XYZ_MAX_LINE_BYTES = 256  # a .xyz file larger than max_points lines of this length is refused unread
CHUNK_ELEMENTS = 1 << 22  # distance-matrix entries per chunk (16 MiB of float32)

PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
PLY_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}


# -- checks --------------------------------------------------------------------------------------
def _as_points(points, name="points"):
    arr = np.asarray(points, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise JetgenError("The {} must have shape (N, 3), not {}.".format(name, tuple(arr.shape)))
    if not np.all(np.isfinite(arr)):
        raise JetgenError("The {} hold NaN or infinite coordinates; remove those points.".format(name))
    return arr


def _as_faces(faces, n_vertices):
    arr = np.asarray(faces)
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.dtype.kind not in "iu":
        raise JetgenError("Faces must be an integer array of shape (F, 3), not {} {}.".format(
            arr.dtype, tuple(arr.shape)))
    if arr.size and (arr.min() < 0 or arr.max() >= n_vertices):
        raise JetgenError("A face refers to vertex {} but the mesh has {} vertices.".format(
            int(arr.max() if arr.max() >= n_vertices else arr.min()), n_vertices))
    return arr.astype(np.int32)


def _extension(path, allowed, what):
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in allowed:
        raise JetgenError("Cannot write {} as {}: use one of {}.".format(path, what, ", ".join(allowed)))
    return ext


# -- writers -------------------------------------------------------------------------------------
def _ply_header(binary, n_vertices, n_faces=None, colours=False):
    lines = ["ply", "format {} 1.0".format("binary_little_endian" if binary else "ascii"),
             "comment written by jetgen", "element vertex {}".format(n_vertices),
             "property float x", "property float y", "property float z"]
    if colours:
        lines += ["property uchar red", "property uchar green", "property uchar blue"]
    if n_faces is not None:
        lines += ["element face {}".format(n_faces), "property list uchar int vertex_indices"]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def _vertex_rows(vertices, colours):
    if colours is None:
        return vertices.astype("<f4")
    rows = np.empty(len(vertices), dtype=[("xyz", "<f4", (3,)), ("rgb", "u1", (3,))])
    rows["xyz"], rows["rgb"] = vertices, colours
    return rows


def _check_colours(colours, n):
    if colours is None:
        return None
    arr = np.asarray(colours)
    if arr.shape != (n, 3):
        raise JetgenError("Colours must have shape ({}, 3), one RGB triple per point, not {}.".format(
            n, tuple(arr.shape)))
    if arr.dtype.kind == "f":
        arr = np.round(np.clip(arr, 0.0, 1.0) * 255.0)
    return arr.astype(np.uint8)


def ply_bytes(vertices, faces=None, binary=True, colours=None):
    """The bytes of a .ply file holding ``vertices`` (N, 3), optional ``faces`` (F, 3) and per-vertex
    ``colours`` (N, 3; uint8 or floats in [0, 1])."""
    vertices = _as_points(vertices, "vertices")
    faces = None if faces is None else _as_faces(faces, len(vertices))
    colours = _check_colours(colours, len(vertices))
    head = _ply_header(binary, len(vertices), None if faces is None else len(faces), colours is not None)
    if binary:
        body = [_vertex_rows(vertices, colours).tobytes()]
        if faces is not None:
            rows = np.empty(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
            rows["n"], rows["idx"] = 3, faces
            body.append(rows.tobytes())
        return head + b"".join(body)
    out = io.StringIO()
    if colours is None:
        np.savetxt(out, vertices, fmt="%.7g")
    else:
        for v, c in zip(vertices, colours):
            out.write("{:.7g} {:.7g} {:.7g} {} {} {}\n".format(v[0], v[1], v[2], c[0], c[1], c[2]))
    if faces is not None:
        np.savetxt(out, np.hstack([np.full((len(faces), 1), 3, np.int64), faces]), fmt="%d")
    return head + out.getvalue().encode("ascii")


def obj_text(vertices, faces=None):
    """The text of a Wavefront .obj file (1-based face indices)."""
    vertices = _as_points(vertices, "vertices")
    out = io.StringIO()
    out.write("# written by jetgen\n")
    np.savetxt(out, vertices, fmt="v %.7g %.7g %.7g")
    if faces is not None:
        np.savetxt(out, _as_faces(faces, len(vertices)).astype(np.int64) + 1, fmt="f %d %d %d")
    return out.getvalue()


def write_mesh(path, vertices, faces, binary=True, colours=None):
    """Write a triangle mesh to ``path`` (.obj, or .ply binary unless ``binary`` is false) atomically.

    ``colours`` (per vertex) are kept in .ply only. JetgenError for another extension or bad arrays.
    """
    ext = _extension(path, MESH_EXTENSIONS, "a mesh")
    if ext == ".obj":
        atomic_write_text(path, obj_text(vertices, faces))
    else:
        atomic_write_bytes(path, ply_bytes(vertices, faces, binary, colours))


def write_points(path, points, binary=True, colours=None):
    """Write a point cloud (N, 3) to ``path``: .ply (binary unless ``binary`` is false), .npy float32
    or .xyz text, atomically. JetgenError for another extension or bad arrays."""
    ext = _extension(path, POINT_EXTENSIONS, "a point cloud")
    points = _as_points(points)
    if ext == ".ply":
        atomic_write_bytes(path, ply_bytes(points, None, binary, colours))
    elif ext == ".npy":
        buf = io.BytesIO()
        np.save(buf, points, allow_pickle=False)
        atomic_write_bytes(path, buf.getvalue())
    else:
        out = io.StringIO()
        np.savetxt(out, points, fmt="%.7g")
        atomic_write_text(path, out.getvalue())


def scene(vertices, faces=None, spacing=2.2, columns=8):
    """Several shapes (n, V, 3) laid out on a grid in the x-z plane, ``spacing`` apart, as one
    (vertices (n*V, 3), faces (n*F, 3) or None) pair to write as a single file."""
    vertices = np.asarray(vertices, dtype=np.float32)
    if vertices.ndim != 3 or vertices.shape[2] != 3:
        raise JetgenError("A scene needs shapes of shape (n, V, 3), not {}.".format(tuple(vertices.shape)))
    n, v = vertices.shape[:2]
    columns = max(1, min(int(columns), n))
    rows, cols = np.divmod(np.arange(n), columns)
    offsets = np.stack([cols * spacing, np.zeros(n), rows * spacing], 1).astype(np.float32)
    out_v = (vertices + offsets[:, None, :]).reshape(-1, 3)
    if faces is None:
        return out_v, None
    faces = _as_faces(faces, v)
    out_f = (faces[None, :, :] + (np.arange(n, dtype=np.int32) * v)[:, None, None]).reshape(-1, 3)
    return out_v, out_f


# -- readers -------------------------------------------------------------------------------------
def _refuse_count(path, count, max_points):
    if count > max_points:
        raise JetgenError("{} claims {} points, more than the {} accepted; downsample the scan first.".format(
            path, count, max_points))


def _parse_ply_header(handle, path):
    """(format, elements [(name, count, [(property, type or None for a list)])], header length)."""
    if handle.read(4) not in (b"ply\n", b"ply\r"):
        raise JetgenError("{} is not a .ply file (it does not start with 'ply').".format(path))
    handle.seek(0)
    raw = handle.read(MAX_HEADER_BYTES)
    end = raw.find(b"end_header")
    if end < 0:
        raise JetgenError("{} has no end_header within its first {} bytes; it is not a readable .ply.".format(
            path, MAX_HEADER_BYTES))
    stop = raw.find(b"\n", end)
    if stop < 0:
        raise JetgenError("{} ends right after its header; it holds no points.".format(path))
    try:
        lines = raw[:end].decode("ascii").replace("\r", "").split("\n")
    except UnicodeDecodeError:
        raise JetgenError("{} has a .ply header that is not ASCII text.".format(path))
    fmt, elements = None, []
    for line in lines[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) >= 2:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3:
            if not words[2].isdigit():
                raise JetgenError("{} has an element count {!r} that is not a number.".format(path, words[2]))
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and elements:
            if len(words) == 5 and words[1] == "list" and words[2] in PLY_TYPES and words[3] in PLY_TYPES:
                elements[-1][2].append((words[4], None, (PLY_TYPES[words[2]], PLY_TYPES[words[3]])))
            elif len(words) == 3 and words[1] in PLY_TYPES:
                elements[-1][2].append((words[2], PLY_TYPES[words[1]]))
            else:
                raise JetgenError("{} has a .ply property this reader does not know: {!r}.".format(path, line))
        else:
            raise JetgenError("{} has a .ply header line this reader does not know: {!r}.".format(path, line))
    if fmt not in PLY_FORMATS:
        raise JetgenError("{} has .ply format {!r}; this reader takes ascii, binary_little_endian and "
                          "binary_big_endian.".format(path, fmt))
    return fmt, elements, stop + 1


def _read_ply(path, max_points):
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        fmt, elements, start = _parse_ply_header(handle, path)
        names = [e[0] for e in elements]
        if "vertex" not in names:
            raise JetgenError("{} has no vertex element, so it holds no points.".format(path))
        before = elements[:names.index("vertex")]
        _, count, props = elements[names.index("vertex")]
        _refuse_count(path, count, max_points)
        columns = [p[0] for p in props]
        if not all(axis in columns for axis in ("x", "y", "z")):
            raise JetgenError("{} has vertices without x, y and z properties.".format(path))
        if any(p[1] is None for p in props) or any(p[1] is None for e in before for p in e[2]):
            raise JetgenError("{} has list properties before or inside its vertices; this reader needs the "
                              "vertices first (re-save it with vertices as the first element).".format(path))
        order = PLY_FORMATS[fmt]
        after = elements[names.index("vertex") + 1:]
        if order is None:
            return _read_ply_ascii(path, handle, start, size, before, count, columns, after)
        skip = sum(e[1] * sum(np.dtype(p[1]).itemsize for p in e[2]) for e in before)
        row = np.dtype([(name, order + kind) for name, kind in props])
        need = start + skip + count * row.itemsize
        if need > size:
            raise JetgenError("{} is truncated: its header promises {} points ({} bytes) but the file has {} "
                              "bytes.".format(path, count, need, size))
        handle.seek(start + skip)
        data = np.frombuffer(handle.read(count * row.itemsize), dtype=row, count=count)
        end = _binary_elements_end(path, handle, need, size, order, after)
    if end != size:  # more bytes than the header accounts for: its counts are not the file's
        raise JetgenError("{} holds {} bytes after what its header declares ({} points{}); the header's counts are "
                          "wrong, so the file is refused (re-save it).".format(
                              path, size - end, count, "".join(", {} {}s".format(e[1], e[0]) for e in after)))
    return np.stack([data["x"], data["y"], data["z"]], 1).astype(np.float32)


def _binary_elements_end(path, handle, pos, size, order, elements):
    """The offset where the binary ``elements`` after the vertices end, reading only list lengths;
    JetgenError when the file ends before them (a face list cut short)."""
    for name, count, props in elements:
        fixed = [p for p in props if p[1] is not None]
        lists = [p for p in props if p[1] is None]
        if not lists:
            pos += count * sum(np.dtype(p[1]).itemsize for p in fixed)
        else:
            if len(props) != 1:
                raise JetgenError("{} has a {} element mixing lists and other properties; this reader takes one "
                                  "list per element (re-save it).".format(path, name))
            length_type, item_type = (np.dtype(order + t) for t in lists[0][2])
            item, width = item_type.itemsize, length_type.itemsize
            big, signed = length_type.byteorder == ">", length_type.kind == "i"
            handle.seek(pos)
            blob = handle.read(size - pos)
            at = 0
            for _ in range(count):
                if at + width > len(blob):
                    at = len(blob) + 1
                    break
                n = blob[at] if width == 1 and not signed else int.from_bytes(
                    blob[at:at + width], "big" if big else "little", signed=signed)
                at += width + n * item
            pos += at
        if pos > size:
            raise JetgenError("{} is truncated: its {} list ({} declared) ends past the end of the file.".format(
                path, name, count))
    return pos


def _read_ply_ascii(path, handle, start, size, before, count, columns, after=()):
    skip_lines = sum(e[1] for e in before)
    # every ascii vertex needs at least "0 0 0\n": a count the file cannot hold is refused unread
    if 6 * (count + skip_lines) > size - start:
        raise JetgenError("{} is truncated: its header promises {} points but the file is only {} bytes "
                          "long.".format(path, count, size))
    handle.seek(start)
    lines = []
    for number in range(skip_lines + count):
        line = handle.readline(XYZ_MAX_LINE_BYTES * 4)  # read only the lines needed, none unbounded
        if not line:
            break
        if number >= skip_lines:
            lines.append(line.decode("ascii", "replace"))
    if len(lines) < count:
        raise JetgenError("{} is truncated: its header promises {} points but holds {} lines.".format(
            path, count, len(lines)))
    try:
        rows = np.array([ln.split()[:len(columns)] for ln in lines], dtype=np.float64)
    except ValueError:
        raise JetgenError("{} has vertex lines that are not {} numbers each.".format(path, len(columns)))
    if rows.ndim != 2 or rows.shape[1] != len(columns):
        raise JetgenError("{} has vertex lines that are not {} numbers each.".format(path, len(columns)))
    rest = [ln.split() for ln in handle.read(size).decode("ascii", "replace").splitlines() if ln.strip()]
    declared = sum(e[1] for e in after)
    short = any(not words or not words[0].isdigit() or int(words[0]) != len(words) - 1 for words in rest) if any(
        p[1] is None for e in after for p in e[2]) else False
    if len(rest) != declared or short:
        raise JetgenError("{} holds {} lines after its {} points where its header declares {}{}; the header's counts "
                          "are wrong or the file is cut short, so it is refused (re-save it).".format(
                              path, len(rest), count, declared, " (a list line with the wrong count)" if short else ""))
    idx = [columns.index(a) for a in ("x", "y", "z")]
    return rows[:, idx].astype(np.float32)


def _read_xyz(path, max_points):
    size = os.path.getsize(path)
    if size > max_points * XYZ_MAX_LINE_BYTES:
        raise JetgenError("{} is {} bytes, more than {} points of text can take; downsample the scan "
                          "first.".format(path, size, max_points))
    rows = []
    with open(path, "r") as handle:
        for number, line in enumerate(handle, 1):
            words = line.replace(",", " ").split()
            if not words or words[0].startswith("#"):
                continue
            try:
                rows.append([float(w) for w in words[:3]])
            except ValueError:
                raise JetgenError("{} line {} is not three numbers: {!r}.".format(path, number, line.strip()[:80]))
            if len(words) < 3:
                raise JetgenError("{} line {} has fewer than three numbers.".format(path, number))
    _refuse_count(path, len(rows), max_points)
    return np.array(rows, dtype=np.float32).reshape(-1, 3)


def _read_obj(path, max_points):
    """The vertices (``v x y z`` lines) of a Wavefront .obj: counted in a first pass, so a file with
    more than ``max_points`` is refused before anything is allocated."""
    with open(path, "r") as handle:
        count = sum(1 for line in handle if line.startswith("v "))
    _refuse_count(path, count, max_points)
    out = np.empty((count, 3), dtype=np.float32)
    i = 0
    with open(path, "r") as handle:
        for number, line in enumerate(handle, 1):
            if not line.startswith("v ") or i >= count:
                continue
            try:
                out[i] = [float(w) for w in line.split()[1:4]]
            except ValueError:
                raise JetgenError("{} line {} is not a vertex of three numbers: {!r}.".format(
                    path, number, line.strip()[:80]))
            i += 1
    return out[:i]


def _read_npy(path, max_points):
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        shape, fortran, dtype = npy_header(handle, path)  # the one .npy header reader, with its length guard
        if dtype.kind not in "fiu" or dtype.hasobject:
            raise JetgenError("{} holds {} values; point clouds must be numbers.".format(path, dtype))
        if len(shape) == 3 and shape[0] == 1:
            shape = shape[1:]
        if len(shape) != 2 or shape[1] != 3:
            raise JetgenError("{} holds an array of shape {}; a point cloud is (N, 3).".format(path, shape))
        _refuse_count(path, shape[0], max_points)
        nbytes = shape[0] * 3 * dtype.itemsize
        if handle.tell() + nbytes > size:
            raise JetgenError("{} is truncated: it promises {} points but is only {} bytes long.".format(
                path, shape[0], size))
        data = np.frombuffer(handle.read(nbytes), dtype=dtype, count=shape[0] * 3)
    data = data.reshape((3, shape[0]) if fortran else (shape[0], 3))
    return (data.T if fortran else data).astype(np.float32)


def read_points(path, max_points=MAX_POINTS):
    """A point cloud (N, 3) float32 from a .ply (ascii or binary, any vertex properties; faces are
    ignored), .xyz (whitespace or comma separated, extra columns ignored), .npy (N, 3) or .obj (its
    vertices) file.

    Raises JetgenError when the file is missing, of another type, claims more than ``max_points``
    points (checked before reading the data), is truncated, empty or holds non-finite coordinates.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise JetgenError("No file at {}.".format(path))
    ext = os.path.splitext(path)[1].lower()
    if ext not in READ_EXTENSIONS:
        raise JetgenError("Cannot read {}: point clouds must be {} files.".format(path, ", ".join(READ_EXTENSIONS)))
    reader = {".ply": _read_ply, ".xyz": _read_xyz, ".npy": _read_npy, ".obj": _read_obj}[ext]
    try:
        points = reader(path, int(max_points))
    except (OSError, struct.error, UnicodeDecodeError) as err:
        raise JetgenError("Cannot read {} ({}).".format(path, err))
    if len(points) == 0:
        raise JetgenError("{} holds no points.".format(path))
    if not np.all(np.isfinite(points)):
        raise JetgenError("{} holds NaN or infinite coordinates; remove those points.".format(path))
    return points


# -- Chamfer, cuts, batches ----------------------------------------------------------------------
def nearest_sq_distances(a, b):
    """For each point of ``a`` (N, 3), the squared distance to its nearest point of ``b`` (M, 3): (N,)
    float64, by |a|^2 + |b|^2 - 2ab in chunks of rows."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    bb = np.sum(b * b, axis=1)
    out = np.empty(len(a))
    step = max(1, CHUNK_ELEMENTS // max(1, len(b)))
    for s in range(0, len(a), step):
        part = a[s:s + step]
        d = np.sum(part * part, axis=1)[:, None] + bb[None, :] - 2.0 * part.dot(b.T)
        out[s:s + step] = np.maximum(d.min(axis=1), 0.0)
    return out


def chamfer_one_sided(observed, decoded, mask=None):
    """Mean over the valid observed points of the squared distance to the nearest decoded point.

    ``observed`` (B, M, 3), ``decoded`` (B, Q, 3), ``mask`` (B, M) of 0/1 (None: all valid); (B,) float64.
    The same quantity the latent_grad graph returns as its loss.
    """
    observed, decoded = np.asarray(observed), np.asarray(decoded)
    mask = np.ones(observed.shape[:2]) if mask is None else np.asarray(mask, dtype=np.float64)
    out = np.empty(len(observed))
    for i in range(len(observed)):
        d = nearest_sq_distances(observed[i], decoded[i])
        out[i] = np.sum(d * mask[i]) / max(np.sum(mask[i]), 1.0)
    return out


def chamfer(a, b):
    """Squared Chamfer distance per pair, the sum of both one-way means: (B,) for clouds (B, N, 3)
    and (B, M, 3)."""
    a, b = np.asarray(a), np.asarray(b)
    return np.array([nearest_sq_distances(x, y).mean() + nearest_sq_distances(y, x).mean()
                     for x, y in zip(a, b)])


def cut_by_plane(points, rng=None, keep=0.5):
    """The points on one side of a plane with a random normal through the centroid, shifted along the
    normal so that about ``keep`` of the points remain. Returns (kept (K, 3), normal (3,)).

    ``rng`` is a numpy RandomState or a seed. JetgenError for ``keep`` outside (0, 1].
    """
    points = _as_points(points)
    if not 0.0 < float(keep) <= 1.0:
        raise JetgenError("The kept fraction must be in (0, 1], not {!r}.".format(keep))
    rng = rng if isinstance(rng, np.random.RandomState) else np.random.RandomState(rng)
    normal = rng.standard_normal(3)
    normal /= np.linalg.norm(normal) + 1e-12
    height = (points - points.mean(axis=0)).dot(normal)
    threshold = np.quantile(height, 1.0 - float(keep)) if keep < 1.0 else -np.inf
    return points[height >= threshold], normal.astype(np.float32)


def pad_clouds(clouds, size=None):
    """Clouds of different sizes as one batch: (points (B, M, 3) float32, mask (B, M) float32), the
    padding filled with each cloud's first point and masked out. ``size`` (M) defaults to the largest;
    a larger cloud is subsampled evenly. JetgenError for an empty cloud."""
    clouds = [_as_points(c) for c in clouds]
    if any(len(c) == 0 for c in clouds):
        raise JetgenError("A cloud to complete holds no points.")
    size = int(size or max(len(c) for c in clouds))
    out = np.zeros((len(clouds), size, 3), dtype=np.float32)
    mask = np.zeros((len(clouds), size), dtype=np.float32)
    for i, c in enumerate(clouds):
        if len(c) > size:
            c = c[np.linspace(0, len(c) - 1, size).astype(np.int64)]
        out[i, :len(c)], mask[i, :len(c)] = c, 1.0
        out[i, len(c):] = c[0]
    return out, mask


# -- pictures ------------------------------------------------------------------------------------
DEFAULT_VIEWS = ((20.0, -45.0), (20.0, 45.0), (75.0, 0.0))  # (elevation, azimuth) in degrees


def _rotation(elevation, azimuth):
    """Camera rotation: turn the y-up world by ``azimuth`` about y, then tilt by ``elevation``."""
    a, e = np.radians(azimuth), np.radians(elevation)
    ry = np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(e), -np.sin(e)], [0.0, np.sin(e), np.cos(e)]])
    return rx.dot(ry)


def render_view(points, size=160, elevation=20.0, azimuth=45.0, colours=None, radius=1, extent=1.1):
    """One (size, size, 3) uint8 view of ``points`` (N, 3) on white: orthographic, each point a
    (2*radius+1)^2 pixel square, nearer points drawn over farther ones and brighter.
    ``colours`` (N, 3) floats in [0, 1] tint the points (default grey-blue)."""
    points = _as_points(points)
    cam = points.dot(_rotation(elevation, azimuth).T)
    scale = (size - 1) / (2.0 * extent)
    col = np.round((cam[:, 0] + extent) * scale).astype(np.int64)
    row = np.round((extent - cam[:, 1]) * scale).astype(np.int64)
    depth = -cam[:, 2]  # the camera looks down -z: larger z is nearer
    base = np.tile([[0.30, 0.45, 0.75]], (len(points), 1)) if colours is None else np.asarray(colours, np.float64)
    far = np.clip((depth + extent) / (2.0 * extent), 0.0, 1.0)  # a fixed range: shading comparable across views
    shade = (1.0 - 0.65 * far)[:, None] * base
    offsets = np.arange(-radius, radius + 1)
    dr, dc = [o.ravel() for o in np.meshgrid(offsets, offsets, indexing="ij")]
    r_all, c_all = (row[:, None] + dr[None]).ravel(), (col[:, None] + dc[None]).ravel()
    idx = np.repeat(np.arange(len(points)), len(dr))
    inside = (r_all >= 0) & (r_all < size) & (c_all >= 0) & (c_all < size)
    pix, idx = (r_all * size + c_all)[inside], idx[inside]
    # z-buffer: per pixel keep the nearest splat (sort by pixel, then depth)
    order = np.lexsort((depth[idx], pix))
    pix, idx = pix[order], idx[order]
    first = np.ones(len(pix), dtype=bool)
    first[1:] = pix[1:] != pix[:-1]
    image = np.ones((size * size, 3))
    image[pix[first]] = shade[idx[first]]
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8).reshape(size, size, 3)


def render(clouds, views=DEFAULT_VIEWS, size=160, colours=None, radius=1, pad=4):
    """A sheet (H, W, 3) uint8: one row per cloud in ``clouds`` (a list of (N, 3) arrays or an
    (n, N, 3) array), one column per (elevation, azimuth) view. ``colours`` is None or one (N, 3)
    array per cloud."""
    clouds = [np.asarray(c) for c in clouds]
    if not clouds or not views:
        raise JetgenError("Nothing to render: give at least one cloud and one view.")
    rows, cols = len(clouds), len(views)
    sheet = np.full((rows * (size + pad) + pad, cols * (size + pad) + pad, 3), 255, dtype=np.uint8)
    for i, cloud in enumerate(clouds):
        tint = None if colours is None else colours[i]
        for j, (elev, azim) in enumerate(views):
            top, left = pad + i * (size + pad), pad + j * (size + pad)
            sheet[top:top + size, left:left + size] = render_view(cloud, size, elev, azim, tint, radius)
    return sheet


def save_render(path, clouds, views=DEFAULT_VIEWS, size=160, colours=None, radius=1):
    """Render ``clouds`` (see ``render``) and write the sheet to ``path`` as a PNG, atomically."""
    if os.path.splitext(str(path))[1].lower() != ".png":
        raise JetgenError("Cannot write a render to {}: the file must end in .png.".format(path))
    write_png(path, render(clouds, views, size, colours, radius))


def patch_colours(num_patches, points_per_patch):
    """(K * P, 3) floats in [0, 1]: one distinct hue per patch, for ``render``'s ``colours``."""
    hue = np.arange(num_patches) / float(max(num_patches, 1))
    rgb = np.stack([0.5 + 0.5 * np.cos(2 * np.pi * (hue + s)) for s in (0.0, 1.0 / 3, 2.0 / 3)], 1)
    return np.repeat(0.15 + 0.7 * rgb, points_per_patch, axis=0)
