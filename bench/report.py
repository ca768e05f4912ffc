"""What every benchmark does with its figures: summarize repeated timings, write JSON."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from rich.console import Console


def spread(values: list[float]) -> dict[str, float]:
    """Min, median and max of repeated timings (these machines are noisy)."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def write_report(path: Path, report: dict[str, Any], console: Console) -> None:
    """``report`` plus the machine and the date, as indented JSON at ``path``."""
    report = {
        **report,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {path}")
