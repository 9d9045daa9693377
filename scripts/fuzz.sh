#!/usr/bin/env bash
# Runs one fuzz target under AFL++ for SECONDS: scripts/fuzz.sh TARGET SECONDS
# (scripts/fuzz.sh --list names the targets; docs/fuzzing.md says what each covers).
#
# Builds crates/taphold-fuzz's AFL binary with cargo-afl (stable Rust; scripts/setup.sh
# installs it) into target/afl, writes the target's seed corpus (derived from
# test-pcaps/ and config/, plus crates/taphold-fuzz/regressions/TARGET/ and the queue an
# earlier run left), and fuzzes. Exits 1 if AFL found a crashing input, printing each
# one's path (under target/fuzz/TARGET/out/default/crashes/, kept until the next run of
# the target): copy it into crates/taphold-fuzz/regressions/TARGET/ and make it a
# unit test in the crate whose parser it breaks.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

usage() { echo "usage: scripts/fuzz.sh TARGET SECONDS | --list" >&2; exit 2; }
if [ "${1:-}" = "--list" ]; then
    exec cargo run -q -p taphold-fuzz --bin taphold-fuzz-seeds -- --list
fi
[ $# -eq 2 ] || usage
target=$1 seconds=$2
[[ $seconds =~ ^[1-9][0-9]*$ ]] || usage

if ! cargo afl --version >/dev/null 2>&1; then
    echo "fuzz: cargo-afl is missing: run scripts/setup.sh" >&2
    exit 2
fi

# The seeds first: this also refuses an unknown target name.
work=target/fuzz/$target
mkdir -p "$work"
rm -rf "$work/in"
cargo run -q -p taphold-fuzz --bin taphold-fuzz-seeds -- "$target" "$work/in"
if [ -d "$work/corpus" ]; then
    cp "$work/corpus/"* "$work/in/" 2>/dev/null || true
fi

# A profile of its own (release without LTO: cargo-afl rebuilds everything with its
# instrumentation, and LTO only slows that) and a target directory of its own, so that
# plain builds and AFL builds never invalidate each other.
CARGO_TARGET_DIR=target/afl cargo afl build -q --profile fuzz -p taphold-fuzz \
    --features afl --bin taphold-fuzz-afl
bin=target/afl/fuzz/taphold-fuzz-afl

# The journal targets write a run directory per input: keep that in memory.
scratch=/dev/shm/taphold-fuzz-$target-$$
mkdir -p "$scratch"
trap 'rm -rf "$scratch"' EXIT

rm -rf "$work/out"
# AFL_SKIP_CPUFREQ / AFL_NO_AFFINITY: a shared machine whose governor and cores are not
# ours; AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES: crashes are seen through the fork
# server, whatever core_pattern says; AFL_NO_UI: a log, not a curses screen.
status=0
AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 \
    AFL_NO_UI=1 AFL_FAST_CAL=1 AFL_IGNORE_SEED_PROBLEMS=1 \
    TAPHOLD_FUZZ_TARGET="$target" TAPHOLD_FUZZ_SCRATCH="$scratch" \
    cargo afl fuzz -i "$work/in" -o "$work/out" -V "$seconds" -t 2000 -m none \
    -- "$bin" >"$work/afl.log" 2>&1 || status=$?

stats=$work/out/default/fuzzer_stats
if [ ! -f "$stats" ]; then
    echo "fuzz: $target: afl-fuzz did not start (exit $status); the end of $work/afl.log:" >&2
    tail -20 "$work/afl.log" >&2
    exit 2
fi
stat() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
echo "fuzz: $target: ${seconds}s, $(stat execs_done) execs ($(stat execs_per_sec)/s)," \
    "corpus $(stat corpus_count), coverage $(stat bitmap_cvg), stability $(stat stability)," \
    "crashes $(stat saved_crashes), hangs $(stat saved_hangs)"

# Keep the queue (it holds every input this run started from, and what it found): the
# next run starts where this one stopped.
rm -rf "$work/corpus"
mkdir -p "$work/corpus"
cp "$work/out/default/queue/"id:* "$work/corpus/" 2>/dev/null || true

found=0
for f in "$work/out/default/crashes/"id:* "$work/out/default/hangs/"id:*; do
    [ -e "$f" ] || continue
    case $f in
        */crashes/*) echo "fuzz: $target: CRASH $f"; found=1 ;;
        *) echo "fuzz: $target: hang (over 2 s on this machine; check under less load) $f" ;;
    esac
done
if [ "$found" -ne 0 ]; then
    echo "fuzz: $target: reproduce with: TAPHOLD_FUZZ_TARGET=$target $bin < FILE" >&2
    exit 1
fi
