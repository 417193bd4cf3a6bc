PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install demo test lint bench photos

install:
	$(PIP) install -q -e .

# The main job on the bundled ImageNet MobileNetV2 (real torchvision weights), ORT CPU:
# calibration = 256 crops of 10 photos, test = 108 crops of 9 *other* photos (all offline, from
# the scikit-image / scikit-learn / matplotlib wheels). Profile the latency staircases and the
# sensitivity table (a few minutes the first time, cached after), search widths for the measured
# speedup with the runtime and the held-out fidelity in the loop, recover, verify, write; then
# time it against the original and measure top-1/top-5 agreement on the test photos.
DEMO_SPEEDUP ?= 1.15
demo: install
	$(PIP) install -q -e ".[data]"
	mkdir -p out
	$(PYTHON) models/images.py --calib out/calib.npz --test out/test.npz
	$(PYTHON) -m onnxprune models/mobilenet_v2.onnx --speedup $(DEMO_SPEEDUP) --calib out/calib.npz -o out/mobilenet_v2.pruned.onnx --report out/report.json --plot out/tradeoff.png
	$(PYTHON) -m onnxprune bench models/mobilenet_v2.onnx out/mobilenet_v2.pruned.onnx --data out/test.npz

# openvino and ray are optional extras; installing them here runs their tests too (they skip
# cleanly where a package is absent); torch + transformers + onnxscript export the randomly
# initialised Hugging Face transformers the structure tests prune (both torch exporters)
test:
	$(PIP) install -q -e '.[openvino,ray]' "pytest>=7" "torch==2.13.0" "transformers==5.23.0" "onnxscript==0.7.2"
	$(PYTHON) -m pytest

# calibration / test photo folders from Debian packages (fetched once into ~/.cache/onnxprune-data):
# out/photos/calib = Tux Paint photo stamps, out/photos/test = GCompris photos (models/photos.py)
photos:
	$(PYTHON) models/photos.py --calib-dir out/photos/calib --test-dir out/photos/test

lint:
	$(PYTHON) -m ruff check onnxprune tests models benchmarks cli.py
