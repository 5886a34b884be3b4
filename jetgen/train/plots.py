"""Pictures of a run: PNG files written atomically with matplotlib's Agg backend (no display needed).

Each function takes plain data (lists, tensors, arrays) or a model and an output path, draws one
figure and returns the path it wrote (or None when there is nothing to draw).
"""
import io
import json
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402
import numpy as np  # noqa: E402

from jetgen.atomic import atomic_write_bytes  # noqa: E402

DPI = 100


def _save(fig, path):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _np(t):
    if hasattr(t, "detach"):
        t = t.detach().cpu().numpy()
    return np.asarray(t)


def _float(value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _column(rows, key):
    xs, ys = [], []
    for r in rows:
        e, v = _float(r.get("epoch")), _float(r.get(key))
        if e is not None and v is not None:
            xs.append(e)
            ys.append(v)
    return xs, ys


def plot_curves(rows, path, title="", loss_unit="nats/image", kl_unit="nats/image"):
    """Loss, KL and KL-weight (beta) against epoch from metrics.csv rows (dicts of strings), the axes
    labelled with the units given. Returns None when there are no rows."""
    if not rows:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, keys, name in ((axes[0], ("train_loss", "test_loss"), "loss ({})".format(loss_unit)),
                           (axes[1], ("train_kl", "test_kl"), "KL ({})".format(kl_unit)),
                           (axes[2], ("beta",), "KL weight beta")):
        drawn = False
        for key in keys:
            xs, ys = _column(rows, key)
            if xs:
                ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=key.replace("_", " "))
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="grey")
        elif len(keys) > 1:
            ax.legend()
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(name.split(" (")[0])
        ax.grid(alpha=0.3)
    fig.suptitle(title or "training curves")
    fig.tight_layout()
    return _save(fig, path)


def read_latent_stats(path):
    """Records of RUN/latent_stats.jsonl, sorted by epoch; [] when the file is missing.
    Lines that do not parse are skipped."""
    if not os.path.isfile(path):
        return []
    records = []
    with open(path) as handle:
        for line in handle:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and "epoch" in rec and "mu_mean" in rec:
                records.append(rec)
    return sorted(records, key=lambda r: r["epoch"])


def plot_latent_stats(records, path, title=""):
    """The posterior-collapse view: per latent dimension (rows) and epoch (columns), heat maps of the
    mean of the posterior means, their spread over the data (std; a collapsed unit goes to 0), the
    mean posterior std (when recorded; goes to 1 on collapse) and KL per dimension.
    Returns None when there are no records."""
    if not records:
        return None
    epochs = [r["epoch"] for r in records]
    panels = [("mu_mean", "mean of posterior means", "RdBu_r"),
              ("mu_std", "std of posterior means over data", "viridis"),
              ("sigma_mean", "mean posterior std", "viridis"),
              ("kl_per_dim", "KL per dimension (nats)", "magma")]
    panels = [p for p in panels if all(p[0] in r and r[p[0]] is not None for r in records)]
    dim = len(records[0]["mu_mean"])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 0.18 * dim + 2.6), squeeze=False)
    for ax, (key, name, cmap) in zip(axes[0], panels):
        grid = np.array([r[key] for r in records], dtype=float).T  # (D, epochs)
        kw = {}
        if cmap == "RdBu_r":
            lim = max(1e-6, float(np.nanmax(np.abs(grid))))
            kw = dict(vmin=-lim, vmax=lim)
        im = ax.imshow(grid, aspect="auto", cmap=cmap, interpolation="nearest", origin="lower",
                       extent=(epochs[0] - 0.5, epochs[-1] + 0.5, -0.5, dim - 0.5), **kw)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("latent dimension")
        if dim <= 32:
            ax.set_yticks(range(dim))
            ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(title or "latent statistics over training (collapsed units: mu std -> 0, KL -> 0)")
    fig.tight_layout()
    return _save(fig, path)


def _tile(images):
    """(N, C, H, W) in [0, 1] -> list of HxW or HxWx3 arrays."""
    images = np.clip(_np(images), 0.0, 1.0)
    if images.shape[1] == 1:
        return [im[0] for im in images]
    return [np.transpose(im[:3], (1, 2, 0)) for im in images]


