"""Fault injection: kill jetgen at every write step and require that nothing is lost (issue 8, items 1-5).

``JETGEN_FAULT_KILL_AT=N`` (jetgen.atomic) makes a process SIGKILL itself at its N-th write step. These
tests kill

- a small program replacing a directory with ``AtomicDirectory``, at every step of both swap
  protocols (Linux's one-step exchange and the marked two-rename fallback);
- ``jetgen train vae --data digits --epochs 2 ...`` at every one of its write steps, then resume it and
  require the final checkpoint, metrics and latent statistics to be bitwise those of an uninterrupted run;
- ``jetgen export R --force`` over an existing bundle at every step, and require a complete bundle, the
  old or the new one, at --out at every instant, and no temporaries after the next command.

The CLI runs in real child processes forked from a server that imported torch once
(tests/cli_forkserver.py), so the ~25 trainings and exports take about a minute in all.

    python tests/test_faults.py --report     # the kill-point tables, without pytest
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from jetgen import atomic
from jetgen.runtime.bundle import Bundle

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from cli_forkserver import ForkServer  # noqa: E402
from runtime_fixtures import make_bundle  # noqa: E402

TRAIN = ["train", "vae", "--data", "digits", "--epochs", "2", "--batch-size", "64", "--latent-dim", "4",
         "--hidden", "32", "--quiet"]
PRELOAD = ["jetgen.cli", "jetgen.cli.train", "jetgen.train.trainer", "jetgen.train.data", "jetgen.models",
           "sklearn.datasets", "safetensors.torch", "jetgen.cli.export", "jetgen.export.exporter",
           "jetgen.cli.generate", "onnx", "onnxruntime"]
# one torch thread per child: kinder to a shared CPU, and every run of the suite uses the same count, which
# bitwise-identical resumes need
SERVER_ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def tree_hashes(root):
    """{relative path: sha256} of every file under ``root``."""
    out = {}
    for here, _, names in os.walk(root):
        for name in names:
            full = os.path.join(here, name)
            out[os.path.relpath(full, root)] = sha(full)
    return out


def leftovers(directory, name=None):
    """Temporaries (``.NAME.jg<pid>.<hex>.tmp|ready|old``) and jetgen 0.1's ``NAME.old`` in ``directory``."""
    found = []
    for entry in sorted(os.listdir(directory)):
        parsed = atomic.parse_temp_name(entry)
        if (parsed and (name is None or parsed[0] == name)) or entry.endswith(".old"):
            found.append(entry)
    return found


def all_leftovers(root):
    found = []
    for here, dirs, _ in os.walk(root):
        found += [os.path.join(here, e) for e in leftovers(here)]
    return found


def bad_modes(root):
    """Paths under ``root`` whose mode is not what open()/mkdir() give under the umask."""
    want_file, want_dir = 0o666 & ~umask(), 0o777 & ~umask()
    bad = []
    for here, dirs, names in os.walk(root):
        for name, want in [(d, want_dir) for d in dirs] + [(n, want_file) for n in names]:
            mode = os.stat(os.path.join(here, name)).st_mode & 0o777
            if mode != want:
                bad.append("{} {:o}".format(os.path.join(here, name), mode))
    return bad


def step_log(path):
    """[(step, kind, path)] from a JETGEN_FAULT_LOG file."""
    if not os.path.isfile(path):
        return []
    rows = []
    with open(path) as handle:
        for line in handle:
            number, _, kind, where = line.rstrip("\n").split(" ", 3)
            rows.append((int(number), kind, where))
    return rows


# -- AtomicDirectory in a small program ----------------------------------------------------------
SWAP_PROGRAM = """
import os, sys
import jetgen.atomic as atomic
atomic._state["exchange"] = {exchange}
with atomic.AtomicDirectory(sys.argv[1], force=True) as tmp:
    for name in ("a", "b", "c"):
        atomic.atomic_write_bytes(os.path.join(tmp, name), b"new " + name.encode())
"""


def run_swap(path, exchange, kill_at, log):
    env = dict(os.environ, PYTHONPATH=ROOT, JETGEN_FAULT_KILL_AT=str(kill_at), JETGEN_FAULT_LOG=log)
    return subprocess.run([sys.executable, "-c", SWAP_PROGRAM.format(exchange=exchange), path], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)


