#!/usr/bin/env python3
"""planner benchmarks. Run through bench/run.sh (which builds planner, makes sure a Docker
engine and the base image exist, and calls this); see BENCHMARKS.md for what each measures.

Every comparison runs its two sides alternately (A B, B A, A B, ...) in the same run and
reports medians and the median of the per-pair ratios, because the machines are noisy.
Nothing here is a test: a missed target is reported, never asserted.
"""

import argparse
import concurrent.futures
import datetime
import glob
import http.client
import json
import math
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLANNER = os.path.join(ROOT, "target", "release", "planner")
TOOL = os.path.join(ROOT, "target", "release", "examples", "bench_tool")
BASE_IMAGE = "planner-test/busybox:latest"
IMAGE_NS = "planner-bench/"
# The nine runtimes of the origin provisioner (runtimes.toml).
NINE = ["autogen", "claude-code", "codex", "crewai", "deepagents", "gemini-cli", "hermes",
        "langgraph", "openclaw"]
FIXED_DATE = "2026-01-01T00:00:00Z"
MB = 1024 * 1024


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def sh(args, check=True, capture=True, env=None, cwd=None, input=None):
    p = subprocess.run(args, capture_output=capture, text=True, env=env, cwd=cwd, input=input)
    if check and p.returncode != 0:
        raise RuntimeError(f"{args!r} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PLANNER_") and not k.startswith("GIT_")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["DOCKER_BUILDKIT"] = "0"  # the docker CLI side uses the legacy builder, as planner does
    env.update(extra or {})
    return env


ENV = clean_env()


def median(xs):
    return statistics.median(xs)


def fmt_ms(s):
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def fmt_s(s):
    return f"{s:.2f} s" if s >= 1 else f"{s * 1000:.0f} ms"


def spread(xs):
    """min–max, to show the noise next to a median."""
    return f"{fmt_ms(min(xs))}–{fmt_ms(max(xs))}"


def timed(args, env=ENV, stdin=None):
    """Wall time of one process (spawn to exit) and its completed process."""
    t0 = time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True, env=env, stdin=stdin)
    return time.perf_counter() - t0, p


def cpu_time(args, env=ENV):
    """User + system CPU seconds of one process (and the children it waited for)."""
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return ru.ru_utime + ru.ru_stime


def timed_rss(args, env=ENV):
    """Wall time and peak RSS (KiB, the kernel's ru_maxrss, as `/usr/bin/time -v` prints it)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name, *args],
                           capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        text = open(out.name).read().strip().splitlines()
        rss = int(text[-1]) if text and text[-1].isdigit() else -1
    return wall, rss, p


def alternate(n, a, b):
    """Runs a() and b() n times each, alternating which goes first; returns both lists."""
    ta, tb = [], []
    for i in range(n):
        if i % 2 == 0:
            ta.append(a())
            tb.append(b())
        else:
            tb.append(b())
            ta.append(a())
    return ta, tb


def pair_ratio(num, den):
    return median([x / y for x, y in zip(num, den)])


# ---- the engine ---------------------------------------------------------------------------


def docker_socket():
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        raise RuntimeError(f"the benchmarks need a unix-socket DOCKER_HOST, not {host}")
    return host[len("unix://"):]


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("docker")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def engine_get(path):
    conn = UnixHTTPConnection(docker_socket())
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def bench_images():
    out = sh(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"], env=ENV).stdout
    return [l for l in out.splitlines() if l.startswith(IMAGE_NS)]


def remove_images(prefix):
    refs = [r for r in bench_images() if r.startswith(prefix)]
    if refs:
        sh(["docker", "image", "rm", "-f", *refs], env=ENV)


def image_id(ref):
    p = sh(["docker", "image", "inspect", "--format", "{{.Id}}", ref], check=False, env=ENV)
    return p.stdout.strip() if p.returncode == 0 else None


# ---- the git host -------------------------------------------------------------------------


class GitHost:
    """examples/bench_tool.rs `serve`: support::git_server on 127.0.0.1."""

    def __init__(self):
        self.proc = subprocess.Popen([TOOL, "serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=ENV)
        self.root = self.proc.stdout.readline().split(" ", 1)[1].strip()
        self.url = self.proc.stdout.readline().split(" ", 1)[1].strip()
        self.lock = threading.Lock()
        self.scratch = tempfile.mkdtemp(prefix="planner-bench-git-")

    def _cmd(self, cmd):
        with self.lock:
            self.proc.stdin.write(cmd + "\n")
            self.proc.stdin.flush()
            lines = []
            while True:
                line = self.proc.stdout.readline()
                if not line or line.strip() == "end":
                    return lines
                lines.append(line.split())

    def requests(self):
        """[(method, path, git command, status)] since the last clear."""
        return [tuple(l[1:5]) for l in self._cmd("log") if l and l[0] == "req"]

    def clear(self):
        self._cmd("clear")

    def counts(self, command):
        """Requests per repo whose git command is `command` (`ls-refs`, `fetch`)."""
        out = {}
        for _, path, cmd, _ in self.requests():
            if cmd == command:
                repo = path.strip("/").split("/")[0]
                out[repo] = out.get(repo, 0) + 1
        return out

    def create_repo(self, name, src_dir, big=False):
        """A bare repo `name` whose main branch is one commit of src_dir; returns its sha."""
        bare = os.path.join(self.root, f"{name}.git")
        git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@planner.invalid",
               "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]
        if big:
            # Random payloads: no compression, no delta search (it would only cost time).
            git += ["-c", "core.compression=0", "-c", "pack.compression=0",
                    "-c", "core.bigFileThreshold=1m"]
        sh(git + ["init", "-q", "--bare", bare], env=ENV)
        if big:
            for k, v in [("core.compression", "0"), ("pack.compression", "0"),
                         ("core.bigFileThreshold", "1m")]:
                sh(["git", "--git-dir", bare, "config", k, v], env=ENV)
        work = os.path.join(self.scratch, name)
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(src_dir, work, symlinks=True)
        env = clean_env({"GIT_AUTHOR_DATE": FIXED_DATE, "GIT_COMMITTER_DATE": FIXED_DATE})
        sh(git + ["init", "-q", "-b", "main"], cwd=work, env=env)
        sh(git + ["add", "-A"], cwd=work, env=env)
        sh(git + ["commit", "-q", "-m", f"template {name}"], cwd=work, env=env)
        sh(git + ["push", "-q", bare, "HEAD:refs/heads/main"], cwd=work, env=env)
        sha = sh(git + ["rev-parse", "HEAD"], cwd=work, env=env).stdout.strip()
        shutil.rmtree(work, ignore_errors=True)
        return sha

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
        shutil.rmtree(self.scratch, ignore_errors=True)


def pkt(s):
    return f"{len(s) + 4:04x}{s}"


def ls_refs(url, branch="main"):
    """One protocol v2 ls-refs round trip, as planner's resolve-head does it."""
    u = url.split("://", 1)[1]
    hostport, path = u.split("/", 1)
    host, port = hostport.split(":")
    body = (pkt("command=ls-refs\n") + "0001" + pkt(f"ref-prefix refs/heads/{branch}\n")
            + "0000").encode()
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", f"/{path}/git-upload-pack", body=body, headers={
        "Content-Type": "application/x-git-upload-pack-request",
        "Accept": "application/x-git-upload-pack-result",
        "Git-Protocol": "version=2"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    if resp.status != 200 or b"refs/heads/" not in data:
        raise RuntimeError(f"ls-refs {url}: {resp.status} {data[:200]!r}")
    return data[4:44].decode()


# ---- fixtures -----------------------------------------------------------------------------


class Work:
    def __init__(self):
        base = os.environ.get("BENCH_TMPDIR") or None
        self.dir = tempfile.mkdtemp(prefix="planner-bench-", dir=base)

    def path(self, *parts):
        p = os.path.join(self.dir, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def write_tree(root, files):
    for rel, data in files.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())


def write_config(path, repo_prefix, image_prefix, runtimes, builder="classic"):
    # The classic builder unless told: benchmarks 3 and 5 compare with the legacy `docker build`,
    # and the bench engine has no bridge network (BuildKit's RUN needs build_network there).
    lines = ["[defaults]", f'repo_prefix = "{repo_prefix}"', f'image_prefix = "{image_prefix}"',
             'platform = "linux/amd64"', f'builder = "{builder}"']
    if builder == "buildkit":
        lines.append('build_network = "none"')
    lines += ["", "[git]", "allow_insecure_http = true", ""]
    lines += [f"[runtimes.{name}]" for name in runtimes]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


# Another planner binary to compare with, side by side (`--baseline`), e.g. a build of the
# commit before a change.
BASELINE = None


def planner(cfg, cache, *args, binary=None):
    return [binary or PLANNER, "--config", cfg, "--cache-dir", cache, *args]


def ensure_ok(cmd, what):
    p = sh(cmd, check=False, env=ENV)
    if p.returncode != 0:
        raise RuntimeError(f"{what}: planner exited {p.returncode}\n{p.stderr[-4000:]}")
    return p


