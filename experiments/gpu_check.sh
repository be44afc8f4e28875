#!/usr/bin/env bash
# Throughput on whatever device JAX sees (a GPU when one is there), in at most ~5 minutes:
# batched-inverse evaluations/s (1 ... MAX_BATCH inputs) and vectorized InverseNUTS draws/s
# (1 ... MAX_CHAINS chains, powers of 4), via experiments/scaling.py.
#
#   experiments/gpu_check.sh [MAX_CHAINS=4096] [MAX_BATCH=1000000] [OUT=experiments/results]
#
# Results: OUT/scaling_<platform>[_<device kind>].{json,png}, scaling_inverse_<...>.csv and
# scaling_chains_<...>.csv; the JSON has the machine record (device, jax version, commit) and
# lists any size skipped for time. PPINV_CHECK_BUDGET_S (default 240) is the time after which
# no new size is started; the whole run is cut at PPINV_CHECK_TIMEOUT_S (default 300).
set -euo pipefail
cd "$(dirname "$0")/.."

max_chains="${1:-4096}"
max_batch="${2:-1000000}"
out="${3:-experiments/results}"
budget="${PPINV_CHECK_BUDGET_S:-240}"
limit="${PPINV_CHECK_TIMEOUT_S:-300}"
python="${PYTHON:-python3}"

# which device: the tag keeps CPU results from ever being mistaken for GPU ones
tag="$("$python" - <<'PY'
import re, jax
d = jax.devices()[0]
kind = re.sub(r"[^a-z0-9]+", "-", d.device_kind.lower()).strip("-")
print(d.platform if d.platform == "cpu" else f"{d.platform}_{kind}")
PY
)"
echo "gpu_check: device ${tag}; up to ${max_chains} chains and ${max_batch} inputs; results in ${out}"
if [[ "${tag}" == cpu* ]]; then
  echo "gpu_check: JAX sees no accelerator; recording CPU figures (suffix _${tag})"
fi

# 200 + 200 iterations per chain count (100 + 100 from 256 chains up, as scaling.py does)
timeout "${limit}" "$python" experiments/scaling.py --max-chains "${max_chains}" --max-batch "${max_batch}" \
  --warmup 200 --samples 200 --repeats 5 --budget-s "${budget}" --suffix "_${tag}" --out "${out}"
