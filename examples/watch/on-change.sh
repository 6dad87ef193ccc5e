#!/bin/sh
# The --on-change hook of planner-watch.service and k8s-deployment.yaml: called once per
# runtime whose :latest moved, with
#   PLANNER_RUNTIME  the runtime (codex)
#   PLANNER_IMAGE    its :latest reference (molecule-local/workspace-template-codex:latest)
#   PLANNER_OLD_ID   the image id :latest named before (sha256:…)
#   PLANNER_NEW_ID   the image id it names now
# Exit 0: the change is handled (the watcher records it). Anything else (or running past
# --hook-timeout): the watcher keeps the old id and calls the hook again next tick, so make
# it safe to run twice. It runs without the git token in its environment; its output is
# relayed to the watcher's log, masked.
set -eu
echo "$PLANNER_RUNTIME: $PLANNER_IMAGE moved ${PLANNER_OLD_ID#sha256:} -> ${PLANNER_NEW_ID#sha256:}"

# The origin's refresh-and-recreate: containers still running the old image are recreated on
# the new one. Replace with your own (docker compose up -d, a webhook, a rollout restart…).
for container in $(docker ps -q --filter "ancestor=$PLANNER_OLD_ID"); do
  echo "  recreate container $container on $PLANNER_IMAGE"
  # e.g.: docker compose -p "ws-$container" up -d --force-recreate
done
