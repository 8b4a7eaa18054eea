"""Write a list of records for another team as CSV or JSON, chosen by the file's extension."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guard.errors import UsageError

FORMATS = (".csv", ".json")


def check_path(path: Path, flag: str) -> Path:
    """Fail on an extension we cannot write, before any work is done."""
    if path.suffix.lower() not in FORMATS:
        raise UsageError(f"{flag} {path}: the name must end in .csv or .json")
    return path


def write_rows(path: Path, fields: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    """Write rows (a header and one line each, or one JSON array of objects), replacing the file whole."""
    if path.suffix.lower() == ".json":
        text = json.dumps([{f: r.get(f) for f in fields} for r in rows], indent=2, ensure_ascii=False) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
