#!/usr/bin/env bash
# The demo: turn examples/demo/templates/* into local git repos, then run the main job,
# `planner ensure --all`, against them (twice: the second run is warm and does nothing).
# Needs a Docker engine; if none answers, scripts/test-env.sh installs and starts a private one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/scripts/test-env.sh"
trap stop_private_engine EXIT   # only stops an engine this script started

repos="$here/.repos"
for tpl in "$here"/templates/*/; do
  name=$(basename "$tpl")
  work=$(mktemp -d)
  cp -r "$tpl". "$work/"
  git -C "$work" init -q -b main
  git -C "$work" add -A
  # Fixed dates make the commit SHA reproducible: rerunning the demo finds its images warm.
  GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" GIT_COMMITTER_DATE="2026-01-01T00:00:00Z" \
    git -C "$work" -c user.name=demo -c user.email=demo@example.invalid commit -q -m "template $name"
  rm -rf "$repos/$name"
  mkdir -p "$repos"
  git clone -q --bare "$work" "$repos/$name"
  rm -rf "$work"
done

export PLANNER_REPO_PREFIX="file://$repos/"
cd "$root"
cargo build -q --release
planner=("$root/target/release/planner" --config "$here/runtimes.toml" --cache-dir "$here/.cache")
echo "== planner plan --all"
"${planner[@]}" plan --all
echo "== planner ensure --all (cold)"
"${planner[@]}" ensure --all
echo "== planner ensure --all (warm: nothing to do)"
"${planner[@]}" ensure --all
docker image ls planner-demo/alpha
docker image ls planner-demo/beta
