"""A tiny AtlasNet VAE trained on ellipsoid clouds and exported for nano, shared by the 3D tests
(tests/test_shapes_export.py, tests/test_shapes_cli.py): built once per session (about 8 s)."""
import numpy as np
import torch

from jetgen.export import Chamfer, ExportData, export_model
from jetgen.models.atlasnet import AtlasNet

SETTINGS = dict(latent_dim=8, patches=4, hidden=32, layers=2, train_points=128, encoder_points=64, grid=5)
TARGET_POINTS = 96


def ellipsoids(n, points, seed):
    """Clouds on ellipsoid surfaces with random axes and a random tilt: a small real family of shapes."""
    rng = np.random.RandomState(seed)
    out = np.empty((n, points, 3), dtype=np.float32)
    for i in range(n):
        u = rng.standard_normal((points, 3))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        axes = rng.uniform(0.3, 1.0, 3)
        c, s = np.cos(rng.uniform(0, np.pi)), np.sin(rng.uniform(0, np.pi))
        rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        out[i] = (u * axes).dot(rot.T)
    return out


def train(model, clouds, steps=150, seed=0):
    torch.manual_seed(seed)
    x = torch.from_numpy(clouds)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        batch = x[torch.randint(0, len(x), (16,))]
        t = model.terms(batch)
        loss = (t["recon"] + 0.01 * t["kl"].sum(1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def settings(model, target_points=TARGET_POINTS):
    return {"patches": model.patches, "grid": model.grid, "faces": model.faces(), "encoder_points": model.encoder_points,
            "target_points": target_points, "loss_scale": model.recon_scale, "prior_weight": 0.01}


def export(model, train_x, test_x, out, target="nano", **options):
    return export_model(model.grid_decoder(), model.latent_dim, out, target, encoder=model.encode, output="points",
                        likelihood=Chamfer(model.latent_grad_module()), points=settings(model),
                        data=ExportData(test_x, calib_x=train_x), max_batch=64, **options)


_SHARED = {}


def shared_bundle(tmp_path_factory):
    """(bundle path, model, train clouds, test clouds): one tiny trained AtlasNet VAE exported for nano,
    made once per test session and shared by the 3D test modules."""
    if "bundle" not in _SHARED:
        torch.set_num_threads(1)
        data = ellipsoids(72, 400, 0)
        torch.manual_seed(0)  # the initial weights too: the same model whichever tests ran before
        model = train(AtlasNet("vae", **SETTINGS), data[:64])
        out = str(tmp_path_factory.mktemp("shapes") / "shapes.jetgen")
        export(model, data[:64], data[64:], out)
        _SHARED["bundle"] = (out, model, data[:64], data[64:])
    return _SHARED["bundle"]
