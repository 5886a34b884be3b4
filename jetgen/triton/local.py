"""Run the registry's ``tritonserver`` (the ``nvidia-pytriton`` wheel) on this machine, on loopback.

    with LocalServer("models/") as server:          # ready, or JetgenError with the server's log tail
        client = tritonclient.http.InferenceServerClient(server.url)

The wheel holds a real Triton server (2.51) with the Python backend only. What it needs here (found
by trying; docs/triton.md): a copy of the wheel's server tree with the Python backend stub for this
interpreter in ``backends/python``; ``LD_LIBRARY_PATH`` with the wheel's ``nvidia_pytriton.libs`` and
the interpreter's own LIBDIR (the stub embeds libpython); and a ``python3`` first on ``PATH`` whose
environment has numpy < 2 (the stub is built against numpy 1: under numpy 2 it reads tensors with
wrong strides) and onnxruntime. The stub ignores PYTHONPATH, so that environment is a directory of
its own (``JETGEN_TRITON_STUB_ENV``, default ``<this venv>/triton-stub``; the Makefile makes it).
Extra backends (a Python-based one is a directory holding ``model.py``) are copied beside ``python``.
This is a desktop and test tool (it starts a process); nothing on a board imports it.
"""
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time

from jetgen.errors import JetgenError

STUB_ENV_VARIABLE = "JETGEN_TRITON_STUB_ENV"
MIN_GLIBC = (2, 35)  # the wheel's manylinux tag
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


def wheel_dirs():
    """(server tree, libs directory) of the installed nvidia-pytriton wheel, or None when it is absent."""
    try:
        import importlib.util
        found = importlib.util.find_spec("pytriton")
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    package = list(found.submodule_search_locations)[0]
    tree, libs = os.path.join(package, "tritonserver"), os.path.join(os.path.dirname(package), "nvidia_pytriton.libs")
    if not os.path.isfile(os.path.join(tree, "bin", "tritonserver")):
        return None
    return tree, libs


def stub_env():
    """The Python environment directory the stub runs in."""
    return os.environ.get(STUB_ENV_VARIABLE) or os.path.join(sys.prefix, "triton-stub")


def problem():
    """None when the wheel's server can run here, else the sentence why not (for skips and errors)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return "the nvidia-pytriton wheel's tritonserver is built for x86-64, this is {}".format(platform.machine())
    libc, version = platform.libc_ver()
    try:
        found = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        found = (0, 0)
    if libc != "glibc" or found < MIN_GLIBC:
        return "the wheel's tritonserver needs glibc {}.{}+, this has {} {}".format(
            MIN_GLIBC[0], MIN_GLIBC[1], libc or "no glibc", version)
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return "this Python has no shared libpython, which the Python backend stub links"
    if wheel_dirs() is None:
        return "the nvidia-pytriton wheel is not installed (pip install --no-deps nvidia-pytriton; see the Makefile)"
    stub = os.path.join(wheel_dirs()[0], "python_backend_stubs", "{}.{}".format(*sys.version_info[:2]))
    if not os.path.isdir(stub):
        return "the wheel has no Python backend stub for Python {}.{}".format(*sys.version_info[:2])
    python = os.path.join(stub_env(), "bin", "python3")
    if not os.path.isfile(python):
        return "no Python environment for the backend stub at {} (numpy<2 and onnxruntime; see the Makefile)".format(
            stub_env())
    return None


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServer(object):
    """One ``tritonserver`` on 127.0.0.1 serving ``repository`` (a path, or a list of them); ``start``
    waits until it is ready.

    ``backends``: extra backend name -> directory to copy into the backend directory. ``url`` is
    ``127.0.0.1:PORT`` (HTTP); ``log`` the server's output file. ``stop`` sends SIGTERM and waits
    at most ``STOP_TIMEOUT_S`` before SIGKILL."""

    def __init__(self, repository, backends=None, log_verbose=0):
        repos = [repository] if isinstance(repository, str) else list(repository)
        self.repositories = [os.path.abspath(r) for r in repos]
        self.backends = dict(backends or {})
        self.log_verbose = log_verbose
        self.process = None
        self.workdir = None
        self.url = None
        self.log = None
        self.ready_s = None
        self.stop_s = None

    def _tree(self):
        tree, libs = wheel_dirs()
        self.workdir = tempfile.mkdtemp(prefix="jetgen-triton-")
        server = os.path.join(self.workdir, "tritonserver")
        shutil.copytree(tree, server, ignore=shutil.ignore_patterns("python_backend_stubs"))
        stub = os.path.join(tree, "python_backend_stubs", "{}.{}".format(*sys.version_info[:2]),
                            "triton_python_backend_stub")
        shutil.copy2(stub, os.path.join(server, "backends", "python"))
        for name, directory in self.backends.items():
            shutil.copytree(directory, os.path.join(server, "backends", name),
                            ignore=shutil.ignore_patterns("__pycache__"))
        return server, libs

    def start(self, timeout=READY_TIMEOUT_S):
        """Start the server; JetgenError with the log's tail when it exits or is not ready in ``timeout`` s."""
        why = problem()
        if why:
            raise JetgenError("Cannot run tritonserver here: {}.".format(why))
        server, libs = self._tree()
        http, grpc, metrics = free_port(), free_port(), free_port()
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libs, sysconfig.get_config_var("LIBDIR"),
                                                             env.get("LD_LIBRARY_PATH")) if p)
        env["PATH"] = os.pathsep.join((os.path.join(stub_env(), "bin"), env.get("PATH", "")))
        cmd = [os.path.join(server, "bin", "tritonserver")]
        for repo in self.repositories:
            cmd += ["--model-repository", repo]
        cmd += ["--backend-directory", os.path.join(server, "backends"), "--http-address", "127.0.0.1",
               "--http-port", str(http), "--grpc-address", "127.0.0.1", "--grpc-port", str(grpc),
               "--metrics-address", "127.0.0.1", "--metrics-port", str(metrics), "--allow-gpu-metrics=false",
               "--log-verbose", str(self.log_verbose), "--exit-timeout-secs", "10"]
        self.log = os.path.join(self.workdir, "tritonserver.log")
        started = time.time()
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        self.url = "127.0.0.1:{}".format(http)
        while time.time() - started < timeout:
            if self.process.poll() is not None:
                raise JetgenError("tritonserver exited ({}) before it was ready: {}".format(
                    self.process.returncode, self.log_tail()))
            if self._ready(http):
                self.ready_s = time.time() - started
                return self
            time.sleep(0.25)
        self.stop()
        raise JetgenError("tritonserver was not ready within {:.0f} s: {}".format(timeout, self.log_tail()))

    @staticmethod
    def _ready(port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                return sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def log_tail(self, lines=15):
        try:
            with open(self.log, "rb") as handle:
                return "\n".join(handle.read().decode("utf-8", "replace").splitlines()[-lines:])
        except (OSError, TypeError):
            return "(no log)"

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout=STOP_TIMEOUT_S):
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; returns the exit code. Removes the server copy."""
        code = None
        if self.process is not None:
            started = time.time()
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(10)
            self.stop_s = time.time() - started
            code = self.process.returncode
        if self.workdir:
            shutil.rmtree(os.path.join(self.workdir, "tritonserver"), ignore_errors=True)
        return code

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
