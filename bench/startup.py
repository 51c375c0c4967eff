"""startup: wall time of `ftcli --help` against a bare `python -c pass` (the floor any Python CLI
pays), each the median of N runs after one untimed warm-up, from the bench process."""

from __future__ import annotations

import sys
from pathlib import Path

import common


def run(work: Path, quick: bool, **_) -> dict:
    runs = 3 if quick else 10
    ftcli = str(Path(sys.executable).parent / "ftcli")
    common.log("startup: timing `ftcli --help` and `python -c pass` ...")
    results = {"ftcli_help": common.median_wall([ftcli, "--help"], runs),
               "python": common.median_wall([sys.executable, "-c", "pass"], runs)}
    help_s, python_s = results["ftcli_help"]["median_s"], results["python"]["median_s"]
    rows = [{"workload": "startup", "contender": name, "time": f"median {r['median_s']:.3f}s",
             "other": f"min {r['min_s']:.3f}s, max {r['max_s']:.3f}s over {r['runs']} runs",
             "vs baseline": f"{r['median_s'] / python_s:.1f}× python -c pass"}
            for name, r in (("python -c pass", results["python"]), ("ftcli --help", results["ftcli_help"]))]
    checks = [common.check("startup", "`ftcli --help` median wall time", help_s, 0.3, higher_is_better=False,
                           unit=" s", ratio=False)]
    return {"rows": rows, "checks": checks, "results": results}
