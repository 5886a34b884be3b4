"""What a bundle or a run may claim, and who made it (issue 22, items 4 and 5).

Manifest numbers outside sense (a prior std of 1e30, an output range of +-1e30 that would switch off
the runtime's output check, ten labels named "0") are refused by the one reader, jetgen.spec; an
edited or extended config.json is refused by the run reader; a signed bundle whose manifest or any
file changed, even consistently (sha256 fixed in the manifest), is refused when a key is given.
"""
import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from jetgen.cli import main
from jetgen.errors import JetgenError
from jetgen.runtime import Model
from tests.runtime_fixtures import edit_manifest, make_bundle


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("trust"))
    return {"vae": make_bundle(os.path.join(root, "vae.jetgen"))[0],
            "cvae": make_bundle(os.path.join(root, "cvae.jetgen"), kind="cvae", n_labels=3)[0],
            "exp": make_bundle(os.path.join(root, "exp.jetgen"), kind="vad", family="exponential", encoder=False)[0]}


def edited(base, tmp_path, name, change):
    k = 0
    while os.path.exists(str(tmp_path / "{}{}.jetgen".format(name, k))):
        k += 1
    path = str(tmp_path / "{}{}.jetgen".format(name, k))
    shutil.copytree(base[name], path)
    edit_manifest(path, change)
    return path


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def change(manifest):
        here = manifest
        for key in keys[:-1]:
            here = here[key]
        here[keys[-1]] = value(here[keys[-1]]) if callable(value) else value
    return change


BOUNDS = [
    ("vae", _set("model", "prior", "params", "std", lambda v: [1e30] * len(v)), "std outside"),
    ("vae", _set("model", "prior", "params", "std", lambda v: [1e-12] * len(v)), "std outside"),
    ("vae", _set("model", "prior", "params", "mean", lambda v: [5e3] * len(v)), "mean beyond"),
    ("exp", _set("model", "prior", "params", "rate", lambda v: [1e-9] * len(v)), "rate outside"),
    ("vae", _set("model", "output", "range", [-1e30, 1e30]), "does not fit its bernoulli likelihood"),
    ("vae", _set("model", "output", "range", [0.0, 255.0]), "does not fit its bernoulli likelihood"),
    ("vae", _set("model", "likelihood", {"name": "gaussian", "sigma": 1e30}), "sigma in"),
    ("cvae", _set("model", "labels", ["0", "0", "0"]), "distinct"),
    ("cvae", _set("model", "labels", ["a", " ", "c"]), "distinct"),
]


@pytest.mark.parametrize("name,change,words", BOUNDS, ids=[w + str(i) for i, (_, _, w) in enumerate(BOUNDS)])
def test_manifest_numbers_outside_sense_are_refused(base, tmp_path, name, change, words):
    path = edited(base, tmp_path, name, change)
    with pytest.raises(JetgenError) as err:
        Model.open(path)
    assert words in str(err.value)
    result = CliRunner().invoke(main, ["sample", path, "--n", "2", "--out", str(tmp_path / "o.npy")])
    assert result.exit_code == 1 and "Traceback" not in result.output and words in result.stderr


def test_sensible_numbers_still_open(base, tmp_path):
    path = edited(base, tmp_path, "vae", _set("model", "prior", "params", "std", lambda v: [3.0] * len(v)))
    with Model.open(path) as m:
        assert m.sample(2, seed=0).shape == (2, 1, 8, 8)
    path = edited(base, tmp_path, "vae", _set("model", "likelihood", {"name": "gaussian", "sigma": 0.1}))
    with Model.open(path) as m:
        assert np.isfinite(m.sample(2, seed=0)).all()


# -- config.json ---------------------------------------------------------------------------------------
TRAIN = ["train", "vae", "--data", "digits", "--epochs", "1", "--batch-size", "64", "--latent-dim", "4",
         "--hidden", "32", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("trained") / "R")
    result = CliRunner().invoke(main, TRAIN + ["--out", path])
    assert result.exit_code == 0, result.output
    return path


def run_copy(trained, tmp_path, change_config=None, change_meta=None):
    path = str(tmp_path / "R")
    shutil.copytree(trained, path)
    for name, change in (("config.json", change_config), (os.path.join("checkpoint", "meta.json"), change_meta)):
        if change is None:
            continue
        full = os.path.join(path, name)
        with open(full) as handle:
            data = json.load(handle)
        change(data)
        with open(full, "w") as handle:
            json.dump(data, handle, indent=2)
    return path


def export(path, tmp_path):
    return CliRunner().invoke(main, ["export", path, "--target", "nano", "--out", str(tmp_path / "B.jetgen")])


def test_a_config_edited_after_training_is_refused(trained, tmp_path):
    path = run_copy(trained, tmp_path, change_config=lambda c: c.update(likelihood="gaussian"))
    result = export(path, tmp_path)
    assert result.exit_code == 1 and "changed after the checkpoint was saved" in result.stderr, result.output
    assert not os.path.exists(str(tmp_path / "B.jetgen"))
    result = CliRunner().invoke(main, ["eval", path, "--no-pictures", "--iw-samples", "2"])
    assert result.exit_code == 1 and "changed after the checkpoint was saved" in result.stderr, result.output


