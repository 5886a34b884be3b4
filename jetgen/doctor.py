"""What ``jetgen doctor`` checks: what this machine is, what jetgen can do on it, what to install.

Nothing here fails or needs a GPU: a fact that cannot be found is None. Optional packages are
looked up without importing them where possible (torch only when it is installed, to read its CUDA
state). Jetson facts are read from files under a root directory (``/`` on a board; a fixture tree
in tests), the way ``jetson/setup.sh --root`` reads them. Python 3.6 compatible; stdlib only.
"""
import fnmatch
import importlib
import importlib.util
import os
import platform
import subprocess
import sys

from jetgen.bench.device_info import _read as read_text, cpu_name, parse_l4t  # one reader of /etc and /proc

# /proc/device-tree/compatible entry (glob) -> jetgen target and board name: the BOARDS table of
# jetson/setup.sh (tests/test_doctor.py keeps the two equal); the SoC rows last catch other carriers.
BOARDS = (
    ("nvidia,p3450-0000", "nano", "Jetson Nano"),
    ("nvidia,p2771-0000", "tx2", "Jetson TX2"),
    ("nvidia,p2972-0000", "xavier", "Jetson AGX Xavier"),
    ("nvidia,p3509-0000+p3668-*", "xavier", "Jetson Xavier NX"),
    ("nvidia,p3737-0000+p3701-*", "orin", "Jetson AGX Orin"),
    ("nvidia,p3768-0000+p3767-*", "orin", "Jetson Orin NX/Nano"),
    ("nvidia,tegra210", "nano", "Jetson with Tegra X1 (Nano/TX1 class)"),
    ("nvidia,tegra186", "tx2", "Jetson with Tegra186 (TX2 class)"),
    ("nvidia,tegra194", "xavier", "Jetson with Tegra194 (Xavier class)"),
    ("nvidia,tegra234", "orin", "Jetson with Tegra234 (Orin class)"),
)
RELEASES_TSV = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jetson", "releases.tsv")

# package (import name, distribution name) -> what jetgen uses it for
PACKAGES = (
    ("numpy", "numpy", "everything"),
    ("click", "click", "the command line"),
    ("onnxruntime", "onnxruntime", "runtime backend ort; export checks"),
    ("tensorrt", "tensorrt", "runtime backend trt; jetgen build"),
    ("pycuda", "pycuda", "trt backend's GPU memory (JetPack 4)"),
    ("cuda", "cuda-python", "trt backend's GPU memory (Python 3.9+)"),
    ("torch", "torch", "train, export, bench's reference"),
    ("sklearn", "scikit-learn", "train: digits data, eval's classifier"),
    ("matplotlib", "matplotlib", "eval's pictures"),
    ("PIL", "pillow", "image folders; PNG reading"),
    ("safetensors", "safetensors", "checkpoints"),
    ("tqdm", "tqdm", "training progress"),
    ("onnx", "onnx", "export"),
    ("onnxscript", "onnxscript", "export (dynamo exporter)"),
    ("onnxslim", "onnxslim", "export: graph simplification"),
    ("onnxconverter_common", "onnxconverter-common", "export --precision fp16"),
)
EXTRA_OF = {"torch": "train", "sklearn": "train", "matplotlib": "train", "PIL": "train", "safetensors": "train",
            "tqdm": "train", "onnx": "export", "onnxscript": "export", "onnxslim": "export",
            "onnxconverter_common": "export", "onnxruntime": "ort"}
TRAIN_NEEDS = ("torch", "sklearn", "matplotlib", "PIL", "safetensors", "tqdm")
EXPORT_NEEDS = ("torch", "onnx", "onnxscript", "onnxruntime", "onnxslim", "onnxconverter_common")


def l4t_from_dpkg(status_text):
    """'35.4.1' from a dpkg status file's nvidia-l4t-core stanza (the part of Version before '-')."""
    for stanza in (status_text or "").split("\n\n"):
        fields = dict(line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith(" "))
        if fields.get("Package", "").strip() == "nvidia-l4t-core" and "Version" in fields:
            return fields["Version"].strip().split("-")[0] or None
    return None


def board_from_compatible(text):
    """(target, board name, matched entry) for NUL-separated compatible entries, or None."""
    entries = [e for e in (text or "").split("\x00") if e.strip()]
    for pattern, target, name in BOARDS:
        for entry in entries:
            if fnmatch.fnmatchcase(entry.strip(), pattern):
                return target, name, entry.strip()
    return None


