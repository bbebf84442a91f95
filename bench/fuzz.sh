#!/usr/bin/env bash
# Runs every fuzz target for a set time each (default 60s): FUZZTIME=5m bench/fuzz.sh
# New failing inputs are saved under the package's testdata/fuzz/ and then
# run by every plain `go test` as regression seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
t="${FUZZTIME:-60s}"
for target in "./digishare FuzzDecode" "./config FuzzParse" "./receiver FuzzWebhook" "./bolt FuzzDecodeRecord" "./internal/payload FuzzPayload" "./orders FuzzDecode" "./ticket FuzzRender"; do
  set -- $target
  echo "== $2 ($1) for $t"
  go test "$1" -run '^$' -fuzz "^$2\$" -fuzztime "$t"
done