def progress_lines(stderr, step, what):
    """Plain progress lines `<runtime>  <step>  <what> ...`."""
    out = []
    for line in stderr.splitlines():
        cols = line.split()
        if len(cols) >= 3 and cols[1] == step and cols[2] == what:
            out.append(line)
    return out


# ---- 1. warm no-op ensure -----------------------------------------------------------------

SHELL_LOOP = r"""#!/usr/bin/env bash
# The origin's warm path, per runtime and sequentially: ask the git host for the branch,
# check the pinned image exists, point :latest at it.
set -euo pipefail
for rt in {runtimes}; do
  sha=$(git ls-remote "{url}tpl-$rt" refs/heads/main | cut -f1)
  docker image inspect "{prefix}$rt:${{sha:0:12}}" >/dev/null
  docker tag "{prefix}$rt:${{sha:0:12}}" "{prefix}$rt:latest"
done
"""


def floor_once(urls, latest_refs):
    """The lower bound, measured in-process: every runtime's ls-refs round trip in parallel,
    each followed by one engine call (inspect of its :latest)."""
    def one(i):
        ls_refs(urls[i])
        status, _ = engine_get(f"/v1.41/images/{latest_refs[i]}/json")
        if status != 200:
            raise RuntimeError(f"inspect {latest_refs[i]}: {status}")
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(urls)) as pool:
        list(pool.map(one, range(len(urls))))
    return time.perf_counter() - t0


def bench_warm(ctx, runs):
    git, work = ctx["git"], ctx["work"]
    prefix = IMAGE_NS + "warm-"
    remove_images(prefix)
    for rt in NINE:
        src = work.path("warm-src", rt, "x")
        src = os.path.dirname(src)
        write_tree(src, {"Dockerfile": f"FROM scratch\nCOPY hello.txt /hello.txt\n",
                         "hello.txt": f"hello from {rt}\n"})
        git.create_repo(f"tpl-{rt}", src)
    cfg, cache = work.path("warm", "runtimes.toml"), work.path("warm", "cache")
    write_config(cfg, f"{git.url}tpl-", prefix, NINE)
    log("1. warm: cold ensure of the nine runtimes (setup, not measured)")
    ensure_ok(planner(cfg, cache, "ensure", "--all"), "cold ensure")
    # The warm run does nothing: no step starts, no fetch.
    git.clear()
    p = ensure_ok(planner(cfg, cache, "ensure", "--all"), "warm ensure")
    started = [l for l in p.stderr.splitlines() if " started" in l]
    fetches = git.counts("fetch")
    lsrefs = git.counts("ls-refs")
    script = work.path("warm", "origin-warm.sh")
    with open(script, "w") as f:
        f.write(SHELL_LOOP.format(runtimes=" ".join(NINE), url=git.url, prefix=prefix))
    sh(["bash", script], env=ENV)  # warm it up once (and check it works)
    a_cmd = planner(cfg, cache, "-q", "ensure", "--all")
    b_cmd = ["bash", script]
    for _ in range(2):  # warm-up: page cache, engine, server threads
        timed(a_cmd)

    def a():
        t, p = timed(a_cmd)
        if p.returncode != 0:
            raise RuntimeError(f"planner warm ensure failed: {p.stderr}")
        return t

    def b():
        t, p = timed(b_cmd)
        if p.returncode != 0:
            raise RuntimeError(f"shell loop failed: {p.stderr}")
        return t

    log(f"1. warm: {runs} alternating pairs planner / shell loop")
    ta, tb = alternate(runs, a, b)
    urls = [f"{git.url}tpl-{rt}" for rt in NINE]
    latest = [f"{prefix}{rt}:latest" for rt in NINE]
    for _ in range(2):
        floor_once(urls, latest)
    log(f"1. warm: {runs} alternating pairs planner / in-process floor")
    ta2, tf = alternate(runs, a, lambda: floor_once(urls, latest))
    base, ta3 = [], []
    if BASELINE:
        b_cmd2 = planner(cfg, cache, "-q", "ensure", "--all", binary=BASELINE)
        log(f"1. warm: {runs} alternating pairs planner / baseline {BASELINE}")
        ta3, base = alternate(runs, a, lambda: timed(b_cmd2)[0])
    # Components of the floor, and of the shell loop.
    sha = ls_refs(urls[0])
    pinned0 = f"{prefix}{NINE[0]}:{sha[:12]}"
    parts = {
        "git ls-remote": [timed(["git", "ls-remote", urls[0], "refs/heads/main"])[0]
                          for _ in range(max(runs, 5))],
        "docker image inspect": [timed(["docker", "image", "inspect", pinned0])[0]
                                 for _ in range(max(runs, 5))],
        "docker tag": [timed(["docker", "tag", pinned0, latest[0]])[0]
                       for _ in range(max(runs, 5))],
    }
    one_ls = median([timed_call(lambda: ls_refs(urls[0])) for _ in range(max(runs, 5))])
    one_inspect = median([timed_call(lambda: engine_get(f"/v1.41/images/{latest[0]}/json"))
                          for _ in range(max(runs, 5))])
    cpu = median([cpu_time(a_cmd) for _ in range(max(runs, 5))])
    # Process startup alone: planner --version.
    startup = median([timed([PLANNER, "--version"])[0] for _ in range(max(runs, 5))])
    res = {
        "runs": runs, "planner": ta, "shell": tb, "planner2": ta2, "floor": tf,
        "one_ls_refs": one_ls, "one_inspect": one_inspect, "startup": startup, "cpu": cpu,
        "warm_started_steps": len(started), "warm_fetches": sum(fetches.values()),
        "warm_ls_refs": sum(lsrefs.values()),
        "baseline": base, "planner3": ta3,
        "shell_parts": {k: median(v) for k, v in parts.items()},
    }
    ctx["warm"] = {"cfg": cfg, "cache": cache}
    return res