def _release_rows(path=RELEASES_TSV):
    text = read_text(path) or ""
    keys = ("l4t", "jetpack", "ubuntu", "python", "cuda", "tensorrt", "boards")
    rows = []
    for line in text.splitlines():
        cells = line.split("\t")
        if not line.startswith("#") and len(cells) >= len(keys):
            rows.append(dict(zip(keys, cells)))
    return rows


def _version(text):
    try:
        return tuple(int(p) for p in str(text).split("."))
    except ValueError:
        return None


def release_row(l4t, path=RELEASES_TSV):
    """The jetson/releases.tsv row for an L4T release as a dict, with ``exact`` False where the release
    is not listed but is a later point release of a listed major: then the nearest listed row below it
    (jetson/setup.sh's release policy). None for other unknown releases, or without a source tree."""
    wanted = _version(l4t)
    below = None
    for row in _release_rows(path):
        if row["l4t"] == l4t:
            return dict(row, exact=True)
        have = _version(row["l4t"])
        if wanted and have and have[0] == wanted[0] and have <= wanted and (below is None or have > _version(below["l4t"])):
            below = row
    return dict(below, exact=False) if below else None


def release_advice(l4t, path=RELEASES_TSV):
    """What to do about an L4T release :func:`release_row` does not take (jetson/setup.sh's advice)."""
    rows = sorted((r for r in _release_rows(path) if _version(r["l4t"])), key=lambda r: _version(r["l4t"]))
    wanted = _version(l4t)
    if not rows or not wanted:
        return "flash JetPack 4.6 or newer"
    same = [r for r in rows if _version(r["l4t"])[0] == wanted[0]]
    if same:
        return "upgrade the board to JetPack {} (L4T R{}), the newest of R{}".format(
            same[-1]["jetpack"], same[-1]["l4t"], wanted[0])
    if wanted > _version(rows[-1]["l4t"]):
        return "it is a newer major release than R{} (JetPack {}): add checked rows for it to jetson/releases.tsv " \
               "and jetson/wheels.tsv, or flash JetPack {}".format(rows[-1]["l4t"], rows[-1]["jetpack"], rows[-1]["jetpack"])
    return "flash JetPack 4.6 or newer"


def jetson_facts(root="/"):
    """L4T release (and where it came from), board, and what JetPack ships, read under ``root``."""
    l4t, source = parse_l4t(read_text("etc/nv_tegra_release", root)), "etc/nv_tegra_release"
    if l4t is None:
        l4t, source = l4t_from_dpkg(read_text("var/lib/dpkg/status", root)), "package nvidia-l4t-core"
    board = board_from_compatible(read_text("proc/device-tree/compatible", root))
    facts = {"jetson": l4t is not None or board is not None, "l4t": l4t, "l4t_source": source if l4t else None,
             "target": board[0] if board else None, "board": board[1] if board else None,
             "compatible": board[2] if board else None, "release": release_row(l4t) if l4t else None}
    facts["supported"] = facts["release"] is not None
    return facts


def _dist_version(dist, module):
    try:
        from importlib import metadata  # novermin: Python 3.8+, with a fallback below
        return metadata.version(dist)
    except Exception:  # older Python, or installed without metadata (JetPack's tensorrt)
        return getattr(module, "__version__", None)


def package(name, dist):
    """{'installed': bool, 'version': str or None, 'problem': str or None} for one import name."""
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return {"installed": False, "version": None, "problem": None}
    try:
        module = importlib.import_module(name)
    except Exception as err:  # a broken install is a finding, not a crash
        return {"installed": False, "version": None, "problem": "{}: {}".format(type(err).__name__, err)}
    if name == "tensorrt" and not hasattr(module, "Builder"):
        # tensorrt-stubs leaves a bare 'tensorrt' directory that imports as an empty namespace package
        return {"installed": False, "version": None, "problem": "only type stubs (tensorrt-stubs), no TensorRT"}
    return {"installed": True, "version": _dist_version(dist, module), "problem": None}


def _run(cmd):
    try:
        return subprocess.check_output(cmd, stderr=subprocess.DEVNULL, timeout=10).decode("utf-8", "replace").strip()
    except (OSError, subprocess.SubprocessError):
        return None


