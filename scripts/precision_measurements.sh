#!/usr/bin/env bash
# Issue 21's CPU measurements of the precision levers (docs/BENCHMARKS.md §9), one after another on
# an otherwise idle machine (never beside another timed job). Writes docs/precision/*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src
# 1. The built-in model, batch 16: plain vs w8, kv8, both, on full and d4, eager.
python benchmarks/precision_speed.py --models builtin --plans full d4 --modes eager \
    --batch 16 --threads 2 --repeats 5 --json docs/precision/speed_builtin_eager.json
# 2. The layer check of the issue: a 1024->4096->1024 MLP at batch 8, fp32 vs int8 weight-only,
#    eager and compiled.
python benchmarks/precision_speed.py --mlp --modes eager compiled --threads 2 --repeats 5 \
    --json docs/precision/mlp.json
# Not run yet (the session's time ran out; each takes minutes on 2 cores):
#   python benchmarks/precision_speed.py --models builtin --plans full --modes compiled \
#       --batch 16 --threads 2 --repeats 5 --json docs/precision/speed_builtin_compiled.json
#   python benchmarks/precision_speed.py --models random:var-d16 --plans full d8 --modes eager \
#       --batch 1 --threads 2 --warmup 1 --repeats 2 --json docs/precision/speed_d16_eager.json
