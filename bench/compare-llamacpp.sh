#!/bin/bash
# Runs `elliott bench` and llama.cpp's llama-bench alternately on the same GGUF files, with
# the same thread count and test sizes, and prints the ratios (elliott / llama.cpp).
#
# usage: bench/compare-llamacpp.sh [-t THREADS] [-p N_PROMPT] [-n N_GEN] [-r REPS]
#                                  [--llama-variant best|avx2] [--long] [--bandwidth]
#                                  [--cache-type f16|q8_0] MODEL.gguf...
#
# llama.cpp comes from the peer that ../shared/peer/setup.sh installs (a Debian sid chroot,
# default /var/tmp/elliott-peer/sid; override with ELLIOTT_PEER). When it is absent the script
# says so and reports elliott's numbers alone.
#
# By default both sides use the best kernels for this CPU, as users get them: Debian's
# llama.cpp picks its CPU variant at run time (AVX-512, AMX where present), elliott its ISA.
# --llama-variant avx2 restricts llama.cpp to its `haswell` (AVX2/FMA/F16C) variant and
# elliott to its AVX2 kernels (ELLIOTT_ISA=avx2), a like-for-like AVX2 comparison.
# --long adds long-context rows: pp512, pp2048 and tg32 after 2048 cached tokens (-d 2048),
# each against llama.cpp with flash attention off and on (elliott has one attention path).
# --bandwidth adds, on the generation rows, each side's share of the machine's plain read
# bandwidth (bench/bandwidth.sh: bytes read per token x t/s / a streaming read of a 1 GiB
# buffer with the same threads, measured just before each model's runs, since this VM's
# bandwidth moves within minutes; needs make bench).
# --cache-type q8_0 gives both sides a Q8_0 KV cache: elliott --cache-type q8_0, llama.cpp
# -ctk q8_0 -ctv q8_0 with flash attention on (which its quantized V cache needs; the
# --long rows then have no fa-off line). Default f16, each side's default.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
threads=2 n_prompt=128 n_gen=32 reps=3 variant=best long=0 bandwidth=0 cache=f16
models=()
while [ $# -gt 0 ]; do
    case $1 in
        -t) threads=$2; shift 2 ;;
        -p) n_prompt=$2; shift 2 ;;
        -n) n_gen=$2; shift 2 ;;
        -r) reps=$2; shift 2 ;;
        --llama-variant) variant=$2; shift 2 ;;
        --long) long=1; shift ;;
        --bandwidth) bandwidth=1; shift ;;
        --cache-type) cache=$2; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "compare-llamacpp.sh: unknown option $1" >&2; exit 2 ;;
        *) models+=("$1"); shift ;;
    esac
done
[ ${#models[@]} -gt 0 ] || { echo "compare-llamacpp.sh: no model given (see --help)" >&2; exit 2; }
case $variant in avx2|best) ;; *) echo "compare-llamacpp.sh: --llama-variant is avx2 or best" >&2; exit 2 ;; esac
# each side's KV cache options; llama.cpp's quantized V cache needs flash attention
case $cache in
    f16) elliott_cache=() llama_cache=() fa_modes="off on" ;;
    q8_0) elliott_cache=(--cache-type q8_0) llama_cache=(-ctk q8_0 -ctv q8_0 -fa 1) fa_modes="on" ;;
    *) echo "compare-llamacpp.sh: --cache-type is f16 or q8_0" >&2; exit 2 ;;
esac
# elliott's kernel path: the same restriction as llama.cpp's
elliott_isa=${ELLIOTT_ISA:-}
[ $variant = avx2 ] && elliott_isa=avx2

elliott=${ELLIOTT_BIN:-$here/build/elliott}
[ -x "$elliott" ] || { echo "compare-llamacpp.sh: $elliott not built (run make)" >&2; exit 1; }
peer=${ELLIOTT_PEER:-/var/tmp/elliott-peer}
sid=$peer/sid
have_peer=1
if [ ! -x "$sid/usr/bin/llama-bench" ]; then
    have_peer=0
    echo "llama.cpp peer absent ($sid/usr/bin/llama-bench not found; install it with ../shared/peer/setup.sh): elliott numbers only" >&2
elif [ "$(id -u)" -ne 0 ]; then
    have_peer=0
    echo "llama.cpp peer present but running it needs root (chroot): elliott numbers only" >&2
fi

backends=usr/lib/x86_64-linux-gnu/ggml/backends0
avx2_dir=$peer/avx2-only
if [ $have_peer = 1 ] && [ $variant = avx2 ]; then
    mkdir -p "$avx2_dir"
    cp -u "$sid/$backends/libggml-cpu-haswell.so" "$avx2_dir/"
fi

# llama-bench runs in a private mount namespace: the model's folder is bound into the chroot,
# and for the AVX2 comparison the CPU backend folder is replaced by one holding only haswell.
run_llama() { # MODEL LLAMA-BENCH-ARGS... -> jsonl lines on stdout
    local model dir base
    model=$(readlink -f "$1"); dir=$(dirname "$model"); base=$(basename "$model"); shift
    unshare -m bash -c '
        set -e
        sid=$1 dir=$2 base=$3 variant=$4 avx2_dir=$5 backends=$6; shift 6
        mkdir -p "$sid/mnt/elliott-models"
        mount --bind "$dir" "$sid/mnt/elliott-models"
        [ "$variant" = avx2 ] && mount --bind "$avx2_dir" "$sid/$backends"
        for d in proc sys dev; do mountpoint -q "$sid/$d" || mount --bind /$d "$sid/$d"; done
        chroot "$sid" llama-bench -m "/mnt/elliott-models/$base" "$@" -o jsonl
    ' _ "$sid" "$dir" "$base" "$variant" "$avx2_dir" "$backends" -t "$threads" -r "$reps" \
        ${llama_cache[@]+"${llama_cache[@]}"} "$@" 2>/dev/null
}