def gpu_facts(packages, jetson):
    """The GPU as torch, nvidia-smi or the Jetson board table see it; 'none found' otherwise."""
    facts = {"name": None, "source": None, "torch_cuda": None}
    if packages["torch"]["installed"]:
        import torch

        facts["torch_cuda"] = bool(torch.cuda.is_available())
        if facts["torch_cuda"]:
            facts["name"], facts["source"] = torch.cuda.get_device_name(0), "torch"
    if facts["name"] is None:
        smi = _run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"])
        if smi:
            facts["name"], facts["source"] = smi.splitlines()[0], "nvidia-smi"
    if facts["name"] is None and jetson.get("target"):
        from jetgen.runtime.targets import TARGETS

        facts["name"] = "integrated GPU, sm {}".format(TARGETS[jetson["target"]]["sm"])
        facts["source"] = "board table"
    return facts


def _missing(packages, names):
    return [n for n in names if not packages[n]["installed"]]


def _install_hint(missing, jetson):
    extras = sorted(set(EXTRA_OF[m] for m in missing if m in EXTRA_OF))
    if jetson["jetson"] and missing == ["onnxruntime"]:
        return "./jetson/setup.sh (NVIDIA's onnxruntime-gpu wheel for this JetPack)"
    if jetson["jetson"] and "torch" in missing:
        return "./jetson/setup.sh --with-torch (NVIDIA's torch wheel for this JetPack)"
    return 'pip install -e ".[{}]"'.format(",".join(extras)) if extras else "pip install " + " ".join(missing)


def capabilities(packages, gpu, jetson, providers):
    """Rows (what, ready, detail): train, export, runtime backends, bench's torch reference."""
    rows = []
    miss = _missing(packages, TRAIN_NEEDS)
    rows.append(("train", not miss, ("on CUDA ({})".format(gpu["name"]) if gpu["torch_cuda"] else "on the CPU")
                 if not miss else "missing {}: {}".format(", ".join(miss), _install_hint(miss, jetson))))
    miss = _missing(packages, EXPORT_NEEDS)
    rows.append(("export", not miss, "ONNX bundles for every target" if not miss else
                 "missing {}: {}".format(", ".join(miss), _install_hint(miss, jetson))))
    if packages["onnxruntime"]["installed"]:
        rows.append(("runtime ort", True, "providers: " + ", ".join(providers or ["none reported"])))
    else:
        rows.append(("runtime ort", False, "missing onnxruntime: " + _install_hint(["onnxruntime"], jetson)))
    cuda_py = packages["pycuda"]["installed"] or packages["cuda"]["installed"]
    if packages["tensorrt"]["installed"] and cuda_py:
        rows.append(("runtime trt", True, "TensorRT {}; engines: jetgen build BUNDLE".format(
            packages["tensorrt"]["version"])))
    else:
        need = ([] if packages["tensorrt"]["installed"] else ["TensorRT"]) + ([] if cuda_py else
                                                                              ["pycuda or cuda-python"])
        how = ("./jetson/setup.sh" if jetson["jetson"] else
               "needs an NVIDIA GPU: pip install tensorrt cuda-python" if gpu["name"] else
               "needs an NVIDIA GPU, and this machine shows none")
        rows.append(("runtime trt", False, "missing {}: {}".format(" and ".join(need), how)))
    rows.append(("bench vs torch", packages["torch"]["installed"], "torch eager as the reference"
                 if packages["torch"]["installed"] else "missing torch: " + _install_hint(["torch"], jetson)))
    return rows


def check(root="/"):
    """Everything ``jetgen doctor`` reports, as a JSON-able dict."""
    packages = dict((name, package(name, dist)) for name, dist, _ in PACKAGES)
    providers = None
    if packages["onnxruntime"]["installed"]:
        import onnxruntime

        providers = list(onnxruntime.get_available_providers())
    jetson = jetson_facts(root)
    gpu = gpu_facts(packages, jetson)
    return {
        "machine": {"os": platform.platform(), "machine": platform.machine(), "cpu": cpu_name(),
                    "cores": os.cpu_count(), "python": sys.version.split()[0], "executable": sys.executable},
        "jetson": jetson, "gpu": gpu, "onnxruntime_providers": providers,
        "packages": dict((name, dict(packages[name], dist=dist, used_for=why)) for name, dist, why in PACKAGES),
        "can": [{"what": w, "ready": bool(r), "detail": d} for w, r, d in capabilities(packages, gpu, jetson,
                                                                                          providers)],
    }
