"""The `guard` command's entry point: the command line imported with the cyclic collector paused."""

from __future__ import annotations

import gc


def run() -> int:
    """Import and run the command line; return its exit code.

    Start-up builds tens of thousands of long-lived objects (psycopg, pydantic, the parsers) and the
    collector's passes over them find nothing: about a tenth of `guard check`'s start-up CPU. They
    are then frozen (kept out of every later pass): with the collector paused they were all still
    in its youngest generation, and its first pass after the import took 30-40 ms of CPU to find
    nothing (`guard check integrity`, measured with gc.callbacks; 0.6 ms frozen).
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        from guard.cli.main import main
    finally:
        gc.freeze()
        if collecting:
            gc.enable()
    return main()