def test_unknown_config_keys_are_refused(trained, tmp_path):
    path = run_copy(trained, tmp_path, change_config=lambda c: c.update(lattent_dim=8))
    result = export(path, tmp_path)
    assert result.exit_code == 1 and "lattent_dim" in result.stderr and "no jetgen writes" in result.stderr, \
        result.output


def test_resume_may_change_epochs_and_old_runs_without_a_digest_load(trained, tmp_path):
    path = run_copy(trained, tmp_path, change_meta=lambda m: m.pop("config_sha256"))
    result = export(path, tmp_path)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["train", "--resume", path, "--epochs", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    with open(os.path.join(path, "checkpoint", "meta.json")) as handle:
        assert len(json.load(handle)["config_sha256"]) == 64
    shutil.rmtree(str(tmp_path / "B.jetgen"))
    assert export(path, tmp_path).exit_code == 0


# -- signed bundles ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    from jetgen import signing
    root = tmp_path_factory.mktemp("keys")
    mine, other = str(root / "mine.key"), str(root / "other.key")
    signing.new_key(mine)
    signing.new_key(other)
    return {"mine": mine, "other": other}


@pytest.fixture
def signed(base, keys, tmp_path):
    path = str(tmp_path / "signed.jetgen")
    shutil.copytree(base["vae"], path)
    result = CliRunner().invoke(main, ["sign", path, "--key", keys["mine"]])
    assert result.exit_code == 0 and "Signed" in result.output, result.output
    return path


def rewrite_decoder_consistently(path, tmp_path):
    """The issue's "consistent" tampering: another decoder of the same interface, its size and sha256 fixed
    in the manifest, so every file matches the manifest and `jetgen verify`'s sha256 checks pass."""
    import hashlib
    other = make_bundle(str(tmp_path / "other.jetgen"), seed=7)[0]
    shutil.copyfile(os.path.join(other, "decoder.onnx"), os.path.join(path, "decoder.onnx"))
    with open(os.path.join(path, "decoder.onnx"), "rb") as handle:
        data = handle.read()
    mpath = os.path.join(path, "manifest.json")
    with open(mpath) as handle:
        manifest = json.load(handle)
    manifest["graphs"]["decoder"].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    with open(mpath, "w") as handle:
        json.dump(manifest, handle, indent=2)


def test_a_signed_bundle_opens_with_its_key_in_every_form(signed, keys, monkeypatch):
    from jetgen import signing
    want = Model.open(signed, key=False).sample(2, seed=0)
    for key in (keys["mine"], signing.read_key(keys["mine"])):
        with Model.open(signed, key=key) as m:
            np.testing.assert_array_equal(m.sample(2, seed=0), want)
    monkeypatch.setenv("JETGEN_BUNDLE_KEY", keys["mine"])
    with Model.open(signed) as m:
        assert m.sample(1, seed=0).shape == (1, 1, 8, 8)


def test_the_consistently_tampered_bundle_is_refused_with_a_key(signed, keys, tmp_path):
    rewrite_decoder_consistently(signed, tmp_path)
    Model.open(signed, key=False).close()  # without a key the sha256s match: integrity holds, origin is unknown
    with pytest.raises(JetgenError) as err:
        Model.open(signed, key=keys["mine"])
    assert "does not verify" in str(err.value) and "changed after signing" in str(err.value)
    for command in (["sample", signed, "--n", "2", "--out", str(tmp_path / "o.npy")], ["info", signed],
                    ["verify", signed], ["check", signed, "--target", "nano"]):
        result = CliRunner().invoke(main, command + ["--key", keys["mine"]])
        assert result.exit_code == 1 and "does not verify" in result.stderr, (command, result.output)
        assert "Traceback" not in result.output
    assert not os.path.exists(str(tmp_path / "o.npy"))


def test_unsigned_and_other_key_bundles_are_refused(base, signed, keys, tmp_path, monkeypatch):
    with pytest.raises(JetgenError) as err:
        Model.open(base["vae"], key=keys["mine"])
    assert "is not signed" in str(err.value)
    with pytest.raises(JetgenError) as err:
        Model.open(signed, key=keys["other"])
    assert "another key" in str(err.value)
    monkeypatch.setenv("JETGEN_BUNDLE_KEY", keys["mine"])
    result = CliRunner().invoke(main, ["sample", base["vae"], "--n", "2", "--out", str(tmp_path / "o.npy")])
    assert result.exit_code == 1 and "is not signed" in result.stderr
    short = tmp_path / "short.key"
    short.write_bytes(b"0123456789")
    result = CliRunner().invoke(main, ["info", signed, "--key", str(short)])
    assert result.exit_code == 1 and "at least 32" in result.stderr


def test_serve_with_a_key_serves_signed_bundles_only(base, signed, keys, monkeypatch):
    from jetgen.serve import make_server
    monkeypatch.setenv("JETGEN_BUNDLE_KEY", keys["mine"])
    with pytest.raises(JetgenError) as err:
        make_server([signed, base["vae"]], port=0, log=lambda line: None)
    assert "is not signed" in str(err.value)
    server = make_server([signed], port=0, log=lambda line: None)
    server.close()


def test_export_sign_and_the_environment_during_export(trained, keys, tmp_path, monkeypatch):
    monkeypatch.setenv("JETGEN_BUNDLE_KEY", keys["mine"])  # set on the machine that exports, too
    out = str(tmp_path / "S.jetgen")
    result = CliRunner().invoke(main, ["export", trained, "--target", "nano", "--out", out, "--sign", keys["mine"]])
    assert result.exit_code == 0, result.output
    with Model.open(out) as m:
        assert m.sample(1, seed=0).shape[0] == 1
    result = CliRunner().invoke(main, ["info", out, "--key", keys["other"]])
    assert result.exit_code == 1 and "another key" in result.stderr


# -- what the runtime reads from users (issue 22, items 7-9) -------------------------------------------
def test_info_never_prints_a_manifests_control_characters(base, tmp_path):
    path = edited(base, tmp_path, "vae", _set("name", "evil\x1b]0;owned\x07\x00\x1b[31mred\u202e"))
    result = CliRunner().invoke(main, ["info", path])
    assert result.exit_code == 0, result.output
    assert not any(ch in result.output for ch in "\x1b\x07\x00\u202e")
    assert "evil\\x1b]0;owned\\x07\\x00" in result.output


def test_points_far_out_blame_the_cloud():
    from jetgen.runtime.points import as_clouds
    with pytest.raises(JetgenError) as err:
        as_clouds(np.full((10, 3), 1e30, np.float32), "cloud to complete")
    assert "coordinates up to 1e+30" in str(err.value) and "scale the cloud" in str(err.value)


def _ply(n_header, points, faces=None, cut=0, binary=True):
    head = ["ply", "format {} 1.0".format("binary_little_endian" if binary else "ascii"),
            "element vertex {}".format(n_header), "property float x", "property float y", "property float z"]
    if faces is not None:
        head += ["element face {}".format(len(faces)), "property list uchar int vertex_indices"]
    data = ("\n".join(head + ["end_header"]) + "\n").encode("ascii")
    if binary:
        data += np.asarray(points, "<f4").tobytes()
        for f in faces if faces is not None else []:
            data += bytes([3]) + np.asarray(f, "<i4").tobytes()
    else:
        data += "".join("{} {} {}\n".format(*p) for p in points).encode()
        data += "".join("3 {} {} {}\n".format(*f) for f in (faces if faces is not None else [])).encode()
    return data[:len(data) - cut] if cut else data


@pytest.mark.parametrize("what,data,words", [
    ("10 declared, 1000 held", _ply(10, np.random.RandomState(0).rand(1000, 3)), "header's counts are wrong"),
    ("faces cut short", _ply(4, np.eye(4, 3), [[0, 1, 2], [1, 2, 3]], cut=3), "truncated"),
    ("ascii, 10 declared, 20 held", _ply(10, np.random.RandomState(0).rand(20, 3), binary=False), "header's counts"),
    ("ascii faces cut short", _ply(4, np.eye(4, 3), [[0, 1, 2], [1, 2, 3]], binary=False, cut=7), "cut short"),
])
def test_ply_whose_header_does_not_fit_its_data_is_refused(tmp_path, what, data, words):
    from jetgen.runtime.shapes import read_points
    path = tmp_path / "scan.ply"
    path.write_bytes(data)
    with pytest.raises(JetgenError) as err:
        read_points(str(path))
    assert words in str(err.value), str(err.value)


def test_a_well_formed_ply_still_reads(tmp_path):
    from jetgen.runtime.shapes import read_points
    pts = np.random.RandomState(1).rand(50, 3).astype(np.float32)
    for binary in (True, False):
        path = tmp_path / "ok{}.ply".format(int(binary))
        path.write_bytes(_ply(50, pts, [[0, 1, 2], [2, 3, 4]], binary=binary))
        np.testing.assert_allclose(read_points(str(path)), pts, rtol=1e-6)


def test_outputs_out_of_range_blame_latents_far_from_the_prior_not_the_bundle(base, tmp_path):
    # a declared range narrower than the sigmoid's: any decode can leave it, so the message must say why
    path = edited(base, tmp_path, "vae", _set("model", "output", "range", [0.0, 0.5]))
    with Model.open(path) as m:
        with pytest.raises(JetgenError) as far:
            m.decode(np.full((1, 4), 5e4, np.float32))
        with pytest.raises(JetgenError) as near:
            m.decode(np.full((16, 4), 2.0, np.float32))
    assert "far outside the prior" in str(far.value) and "broken" not in str(far.value)
    assert "broken" in str(near.value)
