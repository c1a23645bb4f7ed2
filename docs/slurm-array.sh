#!/bin/bash
# vit over a large photo collection as a Slurm job array (one task per shard), then one merge.
#
#   bash slurm-array.sh          # submit every shard (array indexes 0 .. SHARDS-1) and a merge after them
#   bash slurm-array.sh 2        # redo one shard: index 2 is shard 3/SHARDS; then merge again
#   bash slurm-array.sh 1,5-7    # several (sbatch --array syntax; a %N suffix throttles them)
#
# Settings, from the environment (defaults in brackets). They are read when you submit and passed to the
# jobs; set them the same way when you redo a shard.
#   PHOTOS    [photos]   the inputs: a directory, an image file or a quoted glob, at the same path on every
#                        node (a shared file system). Shards are chosen by a hash of each path as written.
#   MODEL     []         vit's -m: a preset, a model directory or a hub id (empty: the bundled digits model).
#                        Fetch a hub model once before submitting (`vit fetch ORG/NAME`): the Hugging Face
#                        cache is shared by every task, and a model found there is not downloaded again.
#   OUT       [vit-out/labels]  the part of shard index I is $OUT-part-I.$FORMAT, the merge $OUT.$FORMAT
#   SHARDS    [16]       the number of shards; keep it unchanged when redoing one
#   COMMAND   [classify] the vit command: classify or embed
#   FORMAT    [csv]      csv, json or jsonl (npy too for embed)
#   VIT_ARGS  []         more arguments for every task, split at spaces, e.g. "-k 1 --batch-size 16"
#   CPUS [4]  MEM [4G]  TIME [04:00:00]   per task: --cpus-per-task, --mem, --time
#   LOGS      [the directory of OUT]      where vit-<job>_<index>.log and vit-merge-<job>.log go
# Anything else sbatch takes from its own environment variables: SBATCH_PARTITION, SBATCH_ACCOUNT,
# SBATCH_QOS, ... (they apply to the tasks and the merge alike). vit must be on PATH on the nodes.
#
# Stopping and redoing. Each task writes its part in place with --resume, synced after every batch. A task
# that is requeued (preemption, node failure: --requeue) or redone continues its part: the inputs it holds
# rows for are skipped. At the time limit, and on scancel, Slurm sends SIGTERM to every process of the task:
# vit finishes the batch in flight, leaves a valid part (complete rows; a JSON array closed) and exits 143,
# which Slurm records (state TIMEOUT or CANCELLED). The batch shell traps SIGTERM only to stay alive until
# vit is done; if it died, Slurm would SIGKILL vit at once. vit must finish its batch within the cluster's
# KillWait (`scontrol show config | grep KillWait`, 30 s by default): pick --batch-size to fit.
# To redo shard index I from nothing, remove $OUT-part-I.$FORMAT first. Error rows (unreadable images) are
# kept by --resume, not retried: remove their lines from the part to try those inputs again. Redo a shard
# only once its task has ended (squeue shows it no more): two tasks must not write one part.
#
# Why the merge cannot hang. It depends on the tasks with `afterany`: it starts once every task of its
# submission has ended, however it ended. `vit merge --inputs` writes $OUT.$FORMAT (atomically) only when
# every input has exactly one row over all the parts; a part that is missing, cut short or being written
# makes it fail, naming the part stopped before its end or the inputs without a row, and write nothing. (`afterok` would instead leave the
# merge pending forever after one failure.) After a redo, the merge of whichever submission ends last sees
# every part complete; earlier ones fail harmlessly.
set -u

PHOTOS=${PHOTOS:-photos}
MODEL=${MODEL:-}
OUT=${OUT:-vit-out/labels}
SHARDS=${SHARDS:-16}
COMMAND=${COMMAND:-classify}
FORMAT=${FORMAT:-csv}
VIT_ARGS=${VIT_ARGS:-}
CPUS=${CPUS:-4}
MEM=${MEM:-4G}
TIME=${TIME:-04:00:00}
LOGS=${LOGS:-$(dirname "$OUT")}

