#!/usr/bin/env python3
"""Benchmark a libernet node against nginx serving the same block files.

One command builds the node in release mode, fills a store with random blocks, starts
the node and an nginx over the same files, drives both with wrk (GET 4 KiB, GET 1 MiB;
PUT 4 KiB, PUT 1 MiB and LIKE on the node only), then runs a scale test (start-up time,
memory per block and LIKE latency with a million small blocks), and prints a table with
PASS/MISS against the targets of the issue.

    python3 tools/bench_node.py              # full run (about 10 minutes)
    python3 tools/bench_node.py --smoke      # tiny run (about 1 minute); fails on errors
    python3 tools/bench_node.py --markdown docs/benchmarks.md

Everything runs on 127.0.0.1; every server started is stopped at the end, also on
failure or Ctrl-C. Needs Python 3.11 (stdlib only), cargo, Debian's nginx and wrk.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import math
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ next to the sibling modules
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_data  # noqa: E402
from bench_report import (  # noqa: E402
    MIB, Row, ScaleFigures, main_verdicts, markdown_section, results_table, size_name,
)
from bench_servers import (  # noqa: E402
    NginxProcess, NodeProcess, ServerError, cpu_seconds, http_get, machine_busy_seconds,
    memory_kib, start_nginx, start_node,
)
from bench_wrk import WrkError, WrkResult, run_wrk  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
NGINX = Path("/usr/sbin/nginx")
SMALL = 4096
LARGE = MIB
#: Most LIKE targets handed to wrk.
MAX_TARGETS = 100_000
#: A run during which other processes used more cores than this is run again.
OTHER_LIMIT = 0.25


class BenchFailure(RuntimeError):
    """A process failed or a request went wrong in a way that voids the run."""


@dataclass
class Plan:
    """Sizes and durations of one run, from the mode and the command line."""

    smoke: bool
    data_dir: Path
    keep: bool
    build: bool
    markdown: Path | None
    threads: int
    connections: list[int]
    small_count: int
    large_count: int
    duration: int
    put_large_duration: int
    pool_small_rate: float
    pool_large_mbps: float
    scale_count: int
    scale_block: int
    scale_store: Path | None
    node_log: str
    scrub_rate: str | None
    workers: int
    quiet_wait: float
    attempts: int

    def put_pool_blocks(self, size: int) -> int:
        """Fresh blocks to pre-generate for one PUT run: enough for the assumed top rate
        over the whole run (a faster node repeats blocks, which the report shows)."""
        if size >= MIB:
            total = self.pool_large_mbps * 1e6 / size * self.put_large_duration
        else:
            total = self.pool_small_rate * self.duration
        return max(self.threads, math.ceil(total / self.threads) * self.threads)

    def put_duration(self, size: int) -> int:
        return self.put_large_duration if size >= MIB else self.duration

    def quota_bytes(self) -> int:
        """A quota that holds the store plus every PUT, so nothing is evicted."""
        pools = sum(self.put_pool_blocks(s) * s for s in (SMALL, LARGE)) * len(self.connections)
        need = self.small_count * SMALL + self.large_count * LARGE + pools
        return max(10 << 30, int(need * 1.25))

    def disk_needed(self) -> int:
        """Rough upper bound of bytes written under the data dir: the store, every PUT
        (the pool file of the current run, and all stored copies), the scale store
        (a 4 KiB file-system block per file, doubled for directories)."""
        pools = [self.put_pool_blocks(s) * s for s in (SMALL, LARGE)]
        store = self.small_count * SMALL + self.large_count * LARGE
        scale = self.scale_count * 4096 * 2
        return store + sum(pools) * len(self.connections) + max(pools) + scale


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--smoke", action="store_true",
                   help="tiny counts and 1-2 s runs; exit 1 on any non-2xx or failure")
    p.add_argument("--dir", type=Path, default=Path("/tmp/libernet-bench"),
                   help="where to put stores, pools and logs (a fresh run-* subdirectory)")
    p.add_argument("--keep", action="store_true", help="keep the run directory")
    p.add_argument("--no-build", action="store_true", help="skip cargo build --release")
    p.add_argument("--markdown", type=Path, metavar="FILE",
                   help="also write the results as a Markdown section to FILE")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--connections", default="16,64", help="wrk connection counts")
    p.add_argument("--duration", type=int, help="seconds per wrk run [10; smoke 1]")
    p.add_argument("--put-large-duration", type=int,
                   help="seconds per PUT 1 MiB run [4; smoke 1]")
    p.add_argument("--small-count", type=int, help="4 KiB blocks in the store [10000; smoke 200]")
    p.add_argument("--large-count", type=int, help="1 MiB blocks in the store [1000; smoke 20]")
    p.add_argument("--scale-count", type=int,
                   help="blocks in the scale run [1000000; smoke 20000; 0 skips it]")
    p.add_argument("--scale-block", type=int, default=128, help="bytes per scale-run block")
    p.add_argument("--scale-store", type=Path, metavar="DIR",
                   help="keep the scale-run store in DIR and reuse it on later runs "
                        "(writing a million files takes minutes); never deleted")
    p.add_argument("--pool-small-rate", type=float,
                   help="PUT 4 KiB pool sized for this many req/s [20000; smoke 10000]")
    p.add_argument("--pool-large-mbps", type=float,
                   help="PUT 1 MiB pool sized for this many MB/s [1600; smoke 400]")
    p.add_argument("--node-log", default="info",
                   help="LIBERNET_LOG for the node; nginx logs each request too when 'info'")
    p.add_argument("--scrub-rate", help="node scrub_rate (config file); default: the node's")
    p.add_argument("--quiet-wait", type=float,
                   help="before each wrk run, wait up to this many seconds for other "
                        "processes to use < 0.2 cores [60; smoke 0]")
    p.add_argument("--attempts", type=int,
                   help="run a measurement up to this many times while other processes "
                        f"use > {OTHER_LIMIT} cores during it; keep the least disturbed "
                        "[3; smoke 1]")
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    """Fills the mode-dependent defaults."""
    smoke = args.smoke

    def pick(value, full, tiny):
        return value if value is not None else (tiny if smoke else full)

    return Plan(
        smoke=smoke,
        data_dir=args.dir,
        keep=args.keep,
        build=not args.no_build,
        markdown=args.markdown,
        threads=args.threads,
        connections=[int(c) for c in args.connections.split(",")],
        small_count=pick(args.small_count, 10_000, 200),
        large_count=pick(args.large_count, 1_000, 20),
        duration=pick(args.duration, 10, 1),
        put_large_duration=pick(args.put_large_duration, 4, 1),
        pool_small_rate=pick(args.pool_small_rate, 20_000.0, 10_000.0),
        pool_large_mbps=pick(args.pool_large_mbps, 1_600.0, 400.0),
        scale_count=pick(args.scale_count, 1_000_000, 20_000),
        scale_block=args.scale_block,
        scale_store=args.scale_store,
        node_log=args.node_log,
        scrub_rate=args.scrub_rate,
        workers=max(1, os.cpu_count() or 1),
        quiet_wait=pick(args.quiet_wait, 60.0, 0.0),
        attempts=pick(args.attempts, 3, 1),
    )


# --- the machine -----------------------------------------------------------------------

def _first_line(cmd: list[str]) -> str:
    """First output line of a version command (stdout or stderr), or why not."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def _filesystem(path: Path) -> str:
    """Type and device of the mount holding ``path``."""
    target = str(path.resolve())
    best = ("", "?", "?")
    for line in Path("/proc/self/mounts").read_text().splitlines():
        device, mount, fstype = line.split()[:3]
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best[0]):
            best = (mount, fstype, device)
    return f"{best[1]} on {best[2]} (mounted at {best[0]})"