def plot_image_grid(rows, path, row_labels=None, col_labels=None, title="", xlabel=""):
    """A grid of images: ``rows`` is a list of (N_i, C, H, W) arrays/tensors, one per row,
    labelled on the left by ``row_labels``."""
    tiles = [_tile(r) for r in rows]
    n_rows, n_cols = len(tiles), max(len(t) for t in tiles)
    h, w = tiles[0][0].shape[:2]
    colour = tiles[0][0].ndim == 3
    gap = 1
    canvas = np.ones((n_rows * (h + gap) - gap, n_cols * (w + gap) - gap) + ((3,) if colour else ()))
    for i, row in enumerate(tiles):
        for j, im in enumerate(row):
            canvas[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = im
    cell = 0.55
    fig, ax = plt.subplots(figsize=(max(3.0, n_cols * cell + 1.6), n_rows * cell + 1.0))
    ax.imshow(canvas, cmap=None if colour else "gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([j * (w + gap) + w / 2 for j in range(n_cols)] if col_labels else [])
    if col_labels:
        ax.set_xticklabels(col_labels, fontsize=8)
    ax.set_yticks([i * (h + gap) + h / 2 for i in range(n_rows)] if row_labels else [])
    if row_labels:
        ax.set_yticklabels(row_labels, fontsize=9)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_reconstructions(originals, reconstructions, path, title="", recon_label="reconstruction",
                         per_row=10):
    """Originals over their reconstructions, in pairs of rows of ``per_row`` images."""
    originals, reconstructions = _np(originals), _np(reconstructions)
    rows, labels = [], []
    for start in range(0, len(originals), per_row):
        rows += [originals[start:start + per_row], reconstructions[start:start + per_row]]
        labels += ["original", recon_label]
    return plot_image_grid(rows, path, row_labels=labels, title=title or "test images and reconstructions")


def plot_samples(images, path, row_labels=None, per_row=10, title=""):
    """A grid of samples; with ``row_labels`` the images are taken as len(row_labels) equal rows."""
    images = _np(images)
    if row_labels:
        n = len(images) // len(row_labels)
        rows = [images[i * n:(i + 1) * n] for i in range(len(row_labels))]
        labels = ["label {}".format(lbl) for lbl in row_labels]
    else:
        rows = [images[i:i + per_row] for i in range(0, len(images), per_row)]
        labels = None
    return plot_image_grid(rows, path, row_labels=labels, title=title or "samples from the prior")


def plot_manifold(model, path, n=15, label=None, title=""):
    """For a 2-D latent: decode an n x n grid of latents placed at equally spaced quantiles of the
    prior (inverse CDF), so each cell covers equal prior mass. ``label`` conditions a cvae."""

    if model.latent_dim != 2:
        raise ValueError("the manifold picture needs a 2-D latent, this model has {}".format(model.latent_dim))
    q = (np.arange(n) + 0.5) / n
    vals = model.family.prior_icdf(q)
    zz = np.array([[vals[j], vals[n - 1 - i]] for i in range(n) for j in range(n)], dtype=np.float32)
    z = torch.from_numpy(zz)
    y = None
    if model.conditional:
        y = torch.nn.functional.one_hot(torch.full((len(z),), int(label or 0)), model.num_classes).float()
    with torch.no_grad():
        images = model.decode(z, y)
    rows = [images[i * n:(i + 1) * n] for i in range(n)]
    fmt = ["{:.2g}".format(v) for v in vals]
    suffix = " (label {})".format(label or 0) if model.conditional else ""
    return plot_image_grid(rows, path, row_labels=fmt[::-1], col_labels=fmt,
                           xlabel="z1 (rows: z2), at prior quantiles",
                           title=title or "2-D latent manifold" + suffix)


def plot_embedding(latents, labels, path, class_names=None, seed=0, title="", max_points=2000):
    """Test latents coloured by label: t-SNE (scikit-learn) to 2-D, or the latents themselves if 2-D.
    At most ``max_points`` latents (a seeded random subset) keep t-SNE to seconds."""
    latents, labels = _np(latents).astype(np.float64), _np(labels)
    if len(latents) > max_points:
        keep = np.sort(np.random.RandomState(seed).choice(len(latents), max_points, replace=False))
        latents, labels = latents[keep], labels[keep]
    if latents.shape[1] == 2:
        xy, how = latents, "latent space"
    else:

        perplexity = float(min(30, max(2, (len(latents) - 1) // 3)))
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(latents)
        how = "t-SNE"
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    classes = sorted(set(labels.tolist()))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for i, c in enumerate(classes):
        sel = labels == c
        name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
        ax.scatter(xy[sel, 0], xy[sel, 1], s=9, color=cmap(i % cmap.N), label=name)
    ax.legend(title="label", fontsize=8, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_xlabel("{} 1".format(how if how == "t-SNE" else "z"))
    ax.set_ylabel("{} 2".format(how if how == "t-SNE" else "z"))
    ax.set_title(title or "test latents ({}), coloured by label".format(how))
    fig.tight_layout()
    return _save(fig, path)


def plot_interpolation(model, z_a, z_b, path, y_a=None, y_b=None, steps=10, scales=(0.5, 1.0, 1.5), title=""):
    """Decode a straight line from ``z_a`` to ``z_b`` (D,), one row per latent scale factor
    (the same latents multiplied by 0.5, 1 and 1.5 show what lies inside and outside the data).
    For conditional models the one-hot label is interpolated alongside."""

    t = torch.linspace(0.0, 1.0, steps)[:, None]
    z = (1 - t) * z_a[None] + t * z_b[None]
    y = None
    if model.conditional:
        y = (1 - t) * y_a[None] + t * y_b[None]
    rows = []
    with torch.no_grad():
        for s in scales:
            rows.append(model.decode(z * s, y))
    return plot_image_grid(rows, path, row_labels=["z x {:g}".format(s) for s in scales],
                           col_labels=["{:.2f}".format(v) for v in t[:, 0].tolist()],
                           xlabel="interpolation weight (0 = first test image, 1 = second)",
                           title=title or "interpolation between two test images")
