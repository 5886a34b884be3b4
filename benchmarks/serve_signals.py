"""SIGTERM/SIGINT under load, repeated: ``jetgen serve`` must exit 0 with its port released every time.

    PYTHONPATH=. python benchmarks/serve_signals.py --trials 20

Each trial starts ``jetgen serve`` on a fixture bundle, loads it from four threads (samples of 64 and
waited 400-step completions), sends the signal after 0.3-1.0 s and checks the exit status, the one
"Stopped" line, that no "terminate called" or traceback reached stderr, and that the port can be bound
again. The trial itself lives in tests/test_serve_hostile.py (the suite runs three).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.test_serve_hostile import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
