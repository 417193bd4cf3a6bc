"""onnxprune: remove conv channels from ONNX models so that measured latency drops.

The public API is deliberately small:

* :func:`prune` -- the whole job: latency target / speedup / ratio, calibration, recovery;
  returns an :class:`Outcome` (model, typed result, ``to_dict()`` report);
* :class:`Job` / :class:`Target` -- one run as asked (``Job.of(model, **keywords)``, the
  keywords of :func:`prune`), the target in the user's form answering ms and speedup;
* :class:`RuntimeConfig` -- the deployment session measured against (provider, threads, ...);
* :func:`load_model` -- read an ONNX file (one-line errors as :class:`OnnxPruneError`);
* :func:`prepare` -- normalise, build the channel graph, score channels;
* :class:`ChannelGraph` / :class:`PrunePlan` -- the groups and which channels to keep;
* :func:`apply_plan` -- the pruned model for a plan;
* :class:`PruneResult` / :class:`TargetResult` -- what a ratio / latency-targeted run produced.
"""

from .api import prune
from .errors import OnnxPruneError
from .graph import ChannelGraph
from .job import Job, Target
from .load import load_model
from .preparation import prepare
from .results import Outcome, PruneResult, TargetResult
from .rewrite import PrunePlan, apply_plan
from .runtimes import RuntimeConfig

__all__ = [
    "ChannelGraph",
    "Job",
    "OnnxPruneError",
    "Outcome",
    "PrunePlan",
    "PruneResult",
    "RuntimeConfig",
    "Target",
    "TargetResult",
    "apply_plan",
    "load_model",
    "prepare",
    "prune",
]