def version(path):
    """'old' or 'new' when all three files of ``path`` agree, else what was found."""
    if not os.path.isdir(path):
        return "nothing"
    contents = set()
    for name in ("a", "b", "c"):
        p = os.path.join(path, name)
        contents.add(open(p).read().split()[0] if os.path.isfile(p) else "missing")
    return contents.pop() if len(contents) == 1 else "mixed {}".format(sorted(contents))


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "fallback"])
@pytest.mark.parametrize("existing", [True, False], ids=["replace", "create"])
def test_directory_swap_killed_at_every_step(tmp_path, exchange, existing):
    newest = {"dir-old", "dir-publish", "dir-clean"}  # steps after which the new copy is complete and marked
    if exchange:
        newest = {"dir-clean"}
    kill, results = 0, []
    while True:
        kill += 1
        case = tmp_path / str(kill)
        case.mkdir()
        path, log = str(case / "d"), str(case / "log")
        if existing:
            os.mkdir(path)
            for name in ("a", "b", "c"):
                (case / "d" / name).write_text("old " + name)
        done = run_swap(path, exchange, kill, log)
        if done.returncode == 0:
            break
        assert done.returncode == -9, done.stderr
        kind = step_log(log)[-1][1]
        at_kill = version(path)
        atomic.recover(path)
        want = "new" if kind in newest else ("old" if existing else "nothing")
        results.append((kill, kind, at_kill, version(path), leftovers(str(case), "d")))
        assert version(path) == want, results
        assert leftovers(str(case), "d") == [], results
        if exchange and existing:  # the exchange leaves a complete copy at path at every instant
            assert at_kill == want, results
    steps = [k for _, k, _ in step_log(log)]
    assert kill == len(steps) + 1 and steps[:3] == ["file"] * 3, steps
    if existing:
        assert steps[3:] == (["dir-swap", "dir-clean"] if exchange else
                             ["dir-swap", "dir-old", "dir-publish", "dir-clean"]), steps
    else:
        assert steps[3:] == ["dir-new"], steps