def timed_call(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def report_warm(r):
    a, b = median(r["planner"]), median(r["shell"])
    speedup = pair_ratio(r["shell"], r["planner"])
    a2, fl = median(r["planner2"]), median(r["floor"])
    vs_floor = pair_ratio(r["planner2"], r["floor"])
    ok_speed = "met" if speedup >= 20 else "**missed**"
    ok_wall = "met" if a < 0.060 else "**missed**"
    return f"""| | median | spread (min–max) | runs |
|---|---|---|---|
| planner `ensure --all` (warm, nine runtimes) | **{fmt_ms(a)}** | {spread(r['planner'])} | {r['runs']} |
| origin's shell loop (`git ls-remote`, `docker image inspect`, `docker tag`) | {fmt_ms(b)} | {spread(r['shell'])} | {r['runs']} |
| floor: nine ls-refs round trips in parallel, each + one engine inspect (in-process, Python) | {fmt_ms(fl)} | {spread(r['floor'])} | {r['runs']} |

| figure | value | target | |
|---|---|---|---|
| speed-up vs the shell loop (median of per-pair ratios) | **{speedup:.1f}x** | ≥ 20x | {ok_speed} |
| planner wall, nine runtimes | **{fmt_ms(a)}** | < 60 ms | {ok_wall} |
| planner / floor (second alternation: planner {fmt_ms(a2)} vs floor {fmt_ms(fl)}) | {vs_floor:.2f}x | — | |
| ceiling on this host: shell loop / floor | {b / fl:.1f}x | | |

Components: one ls-refs round trip alone {fmt_ms(r['one_ls_refs'])}; one engine inspect alone
{fmt_ms(r['one_inspect'])}; `planner --version` (process start and exit) {fmt_ms(r['startup'])};
CPU time of one warm `ensure --all` (user + system) {fmt_ms(r['cpu'])}.
The shell loop's parts, each alone: {', '.join(f'`{k}` {fmt_ms(v)}' for k, v in r['shell_parts'].items())}.
Check: the warm run started {r['warm_started_steps']} steps and made {r['warm_fetches']} fetches
({r['warm_ls_refs']} ls-refs requests, one per runtime).
""" + baseline_row(r["planner3"], r["baseline"])


def baseline_row(new, old):
    if not old:
        return ""
    return f"""
Before/after (alternated in the same run): baseline `{BASELINE}` {fmt_ms(median(old))}
({spread(old)}), this build {fmt_ms(median(new))} ({spread(new)}): **{pair_ratio(old, new):.2f}x** faster.
"""


# ---- 2. scale of planning -----------------------------------------------------------------


def bench_scale(ctx, sizes, runs):
    work = ctx["work"]
    res = []
    for n in sizes:
        names = [f"rt{i:05d}" for i in range(n)]
        cfg, cache = work.path(f"scale-{n}", "runtimes.toml"), work.path(f"scale-{n}", "cache")
        # Repos on a port nothing listens on: --offline never asks the git host.
        write_config(cfg, "http://127.0.0.1:9/scale-", IMAGE_NS + "scale-", names)
        sh([TOOL, "seed-records", cfg, cache, "5" * 40], env=ENV)
        cmd = planner(cfg, cache, "plan", "--all", "--offline", "--format", "json")
        p = ensure_ok(cmd, f"plan of {n}")
        doc = json.loads(p.stdout)
        statuses = {}
        for s in doc["steps"]:
            statuses[s["status"]] = statuses.get(s["status"], 0) + 1
        timed_rss(cmd)  # warm-up
        log(f"2. scale: {n} runtimes, {runs} runs")
        walls, rsss = [], []
        for _ in range(runs):
            w, rss, p = timed_rss(cmd)
            if p.returncode != 0:
                raise RuntimeError(p.stderr)
            walls.append(w)
            rsss.append(rss)
        row = {"n": n, "walls": walls, "rss": rsss, "steps": len(doc["steps"]),
               "statuses": statuses, "bytes": len(p.stdout)}
        if BASELINE:
            old_cmd = planner(cfg, cache, "plan", "--all", "--offline", "--format", "json",
                              binary=BASELINE)
            k = 1 if n >= 10000 else min(runs, 3)
            log(f"2. scale: {n} runtimes, {k} alternating pairs with the baseline")
            new, old = alternate(k, lambda: timed_rss(cmd), lambda: timed_rss(old_cmd))
            row["pairs"] = ([w for w, _, _ in new], [w for w, _, _ in old],
                            [m for _, m, _ in old])
        res.append(row)
    return res


def report_scale(res):
    rows = []
    prev = None
    for r in res:
        w, rss = median(r["walls"]), median(r["rss"]) / 1024
        growth = ""
        if prev:
            tw = w / median(prev["walls"])
            tr = (median(r["rss"]) / median(prev["rss"]))
            k = r["n"] / prev["n"]
            growth = f"time x{tw:.1f}, memory x{tr:.1f} for x{k:.0f} runtimes (time ∝ n^{math.log(tw, k):.2f})"
        statuses = ", ".join(f"{v} {k}" for k, v in sorted(r["statuses"].items()))
        rows.append(f"| {r['n']:,} | {r['steps']:,} ({statuses}) | **{fmt_ms(w)}** | {spread(r['walls'])} | **{rss:.1f} MiB** | {r['bytes'] / MB:.1f} MiB | {growth} |")
        prev = r
    last = res[-1]
    w, rss = median(last["walls"]), median(last["rss"]) / 1024
    verdict = ""
    if last["n"] >= 10000:
        verdict = (f"\nAt {last['n']:,} runtimes: {fmt_ms(w)} (target < 1 s: "
                   f"{'met' if w < 1 else '**missed**'}), {rss:.1f} MiB peak RSS (target < 200 MB: "
                   f"{'met' if rss * MB < 200e6 else '**missed**'}).\n")
    before = ""
    if any("pairs" in r for r in res):
        before = (f"\nBefore/after (alternated in the same run; baseline `{BASELINE}`):\n\n"
                  "| runtimes | baseline wall | baseline peak RSS | this build wall | faster by |\n"
                  "|---|---|---|---|---|\n")
        for r in res:
            new, old, old_rss = r["pairs"]
            before += (f"| {r['n']:,} | {fmt_ms(median(old))} | {median(old_rss) / 1024:.1f} MiB | "
                       f"{fmt_ms(median(new))} | {pair_ratio(old, new):.1f}x |\n")
    return ("| runtimes | steps in the plan | wall (median) | spread | peak RSS (median) | JSON out | growth from the previous row |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n" + verdict + before)


# ---- 6. a long plan ------------------------------------------------------------------------


def chain_plan(n):
    """A plan of n steps listed last step first (the order that made loading quadratic):
    resolve, clone, verify, then builds each needing the verify and the build before it
    (each with its own target), and a tag-latest of the last build."""
    builds = n - 4
    steps = ['[[steps]]\nid = "r"\nkind = "resolve-head"\n',
             '[[steps]]\nid = "c"\nkind = "clone"\nneeds = ["r"]\n',
             '[[steps]]\nid = "v"\nkind = "verify-dockerfile"\nneeds = ["c"]\n']
    for i in range(builds):
        needs = '"v"' if i == 0 else f'"v", "b{i - 1}"'
        steps.append(f'[[steps]]\nid = "b{i}"\nkind = "build"\nneeds = [{needs}]\n'
                     f'params = {{ target = "t{i}" }}\n')
    steps.append(f'[[steps]]\nid = "t"\nkind = "tag-latest"\nneeds = ["b{builds - 1}"]\n')
    return "".join(reversed(steps))


def bench_plan(ctx, sizes, runs):
    work = ctx["work"]
    res = []
    for n in sizes:
        plans = work.path(f"plan-{n}", "plans", "chain.toml")
        with open(plans, "w") as f:
            f.write(chain_plan(n))
        cfg, cache = work.path(f"plan-{n}", "runtimes.toml"), work.path(f"plan-{n}", "cache")
        with open(cfg, "w") as f:
            f.write('[defaults]\nrepo_prefix = "http://127.0.0.1:9/plan-"\n'
                    f'image_prefix = "{IMAGE_NS}plan-"\nplan = "chain"\n\n'
                    "[git]\nallow_insecure_http = true\n\n[runtimes.rt]\n")
        sh([TOOL, "seed-records", cfg, cache, "5" * 40], env=ENV)

        def command(binary=None):
            return planner(cfg, cache, "--plans", os.path.dirname(plans), "plan", "rt",
                           "--offline", "--format", "json", binary=binary)
        p = ensure_ok(command(), f"plan of {n} steps")
        steps = len(json.loads(p.stdout)["steps"])
        timed_rss(command())  # warm-up
        log(f"6. plan: {n} steps, {runs} runs")
        walls, rsss = [], []
        for _ in range(runs):
            w, rss, p = timed_rss(command())
            if p.returncode != 0:
                raise RuntimeError(p.stderr)
            walls.append(w)
            rsss.append(rss)
        row = {"n": n, "steps": steps, "walls": walls, "rss": rsss,
               "plan_bytes": os.path.getsize(plans)}
        if BASELINE:
            k = 2 if n >= 10000 else min(runs, 3)
            log(f"6. plan: {n} steps, {k} alternating pairs with the baseline")
            new, old = alternate(k, lambda: timed_rss(command()),
                                 lambda: timed_rss(command(BASELINE)))
            row["pairs"] = ([w for w, _, _ in new], [w for w, _, _ in old])
        res.append(row)
    return res


def report_plan(res):
    rows = []
    prev = None
    for r in res:
        w = median(r["walls"])
        growth = ""
        if prev:
            tw, k = w / median(prev["walls"]), r["n"] / prev["n"]
            growth = f"time x{tw:.1f} for x{k:.0f} steps (time ∝ n^{math.log(tw, k):.2f})"
        rows.append(f"| {r['n']:,} | {r['plan_bytes'] / MB:.1f} MiB | {r['steps']:,} | **{fmt_ms(w)}** | "
                    f"{spread(r['walls'])} | {median(r['rss']) / 1024:.1f} MiB | {growth} |")
        prev = r
    before = ""
    if any("pairs" in r for r in res):
        before = (f"\nBefore/after (alternated in the same run; baseline `{BASELINE}`):\n\n"
                  "| plan steps | baseline wall | this build wall | faster by |\n|---|---|---|---|\n")
        for r in res:
            new, old = r["pairs"]
            before += (f"| {r['n']:,} | {fmt_ms(median(old))} | {fmt_ms(median(new))} | "
                       f"{pair_ratio(old, new):.1f}x |\n")
    return ("One runtime on a generated plan (a chain of builds, listed last step first); "
            "`plan RT --offline --format json` with the resolve-head record seeded.\n\n"
            "| plan steps | plan file | steps in the output | wall (median) | spread | peak RSS | growth |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n" + before)


# ---- 3. cold build overhead ---------------------------------------------------------------

BUILD_DOCKERFILE = f"""FROM {BASE_IMAGE}
COPY . /src
RUN cat /src/hello.txt > /hello && ls -lR /src > /listing
"""


def context_files(n_files, size, seed):
    """Deterministic pseudo-random text files (so contexts compress and diff like code)."""
    import random
    rnd = random.Random(seed)
    words = ["def", "return", "import", "class", "self", "value", "None", "for", "in", "if"]
    files = {}
    for i in range(n_files):
        parts, total = [], 0
        while total < size:
            w = rnd.choice(words) + (" " if rnd.random() < 0.85 else "\n")
            parts.append(w)
            total += len(w)
        files[f"pkg/m{i // 50:02d}/f{i:04d}.py"] = "".join(parts)
    return files


def bench_build(ctx, runs):
    git, work = ctx["git"], ctx["work"]
    prefix = IMAGE_NS + "build-"
    remove_images(prefix)
    src = os.path.dirname(work.path("build-src", "x"))
    files = context_files(400, 10 * 1024, 3)
    files.update({"Dockerfile": BUILD_DOCKERFILE, "hello.txt": "hello from build\n",
                  ".dockerignore": ".git\n"})
    write_tree(src, files)
    sha = git.create_repo("tpl-build", src)
    cfg, cache = work.path("build", "runtimes.toml"), work.path("build", "cache")
    write_config(cfg, f"{git.url}tpl-", prefix, ["build"])
    log("3. build: first ensure (clone, verify, build; not measured)")
    ensure_ok(planner(cfg, cache, "ensure", "build"), "first ensure")
    pinned, latest = f"{prefix}build:{sha[:12]}", f"{prefix}build:latest"
    labels = json.loads(sh(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}",
                            pinned], env=ENV).stdout)
    checkout = glob.glob(os.path.join(cache, "checkouts", "*", sha))[0]
    ctx_bytes = sum(len(v.encode()) for v in files.values())
    cli_tag = f"{prefix}cli:run"
    cli_cmd = ["docker", "build", "--no-cache", "--force-rm", "--platform", "linux/amd64",
               "-q", "-f", os.path.join(checkout, "Dockerfile"), "-t", cli_tag]
    for k, v in sorted(labels.items()):
        cli_cmd += ["--label", f"{k}={v}"]
    cli_cmd.append(checkout)
    p_cmd = planner(cfg, cache, "-v", "ensure", "build")

    def reset():
        remove_images(prefix)
        if image_id(pinned) or image_id(cli_tag):
            raise RuntimeError("images survived removal")

    step_times, cached = [], [0]

    def a():
        reset()
        t0 = time.perf_counter()
        proc = subprocess.Popen(p_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, env=ENV)
        started = done = None
        text = []
        for line in proc.stderr:
            now = time.perf_counter()
            text.append(line)
            cols = line.split()
            if len(cols) >= 3 and cols[1] == "build":
                if cols[2] == "started":
                    started = now
                elif cols[2] == "done":
                    done = now
        rc = proc.wait()
        wall = time.perf_counter() - t0
        out = "".join(text)
        if rc != 0 or started is None or done is None:
            raise RuntimeError(f"planner build run failed ({rc}):\n{out[-3000:]}")
        if "Using cache" in out:
            cached[0] += 1
        step_times.append(done - started)
        return wall

    def b():
        reset()
        t, p = timed(cli_cmd)
        if p.returncode != 0:
            raise RuntimeError(f"docker build failed:\n{p.stderr[-3000:]}")
        return t

    a(), b()  # warm-up pair
    step_times.clear()
    log(f"3. build: {runs} alternating pairs planner ensure / docker build --no-cache")
    ta, tb = alternate(runs, a, b)
    reset()
    return {"runs": runs, "planner": ta, "docker": tb, "step": step_times, "cached": cached[0],
            "files": len(files), "bytes": ctx_bytes, "labels": len(labels)}


