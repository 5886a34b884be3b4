"""Graph inputs: the one check of feeds against a graph's manifest entry, and the one place a
batch is split into runs the graph's batch range accepts (``run_in_chunks``, used by ``Model.run``).
numpy only, Python 3.6 compatible."""
import numpy as np

from jetgen.errors import JetgenError


def sample_shape(entry):
    """The per-example shape of a manifest tensor entry: ['batch', 1, 28, 28] -> (1, 28, 28)."""
    shape = entry.get("shape") or []
    rest = shape[1:]
    if not shape or not all(isinstance(d, int) and d > 0 for d in rest):
        raise JetgenError("Tensor {!r} in the manifest needs a batch axis first and fixed sizes after it, "
                          "not {!r}.".format(entry.get("name"), shape))
    return tuple(rest)


def check_feeds(feeds, input_names, sample_shapes, graph="this", batch=None):
    """Validate inputs; return (batch size, {name: float32 C-contiguous array}).

    ``sample_shapes``: name -> shape after the batch axis; ``batch``: the graph's (min, max) or None.
    JetgenError for a missing or unexpected name, a wrong per-example shape, differing batch sizes,
    an empty batch or one outside ``batch``.
    """
    missing = [n for n in input_names if n not in feeds]
    extra = sorted(n for n in feeds if n not in input_names)
    if missing or extra:
        raise JetgenError("The {} graph takes inputs {}; got {}.".format(
            graph, ", ".join(input_names), ", ".join(sorted(feeds)) or "none"))
    arrays, sizes = {}, set()
    for name in input_names:
        try:
            array = np.ascontiguousarray(feeds[name], dtype=np.float32)
        except (TypeError, ValueError):
            raise JetgenError("Input {!r} of the {} graph is not an array of numbers.".format(name, graph))
        if array.ndim == 0 or tuple(array.shape[1:]) != tuple(sample_shapes[name]):
            raise JetgenError("Input {!r} of the {} graph must have shape (batch, {}); got {}.".format(
                name, graph, ", ".join(str(d) for d in sample_shapes[name]), tuple(array.shape)))
        arrays[name] = array
        sizes.add(array.shape[0])
    if len(sizes) != 1:
        raise JetgenError("All inputs of the {} graph must have the same batch size; got {}.".format(
            graph, ", ".join("{}={}".format(n, arrays[n].shape[0]) for n in input_names)))
    n = sizes.pop()
    if n == 0:
        raise JetgenError("The batch is empty; pass at least one example.")
    if batch is not None and (n < batch[0] or (batch[1] is not None and n > batch[1])):
        raise JetgenError("The {} graph runs batches of {} to {}, not {}.".format(graph, batch[0], batch[1], n))
    return n, arrays


def plan_chunks(n, bmin, bmax):
    """Split a batch of ``n`` into runs the range accepts: list of (start, stop, run_size).

    Each run covers rows start:stop; run_size >= stop - start is the batch actually executed
    (raised to ``bmin`` by padding when the remainder is smaller). ``bmax`` None: one run.
    """
    size = bmax or max(n, bmin)
    return [(start, min(start + size, n), max(min(start + size, n) - start, bmin)) for start in range(0, n, size)]


def pad_rows(array, size):
    """``array`` with its last row repeated until it has ``size`` rows (a no-op when it has them)."""
    if array.shape[0] >= size:
        return array
    pad = np.repeat(array[-1:], size - array.shape[0], axis=0)
    return np.ascontiguousarray(np.concatenate([array, pad], axis=0))


def run_in_chunks(run, feeds, bmin, bmax):
    """``run(feeds)`` for a batch of any size: one call when it fits [bmin, bmax], else one per chunk
    (padded up to ``bmin``), outputs concatenated with the padding dropped."""
    n = len(next(iter(feeds.values())))
    if n == 0:
        raise JetgenError("Nothing to run: the batch is empty.")
    if bmin <= n and (bmax is None or n <= bmax):  # the hot path: no slicing, padding or copying
        return run(feeds)
    parts = []
    for start, stop, size in plan_chunks(n, bmin, bmax):
        out = run(dict((k, pad_rows(v[start:stop], size)) for k, v in feeds.items()))
        parts.append(dict((k, v[:stop - start]) for k, v in out.items()))
    return dict((k, np.concatenate([p[k] for p in parts])) for k in parts[0])
