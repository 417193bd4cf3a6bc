PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install demo test lint bench photos

install:
	$(PIP) install -q -e .

# The main job on the bundled ImageNet MobileNetV2 (real torchvision weights), ORT CPU, the way a
# user runs it: calibration = a folder of a few hundred distinct photos (Tux Paint's photo stamps),
# test = a folder of photos from another source (GCompris'), both fetched once from Debian
# packages (models/photos.py). Profile the latency staircases and the sensitivity table (cached
# after the first run), search widths for the measured speedup with the runtime and the held-out
# fidelity in the loop (fp32 and int8 searched, --precision auto: the more faithful kept, shown
# beside onnxruntime's own int8 quantizer), recover, verify, write the model and an HTML report; then time it against
# the original and measure top-1/top-5 agreement on the test photos.
DEMO_SPEEDUP ?= 1.2
demo: install
	$(PYTHON) models/photos.py --calib-dir out/photos/calib --test-dir out/photos/test
	$(PYTHON) -m onnxprune models/mobilenet_v2.onnx --speedup $(DEMO_SPEEDUP) --precision auto --calib out/photos/calib --preprocess imagenet -o out/mobilenet_v2.pruned.onnx --report out/report.json --report out/report.html --plot out/tradeoff.png
	$(PYTHON) -m onnxprune bench models/mobilenet_v2.onnx out/mobilenet_v2.pruned.onnx --data out/photos/test --preprocess imagenet
	@echo "report: out/report.html"

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
