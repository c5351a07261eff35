#!/usr/bin/env python3
"""check-layers.py BUILD_DIR SOURCE_DIR [--json-only] [--verbose] [--allow-missing]

--allow-missing checks what is built and names the objects it skipped (a half-built tree);
--verbose also lists the allowed sideways edges.

Checks the layering of pipetrain (docs/architecture.md) over two graphs of the library:

  * the cross-file reference graph: `nm -P` over every object file of the module targets in
    BUILD_DIR gives each object's defined and undefined global symbols; object A -> object B
    when A uses a symbol B defines. Each object is mapped back to its source file.
  * the include graph: every `#include "..."` of the module sources and of include/pipetrain/
    in SOURCE_DIR. A public header belongs to the module that defines the functions it declares
    (found through the symbol table above), or, for a header whose functions are not built here
    (CUDA, NCCL) or that declares none, to the module HEADER_MODULE names.

and reports
  (a) file cycles: strongly connected components of more than one file in the reference graph;
  (b) module cycles: strongly connected components of more than one module in the graph of both
      kinds of edges;
  (c) upward edges: an include or reference from a module to one on a higher floor (LAYERS).
Edges between two modules on the same floor are listed as "sideways" (allowed unless they make a
module cycle). Exceptions are listed in EXCEPTIONS, each with its reason, and printed.

Prints a short summary, then one JSON line with the counts; exits 1 on any violation that no
exception excuses (or a public header whose module is unknown), 2 on a usage error (objects not
built, nm missing). Standard library only.
"""
import fnmatch
import json
import os
import re
import subprocess
import sys

# Floors, bottom to top. An edge may go down or stay inside its module, never up.
LAYERS = {
    "core": 1,
    "kernels": 2, "schedule": 2, "data": 2,
    "report": 2,    # reads a run directory's files into one page; uses only core
    "models": 3, "comm": 3,
    "partition": 4,
    "train": 5,
    "ckpt": 6,      # above train: a checkpoint saves the optimizer state
    "runtime": 7,
    "cli": 8, "bench": 8,
}

# Source folder (relative to SOURCE_DIR) -> module. The longest matching prefix wins.
# src/core is the folder's old place, kept so the script reads trees from before the move.
MODULE_DIRS = {
    "core/": "core", "src/core/": "core",
    "kernels/": "kernels",
    "schedule/": "schedule",
    "src/data/": "data",
    "models/": "models",
    "comm/": "comm",
    "partition/": "partition",
    "src/train/": "train",
    "src/ckpt/": "ckpt",
    "src/runtime/": "runtime",
    "src/report/": "report",
    "src/cli/": "cli",
    "bench/": "bench",
}

# Public headers whose module cannot be derived from this build's objects: their functions are
# compiled only with the CUDA toolkit, or they declare no function of their own.
HEADER_MODULE = {
    "include/pipetrain/cuda.h": "kernels",   # kernels/cuda/*.cu
    "include/pipetrain/nccl.h": "comm",      # comm/nccl/*.c
    # The shape of a model as plain data and inline arithmetic (no functions to derive it from):
    # read on every floor (data fits it, kernels size the head statistics by it, models builds it).
    "include/pipetrain/model_config.h": "core",
    # The kinds of memory (an enum and its names): the allocator's account (kernels), the planner
    # (partition) and the profile (runtime) speak of the same kinds.
    "include/pipetrain/memkind.h": "core",
}

# Allowed violations: (kind, from-glob, to-glob, reason). kind is "upward", "file-cycle" (from/to:
# any two files of the cycle) or "module-cycle" (from/to: module names). Keep this list short:
# each entry is a debt with a reason, printed on every run.
EXCEPTIONS = [
    ("module-cycle", "bench", "cli",
     "bench/ files are subcommands of the one program (`pipetrain bench NAME`, dispatched by "
     "src/cli/cmd_bench.c) and parse their options with its parser (src/cli/args.c)"),
]

SRC_EXT = (".c", ".cu", ".h", ".cuh")


def die(msg, code=2):
    print("check-layers: " + msg, file=sys.stderr)
    sys.exit(code)


