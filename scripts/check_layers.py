#!/usr/bin/env python3
"""check_layers.py -- the include rules of README "Development -> Layout", checked on every C file:
emulator/ subsystems may include only headers of common/, their own folder and the subsystems below them
(common < io < store < auth < hub < {mqtt, amqp, http} < emulator/main.c, config.c; the fronts never include
each other), device/ and service/ only common/ and themselves, and no two modules anywhere include each
other (an include circle). Prints each offence as file:line and exits 1 when there is any.
Usage: check_layers.py [ROOT]  (default: the repository this script is in). Test: tests/unit/check_layers_test.sh
"""
import os
import re
import sys

RANK = {"common": 0, "io": 1, "store": 2, "auth": 3, "hub": 4, "mqtt": 5, "amqp": 5, "http": 5, "emulator": 6}
FRONTS = {"mqtt", "amqp", "http"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def layer_of(rel):
    """The layer of a file by its path relative to ROOT, or None when no rule applies (tests, bench)."""
    parts = rel.split("/")
    if parts[0] == "common":
        return "common"
    if parts[0] == "emulator":
        return parts[1] if len(parts) > 2 else "emulator"
    if parts[0] in ("device", "service"):
        return parts[0]
    return None


def allowed(src, dst):
    if src == dst or dst == "common":
        return True
    if src in ("device", "service") or dst in ("device", "service"):
        return False
    if src not in RANK or dst not in RANK:
        return False
    if src in FRONTS and dst in FRONTS:
        return False
    return RANK[dst] < RANK[src]


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
    files = []
    for top in ("common", "emulator", "device", "service"):
        for d, _, names in os.walk(os.path.join(root, top)):
            files += [os.path.relpath(os.path.join(d, n), root) for n in names if n.endswith((".c", ".h"))]
    headers = {}
    for f in files:
        if f.endswith(".h"):
            headers.setdefault(os.path.basename(f), []).append(f)
    offences = []
    edges = {}
    for f in sorted(files):
        src = layer_of(f)
        with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                cands = headers.get(os.path.basename(m.group(1)), [])
                if not cands:
                    continue  # a system or generated header
                # The compiler finds the header in the including file's own folder first.
                same = [c for c in cands if os.path.dirname(c) == os.path.dirname(f)]
                target = same[0] if same else cands[0]
                dst = layer_of(target)
                if not allowed(src, dst):
                    offences.append(f"{f}:{lineno}: {src} must not include {target} ({dst})")
                mod_src, mod_dst = os.path.splitext(f)[0], os.path.splitext(target)[0]
                if mod_src != mod_dst:
                    edges.setdefault(mod_src, {})[mod_dst] = f"{f}:{lineno}"
    for a, outs in sorted(edges.items()):
        for b, where in sorted(outs.items()):
            if a < b and a in edges.get(b, {}):
                offences.append(f"{where}: include circle: {a} and {b} include each other ({edges[b][a]})")
    for o in offences:
        print(o)
    if offences:
        print("check_layers: includes break the layering (README \"Development -> Layout\")")
        return 1
    print(f"check_layers: {len(files)} files follow the layering")
    return 0


if __name__ == "__main__":
    sys.exit(main())
