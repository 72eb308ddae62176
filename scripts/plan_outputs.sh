#!/usr/bin/env bash
# The `variant plan` lines a refactor must keep (issue 17): run in a tree, diff against another.
#   (cd OLD && PYTHONPATH=src bash NEW/scripts/plan_outputs.sh) > before.txt; bash scripts/plan_outputs.sh > after.txt
set -u
run() { echo "### $*"; python -m variant "$@" 2>&1; echo "rc=$?"; }
run plan
run plan --model builtin
run plan --depth 16 --plans full d8 d8+cfgstop8+prune0.5@8 full+kv1,2 full+guide=d2 full+autoguide=d2 d4+kv0,1
run plan --depth 30 --batch 64 --layers
run plan --depth 30 --batch 64 --max-kv 16GiB
run plan --model builtin --plans full d4 d2 d4+cfgstop4 --batch 8 --dtype fp32
run plan --front docs/reproduction/front/front.json --max-kv 1MiB --allow-other-device
run plan --front docs/reproduction/front/front.json --max-latency 300ms --allow-other-device
run plan --front docs/reproduction/front/front.json --max-memory 1GiB --batch 4
run plan --front docs/reproduction/demo-full/front/front.json --max-kv 4MiB
run plan --depth 16 --profile docs/levers/speed_d16.json --max-latency 5s --batch 2 --dtype fp32 --device cpu
run plan --depth 16 --plans d8+cfgstop9 
