"""The typed job (onnxprune.job): a Target answers both forms against a baseline, Job.of maps
the API's keyword names onto the parts, validation keeps its one-line messages and their order,
every command-line option of a job field is declared once with help, and no function of the
package takes more than 10 parameters."""

import ast
import re
from collections import Counter
from pathlib import Path

import pytest
import tiny

from onnxprune import OnnxPruneError, cli, recover, runtimes
from onnxprune.job import (
    KEYWORDS,
    Data,
    Deployment,
    Goal,
    Job,
    Recovery,
    SearchSettings,
    Target,
    option_fields,
)

PACKAGE = Path(__file__).resolve().parents[1] / "onnxprune"
MAX_PARAMS = 10


def test_target_answers_both_forms():
    by_speedup, by_ms = Target(target_speedup=2.0), Target(target_ms=5.0)
    assert by_speedup.form == "speedup" and by_ms.form == "ms"
    assert by_speedup.speedup(10.0) == 2.0 and by_speedup.ms(10.0) == 5.0
    assert by_ms.ms(10.0) == 5.0 and by_ms.speedup(10.0) == 2.0
    assert by_ms.met_by(4.0) and not by_ms.met_by(10.0)
    assert by_speedup.power(10.0, 0.5).speedup(1.0) == pytest.approx(2.0 ** 0.5)
    assert Target(ratio=0.3).form == "ratio" and not Target(ratio=0.3).latency
    assert Target().form == "drop"


def test_job_of_maps_the_keyword_names():
    source = object()
    job = Job.of("m.onnx", speedup=1.3, max_drop=0.1, floor=0.5, exclude=["a"], calib="c.npz",
                 val="v.npz", recovery=("bias",), distill_seconds=3.0, method="evolve", stages=2,
                 cache_path="p.json", config=source, shapes={"x": (1, 3)}, value="importance",
                 importance="l2", outputs=("o.onnx",))
    assert job.model == "m.onnx" and job.target == Target(target_speedup=1.3)
    assert job.goal == Goal(Target(target_speedup=1.3), 0.1, 0.5, ("a",), "importance", "l2")
    assert job.data == Data("c.npz", "v.npz", shapes={"x": (1, 3)})
    assert job.recovery == Recovery(("bias",), 3.0)
    assert job.search == SearchSettings("evolve", 2, "p.json")
    assert job.deployment.config is source and job.outputs == ("o.onnx",)
    defaults = Job.of("m.onnx")
    assert defaults.recovery.steps == recover.STEPS and defaults.deployment.precision == "fp32"
    with pytest.raises(TypeError, match="unknown keyword"):
        Job.of("m.onnx", spedup=1.3)


def test_every_api_keyword_is_a_job_keyword():
    import inspect

    from onnxprune import api

    assert api.PRUNE_KEYWORDS <= set(KEYWORDS)
    assert "config" in api.PRUNE_KEYWORDS and inspect.signature(api.prune).parameters.keys() == {"model", "kw"}


@pytest.mark.parametrize("asked, message", [
    ({"speedup": 1.3, "ratio": 0.3, "floor": 2.0}, "say how much to prune"),
    ({"ratio": 1.0, "shapes": ("x:1xfoo",)}, r"--ratio must be in \[0, 1\), got 1.0"),
    ({"speedup": 1.3, "shapes": ("x:1xfoo",), "recovery": "nope"}, "bad --shape 'x:1xfoo'"),
    ({"speedup": 1.3, "recovery": "nope", "stages": 0}, r"--recover: unknown step\(s\) \['nope'\]"),
    ({"max_drop": 0.1, "stages": 0}, "--max-drop needs calibration data"),
    ({"speedup": 1.3, "stages": 0, "floor": 2.0}, "--stages must be at least 1, got 0"),
    ({"speedup": 1.3, "floor": 2.0}, r"--floor must be in \(0, 1\], got 2.0"),
])
def test_validation_keeps_its_messages_and_their_order(asked, message):
    with pytest.raises(OnnxPruneError, match=message):
        Job.of("no/such/model.onnx", **asked).validate()


