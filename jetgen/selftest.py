"""``jetgen selftest``: the one command that proves a board (or any CUDA machine with TensorRT).

It runs, in order, and writes a Markdown report a person can paste into an issue:

1. doctor: what this machine is (jetgen.doctor.check);
2. bundle: the tiny bundle jetgen ships (jetgen/selftest_data/tiny.jetgen: a conditional MLP cvae on
   8x8 images with golden vectors) copied into a work directory, where engines are cached;
3. verify on ONNX Runtime against the golden vectors;
4. TensorRT and a CUDA binding, or why not (every TensorRT step is then skipped with that reason);
5. build at fp32, fp16 and int8 where the GPU supports them, each verified against the golden
   vectors (int8 needs a QDQ bundle or a calibration cache, which the shipped fp32 bundle has not:
   skipped with that reason);
6. bench: decode, sample and complete, median milliseconds on ort and on trt;
7. serve with the trt backend, several client threads at once (sample, decode, a completion job),
   every answer checked against ONNX Runtime's;
8. complete through trt, against ONNX Runtime's completion;
9. engine cache: a fresh TensorRT model must load every engine from the cache (a second run of the
   command with the same work directory reuses them from the start);
10. the whole run within 10 minutes.

Each step passes, fails or is skipped with its reason; :func:`run` returns the steps and the report
text, and the command exits non-zero on any failure. Torch-free, click-free, Python 3.6 compatible.
"""
import json
import os
import platform
import shutil
import threading
import time
import urllib.request

import numpy as np

from jetgen import __version__
from jetgen.errors import JetgenError

SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "selftest_data", "tiny.jetgen")
PRECISION_ORDER = ("fp32", "fp16", "int8")
BENCH_BATCH = 16
BENCH_REPEATS = 20
COMPLETE_STEPS = 20
SERVE_CLIENTS = 4
SERVE_TIMEOUT = 60.0
TIME_BUDGET_S = 600.0  # the whole run should prove a board within 10 minutes
ATOL = {"fp32": 1e-4, "fp16": 2e-2}  # how far trt may be from ort on the tiny model, by run precision


class Skip(Exception):
    """A step that cannot run on this machine; the message says why."""


class Steps(object):
    """The steps run so far: name, status ('pass', 'fail', 'skip'), detail, seconds."""

    def __init__(self, echo=None):
        self.rows = []
        self._echo = echo

    def run(self, name, func, *args):
        """Run ``func(*args)`` as step ``name``: its return value (a string) is the detail; Skip is a
        skip, JetgenError or any other exception a failure (with the sentence). Returns the status."""
        start = time.monotonic()
        try:
            detail, status = func(*args) or "", "pass"
        except Skip as why:
            detail, status = str(why), "skip"
        except JetgenError as err:
            detail, status = str(err), "fail"
        except Exception as err:  # a defect to report, not to hide: the report names it
            detail, status = "{}: {}".format(type(err).__name__, str(err).strip().splitlines()[0] if str(err).strip()
                                             else ""), "fail"
        row = {"step": name, "status": status, "detail": detail, "seconds": round(time.monotonic() - start, 2)}
        self.rows.append(row)
        if self._echo:
            self._echo("{:<5} {:<34} {}".format(status.upper(), name, detail))
        return status

    @property
    def ok(self):
        return all(r["status"] != "fail" for r in self.rows)


class _Context(object):
    """What the steps share: the bundle path, TensorRT's state, timings, doctor's facts."""

    def __init__(self, workdir, threads):
        self.workdir, self.threads = workdir, threads
        self.bundle = None
        self.trt_reason = None   # None: TensorRT usable; else why not
        self.device = None
        self.precisions = []
        self.bench = []          # (what, backend, batch, median ms)
        self.doctor = None

    def ort(self):
        from jetgen.runtime import Model
        return Model.open(self.bundle, intra_op_threads=self.threads)

    def trt(self, precision="fp32"):
        from jetgen.runtime import Model
        return Model.open(self.bundle, backend="trt", precision=precision)

    def need_trt(self):
        if self.trt_reason:
            raise Skip(self.trt_reason)


