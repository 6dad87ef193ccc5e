#!/usr/bin/env bash
# Nightly prewarm wrapper: runs `planner ensure --all`, keeps the NDJSON event log, and alerts
# when the summary says some runtime failed. Used by the cron line, the systemd service and
# the Kubernetes CronJob beside this file.
#
# Exit codes (passed through from planner):
#   0   every runtime ensured
#   1   some runtime failed (the summary line names which, with the masked error)
#   2   configuration or usage error (fix runtimes.toml; retrying will not help)
#   75  a gc holds the run lock (--no-wait); runs overlap, only gc runs alone
set -uo pipefail

log_dir=${PLANNER_LOG_DIR:-/var/log/planner}
mkdir -p "$log_dir"
log="$log_dir/prewarm-$(date -u +%Y%m%dT%H%M%SZ).ndjson"

# --json: NDJSON events on stdout (last line: the summary); -q: only errors on stderr.
planner ensure --all --json --no-wait -q >"$log"
code=$?

summary=$(tail -n 1 "$log")
failed=$(printf '%s' "$summary" | jq -r 'select(.event == "summary") | .failed' 2>/dev/null)
if [ "$code" -ne 0 ] || [ "${failed:-0}" != 0 ]; then
  # Replace this with your alerting (mail, a webhook, a metrics push…).
  printf 'planner prewarm: exit %s, %s runtime(s) failed\n' "$code" "${failed:-?}" >&2
  printf '%s' "$summary" | jq -r '.runtimes[]? | select(.status == "failed") | "  \(.runtime): \(.error)"' >&2
fi
exit "$code"
