#!/usr/bin/env python3
"""SVG of the latency taphold adds over the plain forwarder, against offered rate (figure 7).

    python3 benches/plot_paced.py OUT/paced.json benches/added-latency.svg

Added latency = tap gate - plain forwarder, in residence (rx -> release inside the
device; end to end as the generator measures it where a run lacks it), at p50 and p99 for each fixed-rate phase (the "max" phase is drawn at its achieved
rate, hollow). Log x (offered msg/s), symlog-free linear y in microseconds (negative
values, where the forwarder's run was the slower, are drawn below the zero line).
Standard library only, like plot.py.
"""

import json
import math
import sys


def main():
    src, svg = sys.argv[1:3]
    j = json.load(open(src))
    pts, alone, kind = [], [], set()
    for r in j.get("added", []):
        if r["quiet_ms"]:
            continue
        rate = r["rate"] or r.get("achieved_rate_tap") or 0
        if rate <= 0:
            continue
        # Residence (rx -> release inside the device) where both runs have it: it
        # leaves out the generator's own scheduling; else end to end.
        k50, k99 = ("residence_p50", "residence_p99") if r.get("residence_p50") is not None else ("p50", "p99")
        pts.append((rate, r["rate"] == 0, r[k50], r[k99]))
        kind.add(k50)
        if r.get("alone_p50") is not None:
            alone.append((rate, r["rate"] == 0, r["alone_p50"], r["alone_p99"]))
    W, H, L, R, T, B = 820, 440, 80, 230, 40, 60
    pw, ph = W - L - R, H - T - B
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (W, H),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="22" font-size="15">latency added by the tap gate over a plain forwarder (tap − forwarder)</text>' % L]
    if not pts:
        o.append('<text x="%d" y="%d">no paced run yet: benches/run.sh paced</text>' % (L, T + 40))
        o.append("</svg>")
        open(svg, "w").write("\n".join(o) + "\n")
        return
    xs = [p[0] for p in pts]
    lo = 10 ** math.floor(math.log10(min(xs)))
    hi = 10 ** math.ceil(math.log10(max(xs) * 1.01))
    ys = [v / 1000.0 for p in pts + alone for v in p[2:] if v is not None] + [0.0]
    ymin, ymax = min(ys), max(ys)
    if ymax - ymin < 1:
        ymax = ymin + 1
    pad = (ymax - ymin) * 0.08
    ymin, ymax = ymin - pad, ymax + pad
    X = lambda r: L + pw * (math.log10(r) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    Y = lambda us: T + ph * (1 - (us - ymin) / (ymax - ymin))
    dec = lo
    while dec <= hi * 1.0001:
        o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>' % (X(dec), T, X(dec), T + ph))
        o.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (X(dec), T + ph + 16, "{:,}".format(int(dec))))
        dec *= 10
    step = 10 ** math.floor(math.log10(max(ymax - ymin, 1e-9) / 5))
    for m in (1, 2, 5, 10):
        if (ymax - ymin) / (step * m) <= 8:
            step *= m
            break
    v = math.ceil(ymin / step) * step
    while v <= ymax:
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>' % (L, Y(v), L + pw, Y(v), "#888" if abs(v) < 1e-9 else "#ddd"))
        o.append('<text x="%d" y="%.1f" text-anchor="end">%g</text>' % (L - 6, Y(v) + 4, round(v, 6)))
        v += step
    o.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>' % (L, T, pw, ph))
    o.append('<text x="%d" y="%d" text-anchor="middle">offered rate (messages/s, log scale; hollow: max, at its achieved rate)</text>' % (L + pw / 2, H - 18))
    o.append('<text x="18" y="%d" transform="rotate(-90 18 %d)" text-anchor="middle">added latency (µs)</text>' % (T + ph / 2, T + ph / 2))
    what = "residence" if "residence_p50" in kind else "end to end"
    series = [("p50, " + what, "#1f77b4", pts, 2, ""), ("p99, " + what, "#d62728", pts, 3, "")]
    if alone:
        series += [("p50, launched alone", "#1f77b4", alone, 2, ' stroke-dasharray="6,3"'),
                   ("p99, launched alone", "#d62728", alone, 3, ' stroke-dasharray="6,3"')]
    for k, (name, col, pts, idx, dash) in enumerate(series):
        line = [(X(p[0]), Y(p[idx] / 1000.0)) for p in sorted(pts) if p[idx] is not None and not p[1]]
        if len(line) > 1:
            o.append('<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>' % (col, dash, " ".join("%.1f,%.1f" % q for q in line)))
        for p in pts:
            if p[idx] is None:
                continue
            fill = "white" if p[1] else col
            o.append('<circle cx="%.1f" cy="%.1f" r="4" fill="%s" stroke="%s" stroke-width="2"/>' % (X(p[0]), Y(p[idx] / 1000.0), fill, col))
        ly = T + 14 + 18 * k
        o.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>' % (L + pw + 12, ly - 4, L + pw + 36, ly - 4, col, dash))
        o.append('<text x="%d" y="%d">%s</text>' % (L + pw + 40, ly, name))
    o.append("</svg>")
    open(svg, "w").write("\n".join(o) + "\n")


if __name__ == "__main__":
    main()
