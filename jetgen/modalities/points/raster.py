"""Triangles to pixels in numpy: a z-buffered rasteriser, shaded mesh views, and depth images.

    rasterise(xy, key, faces, h, w)      -> (key buffer (h, w), face index (h, w)), nearest = smallest key
    render_mesh_view(vertices, faces, size, elevation, azimuth, colours)   -> (size, size, 3) uint8
    render_depth(vertices, faces, cam, pose)  -> (H, W) float32 metres, 0 where no surface (pinhole)

Shaded views use the dot renderer's cameras (jetgen.runtime.shapes: orthographic, y-up world turned
by azimuth, tilted by elevation) so a mesh and its cloud line up; each triangle is filled with its
vertices' colour (patches keep their tint) times Lambert light (two-sided: AtlasNet patches have no
consistent orientation). Triangles are handled in batches of similar size, fragments are resolved by
one sort (no per-pixel Python loop). numpy only; Python 3.6 compatible.
"""
import numpy as np

from jetgen.errors import JetgenError

FRAGMENT_BATCH = 1 << 20  # candidate pixels per batch of triangles
LIGHT = np.array([-0.35, 0.55, 0.75]) / np.linalg.norm([-0.35, 0.55, 0.75])  # from the upper left, towards the viewer
AMBIENT = 0.35
BASE_COLOUR = (0.30, 0.45, 0.75)
MAX_RASTER_PIXELS = 4096 * 4096


