#!/usr/bin/env bash
# CI: docs/slurm-array.sh run as a user runs it (only its documented variables set) on a real single-node
# Slurm made of Debian's packages, started here without systemd. Checks:
#   1. a 4-task array over 305 images (one unreadable) merges byte-identical to one unsharded run, and each
#      task's node-local graph cache is gone afterwards;
#   2. a task cancelled mid-run (scancel) leaves a part of complete rows, the merge then refuses (and writes
#      nothing) instead of hanging, and `bash slurm-array.sh K` continues that part to an identical merge;
#   3. a task stopped by its time limit ends with a valid part (the JSON array closed) and exit 143 recorded
#      by Slurm.
# Needs root (apt-get, daemons); elsewhere it says so and exits 0. Run by .ci/run after `npm ci && npm test`
# (it uses the built dist/). Takes about 3 minutes.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
script=$repo/docs/slurm-array.sh

# shellcheck source=scripts/ci-lib.sh
source "$repo/scripts/ci-lib.sh" ci-slurm "it installs Slurm and starts its daemons"

# --- the cluster -------------------------------------------------------------------------------------------
for c in slurmctld slurmd sbatch munged; do apt_install "$c" slurmctld slurmd slurm-client munge; done
say "Slurm $(dpkg-query -W -f='${Version}' slurmctld) installed ($((SECONDS - t0)) s)"

T=$(mktemp -d /tmp/vit-ci-slurm.XXXXXX)
munged_pid_file=/run/munge/munged.pid
started_munged=0
stop_cluster() {
  local status=$? f pid jobs=()
  # Jobs first (their slurmstepd outlive slurmd), then the daemons.
  mapfile -t jobs < <(squeue -h -o %A 2>/dev/null | sort -u)
  if [ "${#jobs[@]}" -gt 0 ]; then
    scancel "${jobs[@]}"
    for _ in $(seq 80); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  for f in "$T/slurmd.pid" "$T/slurmctld.pid" $([ "$started_munged" = 1 ] && echo "$munged_pid_file"); do
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  if [ "$status" -ne 0 ]; then
    for f in "$T"/*.log "$T"/work/*/*.log; do
      [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }
    done
  fi
  rm -rf "$T"
}
trap stop_cluster EXIT

host=$(hostname -s)
memory=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
mkdir -p "$T/state" "$T/spool"
# No cgroup plugin (none are set up without systemd): processes tracked by parentage, tasks pinned to their
# CPUs. cons_tres with a memory default lets tasks share the node. No accounting daemon: job states and
# exit codes come from slurmctld, which keeps finished jobs for MinJobAge.
cat >"$T/slurm.conf" <<EOF
ClusterName=vitci
SlurmctldHost=$host
SlurmUser=root
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=3600
KillWait=30
NodeName=$host CPUs=$(nproc) RealMemory=$((memory * 9 / 10)) State=UNKNOWN
PartitionName=ci Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$T/slurm.conf

if ! { [ -s "$munged_pid_file" ] && kill -0 "$(cat "$munged_pid_file")" 2>/dev/null; }; then
  # What systemd's unit would do: a runtime directory owned by munge, the daemon run as munge.
  mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  started_munged=1
fi
slurmctld
slurmd
for _ in $(seq 100); do
  [ "$(sinfo -h -n "$host" -o %t 2>/dev/null)" = idle ] && break
  sleep 0.2
done
[ "$(sinfo -h -n "$host" -o %t)" = idle ] || fail "node $host is not idle: $(sinfo -h -o '%t %E')"
say "cluster up: $host, $(nproc) CPUs ($((SECONDS - t0)) s)"

