"""Atomic file and directory writes that survive a kill at any instant, and the recovery that goes with them.

Files: ``atomic_write_bytes/text/json(path, ...)`` write ``.NAME.jg<pid>.<random>.tmp`` beside ``path``,
fsync it and rename it over ``path``, so ``path`` holds the old or the new content, never a mix.

Directories: ``AtomicDirectory(path, force)`` builds ``.NAME.jg<pid>.<random>.tmp`` and publishes it whole:

- ``path`` absent: one rename.
- ``path`` present, on Linux filesystems with ``renameat2(RENAME_EXCHANGE)`` (ext4, xfs, btrfs, tmpfs):
  the new and the old directory trade places in one step, then the old copy (now under the temporary
  name) is deleted. ``path`` holds a complete copy at every instant.
- elsewhere: tmp -> ``.NAME.jg<pid>.<random>.ready`` (marks it complete), ``path`` ->
  ``.NAME.jg<pid>.<random>.old``, ready -> ``path``, delete old. A kill between the renames can leave
  ``path`` absent; ``recover(path)`` then restores the newest complete copy.

``recover(path)`` runs when an ``AtomicDirectory`` starts, when a bundle is opened and when a run's
checkpoint is read: it puts the newest complete copy at ``path`` (a ``.ready`` directory, else
``path`` itself, else an ``.old`` one, else the ``NAME.old`` that jetgen 0.1 left) and deletes the
other temporaries of ``path`` (``NAME.old`` is deleted only by the next replacement, as 0.1 did).

Stale temporaries: every temporary name carries its owner's pid; each write into a directory removes
the temporaries there whose owner process is gone (``os.kill(pid, 0)``), never those of a live one.
Temporaries of jetgen 0.1 (no pid in the name) are left alone, since nothing says whose they are.

Modes: files are created with mode 0666 and directories 0777, less the umask, as ``open()`` and
``os.mkdir()`` would create them (0644 and 0755 under the usual umask 022); an ``AtomicDirectory``
gives everything in it those modes before publishing (0777 less the umask for executable files).

Fault injection, for tests: ``JETGEN_FAULT_KILL_AT=N`` makes the process SIGKILL itself at its N-th
write step (counted from 1 per process); ``JETGEN_FAULT_LOG=FILE`` appends ``N PID KIND PATH`` per step.
The steps are: ``file`` (a file's temporary is written and synced, before its rename), ``dir-new``
(before a directory is renamed to an absent ``path``), ``dir-swap`` (before the exchange, or before
tmp -> ready), ``dir-old`` and ``dir-publish`` (the two renames of the fallback), ``dir-clean``
(before the old copy is deleted), ``recover`` (before a recovery rename).

A full disk or quota (ENOSPC, EDQUOT, also as a library's own error such as safetensors' "No space
left on device (os error 28)") while a write is under way is ``DiskFull``: a JetgenError sentence
with the path and, where known, the bytes it needed; the temporary is removed and the target kept
as it was. ``check_room(directory, needed)`` proves before a long computation that its output fits.

Python 3.6 compatible, standard library only; used by the runtime, training and export alike.
"""
import binascii
import errno
import json
import os
import re
import shutil
import signal
import sys

from jetgen.errors import JetgenError

# .NAME.jg<pid>.<8 hex>.<tag>: "jg" keeps other programs' temporaries out of the pattern; NAME is
# the target's name cut to STEM_BYTES so that the whole name fits in NAME_MAX (255 bytes)
_TEMP_RE = re.compile(r"^\.(.+)\.jg(\d+)\.([0-9a-f]{8})\.(tmp|ready|old)$", re.S)
STEM_BYTES = 200
KILL_ENV = "JETGEN_FAULT_KILL_AT"
LOG_ENV = "JETGEN_FAULT_LOG"

