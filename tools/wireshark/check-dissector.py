#!/usr/bin/env python3
"""Check what tools/wireshark/taphold.lua decodes against what taphold really did.

    check-dissector.py --lua taphold.lua --key HEX --full-raw DIR --digest-framed DIR \
                       --crafted PCAP --expect TSV

Standard library only; tshark does the decoding. scripts/test-dissector.sh makes the
inputs: two replays of test-pcaps/mixed.pcap through the real binary (one with the
shipped config: full backup frames, raw delivery; one with release.content: digest and
destination.framing: taphold) and the small capture of tools/wireshark/craft-pdus.py
(the PDUs the replays do not produce, and one wrong PDU of each kind). Each decoded
field is compared with the run's own record of it: events.csv (seq, rx, launch and
release times per message), summary.json (the run's stream and epoch, the counters),
and, for the crafted capture, the values the crafting script wrote.

Prints every mismatch and exits 1 if there is any.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

FAILURES = []
CHECKS = [0]


def check(ok, what):
    CHECKS[0] += 1
    if not ok:
        FAILURES.append(what)
    return ok


def tshark(lua, pcap, fields, prefs=(), filt=None):
    """One dict per frame (every frame, or those matching `filt`)."""
    cmd = ["tshark", "-n", "-X", f"lua_script:{lua}", "-r", pcap, "-T", "fields",
           "-E", "separator=/t", "-E", "occurrence=f"]
    for p in prefs:
        cmd += ["-o", p]
    if filt:
        cmd += ["-Y", filt]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"check-dissector: tshark failed ({' '.join(cmd)}):\n{out.stderr}")
    # A Lua error does not fail tshark: it shows as a message on stderr.
    lua_errors = [l for l in out.stderr.splitlines() if "Lua" in l or "lua" in l]
    check(not lua_errors, f"{pcap}: Lua errors: {lua_errors[:3]}")
    rows = []
    for line in out.stdout.splitlines():
        vals = line.split("\t")
        vals += [""] * (len(fields) - len(vals))
        rows.append(dict(zip(fields, vals)))
    return rows


def pdml(lua, pcap, prefs=()):
    """Per frame, {field name: [shown values]} of everything tshark decoded."""
    cmd = ["tshark", "-n", "-X", f"lua_script:{lua}", "-r", pcap, "-T", "pdml"]
    for p in prefs:
        cmd += ["-o", p]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"check-dissector: tshark failed:\n{out.stderr}")
    frames = []
    for packet in ET.fromstring(out.stdout).iter("packet"):
        names = {}
        for field in packet.iter():
            n = field.get("name")
            if n:
                names.setdefault(n, []).append(field.get("show", ""))
        frames.append(names)
    return frames


def events(run):
    with open(os.path.join(run, "events.csv")) as f:
        return {int(r["seq"]): r for r in csv.DictReader(f)}


def summary(run):
    with open(os.path.join(run, "summary.json")) as f:
        return json.load(f)


PDU = ["frame.number", "taphold.magic", "taphold.version", "taphold.type", "taphold.flags",
       "taphold.flags.retransmit", "taphold.flags.unprotected", "taphold.link",
       "taphold.content_mode", "taphold.stream", "taphold.body_len", "taphold.epoch",
       "taphold.seq", "taphold.timestamp_ns", "taphold.watermark", "taphold.digest.status",
       "_ws.expert.message"]
BACKUP = PDU + ["taphold.backup.src_ip", "taphold.backup.src_port", "taphold.backup.payload_len",
                "taphold.backup.payload", "taphold.backup.payload_digest",
                "taphold.heartbeat.echo_seq", "_ws.col.Info"]
CONFIRM = PDU + ["udp.srcport", "taphold.confirm.payload_len", "taphold.confirm.echo", "arp.opcode"]
DELIVERY = ["frame.number", "udp.srcport", "udp.dstport", "udp.length", "taphold.type",
            "taphold_delivery.magic", "taphold_delivery.version", "taphold_delivery.header_len",
            "taphold_delivery.flags", "taphold_delivery.src_port", "taphold_delivery.stream",
            "taphold_delivery.src_ip", "taphold_delivery.epoch", "taphold_delivery.seq",
            "taphold_delivery.release_ns", "taphold_delivery.payload_len", "data.data"]


def check_run(lua, key, run, content, framing):
    """One replay: backup.pcap, source.pcap, destination.pcap against events.csv and summary.json."""
    name = os.path.basename(run)
    ev = events(run)
    s = summary(run)
    stream, epoch = str(s["run"]["stream"]), str(s["run"]["epoch"])
    keypref = [f"taphold.digest_key:{key}"]
    check(len(ev) > 0 and s["messages"]["accepted"] == len(ev), f"{name}: events.csv has {len(ev)} messages")

    # backup.pcap: backup frames and our heartbeats, as they reached the backup node.
    rows = tshark(lua, os.path.join(run, "backup.pcap"), BACKUP, keypref)
    check(len(rows) == s["tap_model"]["sink_frames"],
          f"{name}: backup.pcap has {len(rows)} frames, the sink got {s['tap_model']['sink_frames']}")
    backups = [r for r in rows if r["taphold.type"] == "1"]
    heartbeats = [r for r in rows if r["taphold.type"] == "2"]
    check(len(backups) + len(heartbeats) == len(rows),
          f"{name}: backup.pcap frames not decoded as backup frame or heartbeat: "
          f"{[r['frame.number'] for r in rows if r['taphold.type'] not in ('1', '2')][:5]}")
    first = [r for r in backups if r["taphold.flags.retransmit"] == "0"]
    seqs = [int(r["taphold.seq"]) for r in first]
    check(sorted(seqs) == sorted(ev), f"{name}: backup frame seqs {seqs[:5]}... are not events.csv's {sorted(ev)[:5]}...")
    check(len(set(seqs)) == len(seqs), f"{name}: a seq launched twice without RETRANSMIT")
    check(len(heartbeats) == s["ingress"]["heartbeats_sent"],
          f"{name}: {len(heartbeats)} heartbeats decoded, summary says {s['ingress']['heartbeats_sent']} sent")
    by_seq = {}
    for r in rows:
        where = f"{name}: backup.pcap frame {r['frame.number']}"
        check(r["taphold.magic"] == "0x5448" and r["taphold.version"] == "4", f"{where}: magic/version {r['taphold.magic']} {r['taphold.version']}")
        check((r["taphold.stream"], r["taphold.epoch"]) == (stream, epoch),
              f"{where}: stream/epoch {r['taphold.stream']}/{r['taphold.epoch']}, the run is {stream}/{epoch}")
        check(r["taphold.digest.status"] == "1", f"{where}: digest status {r['taphold.digest.status']!r} under the run's key")
        check(r["_ws.expert.message"] in ("", "Re-launch (RETRANSMIT)"), f"{where}: expert info {r['_ws.expert.message']!r}")
        if r["taphold.type"] == "2":
            check(r["taphold.link"] == "0" and r["taphold.body_len"] == "16", f"{where}: heartbeat link {r['taphold.link']} body {r['taphold.body_len']}")
            continue
        seq = int(r["taphold.seq"])
        e = ev.get(seq)
        if not check(e is not None, f"{where}: seq {seq} is not in events.csv"):
            continue
        by_seq.setdefault(seq, r)
        check(r["taphold.link"] == "0", f"{where}: a backup frame's link is {r['taphold.link']}, not the link it was launched on (0)")
        check(r["_ws.col.Info"].startswith(f"Backup frame seq={seq} stream={stream} epoch={epoch}"), f"{where}: Info column {r['_ws.col.Info']!r}")
        ts = int(r["taphold.timestamp_ns"])
        check(int(e["rx_ns"]) <= ts <= int(e["backup_tx_ns"]),
              f"{where}: seq {seq} timestamp {ts} not between its rx_ns {e['rx_ns']} and backup_tx_ns {e['backup_tx_ns']}")
        check(int(r["taphold.watermark"]) < seq, f"{where}: watermark {r['taphold.watermark']} is not below seq {seq}")
        plen = int(r["taphold.backup.payload_len"])
        if content == "full":
            check(r["taphold.content_mode"] == "0", f"{where}: content mode {r['taphold.content_mode']}, want 0 (full)")
            check(int(r["taphold.body_len"]) == 8 + plen and len(r["taphold.backup.payload"]) == 2 * plen,
                  f"{where}: body {r['taphold.body_len']}, payload_len {plen}, payload {len(r['taphold.backup.payload']) // 2} bytes")
        else:
            check(r["taphold.content_mode"] == "1" and r["taphold.body_len"] == "16" and r["taphold.backup.payload_digest"] != "",
                  f"{where}: digest-only frame decoded as mode {r['taphold.content_mode']} body {r['taphold.body_len']}")

    # source.pcap: a confirmation for every message released, and the ARP replies.
    # On the default ports of the dissector's preferences (config/default.yaml's), the
    # heuristic off: found by port, not by guess.
    byport = ["taphold.heuristic:FALSE"]
    rows = tshark(lua, os.path.join(run, "source.pcap"), CONFIRM, keypref + byport)
    confirms = [r for r in rows if r["taphold.type"] != ""]
    arps = [r for r in rows if r["arp.opcode"] == "2"]
    check(len(confirms) + len(arps) == len(rows), f"{name}: source.pcap frames neither confirmation nor ARP reply")
    check(len(arps) == s["egress"]["arp_replies_sent"], f"{name}: {len(arps)} ARP replies, summary says {s['egress']['arp_replies_sent']}")
    check(len(confirms) == s["messages"]["confirmations_sent"],
          f"{name}: {len(confirms)} confirmations decoded, summary says {s['messages']['confirmations_sent']}")
    released = sorted(q for q, e in ev.items() if e["status"].startswith("released"))
    cseqs = [int(r["taphold.seq"]) for r in confirms]
    check(cseqs == sorted(cseqs) and sorted(cseqs) == released,
          f"{name}: confirmation seqs {cseqs[:5]}... are not the released seqs {released[:5]}... in order")
    for r in confirms:
        where = f"{name}: source.pcap frame {r['frame.number']}"
        seq = int(r["taphold.seq"])
        check(r["taphold.type"] == "4" and r["taphold.body_len"] == "24", f"{where}: type {r['taphold.type']} body {r['taphold.body_len']}")
        check((r["taphold.stream"], r["taphold.epoch"]) == (stream, epoch), f"{where}: stream/epoch {r['taphold.stream']}/{r['taphold.epoch']}")
        check(r["taphold.digest.status"] == "1", f"{where}: digest status {r['taphold.digest.status']!r}")
        check(r["udp.srcport"] == "9000", f"{where}: from port {r['udp.srcport']}")
        unprotected = ev.get(seq, {}).get("status") == "released_unprotected"
        check(r["taphold.flags.unprotected"] == ("1" if unprotected else "0"), f"{where}: UNPROTECTED {r['taphold.flags.unprotected']}")
        b = by_seq.get(seq)
        if b:
            check(r["taphold.confirm.payload_len"] == b["taphold.backup.payload_len"],
                  f"{where}: seq {seq} confirms {r['taphold.confirm.payload_len']} bytes, its backup frame says {b['taphold.backup.payload_len']}")
            if content == "full":
                n = min(16, int(b["taphold.backup.payload_len"]))
                want = b["taphold.backup.payload"][: 2 * n].ljust(32, "0")
                check(r["taphold.confirm.echo"] == want, f"{where}: echo {r['taphold.confirm.echo']} is not the payload's first 16 bytes {want}")

    # destination.pcap: raw payloads (left alone), or delivery headers.
    rows = tshark(lua, os.path.join(run, "destination.pcap"), DELIVERY, byport)
    check(len(rows) == s["messages"]["released"], f"{name}: destination.pcap has {len(rows)} frames, {s['messages']['released']} released")
    if framing == "raw":
        taken = [r["frame.number"] for r in rows if r["taphold_delivery.magic"] or r["taphold.type"]]
        check(not taken, f"{name}: raw payloads taken for taphold PDUs or delivery headers: frames {taken[:5]}")
        # Released in seq order: the n-th datagram is seq n's payload, as its backup frame carried it.
        for n, r in enumerate(rows, 1):
            b = by_seq.get(released[n - 1]) if n <= len(released) else None
            if b and content == "full":
                check(r["data.data"] == b["taphold.backup.payload"],
                      f"{name}: destination.pcap frame {n} is not seq {released[n - 1]}'s payload")
        return
    dseqs = [int(r["taphold_delivery.seq"] or 0) for r in rows]
    by_release = [q for q, _ in sorted(((q, e) for q, e in ev.items() if e["status"].startswith("released")),
                                       key=lambda qe: (int(qe[1]["release_ns"]), qe[0]))]
    check(dseqs == by_release, f"{name}: delivery seqs {dseqs[:5]}... are not events.csv's in release order {by_release[:5]}...")
    for r in rows:
        where = f"{name}: destination.pcap frame {r['frame.number']}"
        check((r["taphold_delivery.magic"], r["taphold_delivery.version"], r["taphold_delivery.header_len"]) == ("0x5444", "1", "40"),
              f"{where}: magic/version/header length {r['taphold_delivery.magic']} {r['taphold_delivery.version']} {r['taphold_delivery.header_len']}")
        check(r["taphold.type"] == "", f"{where}: a delivery datagram taken for a taphold PDU")
        check((r["taphold_delivery.stream"], r["taphold_delivery.epoch"]) == (stream, epoch),
              f"{where}: stream/epoch {r['taphold_delivery.stream']}/{r['taphold_delivery.epoch']}")
        seq = int(r["taphold_delivery.seq"] or 0)
        e = ev.get(seq)
        if not check(e is not None, f"{where}: seq {seq} not in events.csv"):
            continue
        check(r["taphold_delivery.release_ns"] == e["release_ns"],
              f"{where}: seq {seq} release time {r['taphold_delivery.release_ns']}, events.csv says {e['release_ns']}")
        want_flags = "0x0002" if e["status"] == "released_unprotected" else "0x0000"
        check(r["taphold_delivery.flags"] == want_flags, f"{where}: flags {r['taphold_delivery.flags']}, want {want_flags}")
        check(int(r["udp.length"]) == 8 + 40 + int(r["taphold_delivery.payload_len"] or -1),
              f"{where}: payload length {r['taphold_delivery.payload_len']} in a UDP length of {r['udp.length']}")
        b = by_seq.get(seq)
        if b:
            check((r["taphold_delivery.src_ip"], r["taphold_delivery.src_port"]) == (b["taphold.backup.src_ip"], b["taphold.backup.src_port"]),
                  f"{where}: seq {seq} from {r['taphold_delivery.src_ip']}:{r['taphold_delivery.src_port']}, its backup frame says "
                  f"{b['taphold.backup.src_ip']}:{b['taphold.backup.src_port']}")
            check(r["taphold_delivery.payload_len"] == b["taphold.backup.payload_len"],
                  f"{where}: seq {seq} carries {r['taphold_delivery.payload_len']} bytes, its backup frame says {b['taphold.backup.payload_len']}")


def check_crafted(lua, pcap, expect):
    """The crafted PDUs: every value the crafting script wrote, every expert info it expects."""
    key = "taphold.digest_key:000102030405060708090a0b0c0d0e0f"
    want = []
    with open(expect) as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            want.append(dict(c.split("=", 1) for c in cols[1:]))
    experts = {w["expert"] for w in want if "expert" in w}

    # By port, with the heuristic off: the ports must come from the preferences.
    ports = ["taphold.heuristic:FALSE", "taphold.target_confirm_port:9001", "taphold.node_port:9110"]
    for label, prefs in (("by port", [key] + ports), ("by heuristic", [key])):
        frames = pdml(lua, pcap, prefs)
        check(len(frames) == len(want), f"crafted ({label}): {len(frames)} frames decoded, {len(want)} crafted")
        for n, (got, w) in enumerate(zip(frames, want), 1):
            where = f"crafted ({label}) frame {n}"
            for field, value in w.items():
                if field == "expert":
                    continue
                shown = got.get(field, [])
                if field == "taphold.digest_status":
                    field, value = "taphold.digest.status", {"good": "1", "bad": "0"}[value]
                    shown = got.get(field, [])
                check(value in shown, f"{where}: {field} = {shown}, want {value}")
            # Each wrong PDU raises its expert info, and nothing else raises any of them.
            for x in experts:
                check((x in got) == (w.get("expert") == x), f"{where}: expert info {x} {'missing' if x not in got else 'unexpected'}")
    # Without the ports or the heuristic the UDP PDUs are not found (the ports really come
    # from the preferences), and without a key no digest is judged.
    frames = pdml(lua, pcap, ["taphold.heuristic:FALSE"])
    for n, (got, w) in enumerate(zip(frames, want), 1):
        udp = "udp" in got
        if udp:
            check("taphold" not in got and "taphold_delivery" not in got, f"crafted (no ports) frame {n}: decoded on a port not configured")
        elif "expert" not in w:
            check(got.get("taphold.digest.status") == ["2"], f"crafted (no key) frame {n}: digest status {got.get('taphold.digest.status')}, want 2")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lua", required=True)
    ap.add_argument("--key", required=True, help="the replays' digest_key")
    ap.add_argument("--full-raw", required=True, help="replay with content: full, framing: raw")
    ap.add_argument("--digest-framed", required=True, help="replay with content: digest, framing: taphold")
    ap.add_argument("--crafted", required=True)
    ap.add_argument("--expect", required=True)
    a = ap.parse_args()
    check_run(a.lua, a.key, a.full_raw, "full", "raw")
    check_run(a.lua, a.key, a.digest_framed, "digest", "taphold")
    check_crafted(a.lua, a.crafted, a.expect)
    for f in FAILURES[:40]:
        print(f"  FAIL {f}")
    if len(FAILURES) > 40:
        print(f"  ... and {len(FAILURES) - 40} more")
    print(f"dissector: {CHECKS[0] - len(FAILURES)} passed, {len(FAILURES)} failed")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
