#!/usr/bin/env bash
# CI: the package as a user gets it. `npm pack`, check what the tarball holds, install it globally into a
# temporary prefix the way the README says (ONNXRUNTIME_NODE_INSTALL=skip: only the npm registry is
# reachable), and run `vit classify` on the example digits from another directory: the output must equal
# that of the checkout's own build. Needs the registry for the dependencies; run as root by .ci/run (CI),
# skipped elsewhere. Takes about a minute.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

# shellcheck source=scripts/ci-lib.sh
source "$repo/scripts/ci-lib.sh" ci-pack "it runs as root in CI, where it installs from the npm registry"
T=$(mktemp -d /tmp/vit-ci-pack.XXXXXX)
trap 'rm -rf "$T"' EXIT
# Graph caches of both runs stay in here.
export XDG_CACHE_HOME=$T/cache

tarball=$T/$(cd "$repo" && npm pack --silent --pack-destination "$T" | tail -n 1)
[ -f "$tarball" ] || fail "npm pack made no tarball"
tar tzf "$tarball" >"$T/files.txt"
for f in package/LICENSE package/package.json package/bin/vit.js package/dist/src/cli.js \
  package/models/vit-digits/model.safetensors package/models/vit-digits/config.json; do
  grep -qx "$f" "$T/files.txt" || fail "the tarball lacks $f"
done
# Type declarations (.d.ts under dist/src) ship for library users; TypeScript sources do not.
unwanted=$(grep -E '^package/(test|scripts|src|examples|docs|dist/test|dist/scripts)/|\.map$|\.ts$' "$T/files.txt" |
  grep -vE '^package/dist/src/.*\.d\.ts$' || true)
[ -z "$unwanted" ] || fail "the tarball holds files it should not: $(echo "$unwanted" | head -n 5 | tr '\n' ' ')"
grep -qx package/dist/src/index.d.ts "$T/files.txt" || fail "the tarball lacks the library's types (dist/src/index.d.ts)"
say "$(basename "$tarball"): $(wc -l <"$T/files.txt") files, LICENSE and types in, no tests, scripts, sources or maps ($((SECONDS - t0)) s)"

ONNXRUNTIME_NODE_INSTALL=skip npm install --global --prefix "$T/prefix" --no-audit --no-fund "$tarball" >"$T/install.log" 2>&1 ||
  { cat "$T/install.log"; fail "npm install -g of the tarball failed"; }
vit=$T/prefix/bin/vit
[ -x "$vit" ] || fail "the install made no vit command in $T/prefix/bin"
say "installed into a temporary prefix ($((SECONDS - t0)) s)"

mkdir "$T/elsewhere"
cd "$T/elsewhere"
[ "$("$vit" --version)" = "$(node -p "require('$repo/package.json').version")" ] || fail "vit --version is not the package's version"
status=0
"$vit" classify "$repo/examples/digits" -k 1 >installed.csv || status=$?
[ "$status" -eq 0 ] || fail "the installed vit classify exited $status"
node "$repo/bin/vit.js" classify "$repo/examples/digits" -k 1 >checkout.csv
cmp installed.csv checkout.csv || fail "the installed vit classifies the digits otherwise than the checkout"
rows=$(($(wc -l <installed.csv) - 1))
digits=$(find "$repo/examples/digits" -name '*.png' | wc -l)
[ "$rows" -eq "$digits" ] || fail "$rows rows for $digits digits"
# The file names start with the true digit; the bundled model gets all but one (an ambiguous 3) right.
right=$(awk -F, 'NR > 1 { n = split($1, p, "/"); if (substr(p[n], 1, 1) == $4) r++ } END { print r + 0 }' installed.csv)
((right >= digits - 1)) || fail "only $right of $digits digits classified right"
say "vit classify from another directory: $rows rows, $right right, identical to the checkout's ($((SECONDS - t0)) s)"
say passed
