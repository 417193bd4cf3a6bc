"""onnxprune: remove conv channels from ONNX models so that measured latency drops.

The public API is deliberately small:

* :func:`prune` -- the whole job: latency target / speedup / ratio, calibration, recovery;
* :func:`load_model` -- read an ONNX file (one-line errors as :class:`OnnxPruneError`);
* :func:`prepare` -- normalise, build the channel graph, score channels;
* :class:`ChannelGraph` / :class:`PrunePlan` -- the groups and which channels to keep;
* :func:`apply_plan` -- the pruned model for a plan;
* :class:`RuntimeConfig` -- the deployment runtime that :func:`prune` measures on.
"""

from .errors import OnnxPruneError
from .graph import ChannelGraph
from .load import load_model
from .pipeline import prepare, prune
from .rewrite import PrunePlan, apply_plan
from .runtime import RuntimeConfig

__all__ = [
    "ChannelGraph", "OnnxPruneError", "PrunePlan", "RuntimeConfig", "apply_plan", "load_model",
    "prepare", "prune",
]