def report_build(r):
    a, b, s = median(r["planner"]), median(r["docker"]), median(r["step"])
    ratio = pair_ratio(r["planner"], r["docker"])
    sratio = pair_ratio(r["step"], r["docker"])
    ok = "met" if ratio <= 1.05 else "**missed**"
    return f"""Context: {r['files']} files, {r['bytes'] / MB:.1f} MiB; Dockerfile `FROM {BASE_IMAGE}`, `COPY . /src`, one `RUN`; {r['labels']} labels on both sides.

| | median | spread (min–max) | runs |
|---|---|---|---|
| `planner ensure` (resolve, probe, build, tag, records) — whole process | **{fmt_s(a)}** | {spread(r['planner'])} | {r['runs']} |
| planner's build step alone (`build started` → `build done` lines) | {fmt_s(s)} | {spread(r['step'])} | {r['runs']} |
| `docker build --no-cache` (legacy builder, same context, Dockerfile and labels) | **{fmt_s(b)}** | {spread(r['docker'])} | {r['runs']} |

| figure | value | target | |
|---|---|---|---|
| whole `planner ensure` / `docker build` (median of per-pair ratios) | **{ratio:.3f}x** | ≤ 1.05x | {ok} |
| build step alone / `docker build` | {sratio:.3f}x | — | |

Layer cache: every run starts with the images removed (which removes their intermediate
layers, the legacy builder's only cache); planner builds logged "Using cache" in
{r['cached']} of {r['runs']} runs.
"""


# ---- 4. streaming context -----------------------------------------------------------------


def bench_context(ctx, sizes_mb, runs):
    git, work = ctx["git"], ctx["work"]
    prefix = IMAGE_NS + "ctx-"
    remove_images(prefix)
    names = [f"c{s}" for s in sizes_mb]
    shas = {}
    for size, name in zip(sizes_mb, names):
        src = os.path.dirname(work.path(f"ctx-src-{name}", "x"))
        write_tree(src, {"Dockerfile": "FROM scratch\nCOPY Dockerfile /Dockerfile\n",
                         ".dockerignore": ".git\n"})
        # Files of 10 MiB random bytes (the largest), plus 1,000 small files.
        left = size * MB
        i = 0
        while left > 0:
            n = min(left, 10 * MB)
            with open(os.path.join(src, f"blob{i:03d}.bin"), "wb") as f:
                f.write(os.urandom(n))
            left -= n
            i += 1
        small = {f"small/d{j // 100:02d}/s{j:04d}.txt": f"small file {j}\n" * 4 for j in range(1000)}
        write_tree(src, small)
        log(f"4. context: creating the {size} MiB template repo")
        shas[name] = git.create_repo(f"tpl-{name}", src, big=True)
        shutil.rmtree(src, ignore_errors=True)
    cfg, cache = work.path("ctx", "runtimes.toml"), work.path("ctx", "cache")
    write_config(cfg, f"{git.url}tpl-", prefix, names)
    log("4. context: first ensure (clone, verify, build; not measured)")
    ensure_ok(planner(cfg, cache, "ensure", "--all"), "first ensure")
    res = []
    for size, name in zip(sizes_mb, names):
        walls, rss = [], []
        sent = []
        for _ in range(runs):
            remove_images(prefix + name)
            # The context walker's debug line says what it sent (`bytes: N` in its stats).
            env = clean_env({"PLANNER_LOG": "planner::docker::context=debug"})
            w, m, p = timed_rss(planner(cfg, cache, "ensure", name), env=env)
            if p.returncode != 0 or not progress_lines(p.stderr, "build", "done"):
                raise RuntimeError(f"ensure {name} did not build:\n{p.stderr[-3000:]}")
            found = re.search(r"bytes: (\d+)", p.stderr)
            sent.append(int(found.group(1)) if found else -1)
            walls.append(w)
            rss.append(m)
        res.append({"mb": size, "walls": walls, "rss": rss, "sent": max(sent)})
        log(f"4. context: {size} MiB: {median(rss) / 1024:.1f} MiB peak RSS")
    # Baseline: the same binary doing a warm no-op (no context at all).
    base = [timed_rss(planner(cfg, cache, "ensure", names[0]))[1] for _ in range(runs)]
    remove_images(prefix)
    return {"sizes": res, "base": base, "runs": runs}


def report_context(r):
    rows = []
    for s in r["sizes"]:
        rss = median(s["rss"]) / 1024
        w = median(s["walls"])
        sent = f"{s['sent'] / MB:.1f} MiB" if s["sent"] >= 0 else "?"
        rows.append(f"| {s['mb']} MiB (+1,000 small files) | {sent} | **{rss:.1f} MiB** | {min(s['rss']) / 1024:.1f}–{max(s['rss']) / 1024:.1f} MiB | {fmt_s(w)} | {s['sent'] / MB / w:.0f} MiB/s |")
    base = median(r["base"]) / 1024
    worst = max(median(s["rss"]) for s in r["sizes"]) / 1024
    first, last = median(r["sizes"][0]["rss"]) / 1024, median(r["sizes"][-1]["rss"]) / 1024
    ok = "met" if worst < 64 else "**missed**"
    return f"""| context | sent to the engine (file bytes) | peak RSS (median) | spread | `ensure` wall (build + tag) | throughput |
|---|---|---|---|---|---|
""" + "\n".join(rows) + f"""
| (baseline: warm no-op `ensure`, no context sent) | 0 | {base:.1f} MiB | | | |

Largest peak RSS {worst:.1f} MiB (target < 64 MB: {ok}); {r['sizes'][-1]['mb']} MiB vs
{r['sizes'][0]['mb']} MiB context: {last - first:+.1f} MiB. {r['runs']} runs per size.
"""


# ---- 5. parallel cold prewarm -------------------------------------------------------------

COLD_DOCKERFILE = f"""FROM {BASE_IMAGE}
COPY . /src
RUN cat /src/hello.txt > /hello && ls -lR /src > /listing
"""