def module_of(rel):
    best = None
    for prefix, mod in MODULE_DIRS.items():
        if rel.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, mod)
    return best[1] if best else None


def object_source(build, src, obj):
    """<build>/<dir>/CMakeFiles/<target>.dir/<rel>.o -> <src>/<dir>/<rel> (CMake writes '..' as '__')."""
    relobj = os.path.relpath(obj, build)
    parts = relobj.split(os.sep)
    if "CMakeFiles" not in parts:
        return None
    i = parts.index("CMakeFiles")
    if i + 1 >= len(parts) or not parts[i + 1].endswith(".dir"):
        return None
    rest = [".." if p == "__" else p for p in parts[i + 2:]]
    if not rest or not rest[-1].endswith(".o"):
        return None
    rest[-1] = rest[-1][:-2]
    path = os.path.normpath(os.path.join(src, *parts[:i], *rest))
    if not os.path.isfile(path):
        return None
    return os.path.relpath(path, src)


NINJA_OBJ_RE = re.compile(r"^build (\S+\.o): (?:C|CUDA|CXX)_COMPILER__\S+ (\S+)", re.M)


def object_list(build, src):
    """(object path, source path relative to src) of every compiled object. With Ninja the build
    file names them exactly (no stale objects of removed sources); otherwise walk the tree."""
    ninja = os.path.join(build, "build.ninja")
    out = []
    if os.path.isfile(ninja):
        with open(ninja, errors="replace") as f:
            for obj, source in NINJA_OBJ_RE.findall(f.read()):
                source = os.path.normpath(os.path.join(build, source))
                rel = os.path.relpath(source, src)
                if not rel.startswith(".."):
                    out.append((os.path.join(build, obj), rel))
        return out
    for dirpath, dirnames, filenames in os.walk(build):
        dirnames[:] = [d for d in dirnames if not re.match(r"\d+\.\d+", d)]  # CMakeFiles/3.25.1
        for fn in filenames:
            if fn.endswith(".o"):
                obj = os.path.join(dirpath, fn)
                rel = object_source(build, src, obj)
                if rel is not None:
                    out.append((obj, rel))
    return out


