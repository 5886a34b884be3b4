"""Bring your own model: PyTorch models written as in a notebook (none knows about jetgen), trained on
the digits with their own losses, exported with ``jetgen.export.export_model`` or ``jetgen export
--module``, then sampled, encoded, interpolated and completed in a process where torch cannot be
imported. Models are trained and exported once per module (fixtures); training runs on one thread,
which is fastest for models this small on a shared CPU."""
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from jetgen.cli import main
from jetgen.errors import JetgenError
from jetgen.export import Likelihood, export_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPLETION_BOUND = 0.75  # completion error on the hidden half / the mean-image fill's error


# ------------------------------------------------------------------ the users' models

class VAE(nn.Module):
    """The VAE of pytorch/examples (vae/main.py), layer names and all."""

    def __init__(self):
        super(VAE, self).__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    """Reconstruction + KL divergence summed over all elements and the batch (pytorch/examples)."""
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + KLD


class ConvVAE(nn.Module):
    """A convolutional VAE whose decoder has BatchNorm after a Linear and after a ConvTranspose, called
    by name in ``decode`` (not in a Sequential); it returns logits."""

    def __init__(self, latent_dim=16):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 16, 4, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(),
                                 nn.Flatten(), nn.Linear(32 * 7 * 7, 256), nn.ReLU())
        self.mu = nn.Linear(256, latent_dim)
        self.logvar = nn.Linear(256, latent_dim)
        self.fc0 = nn.Linear(latent_dim, 256)
        self.fc = nn.Linear(256, 32 * 7 * 7)
        self.bn0 = nn.BatchNorm1d(32 * 7 * 7)
        self.deconv1 = nn.ConvTranspose2d(32, 16, 4, 2, 1)
        self.bn1 = nn.BatchNorm2d(16)
        self.deconv2 = nn.ConvTranspose2d(16, 1, 4, 2, 1)

    def encode(self, x):
        h = self.enc(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z):
        h = F.relu(self.bn0(self.fc(F.relu(self.fc0(z))))).view(-1, 32, 7, 7)
        h = F.relu(self.bn1(self.deconv1(h)))
        return self.deconv2(h)

    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.decode(mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)), mu, logvar


def logits_loss(logits, x, mu, logvar):
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


class CVAE(nn.Module):
    """A conditional VAE: the one-hot label is concatenated to the image and to the latent; the
    encoder returns a dict."""

    def __init__(self, latent_dim=16, classes=10):
        super().__init__()
        self.fc1 = nn.Linear(784 + classes, 400)
        self.fc21 = nn.Linear(400, latent_dim)
        self.fc22 = nn.Linear(400, latent_dim)
        self.fc3 = nn.Linear(latent_dim + classes, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x, y):
        h = F.relu(self.fc1(torch.cat([x.flatten(1), y], 1)))
        return {"mu": self.fc21(h), "logvar": self.fc22(h)}

    def decode(self, z, y):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(torch.cat([z, y], 1))))).view(-1, 1, 28, 28)

    def forward(self, x, y):
        mu, logvar = self.encode(x, y).values()
        return self.decode(mu + torch.randn_like(mu) * torch.exp(0.5 * logvar), y).flatten(1), mu, logvar


