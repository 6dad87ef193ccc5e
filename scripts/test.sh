#!/usr/bin/env bash
# The test command: installs and starts everything the tests need on a fresh machine
# (see scripts/test-env.sh: Docker engine, base image, git, graphviz, and the package indexes
# pypiserver and verdaccio), then runs every test, unit and end-to-end (real engine, real git
# smart-HTTP server, real registry and package indexes on 127.0.0.1).
# Extra arguments go to `cargo test` (e.g. scripts/test.sh --test e2e warm).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/test-env.sh
install_index_servers
trap stop_private_engine EXIT
echo "test-env: engine at ${DOCKER_HOST:-default socket}" >&2
cargo test --locked "$@"
