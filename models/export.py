"""Shared TorchScript export for the example classifiers (torch is imported by the caller).

Invariants of every exported file: input ``input`` and output ``logits`` with a dynamic batch
dimension, BatchNormalization kept (constant folding off: the TorchScript exporter only fuses
Conv+BN while folding), IR version at most 10, and ``onnx.checker`` full check passed.
"""

from __future__ import annotations

import warnings
from pathlib import Path


def export_classifier(model, example_shape: tuple[int, ...], out: str | Path, opset: int = 17) -> Path:
    """Export ``model`` (eval mode) with an example input of ``example_shape`` to ``out``."""
    import onnx
    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(*example_shape),),
            str(out),
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            training=torch.onnx.TrainingMode.EVAL,
            do_constant_folding=False,
        )
    proto = onnx.load(str(out))
    proto.ir_version = min(proto.ir_version, 10)
    onnx.save(proto, str(out))
    onnx.checker.check_model(str(out), full_check=True)
    return out
