"""The runtime runs with torch (and every desktop-only package) unimportable, and stays Python 3.6 code."""
import os
import subprocess
import sys
import textwrap

from jetgen import modalities
from tests.runtime_fixtures import make_bundle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# everything that runs on a Jetson (JetPack 4: Python 3.6); `make lint` checks the same list
DEVICE_CODE = ["jetgen/runtime", "jetgen/spec.py", "jetgen/cli", "jetgen/bench", "jetgen/errors.py", "jetgen/atomic.py",
               "jetgen/digest.py", "jetgen/__init__.py", "jetgen/doctor.py", "jetgen/cells.py", "jetgen/_moved.py",
               "jetgen/serve", "jetgen/selftest.py", "jetgen/signing.py"]
DEVICE_CODE += ["jetgen/triton/python_model.py", "jetgen/triton/config.py"]  # run by Triton's Python on a board
# each modality's device-side parts (every part but its desktop ones), from the registry
DEVICE_MODULES = modalities.device_modules()
DEVICE_CODE += [m.replace(".", "/") + ("/__init__.py" if os.path.isdir(os.path.join(ROOT, *m.split("."))) else ".py")
                for m in DEVICE_MODULES]
BLOCKED = ("torch", "torchvision", "sklearn", "matplotlib", "onnx", "onnxscript", "onnxslim", "safetensors",
           "scipy", "pandas", "tqdm")

PROGRAM = textwrap.dedent("""
    import sys

    BLOCKED = {blocked!r}

    class Block(object):
        # a meta path finder that refuses desktop-only packages (onnx, but not onnxruntime)
        def find_module(self, name, path=None):
            return self if name.split(".")[0] in BLOCKED else None

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError("blocked for this test: " + name)
            return None

        def load_module(self, name):
            raise ImportError("blocked for this test: " + name)

    sys.meta_path.insert(0, Block())
    import jetgen.runtime
    assert "onnxruntime" not in sys.modules, "importing jetgen.runtime imported onnxruntime"
    import numpy as np
    from jetgen.runtime import Model
    from jetgen.runtime.images import region_mask
    m = Model.open({bundle!r}, intra_op_threads=1)
    x = m.sample(4, seed=0)
    r = m.complete(x, region_mask("bottom-half", m.output_shape), steps=20)
    assert np.all(r.history[-1] < r.history[0])
    from click.testing import CliRunner
    from jetgen.cli import main
    result = CliRunner().invoke(main, ["sample", {bundle!r}, "--n", "2", "--out", {out!r}])
    assert result.exit_code == 0, result.output
    import importlib
    for name in {device_modules!r}:  # every modality's device-side parts import without torch
        importlib.import_module(name)
    loaded = sorted(n for n in sys.modules if n.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("torch-free ok")
""")


def test_runtime_runs_without_torch(tmp_path):
    bundle, _ = make_bundle(str(tmp_path / "b.jetgen"))
    code = PROGRAM.format(blocked=BLOCKED, bundle=bundle, out=str(tmp_path / "g.png"), device_modules=DEVICE_MODULES)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "torch-free ok" in proc.stdout


def test_runtime_is_python36_code():
    vermin = os.path.join(os.path.dirname(sys.executable), "vermin")
    paths = DEVICE_CODE
    proc = subprocess.run([vermin, "-t=3.6-", "--no-tips", "--violations"] + paths, cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
    assert "requires" not in proc.stdout and "not met" not in proc.stdout, proc.stdout


def test_missing_onnxruntime_is_a_sentence(tmp_path):
    bundle, _ = make_bundle(str(tmp_path / "b.jetgen"))
    code = PROGRAM.split("sys.meta_path.insert")[0].replace(repr(BLOCKED), repr(("onnxruntime",))) + textwrap.dedent("""
        sys.meta_path.insert(0, Block())
        from click.testing import CliRunner
        from jetgen.cli import main
        result = CliRunner().invoke(main, ["sample", {bundle!r}, "--n", "2", "--out", {out!r}])
        print(result.exit_code)
        print(result.output)
    """).format(bundle=bundle, out=str(tmp_path / "g.png"))
    code = code.replace("{blocked!r}", repr(("onnxruntime",)))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("1\n") and "install onnxruntime" in proc.stdout and "jetson/README.md" in proc.stdout
    assert "Traceback" not in proc.stdout


def test_runtime_and_spec_import_without_click():
    code = PROGRAM.split("sys.meta_path.insert")[0].replace("{blocked!r}", repr(("click", "torch", "onnx"))) + textwrap.dedent("""
        sys.meta_path.insert(0, Block())
        import jetgen.spec, jetgen.signing
        import jetgen.runtime
        import jetgen.runtime.model, jetgen.runtime.bundle, jetgen.runtime.images, jetgen.runtime.backends.ort
        import jetgen.runtime.backends.trt.session, jetgen.runtime.backends.trt.build
        import jetgen.modalities.image.codec, jetgen.modalities.points.codec, jetgen.modalities.points.model
        import jetgen.modalities.points.serve, jetgen.modalities.points.bench
        print("click-free ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert proc.returncode == 0 and "click-free ok" in proc.stdout, proc.stderr


def test_only_the_cli_imports_click():
    offenders = []
    for here, _, names in os.walk(os.path.join(ROOT, "jetgen")):
        for name in names:
            path = os.path.join(here, name)
            if name.endswith(".py") and os.sep + "cli" not in path[len(ROOT):]:
                with open(path) as handle:
                    if any(line.strip().startswith(("import click", "from click")) for line in handle):
                        offenders.append(os.path.relpath(path, ROOT))
    assert not offenders, offenders
