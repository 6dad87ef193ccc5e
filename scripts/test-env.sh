#!/usr/bin/env bash
# Sourced by scripts/test.sh and the benchmarks: makes sure a Docker engine answers, and exports
# DOCKER_HOST for it. It installs the programs the tests run when missing (git, sshd,
# docker-registry, htpasswd, openssl, ...), and defines install_index_servers (pypiserver and
# verdaccio for the package-index tests; scripts/test.sh calls it). On a machine with no engine
# it installs Debian's docker.io (and busybox-static for the base image) and starts a private
# dockerd on a unix socket under $PLANNER_ENGINE_DIR (default /tmp/planner-engine) with its own
# data and exec roots, no bridge and no iptables. The engine reaches the tests' registries on 127.0.0.1 over plain HTTP
# with no flag (loopback registries are insecure-allowed). No outside registry is reachable, so
# the base image the tests build FROM is made by `docker import` of a busybox-static rootfs.
set -euo pipefail

PLANNER_ENGINE_DIR=${PLANNER_ENGINE_DIR:-/tmp/planner-engine}
BASE_IMAGE=planner-test/busybox:latest

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v docker >/dev/null || missing+=(docker.io)
  [ -x /bin/busybox ] || missing+=(busybox-static)
  command -v git >/dev/null || missing+=(git)
  command -v dot >/dev/null || missing+=(graphviz)
  command -v jq >/dev/null || missing+=(jq)
  command -v script >/dev/null || missing+=(bsdutils)
  command -v flock >/dev/null || missing+=(util-linux)
  # sshd for the ssh:// tests (each test starts its own on a loopback port; see support::sshd).
  [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
  # A real OCI registry for the registry-mode tests (distribution 2.8; each test starts its own
  # on a loopback port, see support::registry), htpasswd for its Basic auth, and openssl
  # for the token issuer's key and certificate (support::token_issuer).
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  command -v htpasswd >/dev/null || missing+=(apache2-utils)
  command -v openssl >/dev/null || missing+=(openssl)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "test-env: installing ${missing[*]}" >&2
    as_root apt-get update -qq
    # No package may start a system service (openssh-server would start sshd on port 22,
    # docker-registry a registry on port 5000).
    local policy=/usr/sbin/policy-rc.d made_policy=
    if [ ! -e "$policy" ]; then
      as_root sh -c "printf '#!/bin/sh\\nexit 101\\n' >$policy && chmod +x $policy" && made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
    if [ -n "$made_policy" ]; then as_root rm -f "$policy"; fi
  fi
}

# The package indexes the resolve-version tests run (support::pypi_index and
# support::npm_registry start them on 127.0.0.1): pypiserver from PyPI in a venv, simple-repository-
# server in another (PEP 691 JSON and PEP 592 yanking, which pypiserver lacks), verdaccio from
# the npm registry, all pinned, under $PLANNER_TOOLS_DIR (default ~/.cache/planner-test-tools) so the
# system Python and the global npm stay untouched. A venv rather than `pip install --user`:
# --user would put pypiserver and its pins (pip>=26, packaging>=26) into the one user site that
# every python3 of this user imports. Each tool installs into a directory named by its version,
# under an flock (several test runs may start at once), and is marked done by a stamp written
# only after it ran; $tools/bin/ links to the current ones, which is where the tests look when
# PLANNER_TEST_PYPISERVER, PLANNER_TEST_PYPI_JSON_PYTHON, PLANNER_TEST_VERDACCIO are unset.
# Called by scripts/test.sh.
PYPISERVER_VERSION=2.4.2
SIMPLE_REPOSITORY_SERVER_VERSION=0.10.0
SIMPLE_REPOSITORY_VERSION=0.11.1
VERDACCIO_VERSION=6.8.0
PLANNER_TOOLS_DIR=${PLANNER_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/planner-test-tools}

tools_fail() {
  echo "test-env: $1; the end of its log ($2):" >&2
  tail -n 30 "$2" >&2 2>/dev/null || true
}

# install_venv DIR CHECK SPEC...: a venv at DIR with SPEC installed, then the command CHECK
# (relative to DIR) must run.
install_venv() {
  local dir=$1 check=$2 log="$1.log"
  shift 2
  if [ "$(cat "$dir/.planner-installed" 2>/dev/null)" = "$*" ]; then return; fi
  echo "test-env: installing $* into $dir" >&2
  rm -rf "$dir"
  if ! python3 -m venv "$dir" >"$log" 2>&1; then
    # Debian's own python3 makes venvs only with python3-venv.
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >>"$log" 2>&1 || true
    rm -rf "$dir"
  fi
  # shellcheck disable=SC2086 # CHECK is a command with its arguments
  if ! { [ -x "$dir/bin/python" ] || python3 -m venv "$dir"; } >>"$log" 2>&1 ||
    ! "$dir/bin/python" -m pip install -q --disable-pip-version-check --no-input "$@" >>"$log" 2>&1 ||
    ! "$dir/"$check >>"$log" 2>&1; then
    tools_fail "installing $* failed (it needs python3 >= 3.10 with venv, and PyPI)" "$log"
    return 1
  fi
  echo "$*" >"$dir/.planner-installed"
}