# -- the steps ----------------------------------------------------------------------------------

def _doctor(ctx):
    from jetgen import doctor
    ctx.doctor = doctor.check()
    m, j, g = ctx.doctor["machine"], ctx.doctor["jetson"], ctx.doctor["gpu"]
    board = j.get("board") or ("Jetson" if j.get("jetson") else "not a Jetson")
    release = j.get("release") or {}
    jp = ", JetPack {}".format(release["jetpack"]) if release.get("jetpack") else ""
    return "{} ({}); {}{}; GPU: {}".format(m["os"], m["machine"], board, jp, g.get("name") or "none found")


def _bundle(ctx):
    from jetgen.runtime.bundle import Bundle
    target = os.path.join(ctx.workdir, "tiny.jetgen")
    if not os.path.isdir(target):
        os.makedirs(ctx.workdir, exist_ok=True)
        partial = target + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(SHIPPED, partial)
        os.rename(partial, target)
        how = "copied the shipped tiny bundle to {}".format(target)
    else:
        how = "reusing {} (its engines/ from an earlier run)".format(target)
    Bundle.open(target, verify=True)
    ctx.bundle = target
    return how


def _verify(model, label):
    from jetgen.runtime.verify import failure_sentence, verify_model
    report = verify_model(model)
    if not report["ok"]:
        raise JetgenError("{}: {}".format(label, failure_sentence(report["rows"])))
    worst = max(r["max_abs"] for r in report["rows"])
    return "{} outputs within tolerance (largest difference {:.1e})".format(len(report["rows"]), worst)


def _verify_ort(ctx):
    with ctx.ort() as model:
        return _verify(model, "ONNX Runtime")


def _tensorrt(ctx):
    from jetgen.runtime.backends.trt import api as trt_api, cuda_mem, precision as precision_mod
    try:
        trt = trt_api.import_tensorrt()
        memory = cuda_mem.open_memory()
    except JetgenError as err:
        ctx.trt_reason = "no TensorRT here (see the step 'tensorrt and a CUDA binding')"
        raise Skip("TensorRT steps skipped: {}".format(err))
    try:
        with memory.active():
            ctx.device = memory.device_info()
    finally:
        memory.close()
    caps = precision_mod.capabilities(ctx.device["sm"])
    ctx.precisions = [p for p in PRECISION_ORDER if p == "fp32" or caps.get(p)]
    return "TensorRT {} through {} on {} (sm_{}); the GPU runs {}".format(
        trt_api.format_version(trt.__version__), memory.api, ctx.device["name"], ctx.device["sm"].replace(".", ""),
        ", ".join(ctx.precisions))


def _build(ctx, precision):
    ctx.need_trt()
    if precision not in ctx.precisions:
        raise Skip("{} (sm_{}) has no fast {}".format(ctx.device["name"], ctx.device["sm"].replace(".", ""),
                                                      precision.upper()))
    if precision == "int8":
        raise Skip("INT8 needs a QDQ bundle (jetgen export --precision int8) or a calibration cache; the "
                   "shipped tiny bundle is fp32")
    with ctx.trt(precision) as model:
        verified = _verify(model, "TensorRT at {}".format(precision))
        infos = [model.session(g).engine_info for g in model.bundle.graph_names()]
    built = sum(1 for i in infos if i["status"] == "built")
    seconds = sum(i["build_seconds"] or 0.0 for i in infos)
    return "{} engines ({} built in {:.1f} s, {} from the cache); {}".format(
        len(infos), built, seconds, len(infos) - built, verified)


