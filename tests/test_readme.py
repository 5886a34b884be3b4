"""Every command of README.md and jetson/README.md, run as written, so none can break silently.

The ```bash blocks of both files are run line by line in one scratch directory, in file order
(README.md first: its training makes the run that jetson/README.md exports), then README.md's
```python block. A line that cannot run here is skipped only when it matches a SKIP rule, each with
its reason; the reasons are printed. Training and benchmarks are shortened through the environment
(``JETGEN_TRAIN_EPOCHS``, ``JETGEN_BENCH_*``: every option's environment variable), and an explicit
``--epochs N`` in a line becomes ``--epochs 2``: the commands are the same, only shorter.
"""
import os
import re
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ("README.md", os.path.join("jetson", "README.md"))

# (pattern, reason): a line matching a pattern is not run here, for that reason
SKIP = (
    (r"^make (demo|test)\b", "runs the demo or the whole test suite (minutes; make test would run this test again)"),
    (r"^(python3 -m venv|pip install)", "installs packages from the network into a new environment"),
    (r"--data mnist", "needs the MNIST IDX files, which are not bundled"),
    (r"^jetgen build\b", "builds TensorRT engines: needs TensorRT and an NVIDIA GPU"),
    (r"--backend trt\b", "runs the TensorRT backend: needs TensorRT and an NVIDIA GPU"),
    (r"/etc/nv_tegra_release", "reads a Jetson's release file"),
    (r"^(git clone|cd ~/jetgen)", "clones a placeholder repository address onto a board"),
    (r"^\./jetson/setup\.sh(?!.*--root)", "prepares a real Jetson (the --root fixture line runs the script here)"),
    (r"^scp\b", "copies a bundle to a board over the network"),
    (r"^sudo\b", "changes a Jetson's power mode as root"),
    (r"--module my_vae\.py", "exports the reader's own model file (my_vae.py, vae.pt); tests/test_byom.py runs this "
                             "command on a model it writes"),
    (r"--init-from base", "builds the full base model (minutes of training); tests/test_shapes_small.py builds a "
                          "tiny one through the same code"),
    (r"^jetgen serve\b", "starts a web server that runs until Ctrl-C (tests/test_serve_*.py drive it over HTTP and "
                         "in Chromium)"),
)
ENV = {
    "JETGEN_TRAIN_EPOCHS": "1",  # lines without --epochs: the data-chosen schedule, one epoch of it
    "JETGEN_BENCH_MIN_TIME": "0.02", "JETGEN_BENCH_WARMUP": "1", "JETGEN_BENCH_MAX_ITERS": "3",
    "JETGEN_BENCH_COMPLETE_STEPS": "3", "JETGEN_BENCH_BATCH_SIZES": "1,8", "JETGEN_BENCH_NO_MEMORY": "1",
}


def fenced_blocks(path, language):
    """The lines of each ```language block of ``path`` (continuation lines joined)."""
    with open(path) as handle:
        text = handle.read()
    blocks = re.findall(r"^```{}\n(.*?)^```".format(language), text, flags=re.S | re.M)
    return [block.replace("\\\n", " ").splitlines() for block in blocks]


def commands(path):
    return [line.strip() for block in fenced_blocks(path, "bash") for line in block
            if line.strip() and not line.strip().startswith("#")]


def skip_reason(line):
    for pattern, reason in SKIP:
        if re.search(pattern, line):
            return reason
    return None


def shortened(line):
    line = re.sub(r"--epochs \d+", "--epochs 2", line)
    if line.startswith("jetgen train atlasnet"):  # the procedural shapes, 16 per class instead of 380
        line += " --shapes-per-class 12 --test-shapes-per-class 4"
    return line


def test_every_skip_rule_is_used_and_every_line_is_either_run_or_skipped_with_a_reason():
    lines = [line for doc in DOCS for line in commands(os.path.join(ROOT, doc))]
    assert len(lines) >= 25
    for pattern, reason in SKIP:
        assert any(re.search(pattern, line) for line in lines), "unused skip rule: " + pattern
    runnable = [line for line in lines if skip_reason(line) is None]
    assert any(line.startswith("jetgen train cvae --data digits --out") for line in runnable)
    assert any(line.startswith("jetgen sample cvae.jetgen --out") for line in runnable)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A scratch directory where `jetgen` is this checkout and jetson/ and tests/fixtures are at hand."""
    work = tmp_path_factory.mktemp("readme")
    shims = work / ".bin"
    shims.mkdir()
    jetgen = shims / "jetgen"
    jetgen.write_text('#!/bin/sh\nexec "{}" -m jetgen.cli "$@"\n'.format(sys.executable))
    jetgen.chmod(0o755)
    os.symlink(os.path.join(ROOT, "jetson"), str(work / "jetson"))
    (work / "tests").mkdir()
    os.symlink(os.path.join(ROOT, "tests", "fixtures"), str(work / "tests" / "fixtures"))
    env = dict(os.environ, **ENV)
    env["PATH"] = os.pathsep.join([str(shims), os.path.dirname(sys.executable), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("JETGEN_DPKG_QUERY", None)
    return str(work), env


@pytest.mark.slow
def test_readme_commands_run_as_written(workdir, capsys):
    work, env = workdir
    skipped, seconds = [], []
    for doc in DOCS:
        for line in commands(os.path.join(ROOT, doc)):
            reason = skip_reason(line)
            if reason:
                skipped.append("{}: {}  ({})".format(doc, line.split("  #")[0], reason))
                continue
            started = time.time()
            proc = subprocess.run(["bash", "-e", "-c", shortened(line)], cwd=work, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, universal_newlines=True, timeout=900)
            seconds.append((time.time() - started, line.split("  #")[0]))
            assert proc.returncode == 0, "{} line failed (exit {}): {}\n{}".format(
                doc, proc.returncode, line, proc.stdout[-3000:])
    with capsys.disabled():
        print("\nREADME lines not run here:\n  " + "\n  ".join(skipped))
        print("slowest lines run:\n  " + "\n  ".join("{:6.1f} s  {}".format(*s) for s in sorted(seconds)[::-1][:6]))

    # the outputs the README promises
    assert os.path.isfile(os.path.join(work, "runs", "cvae", "eval.json"))
    assert os.path.isfile(os.path.join(work, "runs", "cvae", "eval-k10.json"))
    for name in ("grid.png", "digit.png", "strip.png", "completed.png", "bench.md", "bench.png", "shape-7.obj",
                 "shapes.png", "completed.obj", "completed-3d.png", "object.ply", "object-3d.png"):
        assert os.path.isfile(os.path.join(work, name)), name

    for block in fenced_blocks(os.path.join(ROOT, "README.md"), "python"):
        proc = subprocess.run([sys.executable, "-c", "\n".join(block)], cwd=work, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
        assert proc.returncode == 0, "README Python block failed:\n{}".format(proc.stdout[-3000:])
        assert "cvae.jetgen': cvae, 10-D gaussian latent, labels 0,1,2,3,4,5,6,7,8,9" in proc.stdout
