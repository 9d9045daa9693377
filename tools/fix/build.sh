#!/usr/bin/env bash
# Builds the live lab's FIX ends (docs/lab.md, "A real FIX session") into
# OUTDIR (default target/fix):
#   executor   QuickFIX's own example acceptor, as Debian's libquickfix-doc
#              ships it (examples/executor/C++): the exchange. It fills every
#              limit NewOrderSingle with one ExecutionReport. Built unmodified,
#              with g++ -std=c++11 (its headers use dynamic exception
#              specifications) and the empty config.h its autotools build expects.
#   initiator  ours (tools/fix/initiator.cpp): the trading engine.
# Both link Debian's libquickfix (libquickfix-dev). Idempotent: a binary newer
# than its sources is not rebuilt. scripts/setup.sh installs the packages.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-$ROOT/target/fix}
EXAMPLE=${QUICKFIX_EXAMPLE_DIR:-/usr/share/doc/libquickfix-doc/examples/executor/C++}
CXX=${CXX:-g++}
FLAGS=(-std=c++11 -O1 -pthread)
# The example and QuickFIX's headers use dynamic exception specifications
# (deprecated in C++11): quiet about those only.
QUIET=(-Wno-deprecated)

die() { echo "fix-build: $*" >&2; exit 1; }
[ -e /usr/include/quickfix/Session.h ] || die "no QuickFIX headers: install libquickfix-dev (scripts/setup.sh)"
command -v "$CXX" >/dev/null || die "no $CXX: install g++ (scripts/setup.sh)"
mkdir -p "$OUT"
# Images that drop /usr/share/doc when installing (dpkg path-exclude) have
# the package but not its examples: take them from the .deb itself.
if [ ! -e "$EXAMPLE/executor.cpp" ] && [ -z "${QUICKFIX_EXAMPLE_DIR:-}" ]; then
    deb=$OUT/quickfix-doc
    if [ ! -e "$deb$EXAMPLE/executor.cpp" ]; then
        echo "fix-build: no $EXAMPLE; unpacking libquickfix-doc's .deb into $deb"
        rm -rf "$deb"
        mkdir -p "$deb"
        (cd "$deb" && apt-get download libquickfix-doc >/dev/null 2>&1) ||
            die "no $EXAMPLE/executor.cpp and apt-get download libquickfix-doc failed (scripts/setup.sh)"
        dpkg-deb -x "$deb"/libquickfix-doc_*.deb "$deb"
        rm -f "$deb"/libquickfix-doc_*.deb
    fi
    EXAMPLE=$deb$EXAMPLE
fi
[ -e "$EXAMPLE/executor.cpp" ] || die "no $EXAMPLE/executor.cpp: install libquickfix-doc (scripts/setup.sh)"

# newer TARGET SOURCE...: true when TARGET exists and is newer than every source.
newer() {
    local t=$1 s
    shift
    [ -e "$t" ] || return 1
    for s in "$@"; do [ "$t" -nt "$s" ] || return 1; done
}

src=$OUT/executor-src
if ! newer "$OUT/executor" "$EXAMPLE/executor.cpp" "$EXAMPLE/Application.cpp.gz" "$EXAMPLE/Application.h" "$0"; then
    rm -rf "$src"
    mkdir -p "$src"
    cp "$EXAMPLE/executor.cpp" "$EXAMPLE/Application.h" "$src/"
    gunzip -c "$EXAMPLE/Application.cpp.gz" >"$src/Application.cpp"
    : >"$src/config.h"
    echo "fix-build: executor (QuickFIX example, $EXAMPLE)"
    "$CXX" "${FLAGS[@]}" "${QUIET[@]}" -w -I"$src" -o "$OUT/executor.tmp" "$src/executor.cpp" "$src/Application.cpp" -lquickfix
    mv "$OUT/executor.tmp" "$OUT/executor"
fi

if ! newer "$OUT/initiator" "$ROOT/tools/fix/initiator.cpp" "$0"; then
    echo "fix-build: initiator (tools/fix/initiator.cpp)"
    "$CXX" "${FLAGS[@]}" "${QUIET[@]}" -Wall -Wextra -o "$OUT/initiator.tmp" "$ROOT/tools/fix/initiator.cpp" -lquickfix
    mv "$OUT/initiator.tmp" "$OUT/initiator"
fi
echo "fix-build: $OUT/executor $OUT/initiator"
