#!/usr/bin/env bash
# Outputs that must not change under a refactor, for one checkout: golden.sh REPO OUT
#   analyze --json of seven models, four --ratio runs (no latency in the choice: the written
#   models are deterministic), MobileNetV2's with photos and recovery, and one bad-output line.
# Compare two checkouts with: python benchmarks/golden_compare.py OUT_A OUT_B
set -u
REPO=$(cd "$1" && pwd); OUT=$2; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd); cd "$REPO"
export ONNXPRUNE_CACHE=$OUT/cache PYTHONHASHSEED=0
P="python -m onnxprune"
python models/photos.py --calib-dir "$OUT/photos/calib" --test-dir "$OUT/photos/test" > "$OUT/photos.log" 2>&1
for m in models/mobilenet_v2.onnx models/vit_mnist.onnx models/mnist_cnn.onnx models/zoo/resnet18.onnx \
         models/zoo/shufflenet_v2.onnx models/zoo/transformer.onnx models/zoo/densenet.onnx; do
  b=$(basename "$m" .onnx)
  $P analyze "$m" --json > "$OUT/analyze_$b.json" 2> "$OUT/analyze_$b.err"; echo "analyze $b rc=$?"
done
$P models/mobilenet_v2.onnx --ratio 0.3 --calib "$OUT/photos/calib" --preprocess imagenet --recover bias,lsq,bn \
   -o "$OUT/mnv2_r03.onnx" --report "$OUT/mnv2_r03.json" > "$OUT/mnv2_r03.log" 2>&1; echo "mnv2 ratio rc=$?"
$P models/zoo/resnet18.onnx --ratio 0.25 -o "$OUT/r18_r025.onnx" > "$OUT/r18.log" 2>&1; echo "r18 rc=$?"
$P models/zoo/transformer.onnx --ratio 0.25 -o "$OUT/tr_r025.onnx" > "$OUT/tr.log" 2>&1; echo "tr rc=$?"
$P models/vit_mnist.onnx --ratio 0.3 -o "$OUT/vit_r03.onnx" > "$OUT/vit.log" 2>&1; echo "vit rc=$?"
$P models/mobilenet_v2.onnx --ratio 0.3 -o /dev/null/x.onnx > "$OUT/bad.log" 2>&1; echo "bad rc=$?"
