"""Signed bundles: who made a bundle, on top of the manifest's sha256 of every file (what it holds).

    key = read_key("bundle.key")                # 32 random bytes or more, shared by exporter and boards
    sign("digits.jetgen", key)                  # writes digits.jetgen/signature.json
    check_signature("digits.jetgen", key)       # JetgenError unless it verifies

The signature is HMAC-SHA256 over the exact bytes of manifest.json. The manifest names every file of
the bundle with its sha256 (graphs, golden vectors, faces), and each file is checked against it when
it is used, so a verified manifest vouches for every byte the runtime reads. A bundle whose decoder
was rewritten and whose manifest was fixed up to match ("consistent" tampering, which ``jetgen
verify`` cannot notice when the golden inputs never reach the changed path) fails here, since the
fixed-up manifest has another MAC. engines/ (built on the board itself) is not covered.

Why a shared key is enough: the threat is a bundle arriving over a network at boards the same people
run; whoever can sign can also read the key, and the boards that verify are trusted to hold it. A
board that must verify without being able to sign (bundles from a third party, or keys on devices
that may be stolen) needs a public-key scheme (Ed25519), which the Python 3.6 standard library lacks;
HMAC-SHA256 (RFC 2104, ``hmac`` and ``hashlib``) needs nothing installed on the device.

Where the key comes from: the ``key`` argument (bytes, or the path of a key file), else the file that
``JETGEN_BUNDLE_KEY`` names; with neither, bundles are not checked for a signature. Standard library
only, Python 3.6 compatible (it runs on the device).
"""
import contextlib
import hashlib
import hmac
import json
import os
import secrets

from jetgen.errors import JetgenError

SIGNATURE = "signature.json"
FORMAT = "jetgen-signature"
ALGORITHM = "hmac-sha256"
KEY_ENV = "JETGEN_BUNDLE_KEY"
MIN_KEY_BYTES = 32
MAX_KEY_BYTES = 4096
MAX_SIGNATURE_BYTES = 4096