class Generator(nn.Module):
    """DCGAN-style: a Linear to 7x7 maps, then ConvTranspose + BatchNorm up to 28x28."""

    def __init__(self, latent_dim=16):
        super().__init__()
        self.fc = nn.Linear(latent_dim, 64 * 7 * 7)
        self.net = nn.Sequential(
            nn.BatchNorm2d(64), nn.ReLU(True),
            nn.ConvTranspose2d(64, 32, 4, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(True),
            nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.Sigmoid())

    def forward(self, z):
        return self.net(self.fc(z).view(-1, 64, 7, 7))


class AutoDecoder(nn.Module):
    """One learned latent per training image and a generator: no encoder, latents are optimised."""

    def __init__(self, n_train, latent_dim=16):
        super().__init__()
        self.latents = nn.Embedding(n_train, latent_dim)
        nn.init.normal_(self.latents.weight, std=0.1)
        self.generator = Generator(latent_dim)


# ------------------------------------------------------------------ training, as a notebook does it

@contextlib.contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train(model, x, loss_of, epochs, lr, batch=64, seed=0):
    """Adam on ``loss_of(model, idx)`` over shuffled batches of the training indices."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    with one_thread():
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), batch):
                loss = loss_of(model, perm[i:i + batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def digits():
    from jetgen.train.data import load_dataset

    d = load_dataset("digits")
    return {"train_x": d.train_x, "train_y": d.train_y, "test_x": d.test_x.numpy(), "test_y": d.test_y.numpy()}


def vae_step(model, x):
    recon, mu, logvar = model(x)
    return loss_function(recon, x, mu, logvar)


def conv_step(model, x):
    logits, mu, logvar = model(x)
    return logits_loss(logits, x, mu, logvar)


def cvae_step(model, x, y):
    recon, mu, logvar = model(x, y)
    return loss_function(recon, x, mu, logvar)


def ad_step(model, x, idx, code_reg=1e-2):
    z = model.latents(idx)
    return F.binary_cross_entropy(model.generator(z), x, reduction="sum") + code_reg * z.pow(2).sum()


def fitted_prior(table):
    """A diagonal gaussian fitted to an auto-decoder's latent table: what `sample` draws from."""
    table = table.detach().numpy()
    return {"family": "gaussian", "params": {"mean": table.mean(0).tolist(), "std": table.std(0).tolist()}}


@pytest.fixture(scope="module")
def models(digits):
    """name -> (trained module, export_model keyword arguments); each is trained on first use."""
    x, y = digits["train_x"], F.one_hot(digits["train_y"], 10).float()
    data = (digits["test_x"], digits["test_y"])

    def mlp():
        m = train(VAE(), x, lambda m, i: vae_step(m, x[i]), epochs=5, lr=1e-3)
        return m, dict(decoder=m.decode, encoder=m.encode, latent_dim=20, output_shape=(1, 28, 28), data=data)

    def conv():
        m = train(ConvVAE(), x, lambda m, i: conv_step(m, x[i]), epochs=8, lr=3e-3)
        return m, dict(decoder=m.decode, encoder=m.encode, latent_dim=16, output="logits", data=data)

    def cvae():
        m = train(CVAE(), x, lambda m, i: cvae_step(m, x[i], y[i]), epochs=5, lr=1e-3)
        return m, dict(decoder=m.decode, encoder=m.encode, latent_dim=16, labels=range(10), data=data)

    def ad():
        m = train(AutoDecoder(len(x)), x, lambda m, i: ad_step(m, x[i], i), epochs=6, lr=3e-3)
        return m, dict(decoder=m.generator, latent_dim=16, prior=fitted_prior(m.latents.weight), data=data)

    made = {}

    def get(name):
        if name not in made:
            torch.manual_seed(0)
            made[name] = {"mlp": mlp, "conv": conv, "cvae": cvae, "ad": ad}[name]()
        return made[name]
    return get


@pytest.fixture(scope="module")
def bundles(models, tmp_path_factory):
    """name -> (bundle path, manifest) exported for the Nano through the Python API, once."""
    root = tmp_path_factory.mktemp("byom")
    made = {}

    def get(name):
        if name not in made:
            out = str(root / (name + ".jetgen"))
            made[name] = (out, export_model(out=out, target="nano", **models(name)[1]))
        return made[name]
    return get


# ------------------------------------------------------------------ the device side, without torch

TORCH_FREE = textwrap.dedent('''
    import json, sys

    class Block(object):
        BLOCKED = ("torch", "torchvision", "sklearn", "matplotlib", "onnx", "onnxscript", "onnxslim", "safetensors")

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError("blocked for this test: " + name)
            return None

    sys.meta_path.insert(0, Block())
    import numpy as np
    from jetgen.runtime import Model
    from jetgen.runtime.images import region_mask

    bundle, folder = sys.argv[1], sys.argv[2]
    x, y, mean = (np.load(folder + "/" + n + ".npy") for n in ("x", "y", "mean"))
    m = Model.open(bundle)
    labels = y if m.conditional else None
    report = {"has_encoder": m.has_encoder}
    samples = m.sample(16, labels=labels[:16] if m.conditional else None, seed=0)
    report["sample"] = [list(samples.shape), float(samples.min()), float(samples.max())]
    if m.has_encoder:
        mu, logvar = m.encode(x[:8], labels=labels[:8] if m.conditional else None)
        report["encode"] = [list(mu.shape), list(logvar.shape), bool(np.isfinite(mu).all())]
        a, b = x[0], x[1]
    else:
        a, b = m.prior.sample(2, 1.0, 0)
    path, z = m.interpolate(a, b, steps=6, labels=int(y[0]) if m.conditional else None)
    report["interpolate"] = [list(path.shape), list(z.shape)]
    mask = np.broadcast_to(region_mask("bottom-half", m.output_shape), x.shape).astype(np.float32)
    r = m.complete(x, mask, labels=labels, seed=0)
    hidden = mask == 0
    err = float(((r.x - x) ** 2)[hidden].mean())
    fill = float(((np.broadcast_to(mean, x.shape) - x) ** 2)[hidden].mean())
    report["completion_ratio"] = err / fill
    report["observed_kept"] = bool(np.array_equal(r.x[mask == 1], x[mask == 1]))
    report["blocked_loaded"] = sorted(n for n in sys.modules if n.split(".")[0] in Block.BLOCKED)
    print(json.dumps(report))
''')


def run_torch_free(bundle, digits, folder):
    """Sample, encode, interpolate and complete the bottom half of 64 test digits in a process that
    cannot import torch; the report it prints."""
    os.makedirs(folder, exist_ok=True)
    np.save(os.path.join(folder, "x.npy"), digits["test_x"][:64])
    np.save(os.path.join(folder, "y.npy"), digits["test_y"][:64].astype(np.int64))
    np.save(os.path.join(folder, "mean.npy"), digits["train_x"].numpy().mean(0))
    proc = subprocess.run([sys.executable, "-c", TORCH_FREE, bundle, folder], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["blocked_loaded"] == [] and report["observed_kept"], report
    assert report["sample"][0] == [16, 1, 28, 28] and 0.0 <= report["sample"][1] <= report["sample"][2] <= 1.0
    assert report["interpolate"][0][0] == 6
    return report


def decoder_parity(bundle, manifest, decode, latent_dim, labels=0):
    """Worst difference between decoder.onnx and the user's decode on fresh latents (batch 7)."""
    from jetgen.export import onnx_tools

    z = np.random.RandomState(11).standard_normal((7, latent_dim)).astype(np.float32)
    feeds = {"z": z}
    args = [torch.from_numpy(z)]
    if labels:
        feeds["y"] = np.eye(labels, dtype=np.float32)[np.arange(7) % labels]
        args.append(torch.from_numpy(feeds["y"]))
    got = onnx_tools.run(onnx_tools.session(onnx.load(os.path.join(bundle, "decoder.onnx"))), feeds)[0]
    with torch.no_grad():
        want = decode(*args).reshape(got.shape).numpy()
    assert manifest["graphs"]["decoder"]["parity"]["max_abs"] <= 1e-5
    return float(np.abs(got - want).max())


# ------------------------------------------------------------------ the tests

@pytest.mark.slow
def test_pytorch_example_vae_runs_on_the_device_side(models, bundles, digits, tmp_path):
    model, _ = models("mlp")
    out, manifest = bundles("mlp")
    assert set(manifest["graphs"]) == {"decoder", "encoder", "latent_grad"}
    assert manifest["model"]["kind"] == "vae" and manifest["model"]["latent_dim"] == 20
    assert manifest["provenance"]["decoder"].endswith("VAE.decode")
    assert {g["opset"] for g in manifest["graphs"].values()} == {13}
    assert manifest.check["deployable"], manifest.check
    assert decoder_parity(out, manifest, model.decode, 20) <= 1e-5
    report = run_torch_free(out, digits, str(tmp_path / "run"))
    assert report["encode"] == [[8, 20], [8, 20], True]
    assert report["completion_ratio"] <= COMPLETION_BOUND, report


@pytest.mark.slow
def test_golden_vectors_are_hashed_and_equal_to_the_module(models, bundles):
    model, _ = models("mlp")
    out, manifest = bundles("mlp")
    load = lambda entry: np.load(os.path.join(out, "golden", entry["file"]), allow_pickle=False)
    for graph, entry in manifest["graphs"].items():
        cases = entry["golden"]
        assert {c["name"].split("-")[-1] for c in cases} == {"b1", "b16"}, cases
        for case in cases:
            arrays = {}
            for side in ("inputs", "outputs"):
                for tensor, f in case[side].items():
                    assert "/" not in f["file"]
                    with open(os.path.join(out, "golden", f["file"]), "rb") as handle:
                        assert hashlib.sha256(handle.read()).hexdigest() == f["sha256"]
                    arrays[tensor] = load(f)
                    assert list(arrays[tensor].shape) == f["shape"] and arrays[tensor].dtype == np.float32
            for name, want in zip([t["name"] for t in entry["outputs"]], _torch_outputs(model, graph, arrays)):
                np.testing.assert_allclose(arrays[name], want, rtol=1e-5, atol=1e-5)


def _torch_outputs(model, graph, feeds):
    """The user's model computing each graph by hand: decode, encode, and the masked BCE's gradient."""
    t = {k: torch.from_numpy(v) for k, v in feeds.items()}
    if graph == "encoder":
        with torch.no_grad():
            return [o.numpy() for o in model.encode(t["x"].view(-1, 784))]
    if graph == "decoder":
        with torch.no_grad():
            return [model.decode(t["z"]).view(-1, 1, 28, 28).numpy()]
    z = t["z"].requires_grad_(True)
    bce = F.binary_cross_entropy(model.decode(z).view(-1, 1, 28, 28), t["target"], reduction="none")
    loss = (bce * t["mask"]).flatten(1).sum(1)
    (grad,) = torch.autograd.grad(loss.sum(), z)
    return [loss.detach().numpy(), grad.numpy()]


def _cli(*args):
    result = CliRunner().invoke(main, ["export"] + [str(a) for a in args])
    return result, result.output


@pytest.mark.slow
def test_cli_exports_a_state_dict(models, digits, tmp_path):
    model, _ = models("mlp")
    torch.save(model.state_dict(), str(tmp_path / "vae.pt"))
    out = tmp_path / "cli.jetgen"
    result, text = _cli("--module", os.path.abspath(__file__) + ":VAE", "--weights", tmp_path / "vae.pt",
                        "--latent-dim", 20, "--output-shape", "1,28,28", "--target", "nano", "--out", out,
                        "--data", "digits")
    assert result.exit_code == 0, text
    for graph in ("decoder", "encoder", "latent_grad"):  # INT64 shape tensors alone are explained, not "warnings"
        assert any(line.startswith(graph) and line.rstrip().endswith(" ok") for line in text.splitlines()), text
    assert "harmless" in text and "Deployable on nano" in text
    manifest = json.load(open(str(out / "manifest.json")))
    assert manifest["provenance"]["weights"] == "vae.pt"
    assert decoder_parity(str(out), manifest, model.decode, 20) <= 1e-5
    assert run_torch_free(str(out), digits, str(tmp_path / "run"))["completion_ratio"] <= COMPLETION_BOUND

    # the same options from a JSON file, weights as safetensors
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(tmp_path / "vae.safetensors"))
    spec = {"module": os.path.abspath(__file__) + ":VAE", "weights": str(tmp_path / "vae.safetensors"),
            "latent_dim": 20, "output_shape": [1, 28, 28], "target": "orin", "out": str(tmp_path / "spec.jetgen")}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    result, text = _cli("--spec", tmp_path / "spec.json", "--json")
    assert result.exit_code == 0, text
    assert json.loads(result.stdout)["manifest"]["target"]["name"] == "orin"


def test_pickled_model_is_refused(tmp_path):
    torch.save(VAE(), str(tmp_path / "model.pt"))
    result, text = _cli("--module", os.path.abspath(__file__) + ":VAE", "--weights", tmp_path / "model.pt",
                        "--latent-dim", 20, "--target", "nano", "--out", tmp_path / "b.jetgen")
    assert result.exit_code == 1 and "Traceback" not in text, text
    assert "pickled model object" in text and "state_dict()" in text and len(text.strip().splitlines()) == 1
    assert not (tmp_path / "b.jetgen").exists()


@pytest.mark.slow
def test_conv_vae_with_batchnorm_folds_it(models, bundles, digits, tmp_path):
    model, _ = models("conv")
    out, manifest = bundles("conv")
    ops = {n.op_type for n in onnx.load(os.path.join(out, "decoder.onnx")).graph.node}
    assert "BatchNormalization" not in ops and "ConvTranspose" in ops
    assert decoder_parity(out, manifest, lambda z: torch.sigmoid(model.decode(z)), 16) <= 1e-5
    report = run_torch_free(out, digits, str(tmp_path / "run"))
    assert report["completion_ratio"] <= COMPLETION_BOUND, report


@pytest.mark.slow
def test_conditional_decoder_takes_one_hot_labels(models, bundles, digits, tmp_path):
    model, _ = models("cvae")
    out, manifest = bundles("cvae")
    assert manifest["model"]["kind"] == "cvae" and manifest["model"]["labels"] == [str(i) for i in range(10)]
    assert [t["name"] for t in manifest["graphs"]["latent_grad"]["inputs"]] == ["z", "target", "mask", "y"]
    assert decoder_parity(out, manifest, model.decode, 16, labels=10) <= 1e-5
    report = run_torch_free(out, digits, str(tmp_path / "run"))
    assert report["encode"][0] == [8, 16] and report["completion_ratio"] <= COMPLETION_BOUND, report


@pytest.mark.slow
def test_auto_decoder_without_encoder_completes(models, bundles, digits, tmp_path):
    model, _ = models("ad")
    out, manifest = bundles("ad")
    assert set(manifest["graphs"]) == {"decoder", "latent_grad"} and manifest["model"]["kind"] == "ad"
    assert decoder_parity(out, manifest, model.generator, 16) <= 1e-5
    report = run_torch_free(out, digits, str(tmp_path / "run"))
    assert not report["has_encoder"] and report["completion_ratio"] <= COMPLETION_BOUND, report


class FFTDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 784)

    def forward(self, z):
        h = self.fc(z).view(-1, 1, 28, 28)
        return torch.sigmoid(torch.fft.irfft2(torch.fft.rfft2(h), s=(28, 28)))


class LoopDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 784)

    def forward(self, z):
        h = self.fc(z)
        for _ in range(int(z.abs().sum().item()) % 3 + 1):  # how often depends on the data
            h = torch.relu(h) - 0.1
        return torch.sigmoid(h).view(-1, 1, 28, 28)


@pytest.mark.parametrize("decoder, words", [(FFTDecoder, "uses torch.fft"), (LoopDecoder, "Python-side decision")])
def test_decoder_the_target_cannot_run_is_named(decoder, words, tmp_path):
    with pytest.raises(JetgenError) as err:
        export_model(decoder(), 8, str(tmp_path / "b.jetgen"), "nano")
    message = str(err.value)
    assert words in message and decoder.__name__ in message and len(message.splitlines()) == 1, message
    assert os.listdir(str(tmp_path)) == []


class HandWrittenGaussian(Likelihood):
    """A likelihood that supplies its gradient with respect to the decoder output by hand."""

    name, sigma = "gaussian", 0.2

    def loss_and_output_grad(self, output, target, mask):
        r = (output - target) * mask / self.sigma ** 2
        loss = (0.5 * (output - target) ** 2 / self.sigma ** 2 * mask).flatten(1).sum(1) \
            + 0.5 * np.log(2 * np.pi * self.sigma ** 2) * mask.flatten(1).sum(1)
        return loss, r


