"""Run the edgeprune CLI with one library function made to stop at a known point.

``python interrupt_driver.py MODULE:FUNCTION when CLI-ARGS...`` replaces ``MODULE.FUNCTION`` by
a wrapper that prints ``PAUSED`` and sleeps (``when`` = ``before``: before calling it,
``after``: after it returned), then runs ``edgeprune.cli.main(CLI-ARGS)``. The interrupt tests
send SIGINT or SIGTERM once they read ``PAUSED``, so the signal lands at exactly that point.
"""

from __future__ import annotations

import functools
import importlib
import sys
import time


def main() -> None:
    target, when, *args = sys.argv[1:]
    module_name, func_name = target.split(":")
    module = importlib.import_module(module_name)
    original = getattr(module, func_name)

    def pause():
        print("PAUSED", flush=True)
        time.sleep(60)

    @functools.wraps(original)
    def wrapper(*a, **kw):
        if when == "before":
            pause()
        result = original(*a, **kw)
        if when == "after":
            pause()
        return result

    setattr(module, func_name, wrapper)
    from edgeprune.cli import main as cli

    cli(args, prog_name="edgeprune")


if __name__ == "__main__":
    main()
