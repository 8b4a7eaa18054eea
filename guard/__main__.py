from __future__ import annotations

from guard.cli.entry import run

raise SystemExit(run())