def test_stale_temporaries_removed_only_when_their_owner_is_gone(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead_file = tmp_path / ".metrics.csv.jg{}.0badcafe.tmp".format(gone.pid)
        dead_dir = tmp_path / ".checkpoint.jg{}.0badcafe.tmp".format(gone.pid)
        live_file = tmp_path / ".metrics.csv.jg{}.0badcafe.tmp".format(alive.pid)
        user_file = tmp_path / ".notes.txt.tmp"
        dead_file.write_bytes(b"x")
        dead_dir.mkdir()
        (dead_dir / "model.safetensors").write_bytes(b"x" * 1000)
        live_file.write_bytes(b"x")
        user_file.write_bytes(b"mine")
        atomic.atomic_write_text(str(tmp_path / "eval.json"), "{}")
        assert sorted(os.listdir(str(tmp_path))) == sorted([live_file.name, user_file.name, "eval.json"])
    finally:
        alive.kill()
        alive.wait()


def test_files_and_directories_get_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        atomic.atomic_write_bytes(str(tmp_path / "f.bin"), b"x")
        with atomic.AtomicDirectory(str(tmp_path / "d.jetgen")) as tmp:
            atomic.atomic_write_bytes(os.path.join(tmp, "manifest.json"), b"{}")
        assert os.stat(str(tmp_path / "f.bin")).st_mode & 0o777 == 0o640
        assert os.stat(str(tmp_path / "d.jetgen")).st_mode & 0o777 == 0o750
        assert os.stat(str(tmp_path / "d.jetgen" / "manifest.json")).st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_bundle_left_as_old_by_jetgen_01_opens(tmp_path):
    # jetgen 0.1 killed between its two renames left NAME.jetgen.old and no NAME.jetgen
    path, _ = make_bundle(str(tmp_path / "b.jetgen"))
    os.rename(path, path + ".old")
    assert Bundle.open(path).model["latent_dim"] == 4
    assert os.listdir(str(tmp_path)) == ["b.jetgen"]
    # beside a complete bundle, NAME.old is left to the next replacement (as 0.1 did), not deleted by a reader
    shutil.copytree(path, path + ".old")
    Bundle.open(path)
    assert sorted(os.listdir(str(tmp_path))) == ["b.jetgen", "b.jetgen.old"]
    with atomic.AtomicDirectory(path, force=True) as tmp:
        shutil.copy(os.path.join(path + ".old", "manifest.json"), tmp)
    assert os.listdir(str(tmp_path)) == ["b.jetgen"]


def test_recovery_leaves_a_live_writer_alone(tmp_path):
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ready = tmp_path / ".d.jg{}.0badcafe.ready".format(alive.pid)  # a writer between its two renames
        old = tmp_path / ".d.jg{}.0badcafe.old".format(alive.pid)
        ready.mkdir()
        old.mkdir()
        assert atomic.recover(str(tmp_path / "d")) == []
        assert sorted(os.listdir(str(tmp_path))) == sorted([ready.name, old.name])
    finally:
        alive.kill()
        alive.wait()
    atomic.recover(str(tmp_path / "d"))  # its owner is gone now: the marked copy is the newest complete one
    assert os.listdir(str(tmp_path)) == ["d"]


# -- the CLI ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    with ForkServer(PRELOAD, env=SERVER_ENV) as s:
        yield s


@pytest.fixture(scope="module")
def reference(server, tmp_path_factory):
    """An uninterrupted training: its run directory, its write steps and what it ended with."""
    root = tmp_path_factory.mktemp("reference")
    run, log = str(root / "R"), str(root / "log")
    done = server.run(TRAIN + ["--out", run], env={atomic.LOG_ENV: log})
    assert done.returncode == 0, done
    return {"run": run, "steps": step_log(log), "result": run_result(run)}


def run_result(run):
    """What must be bitwise equal after a resume: weights, metrics (without timings), latent statistics."""
    out = {"weights": sha(os.path.join(run, "checkpoint", "model.safetensors"))}
    with open(os.path.join(run, "metrics.csv")) as handle:
        rows = [line.rstrip("\n").split(",") for line in handle]
    timing = rows[0].index("time_s")
    out["metrics"] = [r[:timing] + r[timing + 1:] for r in rows]
    with open(os.path.join(run, "latent_stats.jsonl")) as handle:
        out["latent_stats"] = handle.read()
    return out


def kill_training(server, reference, root, kill):
    """Kill a training at step ``kill``, then resume it (or re-run it when no config.json was written).

    Returns a row: step, kind, how the recovery ended, whether the result is bitwise the reference's,
    temporaries left, modes that differ from the umask's."""
    run = os.path.join(root, "R{}".format(kill))
    killed = server.run(TRAIN + ["--out", run], env={atomic.KILL_ENV: str(kill)})
    kind = reference["steps"][kill - 1][1]
    row = {"step": kill, "kind": kind, "killed": killed.returncode == -9}
    if os.path.isfile(os.path.join(run, "config.json")):
        again = server.run(["train", "--resume", run, "--quiet"])
        row["then"] = "train --resume"
    else:
        again = server.run(TRAIN + ["--out", run])
        row["then"] = "train again"
    row["exit"] = again.returncode
    row["error"] = again.stderr.strip().splitlines()[-1] if again.returncode else ""
    row["bitwise"] = again.returncode == 0 and run_result(run) == reference["result"]
    row["leftovers"] = all_leftovers(run) + leftovers(root, "R{}".format(kill))
    row["modes"] = bad_modes(run) if os.path.isdir(run) else []
    return row


def first_checkpoint_step(steps):
    return next(i for i, (_, kind, where) in enumerate(steps, 1)
                if kind == "dir-new" and where.endswith(os.sep + "checkpoint"))


def check_rows(rows):
    bad = [r for r in rows if not (r["killed"] and r["exit"] == 0 and r["bitwise"] and not r["leftovers"]
                                   and not r["modes"])]
    assert not bad, "\n".join(json.dumps(r) for r in bad)


def test_training_steps_are_what_this_suite_expects(reference):
    kinds = [k for _, k, _ in reference["steps"]]
    assert kinds.count("dir-new") == 1 and "dir-swap" in kinds and "dir-clean" in kinds, kinds
    assert not bad_modes(reference["run"])


def test_training_killed_after_first_checkpoint_resumes_bitwise(server, reference, tmp_path):
    first = first_checkpoint_step(reference["steps"])
    rows = [kill_training(server, reference, str(tmp_path), k) for k in range(first + 1, len(reference["steps"]) + 1)]
    assert len(rows) >= 5
    check_rows(rows)


def test_training_killed_before_first_checkpoint_restarts(server, reference, tmp_path):
    # two kill points stand for the others: before config.json exists, and before the first checkpoint
    # is published (every file of the first epoch written)
    first = first_checkpoint_step(reference["steps"])
    check_rows([kill_training(server, reference, str(tmp_path), k) for k in (1, first)])


def test_resume_finds_checkpoint_left_as_old_by_jetgen_01(server, reference, tmp_path):
    # issue 8 item 1: jetgen 0.1 killed between its renames left R/checkpoint.old and no R/checkpoint
    run = str(tmp_path / "R")
    shutil.copytree(reference["run"], run)
    os.rename(os.path.join(run, "checkpoint"), os.path.join(run, "checkpoint.old"))
    done = server.run(["train", "--resume", run, "--epochs", "2", "--quiet"])
    assert done.returncode == 0, done
    assert run_result(run) == reference["result"] and all_leftovers(run) == []


def graph_hashes(hashes):
    return {k: v for k, v in hashes.items() if k.endswith(".onnx")}


def bundle_state(hashes, old_hashes, new_graphs):
    """'old' or 'new' when ``hashes`` (a tree_hashes) are a complete copy of either, else what is wrong."""
    if hashes is None:
        return "nothing"
    if hashes == old_hashes:
        return "old"
    if graph_hashes(hashes) == new_graphs and "manifest.json" in hashes:
        return "new"
    return "wrong: {}".format(sorted(hashes))


@pytest.fixture(scope="module")
def first_export(server, reference, tmp_path_factory):
    """A first export (nothing at --out) killed just before publishing, then run again.

    Returns its directory, the exported graphs' hashes and the write steps of the second run."""
    root = str(tmp_path_factory.mktemp("export"))
    out, log = os.path.join(root, "B.jetgen"), os.path.join(root, "log")
    command = ["export", reference["run"], "--target", "nano", "--out", out]
    # count the write steps of a whole export first (graphs, golden vectors, manifest), then kill at the
    # one that would publish the finished bundle
    probe = os.path.join(root, "probe.jetgen")
    assert server.run(command[:-1] + [probe], env={atomic.LOG_ENV: log}).returncode == 0
    publish = [n for n, kind, _ in step_log(log) if kind == "dir-new"][0]
    os.unlink(log)
    killed = server.run(command, env={atomic.KILL_ENV: str(publish), atomic.LOG_ENV: log})
    row = {"killed": killed.returncode, "kind": step_log(log)[-1][1], "exists": os.path.exists(out),
           "leftovers_at_kill": leftovers(root, "B.jetgen")}
    os.unlink(log)
    again = server.run(command, env={atomic.LOG_ENV: log})
    row.update(exit=again.returncode, stderr=again.stderr, leftovers=leftovers(root, "B.jetgen"),
               modes=bad_modes(out) if os.path.isdir(out) else [])
    return {"out": out, "row": row, "steps": step_log(log),
            "graphs": graph_hashes(tree_hashes(out)) if again.returncode == 0 else None}


def test_first_export_killed_before_publishing_can_be_run_again(first_export):
    row = first_export["row"]
    assert row["killed"] == -9 and row["kind"] == "dir-new" and not row["exists"], row
    assert len(row["leftovers_at_kill"]) == 1, row  # the complete but unpublished bundle
    assert row["exit"] == 0 and row["leftovers"] == [] and row["modes"] == [], row
    Bundle.open(first_export["out"], verify=True)


def test_export_force_killed_at_each_step_never_leaves_a_wrong_bundle(server, reference, first_export, tmp_path):
    # kill points: the last file (every graph written, nothing published), the exchange, the clean-up;
    # killing at an earlier file leaves the same state as the last one (an unpublished temporary)
    files = sum(1 for _, kind, _ in first_export["steps"] if kind == "file")
    assert files >= 2 and first_export["graphs"], first_export
    rows = []
    for kill in (files, files + 1, files + 2):
        out = str(tmp_path / "B{}.jetgen".format(kill))
        make_bundle(out)  # the bundle being replaced: another model, so old and new cannot be confused
        old = tree_hashes(out)
        log = str(tmp_path / "log{}".format(kill))
        done = server.run(["export", reference["run"], "--target", "nano", "--out", out, "--force"],
                          env={atomic.KILL_ENV: str(kill), atomic.LOG_ENV: log})
        at_kill = tree_hashes(out) if os.path.isdir(out) else None
        info = server.run(["info", out, "--json"])  # the next command: recovers and cleans up
        rows.append({"step": kill, "kind": step_log(log)[-1][1], "exit": done.returncode,
                     "at_kill": bundle_state(at_kill, old, first_export["graphs"]),
                     "after": bundle_state(tree_hashes(out) if os.path.isdir(out) else None, old,
                                           first_export["graphs"]),
                     "info_exit": info.returncode, "leftovers": leftovers(str(tmp_path), os.path.basename(out)),
                     "modes": bad_modes(out) if os.path.isdir(out) else []})
        Bundle.open(out, verify=True)
    # at the instant of each kill a complete bundle, the old or the new one, is at --out; never nothing
    assert [(r["kind"], r["exit"], r["at_kill"], r["after"]) for r in rows] == [
        ("file", -9, "old", "old"), ("dir-swap", -9, "old", "old"), ("dir-clean", -9, "new", "new")], rows
    assert all(r["info_exit"] == 0 and not r["leftovers"] and not r["modes"] for r in rows), rows


# -- SIGTERM: train and eval stop as after Ctrl-C (issue 22, item 2) --------------------------------
def _start(argv, tmp_path):
    env = dict(SERVER_ENV, PYTHONPATH=ROOT)
    err = open(str(tmp_path / "stderr"), "w+")
    proc = subprocess.Popen([sys.executable, "-m", "jetgen.cli"] + argv, env=env, stdout=subprocess.PIPE,
                            stderr=err, universal_newlines=True)
    return proc, err


def _wait_for(predicate, proc, limit=90):
    import time
    end = time.time() + limit
    while time.time() < end and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_sigterm_during_train_saves_a_checkpoint_and_exits_143(reference, tmp_path):
    import signal
    import time
    run = str(tmp_path / "T")
    proc, err = _start(TRAIN[:5] + ["200"] + TRAIN[6:] + ["--out", run], tmp_path)
    # metrics.csv is written after the first epoch: the loop (and its signal handler) is running
    assert _wait_for(lambda: os.path.isfile(os.path.join(run, "metrics.csv")), proc)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 143
    err.seek(0)
    text = err.read()
    assert "Interrupted by SIGTERM" in text and "jetgen train --resume" in text and "Traceback" not in text, text
    assert os.path.isfile(os.path.join(run, "checkpoint", "meta.json"))
    assert not all_leftovers(run)


def test_sigterm_during_eval_is_a_line_and_exit_143(reference, tmp_path):
    import signal
    proc, err = _start(["eval", reference["run"], "--iw-samples", "5000", "--out", str(tmp_path / "plots")], tmp_path)

    def started():
        err.seek(0)
        return "eval:" in err.read()
    assert _wait_for(started, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 143
    err.seek(0)
    text = err.read()
    assert "interrupted by SIGTERM" in text and "Traceback" not in text, text
    assert not os.path.exists(str(tmp_path / "plots" / "eval.json"))


# -- report ----------------------------------------------------------------------------------------
def report():
    import tempfile

    root = tempfile.mkdtemp(prefix="jetgen-faults-")
    with ForkServer(PRELOAD, env=SERVER_ENV) as server:
        log = os.path.join(root, "log")
        run = os.path.join(root, "R")
        assert server.run(TRAIN + ["--out", run], env={atomic.LOG_ENV: log}).returncode == 0
        ref = {"run": run, "steps": step_log(log), "result": run_result(run)}
        print("| kill at step | kind | then | exit | bitwise | temporaries left | error |")
        print("|---|---|---|---|---|---|---|")
        for kill in range(1, len(ref["steps"]) + 1):
            r = kill_training(server, ref, root, kill)
            print("| {} | {} {} | {} | {} | {} | {} | {} |".format(
                kill, r["kind"], os.path.basename(ref["steps"][kill - 1][2]), r["then"], r["exit"],
                "yes" if r["bitwise"] else "no", len(r["leftovers"]), r["error"][:90]))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if "--report" in sys.argv:
        report()
