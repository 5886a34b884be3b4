"""The benchmark: statistics, energy and FLOP counting as plain functions, and `jetgen bench` end to end
on a real bundle with every backend in its own process (ONNX Runtime on the CPU; the torch worker is
covered in tests/test_pipeline.py)."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from jetgen.bench import run as bench_mod
from jetgen.bench.flops import graph_flops, node_flops
from jetgen.bench.power import energy_mj, total_power_mw
from jetgen.bench.stats import count_outliers, ratio, summarize, time_calls
from jetgen.cli import main
from tests.golden_fixtures import add_golden
from tests.runtime_fixtures import make_bundle


def test_outliers_are_counted_not_dropped():
    samples = [0.001] * 20 + [0.0011] * 20 + [0.050]
    s = summarize(samples)
    assert count_outliers(samples) == 1 and s["outliers"] == 1
    assert s["max_ms"] == pytest.approx(50.0)  # the slow call stays in every figure
    assert s["mean_ms"] == pytest.approx((20 * 1.0 + 20 * 1.1 + 50.0) / 41)


def test_summary_statistics_on_known_samples():
    samples = [0.001 * (i + 1) for i in range(100)]  # 1..100 ms
    s = summarize(samples, batch=10)
    assert s["iterations"] == 100 and s["outliers"] == 0
    assert (s["min_ms"], s["max_ms"]) == (pytest.approx(1.0), pytest.approx(100.0))
    assert s["mean_ms"] == pytest.approx(50.5) and s["p50_ms"] == pytest.approx(50.5)
    assert s["p90_ms"] == pytest.approx(90.1) and s["p99_ms"] == pytest.approx(99.01)
    assert s["throughput"] == pytest.approx(10 / 0.0505)
    assert s["unstable"] is True  # spread of 1..100 ms is far beyond 25 % of the mean


def test_no_p99_from_fewer_than_30_samples():
    assert summarize([0.01] * 29)["p99_ms"] is None
    assert summarize([0.01] * 30)["p99_ms"] == pytest.approx(10.0)
    with pytest.raises(ValueError):
        summarize([])


def test_time_calls_respects_budget_with_fake_clock():
    now = [0.0]

    def clock():
        return now[0]

    def fn():
        now[0] += 0.1

    samples, window = time_calls(fn, warmup=2, min_time=1.0, max_iters=1000, min_iters=3, clock=clock)
    assert len(samples) == 10 and all(s == pytest.approx(0.1) for s in samples)
    assert window == (pytest.approx(0.2), pytest.approx(1.2))  # after the two warm-up calls
    assert len(time_calls(fn, warmup=0, min_time=100.0, max_iters=7, clock=clock)[0]) == 7
    assert ratio(60.0, 30.0) == 2.0 and ratio(None, 30.0) is None


# jtop readings in the two formats jetgen reads: jetson-stats 7.x (Orin, VDD_IN) and 4.x (Nano, POM_5V_IN)
ORIN_7X = {"rail": {"VDD_IN": {"volt": 5000, "curr": 1400, "power": 7000}, "VDD_CPU_GPU_CV": {"power": 2100}},
           "tot": {"power": 9100}}
NANO_4X = ({"cur": 5300, "avg": 5100}, {"POM_5V_IN": {"cur": 4200, "avg": 4000}, "POM_5V_GPU": {"cur": 900}})


def test_the_total_rail_of_each_board():
    assert total_power_mw(ORIN_7X) == (7000.0, "VDD_IN")
    assert total_power_mw(NANO_4X) == (4200.0, "POM_5V_IN")
    assert total_power_mw({"rail": {"GPU": {"power": 1}}, "tot": {"power": 3000}}) == (3000.0, "tot")  # AGX Xavier
    assert total_power_mw(None) == (None, None)


def test_energy_is_the_trapezoid_over_exactly_the_window():
    # power ramps 4000 -> 6000 mW over 0..2 s, then stays at 6000 mW
    samples = [(0.0, 4000.0), (1.0, 5000.0), (2.0, 6000.0), (3.0, 6000.0)]
    assert energy_mj(samples, 0.0, 2.0) == pytest.approx(10000.0)  # mean 5000 mW for 2 s = 10 J
    # a window between samples: the edges are interpolated (4500 mW at 0.5 s, 6000 mW at 2.5 s)
    assert energy_mj(samples, 0.5, 2.5) == pytest.approx(0.5 * (4500 + 5000) * 0.5 + 5500 + 3000)
    assert energy_mj(samples, -1.0, 1.0) is None  # not covered: no energy rather than a guess
    assert energy_mj([(0.0, 5000.0)], 0.0, 0.0) is None


def _conv_model(op):
    w = np.zeros((4, 2, 3, 3) if op == "Conv" else (2, 4, 3, 3), np.float32)
    out = [1, 4, 6, 6] if op == "Conv" else [1, 4, 10, 10]
    graph = helper.make_graph([helper.make_node(op, ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
                              [numpy_helper.from_array(w, "w")])
    return graph


def test_flops_are_counted_from_the_graph(tmp_path):
    bundle, _ = make_bundle(str(tmp_path / "c.jetgen"), kind="cvae", latent_dim=4, n_labels=3)
    # decoder: z (B,4) x W (4,64) and y (B,3) x V (3,64): 2 FLOPs per multiply-add
    assert graph_flops(os.path.join(bundle, "decoder.onnx"), 10) == 2 * 10 * (4 + 3) * 64
    shapes = {"x": (1, 2, 8, 8), "w": (4, 2, 3, 3), "y": (1, 4, 6, 6)}
    assert node_flops(_conv_model("Conv").node[0], shapes) == 2 * (4 * 6 * 6) * 2 * 9
    shapes = {"x": (1, 2, 8, 8), "w": (2, 4, 3, 3), "y": (1, 4, 10, 10)}
    assert node_flops(_conv_model("ConvTranspose").node[0], shapes) == 2 * (2 * 8 * 8) * 4 * 9


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path, weights = make_bundle(str(tmp_path_factory.mktemp("b") / "cvae.jetgen"), kind="cvae", latent_dim=4,
                                n_labels=3)
    add_golden(path, weights, graphs=["decoder"])
    return path


def test_bench_runs_each_backend_in_its_own_process(bundle, tmp_path):
    md, chart, js = tmp_path / "b.md", tmp_path / "b.png", tmp_path / "b.json"
    result = CliRunner().invoke(main, [
        "bench", bundle, "--backend", "torch,onnxruntime,ort", "--batch-sizes", "1,4", "--sample-batch", "16",
        "--complete-batch", "4", "--complete-steps", "5", "--min-time", "0", "--max-iters", "40", "--warmup", "1",
        "--threads", "1", "--no-memory", "--md", str(md), "--chart", str(chart), "--out-json", str(js)])
    assert result.exit_code == 0, result.output
    data = json.loads(js.read_text())
    rows = dict(((r["task"], r["backend"], r["batch"]), r) for r in data["rows"])
    assert set(rows) >= {("decode", b, n) for b in ("onnxruntime", "ort") for n in (1, 4)}
    assert ("sample", "ort", 16) in rows and ("complete", "onnxruntime", 4) in rows
    for r in data["rows"]:
        assert r["status"] == "ok" and 0 < r["min_ms"] <= r["p50_ms"] <= r["max_ms"]
        assert r["iterations"] >= (3 if r["task"] == "complete" else 5) and r["p99_ms"] is None  # n < 30: no p99
    assert data["settings"]["threads"] == 1 and data["settings"]["process_per_backend"]
    assert rows[("decode", "ort", 1)]["vs_session"] > 0  # the runtime against the bare session
    assert data["peak"]["gflops"] > 0 and rows[("decode", "ort", 4)]["gflops"] > 0
    assert rows[("decode", "ort", 4)]["pct_peak"] == pytest.approx(
        100 * rows[("decode", "ort", 4)]["gflops"] / data["peak"]["gflops"])
    quality = dict(((q["backend"], q["precision"]), q) for q in data["quality"])
    assert quality[("ort", "fp32")]["max_abs"] < 1e-5 and quality[("ort", "fp32")]["cases"] == 2
    # no run directory behind this bundle: the torch reference is skipped with a reason, not an error
    assert any("torch reference skipped" in n for n in data["notes"])
    text = md.read_text()
    assert "| decode | ort | fp32 | 1 |" in text and "n<30" in text and "own process" in text
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Matrix-multiply peak" in result.output
    header = next(line for line in result.output.splitlines() if line.startswith("task"))
    assert header.split() == "task backend prec batch median ms items/s vs torch status".split()  # compact
    assert "vs session" in text and "p90 ms" in text  # the full statistics are in --md


def test_bench_trt_without_tensorrt_exits_non_zero(bundle):
    result = CliRunner().invoke(main, ["bench", bundle, "--backend", "trt", "--batch-sizes", "1", "--tasks", "decode",
                                       "--min-time", "0", "--max-iters", "2", "--warmup", "0", "--no-memory",
                                       "--no-peak"])
    assert result.exit_code == 1
    assert "Nothing asked for could run here: trt fp32:" in result.output and "TensorRT" in result.output
    assert "Traceback" not in result.output


def test_bench_measures_peak_memory_of_jetgen_sample(bundle):
    mb = bench_mod.peak_memory_mb([os.sys.executable, "-m", "jetgen.cli", "info", bundle])
    assert mb is not None and 5 < mb < 2000


def test_bench_bad_arguments_are_sentences(bundle):
    r = CliRunner().invoke(main, ["bench", bundle, "--backend", "cuda"])
    assert r.exit_code == 1 and "Unknown backend" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["bench", bundle, "--batch-sizes", "1,x"])
    assert r.exit_code == 1 and "--batch-sizes" in r.output
    r = CliRunner().invoke(main, ["bench", str(bundle) + "-missing"])
    assert r.exit_code == 1 and "Traceback" not in r.output


# -- benchmarks/: the script's own logic on recorded results (no timing) ----------------------------

def _benchmarks_module(name):
    import importlib
    import sys
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
    if here not in sys.path:
        sys.path.insert(0, here)
    return importlib.import_module(name)


def test_tf32_rounding_keeps_one_definition_per_rounded_tensor(tmp_path):
    """A weight feeding two products, and one tensor feeding both inputs of a product, are rounded once
    (the benchmark run once stopped on "Duplicate definition of name ..._tf32h" in a latent_grad graph)."""
    import onnx
    import onnxruntime as ort
    studies = _benchmarks_module("studies")
    w = np.random.RandomState(0).standard_normal((4, 4)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["a"]), helper.make_node("MatMul", ["a", "W"], ["b"]),
             helper.make_node("MatMul", ["b", "b"], ["c"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [4, 4])],
                              [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "g.onnx"))
    out = studies.tf32_rounded(str(tmp_path / "g.onnx"), str(tmp_path / "r.onnx"))
    onnx.checker.check_model(onnx.load(out))
    x = np.random.RandomState(1).standard_normal((4, 4)).astype(np.float32)
    got = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    r = lambda v: v.astype(np.float16).astype(np.float32)  # noqa: E731
    a = r(x) @ r(w)
    b = r(a) @ r(w)
    np.testing.assert_allclose(got, r(b) @ r(b), rtol=1e-4)


def _overhead_result(order, bare_us, ort_us, load=0.5):
    rows = []
    for task, scale in (("decode", 1.0), ("sample", 1.5)):
        rows += [{"task": task, "backend": "onnxruntime", "batch": 1, "status": "ok", "p50_ms": bare_us * scale / 1e3},
                 {"task": task, "backend": "ort", "batch": 1, "status": "ok", "p50_ms": ort_us * scale / 1e3}]
    return {"rows": rows, "settings": {"warmup": 5, "min_time_s": 1.0, "order": order}, "load": {"before": [load, 1, 1]}}


def test_batch1_table_states_every_repeat_and_the_target():
    results_md = _benchmarks_module("results_md")
    overhead = {"2": [_overhead_result("forward", 50, 55), _overhead_result("reverse", 50, 60, load=3.2),
                      _overhead_result("forward", 40, 44)]}
    text = "\n".join(results_md.batch1_lines(overhead))
    assert "| 2 | decode | 40-50 | 44-60 | 1.10x, 1.20x, 1.10x | 1.10x-1.20x | 2 of 3 repeats | 0.5-3.2 |" in text
    assert "within 1.15x" in text


def test_serve_section_is_kept_and_readme_row_replaced(tmp_path):
    results_md = _benchmarks_module("results_md")
    run_benchmarks = _benchmarks_module("run_benchmarks")
    old = "# old\n\n## Summary\nold numbers 1.7-2.0x\n\n## `jetgen serve` under load\n\n| a | b |\n\n## Later\nx\n"
    assert results_md.kept_sections(old) == "## `jetgen serve` under load\n\n| a | b |\n\n"
    assert results_md.kept_sections("# nothing kept\n") == ""
    readme = tmp_path / "README.md"
    readme.write_text("x\n| | value |\n|---|---|\n| runtime vs torch eager, same machine | 1.7-2.0x faster |\n| other | 1 |\n")
    run_benchmarks.update_readme(str(readme), "| runtime vs torch eager, same machine | 1.05x |")
    text = readme.read_text()
    assert "1.7-2.0x" not in text and "| runtime vs torch eager, same machine | 1.05x |" in text
    assert "| other | 1 |" in text


def test_one_process_table_shows_both_protocols_per_thread_count():
    results_md = _benchmarks_module("results_md")
    study = {"batch": 64, "threads": 2, "repeats": [
        {"torch": {"p50_ms": v}, "onnxruntime": {"p50_ms": 0.5}} for v in (0.7, 31.4, 0.8)]}
    runs = {"cvae-mlp": [{"rows": [{"task": "decode", "backend": "torch", "batch": 64, "status": "ok", "p50_ms": v}]}
                         for v in (0.9, 0.8, 0.85)]}
    text = "\n".join(results_md.one_process_lines([(study, runs)]))
    assert "| 2 | one process | 0.7, 31.4, 0.8 | 0.7-31.4 | 0.5 |" in text
    assert "| 2 | one process per backend | 0.9, 0.8, 0.85 | 0.8-0.9 | - |" in text
