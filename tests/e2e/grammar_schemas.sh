#!/bin/bash
# Constrained decoding's property test: random walks through grammars compiled from a
# broad set of JSON schemas on the real Gemma 3 vocabulary (picking uniformly among the
# allowed tokens) must each produce a JSON text that python3-jsonschema validates
# against its schema (with format checking).
set -u
bin=${1:?usage: grammar_schemas.sh ELLIOTT_BINARY}
walks="$(dirname "$bin")/tests/grammar_vocab/test_schema_walks"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! python3 -c 'import jsonschema' 2>/dev/null; then
    echo "FAIL python3-jsonschema is missing (scripts/install-deps.sh --test)"; exit 1
fi
"$walks" --emit "$tmp" >"$tmp/log" 2>&1 || { echo "FAIL $walks"; tail -20 "$tmp/log"; exit 1; }
python3 - "$tmp" <<'PY'
import glob, json, os, sys
import jsonschema
d = sys.argv[1]
validator_of = {}
fail = checked = 0
for path in sorted(glob.glob(os.path.join(d, "*.txt"))):
    key = os.path.basename(path).split(".")[0]
    if key not in validator_of:
        with open(os.path.join(d, key + ".schema.json")) as f:
            schema = json.load(f)
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        validator_of[key] = cls(schema, format_checker=cls.FORMAT_CHECKER)
    with open(path, "rb") as f:
        raw = f.read()
    checked += 1
    try:
        value = json.loads(raw.decode("utf-8"))
        errors = list(validator_of[key].iter_errors(value))
    except Exception as e:  # not JSON, not UTF-8
        errors = [e]
    if errors:
        fail += 1
        print(f"FAIL {os.path.basename(path)}: {raw[:200]!r}: {errors[0]}")
schemas = len(validator_of)
if schemas < 25 or checked < 100:
    print(f"FAIL only {checked} texts from {schemas} schemas")
    fail += 1
print(f"{'ok  ' if not fail else 'FAIL'} {checked} walks over {schemas} schemas validated by jsonschema")
sys.exit(1 if fail else 0)
PY
