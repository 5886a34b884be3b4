"""Board power and GPU load on a Jetson while a benchmark runs, through jetson-stats (jtop) when installed."""
import threading

import numpy as np


class JetsonMonitor(object):
    """Polls jetson-stats (jtop) in a thread while a task runs: mean board power (mW), GPU load (%)."""

    def __init__(self):
        self.available = False
        try:
            from jtop import jtop  # noqa: F401
            self.available = True
        except Exception:  # jetson-stats absent or its service not running
            pass
        self._samples, self._stop, self._thread = [], None, None

    def __enter__(self):
        if not self.available:
            return self
        from jtop import jtop

        self._stop = threading.Event()

        def poll():
            try:
                with jtop() as j:
                    while not self._stop.is_set() and j.ok():
                        power = j.power.get("tot", {}).get("power")
                        self._samples.append((power, j.stats.get("GPU")))
            except Exception:  # monitoring must never break the benchmark
                pass

        self._thread = threading.Thread(target=poll)
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
        return False

    def result(self):
        powers = [p for p, _ in self._samples if p is not None]
        gpus = [g for _, g in self._samples if g is not None]
        return {"power_mw": float(np.mean(powers)) if powers else None,
                "gpu_load": float(np.mean(gpus)) if gpus else None}
