#!/usr/bin/env bash
# The command line's answers, for one checkout: cli_cases.sh REPO OUT
#   34 commands (every command's refusals, bench with data and --json, analyze --json, a
#   frontier run); each one's stdout, stderr and exit status go to OUT/N.out, OUT/N.err.
# Compare two checkouts' answers with their folders, digits and spacing masked (timings and the
# folder's name differ run to run):
#   for f in A/*.out A/*.err; do diff -q <(sed -E "s#$A#OUT#g; s/[0-9]+\.[0-9]+/N/g; s/ +/ /g" $f) \
#       <(sed -E "s#$B#OUT#g; s/[0-9]+\.[0-9]+/N/g; s/ +/ /g" $B/${f##*/}); done
set -u
REPO=$(cd "$1" && pwd); OUT=$2; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd); cd "$REPO"
export ONNXPRUNE_CACHE=$OUT/cache
W=$OUT/work; rm -rf "$W"; mkdir -p "$W"
python -c "import numpy as np; np.savez('$W/c.npz', input=np.random.default_rng(0).random((64, 1, 28, 28), np.float32))"
python -m onnxprune models/mnist_cnn.onnx --ratio 0.3 --no-latency -o "$W/small.onnx" > /dev/null 2>&1
M=models/mnist_cnn.onnx; X=$W/x.onnx
n=0
while IFS= read -r line; do
  n=$((n+1)); rm -f "$X"
  eval "python -m onnxprune $line" > "$OUT/$n.out" 2> "$OUT/$n.err" < /dev/null; echo "rc=$?" >> "$OUT/$n.err"
done <<CASES
$M --ratio 0.3 -o $X
$M --ratio 0.3 -o $X --no-latency --calib $W/c.npz --recover bias
$M --ratio 0.3 -o $X --no-latency --calib $W/c.npz --report $W/r.json
nonexistent.onnx --ratio 0.3 -o $X
$M --speedup 1.3 --ratio 0.3 -o $X
nonexistent.onnx --speedup 1.3 --ratio 0.3 -o $X
$M -o $X
$M --ratio 1.3 -o $X
$M --speedup -1 -o $X
$M --target-ms 0 -o $X
$M --ratio 0.3 -o $W/no/such/dir/x.onnx
$M --ratio 0.3 -o $M
$M --ratio 0.3 -o $X --recover foo
$M --ratio 0.3 -o $X --shape input:1xfoo
$M --max-drop 0.1 -o $X
$M --speedup 1.2 --stages 0 -o $X
$M --ratio 0.3 --val $W/c.npz -o $X
$M --ratio 0.3 --importance activation -o $X
$M --ratio 0.3 --calib /nonexistent.npz -o $X
$M --ratio 0.3 --threads 0 -o $X
frontier $M --speedups 0.5
frontier $M --speedups 1.2 --recover zzz
bench $M --rounds 2
profile $M --plot-groups
analyze $M
bench $M $W/small.onnx --rounds 5 --data $W/c.npz --json
bench $M --rounds 5 --json
bench $M $W/small.onnx --rounds 5 --data $W/c.npz
bench $M --rounds 5 --shape input:1xfoo
bench nonexistent.onnx --rounds 5
frontier $M --speedups 1.2 -o $W/frontier
frontier $M --speedups 1.2,x
profile $M --group 999
analyze $M --json
CASES
echo "$n cases in $OUT"
