#!/usr/bin/env python3
"""SVG CDF of hold times (release_ns - rx_ns) per latency run (figure 6).

    python3 benches/plot.py OUT benches/hold-time-cdf.svg

Reads OUT/lat-*/events.csv (runs marked pending are skipped and named in the caption).
Log-scale x axis (microseconds). Standard library only.
"""

import csv
import glob
import math
import os
import sys

COLORS = {"tap": ["#1f77b4", "#6baed6", "#08306b"], "ack": ["#d62728", "#fc9272", "#67000d"]}


def series(out):
    res, pending = [], []
    for d in sorted(glob.glob(os.path.join(out, "lat-*"))):
        if not os.path.isdir(d):
            continue
        tag = os.path.basename(d)[4:]
        if os.path.exists(os.path.join(d, "pending")):
            pending.append(tag)
            continue
        p = os.path.join(d, "events.csv")
        if not os.path.exists(p):
            continue
        v = []
        with open(p) as f:
            for r in csv.DictReader(f):
                if r["status"] == "released":
                    v.append(max(1, int(r["release_ns"]) - int(r["rx_ns"])) / 1000.0)
        if v:
            v.sort()
            res.append((tag, v))
    return res, pending


def main():
    out, svg = sys.argv[1:3]
    data, pending = series(out)
    W, H, L, R, T, B = 760, 440, 70, 180, 40, 60
    pw, ph = W - L - R, H - T - B
    allv = [x for _, v in data for x in v] or [1.0, 100.0]
    lo = 10 ** math.floor(math.log10(max(min(allv), 0.01)))
    hi = 10 ** math.ceil(math.log10(max(allv)))
    if hi <= lo:
        hi = lo * 10
    X = lambda us: L + pw * (math.log10(max(us, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    Y = lambda q: T + ph * (1 - q)
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (W, H),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="22" font-size="15">taphold hold time (rx to release), CDF</text>' % L]
    dec = lo
    while dec <= hi * 1.0001:
        for m in (1, 2, 5):
            x = dec * m
            if lo <= x <= hi:
                o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>' % (X(x), T, X(x), T + ph))
                o.append('<text x="%.1f" y="%d" text-anchor="middle">%g</text>' % (X(x), T + ph + 16, x))
        dec *= 10
    for q in (0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0):
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>' % (L, Y(q), L + pw, Y(q)))
        o.append('<text x="%d" y="%.1f" text-anchor="end">%g</text>' % (L - 6, Y(q) + 4, q))
    o.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>' % (L, T, pw, ph))
    o.append('<text x="%d" y="%d" text-anchor="middle">hold time (µs, log scale)</text>' % (L + pw / 2, H - 18))
    o.append('<text x="16" y="%d" transform="rotate(-90 16 %d)" text-anchor="middle">fraction of messages</text>' % (T + ph / 2, T + ph / 2))
    used = {"tap": 0, "ack": 0}
    for i, (tag, v) in enumerate(data):
        mode = "ack" if tag.startswith("ack") else "tap"
        col = COLORS[mode][used[mode] % 3]
        used[mode] += 1
        n = len(v)
        step = max(1, n // 600)
        pts = ["%.1f,%.1f" % (X(v[k]), Y((k + 1) / n)) for k in range(0, n, step)]
        pts.append("%.1f,%.1f" % (X(v[-1]), Y(1.0)))
        dash = ' stroke-dasharray="6,3"' if tag == "baseline" else ""
        o.append('<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>' % (col, dash, " ".join(pts)))
        ly = T + 14 + 18 * i
        o.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>' % (L + pw + 12, ly - 4, L + pw + 36, ly - 4, col, dash))
        o.append('<text x="%d" y="%d">%s (p50 %.1f µs)</text>' % (L + pw + 40, ly, tag, v[n // 2]))
    if pending:
        o.append('<text x="%d" y="%d" fill="#a00">pending (release.gate / fibre_delay_us not implemented): %s</text>'
                 % (L, H - 2, ", ".join(pending)))
    o.append("</svg>")
    open(svg, "w").write("\n".join(o) + "\n")


if __name__ == "__main__":
    main()
