#!/usr/bin/env bash
# GPU check (issue 17): the GPU-relevant tests and the benchmark's cost section on one GPU,
# figures written to $OUT (default gpu_check.md), about 8 minutes on one GPU.
#   bash tests/gpu_check.sh [OUT]
# Then copy the rows into BENCHMARKS.md, naming the device (printed at the top of OUT).
# UNRUN: written on a machine without a GPU (no GPU machine that runs TensorFlow was lent).
set -euo pipefail
OUT=${1:-gpu_check.md}
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2
python - <<'PY' > "$OUT"
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
if not gpus:
    raise SystemExit("no GPU visible to TensorFlow: nothing to check")
print("# GPU check")
print()
print("- device:", tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name))
print("- tensorflow", tf.__version__)
PY
# the same code on the GPU: hypergradient correctness, supernet second derivatives,
# the search loop, the mirrored / multi-worker equivalence (mirrored over the local GPU(s))
timeout 300 python -m pytest -q -x tests/hypergrad tests/supernet/test_ops.py \
  tests/supernet/test_macro.py tests/test_search.py::test_killed_and_resumed_run_equals_uninterrupted_run \
  tests/test_distribute.py 2>&1 | tail -n 5 | sed 's/^/    /' >> "$OUT"
# cost rows: supernet/static child (float32, mixed_float16, XLA), HVP/grad and CG(10)/grad
timeout 240 python - <<'PY' >> "$OUT"
import tempfile
from tf_enas.benchmarks import hypergrad_cost, supernet_cost
print()
print("## supernet (float32)")
print(supernet_cost.markdown(supernet_cost.measure(tempfile.mkdtemp(), quick=True)))
for extra in ({"mixed_precision": "mixed_float16"}, {"jit_compile": True}):
    print()
    print(f"## supernet ({extra})")
    print(supernet_cost.markdown(supernet_cost.measure(tempfile.mkdtemp(), quick=True, **extra)))
print()
print(hypergrad_cost.markdown(hypergrad_cost.measure(quick=True)))
PY
echo "wrote $OUT"
