#!/usr/bin/env python3
"""tests/cli/cli_vocab.py PIPETRAIN WORKDIR CASE — issue 20's "one vocabulary of flags" faults.

Each CASE fails against a pipetrain that has the fault (the d0c7f13 binary) and passes now:
  enum      unknown --schedule/--partition/--backend values are refused with the valid names (exit 2)
  ckpt      'ckpt inspect|verify|export nodir' suggests no flag the command has not got
  aliases   old spellings (plan --mem/--costs, simulate --costs, bench --mbs/--batch/--seq/--repeat/
            --new/--prompt) still work, with one deprecation line naming the new one; no --help
            shows an old spelling
  defaults  the M and B defaults 'train --help' prints at each --stages are the ones the run
            resolves (its start-up batch-shape line and the runtime's plan line); --micro-batches M
            alone keeps the default global batch (B = 16 / M, as --help says)
  plan      'train --plan FILE' runs what 'plan --output FILE' wrote; a mismatch is one line, exit 2
"""
import json
import os
import re
import subprocess
import sys

PT, WORK, CASE = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(WORK, exist_ok=True)
failures = []


def run(*args, timeout=120):
    p = subprocess.run([PT, *args], cwd=WORK, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def case_enum():
    for args, names in [(["train", "--schedule", "foo"], ["gpipe", "1f1b", "zb-h1", "zbv"]),
                        (["train", "--stages", "1", "--schedule", "foo"], ["1f1b", "zb-h2"]),
                        (["train", "--partition", "foo"], ["uniform", "params", "time", "memory"]),
                        (["train", "--backend", "foo"], ["cpu", "cuda"]),
                        (["simulate", "--schedule", "foo"], ["gpipe", "1f1b", "zbv"]),
                        (["plan", "--model", "gpt2-tiny", "--gpus", "2", "--schedule", "foo"], ["1f1b", "zbv"]),
                        (["bench", "pipeline", "--schedule", "foo"], ["1f1b", "zbv"])]:
        rc, out, err = run(*args, timeout=60)
        lines = [l for l in err.splitlines() if l.strip()]
        check(rc == 2, f"{' '.join(args)}: exit {rc}, expected 2 (stderr: {err.strip()[:300]})")
        check(len(lines) == 1, f"{' '.join(args)}: {len(lines)} stderr lines, expected one: {err.strip()[:300]}")
        for n in names:
            check(n in err, f"{' '.join(args)}: the error does not list '{n}': {err.strip()[:300]}")
        check("rank" not in err, f"{' '.join(args)}: refused only after ranks started: {err.strip()[:300]}")


def flags_of_help(*cmd):
    rc, out, _ = run(*cmd, "--help", timeout=30)
    check(rc == 0, f"{' '.join(cmd)} --help: exit {rc}")
    return set(re.findall(r"^\s+(--[a-z0-9-]+)", out, re.M)) | {"--help"}


def case_ckpt():
    for sub, extra in [("inspect", []), ("verify", []), ("export", ["--format", "safetensors", "out.st"])]:
        rc, out, err = run("ckpt", sub, "nodir", *extra, timeout=30)
        check(rc != 0, f"ckpt {sub} nodir: exit 0")
        have = flags_of_help("ckpt", sub)
        for flag in re.findall(r"(--[a-z][a-z0-9-]*)", err):
            check(flag in have, f"ckpt {sub} nodir suggests {flag}, which 'ckpt {sub}' has not got: {err.strip()}")
        check("nodir" in err, f"ckpt {sub} nodir: the error does not name the directory: {err.strip()}")


def deprecated(err, old, new):
    lines = [l for l in err.splitlines() if f"--{old} is deprecated" in l]
    return len(lines) == 1 and f"--{new}" in lines[0]


def case_aliases():
    # plan --mem / --mem-limit: same plan, one notice
    rc_new, out_new, err_new = run("plan", "--model", "gpt2-tiny", "--gpus", "2", "--mem-limit", "1G", "--json")
    rc_old, out_old, err_old = run("plan", "--model", "gpt2-tiny", "--gpus", "2", "--mem", "1G", "--json")
    check(rc_new == 0, f"plan --mem-limit: exit {rc_new}: {err_new.strip()}")
    check(rc_old == 0 and out_old == out_new, f"plan --mem: exit {rc_old} or another plan than --mem-limit")
    check(deprecated(err_old, "mem", "mem-limit"), f"plan --mem: no one-line deprecation notice: {err_old.strip()}")
    check("deprecated" not in err_new, "plan --mem-limit prints a deprecation notice")
    # plan --costs / --layer-costs on a cost file profile-layers measures here
    rc, _, err = run("profile-layers", "--model", "gpt2-tiny", "--micro-batch-size", "1", "--seq-len", "8", "--reps",
                     "1", "--threads", "1", "--output", "costs.json")
    check(rc == 0, f"profile-layers: exit {rc}: {err.strip()}")
    base = ["plan", "--model", "gpt2-tiny", "--gpus", "2", "--micro-batch-size", "1", "--seq-len", "8", "--json"]
    rc_new, out_new, err_new = run(*base, "--layer-costs", "costs.json")
    rc_old, out_old, err_old = run(*base, "--costs", "costs.json")
    check(rc_new == 0, f"plan --layer-costs: exit {rc_new}: {err_new.strip()}")
    check(rc_old == 0 and out_old == out_new, "plan --costs: not the plan of --layer-costs")
    check(deprecated(err_old, "costs", "layer-costs"), f"plan --costs: no deprecation notice: {err_old.strip()}")
    # simulate --costs / --action-costs
    with open(os.path.join(WORK, "sim-costs.json"), "w") as f:
        json.dump({"f": [1.0, 2.0], "b": [2.0, 4.0]}, f)
    base = ["simulate", "--schedule", "1f1b", "--stages", "2", "--micro-batches", "4", "--json"]
    rc_new, out_new, err_new = run(*base, "--action-costs", "sim-costs.json")
    rc_old, out_old, err_old = run(*base, "--costs", "sim-costs.json")
    check(rc_new == 0, f"simulate --action-costs: exit {rc_new}: {err_new.strip()}")
    check(rc_old == 0 and out_old == out_new, "simulate --costs: not the result of --action-costs")
    check(deprecated(err_old, "costs", "action-costs"), f"simulate --costs: no deprecation notice: {err_old.strip()}")
    # bench train --batch/--seq and --micro-batch-size/--seq-len: one configuration each
    short = ["bench", "train", "--model", "gpt2-tiny", "--steps", "1", "--warmup", "0", "--threads", "1", "--json"]
    for flags, old in [(["--micro-batch-size", "1", "--seq-len", "8"], None),
                       (["--batch", "1", "--seq", "8"], ("batch", "micro-batch-size"))]:
        rc, out, err = run(*short, *flags)
        rows = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
        check(rc == 0 and len(rows) == 1 and rows[0].get("T") == 8,
              f"bench train {' '.join(flags)}: exit {rc}, rows {rows}: {err.strip()[:300]}")
        if old:
            check(deprecated(err, *old), f"bench train --batch: no deprecation notice: {err.strip()}")
    # every command of the vocabulary: no old spelling in --help, the shared names present
    old_names = {"--mem", "--costs", "--mbs", "--batch", "--seq", "--repeat", "--new", "--prompt"}
    cmds = [["train"], ["plan"], ["simulate"], ["profile-layers"], ["bench", "train"], ["bench", "pipeline"],
            ["bench", "plan"], ["bench", "schedule"], ["bench", "ckpt"], ["bench", "comm"], ["bench", "sample"],
            ["bench", "tokenize"], ["bench", "prepare"]]
    for c in cmds:
        flags = flags_of_help(*c)
        bad = sorted(flags & old_names)
        check(not bad, f"{' '.join(c)} --help still shows {bad}")
    for c, want in [(["train"], ["--mem-limit", "--layer-costs", "--micro-batches", "--micro-batch-size", "--seq-len"]),
                    (["plan"], ["--mem-limit", "--layer-costs", "--micro-batches", "--micro-batch-size", "--seq-len"]),
                    (["bench", "pipeline"], ["--micro-batches", "--micro-batch-size", "--seq-len"]),
                    (["bench", "train"], ["--micro-batch-size", "--seq-len"]),
                    (["profile-layers"], ["--micro-batch-size", "--seq-len"])]:
        flags = flags_of_help(*c)
        for w in want:
            check(w in flags, f"{' '.join(c)} --help has no {w}")


def help_defaults():
    """{'M': {P: value}, 'B': {P: value}, 'M_rule', 'B_rule'} from train --help."""
    rc, out, _ = run("train", "--help", timeout=30)
    res = {}
    for key, flag in [("M", "--micro-batches"), ("B", "--micro-batch-size")]:
        line = next((l for l in out.splitlines() if l.strip().startswith(flag + " ")), "")
        table = {}
        for v, p, q, more in re.findall(r"(\d+) at --stages (\d+)(?: to (\d+))?( or more)?", line):
            hi = int(q) if q else (64 if more else int(p))
            for s in range(int(p), hi + 1):
                table.setdefault(s, int(v))  # the first mention of a stage count is its no-option default
        res[key] = table
        res[key + "_line"] = line
    return res


def run_shape(*args):
    rc, out, err = run("train", "--steps", "1", "--eval-batches", "0", "--no-ckpt", "--threads", "1",
                       "--run-dir", "run-" + "-".join(a.strip("-") for a in args), *args, timeout=240)
    m = re.search(r"batch shape: M=(\d+) micro-batches x B=(\d+) sequences x D=(\d+)", out)
    q = re.search(r"plan: \S+, (\d+) stages x \d+ chunks x (\d+) replicas, schedule \S+, M=(\d+) B=(\d+) T=(\d+)", out)
    check(rc == 0, f"train {' '.join(args)}: exit {rc}: {err.strip()[-400:]}")
    check(m is not None, f"train {' '.join(args)}: no start-up batch-shape line")
    check(q is not None, f"train {' '.join(args)}: no plan line from the runtime")
    if not m or not q:
        return None
    shape = (int(m.group(1)), int(m.group(2)))
    check(shape == (int(q.group(3)), int(q.group(4))),
          f"train {' '.join(args)}: start-up says M,B = {shape} but the run has {q.group(3)},{q.group(4)}")
    return shape, out


def case_defaults():
    h = help_defaults()
    check(len(h["M"]) >= 4 and len(h["B"]) >= 4,
          f"train --help does not give the M/B defaults per --stages: {h['M_line'].strip()} | {h['B_line'].strip()}")
    for P in (1, 2, 3, 4):
        if P not in h["M"] or P not in h["B"]:
            check(False, f"train --help says nothing of the defaults at --stages {P}")
            continue
        r = run_shape("--stages", str(P))
        if r:
            check(r[0] == (h["M"][P], h["B"][P]),
                  f"--stages {P}: --help says M={h['M'][P]} B={h['B'][P]}, the run resolved M,B = {r[0]}")
    # no --stages: the default stage count's
    r = run_shape()
    if r and 2 in h["M"]:
        check(r[0] == (h["M"][2], h["B"][2]), f"no --stages: the run resolved {r[0]}, --help's default is at 2 stages")
    # --micro-batches M alone: --help's rule (B = G / M) and the run agree; the global batch stays
    g = re.search(r"with --micro-batches M given: (\d+) / M", h["B_line"])
    check(g is not None, f"--micro-batch-size's help does not say what --micro-batches M alone makes B: {h['B_line']}")
    if g:
        G = int(g.group(1))
        for P, M in ((1, 8), (4, 8)):
            r = run_shape("--stages", str(P), "--micro-batches", str(M))
            if r:
                check(r[0] == (M, max(1, G // M)), f"--stages {P} --micro-batches {M}: resolved {r[0]}, "
                      f"--help says B = {G} / {M}")
        check(G == h["M"][1] * h["B"][1] if 1 in h["M"] and 1 in h["B"] else False,
              "the global batch of --micro-batches M alone is not the one-process default M x B")


def case_plan():
    rc, out, err = run("plan", "--model", "gpt2-tiny", "--gpus", "2", "--seq-len", "64", "--micro-batches", "4",
                       "--micro-batch-size", "2", "--output", "p.json")
    check(rc == 0, f"plan --output: exit {rc}: {err.strip()}")
    if rc != 0:
        return
    plan = json.load(open(os.path.join(WORK, "p.json")))
    ranges = " | ".join(f"{c['first_layer']}-{c['last_layer']}" for c in plan["chunk_list"])
    rc, out, err = run("train", "--plan", "p.json", "--steps", "1", "--eval-batches", "0", "--no-ckpt", "--threads",
                       "1", "--run-dir", "run-plan", timeout=240)
    check(rc == 0, f"train --plan: exit {rc}: {err.strip()[-400:]}")
    q = re.search(r"plan: (\S+), (\d+) stages x (\d+) chunks x (\d+) replicas, schedule (\S+), M=(\d+) B=(\d+) "
                  r"T=(\d+), layers (.*)", out)
    check(q is not None, "train --plan: no plan line from the runtime")
    if q:
        got = (q.group(1), int(q.group(2)), int(q.group(3)), int(q.group(4)), q.group(5).rstrip(","), int(q.group(6)),
               int(q.group(7)), int(q.group(8)), q.group(9).strip())
        want = ("gpt2-tiny", plan["stages"], plan["chunks"], plan["replicas"], plan["schedule"],
                plan["micro_batches"], plan["micro_batch_size"], plan["seq_len"], ranges)
        check(got == want, f"train --plan ran {got}, the plan says {want}")
    for extra, word in [(["--stages", "4"], "--stages"), (["--model", "llama-tiny"], "llama-tiny"),
                        (["--micro-batches", "8"], "--micro-batches"), (["--layout", "2,4"], "--layout")]:
        rc, out, err = run("train", "--plan", "p.json", "--steps", "1", *extra, timeout=60)
        lines = [l for l in err.splitlines() if l.strip()]
        check(rc == 2 and len(lines) == 1 and word in err and "rank" not in err,
              f"train --plan p.json {' '.join(extra)}: exit {rc}, expected one line naming {word}: {err.strip()}")
    # a plan of another model (more layers) is refused too
    rc, out, err = run("plan", "--model", "gpt2-small", "--gpus", "2", "--seq-len", "64", "--output", "small.json")
    with open(os.path.join(WORK, "small.json")) as f:
        small = json.load(f)
    small.pop("model", None)  # as if written by hand, without the model's name: the layer count decides
    with open(os.path.join(WORK, "small.json"), "w") as f:
        json.dump(small, f)
    rc, out, err = run("train", "--plan", "small.json", "--steps", "1", timeout=60)
    check(rc == 2 and "layers" in err, f"train --plan of another layer count: exit {rc}: {err.strip()}")


{"enum": case_enum, "ckpt": case_ckpt, "aliases": case_aliases, "defaults": case_defaults, "plan": case_plan}[CASE]()
if failures:
    print(f"{len(failures)} failure(s) in {CASE}")
    sys.exit(1)
print(f"{CASE}: ok")
