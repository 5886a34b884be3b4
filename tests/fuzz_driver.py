"""Run a batch of fuzz cases through ``jetgen.cli.main`` in this one process and report each.

    python tests/fuzz_driver.py CASES.json RESULTS.jsonl PROGRESS [TIMEOUT_S]

tests/test_fuzz.py starts this under ``resource.setrlimit(RLIMIT_AS, ...)``. For every case it hashes the
files the case may not change, invokes the CLI with click's CliRunner (exit status, stdout and stderr
as the command line would give them), stops a case that runs past TIMEOUT_S (SIGALRM), checks the
result, and appends one JSON line to RESULTS. PROGRESS names the case running, so a parent can
attribute a crash of the whole process (a signal, the memory limit) to that case.

Outcomes: ``refused`` (non-zero exit, one ``Error:`` sentence, no traceback), ``correct`` (exit 0 and the
case's check passed), ``wrong`` (exit 0, check failed), ``traceback`` (any other exception or exit),
``hang``; plus ``changed``: pre-existing files whose bytes changed.
"""
import hashlib
import json
import os
import signal
import sys
import traceback


class CaseTimeout(BaseException):
    """Raised by SIGALRM; a BaseException so that neither jetgen nor click swallows it."""


def _alarm(signum, frame):
    raise CaseTimeout()


def file_hashes(paths):
    out = {}
    for root in paths:
        if os.path.isfile(root):
            out[root] = _sha(root)
        for here, _, names in os.walk(root):
            for name in names:
                full = os.path.join(here, name)
                out[full] = _sha(full)
    return out


def _sha(path):
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError as err:
        return "unreadable: {}".format(err)


def one_error_sentence(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    return len(errors) == 1 and "Traceback" not in stderr and len(errors[0]) > len("Error: ") + 10


def check(case, stdout):
    """None when the successful command's result is right, else a sentence saying what is wrong."""
    import numpy as np

    kind = case["check"]["kind"]
    if case["check"].get("must_refuse"):
        return case["check"]["must_refuse"]
    if kind == "info":
        if case["check"].get("no_control"):  # a bundle's strings must never reach the terminal as control characters
            bad = sorted(set(ch for ch in stdout if ch not in "\n\t" and (ord(ch) < 32 or 0x7f <= ord(ch) < 0xa0
                                                                           or 0x2028 <= ord(ch) <= 0x202e)))
            if bad:
                return "info printed control characters {!r}".format("".join(bad))
        return check_info(case["check"]["bundle"], stdout)
    if kind == "train":
        meta = os.path.join(case["check"]["run"], "checkpoint", "meta.json")
        if not os.path.isfile(meta):
            return "training exited 0 without a checkpoint"
        return None
    out = case["check"]["out"]
    if not os.path.isfile(out):
        return "exited 0 without writing {}".format(out)
    arr = np.load(out, allow_pickle=False)
    want = case["check"].get("shape")
    if want is not None and list(arr.shape) != want:
        return "output shape {} instead of {}".format(list(arr.shape), want)
    if not np.isfinite(arr).all():
        return "output holds NaN or infinite values"
    lo, hi = case["check"].get("range", [0.0, 1.0])
    if arr.size and (arr.min() < lo - 1e-5 or arr.max() > hi + 1e-5):
        return "output outside its declared range [{}, {}]: {}..{}".format(lo, hi, arr.min(), arr.max())
    expected = case["check"].get("expected_input")
    if expected:  # the input file is valid: the reader must see exactly these pixels
        from jetgen.runtime.images import load_images
        got = load_images(case["check"]["input"], tuple(case["check"]["input_shape"]))
        want_x = np.load(expected)
        if got.shape != want_x.shape or np.abs(got - want_x).max() > case["check"].get("tolerance", 1e-6):
            return "the input was read as other values than it holds (max error {:.3g})".format(
                float(np.abs(got - want_x).max()) if got.shape == want_x.shape else float("inf"))
    return None


def check_info(bundle, stdout):
    """Exit 0 from info says every graph is ok: each must load, and no file it lists may lie outside the bundle."""
    import onnxruntime as ort

    try:
        data = json.loads(stdout)
    except ValueError:  # the text form: take the graphs from the manifest itself
        with open(os.path.join(bundle, "manifest.json"), "rb") as handle:
            graphs = json.loads(handle.read().decode("utf-8"))["graphs"]
        data = {"graphs": dict((k, {"check": "ok", "file": v["file"]}) for k, v in graphs.items()), "engines": []}
    for name, graph in data["graphs"].items():
        if graph.get("check") == "ok":  # "ok" must mean the graph loads, not only that its hash matches
            path = os.path.join(bundle, graph.get("file", ""))
            try:
                ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            except Exception as err:  # noqa: BLE001 - any failure means "ok" was wrong
                return "info says {} is ok but it does not load: {}".format(name, str(err)[:200])
    inside = os.path.realpath(bundle) + os.sep
    for row in data.get("engines") or []:
        if not os.path.realpath(os.path.join(bundle, row["file"])).startswith(inside):
            return "info lists {}, a file outside the bundle".format(row["file"])
    return None


def run_case(runner, main, case, timeout):
    watched = case.get("watch", [])
    before = file_hashes(watched)
    allowed = set(case.get("may_change", []))
    row = {"id": case["id"]}
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        try:
            result = runner.invoke(main, case["argv"], catch_exceptions=True)
        finally:
            signal.alarm(0)
    except CaseTimeout:
        row.update(outcome="hang", detail="ran past {} s".format(timeout))
        result = None
    if result is not None:
        stderr = result.stderr
        exc = result.exception
        if exc is not None and not isinstance(exc, SystemExit):
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            row.update(outcome="traceback", detail=text[-1500:])
        elif "Traceback" in stderr or "Traceback" in result.stdout:
            row.update(outcome="traceback", detail=stderr[-1500:])
        elif result.exit_code != 0:
            if one_error_sentence(stderr):
                row.update(outcome="refused", detail=stderr.strip().splitlines()[-1][:300])
            else:
                row.update(outcome="traceback", detail="exit {} without one error sentence: {!r}".format(
                    result.exit_code, stderr[-600:]))
        else:
            try:
                problem = check(case, result.stdout)
            except Exception as err:  # noqa: BLE001 - a check that cannot run means the output is unusable
                problem = "the output could not be checked: {}: {}".format(type(err).__name__, err)
            row.update(outcome="wrong" if problem else "correct", detail=problem or "")
            allowed |= set(case.get("outputs", []))
    after = file_hashes(watched)
    changed = sorted(p for p in set(before) | set(after)
                     if before.get(p) != after.get(p) and p not in allowed and p in before)
    row["changed"] = changed
    return row


def main_loop(cases_path, results_path, progress_path, timeout):
    from click.testing import CliRunner

    from jetgen.cli import main

    with open(cases_path) as handle:
        cases = json.load(handle)
    with open(results_path) as handle:
        done = set(json.loads(line)["id"] for line in handle if line.strip())
    runner = CliRunner()
    for case in cases:
        if case["id"] in done:
            continue
        with open(progress_path, "w") as handle:
            handle.write(case["id"])
        row = run_case(runner, main, case, case.get("timeout", timeout))
        with open(results_path, "a") as handle:
            handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main_loop(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 10)
