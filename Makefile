PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install demo test lint bench

install:
	$(PIP) install -q -e .

# The main job on the bundled ImageNet MobileNetV2 (real torchvision weights), ORT CPU:
# profile the latency staircases (~2 min the first time, cached after), search widths for a
# 1.3x measured speedup with the runtime in the loop, verify, write, report.
demo: install
	mkdir -p out
	$(PYTHON) -m onnxprune analyze models/mobilenet_v2.onnx | tail -n 1
	$(PYTHON) -m onnxprune models/mobilenet_v2.onnx --speedup 1.3 -o out/mobilenet_v2.pruned.onnx --report out/report.json
	$(PYTHON) -m onnxprune bench models/mobilenet_v2.onnx out/mobilenet_v2.pruned.onnx

# openvino and ray are optional extras; installing them here runs their tests too (they skip
# cleanly where a package is absent)
test:
	$(PIP) install -q -e '.[openvino,ray]' "pytest>=7"
	$(PYTHON) -m pytest

lint:
	$(PYTHON) -m ruff check onnxprune tests models benchmarks cli.py
