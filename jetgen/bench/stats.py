"""Timing statistics for benchmarks: plain functions on lists of seconds, no I/O.

Python 3.6 compatible; numpy only.
"""
import time

import numpy as np

# A run whose spread after outlier removal exceeds this (std / mean) is flagged as unstable.
UNSTABLE_CV = 0.25


def remove_outliers(samples, k=1.5):
    """Drop samples outside [Q1 - k*IQR, Q3 + k*IQR] (Tukey's fences). Returns (kept, n_removed)."""
    arr = np.asarray(samples, dtype=np.float64)
    if arr.size < 4:
        return arr, 0
    q1, q3 = np.percentile(arr, [25, 75])
    iqr = q3 - q1
    keep = (arr >= q1 - k * iqr) & (arr <= q3 + k * iqr)
    return arr[keep], int(arr.size - keep.sum())


def summarize(samples, batch=1):
    """Latency statistics in milliseconds and throughput in items per second.

    ``samples`` are per-call wall times in seconds for calls processing ``batch`` items each.
    Raises ValueError for an empty list.
    """
    if len(samples) == 0:
        raise ValueError("no timing samples")
    kept, removed = remove_outliers(samples)
    ms = kept * 1e3
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    cv = std / mean if mean > 0 else 0.0
    return {
        "iterations": int(len(samples)), "outliers_removed": removed,
        "mean_ms": mean, "std_ms": std, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99,
        "throughput": batch / (p50 / 1e3) if p50 > 0 else float("inf"),
        "cv": cv, "unstable": bool(cv > UNSTABLE_CV),
    }


def time_calls(fn, warmup=5, min_time=1.0, max_iters=1000, min_iters=5, clock=time.perf_counter):
    """Call ``fn()`` ``warmup`` times untimed, then time single calls until ``min_time`` seconds
    have been spent and at least ``min_iters`` calls made, or ``max_iters`` calls. Returns seconds."""
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
    return samples


def ratio(reference_ms, candidate_ms):
    """How many times faster the candidate is than the reference (>1 is faster); None if unknown."""
    if not reference_ms or not candidate_ms:
        return None
    return reference_ms / candidate_ms
