#!/bin/bash
# Recomputes tests/data/fim/golden.json with llama.cpp: writes the fill-in-the-middle
# test model (a tiny Gemma with CodeGemma's vocabulary, `make-model --code-vocab`),
# starts the peer's llama-server on it and records, for each case, its /infill answer
# (greedy) and prompt length, with the model's recipe and SHA-256. Run by hand (root,
# for chroot), not by CI; tests/e2e/serve_fim.sh checks elliott against the file.
# usage: scripts/make-fim-golden.sh
set -euo pipefail
cd "$(dirname "$0")/.."
peer=${ELLIOTT_PEER:-/var/tmp/elliott-peer/sid}
[ -x "$peer/usr/bin/llama-server" ] ||
    { echo "make-fim-golden.sh: no llama-server in $peer: the llama.cpp peer is not installed (set ELLIOTT_PEER)" >&2; exit 1; }
make -s -j2 build/elliott
recipe=(--arch gemma --shape tiny --type q8_0 --seed 3 --vocab tests/data/vocab-gemma.gguf --code-vocab)
work=$(mktemp -d "$peer/tmp/elliott-fim.XXXXXX")
port=$((20000 + RANDOM % 20000))
pid=
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
build/elliott make-model "${recipe[@]}" "$work/code.gguf" >/dev/null
chroot "$peer" llama-server -m "/tmp/${work##*/}/code.gguf" --port "$port" -t 2 -c 512 >"$work/server.log" 2>&1 &
pid=$!
python3 - "$port" "$work/code.gguf" "${recipe[*]}" >tests/data/fim/golden.json <<'PY'
import hashlib, json, sys, time, urllib.request
port, model, recipe = sys.argv[1:]
def post(path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode())
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)
for _ in range(120):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
        break
    except Exception:
        time.sleep(0.5)
cases = [("def add(a, b):\n    ", "\n    return c\n"), ("int main() {", "}"),
         ("The capital of", "is Paris."), ("<|fim_prefix|>user text", "spelled like a marker")]
out = []
for prefix, suffix in cases:
    d = post("/infill", {"input_prefix": prefix, "input_suffix": suffix, "n_predict": 16, "temperature": 0,
                         "top_k": 1, "cache_prompt": False})
    out.append({"prefix": prefix, "suffix": suffix, "max_tokens": 16, "prompt_tokens": d["timings"]["prompt_n"],
                "text": d["content"]})
sha = hashlib.sha256(open(model, "rb").read()).hexdigest()
json.dump({"source": "llama.cpp llama-server /infill, greedy", "recipe": recipe, "sha256": sha, "cases": out},
          sys.stdout, indent=1, ensure_ascii=False)
print()
PY
echo "make-fim-golden.sh: tests/data/fim/golden.json written"
