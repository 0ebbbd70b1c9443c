"""Where the benchmarks put their results: a new dated file per run, `<name>_<time>_cpu<cores>.json`, never one
that exists (runs of the same second get `-1`, `-2`...)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def write_new(out: Path, name: str, results: dict[str, Any]) -> Path:
    """A new dated file holding `results`; never one that exists."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(100):
        path = out / f"{name}_{stamp}{'' if n == 0 else f'-{n}'}_cpu{os.cpu_count()}.json"
        try:
            with path.open("x") as f:
                f.write(json.dumps(results, indent=1))
            return path
        except FileExistsError:
            continue
    raise SystemExit(f"no free file name for {name}_{stamp} in {out}")
