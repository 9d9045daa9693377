#!/usr/bin/env python3
"""Instructions per message by lcore role, from a callgrind profile of taphold.

    python3 benches/callgrind_roles.py CALLGRIND.OUT BINARY MESSAGES [--json OUT.json]

The release build inlines every role's `poll` into `taphold::roles::Role::poll`, so
callgrind (which attributes by symbol) cannot tell the roles apart by itself. The profile
must be taken with `--dump-instr=yes --toggle-collect='*Role*poll*'`: this script then sums,
per instruction address inside `Role::poll`, its own cost plus the inclusive cost of every
call made from it, and asks `addr2line -i` which role's inlined `poll` each address belongs
to. MESSAGES (the run's accepted count) turns totals into instructions per message. For
each role it also lists the biggest contributors (callee functions for calls, the innermost
inlined function for own instructions). Standard library and binutils only.
"""

import argparse
import collections
import json
import re
import subprocess
import sys

ROLE_FN = "taphold::roles::Role::poll"
ROLE_RE = re.compile(r"taphold::roles::(\w+)::(\w+)::poll")


def parse(path):
    """Returns {addr: [self_cost, {callee: cost}]} for Role::poll, and the total Ir."""
    names = {"fn": {}}
    costs = collections.defaultdict(lambda: [0, collections.Counter()])
    cur_fn = None
    cfn = None
    pending_call = False
    last = [0, 0]
    total = 0
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c0 = line[0]
            if c0.isdigit() or c0 in "+-*":
                parts = line.split()
                pos = []
                for i, p in enumerate(parts[:2]):
                    if p == "*":
                        v = last[i]
                    elif p[0] in "+-":
                        v = last[i] + int(p, 0)
                    else:
                        v = int(p, 0)
                    pos.append(v)
                last = pos
                cost = int(parts[2]) if len(parts) > 2 else 0
                if pending_call:
                    if cur_fn == ROLE_FN:
                        costs[pos[0]][1][cfn] += cost
                    pending_call = False
                else:
                    total += cost
                    if cur_fn == ROLE_FN:
                        costs[pos[0]][0] += cost
                continue
            key, _, val = line.partition("=")
            if key in ("fn", "cfn"):
                m = re.match(r"\((\d+)\)(?: (.*))?", val)
                if m:
                    if m.group(2) is not None:
                        names["fn"][m.group(1)] = m.group(2)
                    name = names["fn"].get(m.group(1), val)
                else:
                    name = val
                if key == "fn":
                    cur_fn = name
                else:
                    cfn = name
            elif key == "calls":
                pending_call = True
            elif line.startswith("summary:"):
                pass
    return costs, total


def inline_chains(binary, addrs):
    """addr -> list of function names, innermost first (addr2line -i)."""
    if not addrs:
        return {}
    inp = "\n".join("0x%x" % a for a in addrs) + "\n"
    # A sentinel address after each query marks where one address's chain ends.
    out = subprocess.run(
        ["addr2line", "-i", "-f", "-C", "-a", "-e", binary],
        input=inp, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    chains, cur = {}, None
    i = 0
    while i < len(out):
        ln = out[i]
        if ln.startswith("0x") and re.fullmatch(r"0x[0-9a-f]+", ln):
            cur = int(ln, 16)
            chains[cur] = []
            i += 1
            continue
        chains[cur].append(ln)
        i += 2  # function line, then file:line
    return chains


def role_of(chain):
    for fn in chain:
        m = ROLE_RE.search(fn)
        if m:
            return m.group(1)
    return "dispatch"


def short(name):
    name = re.sub(r"<[^<>]*>", "", name)
    name = re.sub(r"<[^<>]*>", "", name)
    return name.split(" [")[0][:70]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("profile")
    ap.add_argument("binary")
    ap.add_argument("messages", type=int)
    ap.add_argument("--json")
    a = ap.parse_args()
    costs, total = parse(a.profile)
    if not costs:
        sys.exit("no cost inside %s: was the profile taken with --dump-instr=yes "
                 "--toggle-collect='*Role*poll*'?" % ROLE_FN)
    chains = inline_chains(a.binary, sorted(costs))
    roles = collections.defaultdict(lambda: {"ir": 0, "parts": collections.Counter()})
    for addr, (own, calls) in costs.items():
        chain = chains.get(addr, [])
        r = roles[role_of(chain)]
        r["ir"] += own + sum(calls.values())
        if own:
            r["parts"]["(own) " + short(chain[0] if chain else "?")] += own
        for callee, c in calls.items():
            r["parts"][short(callee)] += c
    n = max(a.messages, 1)
    result = {"messages": a.messages, "total_ir": sum(r["ir"] for r in roles.values()),
              "roles": {}}
    order = ["ingress", "tap_model", "tap_rx", "egress", "link_rx", "dispatch"]
    for name in sorted(roles, key=lambda k: order.index(k) if k in order else 99):
        r = roles[name]
        result["roles"][name] = {
            "ir": r["ir"],
            "ir_per_message": round(r["ir"] / n, 1),
            "top": [[k, round(v / n, 1)] for k, v in r["parts"].most_common(8)],
        }
    result["ir_per_message"] = round(result["total_ir"] / n, 1)
    print("%-10s %14s %10s" % ("role", "Ir", "Ir/msg"))
    for name, r in result["roles"].items():
        print("%-10s %14d %10.1f" % (name, r["ir"], r["ir_per_message"]))
        for k, v in r["top"]:
            print("    %8.1f  %s" % (v, k))
    print("%-10s %14d %10.1f" % ("total", result["total_ir"], result["ir_per_message"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
