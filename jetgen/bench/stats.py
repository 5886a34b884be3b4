"""Timing statistics for benchmarks: plain functions on lists of seconds, no I/O.

Every figure comes from all samples: outliers (outside Tukey's fences) are counted, never dropped,
and a p99 needs at least MIN_P99_SAMPLES samples (fewer give None, shown as "n<30").
Python 3.6 compatible; numpy only.
"""
import time

import numpy as np

UNSTABLE_CV = 0.25  # a run whose spread (std / mean) exceeds this is flagged as unstable
MIN_P99_SAMPLES = 30  # below this a 99th percentile is one of the few largest samples, not a percentile


def percentile(values, q):
    """The ``q``-th percentile of ``values`` by linear interpolation between order statistics (numpy's
    default), in plain Python; nan for no values (load tests report what came back, even nothing)."""
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def count_outliers(samples, k=1.5):
    """How many samples lie outside [Q1 - k*IQR, Q3 + k*IQR] (Tukey's fences); 0 below 4 samples."""
    arr = np.asarray(samples, dtype=np.float64)
    if arr.size < 4:
        return 0
    q1, q3 = np.percentile(arr, [25, 75])
    iqr = q3 - q1
    return int(np.count_nonzero((arr < q1 - k * iqr) | (arr > q3 + k * iqr)))


def summarize(samples, batch=1):
    """Latency statistics in milliseconds and throughput (items per second at the median) of per-call
    wall times in seconds, each call processing ``batch`` items. Raises ValueError for no samples."""
    if len(samples) == 0:
        raise ValueError("no timing samples")
    ms = np.asarray(samples, dtype=np.float64) * 1e3
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    cv = std / mean if mean > 0 else 0.0
    return {
        "iterations": int(ms.size), "outliers": count_outliers(ms),
        "min_ms": float(ms.min()), "p50_ms": p50, "mean_ms": mean, "p90_ms": p90,
        "p99_ms": p99 if ms.size >= MIN_P99_SAMPLES else None, "max_ms": float(ms.max()), "std_ms": std,
        "throughput": batch / (p50 / 1e3) if p50 > 0 else float("inf"),
        "cv": cv, "unstable": bool(cv > UNSTABLE_CV),
    }


def time_calls(fn, warmup=5, min_time=1.0, max_iters=1000, min_iters=5, clock=time.perf_counter):
    """Call ``fn()`` ``warmup`` times untimed, then time single calls until ``min_time`` seconds
    have been spent and at least ``min_iters`` calls made, or ``max_iters`` calls.

    Returns (seconds per call, (start, end) of the timed window on ``clock``)."""
    for _ in range(warmup):
        fn()
    samples = []
    start = clock()
    while len(samples) < max_iters:
        t0 = clock()
        fn()
        samples.append(clock() - t0)
        if len(samples) >= min_iters and clock() - start >= min_time:
            break
    return samples, (start, clock())


def ratio(reference_ms, candidate_ms):
    """How many times faster the candidate is than the reference (>1 is faster); None if unknown."""
    if not reference_ms or not candidate_ms:
        return None
    return reference_ms / candidate_ms

