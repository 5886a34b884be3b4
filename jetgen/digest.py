"""sha256 of files: the one implementation behind bundle graphs, checkpoints and engines.
Python 3.6 compatible, standard library only."""
import hashlib


def sha256_file(path, chunk=1 << 20):
    """Hex sha256 of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(str(path), "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
