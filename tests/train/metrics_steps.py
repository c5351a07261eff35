#!/usr/bin/env python3
"""tests/train/metrics_steps.py METRICS_JSONL: one "step loss grad_norm" line per optimizer step of a
run's metrics.jsonl, the floats in repr (every bit), for the shell tests that compare runs
(tp.sh, tp_nodes.sh, bf16.sh)."""
import json
import sys

for line in open(sys.argv[1]):
    d = json.loads(line)
    if "step" in d and "loss" in d and "grad_norm" in d:
        print(d["step"], repr(d["loss"]), repr(d["grad_norm"]))
