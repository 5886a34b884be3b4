"""`jetgen doctor`: this machine, Jetson boards from fixture trees, and a run without torch."""
import json
import os
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from jetgen import doctor
from jetgen.cli import main
from tests.test_runtime_torchfree import BLOCKED, ROOT

FIXTURES = os.path.join(ROOT, "tests", "fixtures", "jetson")

# tree -> (target, board, L4T, JetPack or None when the release is not supported)
TREES = {
    "nano-jp461": ("nano", "Jetson Nano", "32.7.1", "4.6.1"),
    "tx2-jp46": ("tx2", "Jetson TX2", "32.6.1", "4.6"),
    "xavier-jp512": ("xavier", "Jetson AGX Xavier", "35.4.1", "5.1.2"),
    "orin-jp61": ("orin", "Jetson AGX Orin", "36.4.0", "6.1"),
    "xaviernx-dpkg": ("xavier", "Jetson Xavier NX", "35.4.1", "5.1.2"),
    "r28-tx2": ("tx2", "Jetson with Tegra186 (TX2 class)", "28.2.1", None),
    "xavier-jp513": ("xavier", "Jetson AGX Xavier", "35.5.0", "5.1.3"),
    "orin-jp514": ("orin", "Jetson AGX Orin", "35.6.0", "5.1.4"),
    "xaviernx-jp515": ("xavier", "Jetson Xavier NX", "35.6.1", "5.1.5"),
    "orin-r369": ("orin", "Jetson Orin NX/Nano", "36.9.0", "6.2.1"),  # not listed: the nearest row, R36.4.4
}


def doctor_json(*args):
    result = CliRunner().invoke(main, ["doctor", "--json"] + list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("tree", sorted(TREES))
def test_jetson_boards_and_releases_from_fixture_trees(tree):
    target, board, l4t, jetpack = TREES[tree]
    report = doctor_json("--root", os.path.join(FIXTURES, tree))
    j = report["jetson"]
    assert (j["jetson"], j["target"], j["board"], j["l4t"]) == (True, target, board, l4t)
    assert j["l4t_source"] == ("package nvidia-l4t-core" if tree == "xaviernx-dpkg" else "etc/nv_tegra_release")
    assert j["supported"] == (jetpack is not None)
    if jetpack:
        assert j["release"]["jetpack"] == jetpack
        assert j["release"]["exact"] == (tree != "orin-r369")
    trt = [c for c in report["can"] if c["what"] == "runtime trt"][0]
    if not trt["ready"]:
        assert "./jetson/setup.sh" in trt["detail"]  # on a board the answer is the setup script


def test_text_report_names_the_board_release_and_what_to_install(tmp_path):
    result = CliRunner().invoke(main, ["doctor", "--root", os.path.join(FIXTURES, "r28-tx2")])
    assert result.exit_code == 0, result.output
    assert "L4T 28.2.1" in result.output and "flash JetPack 4.6 or newer" in result.output
    text = CliRunner().invoke(main, ["doctor", "--root", str(tmp_path)]).output  # an empty tree: not a Jetson
    assert "jetson  no" in text
    for heading in ("This machine", "Packages", "What jetgen can do here", "runtime ort", "runtime trt", "train"):
        assert heading in text
    assert re.search(r"numpy\s+\d", text)


def test_board_table_matches_the_setup_script():
    with open(os.path.join(ROOT, "jetson", "setup.sh")) as handle:
        script = handle.read()
    block = re.search(r"^BOARDS='(.*?)'$", script, flags=re.S | re.M).group(1)
    rows = tuple(tuple(line.split("\t")) for line in block.splitlines())
    assert rows == doctor.BOARDS


def test_packages_and_capabilities_are_reported_truthfully():
    report = doctor_json()
    import numpy
    import onnxruntime

    assert report["packages"]["numpy"]["version"] == numpy.__version__
    assert report["onnxruntime_providers"] == onnxruntime.get_available_providers()
    can = {c["what"]: c for c in report["can"]}
    assert can["runtime ort"]["ready"] and can["train"]["ready"] and can["export"]["ready"]
    try:
        import tensorrt
        real_trt = hasattr(tensorrt, "Builder")
    except ImportError:
        real_trt = False
    assert report["packages"]["tensorrt"]["installed"] == real_trt


def test_runs_on_a_machine_without_torch(tmp_path):
    code = ("import sys\n"
            "class Block(object):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in {blocked!r}:\n"
            "            raise ImportError(name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from jetgen.cli import main\n"
            "main(['doctor', '--json'], standalone_mode=False)\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in {blocked!r}]\n").format(blocked=BLOCKED)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    can = {c["what"]: c for c in report["can"]}
    assert not report["packages"]["torch"]["installed"]
    assert not can["train"]["ready"] and "pip install -e \".[train]\"" in can["train"]["detail"]
    assert not can["export"]["ready"] and can["runtime ort"]["ready"]


def test_an_unlisted_point_release_is_named_with_the_row_it_is_taken_as():
    result = CliRunner().invoke(main, ["doctor", "--root", os.path.join(FIXTURES, "orin-r369")])
    assert result.exit_code == 0, result.output
    assert "L4T 36.9.0 (not in jetson/releases.tsv: taken as its nearest listed release R36.4.4) = JetPack 6.2.1" \
        in result.output


@pytest.mark.parametrize("l4t,words", [("28.2.1", "flash JetPack 4.6 or newer"),
                                       ("35.1.0", "upgrade the board to JetPack 5.1.5 (L4T R35.6.1), the newest of R35"),
                                       ("38.2.0", "a newer major release than R36.4.4 (JetPack 6.2.1)")])
def test_advice_for_releases_that_are_not_taken(l4t, words):
    from jetgen.doctor import release_advice, release_row
    assert release_row(l4t) is None and words in release_advice(l4t)