def read_key(path):
    """The key held in the file ``path`` (its bytes, without surrounding whitespace); JetgenError when the
    file cannot be read or holds fewer than MIN_KEY_BYTES bytes (make one with ``jetgen sign --new-key``)."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        if size > MAX_KEY_BYTES:
            raise JetgenError("{} is {} bytes, too large to be a bundle key (at most {}).".format(
                path, size, MAX_KEY_BYTES))
        with open(path, "rb") as handle:
            key = handle.read(MAX_KEY_BYTES + 1).strip()
    except OSError as err:
        raise JetgenError("Cannot read the bundle key {} ({}); give the key file's path (--key or {}).".format(
            path, err.strerror or err, KEY_ENV))
    if len(key) < MIN_KEY_BYTES:
        raise JetgenError("The bundle key in {} has {} bytes; a key needs at least {} (make one with jetgen sign "
                          "--new-key FILE).".format(path, len(key), MIN_KEY_BYTES))
    return key


def new_key(path):
    """Write a new random key (64 hex digits: 256 bits) to ``path``, readable by its owner only; JetgenError
    when ``path`` exists. Returns the key."""
    from jetgen.atomic import atomic_write_bytes

    path = os.fspath(path)
    if os.path.lexists(path):
        raise JetgenError("{} exists already; a new key never replaces one (remove it first if you mean it).".format(
            path))
    key = secrets.token_hex(32).encode("ascii")
    atomic_write_bytes(path, key + b"\n")
    os.chmod(path, 0o600)
    return key


def resolve_key(key=None):
    """The key to check bundles with: ``key`` (bytes, or a key file's path), else the file that
    JETGEN_BUNDLE_KEY names, else None (no signature required). ``False``: none, whatever the environment says."""
    if key is False:
        return None
    if key is None:
        path = os.environ.get(KEY_ENV, "").strip()
        return read_key(path) if path else None
    if isinstance(key, bytes):
        if len(key) < MIN_KEY_BYTES:
            raise JetgenError("A bundle key needs at least {} bytes, not {}.".format(MIN_KEY_BYTES, len(key)))
        return key
    return read_key(key)


@contextlib.contextmanager
def unchecked():
    """Within it, JETGEN_BUNDLE_KEY does not apply (for the exporter reading back the bundle it makes)."""
    previous = os.environ.pop(KEY_ENV, None)
    try:
        yield
    finally:
        if previous is not None:
            os.environ[KEY_ENV] = previous


def key_id(key):
    """A short public name of ``key`` (the start of its sha256), to tell keys apart in messages."""
    return hashlib.sha256(b"jetgen-key-id\0" + key).hexdigest()[:16]


def mac(key, manifest_bytes):
    return hmac.new(key, manifest_bytes, hashlib.sha256).hexdigest()


def _manifest_bytes(bundle_dir):
    from jetgen.spec import MANIFEST, MAX_MANIFEST_BYTES, inside

    path = inside(bundle_dir, MANIFEST, "the manifest")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError as err:
        raise JetgenError("Cannot read {} ({}).".format(path, err.strerror or err))
    return path, data


def sign(bundle_dir, key):
    """Write ``bundle_dir/signature.json``: the MAC of its manifest under ``key``. The bundle is opened
    first (manifest checked, every graph's sha256 verified), so only an intact bundle is signed."""
    from jetgen.atomic import atomic_write_json
    from jetgen.runtime.bundle import Bundle

    bundle_dir = os.path.abspath(os.fspath(bundle_dir))
    Bundle.open(bundle_dir, verify=True, key=False)
    _, data = _manifest_bytes(bundle_dir)
    atomic_write_json(os.path.join(bundle_dir, SIGNATURE), {
        "format": FORMAT, "version": 1, "algorithm": ALGORITHM, "key_id": key_id(key),
        "manifest_sha256": hashlib.sha256(data).hexdigest(), "mac": mac(key, data)})
    return os.path.join(bundle_dir, SIGNATURE)


def check_signature(bundle_dir, key, manifest=None):
    """JetgenError unless ``bundle_dir`` carries a signature of its manifest.json under ``key``. With
    ``manifest`` (the parsed manifest the caller uses), the signed bytes must also parse to it."""
    from jetgen.spec import inside, load_json

    bundle_dir = os.path.abspath(os.fspath(bundle_dir))
    path, data = _manifest_bytes(bundle_dir)
    sig_path = os.path.join(bundle_dir, SIGNATURE)
    if not os.path.isfile(sig_path) or os.path.islink(sig_path):
        raise JetgenError("{} is not signed, and a bundle key is configured (--key or {}), so it is refused: sign it "
                          "where it was made (jetgen sign BUNDLE --key KEYFILE) or use an unsigned bundle without "
                          "a key.".format(bundle_dir, KEY_ENV))
    inside(bundle_dir, SIGNATURE, "the signature")
    if os.path.getsize(sig_path) > MAX_SIGNATURE_BYTES:
        raise JetgenError("{} is too large to be a signature; the bundle is refused.".format(sig_path))
    sig = load_json(sig_path, "signature")
    if not isinstance(sig, dict) or sig.get("format") != FORMAT or sig.get("algorithm") != ALGORITHM:
        raise JetgenError("{} is not a jetgen {} signature; the bundle is refused (sign it again).".format(
            sig_path, ALGORITHM))
    given = sig.get("mac")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode("ascii", "replace"),
                                                             mac(key, data).encode("ascii")):
        theirs = sig.get("key_id")
        other = isinstance(theirs, str) and theirs != key_id(key)
        raise JetgenError("The signature of {} does not verify: {}; the bundle is refused (copy the signed bundle "
                          "again, or sign it with the right key).".format(
                              bundle_dir, "it was made with another key ({}, yours is {})".format(theirs[:16], key_id(key))
                              if other else "manifest.json changed after signing"))
    if manifest is not None and json.loads(data.decode("utf-8")) != manifest:
        raise JetgenError("{} changed while it was being read; open the bundle again.".format(path))
