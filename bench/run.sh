#!/usr/bin/env bash
# The benchmarks, one command (figures and method: BENCHMARKS.md):
#   bench/run.sh [--quick] [--only 1,3] [--baseline OTHER_PLANNER] [--update-doc] [--out FILE]
#   1 warm no-op ensure of nine runtimes vs the origin's shell loop, and the floor
#   2 plan --all --offline --format json over 100 / 1,000 / 10,000 generated runtimes
#   3 cold build: planner vs docker build --no-cache (legacy builder)
#   4 planner's peak RSS while streaming 50 MiB and 500 MiB build contexts
#   5 nine cold runtimes, --jobs 1 vs --jobs 4, and that no work is done twice
#   6 plan --offline of one runtime on a generated 2,000- and 20,000-step plan
#   7 warm no-op ensure of nine registry runtimes vs the origin's
#     `docker pull` loop and nine parallel HEADs, against a local docker-registry
#   8 BuildKit vs the classic builder: cold and warm-cache rebuilds of a RUN that fetches into
#     a cache mount, and a Dockerfile of two independent stages
#   9 machine B's cold ensure of nine runtimes from a warm shared cache ([cache], a local
#     docker-registry filled by machine A) vs building them and vs `docker pull` of the entries
# Every comparison alternates its two sides in the same run; medians and ratios are reported,
# nothing is asserted. --baseline adds a side-by-side of another planner binary to 1, 2 and 6;
# --update-doc rewrites the generated part of BENCHMARKS.md. Results: bench/results/latest.md
# (and stdout). About 5 min in full on 2 cores, 2 min with --quick.
# Works on a fresh machine: scripts/test-env.sh installs and starts a private Docker engine if
# none answers (stopped again at exit) and imports the base image; python3 and GNU time are
# installed if missing. Uses only 127.0.0.1: a git smart-HTTP server and, for 7 and 9, a docker-registry
# (examples/bench_tool.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/test-env.sh
trap stop_private_engine EXIT
missing=()
command -v python3 >/dev/null || missing+=(python3)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench: installing ${missing[*]}" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "bench: engine at ${DOCKER_HOST:-default socket}" >&2
cargo build --release --locked --bin planner --example bench_tool
python3 bench/bench.py "$@"
