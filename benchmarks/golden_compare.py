"""Compare two ``benchmarks/golden.sh`` output folders: analysis JSONs and the bad-output line
byte for byte, written models byte for byte, report JSONs field by field except what a
measurement, a path or a clock decides (latency figures, the command line, the time)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

MEASURED = ("baseline_ms", "ms", "speedup", "ratio_p10", "ratio_p90", "command", "when")


def _fields(x, path: str = "") -> dict[str, object]:
    """Leaf values by path, without the fields a measurement or the run's place decides."""
    if isinstance(x, dict):
        return {k: v for key, val in x.items() if key not in MEASURED
                for k, v in _fields(val, f"{path}/{key}").items()}
    if isinstance(x, list):
        return {k: v for i, val in enumerate(x) for k, v in _fields(val, f"{path}[{i}]").items()}
    return {path: x}


def main() -> int:
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    differ = 0
    for f in [*sorted(a.glob("analyze_*.json")), *sorted(a.glob("*.onnx")), a / "bad.log"]:
        same = (b / f.name).exists() and f.read_bytes() == (b / f.name).read_bytes()
        print(f"{f.name:28s} {'same bytes' if same else 'DIFFERENT'}")
        differ += not same
    for f in sorted(a.glob("*.json")):
        if not f.name.startswith("analyze_"):
            if not (b / f.name).exists():
                print(f"{f.name:28s} DIFFERENT: missing")
                differ += 1
                continue
            x, y = (_fields(json.loads(p.read_text())) for p in (f, b / f.name))
            moved = sorted(k for k in x.keys() | y.keys() if x.get(k) != y.get(k))
            print(f"{f.name:28s} {'same fields' if not moved else 'DIFFERENT: ' + ', '.join(moved)}")
            differ += bool(moved)
    print("all the same" if not differ else f"{differ} different")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