def bench_cold(ctx, runs):
    git, work = ctx["git"], ctx["work"]
    prefix = IMAGE_NS + "cold-"
    remove_images(prefix)
    for i, rt in enumerate(NINE):
        src = os.path.dirname(work.path("cold-src", rt, "x"))
        files = context_files(100, 8 * 1024, 100 + i)
        files.update({"Dockerfile": COLD_DOCKERFILE, "hello.txt": f"hello from {rt}\n"})
        write_tree(src, files)
        git.create_repo(f"cold-{rt}", src)
    cfg = work.path("cold", "runtimes.toml")
    write_config(cfg, f"{git.url}cold-", prefix, NINE)
    checks = []

    def run(jobs):
        remove_images(prefix)
        cache = work.path("cold", f"cache-{len(checks)}", "x")
        cache = os.path.dirname(cache)
        git.clear()
        t, p = timed(planner(cfg, cache, "-v", "ensure", "--all", "--jobs", str(jobs)))
        if p.returncode != 0:
            raise RuntimeError(f"cold ensure --jobs {jobs} failed:\n{p.stderr[-3000:]}")
        fetch, lsr = git.counts("fetch"), git.counts("ls-refs")
        checks.append({
            "jobs": jobs,
            "clones": len(progress_lines(p.stderr, "clone", "done")),
            "builds": len(progress_lines(p.stderr, "build", "done")),
            "tags": len(progress_lines(p.stderr, "tag-latest", "done")),
            "fetch_max": max(fetch.values() or [0]), "fetch_repos": len(fetch),
            "lsrefs_max": max(lsr.values() or [0]), "cached": p.stderr.count("Using cache"),
        })
        shutil.rmtree(cache, ignore_errors=True)
        return t

    run(4)  # warm-up (page cache, base image layers)
    checks.clear()
    log(f"5. cold: {runs} alternating pairs --jobs 1 / --jobs 4")
    t1, t4 = alternate(runs, lambda: run(1), lambda: run(4))
    # Two processes at once on one cold cache dir: each key is still fetched and built once.
    remove_images(prefix)
    cache = os.path.dirname(work.path("cold", "cache-concurrent", "x"))
    git.clear()
    # Named runtimes, not --all: the run lock is then shared and both processes work at once,
    # kept apart only by the per-key locks and the re-check after taking one.
    cmd = planner(cfg, cache, "-v", "ensure", *NINE, "--jobs", "4")
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=ENV) for _ in range(2)]
    outs = [pr.communicate()[1] for pr in procs]
    fetch = git.counts("fetch")
    concurrent_check = {
        "rcs": [pr.returncode for pr in procs],
        "builds": sum(len(progress_lines(o, "build", "done")) for o in outs),
        "clones": sum(len(progress_lines(o, "clone", "done")) for o in outs),
        "fetch_max": max(fetch.values() or [0]), "fetch_repos": len(fetch),
        "per_process": [len(progress_lines(o, "build", "done")) for o in outs],
        "waited": sum(o.count(" waiting (") for o in outs),
        "meanwhile": sum(o.count("done meanwhile by another process") for o in outs),
    }
    remove_images(prefix)
    return {"runs": runs, "j1": t1, "j4": t4, "checks": checks, "concurrent": concurrent_check}


def report_cold(r):
    a, b = median(r["j1"]), median(r["j4"])
    speed = pair_ratio(r["j1"], r["j4"])
    ok = all(c["clones"] == 9 and c["builds"] == 9 and c["tags"] == 9 and c["fetch_max"] == 1
             and c["fetch_repos"] == 9 and c["lsrefs_max"] == 1 and c["cached"] == 0
             for c in r["checks"])
    cc = r["concurrent"]
    cc_ok = cc["rcs"] == [0, 0] and cc["builds"] == 9 and cc["clones"] == 9 and cc["fetch_max"] == 1
    rows = "\n".join(
        f"| --jobs {c['jobs']} | {c['clones']} | {c['builds']} | {c['tags']} | {c['fetch_repos']} repos, ≤ {c['fetch_max']} each | ≤ {c['lsrefs_max']} per repo | {c['cached']} |"
        for c in r["checks"])
    return f"""Nine cold runtimes (empty cache dir, no images): clone, verify, build (`FROM {BASE_IMAGE}`, `COPY`, one `RUN`), tag.

| | median | spread (min–max) | runs |
|---|---|---|---|
| `ensure --all --jobs 1` | **{fmt_s(a)}** | {spread(r['j1'])} | {r['runs']} |
| `ensure --all --jobs 4` | **{fmt_s(b)}** | {spread(r['j4'])} | {r['runs']} |
| speed-up, jobs 4 over jobs 1 (median of per-pair ratios) | **{speed:.2f}x** | | |

Work done per run (from planner's progress lines and the git server's request log):

| run | clones | builds | `:latest` tags | fetches | ls-refs | "Using cache" |
|---|---|---|---|---|---|---|
{rows}

Identical work done twice: {'never' if ok else '**yes — see the table**'}. Two `ensure <the nine names> --jobs 4`
processes started together on one cold cache dir: exit codes {cc['rcs']}, {cc['clones']} clones
and {cc['builds']} builds in total, {cc['fetch_repos']} repos fetched, at most {cc['fetch_max']}
time each ({'each key done once' if cc_ok else '**duplicated work**'}). Builds per process:
{cc['per_process']}; steps that waited for the other process's lock: {cc['waited']}; steps
found done by the other process once their lock was free: {cc['meanwhile']}.
"""


# ---- 8. BuildKit vs the classic builder -----------------------------------------------------

# The "download" a RUN does without a cache (no network here: a sleep stands for it).
FETCH_S = 2
BK_MOUNT_DOCKERFILE = f"""FROM {BASE_IMAGE}
COPY requirements.txt /app/requirements.txt
RUN --mount=type=cache,id=planner-bench-wheels,target=/cache sh -c 'if [ ! -e /cache/wheels ]; then sleep {FETCH_S}; echo wheels > /cache/wheels; fi; cp /cache/wheels /app/wheels'
"""
CLASSIC_FETCH_DOCKERFILE = f"""FROM {BASE_IMAGE}
COPY requirements.txt /app/requirements.txt
RUN sh -c 'sleep {FETCH_S}; echo wheels > /app/wheels'
"""
# The stages' RUNs differ (an identical one would be built once, by either builder).
STAGES_DOCKERFILE = f"""FROM {BASE_IMAGE} AS one
COPY stamp /stamp
RUN sleep {FETCH_S} && echo one > /one
FROM {BASE_IMAGE} AS two
COPY stamp /stamp
RUN sleep {FETCH_S} && echo two > /two
FROM {BASE_IMAGE}
COPY --from=one /one /one
COPY --from=two /two /two
"""


def bench_builders(ctx, runs):
    git, work = ctx["git"], ctx["work"]
    prefix = IMAGE_NS + "builders-"
    remove_images(prefix)
    n = [0]

    def ensure(builder, dockerfile, extra):
        """A fresh repo (new content, so no layer is reused) built once with `builder`."""
        n[0] += 1
        name = f"b{n[0]}"
        src = os.path.dirname(work.path("builders-src", name, "x"))
        write_tree(src, {"Dockerfile": dockerfile, **extra(name)})
        git.create_repo(f"bld-{name}", src)
        cfg, cache = work.path("builders", name, "runtimes.toml"), work.path("builders", name, "c")
        write_config(cfg, f"{git.url}bld-", prefix, [name], builder=builder)
        t, p = timed(planner(cfg, cache, "ensure", name))
        if p.returncode != 0:
            raise RuntimeError(f"{builder} build failed:\n{p.stderr[-3000:]}")
        return t, cfg, cache

    reqs = lambda name: {"requirements.txt": f"flask  # {name} {time.time()}\n"}
    stamp = lambda name: {"stamp": f"{name} {time.time()}\n"}

    def mount(builder, cold):
        dockerfile = BK_MOUNT_DOCKERFILE if builder == "buildkit" else CLASSIC_FETCH_DOCKERFILE
        if cold and builder == "buildkit":
            _, cfg, cache = ensure(builder, dockerfile, reqs)
            remove_images(prefix)
            sh(planner(cfg, cache, "gc", "--build-cache"), env=ENV)
        return ensure(builder, dockerfile, reqs)[0]

    log("8. builders: warm-up (base image, first cache mount fill)")
    mount("buildkit", False), mount("classic", False)
    res = {"runs": runs}
    for cold in (True, False):
        log(f"8. builders: {runs} alternating pairs BuildKit / classic, {'cold' if cold else 'warm-cache'} rebuild")
        ta, tb = alternate(runs, lambda: mount("buildkit", cold), lambda: mount("classic", cold))
        res["cold" if cold else "warm"] = (ta, tb)
    log(f"8. builders: {runs} alternating pairs BuildKit / classic, two independent stages")
    res["stages"] = alternate(runs, lambda: ensure("buildkit", STAGES_DOCKERFILE, stamp)[0],
                              lambda: ensure("classic", STAGES_DOCKERFILE, stamp)[0])
    remove_images(prefix)
    return res