def test_ratio_ignores_the_floor_and_parses_what_it_was_given():
    job = Job.of(tiny.conv_chain(), ratio=0.3, floor=2.0, recovery="bias, lsq",
                 shapes=("x:1x3x16x16",)).validate()
    assert job.recovery.steps == ("bias", "lsq") and job.data.shapes == {"x": (1, 3, 16, 16)}


def test_frontier_validation_order():
    with pytest.raises(OnnxPruneError, match="--speedups must be"):
        Job.of("m.onnx", speedups="1.0", floor=0.0).validate_frontier()
    with pytest.raises(OnnxPruneError, match="--floor must be"):
        Job.of("m.onnx", speedups="1.2", floor=0.0, recovery="nope").validate_frontier()


def test_precision_is_fp32_only():
    Job.of("m.onnx", speedup=1.3).validate()
    job = Job.of("m.onnx", speedup=1.3, deployment=Deployment(precision="fp16"))
    with pytest.raises(OnnxPruneError, match="precision must be one of fp32"):
        job.validate()


@pytest.mark.parametrize("asked, message", [
    ({"threads": 0, "fp16": True}, "--threads must be at least 1"),
    ({"fp16": True, "device": "0"}, "--fp16 needs --provider tensorrt or --runtime openvino"),
    ({"device": "GPU"}, "--device is a CUDA/TensorRT device id or an OpenVINO device (CPU, GPU)"),
    ({"ray_resources": ("GPU=1",)}, "--ray-resources and --ray-actors need --ray auto|ADDRESS"),
    ({"ray_address": "auto", "ray_resources": ("GPU=x",)}, "bad --ray-resources GPU=x"),
    ({"ray_address": "auto", "ray_actors": 0}, "--ray-actors must be at least 1"),
    ({"provider_options": ("novalue",)}, "bad --provider-option 'novalue': expected KEY=VALUE"),
])
def test_deployment_validation_messages(asked, message):
    with pytest.raises(OnnxPruneError, match=re.escape(message)):
        Deployment.of(**asked)


def test_deployment_of_defaults_is_ort_cpu():
    deploy = Deployment.of()
    assert deploy.config == runtimes.RuntimeConfig() and deploy.ray_address is None


def _options(command):
    return [p for p in cli.cli.commands[command].params if p.param_type_name == "option"]


def test_every_job_field_option_is_declared_once_with_help():
    for command in ("prune",):
        opts = _options(command)
        for _cls, name, flag, text in option_fields():
            mine = [o for o in opts if flag in o.opts]
            assert len(mine) == 1 and mine[0].name == name and mine[0].help == text and text


def test_every_prune_option_maps_onto_one_job_field():
    """Each option of prune reaches the job under one Job.of keyword (or is the command's own:
    where to write, plots, the deployment's and data's parts), and says what it does."""
    own = {"output", "report_paths", "plot_path", "no_latency", "quiet", "max_memory", "help"}
    deployment = {"runtime_name", "provider", "ep_library", "device", "threads", "opt_level",
                  "provider_options", "fp16", "precision", "ray_address", "ray_resources", "ray_actors",
                  "ray_timeout"}
    data = {"preprocess", "resize", "crop", "mean", "std", "layout", "bgr", "tokenizer"}
    keywords = Counter()
    for opt in _options("prune"):
        assert opt.help, opt.name
        if opt.name in own | deployment | data:
            continue
        keyword = cli._RENAMED.get(opt.name, opt.name)
        assert keyword in KEYWORDS, opt.name
        keywords[KEYWORDS[keyword]] += 1
    assert keywords and max(keywords.values()) == 1


def _widest():
    rows = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs]]
                if names and names[0] in ("self", "cls"):
                    names = names[1:]
                rows.append((len(names), f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}"))
    return sorted(rows, reverse=True)


def test_no_function_takes_more_than_ten_parameters():
    wide = [where for n, where in _widest() if n > MAX_PARAMS]
    assert not wide, f"more than {MAX_PARAMS} parameters: {wide}"
