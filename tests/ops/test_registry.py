"""The op registry: one spec per op and opset range, no spec means frozen with a reason, and
every ops/ module that registers a spec has its test file here (tests/ops/test_<module>.py)."""

import re
from pathlib import Path

import pytest
from opmodels import sandwich
from prunecheck import group_of, prove

from onnxprune import ops

OPS_DIR = Path(ops.__file__).parent
TESTS_DIR = Path(__file__).parent


def registering_modules() -> set[str]:
    """Names of the ops/ modules with a ``@register`` decorator."""
    return {p.stem for p in OPS_DIR.glob("*.py")
            if re.search(r"^@register\b", p.read_text(), re.MULTILINE)}


def test_every_registering_module_has_its_test_file():
    modules = registering_modules()
    assert {"conv", "split", "fused"} <= modules and "registry" not in modules
    missing = sorted(m for m in modules if not (TESTS_DIR / f"test_{m}.py").exists())
    assert missing == [], f"ops/ modules without tests/ops/test_<module>.py: {missing}"


def test_every_test_file_here_names_an_op_module():
    """Scenarios that couple several ops belong in tests/coupling/, not here."""
    names = {p.stem.removeprefix("test_") for p in TESTS_DIR.glob("test_*.py")}
    assert names - registering_modules() == {"registry"}


def test_registry_picks_the_spec_of_the_opset():
    assert type(ops.REGISTRY.lookup("Split", 12)).__name__ == "SplitAttr"
    assert type(ops.REGISTRY.lookup("Split", 13)).__name__ == "SplitInput"
    assert type(ops.REGISTRY.lookup("Upsample", 8)).__name__ == "UpsampleAttr"
    assert ops.REGISTRY.lookup("Upsample", 11) is None
    assert ops.REGISTRY.lookup("Resize", 9) is None
    # before 17, LayerNormalization is onnxruntime's contrib op of the default domain
    assert type(ops.REGISTRY.lookup("LayerNormalization", 16)).__name__ == "LayerNormalization"
    assert ops.REGISTRY.lookup("Conv", 13, domain="com.microsoft") is None


def test_overlapping_opset_ranges_are_refused():
    class Twice(ops.OpSpec):
        op_types = ("Split",)
        min_opset, max_opset = 12, 14

    with pytest.raises(ValueError, match="both describe Split"):
        ops.REGISTRY.register(Twice)


def test_unknown_op_freezes():
    prep = prove(sandwich("LRN", {"size": 3}), min_removed=0)
    assert "no rule for LRN" in group_of(prep, "c1").frozen_reason
