#!/usr/bin/env bash
# Slurm Prolog: check each node's machine before a job lands on it, and drain a node that fails.
#
#   slurm.conf:  Prolog=/etc/slurm/prolog.d/preflight.sh
#                PrologFlags=Alloc          # run it when the allocation is made, on every node
#
# It checks the node against a node-health spec (PREFLIGHT_NODE_SPEC, default
# /etc/rl-preflight/node.yaml: the GPUs, host memory, CPUs and storage every training node must
# have), with only the GPUs Slurm gave the job visible. preflight's exit codes decide:
#   0  the node passed                      -> exit 0: the job starts
#   1  the node failed its checks           -> exit 1: Slurm drains the node and requeues the job
#   2  preflight could not judge (a broken  -> exit 0: a tool or spec problem must not drain the
#      spec, a missing package)                fleet; it is logged for the admins instead
set -u
SPEC=${PREFLIGHT_NODE_SPEC:-/etc/rl-preflight/node.yaml}
LOG=${PREFLIGHT_LOG_DIR:-/var/log/rl-preflight}/prolog-${SLURM_JOB_ID:-nojob}-$(hostname).log
mkdir -p "$(dirname "$LOG")"
# The job's GPUs, as CUDA will number them inside the job (Slurm sets SLURM_JOB_GPUS for prologs).
if [[ -n "${SLURM_JOB_GPUS:-}" ]]; then
    export CUDA_VISIBLE_DEVICES=$SLURM_JOB_GPUS
fi
preflight check "$SPEC" --level node --no-attest --color never > "$LOG" 2>&1
code=$?
case $code in
    0) exit 0 ;;
    1) echo "rl-preflight: node $(hostname) failed its checks (see $LOG)" >&2
       exit 1 ;;
    *) echo "rl-preflight: could not judge node $(hostname) (exit $code, see $LOG); not draining it" >&2
       exit 0 ;;
esac