# --- helpers -----------------------------------------------------------------------------------------------
field() { scontrol -o show job "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
# submit INDEXES VAR=VALUE...: run the docs script as a user would, with only those settings; sets $array
# and $merge to the job ids it reports.
submit() {
  local indexes=$1 line
  shift
  line=$(env "$@" bash "$script" "$indexes") || fail "slurm-array.sh $indexes failed"
  say "  $line"
  array=$(sed -n 's/^array job \([0-9]*\) .*/\1/p' <<<"$line")
  merge=$(sed -n 's/.*merge job \([0-9]*\) .*/\1/p' <<<"$line")
  [ -n "$array" ] && [ -n "$merge" ] || fail "cannot read the job ids from: $line"
}
# Wait (up to $2 seconds) until none of the jobs $1 (comma-separated) is queued or running.
wait_jobs() {
  local end=$((SECONDS + $2))
  while [ -n "$(squeue -h -j "$1" -o %i 2>/dev/null)" ]; do
    ((SECONDS < end)) || fail "jobs $1 still queued after $2 s: $(squeue -h -j "$1" -o '%i %T %R' | tr '\n' ';')"
    sleep 0.5
  done
}
expect_state() {
  local state code
  state=$(field "$1" JobState)
  code=$(field "$1" ExitCode)
  [ "$state" = "$2" ] && [ "$code" = "$3" ] || fail "job $1: state $state, exit code $code; expected $2, $3"
}
# The number of inputs a part has rows for; fails unless it is one valid JSON array (.json) or unless its
# last line is complete (CSV: k rows per input, each starting with the path).
inputs_in() {
  node -e '
    const [file] = process.argv.slice(1);
    const text = require("fs").readFileSync(file, "utf8");
    if (file.endsWith(".json")) {
      console.log(JSON.parse(text).length);
    } else {
      if (!text.endsWith("\n")) throw new Error(file + ": the last line is not complete");
      console.log(new Set(text.split("\n").slice(1, -1).map((l) => l.split(",")[0])).size);
    }' "$1"
}
# The node-local graph cache a task's log (vit -v) names; it must be gone once the task has ended.
check_cache_removed() {
  local cache
  cache=$(sed -n 's/^vit: onnx: wrote \(.*\)\/[0-9a-f]*$/\1/p' "$1")
  [[ $cache == /tmp/vit-graphs-* ]] || fail "$1: the graph cache was not node-local: '$cache'"
  [ ! -e "$cache" ] || fail "$cache is still there after its task ended"
}

# --- the photos: 38 example digits in 8 variants, and one unreadable file ----------------------------------
W=$T/work
mkdir -p "$T/bin"
bash "$repo/scripts/ci-photos.sh" "$W/photos"
n_photos=305
# vit on PATH, as an installed command would be.
ln -s "$repo/bin/vit.js" "$T/bin/vit"
export PATH=$T/bin:$PATH
cd "$W"
say "305 photos made ($((SECONDS - t0)) s)"
# Reference runs outside Slurm: the same command without shards, graph cache kept out of ~/.cache.
reference() {
  local out=$1 status=0
  shift
  VIT_GRAPH_CACHE=$T/graphs vit classify photos -o "$out" "$@" || status=$?
  [ "$status" -eq 3 ] || fail "the unsharded run exited $status, expected 3 (one unreadable input)"
}

# --- 3 (submitted first: it runs for its whole minute while 1 and 2 go on beside it) ----------------------
# B/16 at 384 px (577 tokens, about 3.5x the work of 224 px): on one core the photos take several minutes. At
# 224 px a fast machine (Sapphire Rapids, 2026-12-02) finished them right at the limit, and the task ended 0.
say "3. time limit: B/16 at 384 px (random weights) over every photo in one task with a 1-minute limit"
submit "" PHOTOS=photos OUT=limit/labels SHARDS=1 FORMAT=json MODEL=vit_base_patch16_224 \
  VIT_ARGS="--random-weights --image-size 384 -k 1 -b 4 -v" CPUS=1 MEM=2G TIME=1
limit_array=$array limit_merge=$merge

# --- 1 -----------------------------------------------------------------------------------------------------
say "1. 4 shards of the digits model vs one run"
reference digits.csv
submit "" PHOTOS=photos OUT=digits/labels SHARDS=4 VIT_ARGS=-v CPUS=1 MEM=1G TIME=10
wait_jobs "$array,$merge" 120
for i in 0 1 2 3; do
  expect_state "${array}_$i" COMPLETED 0:0
  check_cache_removed "digits/vit-${array}_$i.log"
done
expect_state "$merge" COMPLETED 0:0
cmp digits/labels.csv digits.csv || fail "the merge of 4 shards differs from the unsharded run"
say "  merge byte-identical to the unsharded run ($(inputs_in digits/labels.csv) inputs); graph caches removed ($((SECONDS - t0)) s)"

# --- 2 -----------------------------------------------------------------------------------------------------
say "2. cancel a task mid-run, then redo its shard (ViT-Ti/16, random weights)"
tiny=(PHOTOS=photos OUT=tiny/labels SHARDS=4 MODEL=vit_tiny_patch16_224 VIT_ARGS="--random-weights -k 3 -b 2 -v" CPUS=1 MEM=1G TIME=10)
reference tiny.csv -m vit_tiny_patch16_224 --random-weights -k 3 -b 2
submit "" "${tiny[@]}"
victim=${array}_1
end=$((SECONDS + 120))
until [ "$(field "$victim" JobState)" = RUNNING ] && [ -f tiny/labels-part-1.csv ] && [ "$(wc -l <tiny/labels-part-1.csv)" -ge 7 ]; do
  ((SECONDS < end)) || fail "$victim never got to write rows for 2 inputs"
  sleep 0.1
done
scancel "$victim"
wait_jobs "$array,$merge" 180
expect_state "$victim" CANCELLED 143:0
grep -q 'SIGTERM: finishing the batch in flight' "tiny/vit-$victim.log" || fail "vit in $victim did not get the SIGTERM"
done_inputs=$(inputs_in tiny/labels-part-1.csv)
expect_state "$merge" FAILED 1:0
grep -q 'labels-part-1.csv was stopped before all its inputs were done: finish it with --resume' "tiny/vit-merge-$merge.log" ||
  fail "the merge after the cancel failed for another reason"
[ ! -e tiny/labels.csv ] || fail "the refused merge left tiny/labels.csv"
say "  cancelled with $done_inputs inputs in its part (complete), exit 143; the merge refused and wrote nothing"
submit 1 "${tiny[@]}"
wait_jobs "$array,$merge" 180
expect_state "${array}_1" COMPLETED 0:0
# --resume keeps every complete row but gives up the last input's: its k rows may not all be there.
resumed=$(sed -n 's/^vit: resuming tiny\/labels-part-1.csv: \([0-9]*\) of [0-9]* inputs already done$/\1/p' "tiny/vit-${array}_1.log")
[ "${resumed:-0}" -gt 0 ] && [ "$resumed" -ge $((done_inputs - 1)) ] || fail "the redone shard did not continue its part (${resumed:-no} inputs kept of $done_inputs)"
grep -q "shard 2/4 (from --shard)" "tiny/vit-${array}_1.log" || fail "the redone index 1 did not run shard 2/4"
expect_state "$merge" COMPLETED 0:0
cmp tiny/labels.csv tiny.csv || fail "the merge after the redo differs from the unsharded run"
say "  redo of index 1 (shard 2/4) continued its part ($resumed inputs kept); merge byte-identical to the unsharded run ($((SECONDS - t0)) s)"

# --- 3, the checks -----------------------------------------------------------------------------------------
wait_jobs "$limit_array,$limit_merge" 240
expect_state "${limit_array}_0" TIMEOUT 143:0
log=limit/vit-${limit_array}_0.log
grep -q 'SIGTERM: finishing the batch in flight' "$log" || fail "vit in the timed-out task did not get the SIGTERM"
check_cache_removed "$log"
limit_inputs=$(inputs_in limit/labels-part-0.json) || fail "the timed-out part is not a valid JSON array"
((limit_inputs > 0 && limit_inputs < n_photos)) || fail "the timed-out part has $limit_inputs inputs, expected some of $n_photos"
expect_state "$limit_merge" FAILED 1:0
say "  timed out after $limit_inputs of $n_photos inputs: a valid JSON array, exit 143 (TIMEOUT); merge refused"
say "passed ($((SECONDS - t0)) s)"