def report_builders(r):
    rows = []
    for key, what in [("cold", "cold: empty BuildKit cache, RUN fetches"),
                      ("warm", "warm-cache rebuild: requirements changed, RUN runs again"),
                      ("stages", "two independent stages, each a RUN of the fetch's length")]:
        a, b = r[key]
        rows.append(f"| {what} | **{fmt_s(median(a))}** | {spread(a)} | **{fmt_s(median(b))}** | {spread(b)} | {pair_ratio(b, a):.2f}x |")
    return f"""One template per run, new content each time (no layer reused), `planner ensure` timed whole;
the RUN's "download" is a {FETCH_S} s sleep (no network here). BuildKit's RUN keeps what it fetched in a
`--mount=type=cache` (the classic builder cannot: its Dockerfile fetches every time).
Cold BuildKit runs start after `planner gc --build-cache`. {r['runs']} alternating pairs each.

| build | BuildKit (median) | spread | classic (median) | spread | classic / BuildKit |
|---|---|---|---|---|---|
""" + "\n".join(rows) + "\n"


# ---- 7. warm no-op ensure of nine registry runtimes ---------------------------------------
# planner's warm registry-mode ensure (one HEAD per runtime, no pull) against the origin's
# registry-mode shell loop (`docker pull` per runtime) and the floor (one parallel HEAD per
# runtime), all against the same local docker-registry.

REGISTRY_NS = "molecule-ai/workspace-template-"
MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"])


class LocalRegistry:
    """examples/bench_tool.rs `registry`: support::registry (Debian's docker-registry
    on 127.0.0.1, no auth) with one `molecule-ai/workspace-template-<rt>:latest` per runtime."""

    def __init__(self, runtimes):
        self.proc = subprocess.Popen([TOOL, "registry", REGISTRY_NS, *runtimes],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=ENV)
        self.lock = threading.Lock()
        self.host, self.images = None, {}
        for line in self.proc.stdout:
            parts = line.split()
            if parts and parts[0] == "host":
                self.host = parts[1]
            elif parts and parts[0] == "image":
                self.images[parts[1]] = (parts[2], parts[3])
            elif parts and parts[0] == "ready":
                break
        else:
            raise RuntimeError("bench_tool registry ended before it was ready")

    def _cmd(self, cmd):
        with self.lock:
            self.proc.stdin.write(cmd + "\n")
            self.proc.stdin.flush()
            lines = []
            while True:
                line = self.proc.stdout.readline()
                if not line or line.strip() == "end":
                    return lines
                lines.append(line.split())

    def requests(self):
        """[(method, path, status, engine|client)] at the registry since the last clear."""
        return [tuple(l[1:5]) for l in self._cmd("log") if l and l[0] == "req"]

    def clear(self):
        self._cmd("clear")

    def counts(self, who):
        """{"HEAD manifest": n, "GET blob": n, ...} of the requests sent by `who`."""
        out = {}
        for method, path, _, sender in self.requests():
            if sender != who:
                continue
            kind = ("manifest" if "/manifests/" in path else
                    "blob" if "/blobs/" in path else "other")
            out[f"{method} {kind}"] = out.get(f"{method} {kind}", 0) + 1
        return out

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
        if self.host:
            out = sh(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
                     env=ENV, check=False).stdout
            refs = [l for l in out.splitlines() if l.startswith(self.host + "/")]
            if refs:
                sh(["docker", "image", "rm", "-f", *refs], env=ENV, check=False)


REGISTRY_SHELL_LOOP = r"""#!/usr/bin/env bash
# The origin's warm path in registry mode, per runtime and sequentially: pull :latest (the
# engine resolves the tag at the registry and downloads nothing when it holds the image).
set -euo pipefail
for rt in {runtimes}; do
  docker pull -q "{host}/{ns}$rt:latest" >/dev/null
done
"""


def head_floor_once(host, names, inspect=False):
    """The lower bound, measured in-process: one manifest HEAD per runtime, all in parallel;
    with `inspect`, each followed by one engine call (inspect of the image by that digest),
    like bench 1's floor: what any tool that checks the engine must at least do."""
    def one(name):
        conn = http.client.HTTPConnection(host, timeout=30)
        conn.request("HEAD", f"/v2/{name}/manifests/latest", headers={"Accept": MANIFEST_ACCEPT})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        digest = resp.getheader("Docker-Content-Digest")
        if resp.status != 200 or not digest:
            raise RuntimeError(f"HEAD {name}: {resp.status}")
        if inspect:
            status, _ = engine_get(f"/v1.41/images/{host}/{name}@{digest}/json")
            if status != 200:
                raise RuntimeError(f"inspect {host}/{name}@{digest}: {status}")
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(one, names))
    return time.perf_counter() - t0


def write_registry_config(path, registry, image_prefix, runtimes):
    """Registry mode per the shared design: {registry}/{registry_image}{runtime}:{registry_tag}."""
    lines = ["[defaults]", 'source = "registry"', f'registry = "{registry}"',
             'registry_image = "workspace-template-"', 'registry_tag = "latest"',
             f'image_prefix = "{image_prefix}"', 'platform = "linux/amd64"', ""]
    lines += [f"[runtimes.{name}]" for name in runtimes]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def bench_registry(ctx, runs):
    work = ctx["work"]
    log("7. registry: starting docker-registry and pushing nine images (setup, not measured)")
    reg = LocalRegistry(NINE)
    ctx["registry"] = reg
    names = [f"{REGISTRY_NS}{rt}" for rt in NINE]
    script = work.path("registry", "origin-pull.sh")
    with open(script, "w") as f:
        f.write(REGISTRY_SHELL_LOOP.format(runtimes=" ".join(NINE), host=reg.host,
                                           ns=REGISTRY_NS))
    sh(["bash", script], env=ENV)  # the cold pulls (and a check that it works)
    reg.clear()
    sh(["bash", script], env=ENV)
    shell_counts = reg.counts("engine")
    b_cmd = ["bash", script]

    def b():
        t, p = timed(b_cmd)
        if p.returncode != 0:
            raise RuntimeError(f"shell loop failed: {p.stderr}")
        return t

    cfg, cache = work.path("registry", "runtimes.toml"), work.path("registry", "cache")
    write_registry_config(cfg, f"{reg.host}/molecule-ai", IMAGE_NS + "reg-", NINE)
    cold = sh(planner(cfg, cache, "ensure", "--all"), check=False, env=ENV)
    res = {"runs": runs, "shell_counts": shell_counts, "planner_error": None,
           "planner": [], "shell": [], "planner2": [], "floor": [], "planner3": [], "floor2": [],
           "planner_counts": {}}
    for _ in range(2):
        head_floor_once(reg.host, names)
    if cold.returncode != 0:
        res["planner_error"] = cold.stderr.strip().splitlines()[-1:] or [f"exit {cold.returncode}"]
        log(f"7. registry: planner registry mode unavailable: {res['planner_error'][0]}")
        res["shell"] = [b() for _ in range(runs)]
        res["floor"] = [head_floor_once(reg.host, names) for _ in range(runs)]
        return res
    reg.clear()
    ensure_ok(planner(cfg, cache, "ensure", "--all"), "warm registry ensure")
    res["planner_counts"] = {**reg.counts("client"),
                             **{f"engine {k}": v for k, v in reg.counts("engine").items()}}
    a_cmd = planner(cfg, cache, "-q", "ensure", "--all")
    for _ in range(2):
        timed(a_cmd)

    def a():
        t, p = timed(a_cmd)
        if p.returncode != 0:
            raise RuntimeError(f"planner warm registry ensure failed: {p.stderr}")
        return t

    log(f"7. registry: {runs} alternating pairs planner / docker pull loop")
    res["planner"], res["shell"] = alternate(runs, a, b)
    log(f"7. registry: {runs} alternating pairs planner / parallel HEAD floor")
    res["planner2"], res["floor"] = alternate(runs, a, lambda: head_floor_once(reg.host, names))
    log(f"7. registry: {runs} alternating pairs planner / HEAD + inspect floor")
    res["planner3"], res["floor2"] = alternate(
        runs, a, lambda: head_floor_once(reg.host, names, inspect=True))
    return res


def report_registry(r):
    counts = lambda c: ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none"
    b, fl = median(r["shell"]), median(r["floor"])
    rows = f"""| | median | spread (min–max) | runs |
|---|---|---|---|
"""
    if r["planner_error"]:
        rows += f"| planner `ensure --all` (warm, nine registry runtimes) | not available: {r['planner_error'][0]} | | |\n"
    else:
        a = median(r["planner"])
        rows += f"| planner `ensure --all` (warm, nine registry runtimes) | **{fmt_ms(a)}** | {spread(r['planner'])} | {r['runs']} |\n"
    rows += f"""| origin's loop (`docker pull …:latest` per runtime, sequential) | {fmt_ms(b)} | {spread(r['shell'])} | {r['runs']} |
| floor: nine manifest HEADs in parallel (in-process, Python) | {fmt_ms(fl)} | {spread(r['floor'])} | {r['runs']} |
| floor + engine: each HEAD followed by one engine inspect (in-process, Python) | {fmt_ms(median(r['floor2'])) if r['floor2'] else '-'} | {spread(r['floor2']) if r['floor2'] else ''} | {r['runs']} |
"""
    if not r["planner_error"]:
        speedup = pair_ratio(r["shell"], r["planner"])
        vs_floor = pair_ratio(r["planner2"], r["floor"])
        ok_speed = "met" if speedup >= 20 else "**missed**"
        ok_floor = "met" if vs_floor <= 1.2 else "**missed**"
        rows += f"""
| figure | value | target | |
|---|---|---|---|
| speed-up vs the `docker pull` loop (median of per-pair ratios) | **{speedup:.1f}x** | ≥ 20x | {ok_speed} |
| planner / floor (second alternation) | {vs_floor:.2f}x | ≤ 1.2x | {ok_floor} |
| planner / floor + engine (third alternation) | {pair_ratio(r["planner3"], r["floor2"]):.2f}x | | |
| ceiling on this host: `docker pull` loop / floor | {b / fl:.1f}x | | |
"""
    rows += f"""
At the registry, one warm `docker pull` loop sent: {counts(r['shell_counts'])}.
"""
    if not r["planner_error"]:
        rows += f"One warm planner `ensure --all` sent: {counts(r['planner_counts'])}.\n"
    return rows