def _git_revision() -> str:
    rev = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
                           capture_output=True, text=True).stdout.strip()
    return rev + (" (src/ has uncommitted changes)" if dirty else "")


def describe_machine(data_dir: Path) -> list[tuple[str, str]]:
    """What the numbers were measured on."""
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return [
        ("CPU", f"{cpu}, {os.cpu_count()} cores"),
        ("memory", f"{mem_kib / 1024 / 1024:.1f} GiB"),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("data dir filesystem", f"{data_dir}: {_filesystem(data_dir)}"),
        ("nginx", _first_line([str(NGINX), "-v"])),
        ("wrk", _first_line(["wrk", "-v"])),
        ("rustc", _first_line(["rustc", "-V"])),
        ("libernet", _git_revision()),
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
    ]


# --- steps -----------------------------------------------------------------------------

_STARTED = time.monotonic()


def say(text: str) -> None:
    """Prints a progress line, prefixed with the seconds since start."""
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {text}", flush=True)


def build_node() -> Path:
    """cargo build --release; returns the binary."""
    say("building: cargo build --release")
    started = time.monotonic()
    done = subprocess.run(["cargo", "build", "--release"], cwd=REPO, capture_output=True,
                          text=True, timeout=3600)
    if done.returncode != 0:
        raise BenchFailure("cargo build --release failed:\n" + done.stderr[-3000:])
    say(f"  built in {time.monotonic() - started:.0f} s")
    return REPO / "target" / "release" / "libernet"