def _median_ms(func, repeats=BENCH_REPEATS):
    func()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def _bench_cases(model):
    rng = np.random.RandomState(0)
    labels = [i % len(model.labels) for i in range(BENCH_BATCH)] if model.labels else None
    z = rng.standard_normal((BENCH_BATCH, model.latent_dim)).astype(np.float32)
    x = model.decode(z[:1], labels[:1] if labels else None)
    mask = np.ones_like(x)
    mask[..., x.shape[-1] // 2:] = 0
    return [
        ("decode", BENCH_BATCH, lambda: model.decode(z, labels)),
        ("sample", BENCH_BATCH, lambda: model.sample(BENCH_BATCH, labels=labels, seed=1)),
        ("complete ({} steps)".format(COMPLETE_STEPS), 1,
         lambda: model.complete(x, mask, labels=labels[:1] if labels else None, steps=COMPLETE_STEPS, seed=0)),
    ]


def _bench(ctx, backend):
    if backend == "trt":
        ctx.need_trt()
    with (ctx.trt() if backend == "trt" else ctx.ort()) as model:
        rows = [(what, backend, batch, _median_ms(func)) for what, batch, func in _bench_cases(model)]
    ctx.bench.extend(rows)
    return "; ".join("{} {:.2f} ms".format(what, ms) for what, _, _, ms in rows)


def _call(base, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode("utf-8"), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=SERVE_TIMEOUT) as resp:
        return resp.status, json.loads(resp.read().decode("utf-8"))


def _serve(ctx):
    ctx.need_trt()
    from jetgen.serve import make_server
    with ctx.ort() as ref:
        want = dict((i, ref.sample(4, labels=[0, 1, 2, 0], seed=i, return_latents=True)[1]) for i in range(SERVE_CLIENTS))
    server = make_server([ctx.bundle], host="127.0.0.1", port=0, backend="trt", precision="fp32", log=lambda line: None)
    base = "http://127.0.0.1:{}".format(server.server_port)
    name = list(server.api.slots)[0]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.daemon = True
    thread.start()
    problems, answered = [], []

    def client(i):
        try:
            status, out = _call(base, "/api/models/{}/sample".format(name), {"n": 4, "labels": [0, 1, 2, 0], "seed": i})
            if status != 200 or not np.allclose(np.asarray(out["latents"]), want[i], atol=1e-5):
                problems.append("client {}: sample answered {} or other latents than ONNX Runtime".format(i, status))
            status, out = _call(base, "/api/models/{}/decode".format(name), {"z": want[i].tolist(), "labels": [0, 1, 2, 0]})
            if status != 200 or out["n"] != 4:
                problems.append("client {}: decode answered {}".format(i, status))
            status, out = _call(base, "/api/models/{}/complete".format(name),
                                {"image": np.zeros((8, 8)).tolist(), "region": "bottom-half", "labels": i % 3,
                                 "steps": 10, "wait": True})
            if status != 200 or out["state"] != "done":
                problems.append("client {}: a completion job ended {}".format(i, out.get("state")))
            answered.append(i)
        except Exception as err:  # reported as the step's failure
            problems.append("client {}: {}".format(i, err))

    try:
        clients = [threading.Thread(target=client, args=(i,)) for i in range(SERVE_CLIENTS)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(SERVE_TIMEOUT)
    finally:
        server.shutdown()
        server.close()
        thread.join(SERVE_TIMEOUT)
    if problems or len(answered) != SERVE_CLIENTS:
        raise JetgenError("serve --backend trt: " + ("; ".join(problems[:3]) or "a client did not finish"))
    return "{} client threads at once, each sample + decode + a completion job: all answered, as ONNX Runtime".format(
        SERVE_CLIENTS)


def _complete(ctx):
    ctx.need_trt()
    with ctx.ort() as ref:
        x = ref.sample(2, labels=[1, 2], seed=5)
        mask = np.ones_like(x)
        mask[..., 4:, :] = 0
        want = ref.complete(x, mask, labels=[1, 2], steps=COMPLETE_STEPS, seed=0)
    with ctx.trt() as model:
        got = model.complete(x, mask, labels=[1, 2], steps=COMPLETE_STEPS, seed=0)
    diff = float(np.max(np.abs(np.asarray(got.z) - np.asarray(want.z))))
    if not diff <= ATOL["fp32"] * 10:
        raise JetgenError("complete through trt ended {:.1e} away from ONNX Runtime's latents (allowed {:.0e})".format(
            diff, ATOL["fp32"] * 10))
    return "{} steps on 2 inputs; latents within {:.1e} of ONNX Runtime's".format(COMPLETE_STEPS, diff)


def _cache(ctx):
    ctx.need_trt()
    with ctx.trt() as model:
        infos = dict((g, model.session(g).engine_info) for g in model.bundle.graph_names())
    rebuilt = ["{} ({})".format(g, i["reason"]) for g, i in infos.items() if i["status"] != "cached"]
    if rebuilt:
        raise JetgenError("engines were rebuilt instead of reused: " + "; ".join(rebuilt))
    return "all {} fp32 engines loaded from {}".format(len(infos), os.path.join(ctx.bundle, "engines"))


# -- the whole run and its report ---------------------------------------------------------------

def run(workdir, threads=None, echo=None):
    """Run every step with the work directory ``workdir`` (the bundle copy and its engine cache live
    there); return (Steps, _Context). Never raises for a failing step: the step says why."""
    ctx = _Context(workdir, threads)
    steps = Steps(echo)
    steps.run("doctor", _doctor, ctx)
    if steps.run("bundle", _bundle, ctx) == "fail":
        return steps, ctx
    steps.run("verify on ort (golden vectors)", _verify_ort, ctx)
    steps.run("tensorrt and a CUDA binding", _tensorrt, ctx)
    for precision in PRECISION_ORDER:
        steps.run("build + verify trt {}".format(precision), _build, ctx, precision)
    steps.run("bench ort", _bench, ctx, "ort")
    steps.run("bench trt", _bench, ctx, "trt")
    steps.run("serve --backend trt, threads", _serve, ctx)
    steps.run("complete through trt", _complete, ctx)
    steps.run("engine cache reuse", _cache, ctx)
    total = sum(r["seconds"] for r in steps.rows)
    steps.run("within {:.0f} minutes".format(TIME_BUDGET_S / 60), _within_budget, total)
    return steps, ctx


def _within_budget(total):
    if total > TIME_BUDGET_S:
        raise JetgenError("the steps took {:.0f} s, over the {:.0f} s budget; the report's seconds column shows "
                          "which".format(total, TIME_BUDGET_S))
    return "the steps took {:.1f} s".format(total)


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def report_markdown(steps, ctx, command="jetgen selftest"):
    """The report: what ran where, a table of the steps, the timings, doctor's facts as JSON."""
    counts = dict((s, sum(1 for r in steps.rows if r["status"] == s)) for s in ("pass", "fail", "skip"))
    lines = ["# jetgen selftest: {}".format("PASSED" if steps.ok else "FAILED"), "",
             "- jetgen {}, Python {} on {} ({})".format(__version__, platform.python_version(), platform.platform(),
                                                       platform.machine()),
             "- when: {} UTC".format(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())),
             "- command: `{}`".format(command),
             "- {} passed, {} failed, {} skipped".format(counts["pass"], counts["fail"], counts["skip"]), "",
             "| step | result | seconds | detail |", "|---|---|---|---|"]
    for r in steps.rows:
        lines.append("| {} | {} | {:.2f} | {} |".format(_cell(r["step"]), r["status"].upper(), r["seconds"],
                                                       _cell(r["detail"])))
    if ctx.bench:
        lines += ["", "Timings (median of {} calls after one warm-up, milliseconds):".format(BENCH_REPEATS), "",
                  "| what | backend | batch | ms |", "|---|---|---|---|"]
        lines += ["| {} | {} | {} | {:.3f} |".format(w, b, n, ms) for w, b, n, ms in ctx.bench]
    if ctx.doctor is not None:
        lines += ["", "<details><summary>jetgen doctor --json</summary>", "", "```json",
                  json.dumps(ctx.doctor, indent=1, sort_keys=True, default=str), "```", "", "</details>"]
    return "\n".join(lines) + "\n"
