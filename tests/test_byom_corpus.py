"""Anyone's model: the foreign-style models of tests/byom_corpus (a pytorch/examples script with
argparse and training at the top level, a pythae-style model with dict outputs, a research CVAE taking
one concatenated tensor, a notebook VAE whose batch comes from Python ints, AtlasNet-original-style
point auto-encoders), each trained for a moment, exported through the Python API and the CLI with at
most a one-line adapter, verified and run in a process where torch cannot be imported, and completed
better than its baseline. Refusals are one sentence naming the construct and the user's line."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from jetgen.cli import main
from jetgen.errors import JetgenError
from jetgen.export import export_model
from jetgen.export.from_files import load_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "byom_corpus")
PARITY = 1e-5


@pytest.fixture(scope="module")
def corpus():
    """The corpus modules, importable by name (as a user's package on --path would be)."""
    sys.path.insert(0, CORPUS)
    yield __import__
    sys.path.remove(CORPUS)


@pytest.fixture(scope="module")
def digits():
    from jetgen.train.data import load_dataset

    d = load_dataset("digits")
    return {"train_x": d.train_x, "train_y": d.train_y, "test_x": d.test_x.numpy(), "test_y": d.test_y.numpy()}


def train(model, steps, loss_of, n, lr=3e-3, batch=64, seed=0):
    """Adam on ``loss_of(model, idx)`` for ``steps`` batches of shuffled indices below ``n``."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model.train()
    try:
        for step in range(steps):
            idx = torch.randperm(n, generator=gen)[:batch]
            loss = loss_of(model, idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def kl(mu, logvar):
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def cli(*args):
    result = CliRunner().invoke(main, ["export"] + [str(a) for a in args])
    return result, result.output


TORCH_FREE = textwrap.dedent('''
    import json, sys

    class Block(object):
        BLOCKED = ("torch", "torchvision", "sklearn", "onnx", "onnxscript", "onnxslim", "safetensors")

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError("blocked for this test: " + name)
            return None

    sys.meta_path.insert(0, Block())
    import numpy as np
    from jetgen.cli import main
    from jetgen.runtime import Model

    bundle, folder = sys.argv[1], sys.argv[2]
    try:
        main(["verify", bundle], standalone_mode=False)
        verified = True
    except SystemExit as err:
        verified = err.code in (0, None)
    x, mask, y = (np.load(folder + "/" + n + ".npy") for n in ("x", "mask", "y"))
    m = Model.open(bundle)
    report = {"verified": verified, "has_encoder": m.has_encoder}
    if m.kind == "atlasnet":
        r = m.complete(list(x), seed=0)
        report["completed"] = np.asarray(r.x).tolist()
    else:
        labels = y if m.conditional else None
        r = m.complete(x, mask, labels=labels, seed=0)
        report["completed"] = np.asarray(r.x).tolist()
        report["observed_kept"] = bool(np.allclose(r.x[mask == 1], x[mask == 1]))
        report["sample"] = list(m.sample(4, labels=labels[:4] if m.conditional else None, seed=0).shape)
    report["blocked_loaded"] = sorted(n for n in sys.modules if n.split(".")[0] in Block.BLOCKED)
    print(json.dumps(report))
''')


def run_torch_free(bundle, folder, x, mask=None, y=None):
    """Verify the bundle and complete ``x`` in a process that cannot import torch; its report."""
    os.makedirs(folder, exist_ok=True)
    np.save(os.path.join(folder, "x.npy"), np.asarray(x, np.float32))
    np.save(os.path.join(folder, "mask.npy"), np.ones(1, np.float32) if mask is None else mask)
    np.save(os.path.join(folder, "y.npy"), np.zeros(len(x), np.int64) if y is None else y)
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", TORCH_FREE, bundle, folder], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["blocked_loaded"] == [] and report["verified"], report
    report["completed"] = np.asarray(report["completed"], np.float32)
    return report


def image_completion_ratio(bundle, folder, digits, labels=False):
    """Completion error on the hidden bottom half of 32 test digits over the mean-image fill's."""
    x = digits["test_x"][:32]
    mask = np.ones_like(x)
    mask[:, :, 14:, :] = 0
    y = digits["test_y"][:32].astype(np.int64) if labels else None
    report = run_torch_free(bundle, folder, x, mask, y)
    assert report["observed_kept"] and report["sample"][0] == 4
    hidden = mask == 0
    mean = digits["train_x"].numpy().mean(0, keepdims=True)
    err = float(((report["completed"] - x) ** 2)[hidden].mean())
    fill = float(((np.broadcast_to(mean, x.shape) - x) ** 2)[hidden].mean())
    return err / fill


def assert_parity(manifest):
    for graph, entry in manifest["graphs"].items():
        parity = entry["parity"]
        assert parity["max_abs"] <= PARITY or parity["max_rel"] <= PARITY, (graph, parity)
    assert manifest["graphs"]["decoder"]["parity"]["max_abs"] <= PARITY


# ------------------------------------------------------------------ pytorch/examples-style script

@pytest.fixture(scope="module")
def examples_vae(digits):
    """The script's VAE, built the way --module builds it (the script is not run), trained briefly."""
    x = digits["train_x"].flatten(1)
    torch.manual_seed(0)
    model = load_module(os.path.join(CORPUS, "examples_vae_main.py") + ":VAE")

    def step(m, i):
        recon, mu, logvar = m(x[i])
        return (F.binary_cross_entropy(recon, x[i], reduction="sum") + kl(mu, logvar)) / len(i)
    return train(model, 120, step, len(x))


@pytest.mark.slow
def test_examples_script_exports_from_the_cli_without_running_it(examples_vae, digits, tmp_path):
    torch.save(examples_vae.state_dict(), str(tmp_path / "vae.pt"))
    argv = list(sys.argv)
    result, text = cli("--module", os.path.join(CORPUS, "examples_vae_main.py") + ":VAE", "--weights",
                       tmp_path / "vae.pt", "--latent-dim", 8, "--output-shape", "1,28,28", "--target", "nano",
                       "--out", tmp_path / "cli.jetgen", "--data", "digits")
    assert result.exit_code == 0, text
    assert sys.argv == argv and "Deployable on nano" in text
    manifest = json.load(open(str(tmp_path / "cli.jetgen" / "manifest.json")))
    assert_parity(manifest)
    assert image_completion_ratio(str(tmp_path / "cli.jetgen"), str(tmp_path / "run"), digits) < 1.0

    api = export_model(examples_vae.decode, 8, str(tmp_path / "api.jetgen"), "nano", encoder=examples_vae.encode,
                       output_shape=(1, 28, 28), data=(digits["test_x"], digits["test_y"]))
    assert_parity(api)


def test_a_script_whose_model_needs_a_missing_import_says_so(tmp_path):
    script = tmp_path / "needs_vision.py"
    script.write_text(textwrap.dedent('''
        import argparse
        from torch import nn
        import torchvision_is_not_installed_here as tv
        args = argparse.ArgumentParser().parse_args()

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = tv.models.resnet18()
    '''))
    result, text = cli("--module", str(script) + ":Net", "--weights", tmp_path / "w.pt", "--latent-dim", 2,
                       "--target", "nano", "--out", tmp_path / "x.jetgen")
    assert result.exit_code == 1 and "Traceback" not in text
    assert "torchvision_is_not_installed_here" in text and "install it" in text, text
    assert len(text.strip().splitlines()) == 1, text


def test_a_script_that_exits_is_reported_not_obeyed(tmp_path):
    script = tmp_path / "exits.py"
    script.write_text("import sys\nsys.exit('usage: exits.py DATA')\nmodel = object()\n")
    result, text = cli("--module", str(script) + ":model", "--weights", tmp_path / "w.pt", "--latent-dim", 2,
                       "--target", "nano", "--out", tmp_path / "x.jetgen")
    assert result.exit_code == 1 and "SystemExit" in text and "__main__" in text, text


# ------------------------------------------------------------------ pythae-style dict outputs

@pytest.fixture(scope="module")
def pythae_vae(corpus, digits):
    pythae = corpus("pythae_style")
    x = digits["train_x"]
    torch.manual_seed(0)
    return train(pythae.build(), 120, lambda m, i: m({"data": x[i]})["loss"], len(x))


@pytest.mark.slow
def test_pythae_style_model_exports_with_an_output_key(pythae_vae, digits, tmp_path):
    model = pythae_vae
    manifest = export_model(lambda z: model.decoder(z)["reconstruction"], 8, str(tmp_path / "api.jetgen"), "nano",
                            encoder=model.encoder, encoder_keys=("embedding", "log_covariance"),
                            data=(digits["test_x"], digits["test_y"]))
    assert_parity(manifest)
    assert "<lambda>" in manifest["provenance"]["decoder"]

    torch.save(model.state_dict(), str(tmp_path / "vae.pt"))
    result, text = cli("--module", "pythae_style:build", "--path", CORPUS, "--weights", tmp_path / "vae.pt",
                       "--decoder-attr", "decoder", "--encoder-attr", "encoder", "--decoder-output", "reconstruction",
                       "--encoder-keys", "embedding,log_covariance", "--latent-dim", 8, "--target", "nano",
                       "--out", tmp_path / "cli.jetgen", "--data", "digits")
    assert result.exit_code == 0, text
    assert_parity(json.load(open(str(tmp_path / "cli.jetgen" / "manifest.json"))))
    assert image_completion_ratio(str(tmp_path / "cli.jetgen"), str(tmp_path / "run"), digits) < 1.0


def test_a_dict_output_without_a_key_names_its_entries(corpus, tmp_path):
    pythae = corpus("pythae_style")
    model = pythae.build().eval()
    with pytest.raises(JetgenError) as err:
        export_model(model.decoder, 8, str(tmp_path / "x.jetgen"), "nano", encoder=model.encoder)
    # the decoder has one entry (taken), the encoder two: the sentence names them and the option
    assert "'embedding', 'log_covariance'" in str(err.value) and "--encoder-keys" in str(err.value)
    with pytest.raises(JetgenError) as err:
        export_model(model.decoder, 8, str(tmp_path / "x.jetgen"), "nano", output_key="recon")
    assert "none named 'recon'" in str(err.value) and "'reconstruction'" in str(err.value)


# ------------------------------------------------------------------ research CVAE, one concatenated input

@pytest.mark.slow
def test_research_cvae_with_concatenated_inputs(corpus, digits, tmp_path):
    research = corpus("research_cvae")
    x, y = digits["train_x"].flatten(1), F.one_hot(digits["train_y"], 10).float()
    torch.manual_seed(0)

    def step(m, i):
        recon, mu, logvar = m(x[i], y[i])
        return (F.binary_cross_entropy(recon, x[i], reduction="sum") + kl(mu, logvar)) / len(i)
    model = train(research.CVAE(), 120, step, len(x))
    api = export_model(model.decode, 8, str(tmp_path / "api.jetgen"), "nano", encoder=model.encode, labels=range(10),
                       condition="concat", output_shape=(1, 28, 28), data=(digits["test_x"], digits["test_y"]))
    assert_parity(api)
    assert api["model"]["kind"] == "cvae"

    torch.save(model.state_dict(), str(tmp_path / "cvae.pt"))
    result, text = cli("--module", os.path.join(CORPUS, "research_cvae.py") + ":CVAE", "--weights",
                       tmp_path / "cvae.pt", "--condition", "concat", "--labels", "0..9", "--latent-dim", 8,
                       "--output-shape", "1,28,28", "--target", "nano", "--out", tmp_path / "cli.jetgen",
                       "--data", "digits")
    assert result.exit_code == 0, text
    assert image_completion_ratio(str(tmp_path / "cli.jetgen"), str(tmp_path / "run"), digits, labels=True) < 1.0

    # without the option the sentence says what the decoder was called with and which option fits
    with pytest.raises(JetgenError) as err:
        export_model(model.decode, 8, str(tmp_path / "x.jetgen"), "nano", labels=range(10), output_shape=(1, 28, 28))
    assert "z of shape (2, 8) and y of shape (2, 10)" in str(err.value) and "--condition concat" in str(err.value)


# ------------------------------------------------------------------ notebook VAE: batch from Python ints

@pytest.mark.slow
def test_notebook_vae_with_python_int_batches_works_at_every_batch(corpus, digits, tmp_path):
    notebook = corpus("notebook_vae")
    x = digits["train_x"]
    torch.manual_seed(0)

    def step(m, i):
        mu, logvar = m.encode(x[i])
        logits = m.decode(mu + torch.randn_like(mu) * torch.exp(0.5 * logvar))
        return (F.binary_cross_entropy_with_logits(logits, x[i], reduction="sum") + kl(mu, logvar)) / len(i)
    model = train(notebook.NotebookVAE(), 120, step, len(x))
    logs = []
    api = export_model(model.decode, 8, str(tmp_path / "api.jetgen"), "nano", encoder=model.encode, output="logits",
                       data=(digits["test_x"], digits["test_y"]), log=logs.append)
    assert_parity(api)
    assert any("decoder graph fixed its batch size" in line for line in logs), logs
    assert any("encoder graph fixed its batch size" in line for line in logs), logs

    torch.save(model.state_dict(), str(tmp_path / "nb.pt"))
    result, text = cli("--module", "notebook_vae:NotebookVAE", "--path", CORPUS, "--weights", tmp_path / "nb.pt",
                       "--output", "logits", "--latent-dim", 8, "--output-shape", "1,28,28", "--target", "nano",
                       "--out", tmp_path / "cli.jetgen", "--data", "digits")
    assert result.exit_code == 0, text
    assert image_completion_ratio(str(tmp_path / "cli.jetgen"), str(tmp_path / "run"), digits) < 1.0


def test_a_batch_fixed_by_a_constant_names_the_line(corpus, tmp_path):
    notebook = corpus("notebook_vae")
    model = notebook.FixedBatchVAE().eval()
    result, text = cli("--module", "notebook_vae:FixedBatchVAE", "--path", CORPUS, "--weights",
                       _weights(model, tmp_path), "--output", "logits", "--latent-dim", 8, "--output-shape",
                       "1,28,28", "--target", "nano", "--out", tmp_path / "x.jetgen")
    assert result.exit_code == 1 and "Traceback" not in text
    assert "notebook_vae.py line 33" in text and "[3, 8, 7, 7]" in text, text
    assert not os.path.exists(str(tmp_path / "x.jetgen"))


@pytest.mark.slow
def test_a_closure_reading_len_works_and_one_torch_export_cannot_follow_is_named(corpus, atlas, tmp_path):
    notebook = corpus("notebook_vae")
    model = notebook.NotebookVAE().eval()
    manifest = export_model(lambda z: model.decode(z).reshape(len(z), -1), 8, str(tmp_path / "ok.jetgen"), "nano",
                            output="logits", output_shape=(1, 28, 28))
    assert_parity(manifest)

    _, points = atlas  # its template goes through Variable(...), which torch.export cannot follow
    settings = {"patches": PATCHES, "grid": GRID, "faces": _faces(), "encoder_points": POINTS, "target_points": 64}
    with pytest.raises(JetgenError) as err:
        export_model(lambda z: points.decode(z).transpose(2, 3).reshape(len(z), -1, 3), 16,
                     str(tmp_path / "x.jetgen"), "nano", output="points", points=settings, max_batch=16)
    text = str(err.value)
    assert "only works at the batch size it was traced with" in text and "test_byom_corpus.py line" in text, text
    assert "atlasnet_original.py line 24: `return Variable(" in text, text


def _faces():
    from jetgen.models.atlasnet import grid_faces

    return grid_faces(PATCHES, GRID)


def _weights(model, tmp_path):
    path = str(tmp_path / "w.pt")
    torch.save(model.state_dict(), path)
    return path


# ------------------------------------------------------------------ AtlasNet-original-style point models

PATCHES, GRID, POINTS = 2, 4, 64


def _clouds(n, seed):
    """Clouds of three classes (sphere, cube surface, cylinder), random sizes, (n, 128, 3)."""
    rng = np.random.RandomState(seed)
    out, labels = [], []
    for i in range(n):
        cls = i % 3
        p = rng.standard_normal((128, 3))
        if cls == 0:
            p /= np.linalg.norm(p, axis=1, keepdims=True)
        elif cls == 1:
            p = rng.uniform(-1, 1, (128, 3))
            axis = rng.randint(0, 3, 128)
            p[np.arange(128), axis] = np.sign(p[np.arange(128), axis])
        else:
            t = rng.uniform(0, 2 * np.pi, 128)
            p = np.stack([np.cos(t), np.sin(t), rng.uniform(-1, 1, 128)], 1)
        out.append(0.5 * rng.uniform(0.6, 1.0) * p)
        labels.append(cls)
    return np.asarray(out, np.float32), np.asarray(labels)


@pytest.fixture(scope="module")
def clouds():
    train_x, train_y = _clouds(240, 0)
    test_x, test_y = _clouds(12, 1)
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


@pytest.fixture(scope="module")
def atlas(corpus, clouds):
    atlasnet = corpus("atlasnet_original")
    x = torch.from_numpy(clouds["train_x"])
    torch.manual_seed(0)

    def step(m, i):
        batch = x[i][:, :POINTS]
        out = m(batch.transpose(1, 2))  # channel first, as AtlasNet feeds its PointNet
        return atlasnet.chamfer(out.transpose(2, 3).reshape(len(i), -1, 3), x[i]).mean()
    return atlasnet, train(atlasnet.AtlasNetAE(PATCHES, GRID * GRID), 400, step, len(x), lr=3e-3, batch=32)


def _chamfer(a, b):
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return float(d.min(1).mean() + d.min(0).mean())


def _half(cloud, seed):
    rng = np.random.RandomState(seed)
    normal = rng.standard_normal(3)
    keep = (cloud - cloud.mean(0)).dot(normal) > 0
    return cloud[keep]


@pytest.mark.slow
def test_atlasnet_style_point_model_exports_and_completes(atlas, clouds, tmp_path):
    atlasnet, model = atlas
    settings = {"patches": PATCHES, "grid": GRID, "faces": "grid", "encoder_points": POINTS, "target_points": 64,
                "loss_scale": 100.0, "prior_weight": 0.01}
    from jetgen.models.atlasnet import grid_faces

    points = dict(settings, faces=grid_faces(PATCHES, GRID))
    table = model.encode(torch.from_numpy(clouds["train_x"][:, :POINTS]).transpose(1, 2)).detach().numpy()
    np.save(str(tmp_path / "codes.npy"), table)
    api = export_model(model.decode, 16, str(tmp_path / "api.jetgen"), "nano", encoder=model.encode, output="points",
                       points=points, data=clouds["test_x"], max_batch=16,
                       prior={"family": "gaussian", "params": {"mean": table.mean(0).tolist(),
                                                               "std": table.std(0).tolist()}})
    assert_parity(api)
    assert api["model"]["kind"] == "atlasnet"

    torch.save(model.state_dict(), str(tmp_path / "atlas.pt"))
    np.save(str(tmp_path / "test.npy"), clouds["test_x"])
    result, text = cli("--module", os.path.join(CORPUS, "atlasnet_original.py") + ":AtlasNetAE", "--weights",
                       tmp_path / "atlas.pt", "--output", "points", "--latent-dim", 16, "--patches", PATCHES,
                       "--grid", GRID, "--encoder-points", POINTS, "--target-points", 64, "--loss-scale", 100,
                       "--prior-weight", 0.01, "--prior", tmp_path / "codes.npy", "--prior-components", 3,
                       "--target", "nano", "--out", tmp_path / "cli.jetgen", "--data", tmp_path / "test.npy")
    assert result.exit_code == 0, text
    manifest = json.load(open(str(tmp_path / "cli.jetgen" / "manifest.json")))
    assert_parity(manifest)
    assert manifest["model"]["prior"]["family"] == "gmm"

    partial = [_half(c, i) for i, c in enumerate(clouds["test_x"])]
    report = run_torch_free(str(tmp_path / "cli.jetgen"), str(tmp_path / "run"),
                            np.stack([p[:40] if len(p) >= 40 else np.resize(p, (40, 3)) for p in partial]))
    completed = report["completed"]
    ours = np.mean([_chamfer(c, full) for c, full in zip(completed, clouds["test_x"])])
    # the class-centroid baseline: the training cloud of the true class closest to its class on average,
    # with as many points as the decoder makes (Chamfer to a denser cloud would favour it)
    centroid = {}
    for cls in range(3):
        members = clouds["train_x"][clouds["train_y"] == cls][:20]
        best = members[int(np.argmin([sum(_chamfer(a, b) for b in members) for a in members]))]
        centroid[cls] = best[:completed.shape[1]]
    baseline = np.mean([_chamfer(centroid[c], full) for c, full in zip(clouds["test_y"], clouds["test_x"])])
    assert ours < baseline, (ours, baseline)


@pytest.mark.slow
def test_atlasnet_flat_output_and_a_closure_decoder(atlas, clouds, tmp_path):
    atlasnet, model = atlas
    from jetgen.models.atlasnet import grid_faces

    flat = atlasnet.AtlasNetFlat(PATCHES, GRID * GRID)
    flat.load_state_dict(model.state_dict())
    flat.eval()
    points = {"patches": PATCHES, "grid": GRID, "faces": grid_faces(PATCHES, GRID), "encoder_points": POINTS,
              "target_points": 64}
    # (B, 3, N) from a closure over the module, with the encoder's code alone (a deterministic AE)
    manifest = export_model(lambda z: flat.decode(z), 16, str(tmp_path / "flat.jetgen"), "nano",
                            encoder=lambda x: flat.encode(x), encoder_input="channels_first", output="points",
                            points=points, data=clouds["test_x"], max_batch=16)
    assert_parity(manifest)
    # the same clouds as the (B, K, 3, P) decoder: the layouts are read the same way
    from jetgen.export import onnx_tools
    import onnx

    z = np.random.RandomState(0).standard_normal((3, 16)).astype(np.float32)
    got = onnx_tools.run(onnx_tools.session(onnx.load(str(tmp_path / "flat.jetgen" / "decoder.onnx"))), {"z": z})[0]
    with torch.no_grad():
        want = model.decode(torch.from_numpy(z)).transpose(2, 3).reshape(3, -1, 3).numpy()
    assert np.abs(got - want).max() <= PARITY


# ------------------------------------------------------------------ messages

def test_torch_internal_control_flow_gets_the_python_side_sentence():
    from jetgen.export.refusals import trace_failure

    def _check_input_dim(x):  # as torch's BatchNorm names its Python-side check
        raise RuntimeError("Could not guard on data-dependent expression Eq(u0, 2)")

    def decode(z):
        return _check_input_dim(z)
    try:
        decode(None)
    except RuntimeError as err:
        message = str(trace_failure(err, "latent gradient", "my.Model.decode"))
    assert "Python-side decision" in message and "test_byom_corpus.py line" in message, message
    assert "ONNX" not in message


def test_a_tracing_bug_is_not_blamed_on_onnx():
    from jetgen.export.onnx_tools import describe_export_error
    from jetgen.export.refusals import trace_failure

    err = AssertionError("Please convert all Tensors to FakeTensors first. Found in aten.alias.default(tensor([1.]))")
    assert "no ONNX translation" not in describe_export_error(err)
    assert "ONNX" not in str(trace_failure(err, "latent gradient", "m"))
    real = RuntimeError("Exporting the operator 'aten::fft_rfft' to ONNX opset version 13 is not supported.")
    assert describe_export_error(real) == "operation aten::fft_rfft has no ONNX translation"


def test_every_export_model_option_has_a_cli_flag_or_spec_key():
    import inspect

    from jetgen.cli.export import export as command
    from jetgen.export.from_files import OPTIONS, POINT_OPTIONS

    named = {"decoder": "decoder_attr", "encoder": "encoder_attr", "output_key": "decoder_output", "log": None,
             "points": POINT_OPTIONS}
    flags = {p.name for p in command.params}
    for param in inspect.signature(export_model).parameters:
        keys = named.get(param, param)
        for key in (keys if isinstance(keys, tuple) else () if keys is None else (keys,)):
            assert key in OPTIONS, param
            assert key in flags or key == "metadata", key  # metadata (a JSON object) lives in --spec only
