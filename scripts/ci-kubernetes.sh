#!/usr/bin/env bash
# CI: docs/kubernetes-indexed-job.yaml and the Dockerfile, as far as they run without a cluster or Docker
# (neither exists here). Checks:
#   1. the template rendered as its header says is two Jobs that pass the Kubernetes API schemas (the npm
#      package kubernetes-models: types, formats, enums, required fields) and name no unknown field (its
#      TypeScript declarations, checked by tsc);
#   2. the Dockerfile's second stage, run here into a temporary /opt/vit, installs a working vit;
#   3. each pod's command and the merge's, exactly as the manifest writes them (env and $(VAR) expanded as the
#      kubelet does, /data and /cache standing for the volumes), run with tini as PID 1 of a PID namespace
#      of their own (unshare): every pod exits 0 (vit's 3 for the unreadable input mapped by tini -e 3), the
#      merge is byte-identical to one unsharded run, and SIGTERM to PID 1 ends in a valid part and exit 143
#      that a rerun of the pod continues.
# Needs root (apt-get tini, unshare) and the npm registry; skipped elsewhere. Takes about a minute.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

# shellcheck source=scripts/ci-lib.sh
source "$repo/scripts/ci-lib.sh" ci-kubernetes "it installs Debian's tini, makes PID namespaces and uses the npm registry"
T=$(mktemp -d /tmp/vit-ci-k8s.XXXXXX)
trap 'rm -rf "$T"' EXIT

apt_install tini tini
# Tools for the checks only, not dependencies of vit.
npm install --prefix "$T/tools" --no-audit --no-fund --silent kubernetes-models@5.1.0 yaml@2 >/dev/null
tools() { (cd "$T/tools" && node --input-type=module - "$@"); }

# --- 1 -----------------------------------------------------------------------------------------------------
shards=3
(cd "$T" && sed 's/${SHARDS}/'"$shards"'/g' "$repo/docs/kubernetes-indexed-job.yaml" >vit-jobs.yaml)
grep -q '\${' "$T/vit-jobs.yaml" && fail "the rendered manifest still holds a placeholder"
tools "$T/vit-jobs.yaml" "$T/tools/check.ts" <<'EOF'
import { parseAllDocuments } from 'yaml';
import { readFileSync, writeFileSync } from 'node:fs';
import { Job } from 'kubernetes-models/batch/v1/Job';
const [file, ts] = process.argv.slice(2);
const docs = parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJS());
const names = docs.map((d) => `${d.kind}/${d.metadata.name} (${d.metadata.labels?.['vit-step']})`).join(', ');
if (names !== 'Job/vit-classify (shards), Job/vit-merge (merge)') throw new Error(`unexpected objects: ${names}`);
for (const d of docs) new Job(d).validate();
writeFileSync(ts, `import type { IJob } from 'kubernetes-models/batch/v1/Job';\n` +
  docs.map((d, i) => `export const job${i}: IJob = ${JSON.stringify(d, null, 2)};\n`).join(''));
EOF
(cd "$T/tools" && "$repo/node_modules/.bin/tsc" --noEmit --strict --module nodenext --moduleResolution nodenext --skipLibCheck check.ts) ||
  fail "the manifest names fields the Kubernetes API does not have"
say "1. rendered with SHARDS=$shards: two Jobs, valid by the API schemas, no unknown fields ($((SECONDS - t0)) s)"

# --- 2: the Dockerfile's second stage, with / at $T --------------------------------------------------------
# (The first stage is `npm ci && npm pack`; `npm ci` has built dist/ here already.)
mkdir -p "$T/pack" "$T/opt/vit" "$T/bin" "$T/home"
(cd "$repo" && npm pack --ignore-scripts --silent --pack-destination "$T/pack" >/dev/null && cp package-lock.json "$T/pack/")
(
  cd "$T/opt/vit"
  tar xzf "$T"/pack/vit-cli-*.tgz --strip-components=1 && mv "$T/pack/package-lock.json" . && rm -r "$T/pack"
  npm pkg delete scripts.prepare && ONNXRUNTIME_NODE_INSTALL=skip npm ci --omit=dev --no-audit --no-fund --silent
) || fail "the Dockerfile's install steps failed"
ln -s "$T/opt/vit/bin/vit.js" "$T/bin/vit"
export PATH=$T/bin:$PATH
[ -d "$T/opt/vit/node_modules/typescript" ] && fail "npm ci --omit=dev installed dev dependencies"
say "2. /opt/vit installed by the Dockerfile's commands ($((SECONDS - t0)) s)"

