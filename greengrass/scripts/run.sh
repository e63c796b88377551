#!/bin/sh
# Greengrass Startup and Shutdown steps of the Lookout component.
#
#   run.sh start   start the device in the background and wait until it is ready
#                  (models and gallery loaded, publisher connected): exit 0 then, so
#                  the nucleus reports RUNNING only for a device that works; exit 1
#                  if it dies or is not ready within LOOKOUT_START_TIMEOUT seconds,
#                  so a bad deployment fails (and rolls back if so configured)
#   run.sh stop    SIGTERM (the device flushes, publishes its offline status, exits),
#                  SIGKILL after 30 s
#   run.sh status  exit 0 when running
#
# Files in LOOKOUT_WORK_DIR: venv/ (install.sh), lookout.pid, lookout.ready, logs/.
set -eu

work="${LOOKOUT_WORK_DIR:?LOOKOUT_WORK_DIR is not set (the recipe sets it)}"
venv="$work/venv"
pidfile="$work/lookout.pid"
ready="$work/lookout.ready"
logs="$work/logs"
timeout="${LOOKOUT_START_TIMEOUT:-240}"
timeout="${timeout%%.*}"   # configuration numbers may arrive as floats (240.0)
case "$timeout" in ''|*[!0-9]*) timeout=240 ;; esac

say() { printf 'lookout: %s\n' "$*"; }

alive() {  # a live process, not a zombie waiting for this shell to reap it
  kill -0 "$1" 2>/dev/null || return 1
  state="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)"
  [ "$state" != Z ]
}

running_pid() {
  [ -f "$pidfile" ] || return 1
  pid="$(cat "$pidfile" 2>/dev/null)"
  case "$pid" in ''|*[!0-9]*) return 1 ;; esac
  alive "$pid" || return 1
  # after a reboot the number may belong to another process: check it is ours
  grep -q "lookout.greengrass.launch" "/proc/$pid/cmdline" 2>/dev/null || return 1
  printf '%s' "$pid"
}

stop() {
  pid="$(running_pid)" || { rm -f "$pidfile" "$ready"; say "not running"; return 0; }
  say "stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  i=0
  while alive "$pid"; do
    i=$((i + 1))
    if [ "$i" -ge 300 ]; then
      say "still running after 30 s: SIGKILL (the outbox keeps unsent events for the next start)"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  rm -f "$pidfile" "$ready"
  say "stopped"
}

start() {
  [ -x "$venv/bin/python" ] || { say "no virtualenv at $venv: the Install step has not run" >&2; exit 1; }
  if running_pid >/dev/null; then stop; fi
  rm -f "$ready" "$pidfile"
  mkdir -p "$logs"
  say "starting the device (log: $logs/lookout.log)"
  # detached from this script: Greengrass moves to RUNNING when this step exits
  if command -v setsid >/dev/null 2>&1; then detach=setsid; else detach=nohup; fi
  $detach "$venv/bin/python" -m lookout.greengrass.launch \
      --ready-file "$ready" --pid-file "$pidfile" --log-file "$logs/lookout.log" \
      </dev/null >>"$logs/stdout.log" 2>&1 &
  bg=$!
  waited=0
  dead=0
  while [ ! -f "$ready" ]; do
    # the launcher writes its own pid first thing (setsid may have forked)
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    [ -n "$pid" ] || pid="$bg"
    if alive "$pid"; then dead=0; else dead=$((dead + 1)); fi
    if [ "$dead" -ge 20 ]; then
      say "the device exited before it was ready; last log lines:" >&2
      tail -n 30 "$logs/stdout.log" >&2 2>/dev/null || true
      tail -n 10 "$logs/lookout.log" >&2 2>/dev/null || true
      rm -f "$pidfile"
      exit 1
    fi
    if [ "$waited" -ge "$((timeout * 10))" ]; then
      say "not ready after ${timeout} s (startTimeoutSeconds): stopping it" >&2
      tail -n 20 "$logs/lookout.log" >&2 2>/dev/null || true
      stop
      exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  say "ready: $(cat "$ready")"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if pid="$(running_pid)"; then say "running (pid $pid)"; else say "not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
