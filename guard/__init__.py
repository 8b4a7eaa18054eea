"""incident-guard: checks that keep schema drift, broken rows and DB/file mismatches out of production."""

from __future__ import annotations

__version__ = "0.1.0"
