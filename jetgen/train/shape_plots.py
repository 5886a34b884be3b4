"""Labelled matplotlib pictures of 3D shapes for ``jetgen eval`` of an atlasnet run.

Clouds and meshes are y-up (jetgen.train.shapes); matplotlib's 3D axes are z-up, so every picture
draws (x, z, y). Meshes are the decoder's grid sheets (``AtlasNet.faces``) coloured by patch
(``jetgen.runtime.shapes.patch_colours``). Every function writes one PNG atomically and returns its path.
"""
import numpy as np

from jetgen.runtime.shapes import patch_colours
from jetgen.train.plots import _np, _save, plt

VIEWS = ((20, -60), (20, 30), (75, -90))  # (elevation, azimuth) of the views: front-left, front-right, above
POINT_SIZE = 1.5


def _axes(fig, rows, cols, index, title=None, elev_azim=VIEWS[0]):
    ax = fig.add_subplot(rows, cols, index, projection="3d")
    ax.view_init(*elev_azim)
    for setter in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
        setter(-0.8, 0.8)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    return ax


def _cloud(ax, points, colours=None):
    p = _np(points)
    ax.scatter(p[:, 0], p[:, 2], p[:, 1], s=POINT_SIZE, c=colours if colours is not None else "#3b6ea8",
               depthshade=True, linewidths=0)


def _mesh(ax, vertices, faces, patches):
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    v = _np(vertices)[:, [0, 2, 1]]
    colours = patch_colours(patches, len(v) // patches)
    tri = v[faces]
    poly = Poly3DCollection(tri, facecolors=colours[faces[:, 0]], edgecolors="none", linewidths=0, alpha=1.0)
    ax.add_collection3d(poly)


def plot_reconstructions(inputs, decoded, patches, path, names=(), views=VIEWS[:2], title=""):
    """One row per shape: the input points and the decoded points coloured by patch, in each view."""
    n = len(inputs)
    cols = 2 * len(views)
    fig = plt.figure(figsize=(2.2 * cols, 2.2 * n + 0.5))
    for i in range(n):
        colours = patch_colours(patches, len(decoded[i]) // patches)
        for j, view in enumerate(views):
            label = names[i] if i < len(names) else ""
            _cloud(_axes(fig, n, cols, i * cols + 2 * j + 1, "input {} (view {})".format(label, j + 1), view), inputs[i])
            _cloud(_axes(fig, n, cols, i * cols + 2 * j + 2, "reconstruction (view {})".format(j + 1), view),
                   decoded[i], colours)
    fig.suptitle(title or "test shapes and their reconstructions (colour: decoder patch)")
    fig.tight_layout()
    return _save(fig, path)


def plot_mesh_grid(vertices, faces, patches, path, per_row=4, labels=(), title=""):
    """Decoded meshes (n, V, 3) with shared ``faces``, ``per_row`` to a row, coloured by patch."""
    n = len(vertices)
    rows = int(np.ceil(n / float(per_row)))
    fig = plt.figure(figsize=(2.4 * per_row, 2.4 * rows + 0.5))
    for i in range(n):
        ax = _axes(fig, rows, per_row, i + 1, labels[i] if i < len(labels) else None)
        _mesh(ax, vertices[i], faces, patches)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_patches(vertices, faces, patches, path, views=VIEWS, title=""):
    """One decoded mesh from several views, each patch its own colour (the atlas of the shape)."""
    fig = plt.figure(figsize=(3.2 * len(views), 3.6))
    for j, view in enumerate(views):
        _mesh(_axes(fig, 1, len(views), j + 1, "view {} (elevation {}, azimuth {})".format(j + 1, *view), view),
              vertices, faces, patches)
    fig.suptitle(title or "the {} patches of one reconstruction, one colour each".format(patches))
    fig.tight_layout()
    return _save(fig, path)
