"""The benchmark: statistics as plain functions, and `jetgen bench` end to end on a real bundle
(ONNX Runtime on the CPU; the torch reference is covered in tests/test_pipeline.py)."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from jetgen.cli import main
from jetgen.bench import run as bench_mod
from jetgen.bench.stats import remove_outliers, summarize, time_calls, ratio
from tests.runtime_fixtures import make_bundle


def test_outliers_removed_by_tukey_fences():
    samples = [1.0] * 20 + [1.1] * 20 + [50.0]
    kept, removed = remove_outliers(samples)
    assert removed == 1 and kept.max() < 2


def test_summary_statistics_on_known_samples():
    samples = [0.001 * (i + 1) for i in range(100)]  # 1..100 ms
    s = summarize(samples, batch=10)
    assert s["iterations"] == 100 and s["outliers_removed"] == 0
    assert s["mean_ms"] == pytest.approx(50.5)
    assert s["p50_ms"] == pytest.approx(50.5)
    assert s["p90_ms"] == pytest.approx(90.1)
    assert s["throughput"] == pytest.approx(10 / 0.0505)
    assert s["unstable"] is True  # spread of 1..100 ms is far beyond 25 % of the mean


def test_stable_samples_are_not_flagged():
    s = summarize([0.010, 0.0101, 0.0099, 0.0100] * 5)
    assert not s["unstable"] and s["std_ms"] < 0.1


def test_summary_rejects_empty():
    with pytest.raises(ValueError):
        summarize([])


def test_time_calls_respects_budget_with_fake_clock():
    now = [0.0]

    def clock():
        return now[0]

    def fn():
        now[0] += 0.1

    samples = time_calls(fn, warmup=2, min_time=1.0, max_iters=1000, min_iters=3, clock=clock)
    assert len(samples) == 10 and all(s == pytest.approx(0.1) for s in samples)
    assert len(time_calls(fn, warmup=0, min_time=100.0, max_iters=7, clock=clock)) == 7


def test_ratio():
    assert ratio(60.0, 30.0) == 2.0
    assert ratio(None, 30.0) is None


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path, _ = make_bundle(str(tmp_path_factory.mktemp("b") / "cvae.jetgen"), kind="cvae", latent_dim=4, n_labels=3)
    return path


def test_bench_cli_on_bundle_writes_json_markdown_and_chart(bundle, tmp_path):
    md, chart, js = tmp_path / "b.md", tmp_path / "b.png", tmp_path / "b.json"
    result = CliRunner().invoke(main, [
        "bench", bundle, "--backend", "torch,ort", "--batch-sizes", "1,4", "--sample-batch", "16",
        "--complete-batch", "4", "--complete-steps", "5", "--min-time", "0", "--max-iters", "5", "--warmup", "1",
        "--no-memory", "--md", str(md), "--chart", str(chart), "--out-json", str(js)])
    assert result.exit_code == 0, result.output
    data = json.loads(js.read_text())
    rows = [(r["task"], r["backend"], r["batch"]) for r in data["rows"]]
    assert ("decode", "ort", 1) in rows and ("decode", "ort", 4) in rows
    assert ("sample", "ort", 16) in rows and ("complete", "ort", 4) in rows
    for r in data["rows"]:
        assert r["status"] == "ok" and r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"]
    # no run directory behind this bundle: the torch reference is skipped with a reason, not an error
    assert any("torch reference skipped" in n for n in data["notes"])
    assert "| decode | ort | fp32 | 1 |" in md.read_text()
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "decode" in result.output and "ort" in result.output


def test_bench_measures_peak_memory_of_jetgen_sample(bundle):
    mb = bench_mod.peak_memory_mb([os.sys.executable, "-m", "jetgen.cli", "info", bundle])
    assert mb is not None and 5 < mb < 2000


def test_bench_trt_without_tensorrt_is_a_skipped_row(bundle):
    result = bench_mod.run_benchmark(bundle, backends=("trt",), batch_sizes=(1,), sample_batch=2, complete_batch=2,
                                     complete_steps=1, warmup=0, min_time=0, max_iters=2, memory=False)
    assert result["rows"] and result["rows"][0]["status"].startswith("skipped")


def test_bench_bad_arguments_are_sentences(bundle):
    r = CliRunner().invoke(main, ["bench", bundle, "--backend", "cuda"])
    assert r.exit_code == 1 and "Unknown backend" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["bench", bundle, "--batch-sizes", "1,x"])
    assert r.exit_code == 1 and "--batch-sizes" in r.output
    r = CliRunner().invoke(main, ["bench", str(bundle) + "-missing"])
    assert r.exit_code == 1 and "Traceback" not in r.output