def nm_symbols(obj):
    try:
        out = subprocess.run([os.environ.get("NM") or "nm", "-P", "-g", obj], check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        die("nm not found; install binutils")
    except subprocess.CalledProcessError as e:
        die("nm %s failed: %s" % (obj, e.stderr.strip()))
    defined, undefined = set(), set()
    for line in out.splitlines():
        f = line.split()
        if len(f) < 2:
            continue
        name, typ = f[0], f[1]
        if typ in ("U", "w", "v"):
            undefined.add(name)
        else:
            defined.add(name)
    return defined, undefined


def scc(nodes, edges):
    """Tarjan, iterative. edges: node -> set(node). Returns the components of more than one node."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                elif nxt in on:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def excused(kind, a, b):
    for k, fa, fb, why in EXCEPTIONS:
        if k == kind and fnmatch.fnmatch(a, fa) and fnmatch.fnmatch(b, fb):
            return why
    return None


INCLUDE_RE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)
DECL_RE = re.compile(r'\b([A-Za-z_]\w*)\s*\(')


def strip_comments(text):
    return re.sub(r"/\*.*?\*/|//[^\n]*", " ", text, flags=re.S)


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    flags = {a for a in argv if a.startswith("--")}
    if len(args) != 2 or flags - {"--json-only", "--verbose", "--allow-missing"}:
        die("usage: check-layers.py BUILD_DIR SOURCE_DIR [--json-only] [--verbose] [--allow-missing]")
    build, src = (os.path.abspath(a) for a in args)
    quiet, verbose = "--json-only" in flags, "--verbose" in flags
    allow_missing = "--allow-missing" in flags

    # ---- objects -> source files, symbols ----
    objs = {}   # source rel path -> (defined, undefined)
    missing = []
    for obj, rel in object_list(build, src):
        if module_of(rel) is None or os.path.relpath(obj, build).startswith("tests" + os.sep):
            continue   # tests (also a test's own copy of a module source), the shared library's unit
        if not os.path.isfile(obj):
            missing.append(os.path.relpath(obj, build))
            continue
        d, u = nm_symbols(obj)
        if rel in objs:   # the same source in two targets: one file
            d |= objs[rel][0]
            u |= objs[rel][1]
        objs[rel] = (d, u)
    if missing and not allow_missing:
        die("%d object files are not built (%s ...); build the tree first: cmake --build %s"
            % (len(missing), missing[0], build))
    if not objs:
        die("no object files of the module libraries under %s; build it first" % build)

    definer = {}
    for rel, (d, _) in objs.items():
        for s in d:
            definer.setdefault(s, set()).add(rel)

    # file -> file reference edges, with the symbols
    calls = {}
    for rel, (_, u) in objs.items():
        for s in u:
            for target in definer.get(s, ()):
                if target != rel:
                    calls.setdefault((rel, target), set()).add(s)

    # ---- sources and headers -> includes ----
    files = []
    for dirpath, dirnames, filenames in os.walk(src):
        reld = os.path.relpath(dirpath, src)
        if reld == ".":
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "build"))]
        for fn in filenames:
            if fn.endswith(SRC_EXT):
                rel = os.path.normpath(os.path.join(reld, fn))
                if module_of(rel) or rel.startswith("include/pipetrain/"):
                    files.append(rel)

    header_mod, header_note, unassigned = {}, {}, []
    for rel in files:
        if not rel.startswith("include/pipetrain/"):
            continue
        with open(os.path.join(src, rel), errors="replace") as f:
            names = set(DECL_RE.findall(strip_comments(f.read())))
        votes = {}
        for n in names:
            for definer_file in definer.get(n, ()):
                m = module_of(definer_file)
                votes[m] = votes.get(m, 0) + 1
        if votes:
            best = max(sorted(votes), key=lambda m: votes[m])
            header_mod[rel] = best
            if len(votes) > 1:
                header_note[rel] = "declares functions of %s" % ", ".join(
                    "%s (%d)" % (m, votes[m]) for m in sorted(votes))
        elif rel in HEADER_MODULE:
            header_mod[rel] = HEADER_MODULE[rel]
        else:
            unassigned.append(rel)

    def file_module(rel):
        return header_mod.get(rel) or module_of(rel)

    includes = {}
    for rel in files:
        with open(os.path.join(src, rel), errors="replace") as f:
            text = f.read()
        for inc in INCLUDE_RE.findall(text):
            local = os.path.normpath(os.path.join(os.path.dirname(rel), inc))
            if os.path.isfile(os.path.join(src, local)):
                target = local
            elif os.path.isfile(os.path.join(src, "include", inc)):
                target = os.path.normpath(os.path.join("include", inc))
            else:
                continue   # generated or system header named with quotes
            if target != rel and file_module(target) and file_module(rel):
                includes.setdefault((rel, target), set()).add(inc)

    # ---- (a) file cycles over references ----
    fedges = {}
    for (a, b) in calls:
        fedges.setdefault(a, set()).add(b)
    file_cycles, file_cycles_excused = [], []
    for comp in scc(set(objs), fedges):
        why = None
        for a in comp:
            for b in comp:
                if a != b and why is None:
                    why = excused("file-cycle", a, b)
        (file_cycles_excused if why else file_cycles).append((comp, why))

    def cycle_symbols(comp):
        cs = set(comp)
        return ["%s -> %s (%s)" % (a, b, ", ".join(sorted(s)[:4]) + (" ..." if len(s) > 4 else ""))
                for (a, b), s in sorted(calls.items()) if a in cs and b in cs]

    # ---- module edges, (b) module cycles and (c) upward edges ----
    medges = {}      # (ma, mb) -> list of "file -> file (what)"
    for (a, b), syms in calls.items():
        ma, mb = file_module(a), file_module(b)
        if ma != mb:
            medges.setdefault((ma, mb), []).append(("call", a, b, sorted(syms)))
    for (a, b), incs in includes.items():
        ma, mb = file_module(a), file_module(b)
        if ma != mb:
            medges.setdefault((ma, mb), []).append(("include", a, b, sorted(incs)))
    mgraph = {}
    for (ma, mb) in medges:
        mgraph.setdefault(ma, set()).add(mb)
    module_cycles, module_cycles_excused = [], []
    for comp in scc(set(LAYERS), mgraph):
        why = None
        for a in comp:
            for b in comp:
                if a != b and why is None:
                    why = excused("module-cycle", a, b)
        (module_cycles_excused if why else module_cycles).append((comp, why))

    upward, upward_excused, sideways = [], [], []
    for (ma, mb), lst in sorted(medges.items()):
        for kind, a, b, what in lst:
            item = (ma, mb, kind, a, b, what)
            if LAYERS[ma] < LAYERS[mb]:
                why = excused("upward", a, b)
                (upward_excused if why else upward).append(item + (why,))
            elif LAYERS[ma] == LAYERS[mb]:
                sideways.append(item)

    # ---- report ----
    def edge_line(it):
        ma, mb, kind, a, b, what = it[:6]
        shown = ", ".join(what[:4]) + (" ..." if len(what) > 4 else "")
        return "  %s -> %s: %s %s -> %s (%s)" % (ma, mb, kind, a, b, shown)

    if not quiet:
        if missing:
            print("check-layers: %d objects not built, skipped: %s" % (len(missing), " ".join(missing)))
        n_edges = len(calls)
        print("check-layers: %d objects, %d reference edges between files, %d include edges; "
              "%d module edges" % (len(objs), n_edges, len(includes), len(medges)))
        print("file cycles (references): %d" % len(file_cycles))
        for comp, _ in file_cycles:
            print("  cycle of %d files: %s" % (len(comp), " ".join(comp)))
            for line in cycle_symbols(comp):
                print("    " + line)
        print("module cycles: %d" % len(module_cycles))
        for comp, _ in module_cycles:
            print("  cycle: %s" % " ".join(comp))
            cs = set(comp)
            for (ma, mb), lst in sorted(medges.items()):
                if ma in cs and mb in cs:
                    for kind, a, b, what in lst[:3]:
                        print("    %s -> %s: %s %s -> %s (%s)" % (ma, mb, kind, a, b, ", ".join(what[:3])))
                    if len(lst) > 3:
                        print("    %s -> %s: ... %d more" % (ma, mb, len(lst) - 3))
        for h in unassigned:
            print("unassigned header: %s: no function it declares is defined in this build and "
                  "HEADER_MODULE does not name its module; edges to it are not checked" % h)
        print("upward edges: %d" % len(upward))
        for it in upward:
            print(edge_line(it))
        if verbose:
            print("sideways edges (same floor, allowed): %d" % len(sideways))
            for it in sideways:
                print(edge_line(it))
            for h, note in sorted(header_note.items()):
                print("  note: %s (%s) %s" % (h, header_mod[h], note))
        if EXCEPTIONS:
            print("exceptions (%d):" % len(EXCEPTIONS))
            for k, fa, fb, why in EXCEPTIONS:
                print("  %s %s -> %s: %s" % (k, fa, fb, why))
            for comp, why in file_cycles_excused:
                print("  excused file cycle: %s (%s)" % (" ".join(comp), why))
            for comp, why in module_cycles_excused:
                print("  excused module cycle: %s (%s)" % (" ".join(comp), why))
            for it in upward_excused:
                print("  excused" + edge_line(it)[1:] + " (%s)" % it[6])
    counts = {
        "file_cycles": len(file_cycles),
        "files_in_cycles": sum(len(c) for c, _ in file_cycles),
        "module_cycles": len(module_cycles),
        "upward_edges": len(upward),
        "upward_module_pairs": len({(it[0], it[1]) for it in upward}),
        "sideways_edges": len(sideways),
        "excused": len(file_cycles_excused) + len(module_cycles_excused) + len(upward_excused),
        "objects": len(objs),
        "objects_missing": len(missing),
        "unassigned_headers": len(unassigned),
    }
    print(json.dumps(counts, sort_keys=True))
    bad = counts["file_cycles"] + counts["module_cycles"] + counts["upward_edges"] + len(unassigned)
    if not quiet:
        print("check-layers: %s" % ("OK" if bad == 0 else "FAILED (see docs/architecture.md)"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