def rasterise(xy, key, faces, height, width):
    """Z-buffer triangles given in pixel coordinates: ``xy`` (V, 2) (x = column, y = row; pixel
    centres at whole numbers), ``key`` (V,) interpolated linearly across each triangle (the smallest
    key wins a pixel), ``faces`` (F, 3). Returns (key buffer (H, W) float64, +inf where empty; face
    index (H, W) int64, -1 where empty). A pixel belongs to a triangle when its centre is inside or on
    an edge; degenerate triangles draw nothing."""
    if height * width > MAX_RASTER_PIXELS or height < 1 or width < 1:
        raise JetgenError("Cannot rasterise a {}x{} image (at most {} pixels).".format(
            width, height, MAX_RASTER_PIXELS))
    xy = np.asarray(xy, dtype=np.float64)
    key = np.asarray(key, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    tri = xy[faces]  # (F, 3, 2)
    keys = key[faces]  # (F, 3)
    ok = np.isfinite(tri).all(axis=(1, 2)) & np.isfinite(keys).all(axis=1)
    x0 = np.ceil(tri[..., 0].min(axis=1))
    x1 = np.floor(tri[..., 0].max(axis=1))
    y0 = np.ceil(tri[..., 1].min(axis=1))
    y1 = np.floor(tri[..., 1].max(axis=1))
    x0, y0 = np.maximum(np.where(ok, x0, 0), 0), np.maximum(np.where(ok, y0, 0), 0)
    x1, y1 = np.minimum(np.where(ok, x1, -1), width - 1), np.minimum(np.where(ok, y1, -1), height - 1)
    bw, bh = (x1 - x0 + 1).astype(np.int64), (y1 - y0 + 1).astype(np.int64)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    live = np.nonzero(ok & (bw > 0) & (bh > 0) & (np.abs(area) > 1e-12))[0]
    side = np.maximum(bw, bh)[live]
    live = live[np.argsort(side, kind="stable")]
    pix_parts, key_parts, face_parts = [], [], []
    start = 0
    while start < len(live):
        s = int(max(bw[live[start]], bh[live[start]]))
        # take triangles until the padded batch is full; sorted by size, so the last sets the pad
        end = start + 1
        while end < len(live):
            s_end = int(max(bw[live[end]], bh[live[end]]))
            if (end + 1 - start) * s_end * s_end > FRAGMENT_BATCH:
                break
            s, end = s_end, end + 1
        idx = live[start:end]
        start = end
        oy, ox = np.mgrid[0:s, 0:s]
        px = x0[idx][:, None, None] + ox[None]  # (B, s, s)
        py = y0[idx][:, None, None] + oy[None]
        a = tri[idx]
        dx, dy = px - a[:, 0, 0][:, None, None], py - a[:, 0, 1][:, None, None]
        inv = 1.0 / area[idx][:, None, None]
        u = (dx * e2[idx, 1][:, None, None] - dy * e2[idx, 0][:, None, None]) * inv  # weight of vertex 1
        v = (dy * e1[idx, 0][:, None, None] - dx * e1[idx, 1][:, None, None]) * inv  # weight of vertex 2
        eps = -1e-9
        inside = (u >= eps) & (v >= eps) & (u + v <= 1.0 - eps) & (px <= x1[idx][:, None, None]) & \
                 (py <= y1[idx][:, None, None])
        k = keys[idx]
        value = k[:, 0][:, None, None] + u * (k[:, 1] - k[:, 0])[:, None, None] + v * (k[:, 2] - k[:, 0])[:, None, None]
        b, _, _ = np.nonzero(inside)
        pix_parts.append((py[inside] * width + px[inside]).astype(np.int64))
        key_parts.append(value[inside])
        face_parts.append(idx[b])
    keybuf = np.full(height * width, np.inf)
    facebuf = np.full(height * width, -1, dtype=np.int64)
    if pix_parts:
        pix, val, fid = np.concatenate(pix_parts), np.concatenate(key_parts), np.concatenate(face_parts)
        order = np.lexsort((val, pix))
        pix, val, fid = pix[order], val[order], fid[order]
        first = np.ones(len(pix), dtype=bool)
        first[1:] = pix[1:] != pix[:-1]
        keybuf[pix[first]], facebuf[pix[first]] = val[first], fid[first]
    return keybuf.reshape(height, width), facebuf.reshape(height, width)


def face_normals(vertices, faces):
    """Unit normals (F, 3) of triangles (zero for degenerate ones)."""
    v = np.asarray(vertices, dtype=np.float64)[np.asarray(faces, dtype=np.int64)]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return n / np.maximum(length, 1e-12)


def render_mesh_view(vertices, faces, size=160, elevation=20.0, azimuth=45.0, colours=None, extent=1.1):
    """One (size, size, 3) uint8 view of a triangle mesh on white, with the cameras of
    ``shapes.render_view``: each visible triangle filled with its first vertex's colour (``colours``
    (V, 3) in [0, 1]; default grey-blue) times ambient + Lambert light from the upper left.
    JetgenError for faces indexing missing vertices."""
    from jetgen.modalities.points.codec import _rotation

    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise JetgenError("A face indexes a vertex the mesh does not have ({} vertices).".format(len(vertices)))
    cam = vertices.dot(_rotation(elevation, azimuth).T)
    scale = (size - 1) / (2.0 * extent)
    xy = np.stack([(cam[:, 0] + extent) * scale, (extent - cam[:, 1]) * scale], axis=1)
    _, fid = rasterise(xy, -cam[:, 2], faces, size, size)  # the camera looks down -z: larger z is nearer
    normals = face_normals(cam, faces)
    light = AMBIENT + (1.0 - AMBIENT) * np.abs(normals.dot(LIGHT))  # two-sided
    base = np.tile([BASE_COLOUR], (len(faces), 1)) if colours is None else \
        np.asarray(colours, dtype=np.float64)[faces[:, 0]]
    shade = np.clip(base * light[:, None], 0.0, 1.0)
    image = np.ones((size, size, 3))
    hit = fid >= 0
    image[hit] = shade[fid[hit]]
    return np.round(image * 255.0).astype(np.uint8)


def render_depth(vertices, faces, cam, rotation=None, translation=None, near=1e-3):
    """The depth image (cam.height, cam.width) float32 in metres that a pinhole camera ``cam``
    (jetgen.modalities.points.depth.Intrinsics with a size) sees of a mesh: vertices are taken to the camera
    frame by x_cam = rotation . v + translation (default: as given), projected with
    u = fx x / z + cx, v = fy y / z + cy, and z-buffered with 1/z interpolated across each triangle
    (perspective-correct depth). 0 where no surface is seen or it is nearer than ``near``."""
    if cam.width is None or cam.height is None:
        raise JetgenError("Rendering a depth image needs the camera's image size (width, height).")
    v = np.asarray(vertices, dtype=np.float64)
    if rotation is not None:
        v = v.dot(np.asarray(rotation, dtype=np.float64).T)
    if translation is not None:
        v = v + np.asarray(translation, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    z = v[:, 2]
    front = z > near
    faces = faces[front[faces].all(axis=1)]  # a triangle crossing the near plane is dropped, not clipped
    zs = np.where(front, z, 1.0)
    xy = np.stack([cam.fx * v[:, 0] / zs + cam.cx, cam.fy * v[:, 1] / zs + cam.cy], axis=1)
    keybuf, _ = rasterise(xy, -1.0 / zs, faces, cam.height, cam.width)
    depth = np.where(np.isfinite(keybuf), -1.0 / np.where(np.isfinite(keybuf), keybuf, -1.0), 0.0)
    return depth.astype(np.float32)
