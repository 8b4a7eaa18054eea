"""scripts/run-stack.sh hides the planted findings from its final list with the pattern grep sees."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "run-stack.sh"


def _hidden_pattern() -> str:
    line = next(x for x in SCRIPT.read_text().splitlines() if "grep -v -E" in x)
    words = shlex.split(line[line.index("grep -v -E") :])  # the shell's own quoting rules
    return words[3]


def _row(check: str, kind: str, subject: str) -> str:
    return f"{'open':<9}{check:<11}{kind:<30}{subject:<34}{1:>6}  now"


def test_final_listing_hides_planted_slug_and_orphan_findings_only() -> None:
    lines = [
        _row("integrity", "ads.slug.unique", "ads:7"),
        _row("files", "orphan_file", "file:uploads/ads/ad-3.webp"),
        _row("integrity", "ads.title.required", "ads:9"),
        _row("integrity", "adsXslug.format", "ads:10"),
    ]
    kept = subprocess.run(
        ["grep", "-v", "-E", _hidden_pattern()],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert kept == lines[2:] and re.search(r"\\\\", _hidden_pattern()) is None
