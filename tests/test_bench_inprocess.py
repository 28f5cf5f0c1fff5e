"""bench/inprocess.py measures one digits request inside each app, as the serving benchmark's analysis cites it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_both_apps_answer_and_are_measured():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "inprocess.py"), "--requests", "5", "--windows", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = dict(re.findall(r"^\| (ai_service|plain) \| ([0-9.]+ \| [0-9]+) \|$", done.stdout, re.MULTILINE))
    assert set(rows) == {"ai_service", "plain"}
    for measured in rows.values():
        milliseconds, calls = (float(part) for part in measured.split(" | "))
        assert milliseconds > 0 and calls > 100  # a request really went through the whole app