# ---- 9. machine B's cold ensure from a warm shared cache ----------------------------------
# Machine A builds the nine runtimes and publishes them to a shared cache (a local
# docker-registry); machine B (the same engine with the nine images removed and a fresh cache
# dir) then ensures them from the cache, against building them and against `docker pull` of
# the same cache entries.

CACHE_REPO = "planner-cache"
SHARED_PAYLOAD_MB = 4
# A build of seconds, as the origin's templates: a unique file, a RUN of FETCH_S seconds (the
# "download", as in 8) writing a few MiB of random bytes (a layer no other image shares).
SHARED_DOCKERFILE = f"""FROM {BASE_IMAGE}
COPY id.txt /id.txt
RUN sleep {FETCH_S} && head -c {SHARED_PAYLOAD_MB * MB} /dev/urandom > /payload && cp /id.txt /id
"""
SHARED_JOBS = 4


def alternate_many(n, sides):
    """Runs every side n times, rotating which goes first each round; returns one list each."""
    out = [[] for _ in sides]
    for i in range(n):
        for j in range(len(sides)):
            k = (i + j) % len(sides)
            out[k].append(sides[k]())
    return out


def shared_config(path, git, prefix, cache_lines):
    write_config(path, f"{git.url}sc-", prefix, NINE)
    if cache_lines:
        with open(path, "a") as f:
            f.write("\n[cache]\n" + "\n".join(cache_lines) + "\n")


def build_keys(cfg, cache):
    """{runtime: build key} from `plan --all --format json`."""
    doc = json.loads(ensure_ok(planner(cfg, cache, "plan", "--all", "--format", "json"),
                               "plan of the shared-cache runtimes").stdout)
    return {s["runtime"]: s["key"] for s in doc["steps"] if s["step"] == "build"}