# --- 3 -----------------------------------------------------------------------------------------------------
# pod JOB INDEX ROOT: the environment and argv of JOB's container for completion index INDEX, NUL-separated
# ("K=V"..., "--", argv...), resolved as the Job controller and kubelet do, with /data -> ROOT/data and
# /cache -> ROOT/cache-INDEX.
pod() {
  tools "$T/vit-jobs.yaml" "$@" <<'EOF'
import { parseAllDocuments } from 'yaml';
import { readFileSync } from 'node:fs';
const [file, job, index, root] = process.argv.slice(2);
const spec = parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJS()).find((d) => d.metadata.name === job).spec;
const [c] = spec.template.spec.containers;
const local = (v) => v.replaceAll('/data/', `${root}/data/`).replace(/^\/cache$/, `${root}/cache-${index}`);
const env = spec.completionMode === 'Indexed' ? { JOB_COMPLETION_INDEX: index } : {};
for (const e of c.env ?? []) {
  const from = e.valueFrom;
  if (from?.fieldRef?.fieldPath === "metadata.annotations['batch.kubernetes.io/job-completion-index']") env[e.name] = index;
  else if (from?.resourceFieldRef?.resource === 'limits.cpu') env[e.name] = String(Math.ceil(Number(c.resources.limits.cpu)));
  else if (from !== undefined) throw new Error(`no stand-in for ${JSON.stringify(from)}`);
  else env[e.name] = local(e.value);
}
const expand = (s) => s.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name) => env[name] ?? m);
const argv = [...c.command, ...(c.args ?? [])].map((a) => local(expand(a)));
process.stdout.write([...Object.entries(env).map(([k, v]) => `${k}=${v}`), '--', ...argv].map((s) => `${s}\0`).join(''));
EOF
}
# start_pod JOB INDEX ROOT: runs that container's command in a PID namespace of its own (its command is PID
# 1 there), in the background, with a container's sparse environment; sets $ns to the unshare process.
start_pod() {
  local spec=() envs=() argv=() item seen=0
  mapfile -d '' spec < <(pod "$@")
  for item in "${spec[@]}"; do
    if [ "$seen" = 1 ]; then argv+=("$item"); elif [ "$item" = -- ]; then seen=1; else envs+=("$item"); fi
  done
  env -i PATH="$T/bin:/usr/local/bin:/usr/bin:/bin" HOME="$T/home" "${envs[@]}" \
    unshare --pid --fork --mount-proc "${argv[@]}" 2>>"$3/pods.log" &
  ns=$!
}
run_pod() {
  start_pod "$@"
  wait "$ns"
}

data=$T/volume
mkdir -p "$data/data/out"
bash "$repo/scripts/ci-photos.sh" "$data/data/photos"
cp -r "$repo/models/vit-digits" "$data/data/model"
for ((i = 0; i < shards; i++)); do
  status=0
  run_pod vit-classify "$i" "$data" || status=$?
  [ "$status" -eq 0 ] || fail "pod $i exited $status (see $data/pods.log)"
done
[ "$(cat "$data"/data/out/labels-part-*.csv | grep -c 'not an image')" -eq 1 ] ||
  fail "the unreadable input does not have exactly one error row"
status=0
run_pod vit-merge "" "$data" || status=$?
[ "$status" -eq 0 ] || fail "the merge exited $status"
status=0
vit classify "$data/data/photos" -m "$data/data/model" >"$T/unsharded.csv" 2>/dev/null || status=$?
[ "$status" -eq 3 ] || fail "the unsharded run exited $status, expected 3"
cmp "$data/data/out/labels.csv" "$T/unsharded.csv" || fail "the merge differs from one unsharded run"
say "3. $shards pods (one with an error row, exit 0 through tini -e 3) and the merge: byte-identical to one run ($((SECONDS - t0)) s)"

# SIGTERM: pod 0 over 40 copies of the photos, stopped once it has written rows, then run again.
big=$T/big
mkdir -p "$big/data/out" "$big/data/photos"
for c in $(seq 40); do cp -al "$data/data/photos" "$big/data/photos/copy$c"; done
cp -r "$data/data/model" "$big/data/model"
part=$big/data/out/labels-part-0.csv
start_pod vit-classify 0 "$big"
end=$((SECONDS + 60))
until [ -f "$part" ] && [ "$(wc -l <"$part")" -ge 50 ]; do
  ((SECONDS < end)) || fail "pod 0 wrote no rows in 60 s"
  sleep 0.05
done
init=$(pgrep -P "$ns")
[ "$(ps -o args= -p "$init" | cut -d' ' -f1)" = /usr/bin/tini ] || fail "PID 1 of the pod is not tini: $(ps -o args= -p "$init")"
kill -TERM "$init"
status=0
wait "$ns" || status=$?
[ "$status" -eq 143 ] || fail "pod 0 exited $status after SIGTERM, expected 143"
grep -q 'SIGTERM: finishing the batch in flight' "$big/pods.log" || fail "vit did not get the SIGTERM"
[ "$(tail -c 1 "$part" | od -An -c | tr -d ' ')" = '\n' ] || fail "the stopped part ends inside a row"
stopped=$(($(wc -l <"$part") - 1))
status=0
run_pod vit-classify 0 "$big" || status=$?
[ "$status" -eq 0 ] || fail "the rerun of pod 0 exited $status"
grep -q 'resuming .*labels-part-0.csv: [1-9][0-9]* of [0-9]* inputs already done' "$big/pods.log" ||
  fail "the rerun did not continue the part"
say "   SIGTERM to PID 1 (tini): vit stopped after its batch with $stopped rows written, exit 143; the rerun continued the part ($((SECONDS - t0)) s)"
say passed
