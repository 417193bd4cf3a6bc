"""How far each zoo model can go: measured speedup with every group at its floor.

Uses the zoo tests' analytic staircase latency source (tests/fakes.py) for the layer profiles (steps of 4 channels) and a
floor of 10%, then times the all-floor model against the original (interleaved, ORT CPU, 1
thread). A model whose floor is below 1.3x cannot pass the zoo test's ``--speedup 1.3``.
Usage: python benchmarks/zoo_floors.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fakes import Staircase

from onnxprune import search
from onnxprune.preparation import prepare
from onnxprune.profile import Cache, profile_model
from onnxprune.rewrite import apply_plan


def main() -> None:
    source = Staircase()
    print(f"{'model':28} {'baseline ms':>11} {'all-floor speedup':>18}")
    for path in sorted((ROOT / "models" / "zoo").glob("*.onnx")):
        if path.stem == "resnet18_qdq":
            continue
        prep = prepare(str(path))
        run = profile_model(prep.graph, source, Cache(None, source.key()), min_fraction=0.1,
                            progress=False)
        choices = search.latency_choices(prep.graph, run.groups, 0.1)
        floor = apply_plan(prep.graph, search.plan_for(prep.graph, {c.group: c.widths[0] for c in choices}))
        cmp = source.compare(prep.model.SerializeToString(), floor.SerializeToString(),
                             prep.feeds, rounds=30)
        print(f"{path.stem:28} {cmp.a.median_ms:>11.3f} {cmp.speedup:>17.2f}x")


if __name__ == "__main__":
    main()