_state = {"steps": 0, "exchange": sys.platform.startswith("linux")}
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# how libraries that do their own I/O (safetensors, in Rust; onnx, in C++) word the same errors
DISK_FULL_TEXT = ("os error 28", "os error 122", "No space left on device", "Disk quota exceeded")


# -- a full disk ------------------------------------------------------------------------------
class DiskFull(JetgenError):
    """The disk or the user's quota filled up while jetgen wrote ``path``; nothing was replaced."""


def is_disk_full(err):
    """True when ``err`` says the disk or the quota is full (OSError ENOSPC/EDQUOT, or a library's error
    carrying that message)."""
    if isinstance(err, DiskFull):
        return True
    if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
        return True
    return isinstance(err, Exception) and any(text in str(err) for text in DISK_FULL_TEXT)


def _free_bytes(path):
    """Bytes free to this user on the filesystem of ``path`` (its nearest existing parent); None if unknown."""
    here = os.path.abspath(path)
    while here and not os.path.exists(here):
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    try:
        return shutil.disk_usage(here).free
    except OSError:
        return None


def _mb(n):
    return "{:.1f} MB".format(n / 1e6) if n >= 1e5 else "{} bytes".format(int(n))


def disk_full_error(err, path, needed=None, at_least=False):
    """The DiskFull sentence for ``err`` while writing ``path``: what filled up, the space ``needed``
    (bytes, or None when unknown; ``at_least``: a lower bound) and what is free."""
    quota = (isinstance(err, OSError) and err.errno == errno.EDQUOT) or "quota" in str(err).lower()
    what = "your disk quota is used up" if quota else "the disk is full"
    free = _free_bytes(path)
    room = ""
    if needed:
        room = ": it needs {}{}".format("more than " if at_least else "about ", _mb(needed))
        if free is not None:
            room += ", {} free".format(_mb(free))
    return DiskFull("Cannot write {} because {}{}; nothing was replaced and no temporaries are left. Free some "
                    "space (or write elsewhere) and run the command again.".format(path, what, room))


def check_room(directory, needed):
    """Make ``directory`` and prove that ``needed`` bytes fit in it (written to a temporary, then removed), so
    a long computation fails before it starts rather than when it writes. Raises DiskFull when they do
    not, JetgenError when the directory cannot be written at all."""
    directory = os.path.abspath(os.fspath(directory))
    try:
        os.makedirs(directory, exist_ok=True)
        tmp, fd = _create_temp_file(directory, "room")
    except OSError as err:
        if is_disk_full(err):
            raise disk_full_error(err, directory, needed)
        raise JetgenError("Cannot write into {} ({}); pick another output directory.".format(
            directory, err.strerror or err))
    try:
        block, left = b"\0" * min(needed, 1 << 20), needed
        while left > 0:
            left -= os.write(fd, block[:left])
        os.fsync(fd)
    except OSError as err:
        if is_disk_full(err):
            raise disk_full_error(err, directory, needed)
        raise
    finally:
        os.close(fd)
        os.unlink(tmp)


# -- fault injection --------------------------------------------------------------------------
def fault_step(kind, path):
    """Count one write step; SIGKILL this process if it is the one ``JETGEN_FAULT_KILL_AT`` names."""
    _state["steps"] += 1
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a") as handle:
            handle.write("{} {} {} {}\n".format(_state["steps"], os.getpid(), kind, path))
    if os.environ.get(KILL_ENV, "").strip() == str(_state["steps"]):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


# -- names and owners -------------------------------------------------------------------------
def _stem(name):
    return os.fsdecode(os.fsencode(name)[:STEM_BYTES])


def _temp_name(directory, name, tag):
    token = binascii.hexlify(os.urandom(4)).decode("ascii")
    return os.path.join(directory, ".{}.jg{}.{}.{}".format(_stem(name), os.getpid(), token, tag))


def parse_temp_name(entry):
    """(target stem, owner pid, tag) of a temporary's file name, or None for any other name."""
    match = _TEMP_RE.match(entry)
    if match is None:
        return None
    return match.group(1), int(match.group(2)), match.group(4)


