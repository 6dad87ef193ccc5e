#!/usr/bin/env bash
# A provisioner's client in one call: ensures runtime $1 and prints the reference to hand to
# `docker run` / ContainerCreate, pinned to one image for good (the summary's `pinned`).
# On failure it prints the reason from the JSON alone (never parses free text) to stderr and
# exits with planner's code: 1 the runtime failed (or the engine is unusable), 2 usage or
# config error, 75 busy (--no-wait), 130/143 stopped. See docs/json.md.
#
#   ref=$(examples/provisioner/pinned.sh codex) && docker run --rm "$ref" true
set -uo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 RUNTIME" >&2
  exit 2
fi

# The last NDJSON line is the summary or an error event; both carry the exit code.
last=$(planner ensure "$1" --json -q | tail -n 1)
code=${PIPESTATUS[0]}

# Prints "pinned<TAB>REF" or "error<TAB>MESSAGE" from the last line (jq, else python3).
read_last() {
  if command -v jq >/dev/null; then
    jq -r --arg rt "$1" '
      if .event == "summary" then
        (.runtimes[] | select(.runtime == $rt)) as $r
        | if $r.status == "ensured" then "pinned\t\($r.pinned)" else "error\t\($r.error)" end
      else "error\t\(.message)" end'
  else
    python3 -c '
import json, sys
line = json.loads(sys.stdin.read())
if line["event"] == "summary":
    r = next(r for r in line["runtimes"] if r["runtime"] == sys.argv[1])
    print("pinned\t" + r["pinned"] if r["status"] == "ensured" else "error\t" + r["error"])
else:
    print("error\t" + line["message"])
' "$1"
  fi
}

if [ -z "$last" ]; then
  echo "planner printed no JSON (exit $code)" >&2
  exit "${code:-1}"
fi
answer=$(printf '%s\n' "$last" | read_last "$1") || exit "${code:-1}"
case $answer in
  pinned$'\t'*) printf '%s\n' "${answer#pinned$'\t'}" ;;
  *) printf 'planner: %s\n' "${answer#error$'\t'}" >&2 ;;
esac
exit "$code"
