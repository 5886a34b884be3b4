"""Board power on a Jetson while a benchmark runs, through jetson-stats (jtop), and energy per item.

The total input rail is what a board draws as a whole: POM_5V_IN on the Nano, VDD_IN on Xavier NX and
Orin (FACTS.md); a board that reports neither falls back to jtop's own total. Samples are
(time, mW) pairs; the energy of a timed window is their trapezoid integral over exactly that window
(the samples around each edge interpolated), never jtop's running average. Both jtop formats are read:
jetson-stats 7.x (``power["rail"][name]["power"]``, ``power["tot"]["power"]``; Python 3.7+) and 4.x
(``power`` = (total, rails), each with ``cur``; the JetPack 4 choice, read from its documentation, not
confirmed on a board). numpy and the standard library; jtop is imported only by the monitor.
"""
import threading
import time

TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")  # Orin / Xavier NX, Nano: each board has at most one of them
POLL_SECONDS = 0.05  # jtop refreshes about every 0.1 s at its fastest; polling faster only repeats values


def total_power_mw(power):
    """(mW, rail name) of the board's total input from one jtop ``power`` reading; (None, None) when absent."""
    if isinstance(power, dict):  # jetson-stats 7.x
        rails = power.get("rail") or {}
        for name in TOTAL_RAILS:
            if isinstance(rails.get(name), dict) and rails[name].get("power") is not None:
                return float(rails[name]["power"]), name
        total = power.get("tot") or {}
        return (float(total["power"]), "tot") if total.get("power") is not None else (None, None)
    if isinstance(power, (tuple, list)) and len(power) == 2:  # jetson-stats 4.x: (total, rails)
        total, rails = power
        rails = rails if isinstance(rails, dict) else {}
        for name in TOTAL_RAILS:
            if isinstance(rails.get(name), dict) and rails[name].get("cur") is not None:
                return float(rails[name]["cur"]), name
        if isinstance(total, dict) and total.get("cur") is not None:
            return float(total["cur"]), "tot"
    return None, None


def _interpolate(t, t0, p0, t1, p1):
    return p0 if t1 == t0 else p0 + (p1 - p0) * (t - t0) / (t1 - t0)


def energy_mj(samples, start, end):
    """Energy in mJ drawn between ``start`` and ``end`` (seconds, the samples' clock): the trapezoid
    integral of the (time, mW) ``samples`` over exactly that window. None unless samples cover it."""
    points = sorted((float(t), float(p)) for t, p in samples if p is not None)
    if end <= start or len(points) < 2 or points[0][0] > start or points[-1][0] < end:
        return None
    clipped = []
    for (ta, pa), (tb, pb) in zip(points, points[1:]):
        lo, hi = max(ta, start), min(tb, end)
        if lo < hi:
            clipped.append(((lo, _interpolate(lo, ta, pa, tb, pb)), (hi, _interpolate(hi, ta, pa, tb, pb))))
    return sum(0.5 * (pa + pb) * (tb - ta) for (ta, pa), (tb, pb) in clipped)


class JetsonMonitor(object):
    """Polls jtop in a thread: (perf_counter time, total mW) samples, the rail used and GPU load."""

    def __init__(self):
        self.available = False
        try:
            from jtop import jtop  # noqa: F401
            self.available = True
        except Exception:  # jetson-stats absent or its service not running
            pass
        self.samples, self.gpu, self.rail = [], [], None
        self._stop, self._thread = None, None

    def __enter__(self):
        if not self.available:
            return self
        from jtop import jtop
        self._stop = threading.Event()

        def poll():
            try:
                with jtop() as j:
                    while not self._stop.is_set() and j.ok():
                        mw, self.rail = total_power_mw(j.power)
                        self.samples.append((time.perf_counter(), mw))
                        self.gpu.append(j.stats.get("GPU"))
                        time.sleep(POLL_SECONDS)
            except Exception:  # monitoring must never break the benchmark
                pass

        self._thread = threading.Thread(target=poll)
        self._thread.daemon = True
        self._thread.start()
        time.sleep(1.0)  # jtop's first readings arrive after its service connects
        return self

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
        return False

    def energy_per_item_mj(self, window, items):
        """mJ per item over ``window`` (start, end) for ``items`` items; None without enough samples."""
        energy = energy_mj(self.samples, window[0], window[1]) if self.samples else None
        return None if energy is None or not items else energy / items
