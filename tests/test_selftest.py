"""``jetgen selftest`` end to end: here (ONNX Runtime only, every TensorRT step skipped with its reason)
and on the fake TensorRT and CUDA modules of tests/test_trt_logic.py (thread-bound contexts included),
for both CUDA bindings; a run that reuses the work directory loads every engine from the cache, and a
backend that answers wrongly fails the command with exit 1 and a report that says which step."""
import os

import numpy as np
import pytest
from click.testing import CliRunner

from jetgen import selftest as st
from jetgen.cli import main
from jetgen.runtime.backends.trt import session as trt_session
from tests.test_trt_logic import fake_device  # noqa: F401  (fixture)


def run_selftest(tmp_path, *extra):
    report = str(tmp_path / "report.md")
    result = CliRunner().invoke(main, ["selftest", "--report", report, "--workdir", str(tmp_path / "work"),
                                       "--threads", "1"] + list(extra))
    text = open(report).read() if os.path.exists(report) else ""
    return result, text, _rows(text)


def _rows(text):
    """step -> (RESULT, detail) from the report's table."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1] in ("PASS", "FAIL", "SKIP"):
            rows[cells[0]] = (cells[1], cells[3])
    return rows


@pytest.fixture
def quick_doctor(monkeypatch):
    """doctor's facts without probing the machine (test_here runs the real one)."""
    from jetgen import doctor
    monkeypatch.setattr(doctor, "check", lambda root="/": {
        "machine": {"os": "Linux (test)", "machine": "aarch64"}, "gpu": {"name": "Fake GPU"},
        "jetson": {"jetson": True, "board": "Jetson AGX Orin", "release": {"jetpack": "6.1"}}})


def test_here_ort_runs_and_tensorrt_is_skipped_with_its_reason(tmp_path):
    pytest.importorskip("onnxruntime")
    result, text, rows = run_selftest(tmp_path)
    assert result.exit_code == 0, result.output
    assert text.startswith("# jetgen selftest: PASSED")
    for step in ("doctor", "bundle", "verify on ort (golden vectors)", "bench ort"):
        assert rows[step][0] == "PASS", (step, rows[step])
    assert rows["tensorrt and a CUDA binding"][0] == "SKIP"
    assert "python3-libnvinfer" in rows["tensorrt and a CUDA binding"][1]
    for step in ("build + verify trt fp32", "bench trt", "serve --backend trt, threads", "complete through trt",
                 "engine cache reuse"):
        assert rows[step] == ("SKIP", "no TensorRT here (see the step 'tensorrt and a CUDA binding')"), step
    assert "| decode | ort | 16 |" in text and "jetgen doctor --json" in text
    assert rows["within 10 minutes"][0] == "PASS"
    assert "Report written to" in result.output


@pytest.mark.parametrize("version,cuda,cc,name,fp16,int8", [
    ("8.2.1", "pycuda", (5, 3), "Fake Nano", "PASS", "has no fast INT8"),
    ("10.3.0", "cudart", (8, 7), "Fake Orin", "PASS", "needs a QDQ bundle"),
])
def test_on_the_fake_tensorrt_every_step_runs(tmp_path, fake_device, quick_doctor, version, cuda, cc, name,  # noqa: F811
                                              fp16, int8):
    fake_device(version, cuda, cc=cc, name=name)
    result, text, rows = run_selftest(tmp_path)
    assert result.exit_code == 0, result.output + text
    assert "TensorRT {} through {} on {}".format(version, cuda, name) in rows["tensorrt and a CUDA binding"][1]
    assert rows["build + verify trt fp32"][0] == "PASS" and "3 built" in rows["build + verify trt fp32"][1]
    assert rows["build + verify trt fp16"][0] == fp16
    assert rows["build + verify trt int8"][0] == "SKIP" and int8 in rows["build + verify trt int8"][1]
    for step in ("bench trt", "serve --backend trt, threads", "complete through trt", "engine cache reuse"):
        assert rows[step][0] == "PASS", (step, rows[step])
    assert "| sample | trt | 16 |" in text
    # a second run with the same work directory reuses every engine from the start
    again, _, rows = run_selftest(tmp_path)
    assert again.exit_code == 0
    assert "0 built" in rows["build + verify trt fp32"][1] and "3 from the cache" in rows["build + verify trt fp32"][1]
    assert rows["bundle"][1].startswith("reusing ")


def test_a_wrong_answer_fails_the_command_and_the_report_says_where(tmp_path, fake_device, quick_doctor,  # noqa: F811
                                                                    monkeypatch):
    fake_device("10.3", "cudart")
    real = trt_session.TrtSession._run_batch

    def off(self, arrays, size):
        return dict((k, v + np.float32(0.5)) for k, v in real(self, arrays, size).items())
    monkeypatch.setattr(trt_session.TrtSession, "_run_batch", off)
    result, text, rows = run_selftest(tmp_path)
    assert result.exit_code == 1
    assert text.startswith("# jetgen selftest: FAILED")
    assert rows["build + verify trt fp32"][0] == "FAIL" and "TensorRT at fp32" in rows["build + verify trt fp32"][1]
    assert rows["complete through trt"][0] == "FAIL"
    assert rows["verify on ort (golden vectors)"][0] == "PASS"
    assert "step(s) failed: build + verify trt fp32" in result.output


def test_the_shipped_bundle_is_what_its_generator_writes(tmp_path):
    pytest.importorskip("onnx")
    from tests.make_selftest_bundle import make
    fresh = make(str(tmp_path / "tiny.jetgen"))
    for folder, _, files in os.walk(st.SHIPPED):
        for f in files:
            rel = os.path.relpath(os.path.join(folder, f), st.SHIPPED)
            if rel == "manifest.json":
                continue  # carries the onnx version that wrote it
            with open(os.path.join(folder, f), "rb") as a, open(os.path.join(fresh, rel), "rb") as b:
                assert a.read() == b.read(), rel


def test_a_run_over_the_time_budget_fails(tmp_path, quick_doctor, monkeypatch):
    monkeypatch.setattr(st, "TIME_BUDGET_S", 0.0)
    result, _, rows = run_selftest(tmp_path)
    assert result.exit_code == 1 and rows["within 0 minutes"][0] == "FAIL"
    assert "over the 0 s budget" in rows["within 0 minutes"][1]