part() { echo "$OUT-part-$1.$FORMAT"; }

die() {
  echo "slurm-array.sh: $*" >&2
  exit 2
}

# The greatest array index named by sbatch --array syntax (1,3-5,8-20:4 with an optional %N).
greatest_index() {
  local spec=${1%\%*} item max=-1 n
  for item in ${spec//,/ }; do
    [[ $item =~ ^([0-9]+)(-([0-9]+)(:[0-9]+)?)?$ ]] || return 1
    n=${BASH_REMATCH[3]:-${BASH_REMATCH[1]}}
    ((10#$n > max)) && max=$((10#$n))
  done
  echo "$max"
}

submit() {
  [[ $SHARDS =~ ^[1-9][0-9]*$ ]] || die "SHARDS must be a whole number from 1, not \"$SHARDS\""
  local indexes=${1:-0-$((SHARDS - 1))} max
  max=$(greatest_index "$indexes") || die "\"$indexes\" is not a list of array indexes like 2 or 0-3,7"
  ((max < SHARDS)) || die "index $max is not a shard: with SHARDS=$SHARDS the indexes are 0 to $((SHARDS - 1))"
  [[ $PHOTOS == *[*?[]* || -e $PHOTOS ]] || die "PHOTOS: $PHOTOS does not exist"
  mkdir -p "$(dirname "$OUT")" "$LOGS" || exit 1
  export PHOTOS MODEL OUT SHARDS COMMAND FORMAT VIT_ARGS
  local array
  array=$(sbatch --parsable --export=ALL --job-name="vit-$COMMAND" --array="$indexes" \
    --cpus-per-task="$CPUS" --mem="$MEM" --time="$TIME" --requeue --open-mode=append \
    --output="$LOGS/vit-%A_%a.log" "$0" --task) || exit 1
  local merge
  merge=$(sbatch --parsable --export=ALL --job-name=vit-merge --dependency="afterany:${array%%;*}" \
    --cpus-per-task=1 --mem=2G --time=01:00:00 --open-mode=append \
    --output="$LOGS/vit-merge-%j.log" "$0" --merge) || exit 1
  echo "array job ${array%%;*} (indexes $indexes; index I is shard I+1 of $SHARDS), merge job ${merge%%;*} -> $OUT.$FORMAT"
}

task() {
  local index=$SLURM_ARRAY_TASK_ID
  local model_args=()
  [ -n "$MODEL" ] && model_args=(-m "$MODEL")
  # Compiled ONNX graphs (hundreds of MB for a base model) go to node-local disk, one directory per task,
  # removed however the script ends; the Hugging Face cache of downloaded models stays where it is, shared.
  export VIT_GRAPH_CACHE="${TMPDIR:-/tmp}/vit-graphs-$SLURM_JOB_ID"
  trap 'rm -rf "$VIT_GRAPH_CACHE"' EXIT
  trap 'echo "slurm-array.sh: SIGTERM; vit has it too and stops after its batch in flight" >&2' TERM
  # shellcheck disable=SC2086 # VIT_ARGS is a list of arguments
  vit "$COMMAND" "$PHOTOS" "${model_args[@]}" --shard "$((index + 1))/$SHARDS" --resume -f "$FORMAT" \
    -o "$(part "$index")" $VIT_ARGS
  local status=$?
  # 3: the shard is finished and some inputs failed; their rows say why (error column). Nothing to retry.
  [ "$status" -eq 3 ] && status=0
  exit "$status"
}

merge() {
  local parts=() i
  for ((i = 0; i < SHARDS; i++)); do parts+=("$(part "$i")"); done
  vit merge "$OUT.$FORMAT" "${parts[@]}" --inputs "$PHOTOS"
}

case "${1:-}" in
  --task) task ;;
  --merge) merge ;;
  *) submit "$@" ;;
esac
