"""Run many ``jetgen`` commands as real child processes without paying torch's import each time.

A server process imports the heavy modules once, then forks one child per request; the child runs
``jetgen.cli.main`` exactly as ``python -m jetgen.cli ARGS`` would (own pid, own stdout/stderr files,
exit status, SIGKILL kills only it). Used by the fault-injection tests, which kill a command at every
write step and need dozens of trainings and exports in seconds.

    with ForkServer(["jetgen.cli.train"]) as server:
        done = server.run(["train", "vae", "--out", "R"], env={"JETGEN_FAULT_KILL_AT": "3"})
        done.returncode, done.stdout, done.stderr
"""
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class Finished(object):
    def __init__(self, returncode, stdout, stderr, timed_out):
        self.returncode, self.stdout, self.stderr, self.timed_out = returncode, stdout, stderr, timed_out

    def __repr__(self):
        return "Finished(returncode={}, timed_out={}, stderr={!r})".format(
            self.returncode, self.timed_out, self.stderr[-2000:])


class ForkServer(object):
    """A server process started with ``preload`` modules imported; ``run`` forks a child per command."""

    def __init__(self, preload=(), env=None):
        self.env = dict(os.environ if env is None else env)
        self.env["PYTHONPATH"] = ROOT + os.pathsep + self.env.get("PYTHONPATH", "")
        self.logs = tempfile.mkdtemp(prefix="jetgen-forkserver-")
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__)] + list(preload), cwd=ROOT,
                                     env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     universal_newlines=True)
        self.count = 0

    def run(self, argv, env=None, cwd=None, timeout=120):
        """Run ``jetgen ARGV`` in a fresh child with ``env`` added; return a Finished."""
        self.count += 1
        out = os.path.join(self.logs, "{}.out".format(self.count))
        err = os.path.join(self.logs, "{}.err".format(self.count))
        child_env = dict(self.env, **(env or {}))
        request = {"argv": [str(a) for a in argv], "env": child_env, "cwd": cwd or ROOT, "stdout": out,
                   "stderr": err, "timeout": timeout}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the fork server died")
        reply = json.loads(line)
        with open(out) as a, open(err) as b:
            return Finished(reply["returncode"], a.read(), b.read(), reply["timed_out"])

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        import shutil
        shutil.rmtree(self.logs, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _child(request):
    code = 1
    try:
        fd_out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        fd_err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd_out, 1)
        os.dup2(fd_err, 2)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["jetgen"] + request["argv"]
        from jetgen.cli import main
        try:
            main(request["argv"], prog_name="jetgen")
            code = 0
        except SystemExit as stop:
            if stop.code is None:
                code = 0
            elif isinstance(stop.code, int):
                code = stop.code
            else:
                sys.stderr.write("{}\n".format(stop.code))
                code = 1
    except BaseException:
        traceback.print_exc()  # as the interpreter would print an uncaught exception
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _wait(pid, timeout):
    deadline = time.time() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.time() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return -9, True
        time.sleep(0.005)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status), False
    return os.WEXITSTATUS(status), False


def serve(preload):
    for name in preload:
        importlib.import_module(name)
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        code, timed_out = _wait(pid, request["timeout"])
        sys.stdout.write(json.dumps({"returncode": code, "timed_out": timed_out}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve(sys.argv[1:])
