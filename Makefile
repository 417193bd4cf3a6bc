PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install demo test lint bench

install:
	$(PIP) install -q -e .

# Prune the bundled ImageNet MobileNetV2 (real torchvision weights) on CPU.
demo: install
	mkdir -p out
	$(PYTHON) -m onnxprune analyze models/mobilenet_v2.onnx | tail -n 1
	$(PYTHON) -m onnxprune models/mobilenet_v2.onnx --ratio 0.3 -o out/mobilenet_v2.pruned.onnx

test:
	$(PIP) install -q -e . "pytest>=7"
	$(PYTHON) -m pytest

lint:
	$(PYTHON) -m ruff check onnxprune tests models benchmarks cli.py