def owner_alive(pid):
    """True unless process ``pid`` is known to be gone (this process counts as alive)."""
    if pid <= 0 or pid == os.getpid():
        return True  # pid 0 would address our process group: never treat it as gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: it exists, owned by someone else
    return True


def _remove(path):
    """Delete a file, link or directory tree; quiet when it is already gone or cannot be removed."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot sync a directory; the renames are still atomic
    finally:
        os.close(fd)


def current_umask():
    """The process's umask, read without changing it where Linux allows (/proc), else by setting it back."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _finish_tree(root):
    """Give every file and directory under ``root`` the umask's mode (libraries such as safetensors create
    0600 files) and fsync them, so a power cut cannot publish empty files."""
    mask = current_umask()
    for here, _, names in os.walk(root):
        for name in names:
            full = os.path.join(here, name)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            executable = os.stat(full).st_mode & 0o111
            os.chmod(full, (0o777 if executable else 0o666) & ~mask)
            fd = os.open(full, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.chmod(here, 0o777 & ~mask)
        _fsync_dir(here)


def _mtime(path):
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0


# -- cleaning and recovery --------------------------------------------------------------------
def clean_stale(directory):
    """Remove the temporaries in ``directory`` whose owner process is gone; return their paths.

    A dead writer's ``.ready`` or ``.old`` directory may be the only complete copy of its target, so
    those go through ``recover`` (which restores or deletes them) instead of being deleted outright.
    Never raises for files it cannot remove.
    """
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    removed, targets = [], set()
    for entry in entries:
        parsed = parse_temp_name(entry) if entry.startswith(".") else None
        if parsed is None or owner_alive(parsed[1]):
            continue
        if parsed[2] == "tmp":
            _remove(os.path.join(directory, entry))
            removed.append(os.path.join(directory, entry))
        else:
            targets.add(parsed[0])
    for stem in sorted(targets):
        if len(os.fsencode(stem)) < STEM_BYTES:  # a cut stem does not say the target's full name: leave it to recover()
            removed.extend(_recover(os.path.join(directory, stem), stem))
    return removed


def recover(path):
    """Make ``path`` hold the newest complete copy that an interrupted ``AtomicDirectory`` left behind.

    Candidates, newest first: a ``.NAME.*.ready`` directory (complete, not yet swapped in; used only
    when it is newer than ``path``), ``path`` itself, a ``.NAME.*.old`` directory, then jetgen 0.1's
    ``NAME.old``. The chosen copy is renamed to ``path``; the other copies and temporaries of ``path``
    whose owner is gone are deleted. Nothing happens while a live process is in the middle of
    swapping ``path``. Returns the paths it deleted. Raises JetgenError only when a complete copy
    exists but cannot be moved into place.
    """
    path = os.path.abspath(os.fspath(path))
    name = os.path.basename(path)
    return _recover(path, _stem(name)) if name else []


def _recover(path, stem):
    directory, name = os.path.split(path)
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    ready, olds, tmps = [], [], []
    for entry in entries:
        parsed = parse_temp_name(entry) if entry.startswith(".") else None
        if parsed is None or parsed[0] != stem:
            continue
        full = os.path.join(directory, entry)
        if owner_alive(parsed[1]):
            if parsed[2] != "tmp":
                return []  # a live writer is between its renames: leave everything to it
            continue
        {"ready": ready, "old": olds, "tmp": tmps}[parsed[2]].append(full)
    present = os.path.lexists(path)
    legacy = path + ".old"  # jetgen 0.1's name: restored when nothing newer exists, deleted only on a write
    has_legacy = not present and os.path.isdir(legacy) and not os.path.islink(legacy)
    if not ready and not olds and not tmps and not has_legacy:
        return []
    ready.sort(key=_mtime)
    olds.sort(key=_mtime)
    chosen = None
    if ready and (not present or _mtime(ready[-1]) >= _mtime(path)):
        chosen = ready.pop()
    elif not present and olds:
        chosen = olds.pop()
    elif has_legacy:
        chosen = legacy
    if chosen is not None:
        _put_in_place(chosen, path, present)
    removed = []
    for leftover in ready + olds + tmps:
        _remove(leftover)
        removed.append(leftover)
    return removed


def _put_in_place(chosen, path, present):
    directory = os.path.dirname(path)
    try:
        if present:  # a newer complete copy waits beside path: the usual swap, with our own names
            old = _temp_name(directory, os.path.basename(path), "old")
            fault_step("recover", path)
            os.rename(path, old)
            os.rename(chosen, path)
            _remove(old)
        else:
            fault_step("recover", path)
            os.rename(chosen, path)
    except OSError as err:
        if os.path.lexists(path) and not os.path.lexists(chosen):
            return  # another process restored it first
        raise JetgenError("{} was interrupted while being replaced and its last complete copy {} cannot be moved "
                          "back ({}); rename it to {} yourself.".format(path, chosen, err.strerror or err, path))
    _fsync_dir(directory)


# -- files ------------------------------------------------------------------------------------
def _create_temp_file(directory, name):
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = _temp_name(directory, name, "tmp")
        try:
            return tmp, os.open(tmp, flags, 0o666)  # the umask applies, as for open()
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", os.path.join(directory, name))


def require_directory(path):
    """Refuse to write ``path`` into a directory that does not exist (a mistyped --out must not create
    directories): JetgenError naming the directory; returns ``path`` when its directory exists. Writers
    of a command's own output (run directories, a bundle, eval's pictures) still make theirs."""
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    if not os.path.isdir(directory):
        raise JetgenError("Cannot write {}: the directory {} does not exist; create it (mkdir -p {}) or pick "
                          "another.".format(path, directory, directory))
    return path


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` so that ``path`` holds either the old or the new content.

    The file gets the mode ``open()`` would give it (0666 less the umask). Stale temporaries of dead
    processes in the same directory are removed first. Raises DiskFull on a full disk or quota, else
    OSError as ``open()`` would.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        clean_stale(directory)
        tmp, fd = _create_temp_file(directory, os.path.basename(path))
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        fault_step("file", path)
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)
        if is_disk_full(err) and not isinstance(err, DiskFull):
            raise disk_full_error(err, os.path.abspath(path), len(data))
        raise
    _fsync_dir(directory)


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# -- directories ------------------------------------------------------------------------------
class _NoExchange(Exception):
    pass


def _exchange(a, b):
    """Swap the paths ``a`` and ``b`` in one step (Linux renameat2 RENAME_EXCHANGE); _NoExchange if unsupported."""
    import ctypes
    import platform

    at_fdcwd, rename_exchange = -100, 2
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        raise _NoExchange()
    ea, eb = os.fsencode(a), os.fsencode(b)
    func = getattr(libc, "renameat2", None)
    if func is not None:
        func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        func.restype = ctypes.c_int
        result = func(at_fdcwd, ea, at_fdcwd, eb, rename_exchange)
    else:  # glibc before 2.28 (JetPack 4) has the system call but no wrapper
        number = {"x86_64": 316, "aarch64": 276}.get(platform.machine())
        if number is None:
            raise _NoExchange()
        libc.syscall.restype = ctypes.c_long
        result = libc.syscall(ctypes.c_long(number), ctypes.c_long(at_fdcwd), ctypes.c_char_p(ea),
                              ctypes.c_long(at_fdcwd), ctypes.c_char_p(eb), ctypes.c_long(rename_exchange))
    if result != 0:
        code = ctypes.get_errno()
        if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
            raise _NoExchange()
        raise OSError(code, os.strerror(code), a)


class AtomicDirectory(object):
    """Build a directory under a temporary name, rename it into place on success.

        with AtomicDirectory("out/model.jetgen", force=False) as tmp:
            ...write files into tmp...

    On an exception (including KeyboardInterrupt) the temporary directory is removed and ``path`` is
    untouched. With ``force`` an existing ``path`` is replaced only after the new directory is
    complete, and a kill at any point leaves a complete copy that ``recover(path)`` finds (see the
    module docstring). On entry, ``recover(path)`` runs and stale temporaries beside ``path`` are
    removed. Raises FileExistsError when ``path`` exists and ``force`` is false.
    """

    def __init__(self, path, force=False):
        self.path = os.path.abspath(os.fspath(path))
        self.force = force
        self.tmp = None

    def __enter__(self):
        parent = os.path.dirname(self.path)
        recover(self.path)
        if os.path.exists(self.path) and not self.force:
            raise FileExistsError(self.path)
        try:
            os.makedirs(parent, exist_ok=True)
            clean_stale(parent)
            for _ in range(100):
                tmp = _temp_name(parent, os.path.basename(self.path), "tmp")
                try:
                    os.mkdir(tmp, 0o777)  # the umask applies, as for os.mkdir()
                except FileExistsError:
                    continue
                self.tmp = tmp
                return tmp
        except OSError as err:
            if is_disk_full(err):
                raise disk_full_error(err, self.path)
            raise
        raise FileExistsError(errno.EEXIST, "no free temporary name", self.path)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            written = _tree_bytes(self.tmp)
            shutil.rmtree(self.tmp, ignore_errors=True)
            if is_disk_full(exc):  # one sentence naming the directory, instead of a library's traceback
                raise disk_full_error(exc, self.path, written, at_least=True) from None
            return False
        try:
            _publish(self.tmp, self.path)
        except BaseException as err:
            written = _tree_bytes(self.tmp)
            if os.path.lexists(self.tmp):
                shutil.rmtree(self.tmp, ignore_errors=True)
            if is_disk_full(err):
                raise disk_full_error(err, self.path, written, at_least=True) from None
            raise
        return False


def _tree_bytes(root):
    """Bytes in the files under ``root`` (0 when it is gone)."""
    total = 0
    for here, _, names in os.walk(root):
        for name in names:
            try:
                total += os.lstat(os.path.join(here, name)).st_size
            except OSError:
                pass
    return total


def _publish(tmp, path):
    """Put the complete directory ``tmp`` at ``path``, replacing what is there (see the module docstring)."""
    directory = os.path.dirname(path)
    _finish_tree(tmp)
    if not os.path.lexists(path):
        fault_step("dir-new", path)
        os.rename(tmp, path)
        _fsync_dir(directory)
        return
    if _state["exchange"]:
        fault_step("dir-swap", path)
        try:
            _exchange(tmp, path)
        except _NoExchange:
            _state["exchange"] = False
        else:  # tmp's name now holds the old copy, which nothing will ever mistake for a complete new one
            _fsync_dir(directory)
            fault_step("dir-clean", path)
            _remove(tmp)
            _remove_legacy_old(path)
            return
    else:
        fault_step("dir-swap", path)
    ready = _temp_name(directory, os.path.basename(path), "ready")
    os.rename(tmp, ready)
    old = _temp_name(directory, os.path.basename(path), "old")
    try:
        fault_step("dir-old", path)
        os.rename(path, old)
        fault_step("dir-publish", path)
        os.rename(ready, path)
    except BaseException:
        if not os.path.lexists(path):  # Ctrl-C or an error between the renames: put a complete copy back
            os.rename(ready if os.path.lexists(ready) else old, path)
        _remove(ready)
        raise
    _fsync_dir(directory)
    fault_step("dir-clean", path)
    _remove(old)
    _remove_legacy_old(path)


def _remove_legacy_old(path):
    """Delete jetgen 0.1's NAME.old after a replacement, as 0.1 itself did before each of its swaps."""
    legacy = path + ".old"
    if os.path.isdir(legacy) and not os.path.islink(legacy):
        _remove(legacy)
