"""What machine this is: enough to label a benchmark or an engine. Python 3.6 compatible.

On a Jetson it reads the L4T release, the board model, the nvpmodel mode and whether
jetson_clocks pinned the clocks; elsewhere the CPU model and core count. Nothing here fails:
unknown facts are None.
"""
import os
import platform
import subprocess
import sys


def _read(path, root="/"):
    try:
        with open(os.path.join(root, path.lstrip("/")), "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return None


def parse_l4t(text):
    """'# R32 (release), REVISION: 7.1, ...' -> '32.7.1'; None when the line does not parse."""
    if not text:
        return None
    first = text.splitlines()[0]
    try:
        major = first.split("(release)")[0].strip().lstrip("#").strip().lstrip("R")
        revision = first.split("REVISION:")[1].split(",")[0].strip()
        return "{}.{}".format(int(major), revision)
    except (IndexError, ValueError):
        return None


def cpu_name():
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.lower().startswith(("model name", "hardware")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _run(cmd):
    try:
        out = subprocess.check_output(cmd, stderr=subprocess.STDOUT, timeout=5)
        return out.decode("utf-8", "replace").strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _module_version(name):
    try:
        module = __import__(name)
    except Exception:  # a broken optional install must not break a benchmark label
        return None
    # tensorrt-stubs installs a bare 'tensorrt' directory that imports as an empty namespace package
    return getattr(module, "__version__", None)


def describe(include_modules=True):
    """A dict describing this machine (JSON-able)."""
    l4t = parse_l4t(_read("/etc/nv_tegra_release"))
    info = {
        "hostname": platform.node(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "jetson": l4t is not None,
        "l4t": l4t,
        "board": (_read("/proc/device-tree/model") or "").strip("\x00\n ") or None,
    }
    if l4t is not None:
        info["nvpmodel"] = _run(["nvpmodel", "-q"])
        info["jetson_clocks"] = _run(["jetson_clocks", "--show"])
    if include_modules:
        # torch only when already loaded: importing it here would cost ~200 MB on a Jetson
        names = ["numpy", "onnxruntime", "tensorrt"] + (["torch"] if "torch" in sys.modules else [])
        info["versions"] = {name: _module_version(name) for name in names}
    return info