install_verdaccio() {
  local dir="$PLANNER_TOOLS_DIR/verdaccio-$VERDACCIO_VERSION" log="$PLANNER_TOOLS_DIR/verdaccio-$VERDACCIO_VERSION.log"
  local spec="verdaccio@$VERDACCIO_VERSION" node_major
  if [ "$(cat "$dir/.planner-installed" 2>/dev/null)" = "$spec" ]; then return; fi
  node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if [ "$node_major" -lt 20 ] || ! command -v npm >/dev/null; then
    echo "test-env: $spec needs Node.js >= 20 and npm; found node $(node --version 2>&1 || true)" >&2
    return 1
  fi
  echo "test-env: installing $spec into $dir" >&2
  rm -rf "$dir"
  if ! npm install --prefix "$dir" --no-audit --no-fund --save-exact --loglevel=error "$spec" >"$log" 2>&1 ||
    ! "$dir/node_modules/.bin/verdaccio" --version >>"$log" 2>&1; then
    tools_fail "installing $spec failed (it needs npm and the npm registry)" "$log"
    return 1
  fi
  echo "$spec" >"$dir/.planner-installed"
}

install_index_servers() {
  mkdir -p "$PLANNER_TOOLS_DIR/bin"
  (
    flock 9
    install_venv "$PLANNER_TOOLS_DIR/pypiserver-$PYPISERVER_VERSION" "bin/pypi-server --version" \
      "pypiserver[passlib]==$PYPISERVER_VERSION"
    install_venv "$PLANNER_TOOLS_DIR/simple-repository-server-$SIMPLE_REPOSITORY_SERVER_VERSION" \
      "bin/simple-repository-server --help" \
      "simple-repository-server==$SIMPLE_REPOSITORY_SERVER_VERSION" \
      "simple-repository==$SIMPLE_REPOSITORY_VERSION"
    install_verdaccio
    ln -sfn "../pypiserver-$PYPISERVER_VERSION/bin/pypi-server" "$PLANNER_TOOLS_DIR/bin/pypi-server"
    # The venv itself: its python finds the venv only when run by a path inside it.
    ln -sfn "../simple-repository-server-$SIMPLE_REPOSITORY_SERVER_VERSION" "$PLANNER_TOOLS_DIR/bin/pypi-json-venv"
    ln -sfn "../verdaccio-$VERDACCIO_VERSION/node_modules/.bin/verdaccio" "$PLANNER_TOOLS_DIR/bin/verdaccio"
  ) 9>"$PLANNER_TOOLS_DIR/.lock"
  export PLANNER_TOOLS_DIR
  export PLANNER_TEST_PYPISERVER="$PLANNER_TOOLS_DIR/pypiserver-$PYPISERVER_VERSION/bin/pypi-server"
  export PLANNER_TEST_PYPI_JSON_PYTHON="$PLANNER_TOOLS_DIR/simple-repository-server-$SIMPLE_REPOSITORY_SERVER_VERSION/bin/python"
  export PLANNER_TEST_VERDACCIO="$PLANNER_TOOLS_DIR/verdaccio-$VERDACCIO_VERSION/node_modules/.bin/verdaccio"
}

engine_answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

start_private_engine() {
  mkdir -p "$PLANNER_ENGINE_DIR"
  export DOCKER_HOST="unix://$PLANNER_ENGINE_DIR/docker.sock"
  if engine_answers; then return; fi
  echo "test-env: starting a private dockerd at $DOCKER_HOST" >&2
  as_root dockerd --host "$DOCKER_HOST" --data-root "$PLANNER_ENGINE_DIR/data" \
    --exec-root "$PLANNER_ENGINE_DIR/exec" --pidfile "$PLANNER_ENGINE_DIR/docker.pid" \
    --bridge none --iptables=false --ip-masq=false >"$PLANNER_ENGINE_DIR/dockerd.log" 2>&1 &
  PLANNER_STARTED_ENGINE=$!
  export PLANNER_STARTED_ENGINE
  for _ in $(seq 1 60); do
    if engine_answers; then return; fi
    sleep 0.5
  done
  echo "test-env: dockerd did not come up; its log:" >&2
  tail -n 40 "$PLANNER_ENGINE_DIR/dockerd.log" >&2
  exit 1
}

make_base_image() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then return; fi
  local rootfs
  rootfs=$(mktemp -d)
  mkdir -p "$rootfs/bin" "$rootfs/tmp"
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in sh cat echo ls cp mkdir true sleep; do ln -s busybox "$rootfs/bin/$applet"; done
  tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  echo "test-env: imported $BASE_IMAGE" >&2
}

stop_private_engine() {
  if [ -n "${PLANNER_STARTED_ENGINE:-}" ]; then
    # $PLANNER_STARTED_ENGINE is the subshell that runs dockerd; dockerd's own pid is in its pidfile.
    local pid
    pid=$(cat "$PLANNER_ENGINE_DIR/docker.pid" 2>/dev/null || true)
    if [ -n "$pid" ]; then as_root kill "$pid" 2>/dev/null || true; fi
    wait "$PLANNER_STARTED_ENGINE" 2>/dev/null || true
  fi
}

install_packages
# Use the engine DOCKER_HOST (or the default socket) names if it answers; else start our own.
if ! engine_answers; then start_private_engine; fi
make_base_image