def check_disk(plan: Plan) -> None:
    """Refuses to start when the data dir's file system is clearly too small."""
    free = shutil.disk_usage(plan.data_dir).free
    need = plan.disk_needed()
    if free < need:
        raise BenchFailure(f"{plan.data_dir} has {free / 1e9:.1f} GB free; this run may "
                           f"write up to {need / 1e9:.1f} GB (use smaller counts or --dir)")


def warm_up(url: str, ids: list[str], size: int) -> int:
    """GETs every block once over one keep-alive connection (page cache warm, and the
    node's first-read hash check done); returns how many answers were wrong."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    wrong = 0
    try:
        for block_id in ids:
            conn.request("GET", f"/sha256/{block_id}")
            reply = conn.getresponse()
            body = reply.read()
            if reply.status != 200 or len(body) != size:
                wrong += 1
    finally:
        conn.close()
    return wrong


def same_bytes(node: NodeProcess, nginx: NginxProcess, ids: list[str]) -> None:
    """Checks that both servers return identical, id-matching bytes for ``ids``."""
    for block_id in ids:
        a = http_get(f"{node.url}/sha256/{block_id}")
        b = http_get(f"{nginx.url}/sha256/{block_id}")
        if a[0] != 200 or b[0] != 200 or a[1] != b[1]:
            raise BenchFailure(f"node and nginx disagree on {block_id}: {a[0]} vs {b[0]}")
        if hashlib.sha256(a[1]).hexdigest() != block_id:
            raise BenchFailure(f"block {block_id} does not hash to its id")


class Bench:
    """One benchmark run: its directories, servers and collected rows."""

    def __init__(self, plan: Plan, binary: Path, run_dir: Path, stack: contextlib.ExitStack):
        self.plan = plan
        self.binary = binary
        self.run_dir = run_dir
        self.stack = stack
        self.rows: list[Row] = []
        self.failures: list[str] = []

    # servers

    def node(self, store: Path, name: str) -> NodeProcess:
        """Starts a node whose stop (and exit status check) is registered for cleanup."""
        config = None
        if self.plan.scrub_rate is not None:
            config = self.run_dir / "node.toml"
            config.write_text(f"scrub_rate = {self.plan.scrub_rate}\n", encoding="utf-8")
        node = start_node(self.binary, store, self.run_dir / name, self.plan.node_log,
                          quota=str(self.plan.quota_bytes()), config=config)
        self.stack.callback(self._stop_quietly, node, name)
        return node

    def nginx(self, store: Path, probe_id: str) -> NginxProcess:
        server = start_nginx(NGINX, self.run_dir / "nginx", store, f"/sha256/{probe_id}",
                             access_log=self.plan.node_log in ("info", "debug", "trace"))
        self.stack.callback(self._stop_quietly, server, "nginx")
        return server

    def stop(self, server: NodeProcess | NginxProcess, name: str) -> None:
        """Stops a server now, noting a failure if it had died or stopped badly."""
        if not server.alive():
            self.failures.append(f"{name} died during the run (status {server.proc.returncode})")
            return
        try:
            server.stop()
        except ServerError as e:
            self.failures.append(str(e))

    def _stop_quietly(self, server: NodeProcess | NginxProcess, name: str) -> None:
        """Cleanup: stops a server still running (one already stopped is left alone)."""
        if server.proc.returncode is None:
            self.stop(server, name)

    # wrk

    def measure(self, row_test: str, server_name: str, server: NodeProcess | NginxProcess,
                connections: int, script: str, script_args: list[str], duration: int,
                block_size: int | None, expect_404: bool = False) -> Row | None:
        """A wrk run, repeated (up to --attempts) while other processes used more than
        OTHER_LIMIT cores during it; keeps the least disturbed attempt as the row."""
        best = None
        for attempt in range(1, self.plan.attempts + 1):
            result = self.run_once(row_test, server_name, server, connections, script,
                                   script_args, duration)
            if result is None:
                return None
            if best is None or result.other_cores < best.other_cores:
                best = result
            if result.other_cores < OTHER_LIMIT or attempt == self.plan.attempts:
                break
            say(f"    other processes used {result.other_cores:.2f} cores: running again")
        return self.add_row(Row(row_test, server_name, connections, best, block_size,
                                expect_404=expect_404))

    def run_once(self, row_test: str, server_name: str, server: NodeProcess | NginxProcess,
                 connections: int, script: str, script_args: list[str],
                 duration: int) -> WrkResult | None:
        """One wrk run after waiting for a quiet machine; None (and a failure) if wrk
        broke. Prints the run's figures."""
        if not server.alive():
            raise BenchFailure(f"{server_name} exited (status {server.proc.returncode}) "
                               f"before {row_test} c={connections}")
        if self.plan.quiet_wait > 0:
            waited, other = wait_for_quiet(server.pids(), self.plan.quiet_wait)
            if waited >= 1:
                say(f"  (waited {waited:.0f} s for other load to settle; now {other:.2f} cores)")
        try:
            result = run_wrk(server.url, script, script_args, threads=self.plan.threads,
                             connections=connections, duration_s=duration,
                             server_pids=server.pids())
        except WrkError as e:
            self.failures.append(f"{row_test} {server_name} c={connections}: {e}")
            return None
        if not server.alive():
            self.failures.append(f"{server_name} died during {row_test} c={connections}")
        return result

    def add_row(self, row: Row) -> Row:
        """Keeps a row and prints it."""
        self.rows.append(row)
        r = row.result
        note = row.note()
        say(f"  {row.test:<10} {row.server:<5} c={row.connections:<3} {row.req_per_s:>9,.0f} "
            f"req/s {row.mb_per_s:>8,.1f} MB/s  p50 {row.p50_ms:6.2f} ms  p99 "
            f"{row.p99_ms:7.2f} ms  non-2xx {r.non_2xx}  cpu server {r.server_cores:.2f} "
            f"wrk {r.wrk_cores:.2f} other {r.other_cores:.2f}" + (f"  [{note}]" if note else ""))
        return row

    # phases

    def main_phase(self) -> None:
        """10k x 4 KiB + 1k x 1 MiB: GETs against node and nginx, LIKE and PUTs."""
        plan = self.plan
        store = self.run_dir / "store"
        say(f"filling {store}: {plan.small_count:,} x 4 KiB + {plan.large_count:,} x 1 MiB")
        started = time.monotonic()
        small = bench_data.fill_store(store, plan.small_count, SMALL,
                                      self.run_dir / "small.ids", plan.workers)
        large = bench_data.fill_store(store, plan.large_count, LARGE,
                                      self.run_dir / "large.ids", plan.workers)
        os.sync()
        say(f"  written and synced in {time.monotonic() - started:.1f} s")

        node = self.node(store, "node")
        say(f"node: {node.url} (pid {node.pid}, ready in {node.ready_secs:.2f} s)")
        nginx = self.nginx(store, small[0])
        say(f"nginx: {nginx.url} (pid {nginx.proc.pid}, workers {nginx.worker_pids})")
        same_bytes(node, nginx, small[:3] + large[:3])
        self.warm(node, nginx, small, large)

        self.get_runs(node, nginx, "GET 4 KiB", self.run_dir / "small.ids", SMALL)
        self.get_runs(node, nginx, "GET 1 MiB", self.run_dir / "large.ids", LARGE)
        targets = bench_data.write_ids(self.run_dir / "like.ids", small + large)
        for c in plan.connections:
            self.measure("LIKE", "node", node, c, "get.lua", [str(targets), "/sha256/like/"],
                         plan.duration, None)
        self.stop(nginx, "nginx")
        for size in (SMALL, LARGE):
            for c in plan.connections:
                self.put_run(node, size, c)
        self.stop(node, "node")

    def warm(self, node: NodeProcess, nginx: NginxProcess, small: list[str],
             large: list[str]) -> None:
        """Fetches every block once from each server before anything is measured."""
        started = time.monotonic()
        wrong = 0
        for server in (node, nginx):
            wrong += warm_up(server.url, small, SMALL) + warm_up(server.url, large, LARGE)
        if wrong:
            raise BenchFailure(f"{wrong} warm-up GETs did not return the whole block")
        say(f"  warm-up: every block fetched once from each server in "
            f"{time.monotonic() - started:.1f} s")

    def get_runs(self, node: NodeProcess, nginx: NginxProcess, test: str, ids: Path,
                 size: int) -> None:
        """The same random GETs against node then nginx, per connection count: first
        with statuses counted in Lua, then without the response() callback (which costs
        wrk a copy of every body; see tools/wrk/get_uncounted.lua)."""
        variants = [(test, "get.lua"), (f"{test} (uncounted)", "get_uncounted.lua")]
        for c in self.plan.connections:
            for name, script in variants:
                for server_name, server in (("node", node), ("nginx", nginx)):
                    self.measure(name, server_name, server, c, script,
                                 [str(ids), "/sha256/"], self.plan.duration, size)

    def put_run(self, node: NodeProcess, size: int, connections: int) -> None:
        """A PUT run, each attempt with its own pool of fresh blocks (deleted after it);
        repeated like ``measure`` while other processes disturbed it."""
        plan = self.plan
        best = None
        for attempt in range(1, plan.attempts + 1):
            pool = self.run_dir / f"pool-{size}-{connections}-{attempt}"
            try:
                self.make_pool(pool, size)
                result = self.run_once(f"PUT {size_name(size)}", "node", node, connections,
                                       "put.lua", [str(pool), str(size), str(plan.threads)],
                                       plan.put_duration(size))
            finally:
                shutil.rmtree(pool, ignore_errors=True)
            if result is None:
                return
            if best is None or result.other_cores < best.other_cores:
                best = result
            if result.other_cores < OTHER_LIMIT or attempt == plan.attempts:
                break
            say(f"    other processes used {result.other_cores:.2f} cores: running again")
        self.add_row(Row(f"PUT {size_name(size)}", "node", connections, best, size,
                         is_put=True))

    def make_pool(self, pool: Path, size: int) -> None:
        """Fresh blocks for one PUT run, synced so that no write-back runs during it."""
        plan = self.plan
        blocks = plan.put_pool_blocks(size)
        started = time.monotonic()
        bench_data.make_put_pool(pool, plan.threads, blocks // plan.threads, size, plan.workers)
        os.sync()
        say(f"  pool: {blocks:,} fresh {size_name(size)} blocks "
            f"({blocks * size / 1e9:.2f} GB) in {time.monotonic() - started:.1f} s")

    def scale_phase(self) -> ScaleFigures:
        """A fresh store of many small blocks: start-up, memory, LIKE latency."""
        plan = self.plan
        figures = ScaleFigures(plan.scale_count, plan.scale_block)

        empty = self.node(self.run_dir / "scale-empty", "scale-empty-node")
        time.sleep(1.0)
        figures.empty_rss_kib = memory_kib(empty.pid)["VmRSS"]
        self.stop(empty, "scale-empty-node")

        store, ids = self.scale_store(figures)
        stored = bench_data.write_ids(self.run_dir / "scale-like.ids",
                                      bench_data.sample(ids, MAX_TARGETS))
        randoms = bench_data.write_ids(self.run_dir / "scale-random.ids",
                                       bench_data.random_ids(min(MAX_TARGETS, len(ids)), 7))
        del ids

        node = self.node(store, "scale-node")
        figures.first_line_secs, figures.first_ready_secs = node.line_secs, node.ready_secs
        time.sleep(1.0)
        mem = memory_kib(node.pid)
        figures.rss_kib, figures.hwm_kib = mem["VmRSS"], mem["VmHWM"]
        figures.idle_cores = idle_cores(node.pid, 2.0)
        say(f"  first start-up {node.ready_secs:.2f} s, VmRSS {figures.rss_kib / 1024:.1f} MiB "
            f"(empty store {figures.empty_rss_kib / 1024:.1f} MiB), "
            f"{figures.bytes_per_block:.1f} B/block, idle CPU {figures.idle_cores:.2f} cores")
        # One connection per wrk thread first: LIKE latency without queueing.
        runs = [("stored", stored, c) for c in [plan.threads, *plan.connections]]
        runs.append(("random", randoms, plan.connections[0]))
        for kind, targets, c in runs:
            row = self.measure(f"LIKE {kind}", "node", node, c, "get.lua",
                               [str(targets), "/sha256/like/"], plan.duration, None,
                               expect_404=kind == "random")
            if row:
                figures.like_rows.append(row)
        figures.rss_after_like_kib = memory_kib(node.pid)["VmRSS"]
        self.stop(node, "scale-node")
        warm = self.node(store, "scale-warm-node")
        figures.warm_line_secs, figures.warm_ready_secs = warm.line_secs, warm.ready_secs
        say(f"  warm restart: start-up {warm.ready_secs:.2f} s")
        self.stop(warm, "scale-warm-node")
        self.cold_start(store, figures)
        return figures

    def scale_store(self, figures: ScaleFigures) -> tuple[Path, list[str]]:
        """The scale run's store and its ids: written now, or reused from --scale-store
        when a complete one of the same size is there."""
        plan = self.plan
        if plan.scale_store is None:
            store, ids_file = self.run_dir / "scale-store", self.run_dir / "scale.ids"
        else:
            store, ids_file = plan.scale_store, plan.scale_store / "bench-ids.txt"
            if ids_file.exists():
                ids = ids_file.read_text(encoding="ascii").split()
                if len(ids) == plan.scale_count:
                    say(f"scale: reusing {len(ids):,} blocks in {store}")
                    return store, ids
                raise BenchFailure(f"{store} holds {len(ids):,} blocks, not "
                                   f"{plan.scale_count:,}; remove it or pick another dir")
        say(f"scale: writing {plan.scale_count:,} x {size_name(plan.scale_block)} blocks "
            f"into {store}")
        started = time.monotonic()
        partial = ids_file.with_name(ids_file.name + ".partial")
        ids = bench_data.fill_store(store, plan.scale_count, plan.scale_block, partial,
                                    plan.workers)
        os.sync()
        partial.rename(ids_file)  # only a complete store gets an id list
        figures.write_secs = time.monotonic() - started
        say(f"  written and synced in {figures.write_secs:.1f} s")
        return store, ids

    def cold_start(self, store: Path, figures: ScaleFigures) -> None:
        """Start-up again after dropping the page cache, if this machine allows it."""
        os.sync()
        try:
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
        except OSError as e:
            figures.cold_note = f"dropping caches not permitted ({e.strerror})"
            say(f"  cold start skipped: {figures.cold_note}")
            return
        node = self.node(store, "scale-cold-node")
        figures.cold_line_secs, figures.cold_ready_secs = node.line_secs, node.ready_secs
        say(f"  cold start-up {node.ready_secs:.2f} s")
        self.stop(node, "scale-cold-node")


def wait_for_quiet(own_pids: list[int], max_wait: float, limit: float = 0.2,
                   sample: float = 0.5) -> tuple[float, float]:
    """Waits (at most ``max_wait`` s) until processes other than ``own_pids`` use under
    ``limit`` cores over a ``sample``-second window. Returns (seconds waited, cores the
    others used in the last window)."""
    started = time.monotonic()
    while True:
        machine, own = machine_busy_seconds(), sum(cpu_seconds(p) for p in own_pids)
        time.sleep(sample)
        machine = machine_busy_seconds() - machine
        own = sum(cpu_seconds(p) for p in own_pids) - own
        other = max(0.0, (machine - own) / sample)
        waited = time.monotonic() - started
        if other < limit or waited >= max_wait:
            return waited, other


def idle_cores(pid: int, seconds: float) -> float:
    """Average cores a process uses over ``seconds`` of no requests."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


# --- main ------------------------------------------------------------------------------

def settings_lines(plan: Plan) -> list[str]:
    """The run's parameters, for the report."""
    return [
        f"mode: {'smoke' if plan.smoke else 'full'}; wrk: {plan.threads} threads, "
        f"connections {', '.join(map(str, plan.connections))}, {plan.duration} s per run "
        f"(PUT 1 MiB: {plan.put_large_duration} s), request timeout 10 s",
        f"store: {plan.small_count:,} x 4 KiB + {plan.large_count:,} x 1 MiB random blocks, "
        "page cache warm (every block fetched once from each server before measuring)",
        f"node: LIBERNET_LOG={plan.node_log} (stderr to a file), "
        f"scrub_rate {'default (8 MiB/s)' if plan.scrub_rate is None else plan.scrub_rate}, "
        f"--quota {plan.quota_bytes()} (no eviction during the run)",
        "nginx: worker_processes 2, sendfile on, tcp_nopush on, keepalive_requests 1000000, "
        f"access_log {'on (file)' if plan.node_log in ('info', 'debug', 'trace') else 'off'}",
        f"PUT pools: {plan.put_pool_blocks(SMALL):,} x 4 KiB and "
        f"{plan.put_pool_blocks(LARGE):,} x 1 MiB fresh blocks per run "
        f"(sized for {plan.pool_small_rate:,.0f} req/s and {plan.pool_large_mbps:,.0f} MB/s)",
        f"scale run: {plan.scale_count:,} x {plan.scale_block} B blocks in a fresh store",
        f"before each wrk run: wait up to {plan.quiet_wait:g} s for other processes to use "
        f"< 0.2 cores; a run during which they used > {OTHER_LIMIT} cores is repeated, up to "
        f"{plan.attempts} attempts, keeping the least disturbed (the 'other CPU' column)",
        "GET and LIKE targets: uniformly random from the stored ids (LIKE in the scale run: "
        f"up to {MAX_TARGETS:,} stored ids, and as many random ids)",
    ]


def run(plan: Plan) -> int:
    """Runs everything; returns the exit code."""
    command = shlex.join(sys.orig_argv)
    plan.data_dir.mkdir(parents=True, exist_ok=True)
    machine = describe_machine(plan.data_dir)
    print("machine:\n" + "\n".join(f"  {k}: {v}" for k, v in machine))
    say(f"command: {command}")
    check_disk(plan)
    built = build_node() if plan.build else REPO / "target" / "release" / "libernet"
    run_dir = plan.data_dir / f"run-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    run_dir.mkdir(parents=True)
    say(f"data: {run_dir}")
    # A private copy: a rebuild in the shared target dir during the run cannot change
    # which binary later node starts use.
    binary = run_dir / "libernet"
    shutil.copy2(built, binary)
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()[:16]
    machine.append(("libernet binary", f"{built} (sha256 {digest}..., copied for the run)"))
    say(f"binary: {built}, sha256 {digest}...")

    scale = None
    with contextlib.ExitStack() as stack:
        if not plan.keep:
            stack.callback(shutil.rmtree, run_dir, True)
        bench = Bench(plan, binary, run_dir, stack)
        try:
            bench.main_phase()
            if plan.scale_count > 0:
                scale = bench.scale_phase()
        except (BenchFailure, ServerError) as e:
            bench.failures.append(str(e))
    return report(plan, machine, command, bench, scale)


def report(plan: Plan, machine: list[tuple[str, str]], command: str, bench: Bench,
           scale: ScaleFigures | None) -> int:
    """Prints (and maybe writes) the results; returns the exit code."""
    scale_ids = {id(row) for row in scale.like_rows} if scale else set()
    rows = [row for row in bench.rows if id(row) not in scale_ids]
    verdicts = main_verdicts(rows, plan.connections)
    scale_verdicts = scale.verdicts(plan.scale_count >= 1_000_000) if scale else []
    print("\nresults:\n" + results_table(rows))
    if scale:
        print("\nscale run:\n" + "\n".join(scale.lines()))
    print("\ntargets:\n" + "\n".join(v.line() for v in verdicts + scale_verdicts))
    if plan.markdown:
        title = f"{'Smoke' if plan.smoke else 'Full'} run, {dict(machine)['date']}"
        text = markdown_section(title, machine, command, settings_lines(plan), rows,
                                verdicts, scale, scale_verdicts)
        plan.markdown.parent.mkdir(parents=True, exist_ok=True)
        plan.markdown.write_text(text, encoding="utf-8")
        print(f"\nwrote {plan.markdown}")
    return exit_code(plan, bench, scale)


def exit_code(plan: Plan, bench: Bench, scale: ScaleFigures | None) -> int:
    """1 on a failed process; in smoke mode also on any non-2xx or socket error."""
    for failure in bench.failures:
        say(f"FAILED: {failure}")
    rows = bench.rows + (scale.like_rows if scale else [])
    bad = [r for r in rows if r.unexpected or r.result.errors]
    if plan.smoke and bad:
        say(f"FAILED: {len(bad)} runs had non-2xx answers or socket errors")
    if bench.failures or (plan.smoke and bad):
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    # SIGTERM unwinds like Ctrl-C, so the servers are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run(make_plan(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
