"""A full disk or quota is one sentence for every writer (issue 22, item 3): train, resume, export,
export --force, sample .png/.npy and eval each exit 1 with the path, change nothing that existed, and
leave no temporaries. The disk fills in two ways: a fake one (``os.fsync`` or safetensors' writer
raising ENOSPC/EDQUOT, as they do on a full disk) and, where this user may mount, a real 2 MB tmpfs.
"""
import errno
import hashlib
import os
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from jetgen import atomic
from jetgen.cli import main

TRAIN = ["train", "vae", "--data", "digits", "--epochs", "1", "--batch-size", "64", "--latent-dim", "4",
         "--hidden", "32", "--quiet"]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


def tree(root):
    """{relative path: sha256} of every file under ``root`` ({} when absent)."""
    out = {}
    for here, _, names in os.walk(root):
        for name in names:
            full = os.path.join(here, name)
            with open(full, "rb") as handle:
                out[os.path.relpath(full, root)] = hashlib.sha256(handle.read()).hexdigest()
    return out


def temporaries(root):
    found = []
    for here, dirs, names in os.walk(root):
        found += [os.path.join(here, e) for e in dirs + names if atomic.parse_temp_name(e)]
    return found


def assert_sentence(result, path, words=("disk is full",)):
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for word in words + (str(path),):
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    path = str(root / "R")
    done = cli(*(TRAIN + ["--out", path]))
    assert done.exit_code == 0, done.output
    bundle = str(root / "B.jetgen")
    done = cli("export", path, "--target", "nano", "--out", bundle)
    assert done.exit_code == 0, done.output
    return {"run": path, "bundle": bundle}


def no_space(errno_=errno.ENOSPC):
    def fsync(fd):
        raise OSError(errno_, os.strerror(errno_))
    return fsync


def safetensors_full(*args, **kwargs):
    from safetensors import SafetensorError
    raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "
                          "\"No space left on device\" }) No space left on device (os error 28)")


def test_train_with_a_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr("jetgen.train.rundir.save_file", safetensors_full)
    out = tmp_path / "T"
    result = cli(*(TRAIN + ["--out", out]))
    assert_sentence(result, out / "checkpoint")
    assert not temporaries(str(tmp_path))


def test_resume_with_a_full_disk_keeps_the_checkpoint(run, tmp_path, monkeypatch):
    copy = str(tmp_path / "R")
    shutil.copytree(run["run"], copy)
    before = tree(copy)
    monkeypatch.setattr("jetgen.train.rundir.save_file", safetensors_full)
    result = cli("train", "--resume", copy, "--epochs", "2", "--quiet")
    assert_sentence(result, os.path.join(copy, "checkpoint"))
    after = tree(copy)
    assert dict((k, v) for k, v in after.items() if k.startswith("checkpoint")) == \
        dict((k, v) for k, v in before.items() if k.startswith("checkpoint"))
    assert not temporaries(str(tmp_path))


@pytest.mark.parametrize("quota", [False, True])
def test_export_and_export_force_with_a_full_disk(run, tmp_path, monkeypatch, quota):
    existing = str(tmp_path / "B.jetgen")
    shutil.copytree(run["bundle"], existing)
    before = tree(existing)
    monkeypatch.setattr(os, "fsync", no_space(errno.EDQUOT if quota else errno.ENOSPC))
    words = ("quota",) if quota else ("disk is full",)
    result = cli("export", run["run"], "--target", "nano", "--out", tmp_path / "new.jetgen")
    assert_sentence(result, tmp_path / "new.jetgen", words)
    assert not os.path.exists(str(tmp_path / "new.jetgen"))
    result = cli("export", run["run"], "--target", "nano", "--out", existing, "--force")
    assert_sentence(result, existing, words)
    assert tree(existing) == before
    assert not temporaries(str(tmp_path))


@pytest.mark.parametrize("name", ["s.png", "s.npy"])
def test_sample_with_a_full_disk_keeps_the_old_file(run, tmp_path, monkeypatch, name):
    out = tmp_path / name
    out.write_bytes(b"precious")
    monkeypatch.setattr(os, "fsync", no_space())
    result = cli("sample", run["bundle"], "--n", "4", "--out", out)
    assert_sentence(result, out, ("disk is full", "needs about"))
    assert out.read_bytes() == b"precious"
    assert not temporaries(str(tmp_path))


def test_eval_checks_its_room_before_computing(run, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", no_space())
    result = cli("eval", run["run"], "--out", tmp_path / "plots")
    assert_sentence(result, tmp_path / "plots")
    assert "baseline" not in result.stderr  # refused before the first computing phase
    assert not os.path.exists(str(tmp_path / "plots" / "eval.json"))
    assert not temporaries(str(tmp_path))


# -- a real full filesystem ------------------------------------------------------------------------
@pytest.fixture
def full_tmpfs(tmp_path):
    """A 2 MB tmpfs with about 8 kB left; skipped where this user may not mount one."""
    mnt = str(tmp_path / "mnt")
    os.makedirs(mnt)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip("cannot run mount here: {}".format(err))
    if done.returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here: {}".format(done.stdout.strip()))
    try:
        with open(os.path.join(mnt, "filler"), "wb") as handle:
            try:
                handle.write(b"\0" * (2 * 1024 * 1024 - 8192))
                handle.flush()
            except OSError:
                pass
        yield mnt
    finally:
        subprocess.run(["umount", mnt], timeout=20)


def test_every_writer_on_a_real_full_tmpfs(run, full_tmpfs):
    pre = os.path.join(full_tmpfs, "old.npy")
    with open(pre, "wb") as handle:
        handle.write(b"precious")
    cases = [
        (TRAIN + ["--out", os.path.join(full_tmpfs, "T")], os.path.join(full_tmpfs, "T")),
        (["export", run["run"], "--target", "nano", "--out", os.path.join(full_tmpfs, "B.jetgen")], os.path.join(full_tmpfs, "B.jetgen")),
        (["sample", run["bundle"], "--n", "256", "--out", pre], pre),
        (["sample", run["bundle"], "--n", "256", "--out", os.path.join(full_tmpfs, "s.png")],
         os.path.join(full_tmpfs, "s.png")),
        (["eval", run["run"], "--out", os.path.join(full_tmpfs, "plots")], os.path.join(full_tmpfs, "plots")),
    ]
    for argv, path in cases:
        result = cli(*argv)
        assert result.exit_code == 1, (argv, result.output)
        assert_sentence(result, path)
    with open(pre, "rb") as handle:
        assert handle.read() == b"precious"
    assert not temporaries(full_tmpfs)
