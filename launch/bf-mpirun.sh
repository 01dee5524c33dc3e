#!/usr/bin/env bash
# Runs budgetformer under Open MPI's mpirun with the settings data-parallel training wants:
# one OpenBLAS thread per rank (the ranks are the parallelism), each rank bound to its own core(s),
# --oversubscribe only when a single machine (no hostfile, no Slurm/PBS allocation) is asked for more
# ranks than it has cores, and the signals a scheduler or a user sends to this script passed to mpirun.
#
#   usage: launch/bf-mpirun.sh -n RANKS [--hostfile FILE] [--bind core|none] [--threads T]
#                              [--grace S] [--exe PATH] [--dry-run] -- BUDGETFORMER-ARGS...
#   e.g.   launch/bf-mpirun.sh -n 2 -- train --config configs/tiny.ini --set run.dir=runs/tiny-2
#          launch/bf-mpirun.sh -n 64 --hostfile hosts -- train --config configs/wordnet-pos.ini
#          launch/bf-mpirun.sh -n 2 -- eval --checkpoint runs/x/checkpoints/step-00002000.h5 --data data/x/test.h5
#
#   -n RANKS        MPI processes (ranks)
#   --hostfile F    Open MPI hostfile (launch/hostfile.example); without it every rank runs on this machine
#   --bind core     (default) --map-by core --bind-to core; with --threads T > 1 each rank gets T cores
#                   (--map-by slot:PE=T --bind-to core); none: no binding (--bind-to none)
#   --threads T     OPENBLAS_NUM_THREADS (and OMP_NUM_THREADS) of every rank, default 1
#   --grace S       Open MPI's odls_base_sigkill_timeout (default 30 here; Open MPI's own default is 1): on
#                   SIGTERM/SIGINT, or when a rank dies, mpirun sends the ranks SIGCONT, waits S s, sends
#                   SIGTERM, waits S s, sends SIGKILL (Open MPI 4.x). A scheduler that sends SIGTERM to every
#                   process of the job (PBS, SGE, LSF) thus leaves the ranks 2 S s for their update and
#                   checkpoint instead of about 2 s
#   --exe PATH      the program (default: $BF_EXE, else budgetformer beside this script (an installed
#                   bin/), else build/budgetformer next to this script's launch/, else budgetformer on PATH)
#   --dry-run       print the mpirun command and exit
# Environment: MPIRUN (default mpirun), BF_MPIRUN_EXTRA (extra mpirun options, split on blanks).
#
# Signals: SIGTERM, SIGINT and SIGUSR1 sent to this script all reach mpirun as SIGUSR1, which mpirun passes
# to every rank at once: the trainer finishes its update, writes a checkpoint and exits with status 75
# (this script's status too; docs/FAILURES.md). SIGTERM sent to mpirun itself as well (a scheduler that
# signals every process of the job) makes mpirun end the job on its own, but only after --grace s, and the
# ranks have it too: they checkpoint and exit 75. Rank 0 leaves that status in BF_STATUS_FILE (a temporary
# file of this script): once it is there, this script ends mpirun's wait (SIGKILL to mpirun, whose ranks
# have exited) and exits 75 whatever mpirun's own status. See docs/FAILURES.md.
set -euo pipefail

usage() { sed -n '/^#   usage:/,/BUDGETFORMER-ARGS/s/^#   //p' "$0" >&2; echo "see the header of $0 for every option" >&2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ranks='' hostfile='' bind=core threads=1 grace='' dry=0
if [ -n "${BF_EXE:-}" ]; then exe=$BF_EXE
elif [ -x "$here/budgetformer" ]; then exe=$here/budgetformer            # installed: P/bin/bf-mpirun.sh
elif [ -x "$here/../build/budgetformer" ]; then exe=$here/../build/budgetformer
else exe=$(command -v budgetformer || echo "$here/../build/budgetformer")
fi
while [ $# -gt 0 ]; do
  case $1 in
    -n|-np|--ranks) ranks=${2:?-n needs a number}; shift 2 ;;
    --hostfile) hostfile=${2:?--hostfile needs a file}; shift 2 ;;
    --bind) bind=${2:?--bind needs core or none}; shift 2 ;;
    --threads) threads=${2:?--threads needs a number}; shift 2 ;;
    --grace) grace=${2:?--grace needs seconds}; shift 2 ;;
    --exe) exe=${2:?--exe needs a path}; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "bf-mpirun: unknown option '$1' (budgetformer's own arguments go after --)" >&2; usage; exit 2 ;;
  esac