def manifest_status(host, name, tag):
    conn = http.client.HTTPConnection(host, timeout=30)
    conn.request("HEAD", f"/v2/{name}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status


def remove_shared(prefix, host):
    """Machine B cold: every image planner tagged under `prefix` and every image the engine
    holds from the cache registry (tags and digest references), removed by image ID."""
    out = sh(["docker", "image", "ls", "--digests", "--format", "{{.ID}} {{.Repository}}"],
             env=ENV).stdout
    ids = sorted({l.split()[0] for l in out.splitlines()
                  if len(l.split()) == 2 and (l.split()[1].startswith(prefix)
                                              or l.split()[1].startswith(host + "/"))})
    if ids:
        sh(["docker", "image", "rm", "-f", *ids], env=ENV)
    left = sh(["docker", "image", "ls", "--digests", "--format", "{{.Repository}}"],
              env=ENV).stdout.split()
    if any(r.startswith(prefix) or r.startswith(host + "/") for r in left):
        raise RuntimeError(f"images survived removal: {left}")


def b_checks(stderr, git, reg):
    """What one machine-B run did: clones, builds, cache hits, fetches, bytes pulled."""
    builds = progress_lines(stderr, "build", "started")
    counts = reg.counts("engine")
    return {
        "clones": len(progress_lines(stderr, "clone", "started")),
        "verifies": len(progress_lines(stderr, "verify-dockerfile", "started")),
        "builds": len(builds),
        "hits": sum("found in shared cache" in l for l in builds),
        "steps_built": stderr.count("Step 1/"),
        "fetches": sum(git.counts("fetch").values()),
        "blob_gets": counts.get("GET blob", 0),
        "tags": len(progress_lines(stderr, "tag-latest", "done")),
        "warnings": stderr.count("the shared cache"),
    }


def bench_shared(ctx, runs):
    git, work = ctx["git"], ctx["work"]
    prefix = IMAGE_NS + "shared-"
    remove_images(prefix)
    for rt in NINE:
        src = os.path.dirname(work.path("shared-src", rt, "x"))
        write_tree(src, {"Dockerfile": SHARED_DOCKERFILE,
                         "id.txt": f"shared {rt} {os.getpid()} {time.time()}\n"})
        git.create_repo(f"sc-{rt}", src)
    log("9. shared cache: starting an empty docker-registry (setup, not measured)")
    reg = LocalRegistry([])
    ctx["registry9"] = reg
    cache = f"{reg.host}/{CACHE_REPO}"
    cfg_a, cfg_b = work.path("shared", "a.toml"), work.path("shared", "b.toml")
    cfg_build = work.path("shared", "build.toml")
    shared_config(cfg_a, git, prefix, [f'registry = "{cache}"', "push = true"])
    shared_config(cfg_b, git, prefix, [f'registry = "{cache}"', "push = false"])
    shared_config(cfg_build, git, prefix, [])
    remove_shared(prefix, reg.host)

    log("9. shared cache: machine A builds the nine runtimes and fills the cache (not measured)")
    cache_a = work.path("shared", "cache-a")
    reg.clear()
    t_a, p = timed(planner(cfg_a, cache_a, "ensure", "--all", "--jobs", str(SHARED_JOBS)))
    if p.returncode != 0:
        raise RuntimeError(f"machine A's ensure failed:\n{p.stderr[-4000:]}")
    a_builds = len(progress_lines(p.stderr, "build", "done"))
    a_pushes = reg.counts("engine").get("PUT manifest", 0)
    keys = build_keys(cfg_a, cache_a)
    if sorted(keys) != sorted(NINE) or any(not k or k == "-" for k in keys.values()):
        raise RuntimeError(f"machine A's plan has no key for some runtime: {keys}")
    entries = [f"{cache}/{rt}:k-{keys[rt]}" for rt in NINE]
    missing = [e for rt, e in zip(NINE, entries)
               if manifest_status(reg.host, f"{CACHE_REPO}/{rt}", f"k-{keys[rt]}") != 200]
    if missing:
        raise RuntimeError(f"machine A did not publish {missing}")
    latest = [f"{prefix}{rt}:latest" for rt in NINE]
    ids_a = [image_id(r) for r in latest]
    sizes = sh(["docker", "image", "inspect", "--format", "{{.Size}}", *latest],
               env=ENV).stdout.split()
    n = [0]

    def fresh_cache():
        n[0] += 1
        return os.path.dirname(work.path("shared", f"cache-b{n[0]}", "x"))

    def b_run():
        """Machine B cold, from the warm cache: (wall, checks, image IDs)."""
        remove_shared(prefix, reg.host)
        cache_b = fresh_cache()
        git.clear()
        reg.clear()
        t, p = timed(planner(cfg_b, cache_b, "ensure", "--all", "--jobs", str(SHARED_JOBS)))
        if p.returncode != 0:
            raise RuntimeError(f"machine B's ensure failed:\n{p.stderr[-4000:]}")
        checks = b_checks(p.stderr, git, reg)
        shutil.rmtree(cache_b, ignore_errors=True)
        return t, checks

    # Setup check (not timed): machine B cloned nothing and built nothing, pulled A's images.
    log("9. shared cache: checking machine B's run (no clone, no build; not measured)")
    _, first = b_run()
    ids_b = [image_id(r) for r in latest]
    if (first["clones"], first["verifies"], first["fetches"], first["steps_built"]) != (0, 0, 0, 0) \
            or first["hits"] != 9 or first["builds"] != 9 or first["tags"] != 9:
        raise RuntimeError(f"machine B did not just pull from the cache: {first}")
    if ids_b != ids_a:
        raise RuntimeError(f"machine B's images differ from A's: {ids_a} vs {ids_b}")
    a_checks = []

    def side_cache():
        t, checks = b_run()
        a_checks.append(checks)
        return t

    def side_build():
        remove_shared(prefix, reg.host)
        cache_b = fresh_cache()
        t, p = timed(planner(cfg_build, cache_b, "ensure", "--all", "--jobs", str(SHARED_JOBS)))
        built = len(progress_lines(p.stderr, "build", "done"))
        if p.returncode != 0 or built != 9:
            raise RuntimeError(f"building the nine failed ({built} built):\n{p.stderr[-4000:]}")
        shutil.rmtree(cache_b, ignore_errors=True)
        return t

    seq = work.path("shared", "pull-seq.sh")
    with open(seq, "w") as f:
        f.write("set -euo pipefail\n" + "".join(f"docker pull -q {e} >/dev/null\n"
                                               for e in entries))
    par = work.path("shared", "pull-par.sh")
    with open(par, "w") as f:
        f.write("set -euo pipefail\nprintf '%s\\n' " + " ".join(entries)
                + f" | xargs -P {SHARED_JOBS} -n 1 docker pull -q >/dev/null\n")

    def side_pull(script):
        def run():
            remove_shared(prefix, reg.host)
            t, p = timed(["bash", script])
            if p.returncode != 0:
                raise RuntimeError(f"docker pull loop failed:\n{p.stderr[-3000:]}")
            return t
        return run

    side_build()  # warm-up of the build path (page cache, engine)
    side_pull(seq)()
    log(f"9. shared cache: {runs} rounds of B from the cache / building / pull loop / parallel pulls")
    tc, tb, ts, tp = alternate_many(runs, [side_cache, side_build, side_pull(seq),
                                           side_pull(par)])
    remove_shared(prefix, reg.host)
    return {"runs": runs, "cache": tc, "build": tb, "seq": ts, "par": tp, "checks": a_checks,
            "first": first, "machine_a": t_a, "a_builds": a_builds, "a_pushes": a_pushes,
            "image_mb": median([int(s) for s in sizes]) / MB}


def report_shared(r):
    c, b, s, p = (median(r[k]) for k in ("cache", "build", "seq", "par"))
    vs_build = pair_ratio(r["build"], r["cache"])
    vs_seq = pair_ratio(r["cache"], r["seq"])
    vs_par = pair_ratio(r["cache"], r["par"])
    met = lambda ok: "met" if ok else "**missed**"
    ch = r["checks"]
    clean = all((x["clones"], x["verifies"], x["fetches"], x["steps_built"]) == (0, 0, 0, 0)
                and x["hits"] == 9 for x in ch)
    blobs = sorted({x["blob_gets"] for x in ch})
    return f"""Nine templates (`FROM {BASE_IMAGE}`, `COPY` of a unique file, `RUN sleep {FETCH_S}` writing
{SHARED_PAYLOAD_MB} MiB of random bytes: images of {r['image_mb']:.1f} MiB sharing only the base), a local
docker-registry as the shared cache. Machine A (setup): one `ensure --all` with `push = true`,
{r['a_builds']} builds, {r['a_pushes']} manifests pushed, {fmt_s(r['machine_a'])}. Every measured run starts as
machine B cold: the nine images and everything pulled from the cache removed from the engine,
a fresh cache dir. planner runs with `--jobs {SHARED_JOBS}` (its default is the CPU count, at most 4:
{min(os.cpu_count() or 1, 4)} here), the parallel pulls {SHARED_JOBS} at a time. {r['runs']} rounds, the four sides rotated.

| machine B, nine runtimes | median | spread (min–max) | runs |
|---|---|---|---|
| planner `ensure --all`, warm shared cache (`push = false`) | **{fmt_s(c)}** | {spread(r['cache'])} | {r['runs']} |
| planner `ensure --all`, no cache: clone and build | **{fmt_s(b)}** | {spread(r['build'])} | {r['runs']} |
| `docker pull` of the nine `k-<key>` entries, sequential loop | {fmt_s(s)} | {spread(r['seq'])} | {r['runs']} |
| `docker pull` of the same, {SHARED_JOBS} at a time (`xargs -P {SHARED_JOBS}`) | {fmt_s(p)} | {spread(r['par'])} | {r['runs']} |

| figure | value | target | |
|---|---|---|---|
| building / from the cache (median of per-round ratios) | **{vs_build:.1f}x** | ≥ 5x | {met(vs_build >= 5)} |
| from the cache / sequential `docker pull` loop | **{vs_seq:.2f}x** | ≤ 1.2x | {met(vs_seq <= 1.2)} |
| from the cache / parallel `docker pull` | {vs_par:.2f}x | ≤ 1.2x | {met(vs_par <= 1.2)} |

Check (every cache run, from planner's progress lines and the git server's and registry's
logs): {'no clone, no verify, no fetch, no Dockerfile step; all nine builds were shared-cache hits' if clean else '**work done — see ' + repr(ch) + '**'};
the engine fetched {', '.join(map(str, blobs))} blobs per run. Before timing, machine B's image IDs were
checked equal to machine A's.
"""


# ---- the report ---------------------------------------------------------------------------


def machine():
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = "?"
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    dv = sh(["docker", "version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})"],
            env=ENV, check=False).stdout.strip()
    gv = sh(["git", "--version"], env=ENV).stdout.strip()
    rv = sh(["rustc", "--version"], env=ENV, check=False).stdout.strip()
    rev = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], env=ENV, check=False).stdout.strip()
    dirty = sh(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"], env=ENV,
               check=False).stdout.strip()
    info = sh(["docker", "info", "--format", "{{.Driver}} storage, {{.CgroupDriver}} cgroups"],
              env=ENV, check=False).stdout.strip()
    return [
        ("CPU", f"{os.cpu_count()} × {cpu}"),
        ("memory", mem),
        ("kernel", platform.release()),
        ("Docker engine", f"{dv}, {info}"),
        ("git", gv),
        ("rustc", rv),
        ("planner", f"{rev}{' + uncommitted changes' if dirty else ''}, `cargo build --release`"),
        ("load average at start", " ".join(open("/proc/loadavg").read().split()[:3])),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer runs, smaller 2nd size for 4")
    ap.add_argument("--only", default="1,2,3,4,5,6,7,8,9",
                    help="comma-separated benchmark numbers")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "latest.md"))
    ap.add_argument("--command", default="bench/run.sh")
    ap.add_argument("--baseline", help="another planner binary to compare with in 1, 2 and 6")
    ap.add_argument("--update-doc", action="store_true",
                    help="also replace the generated part of BENCHMARKS.md with these results")
    args = ap.parse_args()
    global BASELINE
    BASELINE = args.baseline
    only = {int(x) for x in args.only.split(",") if x}
    q = args.quick
    started = time.time()
    mach = machine()
    ctx = {"git": GitHost(), "work": Work()}
    sections = []
    try:
        if 1 in only:
            sections.append(("1. Warm no-op ensure of the nine runtimes",
                             report_warm(bench_warm(ctx, 7 if q else 21))))
        if 2 in only:
            sections.append(("2. Scale of planning: `plan --all --offline --format json`",
                             report_scale(bench_scale(ctx, [100, 1000, 10000], 3 if q else 7))))
        if 3 in only:
            sections.append(("3. Cold build overhead: planner's build vs `docker build`",
                             report_build(bench_build(ctx, 4 if q else 12))))
        if 4 in only:
            sections.append(("4. Streaming build context: planner's peak RSS",
                             report_context(bench_context(ctx, [50, 500], 1 if q else 3))))
        if 5 in only:
            sections.append(("5. Parallel cold prewarm: `--jobs 1` vs `--jobs 4`",
                             report_cold(bench_cold(ctx, 2 if q else 5))))
        if 6 in only:
            sections.append(("6. A long plan: `plan --offline` of one runtime on a 2,000 / 20,000-step plan",
                             report_plan(bench_plan(ctx, [2000, 20000], 3 if q else 7))))
        if 7 in only:
            sections.append(("7. Warm no-op ensure of nine registry runtimes",
                             report_registry(bench_registry(ctx, 7 if q else 21))))
        if 8 in only:
            sections.append(("8. BuildKit vs the classic builder",
                             report_builders(bench_builders(ctx, 2 if q else 5))))
        if 9 in only:
            sections.append(("9. Machine B's cold ensure from a warm shared cache",
                             report_shared(bench_shared(ctx, 3 if q else 7))))
    finally:
        ctx["git"].close()
        for name in ("registry", "registry9"):
            if name in ctx:
                ctx[name].close()
        ctx["work"].close()
        for ref in bench_images():
            sh(["docker", "image", "rm", "-f", ref], env=ENV, check=False)
    took = time.time() - started
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = args.command + (" --quick" if q else "") + (f" --only {args.only}" if only != set(range(1, 10)) else "")
    cmd += f" --baseline {args.baseline}" if args.baseline else ""
    out = [f"Produced by `{cmd}` on {when} in {took / 60:.1f} min.", "",
           "| machine | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in mach]
    for title, body in sections:
        out += ["", f"### {title}", "", body.rstrip()]
    text = "\n".join(out) + "\n"
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    log(f"results written to {os.path.relpath(args.out, ROOT)}")
    if args.update_doc:
        doc = os.path.join(ROOT, "BENCHMARKS.md")
        begin, end = "<!-- results:begin -->", "<!-- results:end -->"
        old = open(doc).read()
        head, rest = old.split(begin, 1)
        _, tail = rest.split(end, 1)
        with open(doc, "w") as f:
            f.write(f"{head}{begin}\n{text}{end}{tail}")
        log("BENCHMARKS.md updated")


if __name__ == "__main__":
    main()
