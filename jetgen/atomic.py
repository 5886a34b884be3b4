"""Atomic file writes: write to a temporary file in the same directory, fsync, then rename.

A reader (or a crash, or Ctrl-C) never sees a half-written file. Python 3.6 compatible,
standard library only; used by the runtime, training and export alike.
"""
import json
import os
import shutil
import tempfile


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` so that ``path`` holds either the old or the new content."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


class AtomicDirectory(object):
    """Build a directory under a temporary name, rename it into place on success.

        with AtomicDirectory("out/model.jetgen", force=False) as tmp:
            ...write files into tmp...

    On an exception (including KeyboardInterrupt) the temporary directory is removed and
    ``path`` is untouched. With ``force`` an existing ``path`` is replaced only after the new
    directory is complete. Raises FileExistsError when ``path`` exists and ``force`` is false.
    """

    def __init__(self, path, force=False):
        self.path = os.path.abspath(os.fspath(path))
        self.force = force
        self.tmp = None

    def __enter__(self):
        if os.path.exists(self.path) and not self.force:
            raise FileExistsError(self.path)
        parent = os.path.dirname(self.path)
        os.makedirs(parent, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix="." + os.path.basename(self.path) + ".", suffix=".tmp", dir=parent)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        if os.path.exists(self.path):
            old = self.path + ".old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.path, old)
            os.replace(self.tmp, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.path)
        return False