done
is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
is_count "$ranks" || { echo "bf-mpirun: -n RANKS is required and must be a positive integer, got '$ranks'" >&2; exit 2; }
is_count "$threads" || { echo "bf-mpirun: --threads expects a positive integer, got '$threads'" >&2; exit 2; }
[ -z "$grace" ] || [[ $grace =~ ^[0-9]+$ ]] || { echo "bf-mpirun: --grace expects whole seconds, got '$grace'" >&2; exit 2; }
case $bind in core|none) ;; *) echo "bf-mpirun: --bind expects core or none, got '$bind'" >&2; exit 2 ;; esac
[ $# -gt 0 ] || { echo "bf-mpirun: nothing to run: give budgetformer's arguments after --" >&2; usage; exit 2; }
if [ -n "$hostfile" ] && [ ! -r "$hostfile" ]; then
  echo "bf-mpirun: --hostfile $hostfile: not a readable file" >&2; exit 2
fi
if [ ! -x "$exe" ]; then
  echo "bf-mpirun: $exe is not an executable; build first (cmake -S . -B build && cmake --build build) or pass --exe / set BF_EXE" >&2
  exit 2
fi

mpirun=${MPIRUN:-mpirun}
cmd=("$mpirun" -np "$ranks")
[ -n "$hostfile" ] && cmd+=(--hostfile "$hostfile")
[ "$(id -u)" = 0 ] && cmd+=(--allow-run-as-root)

# Cores needed on this machine when there is no hostfile: ranks x threads. Beyond the cores, Open MPI
# refuses to start without --oversubscribe, and binding several ranks to one core only slows them down.
# Inside a Slurm or PBS allocation mpirun takes the nodes from the scheduler: no local arithmetic then.
cores=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)
in_allocation=0
[ -n "${SLURM_JOB_NODELIST:-}${PBS_NODEFILE:-}" ] && in_allocation=1
oversubscribed=0
if [ -z "$hostfile" ] && [ "$in_allocation" = 0 ] && [ $((ranks * threads)) -gt "$cores" ]; then
  oversubscribed=1
  cmd+=(--oversubscribe)
  if [ "$bind" = core ]; then
    echo "bf-mpirun: note: $ranks ranks x $threads threads exceed the $cores cores here: oversubscribing, no binding" >&2
  fi
fi
if [ "$bind" = core ] && [ "$oversubscribed" = 0 ]; then
  if [ "$threads" -gt 1 ]; then cmd+=(--map-by "slot:PE=$threads" --bind-to core)
  else cmd+=(--map-by core --bind-to core)
  fi
else
  cmd+=(--bind-to none)
fi
cmd+=(--mca odls_base_sigkill_timeout "${grace:-30}")
status_file=$(mktemp "${TMPDIR:-/tmp}/bf-mpirun-status.XXXXXX")
rm -f "$status_file"
cmd+=(-x "OPENBLAS_NUM_THREADS=$threads" -x "OMP_NUM_THREADS=$threads" -x "BF_STATUS_FILE=$status_file")
# shellcheck disable=SC2206
[ -n "${BF_MPIRUN_EXTRA:-}" ] && cmd+=($BF_MPIRUN_EXTRA)
cmd+=("$exe" "$@")

printf 'bf-mpirun: running:' >&2
printf ' %q' "${cmd[@]}" >&2
printf '\n' >&2
[ "$dry" = 1 ] && exit 0
trap 'rm -f "$status_file" "$status_file.tmp"' EXIT

# mpirun runs in the background so this shell can take signals and pass them on; wait returns early
# (status > 128) when a trapped signal arrives, so wait again until mpirun has really exited.
# mpirun also gets a process group of its own (set -m) and no terminal input: a Ctrl-C in a terminal then
# reaches this script alone, which passes it on as SIGUSR1, and not mpirun, which would end the job itself.
set -m
"${cmd[@]}" < /dev/null &
pid=$!
set +m
# Every stop signal goes on as SIGUSR1: mpirun forwards it to the ranks untouched, whereas on SIGTERM/SIGINT
# it would kill them about a second later (Open MPI 4), before a checkpoint could be written.
stopping=0
for sig in TERM INT USR1; do
  # shellcheck disable=SC2064  # $sig and $pid are meant to expand now
  trap "stopping=1; echo 'bf-mpirun: SIG$sig: asking the ranks to checkpoint and stop (SIGUSR1 to mpirun, pid $pid)' >&2; kill -s USR1 $pid 2>/dev/null || true" "$sig"
done
rc=0
while :; do
  wait "$pid" && rc=0 || rc=$?
  kill -0 "$pid" 2>/dev/null || break
  # A stop signal arrived. If mpirun was signalled too it waits out --grace even after the ranks have gone:
  # once rank 0 has left its status, give mpirun 5 s to finish on its own, then end it.
  while [ "$stopping" = 1 ] && kill -0 "$pid" 2>/dev/null && [ ! -s "$status_file" ]; do sleep 0.2; done
  if [ -s "$status_file" ]; then
    for _ in $(seq 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { echo "bf-mpirun: the ranks have exited; ending mpirun's wait (SIGKILL)" >&2; kill -s KILL "$pid" 2>/dev/null || true; }
  fi
done
# The ranks' agreed status (75: stopped on request with a checkpoint) when mpirun's only says it was signalled.
if [ "$rc" != 0 ] && [ "$(cat "$status_file" 2>/dev/null)" = 75 ]; then
  echo "bf-mpirun: the ranks stopped on request with a checkpoint (mpirun's status was $rc): exit status 75" >&2
  rc=75
fi
exit "$rc"