def test_a_likelihood_can_supply_its_own_gradient(tmp_path):
    torch.manual_seed(0)
    decoder = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 64), nn.Sigmoid())
    manifest = export_model(decoder, 4, str(tmp_path / "b.jetgen"), "xavier", output_shape=(1, 8, 8),
                            likelihood=HandWrittenGaussian())
    assert manifest["model"]["likelihood"] == {"name": "gaussian", "sigma": 0.2}
    case = manifest["graphs"]["latent_grad"]["golden"][-1]
    load = lambda f: torch.from_numpy(np.load(str(tmp_path / "b.jetgen" / "golden" / f["file"])))
    z, target, mask = (load(case["inputs"][k]) for k in ("z", "target", "mask"))
    from jetgen.export import Gaussian  # the built-in likelihood differentiated by autograd

    loss, grad = Gaussian(0.2).latent_loss_and_grad(lambda z, y: decoder(z).view(-1, 1, 8, 8), z, target, mask)
    np.testing.assert_allclose(load(case["outputs"]["loss"]), loss.numpy(), rtol=1e-5)
    np.testing.assert_allclose(load(case["outputs"]["grad"]), grad.numpy(), rtol=1e-4, atol=1e-5)
    assert manifest["graphs"]["latent_grad"]["parity"]["max_rel"] <= 1e-4


@pytest.mark.parametrize("decoder, kwargs, words", [
    (lambda z: (torch.sigmoid(z), z), {}, "returns a tuple of 2 values; name the position of its output"),
    (lambda z: z.long(), {}, "must return one float tensor"),
    (lambda z: torch.sigmoid(z.repeat(1, 10)), {"output_shape": (1, 28, 28)}, "needs 784"),
    (lambda z: z.repeat(1, 98).view(-1, 1, 28, 28), {}, "output=\"logits\""),
    (lambda z, y: torch.sigmoid(z.repeat(1, 98)), {"output_shape": (1, 28, 28)}, "Calling the decoder with z"),
    (lambda z: torch.sigmoid(z.repeat(1, 98)), {"output_shape": (1, 28, 28), "prior": {"family": "uniform"}},
     "needs the parameter 'low'"),
])
def test_a_decoder_with_the_wrong_interface_is_told_what_it_returned(decoder, kwargs, words, tmp_path):
    with pytest.raises(JetgenError, match=words.replace("(", r"\(")):
        export_model(decoder, 8, str(tmp_path / "b.jetgen"), "nano", **kwargs)
    assert os.listdir(str(tmp_path)) == []