run_elliott() { # MODEL ELLIOTT-BENCH-ARGS... -> jsonl lines on stdout
    local model=$1; shift
    ELLIOTT_ISA=$elliott_isa "$elliott" bench -m "$model" -t "$threads" -r "$reps" ${elliott_cache[@]+"${elliott_cache[@]}"} "$@" -o jsonl
}

# Picks "avg_ts stddev_ts" of the pp (n_gen == 0) or tg (n_prompt == 0) line.
pick() { # JSONL TEST
    python3 -c '
import json, sys
test = sys.argv[1]
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"): continue
    r = json.loads(line)
    if (test == "pp") == (r["n_gen"] == 0):
        print("%.2f %.2f" % (r["avg_ts"], r["stddev_ts"])); break
' "$2" <<<"$1"
}

# The elliott isa field of a jsonl answer.
isa_of() { python3 -c 'import json,sys
for l in sys.stdin:
    if l.startswith("{"): print(json.loads(l).get("isa", "?")); break' <<<"$1"; }

# " | elliott share / llama.cpp share" of the read bandwidth for a tg row with --bandwidth.
share_cell() { # TEST E_TS L_TS
    [ $bandwidth = 1 ] || return 0
    [ "$1" = tg ] || { echo " | "; return 0; }
    python3 -c '
import sys
b, bw = int(sys.argv[1]), float(sys.argv[2])
cells = ["%.0f %%" % (100 * b * float(t) / 1e9 / bw) if t else "n/a" for t in sys.argv[3:5]]
print(" | " + " / ".join(cells) + " of %.1f GB/s" % bw)' "$model_bytes" "$read_bw" "$2" "${3:-}"
}

row() { # MODEL SIZE LABEL TEST ELLIOTT-JSONL LLAMA-JSONL [NOTE]
    local e_ts e_sd l_ts l_sd ratio
    read -r e_ts e_sd <<<"$(pick "$5" "$4")"
    if [ -n "$6" ] && read -r l_ts l_sd <<<"$(pick "$6" "$4")" && [ -n "${l_ts:-}" ]; then
        ratio=$(python3 -c "print('%.2f' % ($e_ts / $l_ts))")
        echo "| $(basename "$1") | $2 | $3 | $(isa_of "$5") | $e_ts ± $e_sd | $l_ts ± $l_sd${7:+ ($7)} | ${ratio}x$(share_cell "$4" "$e_ts" "$l_ts") |"
    else
        echo "| $(basename "$1") | $2 | $3 | $(isa_of "$5") | $e_ts ± $e_sd | n/a | n/a$(share_cell "$4" "$e_ts" "") |"
    fi
}

llama() { [ $have_peer = 1 ] && run_llama "$@" || true; }

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
echo "# elliott vs llama.cpp: $cpu, $threads threads, pp$n_prompt / tg$n_gen, $reps repetitions, KV cache $cache"
[ $have_peer = 1 ] && echo "# llama.cpp: Debian llama-bench, CPU variant: $variant"
read_bw= model_bytes=0
echo "# load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
if [ $bandwidth = 1 ]; then
    echo "| model | size | test | elliott isa | elliott t/s | llama.cpp t/s | ratio | share of the plain read ($threads threads, just before the model's runs): elliott / llama.cpp |"
    echo "|---|---:|---|---|---:|---:|---:|---:|"
else
    echo "| model | size | test | elliott isa | elliott t/s | llama.cpp t/s | ratio |"
    echo "|---|---:|---|---|---:|---:|---:|"
fi
for m in "${models[@]}"; do
    [ -f "$m" ] || { echo "compare-llamacpp.sh: $m: no such file" >&2; exit 1; }
    size=$(du -h --apparent-size "$m" | cut -f1)
    if [ $bandwidth = 1 ]; then
        model_bytes=$(ELLIOTT_BIN=$elliott "$here/bench/bandwidth.sh" --bytes-per-token "$m")
        read_bw=$(ELLIOTT_BIN=$elliott "$here/bench/bandwidth.sh" --read -t "$threads")
    fi
    e=$(run_elliott "$m" -p "$n_prompt" -n "$n_gen")
    l=$(llama "$m" -p "$n_prompt" -n "$n_gen")
    row "$m" "$size" "pp$n_prompt" pp "$e" "$l"
    row "$m" "$size" "tg$n_gen" tg "$e" "$l"
    [ $long = 1 ] || continue
    for pp in 512 2048; do
        e=$(run_elliott "$m" -p $pp -n 0 -d 2048)
        for fa in $fa_modes; do
            row "$m" "$size" "pp$pp @ d2048" pp "$e" "$(llama "$m" -p $pp -n 0 -d 2048 -fa $fa)" "fa $fa"
        done
    done
    e=$(run_elliott "$m" -p 0 -n 32 -d 2048)
    for fa in $fa_modes; do
        row "$m" "$size" "tg32 @ d2048" tg "$e" "$(llama "$m" -p 0 -n 32 -d 2048 -fa $fa)" "fa $fa"
    done
done
