"""Type-check the TensorRT 10 code path against the tensorrt-stubs package (see mypy-trt.ini)."""
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "mypy-trt.ini")


def _stub_dirs():
    base = sysconfig.get_paths()["purelib"]
    dirs = [os.path.join(base, name) for name in ("tensorrt", "tensorrt_bindings")]
    if not all(os.path.isfile(os.path.join(d, "__init__.pyi")) for d in dirs):
        return None
    return dirs


def patch_stub_text(text):
    """Make tensorrt-stubs 10.13's .pyi files parse: `in` is a keyword, and a default may not be followed
    by a parameter without one."""
    text = re.sub(r"\bin: ", "in_: ", text)
    return re.sub(r"(= None, channel_axis: int)\)", r"\1 = ...)", text)


def prepared_stubs(target):
    import ast
    for source in _stub_dirs():
        dest = os.path.join(target, os.path.basename(source))
        os.makedirs(dest)
        for name in os.listdir(source):
            if name.endswith(".pyi"):
                with open(os.path.join(source, name)) as handle:
                    text = patch_stub_text(handle.read())
                ast.parse(text)  # SyntaxError here means the stubs changed: update patch_stub_text
                with open(os.path.join(dest, name), "w") as handle:
                    handle.write(text)
    return target


def test_trt10_path_type_checks_against_the_stubs(tmp_path):
    pytest.importorskip("mypy", reason="mypy is not installed (pip install mypy)")
    if _stub_dirs() is None:
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)")
    stubs = prepared_stubs(str(tmp_path / "stubs"))
    env = dict(os.environ, MYPYPATH=stubs)
    cmd = [sys.executable, "-m", "mypy", "--config-file", CONFIG, "--cache-dir", str(tmp_path / "cache"),
           "--python-executable", sys.executable]
    result = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, timeout=300)
    assert result.returncode == 0, result.stdout


def test_mypy_sees_a_wrong_call_on_the_trt10_path(tmp_path):
    """The check has teeth: a TensorRT 8 call on a typed engine is reported."""
    pytest.importorskip("mypy", reason="mypy is not installed (pip install mypy)")
    if _stub_dirs() is None:
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)")
    stubs = prepared_stubs(str(tmp_path / "stubs"))
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import tensorrt as trt\n"
        "def n(engine):\n"
        "    # type: (trt.ICudaEngine) -> int\n"
        "    return engine.num_bindings\n")
    env = dict(os.environ, MYPYPATH=stubs)
    cmd = [sys.executable, "-m", "mypy", "--config-file", CONFIG, "--cache-dir", str(tmp_path / "cache"),
           "--python-executable", sys.executable, str(probe)]
    result = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, timeout=300)
    assert result.returncode == 1 and '"ICudaEngine" has no attribute "num_bindings"' in result.stdout, result.stdout
