"""Run scripts/evaluate.py with its arguments, but pause for good after the response cache's N-th flush
(N from $EVALUATE_PAUSE_AFTER_FLUSHES), so a test can kill it mid-suite at a known point: after exactly N
batches are on disk, with the output directory locked and the rest of the suite still to generate.

    python tests/evaluate_paused.py --model ... --output ...
"""

import os
import runpy
import signal
import sys
import time
from pathlib import Path

from eval_bridge.cache import ResponseCache


def pause_after(flushes: int) -> None:
    """Make the `flushes`-th `ResponseCache.put_many` of this process sleep until a signal ends it."""
    original = ResponseCache.put_many
    done = 0

    def put_many(self, items):
        nonlocal done
        original(self, items)
        done += 1
        if done >= flushes:
            while True:  # the test signals us from here (SIGINT raises KeyboardInterrupt out of the sleep)
                time.sleep(3600)

    ResponseCache.put_many = put_many


if __name__ == "__main__":
    # Ctrl-C as a terminal delivers it: a job started in the background of a non-interactive shell (a CI runner's
    # `cmd &`) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    pause_after(int(os.environ["EVALUATE_PAUSE_AFTER_FLUSHES"]))
    script = Path(__file__).resolve().parents[1] / "scripts" / "evaluate.py"
    sys.argv = [str(script), *sys.argv[1:]]
    runpy.run_path(str(script), run_name="__main__")
