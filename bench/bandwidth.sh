#!/bin/bash
# Decode's share of this machine's read bandwidth: for each model, the bytes a generated
# token reads (every matrix and vector in full, the output matrix, one row of each table
# looked up by token; with Gemma's tied embeddings the token table is the output matrix
# and so counts in full) times elliott's generation speed, divided by the plain read
# bandwidth of the same thread count measured just before and just after the row, the
# higher of the two (build/bench/kernels_bench --read: a streaming read of a 1 GiB buffer,
# far larger than the LLC, in 2 MiB pages as the repacked weights are, the best 32 MiB
# segment of 10 passes of each read loop).
#
# usage: bench/bandwidth.sh [-t THREADS] [-n N_GEN] [-r REPS] MODEL.gguf...
#        bench/bandwidth.sh --bytes-per-token MODEL.gguf   (prints the byte count)
#        bench/bandwidth.sh --read [-t THREADS]            (prints GB/s)
#
# Needs `make all bench` (build/elliott, build/bench/kernels_bench; ELLIOTT_BIN and
# KERNELS_BENCH override them). The KV cache's reads (small at tg32 from an empty
# context) are left out. On a shared machine both the bandwidth and the generation speed
# drop under load, not by the same factor: use it on an idle machine (check `uptime`).
# bench/compare-llamacpp.sh --bandwidth adds the same share for llama.cpp's rows.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
elliott=${ELLIOTT_BIN:-$here/build/elliott}
kbench=${KERNELS_BENCH:-$here/build/bench/kernels_bench}
threads=2 n_gen=32 reps=3 mode=table
models=()
while [ $# -gt 0 ]; do
    case $1 in
        -t) threads=$2; shift 2 ;;
        -n) n_gen=$2; shift 2 ;;
        -r) reps=$2; shift 2 ;;
        --bytes-per-token) mode=bytes; shift ;;
        --read) mode=read; shift ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "bandwidth.sh: unknown option $1" >&2; exit 2 ;;
        *) models+=("$1"); shift ;;
    esac
done

bytes_per_token() { # MODEL -> bytes on stdout
    "$elliott" inspect --json "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
names = {t["name"] for t in d["tensors"]}
tied = "output.weight" not in names
total = 0
for t in d["tensors"]:
    if t["part"] != "table":
        total += t["bytes"]                      # matrices, vectors, routers: read whole
    elif t["name"] == "token_embd.weight" and tied:
        total += t["bytes"]                      # the output projection reads all of it
    else:
        total += t["bytes"] // t["shape"][-1]    # one row per token
print(total)'
}

read_bandwidth() { # -> GB/s on stdout
    [ -x "$kbench" ] || { echo "bandwidth.sh: $kbench not built (run make bench)" >&2; exit 1; }
    "$kbench" --read "$threads" | sed -n 's/^read bandwidth: \([0-9.]*\) GB\/s.*/\1/p'
}

case $mode in
    bytes) [ ${#models[@]} -eq 1 ] || { echo "bandwidth.sh: --bytes-per-token takes one model" >&2; exit 2; }
           bytes_per_token "${models[0]}"; exit 0 ;;
    read) read_bandwidth; exit 0 ;;
esac

[ ${#models[@]} -gt 0 ] || { echo "bandwidth.sh: no model given (see --help)" >&2; exit 2; }
[ -x "$elliott" ] || { echo "bandwidth.sh: $elliott not built (run make)" >&2; exit 1; }
echo "# decode bandwidth share: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $threads threads, tg$n_gen, $reps repetitions"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# read: the plain read bandwidth just before and just after the row's generation; the"
echo "# share is of the higher of the two (this VM's bandwidth moves by 10-20 % within minutes)"
echo
echo "| model | isa | bytes/token | tg t/s | GB/s | read before / after GB/s | share |"
echo "|---|---|---:|---:|---:|---:|---:|"
for m in "${models[@]}"; do
    [ -f "$m" ] || { echo "bandwidth.sh: $m: no such file" >&2; exit 1; }
    bytes=$(bytes_per_token "$m")
    bw_before=$(read_bandwidth)
    jsonl=$("$elliott" bench -m "$m" -t "$threads" -p 0 -n "$n_gen" -r "$reps" -o jsonl)
    bw_after=$(read_bandwidth)
    python3 -c '
import json, sys
name, bytes_, before, after = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
r = next(json.loads(l) for l in sys.stdin if l.startswith("{"))
gbs = bytes_ * r["avg_ts"] / 1e9
print("| %s | %s | %.3f GB | %.2f ± %.2f | %.1f | %.1f / %.1f | %.0f %% |" % (name, r.get("isa", "?"),
      bytes_ / 1e9, r["avg_ts"], r["stddev_ts"], gbs, before, after, 100 * gbs / max(before, after)))' \
        "$(basename "$m")" "$bytes" "$bw_before" "$bw_after" <<<"$jsonl"
done
echo
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
