#!/usr/bin/env python3
"""Benchmark the mesh: lookups, popularity-driven replication and swarming.

1. lookup: N nodes on 127.0.0.1 with small quotas; random blocks are PUT, each on a
   random node; after the push rounds settle, each block is fetched from a random other
   node (status, `Libernet-Hops`, time). Then 30% of the nodes are SIGKILLed and every
   block is fetched again from a random live node; blocks whose every copy was on a
   killed node (found by a `HEAD ?wait=0` census just before the kill) are counted
   apart, since nobody can find them.
2. popularity: N nodes whose quotas hold a fraction of the blocks; R rounds of
   Zipf-distributed GETs over random nodes; then a census of replicas per block, plotted
   against request rank (SVG), with targets on the head, the tail and the last round.
3. custody: N nodes with a short --repair-interval; K blocks PUT pinned (admin token,
   `Libernet-Pin`) on random nodes and unpinned filler beside them; once every kept
   block is on >= 3 nodes, 30% of the nodes are SIGKILLed; censuses until every kept
   block is back on >= 3 live nodes (bounded by a stated repair time); then kept blocks
   lost (held by no live node), blocks on >= 3 live nodes, and a GET of each.
4. swarm (root only): peers in their own network namespaces with egress limited by tc
   tbf; a 100 MiB file's blocks each on the peer nearest its id; the file is fetched
   through a fresh client node that knows every peer, and through one that knows a single
   peer holding every block, with curl and with `libernet get`.

    python3 tools/bench_mesh.py                       # full run (about 6 minutes)
    python3 tools/bench_mesh.py --smoke               # tiny run (about 25 s); exit 1 on failure
    python3 tools/bench_mesh.py --markdown docs/mesh.md   # also the report and its SVG plots

Every node started is stopped at the end and every namespace created is deleted, also on
errors, Ctrl-C or SIGTERM. Needs Python 3.11 (stdlib only), cargo, curl; the swarm part
needs root and iproute2 (ip, tc) and is skipped, with a note, without them.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import platform
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from bisect import bisect_left
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape

sys.dont_write_bytecode = True  # no __pycache__ next to the sibling modules
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_report import Verdict, publish  # noqa: E402
from mesh import (  # noqa: E402
    Mesh, MeshError, Node, NodeSettings, close_connections, netns_unavailable,
)

REPO = Path(__file__).resolve().parent.parent
KIB = 1024
MIB = 1024 * 1024

#: Replicas a block should have at its homes (REPLICAS in src/mesh/mod.rs).
HOMES = 3

#: Swarming target: fetching from many limited peers vs from one.
SWARM_TARGET = 3.0

_STARTED = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {text}", flush=True)


class BenchFailure(RuntimeError):
    """Something that must not happen: a crash, a wrong answer, a failed command."""


# --- the plan --------------------------------------------------------------------------

@dataclass
class LookupPlan:
    nodes: int
    blocks: int
    block_size: int
    quota: str
    kill_fraction: float
    wait: float
    push: float
    gossip: float
    recovery: float


@dataclass
class PopularityPlan:
    nodes: int
    blocks: int
    block_size: int
    quota: str
    rounds: int
    per_round: int
    zipf: float
    concurrency: int
    half_life: float
    push: float
    gossip: float
    wait: float
    settle: float


@dataclass
class CustodyPlan:
    nodes: int
    kept: int
    filler: int
    block_size: int
    quota: str
    custody_share: int | None
    repair: float
    push: float
    gossip: float
    kill_fraction: float
    settle: float
    repair_wait: float
    wait: float


@dataclass
class SwarmPlan:
    peers: int
    file_mib: int
    rate: str
    burst: str
    latency: str
    repeats: int
    methods: list[str]
    timeout: float


@dataclass
class Plan:
    smoke: bool
    data_dir: Path
    keep: bool
    build: bool
    markdown: Path | None
    seed: int
    parts: list[str]
    node_log: str
    converge_timeout: float
    lookup: LookupPlan
    popularity: PopularityPlan
    custody: CustodyPlan
    swarm: SwarmPlan


PARTS = ("lookup", "popularity", "custody", "swarm")

#: Lookup targets of issue 14: share of GETs of blocks with a live copy that are found.
LOOKUP_SUCCESS_TARGET = 0.999

#: Threads a census uses (HEAD ?wait=0 requests in flight); more nodes, more threads.
CENSUS_THREADS = 16


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--smoke", action="store_true",
                   help="tiny meshes and sizes (< 2 min); exit 1 on any failure")
    p.add_argument("--dir", type=Path, default=Path("/tmp/libernet-bench"),
                   help="where stores and logs go (a fresh mesh-* subdirectory)")
    p.add_argument("--keep", action="store_true", help="keep the run directory")
    p.add_argument("--no-build", action="store_true", help="skip cargo build --release")
    p.add_argument("--markdown", type=Path, metavar="FILE",
                   help="write the report to FILE and its SVG plots beside it")
    p.add_argument("--seed", type=int, default=1, help="random seed of blocks and choices")
    p.add_argument("--only", default=",".join(PARTS),
                   help="comma-separated parts to run: lookup, popularity, custody, swarm")
    p.add_argument("--node-log", default="warn", help="LIBERNET_LOG for the nodes")
    p.add_argument("--converge-timeout", type=float, default=90.0,
                   help="seconds a mesh gets until every node knows all others")
    g = p.add_argument_group("lookup")
    g.add_argument("--lookup-nodes", type=int, help="nodes [20; smoke 6]")
    g.add_argument("--lookup-blocks", type=int, help="blocks [1000; smoke 120]")
    g.add_argument("--lookup-kib", type=int, help="block size in KiB [64; smoke 16]")
    g.add_argument("--lookup-quota", help="quota per node [16MiB; smoke 2MiB]")
    g.add_argument("--kill-fraction", type=float, default=0.3, help="share of nodes killed")
    g.add_argument("--lookup-wait", type=float, default=5.0, help="?wait= of each GET, s")
    g.add_argument("--recovery", type=float,
                   help="after the kill phase, wait up to this many seconds for every live "
                        "node to drop the killed ones, let pushes settle and fetch again "
                        "(0: skip) [90; smoke 0]")
    g = p.add_argument_group("popularity")
    g.add_argument("--pop-nodes", type=int, help="nodes [20; smoke 8]")
    g.add_argument("--pop-blocks", type=int, help="blocks [2000; smoke 200]")
    g.add_argument("--pop-kib", type=int, help="block size in KiB [16; smoke 16]")
    g.add_argument("--pop-quota", help="quota per node [8MiB; smoke 2MiB]")
    g.add_argument("--rounds", type=int, help="request rounds [10; smoke 3]")
    g.add_argument("--per-round", type=int, help="GETs per round [2000; smoke 300]")
    g.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent over the ranks")
    g.add_argument("--concurrency", type=int, default=4, help="GETs in flight")
    g.add_argument("--half-life", type=float, default=60.0, help="nodes' --half-life, s")
    g = p.add_argument_group("custody")
    g.add_argument("--custody-nodes", type=int, help="nodes [20; smoke 6]")
    g.add_argument("--custody-kept", type=int,
                   help="kept blocks, each PUT pinned on a random node [500; smoke 40]")
    g.add_argument("--custody-filler", type=int,
                   help="unpinned blocks PUT beside them, so quotas fill [2500; smoke 100]")
    g.add_argument("--custody-kib", type=int, help="block size in KiB [16; smoke 16]")
    g.add_argument("--custody-quota", help="quota per node [8MiB; smoke 2MiB]")
    g.add_argument("--custody-share", type=int,
                   help="nodes' --custody-share, percent [node default, 50]")
    g.add_argument("--repair-interval", type=float,
                   help="nodes' --repair-interval, s [2; smoke 1]")
    g.add_argument("--custody-kill", type=float, default=0.3,
                   help="share of nodes SIGKILLed after the kept blocks are placed")
    g.add_argument("--custody-settle", type=float,
                   help="seconds allowed, before the kill, for every kept block to reach "
                        ">= 3 nodes [120; smoke 40]")
    g.add_argument("--repair-wait", type=float,
                   help="the stated repair time: seconds after the kill within which every "
                        "kept block should be back on >= 3 live nodes [120; smoke 40]")
    g = p.add_argument_group("swarm")
    g.add_argument("--swarm-peers", type=int, help="rate-limited peers [8; smoke 3]")
    g.add_argument("--swarm-mib", type=int, help="file size in MiB [100; smoke 8]")
    g.add_argument("--rate", default="100mbit", help="tbf rate of each peer's egress")
    g.add_argument("--burst", default="256kb", help="tbf burst")
    g.add_argument("--latency", default="50ms", help="tbf latency (queue bound)")
    g.add_argument("--repeats", type=int, help="fetches per client kind and method [2; smoke 1]")
    g.add_argument("--methods", default="curl,get",
                   help="how the file is fetched: curl (the node decrypts), get (the CLI)")
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    smoke = args.smoke

    def pick(value, full, tiny):
        return value if value is not None else (tiny if smoke else full)

    parts = [x.strip() for x in args.only.split(",") if x.strip()]
    for part in parts:
        if part not in PARTS:
            raise SystemExit(f"--only: unknown part {part!r} (choose from {', '.join(PARTS)})")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in ("curl", "get"):
            raise SystemExit(f"--methods: unknown method {m!r}")
    return Plan(
        smoke=smoke, data_dir=args.dir, keep=args.keep, build=not args.no_build,
        markdown=args.markdown, seed=args.seed, parts=parts, node_log=args.node_log,
        converge_timeout=args.converge_timeout,
        lookup=LookupPlan(
            nodes=pick(args.lookup_nodes, 20, 6), blocks=pick(args.lookup_blocks, 1000, 120),
            block_size=pick(args.lookup_kib, 64, 16) * KIB,
            quota=pick(args.lookup_quota, "16MiB", "2MiB"),
            kill_fraction=args.kill_fraction, wait=args.lookup_wait,
            push=pick(None, 2.0, 1.0), gossip=pick(None, 2.0, 1.0),
            recovery=pick(args.recovery, 90.0, 0.0)),
        popularity=PopularityPlan(
            nodes=pick(args.pop_nodes, 20, 8), blocks=pick(args.pop_blocks, 2000, 200),
            block_size=pick(args.pop_kib, 16, 16) * KIB,
            quota=pick(args.pop_quota, "8MiB", "2MiB"),
            rounds=pick(args.rounds, 10, 3), per_round=pick(args.per_round, 2000, 300),
            zipf=args.zipf, concurrency=args.concurrency, half_life=args.half_life,
            push=1.0, gossip=pick(None, 2.0, 1.0), wait=3.0, settle=3.0),
        custody=CustodyPlan(
            nodes=pick(args.custody_nodes, 20, 6), kept=pick(args.custody_kept, 500, 40),
            filler=pick(args.custody_filler, 2500, 100),
            block_size=pick(args.custody_kib, 16, 16) * KIB,
            quota=pick(args.custody_quota, "8MiB", "2MiB"), custody_share=args.custody_share,
            repair=pick(args.repair_interval, 2.0, 1.0), push=pick(None, 2.0, 1.0),
            gossip=pick(None, 2.0, 1.0), kill_fraction=args.custody_kill,
            settle=pick(args.custody_settle, 120.0, 40.0),
            repair_wait=pick(args.repair_wait, 120.0, 40.0), wait=5.0),
        swarm=SwarmPlan(
            peers=pick(args.swarm_peers, 8, 3), file_mib=pick(args.swarm_mib, 100, 8),
            rate=args.rate, burst=args.burst, latency=args.latency,
            repeats=pick(args.repeats, 2, 1), methods=methods,
            timeout=pick(None, 600.0, 60.0)),
    )


# --- small helpers ---------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation; nan for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def xor(a: str, b: str) -> int:
    return int(a, 16) ^ int(b, 16)


def make_blocks(rng: random.Random, count: int, size: int) -> list[tuple[str, bytes]]:
    out = []
    for _ in range(count):
        data = rng.randbytes(size)
        out.append((hashlib.sha256(data).hexdigest(), data))
    return out


def render_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([fmt(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(fmt(r) for r in rows)])




def metric_sum(mesh: Mesh, nodes: list[Node], names: list[str]) -> dict[str, float]:
    """Each metric summed over `nodes` (nodes that do not answer are skipped)."""
    total = dict.fromkeys(names, 0.0)
    for node in nodes:
        try:
            m = mesh.metrics(node)
        except OSError:
            continue
        for name in names:
            total[name] += m.get(name, 0.0)
    return total


LOOKUP_METRICS = [
    "libernet_lookups_sent_total", "libernet_lookups_found_total",
    "libernet_lookups_failed_total", "libernet_evictions_total", "libernet_pushes_sent_total",
    "libernet_pushes_declined_total", "libernet_downloads_total",
    'libernet_lookup_hops{hops="1"}', 'libernet_lookup_hops{hops="2"}',
    'libernet_lookup_hops{hops="3"}', 'libernet_lookup_hops{hops="4+"}',
]


def census(mesh: Mesh, nodes: list[Node], ids: list[str],
           threads: int = CENSUS_THREADS) -> dict[str, set[int]]:
    """Which of `nodes` hold each block now (`HEAD ?wait=0`: 200 held, 504 not)."""
    held: dict[str, set[int]] = {i: set() for i in ids}
    problems: list[str] = []

    def one_node(node: Node) -> list[str]:
        mine = []
        try:
            for block in ids:
                status = mesh.head(node, block, wait=0, timeout=30)
                if status == 200:
                    mine.append(block)
                elif status != 504:
                    problems.append(f"HEAD {block[:12]} on {node.name}: {status}")
        finally:
            close_connections()
        return mine

    with ThreadPoolExecutor(min(threads, len(nodes))) as pool:
        for node, mine in zip(nodes, pool.map(one_node, nodes), strict=True):
            for block in mine:
                held[block].add(node.index)
    if problems:
        raise BenchFailure(f"census: {len(problems)} unexpected answers, e.g. {problems[:3]}")
    return held


def settle_pushes(mesh: Mesh, nodes: list[Node], interval: float, min_rounds: int = 2,
                  max_rounds: int = 12) -> tuple[int, float]:
    """Waits `min_rounds` push intervals, then until a round passes with no push kept
    (at most `max_rounds` rounds in all). Returns (pushes kept, seconds)."""
    started = time.monotonic()
    time.sleep(interval * min_rounds)
    before = metric_sum(mesh, nodes, ["libernet_pushes_sent_total"])["libernet_pushes_sent_total"]
    for _ in range(max_rounds - min_rounds):
        time.sleep(interval * 1.5)
        now = metric_sum(mesh, nodes, ["libernet_pushes_sent_total"])["libernet_pushes_sent_total"]
        if now == before:
            break
        before = now
    return int(before), time.monotonic() - started


# --- lookups ---------------------------------------------------------------------------

@dataclass
class Sample:
    block: str
    node: int
    status: int  # 0: the request itself failed
    hops: int | None
    seconds: float
    error: str = ""


@dataclass
class PhaseResult:
    name: str
    samples: list[Sample]
    lost: set[str] = field(default_factory=set)
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    nodes: int = 0  # live nodes during the phase

    def count(self, status: int) -> int:
        return sum(1 for s in self.samples if s.status == status)

    def hops(self) -> list[int]:
        return [s.hops for s in self.samples if s.status == 200 and s.hops is not None]


def homes(block: str, nodes: list[Node]) -> set[int]:
    """Indexes of the `HOMES` nodes nearest `block` by XOR."""
    return {n.index for n in sorted(nodes, key=lambda n: xor(n.id, block))[:HOMES]}


def homes_complete(ids: list[str], held: dict[str, set[int]], nodes: list[Node]) -> str:
    """How many blocks are held by each of their `HOMES` nearest nodes among `nodes`."""
    full = sum(1 for b in ids if homes(b, nodes) <= held[b])
    return f"{full} of {len(ids)}"


def holder_ranks(blocks: list[str], held: dict[str, set[int]], nodes: list[Node]) -> str:
    """Where the copies of `blocks` were: each holder's rank by XOR distance to the
    block among `nodes` (0 = the nearest node; lookups go to the nearest peers first)."""
    ranks = []
    for block in blocks:
        order = sorted(nodes, key=lambda n: xor(n.id, block))
        pos = {n.index: i for i, n in enumerate(order)}
        ranks.append(sorted(pos[i] for i in held[block] if i in pos))
    nearest = [r[0] for r in ranks if r]
    if not nearest:
        return "no holder among those nodes"
    return (f"XOR rank of the nearest holder (0 = nearest node): median "
            f"{statistics.median(nearest):g}, min {min(nearest)}, max {max(nearest)}; e.g. "
            + "; ".join(f"{b[:8]} at ranks {r}" for b, r in list(zip(blocks, ranks))[:3]))


def hops_p99(hops: list[int]) -> int | None:
    """The 99th percentile of hop counts by nearest rank (a count some answer took)."""
    if not hops:
        return None
    s = sorted(hops)
    return s[max(0, math.ceil(0.99 * len(s)) - 1)]


def lookup_verdicts(ph: PhaseResult) -> list[Verdict]:
    """Issue 14's lookup targets for one phase: success >= 99.9% of the GETs of blocks
    that some live node held, and hops p99 <= log2(live nodes)."""
    findable = [s for s in ph.samples if s.block not in ph.lost]
    ok = sum(1 for s in findable if s.status == 200)
    rate = ok / max(1, len(findable))
    hops = [s.hops for s in findable if s.status == 200 and s.hops is not None]
    p99 = hops_p99(hops)
    bound = math.log2(max(2, ph.nodes))
    return [
        Verdict(f"lookup, {ph.name}: success >= {LOOKUP_SUCCESS_TARGET:.1%} of blocks with a "
                "live copy", f"{rate:.2%} ({ok}/{len(findable)})",
                rate >= LOOKUP_SUCCESS_TARGET),
        Verdict(f"lookup, {ph.name}: hops p99 <= log2({ph.nodes} live nodes) = {bound:.2f}",
                f"p99 {p99 if p99 is not None else '-'}, max {max(hops) if hops else '-'}",
                p99 is not None and p99 <= bound),
    ]


def node_rss(nodes: list[Node]) -> str:
    """Resident memory of the nodes' processes (VmRSS), mean and max."""
    sizes = []
    for n in nodes:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{n.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]) / 1024)
    if not sizes:
        return "unknown"
    return (f"mean {statistics.mean(sizes):.1f} MiB, max {max(sizes):.1f} MiB over "
            f"{len(sizes)} nodes")


#: Holder name of the bench's pins (`Libernet-Pin`).
CUSTODY_HOLDER = "bench-custody"


def poll_copies(mesh: Mesh, ids: list[str], bound: float, since: float,
                pause: float) -> tuple[float | None, list[tuple[float, float, int]]]:
    """Censuses of the blocks still on fewer than `HOMES` live nodes, `pause` seconds
    apart, until none is or `bound` seconds after `since` have passed. A block found on
    enough nodes is not asked about again (the caller's full census checks it stayed).
    Returns the seconds from `since` to the end of the census that found none short
    (None: not within `bound`), and each census as (start, end, blocks short), in
    seconds after `since`."""
    pending = list(ids)
    polls: list[tuple[float, float, int]] = []
    while True:
        t = time.monotonic()
        held = census(mesh, mesh.live, pending)
        pending = [b for b in pending if len(held[b]) < HOMES]
        end = time.monotonic()
        polls.append((t - since, end - since, len(pending)))
        if not pending:
            return end - since, polls
        if end - since >= bound:
            return None, polls
        time.sleep(min(pause, max(0.0, since + bound - time.monotonic())))


REPAIR_METRICS = ["libernet_repair_checks_total", "libernet_repair_copies_total",
                  "libernet_repair_bytes_total", "libernet_pushes_sent_total",
                  "libernet_evictions_total", "libernet_gossip_sent_total"]


def fetch(mesh: Mesh, node: Node, block: str, wait: float) -> Sample:
    """GET one block; checks its bytes and its hops header."""
    started = time.monotonic()
    try:
        reply = mesh.get(node, block, wait=wait, timeout=wait + 30)
    except OSError as e:
        return Sample(block, node.index, 0, None, time.monotonic() - started, str(e))
    seconds = time.monotonic() - started
    if reply.status == 200:
        if hashlib.sha256(reply.body).hexdigest() != block:
            return Sample(block, node.index, -1, None, seconds, "body does not hash to the id")
        if reply.hops is None:
            return Sample(block, node.index, -2, None, seconds, "no Libernet-Hops header")
    return Sample(block, node.index, reply.status, reply.hops, seconds)


class Bench:
    def __init__(self, plan: Plan, binary: Path, run_dir: Path, stack: contextlib.ExitStack):
        self.plan = plan
        self.binary = binary
        self.run_dir = run_dir
        self.stack = stack
        self.failures: list[str] = []
        self.notes: dict[str, list[str]] = {p: [] for p in PARTS}
        self.verdicts: list[Verdict] = []
        self.lookup: list[PhaseResult] = []
        self.lookup_facts: dict[str, str] = {}
        self.pop: dict | None = None
        self.swarm_rows: list[dict] = []
        self.swarm_facts: dict[str, str] = {}
        self.custody_facts: dict[str, str] = {}
        self.custody_phase: PhaseResult | None = None
        self.skipped: dict[str, str] = {}
        self.plots: dict[str, str] = {}
        self.meshes: list[tuple[Mesh, str]] = []

    def mesh(self, name: str, settings: NodeSettings, **kw) -> Mesh:
        mesh = Mesh(self.run_dir / name, self.binary, settings, seed=self.plan.seed, **kw)
        self.stack.callback(self._stop_mesh, mesh, name)
        self.meshes.append((mesh, name))
        return mesh

    def stop_meshes(self) -> None:
        """Stops what a part left running (after a failure in it)."""
        for mesh, name in self.meshes:
            self._stop_mesh(mesh, name)
        self.meshes = []

    def _stop_mesh(self, mesh: Mesh, name: str) -> None:
        for problem in mesh.stop():
            self.failures.append(f"{name}: {problem}")

    # part 1

    def run_lookup(self) -> None:
        p = self.plan.lookup
        rng = random.Random(self.plan.seed)
        settings = NodeSettings(quota=p.quota, gossip=p.gossip, push=p.push,
                                log_level=self.plan.node_log)
        mesh = self.mesh("lookup", settings)
        say(f"lookup: starting {p.nodes} nodes (quota {p.quota}, push {p.push:g} s, "
            f"gossip {p.gossip:g} s)")
        started = time.monotonic()
        mesh.start(p.nodes, timeout=self.plan.converge_timeout)
        self.lookup_facts["mesh formed"] = f"{time.monotonic() - started:.1f} s"
        say(f"  every node knows all {p.nodes - 1} others after "
            f"{time.monotonic() - started:.1f} s")
        blocks = make_blocks(rng, p.blocks, p.block_size)
        ids = [b for b, _ in blocks]
        origin: dict[str, Node] = {}
        t0 = time.monotonic()
        for block, data in blocks:
            node = rng.choice(mesh.nodes)
            status = mesh.put(node, data, block)
            if status not in (200, 201):
                raise BenchFailure(f"PUT {block[:12]} on {node.name}: {status}")
            origin[block] = node
        del blocks
        say(f"  put {p.blocks} blocks of {p.block_size // KIB} KiB in "
            f"{time.monotonic() - t0:.1f} s; waiting for push rounds")
        kept, waited = settle_pushes(mesh, mesh.live, p.push)
        say(f"  {kept} pushes kept; settled after {waited:.1f} s")
        held0 = census(mesh, mesh.live, ids)
        copies0 = [len(v) for v in held0.values()]
        self.lookup_facts["copies after pushes"] = (
            f"mean {statistics.mean(copies0):.2f}, min {min(copies0)}, max {max(copies0)} "
            f"({sum(1 for c in copies0 if c == 0)} blocks held nowhere)")
        say(f"  copies per block: {self.lookup_facts['copies after pushes']}")
        self.lookup_facts["blocks held by all 3 of their homes after the push rounds"] = \
            homes_complete(ids, held0, mesh.nodes)

        def phase(name: str, pick) -> PhaseResult:
            live = mesh.live
            m0 = metric_sum(mesh, live, LOOKUP_METRICS)
            order = ids[:]
            rng.shuffle(order)
            t = time.monotonic()
            samples = [fetch(mesh, pick(block), block, p.wait) for block in order]
            result = PhaseResult(name, samples, seconds=time.monotonic() - t, nodes=len(live))
            m1 = metric_sum(mesh, live, LOOKUP_METRICS)
            result.metrics = {k: m1[k] - m0[k] for k in m1}
            result.metrics["evictions (all live nodes, since start)"] = m1[
                "libernet_evictions_total"]
            bad = [s for s in samples if s.status not in (200, 504)]
            if bad:
                self.failures.append(f"lookup {name}: {len(bad)} answers neither 200 nor 504, "
                                     f"e.g. {bad[0].status} {bad[0].error}")
            say(f"  {name}: {result.count(200)}/{len(samples)} found, {result.count(504)} "
                f"504, in {result.seconds:.1f} s")
            return result

        alive = phase("all nodes up", lambda b: rng.choice(
            [n for n in mesh.live if n is not origin[b]]))
        missed = [s.block for s in alive.samples if s.status == 504 and held0[s.block]]
        if missed:
            # Lookups go to the nodes nearest the block; a copy at one of its homes must
            # be found, a copy elsewhere only may be.
            at_home = [b for b in missed if held0[b] & homes(b, mesh.nodes)]
            note = (f"all nodes up: {len(missed)} blocks answered 504 although the census "
                    f"before the phase found them on some node ({len(at_home)} of them at "
                    f"one of their {HOMES} homes); " + holder_ranks(missed, held0, mesh.nodes))
            self.notes["lookup"].append(note)
            if self.plan.smoke and at_home:
                self.failures.append("lookup: " + note)
        self.lookup.append(alive)
        held1 = census(mesh, mesh.live, ids)
        victims = rng.sample(mesh.nodes, max(1, round(p.nodes * p.kill_fraction)))
        for v in victims:
            mesh.kill(v)
        live_idx = {n.index for n in mesh.live}
        lost = {b for b in ids if not (held1[b] & live_idx)}
        copies1 = [len(v) for v in held1.values()]
        self.lookup_facts["copies before the kill"] = (
            f"mean {statistics.mean(copies1):.2f}, min {min(copies1)}, max {max(copies1)}")
        self.lookup_facts["killed"] = (f"{len(victims)} of {p.nodes} nodes (SIGKILL): "
                                       + ", ".join(v.name for v in victims))
        self.lookup_facts["blocks only on killed nodes"] = f"{len(lost)} of {len(ids)}"
        say(f"  killed {', '.join(v.name for v in victims)}; {len(lost)} blocks lived only "
            "on them")
        after = phase("after killing", lambda b: rng.choice(mesh.live))
        after.lost = lost
        self.lookup.append(after)
        found_lost = sum(1 for s in after.samples if s.block in lost and s.status == 200)
        if found_lost:
            self.notes["lookup"].append(f"{found_lost} blocks that the census saw only on "
                                        "killed nodes were found anyway (pushed meanwhile)")
        ok_live = [s for s in after.samples if s.block not in lost]
        rate = sum(1 for s in ok_live if s.status == 200) / max(1, len(ok_live))
        self.lookup_facts["success after the kill, blocks with a live copy"] = (
            f"{rate * 100:.1f}% ({sum(1 for s in ok_live if s.status == 200)}/{len(ok_live)})")
        missed = [s.block for s in ok_live if s.status == 504]
        if missed:
            self.notes["lookup"].append(
                f"after killing: {len(missed)} blocks with a live copy (census before the "
                "kill) answered 504; " + holder_ranks(missed, held1, mesh.live))
        if p.recovery:
            # Let the live nodes notice and drop the dead ones, then push to new homes.
            t = time.monotonic()
            dead = {v.id for v in victims}
            while time.monotonic() - t < p.recovery:
                views = []
                for n in mesh.live:
                    with contextlib.suppress(OSError, ValueError, KeyError):
                        views.append({x["id"] for x in mesh.peers(n)["peers"]})
                if views and not any(v & dead for v in views):
                    break
                time.sleep(1.0)
            dropped = time.monotonic() - t
            self.lookup_facts["killed peers dropped by every live node after"] = (
                f"{dropped:.0f} s" if dropped < p.recovery else
                f"not within {p.recovery:g} s")
            kept, waited = settle_pushes(mesh, mesh.live, p.push, min_rounds=3)
            say(f"  dead peers dropped after {dropped:.0f} s; then {waited:.0f} s of push "
                f"rounds ({kept} pushes kept in all)")
            held2 = census(mesh, mesh.live, ids)
            self.lookup_facts["blocks held by all 3 of their homes among the live nodes, "
                              "after recovery"] = homes_complete(ids, held2, mesh.live)
            lost2 = {b for b in ids if not held2[b]}
            healed = phase("after recovery", lambda b: rng.choice(mesh.live))
            healed.lost = lost2
            self.lookup.append(healed)
            missed = [s.block for s in healed.samples if s.status == 504 and held2[s.block]]
            if missed:
                self.notes["lookup"].append(
                    f"after recovery: {len(missed)} blocks held by a live node answered 504; "
                    + holder_ranks(missed, held2, mesh.live))
        for ph in self.lookup:
            self.verdicts += lookup_verdicts(ph)
        for n in mesh.live:
            if n.exited():
                self.failures.append(f"lookup: {n.name} died")
        problems = mesh.stop()
        self.failures += [f"lookup: {x}" for x in problems]

    # part 2

    def run_popularity(self) -> None:
        p = self.plan.popularity
        rng = random.Random(self.plan.seed + 1)
        settings = NodeSettings(quota=p.quota, gossip=p.gossip, push=p.push,
                                half_life=p.half_life, log_level=self.plan.node_log)
        mesh = self.mesh("popularity", settings)
        say(f"popularity: starting {p.nodes} nodes (quota {p.quota}, half-life "
            f"{p.half_life:g} s, push {p.push:g} s, gossip {p.gossip:g} s)")
        started = time.monotonic()
        mesh.start(p.nodes, timeout=self.plan.converge_timeout)
        formed = time.monotonic() - started
        blocks = make_blocks(rng, p.blocks, p.block_size)
        ids = [b for b, _ in blocks]
        for block, data in blocks:
            node = rng.choice(mesh.nodes)
            status = mesh.put(node, data, block)
            if status not in (200, 201):
                raise BenchFailure(f"PUT {block[:12]} on {node.name}: {status}")
        del blocks
        kept, waited = settle_pushes(mesh, mesh.live, p.push)
        say(f"  put {p.blocks} blocks; {kept} pushes kept, settled after {waited:.1f} s")
        held_start = census(mesh, mesh.live, ids)
        # rank r (0 = most requested) -> block; Zipf weights over the ranks.
        ranked = ids[:]
        rng.shuffle(ranked)
        cum, total = [], 0.0
        for k in range(1, len(ranked) + 1):
            total += 1.0 / k ** p.zipf
            cum.append(total)
        rounds = []
        last_requested: set[str] = set()
        last_status: dict[str, int] = {}
        requests_per_rank = [0] * len(ranked)
        for r in range(p.rounds):
            ranks = [min(bisect_left(cum, rng.random() * total), len(ranked) - 1)
                     for _ in range(p.per_round)]
            targets = [rng.choice(mesh.nodes) for _ in ranks]
            for k in ranks:
                requests_per_rank[k] += 1

            def one(job: tuple[int, Node]) -> Sample:
                k, node = job
                return fetch(mesh, node, ranked[k], p.wait)

            t = time.monotonic()
            with ThreadPoolExecutor(p.concurrency) as pool:
                samples = list(pool.map(one, zip(ranks, targets, strict=True)))
            res = PhaseResult(f"round {r + 1}", samples, seconds=time.monotonic() - t)
            rounds.append(res)
            bad = [s for s in samples if s.status not in (200, 504)]
            if bad:
                self.failures.append(f"popularity round {r + 1}: {len(bad)} answers neither "
                                     f"200 nor 504, e.g. {bad[0].status} {bad[0].error}")
            local = sum(1 for s in samples if s.status == 200 and s.hops == 0)
            say(f"  round {r + 1}: {res.count(200)}/{len(samples)} found, {local} held by the "
                f"node asked, {res.seconds:.1f} s")
            if r == p.rounds - 1:
                last_requested = {ranked[k] for k in ranks}
                last_status = {s.block: s.status for s in samples}
        time.sleep(p.settle)
        metrics = metric_sum(mesh, mesh.live, LOOKUP_METRICS)
        held = census(mesh, mesh.live, ids)
        replicas = [len(held[b]) for b in ranked]
        self.pop = {
            "replicas": replicas, "requests": requests_per_rank, "rounds": rounds,
            "nodes": p.nodes, "metrics": metrics, "formed": formed,
            "start_copies": statistics.mean(len(v) for v in held_start.values()),
            "start_homes": homes_complete(ids, held_start, mesh.nodes),
            "last_requested": len(last_requested),
            "last_lost": sorted(ranked.index(b) + 1 for b in last_requested if not held[b]),
            "stored": metric_store(mesh),
        }
        top = max(1, round(len(ranked) * 0.01))
        head = replicas[:top]
        half = p.nodes / 2
        self.verdicts.append(Verdict(
            f"popularity: top 1% ({top} blocks) each on >= half the nodes (>= {math.ceil(half)})",
            f"{sum(1 for x in head if x >= half)}/{top} do; min {min(head)}, "
            f"median {statistics.median(head):g}", all(x >= half for x in head)))
        tail = replicas[len(replicas) // 2:]
        tail_median = statistics.median(tail)
        self.verdicts.append(Verdict(
            f"popularity: bottom half near its minimum (median replicas <= {HOMES + 1}: "
            f"{HOMES} homes + 1)", f"median {tail_median:g}, mean {statistics.mean(tail):.2f}, "
            f"{sum(1 for x in tail if x == 0)} held nowhere", 1 <= tail_median <= HOMES + 1))
        lost = self.pop["last_lost"]
        measured = f"{len(last_requested) - len(lost)}/{len(last_requested)} held"
        if lost:
            served = sum(1 for k in lost if last_status.get(ranked[k - 1]) == 200)
            measured += (f"; ranks held nowhere: {lost[:10]} ({served} of them answered 200 in "
                         f"the last round, {len(lost) - served} answered 504 there)")
        self.verdicts.append(Verdict(
            "popularity: every block requested in the last round still held", measured,
            not lost))
        problems = mesh.stop()
        self.failures += [f"popularity: {x}" for x in problems]

    # part 3

    def run_custody(self) -> None:
        p = self.plan.custody
        rng = random.Random(self.plan.seed + 3)
        settings = NodeSettings(quota=p.quota, gossip=p.gossip, push=p.push, repair=p.repair,
                                custody_share=p.custody_share, log_level=self.plan.node_log)
        mesh = self.mesh("custody", settings)
        facts = self.custody_facts
        say(f"custody: starting {p.nodes} nodes (quota {p.quota}, repair {p.repair:g} s, "
            f"push {p.push:g} s, gossip {p.gossip:g} s)")
        started = time.monotonic()
        mesh.start(p.nodes, timeout=self.plan.converge_timeout)
        facts["mesh formed"] = f"{time.monotonic() - started:.1f} s"
        kept: list[str] = []
        holder: dict[str, Node] = {}
        t0 = time.monotonic()
        for _ in range(p.kept):
            data = rng.randbytes(p.block_size)
            block = hashlib.sha256(data).hexdigest()
            node = rng.choice(mesh.nodes)
            reply = mesh.http(node, f"/sha256/{block}", "PUT", data, {
                "Content-Type": "application/octet-stream",
                "Authorization": f"Bearer {node.admin_token()}",
                "Libernet-Pin": CUSTODY_HOLDER}, timeout=60)
            if reply.status not in (200, 201):
                raise BenchFailure(f"pinned PUT {block[:12]} on {node.name}: {reply.status} "
                                   f"{reply.body[:200]!r}")
            kept.append(block)
            holder[block] = node
        placed = time.monotonic()
        for _ in range(p.filler):
            data = rng.randbytes(p.block_size)
            node = rng.choice(mesh.nodes)
            status = mesh.put(node, data)
            if status not in (200, 201):
                raise BenchFailure(f"PUT of a filler block on {node.name}: {status}")
        say(f"  put {p.kept} kept blocks (pinned) in {placed - t0:.1f} s and {p.filler} "
            f"filler blocks in {time.monotonic() - placed:.1f} s; waiting until every kept "
            f"block is on >= {HOMES} nodes (at most {p.settle:g} s)")
        spread, polls = poll_copies(mesh, kept, p.settle, placed, p.repair)
        facts["every kept block on >= 3 nodes, after its PUT"] = (
            f"{spread:.1f} s after the last pinned PUT (at the end of the census that found "
            f"none short; censuses: {len(polls)})" if spread is not None else
            f"not within {p.settle:g} s: {polls[-1][2]} short at the last census")
        say(f"  {facts['every kept block on >= 3 nodes, after its PUT']}")
        m_placed = metric_sum(mesh, mesh.live, REPAIR_METRICS)
        held0 = census(mesh, mesh.live, kept)
        copies0 = [len(v) for v in held0.values()]
        facts["before the kill: copies per kept block"] = (
            f"mean {statistics.mean(copies0):.2f}, min {min(copies0)}, max {max(copies0)}; "
            f"on >= 3 nodes: {sum(1 for c in copies0 if c >= HOMES)} of {len(kept)}; held by "
            f"all 3 of their homes: {homes_complete(kept, held0, mesh.nodes)}")
        facts["before the kill: stores"] = metric_store(mesh)
        facts["before the kill: repair work so far, summed over the nodes"] = (
            f"{int(m_placed['libernet_repair_checks_total']):,} checks, "
            f"{int(m_placed['libernet_repair_copies_total']):,} copies, "
            f"{m_placed['libernet_repair_bytes_total'] / MIB:.1f} MiB; "
            f"{int(m_placed['libernet_pushes_sent_total']):,} pushes kept, "
            f"{int(m_placed['libernet_evictions_total']):,} evictions")
        victims = rng.sample(mesh.nodes, max(1, round(p.nodes * p.kill_fraction)))
        for v in victims:
            mesh.kill(v)
        killed_at = time.monotonic()
        dead = {v.index for v in victims}
        live_idx = {n.index for n in mesh.live}
        gone_with_kill = [b for b in kept if not held0[b] & live_idx]
        facts["killed"] = (f"{len(victims)} of {p.nodes} nodes (SIGKILL): "
                           + ", ".join(v.name for v in victims))
        facts["kept blocks whose holder (the node it was PUT on) was killed"] = str(
            sum(1 for b in kept if holder[b].index in dead))
        facts["kept blocks that lost at least one of their 3 homes"] = str(
            sum(1 for b in kept if homes(b, mesh.nodes) & dead))
        facts["kept blocks left with no live copy by the kill (census before it)"] = str(
            len(gone_with_kill))
        say(f"  killed {', '.join(v.name for v in victims)}; polling until every kept block "
            f"is on >= {HOMES} live nodes (at most {p.repair_wait:g} s)")
        m_kill = metric_sum(mesh, mesh.live, REPAIR_METRICS)
        healed, polls = poll_copies(mesh, kept, p.repair_wait, killed_at, p.repair)
        key = ("censuses after the kill (start-end, s after it: kept blocks short of 3 live "
               "copies)")
        facts[key] = ("; ".join(f"{a:.0f}-{b:.0f} s: {n}" for a, b, n in polls[:12])
                      + (f"; ... ({len(polls)} censuses)" if len(polls) > 12 else ""))
        say(f"  censuses: {facts[key]}")
        held1 = census(mesh, mesh.live, kept)
        census_end = time.monotonic() - killed_at
        copies1 = [len(v) for v in held1.values()]
        lost = [b for b in kept if not held1[b]]
        on3 = sum(1 for c in copies1 if c >= HOMES)
        facts["after repair: copies per kept block on live nodes"] = (
            f"mean {statistics.mean(copies1):.2f}, min {min(copies1)}, max {max(copies1)}; "
            f"held by all 3 of their homes among the live nodes: "
            f"{homes_complete(kept, held1, mesh.live)} (full census ending {census_end:.0f} s "
            "after the kill)")
        m_end = metric_sum(mesh, mesh.live, REPAIR_METRICS)
        since = {k: m_end[k] - m_kill[k] for k in m_end}
        facts["repair work after the kill, summed over the live nodes"] = (
            f"{int(since['libernet_repair_checks_total']):,} checks, "
            f"{int(since['libernet_repair_copies_total']):,} copies, "
            f"{since['libernet_repair_bytes_total'] / MIB:.1f} MiB in {census_end:.0f} s; "
            f"{int(since['libernet_pushes_sent_total']):,} pushes kept, "
            f"{int(since['libernet_evictions_total']):,} evictions")
        order = kept[:]
        rng.shuffle(order)
        t = time.monotonic()
        samples = [fetch(mesh, rng.choice(mesh.live), b, p.wait) for b in order]
        ph = PhaseResult("kept blocks after repair", samples, seconds=time.monotonic() - t,
                         nodes=len(mesh.live), lost=set(lost))
        self.custody_phase = ph
        bad = [s for s in samples if s.status not in (200, 504)]
        if bad:
            self.failures.append(f"custody: {len(bad)} answers neither 200 nor 504, e.g. "
                                 f"{bad[0].status} {bad[0].error}")
        say(f"  GET of each kept block from a random live node: {ph.count(200)}/{len(samples)} "
            "found")
        facts["after repair: stores"] = metric_store(mesh)
        facts["node memory (VmRSS) at the end"] = node_rss(mesh.live)
        self.verdicts.append(Verdict(
            f"custody: kept blocks lost after SIGKILL of {len(victims)} of {p.nodes} nodes "
            "(target 0)", f"{len(lost)} of {len(kept)} held by no live node"
            + (f" ({len(gone_with_kill)} had no live copy at the kill)" if lost else ""),
            not lost))
        self.verdicts.append(Verdict(
            f"custody: every kept block on >= {HOMES} live nodes within {p.repair_wait:g} s "
            "of the kill",
            (f"yes, by {healed:.0f} s (end of the census that found none short)"
             if healed is not None else f"no: {polls[-1][2]} short at {polls[-1][1]:.0f} s")
            + f"; full census after: {on3}/{len(kept)} on >= {HOMES}",
            healed is not None and on3 == len(kept)))
        self.verdicts += lookup_verdicts(ph)[:1]
        if lost and min(copies0) > len(victims):
            # Every block had more copies than nodes were killed: one must survive.
            self.failures.append(f"custody: {len(lost)} kept blocks lost although each had "
                                 f">= {min(copies0)} copies and {len(victims)} nodes died")
        for n in mesh.live:
            if n.exited():
                self.failures.append(f"custody: {n.name} died")
        problems = mesh.stop()
        self.failures += [f"custody: {x}" for x in problems]

    # part 4

    def run_swarm(self) -> None:
        p = self.plan.swarm
        reason = netns_unavailable()
        if reason:
            self.skipped["swarm"] = reason
            say(f"swarm: skipped: {reason}")
            return
        rng = random.Random(self.plan.seed + 2)
        # Stage: put the file on a throwaway loopback node, take its block files.
        stage = self.mesh("swarm-stage", NodeSettings(quota="4GiB", gossip=0, push=0,
                                                      log_level=self.plan.node_log))
        stager = stage.add_node(name="stage")
        big = self.run_dir / "big.bin"
        size = p.file_mib * MIB
        h = hashlib.sha256()
        with open(big, "wb") as f:
            left = size
            while left:
                chunk = rng.randbytes(min(left, 4 * MIB))
                h.update(chunk)
                f.write(chunk)
                left -= len(chunk)
        digest = h.hexdigest()
        env = dict(os.environ, LIBERNET_LOG="warn")
        done = subprocess.run([str(self.binary), "--server", stager.url, "put", "-q", str(big)],
                              capture_output=True, text=True, timeout=600, env=env)
        if done.returncode != 0:
            raise BenchFailure(f"libernet put failed ({done.returncode}): {done.stderr[-500:]}")
        printed = done.stdout.strip().splitlines()[-1]
        path = "/" + printed.split("://", 1)[1].split("/", 1)[1]
        if path.endswith("/"):
            path += big.name
        blocks: dict[str, bytes] = {}
        for file in (Path(stager.store) / "blocks").rglob("*"):
            if file.is_file() and len(file.name) == 64 and file.name != stager.id:
                blocks[file.name] = file.read_bytes()
        problems = stage.stop()
        self.failures += [f"swarm stage: {x}" for x in problems]
        big.unlink()
        say(f"swarm: {p.file_mib} MiB file put as {len(blocks)} blocks; content path "
            f"{path[:40]}...")

        settings = NodeSettings(quota="4GiB", gossip=1.0, push=0, wait=30,
                                log_level=self.plan.node_log)
        net = self.mesh("swarm", settings, netns=True, rate=p.rate, burst=p.burst,
                        latency=p.latency)
        t = time.monotonic()
        peers = net.start(p.peers, timeout=self.plan.converge_timeout)
        say(f"  {p.peers} peers in namespaces, egress {p.rate} each, mesh formed in "
            f"{time.monotonic() - t:.1f} s")
        solo = net.add_node(name="single", rate=p.rate)
        placed: dict[int, int] = {n.index: 0 for n in peers}
        for block, data in blocks.items():
            home = min(peers, key=lambda n: xor(n.id, block))
            for target in (home, solo):
                status = net.put(target, data, block)
                if status not in (200, 201):
                    raise BenchFailure(f"PUT {block[:12]} on {target.name}: {status}")
            placed[home.index] += 1
        for n in peers:
            mine = [b for b in blocks if min(peers, key=lambda x: xor(x.id, b)) is n]
            for block in mine:
                if net.head(n, block) != 200:
                    raise BenchFailure(f"{n.name} does not hold {block[:12]} after its PUT")
        busiest = max(placed.values())
        self.swarm_facts["blocks per peer"] = (
            ", ".join(str(placed[n.index]) for n in peers)
            + f" (of {len(blocks)}); with equal links the busiest peer bounds the swarm: it "
            f"can be at most {len(blocks)}/{busiest} = {len(blocks) / busiest:.2f}x faster "
            "than one peer sending every block")
        say(f"  blocks per peer: {', '.join(str(placed[n.index]) for n in peers)}; the "
            "single peer holds all")
        for n in [*peers, solo]:
            shown = subprocess.run(["ip", "netns", "exec", n.netns, "tc", "qdisc", "show",
                                    "dev", "eth0"], capture_output=True, text=True, timeout=10)
            if "tbf" not in shown.stdout:
                raise BenchFailure(f"no tbf qdisc on {n.name}: {shown.stdout.strip()}")
        self.swarm_facts["tbf"] = (f"rate {p.rate} burst {p.burst} latency {p.latency} on "
                                   "each peer's eth0 (its egress), none on the clients")
        for rep in range(p.repeats):
            for method in p.methods:
                for kind in ("swarm", "single"):
                    seeds = [n.url for n in peers] if kind == "swarm" else [solo.url]
                    row = self.swarm_fetch(net, kind, method, rep, seeds, blocks, path,
                                           digest, size, [*peers, solo])
                    self.swarm_rows.append(row)
        problems = net.stop()
        self.failures += [f"swarm: {x}" for x in problems]
        for method in p.methods:
            sw = [r["mb_s"] for r in self.swarm_rows if r["method"] == method
                  and r["kind"] == "swarm" and r["ok"]]
            one = [r["mb_s"] for r in self.swarm_rows if r["method"] == method
                   and r["kind"] == "single" and r["ok"]]
            if sw and one:
                ratio = statistics.median(sw) / statistics.median(one)
                self.verdicts.append(Verdict(
                    f"swarm ({method}): {p.peers} peers >= {SWARM_TARGET:g}x one peer",
                    f"{ratio:.2f}x ({statistics.median(sw):.1f} vs "
                    f"{statistics.median(one):.1f} MB/s, medians)", ratio >= SWARM_TARGET))

    def swarm_fetch(self, net: Mesh, kind: str, method: str, rep: int, seeds: list[str],
                    blocks: dict[str, bytes], path: str, digest: str, size: int,
                    servers: list[Node]) -> dict:
        p = self.plan.swarm
        client = net.add_node(seeds=seeds, rate=None, name=f"client-{kind}-{method}-{rep + 1}")
        # Wait until the client knows every seed as a peer (gossip may add more).
        deadline = time.monotonic() + self.plan.converge_timeout
        want = {n.id for n in servers if n.url in seeds}
        while True:
            known = {x["id"] for x in net.peers(client)["peers"]}
            if want <= known:
                break
            if time.monotonic() > deadline:
                raise BenchFailure(f"{client.name} does not know its seeds after "
                                   f"{self.plan.converge_timeout:.0f} s")
            time.sleep(0.2)
        held = [b for b in blocks if net.head(client, b) == 200]
        if held:
            raise BenchFailure(f"{client.name} holds {len(held)} blocks before the fetch")
        before = {x["id"]: x["bytes_in"] for x in net.peers(client)["peers"]}
        out = Path(client.dir) / "fetched.bin"
        url = f"{client.url}{path}"
        if method == "curl":
            cmd = ["curl", "-sS", "--noproxy", "*", "-o", str(out), "--max-time",
                   str(int(p.timeout)), "-w",
                   "%{http_code} %{size_download} %{time_starttransfer} %{time_total}", url]
        else:
            cmd = [str(self.binary), "--server", client.url, "get", "-q", path, "-o", str(out)]
        cmd = net.netns_cmd(client, cmd)
        env = dict(os.environ, LIBERNET_LOG="warn")
        t = time.monotonic()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=p.timeout + 30,
                              env=env)
        seconds = time.monotonic() - t
        row = {"kind": kind, "method": method, "rep": rep + 1, "ok": False, "seconds": seconds,
               "mb_s": 0.0, "ttfb": None, "note": ""}
        if done.returncode != 0:
            row["note"] = f"exit {done.returncode}: {done.stderr.strip()[-300:]}"
            self.failures.append(f"swarm {kind} {method}: {row['note']}")
        else:
            if method == "curl":
                status, got, ttfb, total = done.stdout.split()
                row["ttfb"], seconds = float(ttfb), float(total)
                row["seconds"] = seconds
                if status != "200":
                    row["note"] = f"status {status}"
            got_digest = file_digest(out) if out.exists() else "missing"
            if got_digest != digest:
                row["note"] = (row["note"] + "; " if row["note"] else "") + \
                    f"sha256 mismatch ({out.stat().st_size if out.exists() else 0} bytes)"
            if row["note"]:
                self.failures.append(f"swarm {kind} {method}: {row['note']}")
            else:
                row["ok"] = True
                row["mb_s"] = size / seconds / 1e6
        out.unlink(missing_ok=True)
        view = net.peers(client)["peers"]
        got_from = {x["id"]: x["bytes_in"] - before.get(x["id"], 0) for x in view}
        row["sources"] = sum(1 for v in got_from.values() if v >= MIB // 2)
        m = net.metrics(client)
        row["lookups"] = int(m.get("libernet_lookups_sent_total", 0))
        row["downloads"] = int(m.get("libernet_downloads_total", 0))
        row["failed"] = int(m.get("libernet_lookups_failed_total", 0))
        row["hops"] = "/".join(str(int(m.get(f'libernet_lookup_hops{{hops="{h}"}}', 0)))
                               for h in ("1", "2", "3", "4+"))
        say(f"  {kind:<6} {method:<4} #{rep + 1}: {row['mb_s']:7.1f} MB/s in {seconds:.2f} s, "
            f"blocks from {row['sources']} peers, lookups {row['lookups']} (hops 1/2/3/4+ "
            f"{row['hops']}), failed {row['failed']} {row['note']}")
        net.stop_node(client)
        return row


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MIB):
            h.update(chunk)
    return h.hexdigest()


def metric_store(mesh: Mesh) -> str:
    blocks = used = quota = 0
    for n in mesh.live:
        with contextlib.suppress(OSError, ValueError, KeyError):
            s = mesh.info(n)["store"]
            blocks += s["blocks"]
            used += s["bytes"]
            quota += s["quota"]
    return (f"{blocks:,} blocks, {used / MIB:,.1f} MiB stored over all nodes "
            f"({used / max(1, quota) * 100:.0f}% of the summed quotas)")


# --- SVG -------------------------------------------------------------------------------

class Svg:
    """A minimal SVG canvas: lines, text, circles, rectangles."""

    def __init__(self, width: int, height: int):
        self.w, self.h = width, height
        self.parts: list[str] = []

    def line(self, x1, y1, x2, y2, color="#444", width=1.0, dash: str | None = None) -> None:
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                          f'stroke="{color}" stroke-width="{width}"{d}/>')

    def text(self, x, y, s: str, size=12, anchor="middle", color="#222", rotate=None) -> None:
        r = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate else ""
        self.parts.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" '
                          f'text-anchor="{anchor}" fill="{color}"{r}>{escape(s)}</text>')

    def circle(self, x, y, r, color, opacity=0.5) -> None:
        self.parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{color}" '
                          f'fill-opacity="{opacity}"/>')

    def rect(self, x, y, w, h, color, opacity=1.0) -> None:
        self.parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(0.0, w):.1f}" '
                          f'height="{max(0.0, h):.1f}" fill="{color}" fill-opacity="{opacity}"/>')

    def polyline(self, points: list[tuple[float, float]], color, width=2.0) -> None:
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        self.parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" '
                          f'stroke-width="{width}"/>')

    def render(self) -> str:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
                f'viewBox="0 0 {self.w} {self.h}" font-family="sans-serif">\n'
                f'<rect width="{self.w}" height="{self.h}" fill="white"/>\n'
                + "\n".join(self.parts) + "\n</svg>\n")


def popularity_svg(replicas: list[int], nodes: int, title: str) -> str:
    """Replicas per block against its request rank, x on a log scale."""
    W, H = 760, 440
    left, right, top, bottom = 60, 20, 40, 60
    svg = Svg(W, H)
    n = len(replicas)
    xmax = math.log10(n)
    ymax = nodes

    def px(rank: int) -> float:
        return left + (W - left - right) * (math.log10(rank) / xmax if xmax else 0)

    def py(value: float) -> float:
        return H - bottom - (H - top - bottom) * value / ymax

    svg.text(W / 2, 22, title, size=14)
    svg.line(left, H - bottom, W - right, H - bottom)
    svg.line(left, top, left, H - bottom)
    step = 1 if nodes <= 10 else 2 if nodes <= 20 else 5
    for v in range(0, nodes + 1, step):
        svg.line(left - 4, py(v), left, py(v))
        svg.line(left, py(v), W - right, py(v), color="#eee")
        svg.text(left - 8, py(v) + 4, str(v), size=11, anchor="end")
    decade = 1
    while decade <= n:
        for mult in (1, 2, 5):
            r = decade * mult
            if r <= n:
                svg.line(px(r), H - bottom, px(r), H - bottom + 4)
                svg.text(px(r), H - bottom + 18, f"{r:,}", size=11)
        decade *= 10
    svg.text(W / 2, H - 18, "request rank (1 = most requested; log scale)", size=12)
    svg.text(18, (top + H - bottom) / 2, "replicas (nodes holding the block)", size=12,
             rotate=-90)
    top_n = max(1, round(n * 0.01))
    svg.line(px(top_n), top, px(top_n), H - bottom, color="#c33", dash="4 3")
    svg.text(px(top_n) - 4, py(nodes * 0.75), f"top 1% ({top_n})", size=11, anchor="end",
             color="#c33")
    svg.line(left, py(nodes / 2), W - right, py(nodes / 2), color="#c33", dash="4 3")
    svg.text(left + 6, py(nodes / 2) - 4, "half the nodes", size=11, anchor="start",
             color="#c33")
    svg.line(left, py(HOMES), W - right, py(HOMES), color="#393", dash="4 3")
    svg.text(left + 6, py(HOMES) - 4, f"{HOMES} homes", size=11, anchor="start",
             color="#393")
    jitter = random.Random(0)
    for rank, value in enumerate(replicas, start=1):
        svg.circle(px(rank), py(value + jitter.uniform(-0.15, 0.15)), 2.2, "#2a6ebb", 0.45)
    # Median in bins spaced evenly on the log axis.
    bins = 24
    line = []
    for b in range(bins):
        lo = int(10 ** (xmax * b / bins))
        hi = int(10 ** (xmax * (b + 1) / bins))
        chunk = replicas[lo - 1:max(lo, hi)]
        if chunk:
            line.append((px(math.sqrt(lo * max(lo, hi))), py(statistics.median(chunk))))
    svg.polyline(line, "#e08000")
    svg.text(left + 8, H - bottom - 8, "orange: median per log-spaced bin", size=11,
             anchor="start", color="#e08000")
    return svg.render()


def hops_svg(phases: list[PhaseResult], title: str) -> str:
    """Share of requests per outcome (hops 0..4+, 504), one bar per phase."""
    W, H = 640, 360
    left, right, top, bottom = 60, 20, 60, 50
    cats = ["0", "1", "2", "3", "4+", "504"]
    colors = ["#2a6ebb", "#e08000", "#393"]
    svg = Svg(W, H)
    svg.text(W / 2, 22, title, size=14)

    def share(ph: PhaseResult, cat: str) -> float:
        total = len(ph.samples) or 1
        if cat == "504":
            return ph.count(504) / total
        want = 4 if cat == "4+" else int(cat)
        return sum(1 for h in ph.hops() if (h >= 4 if cat == "4+" else h == want)) / total

    def py(v: float) -> float:
        return H - bottom - (H - top - bottom) * v

    svg.line(left, H - bottom, W - right, H - bottom)
    svg.line(left, top, left, H - bottom)
    for v in (0, 0.25, 0.5, 0.75, 1.0):
        svg.line(left, py(v), W - right, py(v), color="#eee")
        svg.text(left - 8, py(v) + 4, f"{v * 100:.0f}%", size=11, anchor="end")
    group = (W - left - right) / len(cats)
    bar = group * 0.8 / max(1, len(phases))
    for i, cat in enumerate(cats):
        x0 = left + i * group + group * 0.1
        for j, ph in enumerate(phases):
            v = share(ph, cat)
            svg.rect(x0 + j * bar, py(v), bar - 2, py(0) - py(v), colors[j % len(colors)])
            if v > 0:
                svg.text(x0 + j * bar + bar / 2 - 1, py(v) - 3, f"{v * 100:.0f}", size=9)
        label = "not found (504)" if cat == "504" else f"{cat} hops"
        svg.text(left + i * group + group / 2, H - bottom + 18, label, size=11)
    for j, ph in enumerate(phases):
        svg.rect(left + 10 + j * 200, 34, 12, 12, colors[j % len(colors)])
        svg.text(left + 28 + j * 200, 45, ph.name, size=12, anchor="start")
    return svg.render()


# --- report ----------------------------------------------------------------------------

def lookup_table(phases: list[PhaseResult]) -> str:
    headers = ["phase", "requests", "found (200)", "504", "other", "success %", "mean hops",
               "hops 0/1/2/3/4+", "median ms", "p99 ms", "median ms, hops >= 1"]
    rows = []
    for ph in phases:
        hops = ph.hops()
        hist = [sum(1 for h in hops if h == k) for k in range(4)] + [sum(1 for h in hops if h >= 4)]
        times = [s.seconds * 1000 for s in ph.samples]
        remote = [s.seconds * 1000 for s in ph.samples if s.status == 200 and (s.hops or 0) >= 1]
        n = len(ph.samples)
        other = n - ph.count(200) - ph.count(504)
        rows.append([
            ph.name, str(n), str(ph.count(200)), str(ph.count(504)), str(other),
            f"{ph.count(200) / max(1, n) * 100:.1f}",
            f"{statistics.mean(hops):.2f}" if hops else "-",
            "/".join(map(str, hist)), f"{percentile(times, 0.5):.1f}",
            f"{percentile(times, 0.99):.1f}",
            f"{percentile(remote, 0.5):.1f}" if remote else "-",
        ])
        if ph.lost:
            findable = [s for s in ph.samples if s.block not in ph.lost]
            lost = [s for s in ph.samples if s.block in ph.lost]
            for label, part in (("  blocks with a live copy", findable),
                                ("  blocks only on killed nodes", lost)):
                if not part:
                    continue
                h = [s.hops for s in part if s.status == 200 and s.hops is not None]
                hist = [sum(1 for x in h if x == k) for k in range(4)] + \
                    [sum(1 for x in h if x >= 4)]
                t = [s.seconds * 1000 for s in part]
                ok = sum(1 for s in part if s.status == 200)
                no = sum(1 for s in part if s.status == 504)
                rows.append([label, str(len(part)), str(ok), str(no), str(len(part) - ok - no),
                             f"{ok / len(part) * 100:.1f}",
                             f"{statistics.mean(h):.2f}" if h else "-", "/".join(map(str, hist)),
                             f"{percentile(t, 0.5):.1f}", f"{percentile(t, 0.99):.1f}", ""])
    return render_table(headers, rows)


def lookup_metrics_table(phases: list[PhaseResult]) -> str:
    headers = ["phase", "lookups sent", "found", "failed", "hops 1/2/3/4+ (node counters)",
               "downloads", "pushes kept", "evictions during", "evictions since start"]
    rows = []
    for ph in phases:
        m = ph.metrics
        hist = "/".join(str(int(m.get(f'libernet_lookup_hops{{hops="{h}"}}', 0)))
                        for h in ("1", "2", "3", "4+"))
        rows.append([ph.name, str(int(m["libernet_lookups_sent_total"])),
                     str(int(m["libernet_lookups_found_total"])),
                     str(int(m["libernet_lookups_failed_total"])), hist,
                     str(int(m["libernet_downloads_total"])),
                     str(int(m["libernet_pushes_sent_total"])),
                     str(int(m["libernet_evictions_total"])),
                     str(int(m["evictions (all live nodes, since start)"]))])
    return render_table(headers, rows)


def popularity_tables(pop: dict) -> str:
    rounds: list[PhaseResult] = pop["rounds"]
    headers = ["round", "GETs", "found %", "504", "held by the node asked %", "mean hops",
               "median ms", "p99 ms", "seconds"]
    rows = []
    for ph in rounds:
        n = len(ph.samples)
        hops = ph.hops()
        times = [s.seconds * 1000 for s in ph.samples]
        rows.append([ph.name, str(n), f"{ph.count(200) / n * 100:.1f}", str(ph.count(504)),
                     f"{sum(1 for h in hops if h == 0) / n * 100:.1f}",
                     f"{statistics.mean(hops):.2f}" if hops else "-",
                     f"{percentile(times, 0.5):.1f}", f"{percentile(times, 0.99):.1f}",
                     f"{ph.seconds:.1f}"])
    out = [render_table(headers, rows), ""]
    replicas, requests = pop["replicas"], pop["requests"]
    n = len(replicas)
    bands = [("top 1%", 0, max(1, round(n * 0.01))), ("1-10%", max(1, round(n * 0.01)),
             round(n * 0.1)), ("10-50%", round(n * 0.1), n // 2), ("bottom 50%", n // 2, n)]
    headers = ["ranks", "blocks", "requests (all rounds)", "replicas min", "median", "mean",
               "max", "held nowhere"]
    rows = []
    for name, lo, hi in bands:
        part = replicas[lo:hi]
        if not part:
            continue
        rows.append([f"{name} ({lo + 1}-{hi})", str(len(part)), f"{sum(requests[lo:hi]):,}",
                     str(min(part)), f"{statistics.median(part):g}",
                     f"{statistics.mean(part):.2f}", str(max(part)),
                     str(sum(1 for x in part if x == 0))])
    out.append(render_table(headers, rows))
    return "\n".join(out)


def swarm_table(rows: list[dict]) -> str:
    headers = ["client knows", "method", "run", "seconds", "MB/s", "first byte s",
               "peers that sent >= 0.5 MiB", "lookups", "failed lookups", "hops 1/2/3/4+",
               "ok"]
    out = []
    for r in rows:
        out.append([
            "every peer" if r["kind"] == "swarm" else "one peer with all blocks",
            "curl (node decrypts)" if r["method"] == "curl" else "libernet get",
            str(r["rep"]), f"{r['seconds']:.2f}", f"{r['mb_s']:.1f}",
            f"{r['ttfb']:.3f}" if r["ttfb"] is not None else "-", str(r.get("sources", "?")),
            str(r.get("lookups", "?")), str(r.get("failed", "?")), r.get("hops", "?"),
            "yes" if r["ok"] else f"no: {r['note']}",
        ])
    return render_table(headers, out)


def settings_lines(plan: Plan) -> list[str]:
    lk, pp, cu, sw = plan.lookup, plan.popularity, plan.custody, plan.swarm
    lines = [f"mode: {'smoke' if plan.smoke else 'full'}; seed {plan.seed}; parts: "
             f"{', '.join(plan.parts)}; nodes log at LIBERNET_LOG={plan.node_log}; every node "
             "has `scrub_rate = 0` in its config file"]
    if "lookup" in plan.parts:
        lines.append(
            f"lookup: {lk.nodes} nodes on 127.0.0.1, `--quota {lk.quota} --push-interval "
            f"{lk.push:g} --gossip-interval {lk.gossip:g}`; node i > 0 seeded with node 0 and "
            f"one random earlier node; {lk.blocks} random blocks of {lk.block_size // KIB} KiB "
            f"({lk.blocks * lk.block_size / MIB:.1f} MiB), each PUT on a random node; then push "
            "rounds until one passes with no push kept; then each block GET "
            f"`?wait={lk.wait:g}` once (random order, one at a time) from a random node other "
            "than the one it was PUT on; then a HEAD ?wait=0 census of every block on every "
            f"node, SIGKILL of {lk.kill_fraction:.0%} of the nodes, and each block GET once "
            "from a random live node"
            + (f"; then (\"after recovery\") a wait until every live node has dropped the "
               f"killed ones from its peers (at most {lk.recovery:g} s), push rounds until one "
               "passes with no push kept, a census, and each block GET once more from a "
               "random live node" if lk.recovery else ""))
    if "popularity" in plan.parts:
        lines.append(
            f"popularity: {pp.nodes} nodes, `--quota {pp.quota} --half-life {pp.half_life:g} "
            f"--push-interval {pp.push:g} --gossip-interval {pp.gossip:g}`; {pp.blocks} random "
            f"blocks of {pp.block_size // KIB} KiB ({pp.blocks * pp.block_size / MIB:.1f} MiB), "
            "each PUT on a random node; push rounds settle; ranks are a random permutation of "
            f"the blocks; {pp.rounds} rounds of {pp.per_round} GETs `?wait={pp.wait:g}`, ranks "
            f"drawn with Zipf weights 1/k^{pp.zipf:g}, each at a random node, {pp.concurrency} "
            f"in flight; {pp.settle:g} s pause, then a HEAD ?wait=0 census on every node")
    if "custody" in plan.parts:
        share = f" --custody-share {cu.custody_share}" if cu.custody_share is not None else ""
        lines.append(
            f"custody: {cu.nodes} nodes, `--quota {cu.quota} --repair-interval {cu.repair:g} "
            f"--push-interval {cu.push:g} --gossip-interval {cu.gossip:g}{share}`; {cu.kept} "
            f"random blocks of {cu.block_size // KIB} KiB "
            f"({cu.kept * cu.block_size / MIB:.1f} MiB) each PUT on a random node with the "
            f"node's admin token and `Libernet-Pin: {CUSTODY_HOLDER}` (kept blocks), then "
            f"{cu.filler} unpinned random blocks of the same size "
            f"({cu.filler * cu.block_size / MIB:.1f} MiB) each PUT on a random node, so "
            "quotas fill and eviction runs; censuses (`HEAD ?wait=0` of the kept blocks still "
            f"short on every node, one every {cu.repair:g} s) until every kept block is on "
            f">= {HOMES} nodes (at most {cu.settle:g} s); a full census; SIGKILL of "
            f"{cu.kill_fraction:.0%} of the nodes, chosen at random; censuses of the blocks "
            f"short of {HOMES} live copies until none is (at most {cu.repair_wait:g} s after "
            "the kill: the stated repair time); a full census of every kept block on every "
            f"live node; each kept block GET `?wait={cu.wait:g}` once from a random live node")
    if "swarm" in plan.parts:
        lines.append(
            f"swarm: one random file of {sw.file_mib} MiB put with `libernet put` on a staging "
            "node (127.0.0.1, stopped afterwards); each of its blocks PUT on the nearest (XOR "
            f"of node ids) of {sw.peers} peers, and all of them on one more peer (\"single\"); "
            "every peer and client in its own network namespace on a bridge in a hub "
            f"namespace; each peer's egress limited by `tc qdisc add dev eth0 root tbf rate "
            f"{sw.rate} burst {sw.burst} latency {sw.latency}`; pushes off, gossip 1 s, "
            "`--wait 30`; for each run a fresh client node (own namespace, own empty store, no "
            "limit) seeded with every peer (swarm) or with the single peer only; fetch with "
            f"`curl` of the content URL through the client node and with `libernet --server "
            f"CLIENT get PATH -o FILE`, both run inside the client's namespace; sha256 of "
            f"the result checked; {sw.repeats} run(s) per client kind and method; the ratio "
            "uses the medians")
    lines.append("MB/s: 10^6 bytes per second of file content")
    return lines


def machine_lines(binary_note: str) -> list[tuple[str, str]]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        rev = "?"
    try:
        rustc = subprocess.run(["rustc", "-V"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        rustc = "?"
    return [
        ("CPU", f"{cpu}, {os.cpu_count()} cores"),
        ("memory", f"{mem_kib / 1024 / 1024:.1f} GiB"),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("rustc", rustc), ("libernet", f"git {rev}"), ("binary", binary_note),
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("load average at the start (1/5/15 min)",
         " ".join(Path("/proc/loadavg").read_text().split()[:3])),
    ]


def report(plan: Plan, bench: Bench, machine: list[tuple[str, str]], command: str,
           plot_prefix: str) -> str:
    out = ["### Machine", ""] + [f"- {k}: {v}" for k, v in machine]
    out += ["", "### Command", "", "```", command, "```", "", "### Settings", ""]
    out += [f"- {s}" for s in settings_lines(plan)]
    if bench.lookup:
        out += ["", "### Lookups", "", lookup_table(bench.lookup), ""]
        out += [f"- {k}: {v}" for k, v in bench.lookup_facts.items()]
        out += [f"- {n}" for n in bench.notes["lookup"]]
        out += ["", "Node counters over the phase, summed over the nodes alive in it:", "",
                lookup_metrics_table(bench.lookup)]
        if "hops" in bench.plots:
            out += ["", f"![hops per lookup]({plot_prefix}{bench.plots['hops']})"]
    if bench.pop:
        pop = bench.pop
        m = pop["metrics"]
        out += ["", "### Popularity", "", popularity_tables(pop), ""]
        out += [f"- mesh formed in {pop['formed']:.1f} s; copies per block after the PUTs and "
                f"push rounds, before any GET: mean {pop['start_copies']:.2f}; blocks held "
                f"by all {HOMES} of their homes then: {pop['start_homes']}",
                f"- at the end: {pop['stored']}",
                f"- node counters at the end, summed: {int(m['libernet_pushes_sent_total']):,} "
                f"pushes kept, {int(m['libernet_pushes_declined_total']):,} declined, "
                f"{int(m['libernet_downloads_total']):,} downloads, "
                f"{int(m['libernet_evictions_total']):,} evictions, "
                f"{int(m['libernet_lookups_failed_total']):,} failed lookups",
                f"- blocks requested in the last round: {pop['last_requested']}, of which held "
                f"nowhere at the end: {len(pop['last_lost'])}"]
        out += [f"- {n}" for n in bench.notes["popularity"]]
        if "popularity" in bench.plots:
            out += ["", f"![replicas by request rank]({plot_prefix}"
                    f"{bench.plots['popularity']})"]
    if bench.custody_facts:
        out += ["", "### Custody and repair", ""]
        out += [f"- {k}: {v}" for k, v in bench.custody_facts.items()]
        out += [f"- {n}" for n in bench.notes["custody"]]
        if bench.custody_phase is not None:
            out += ["", "Each kept block fetched once from a random live node after the "
                    "repair polls:", "", lookup_table([bench.custody_phase])]
    if bench.swarm_rows or bench.skipped.get("swarm"):
        out += ["", "### Swarming", ""]
        if bench.skipped.get("swarm"):
            out.append(f"Skipped: {bench.skipped['swarm']}.")
        else:
            out += [swarm_table(bench.swarm_rows), ""]
            out += [f"- {k}: {v}" for k, v in bench.swarm_facts.items()]
            out += [f"- {n}" for n in bench.notes["swarm"]]
    out += ["", "### Targets", "", "```"] + [v.line() for v in bench.verdicts] + ["```"]
    if bench.failures:
        out += ["", "### Failures", ""] + [f"- {f}" for f in bench.failures]
    return "\n".join(out) + "\n"


# --- main ------------------------------------------------------------------------------

def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))


def build_node() -> Path:
    say("building: cargo build --release")
    started = time.monotonic()
    done = subprocess.run(["cargo", "build", "--release"], cwd=REPO, capture_output=True,
                          text=True, timeout=3600)
    if done.returncode != 0:
        raise BenchFailure("cargo build --release failed:\n" + done.stderr[-3000:])
    say(f"  built in {time.monotonic() - started:.0f} s")
    return target_dir() / "release" / "libernet"


def write_plots(plan: Plan, bench: Bench, plots_dir: Path, stem: str) -> None:
    plots_dir.mkdir(parents=True, exist_ok=True)
    if bench.lookup:
        name = f"{stem}-hops.svg"
        (plots_dir / name).write_text(hops_svg(
            bench.lookup, "Lookups: where each GET found its block"))
        bench.plots["hops"] = name
    if bench.pop:
        name = f"{stem}-popularity.svg"
        p = plan.popularity
        (plots_dir / name).write_text(popularity_svg(
            bench.pop["replicas"], bench.pop["nodes"],
            f"Replicas after {p.rounds} Zipf({p.zipf:g}) rounds: {p.nodes} nodes, "
            f"{p.blocks} blocks"))
        bench.plots["popularity"] = name
    for name in bench.plots.values():
        say(f"wrote {plots_dir / name}")


def run(plan: Plan) -> int:
    command = shlex.join(sys.orig_argv)
    say(f"command: {command}")
    try:
        built = build_node() if plan.build else target_dir() / "release" / "libernet"
    except (BenchFailure, subprocess.TimeoutExpired, OSError) as e:
        say(f"FAILED: {e}")
        return 1
    if not built.exists():
        say(f"FAILED: no binary at {built}")
        return 1
    plan.data_dir.mkdir(parents=True, exist_ok=True)
    run_dir = plan.data_dir / f"mesh-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    run_dir.mkdir(parents=True)
    say(f"data: {run_dir}")
    binary = run_dir / "libernet"
    shutil.copy2(built, binary)
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()[:16]
    machine = machine_lines(f"{built} (sha256 {digest}..., copied for the run)")
    # Plots go beside the report; without one, into the run directory if it is kept.
    plots_dir = plan.markdown.parent if plan.markdown else run_dir if plan.keep else None
    stem = plan.markdown.stem if plan.markdown else "mesh"
    with contextlib.ExitStack() as stack:
        if not plan.keep:
            stack.callback(shutil.rmtree, run_dir, True)
        bench = Bench(plan, binary, run_dir, stack)
        steps = {"lookup": bench.run_lookup, "popularity": bench.run_popularity,
                 "custody": bench.run_custody, "swarm": bench.run_swarm}
        for part in plan.parts:
            try:
                steps[part]()
            except (BenchFailure, MeshError, OSError, subprocess.SubprocessError,
                    ValueError, KeyError) as e:
                bench.failures.append(f"{part}: {type(e).__name__}: {e}")
                say(f"{part}: FAILED: {e}")
            finally:
                bench.stop_meshes()
        if plots_dir is not None:
            write_plots(plan, bench, plots_dir, stem)
    machine.append(("load average at the end (1/5/15 min)",
                    " ".join(Path("/proc/loadavg").read_text().split()[:3])))
    text = report(plan, bench, machine, command, "")
    title = (f"## Mesh benchmark ({'smoke' if plan.smoke else 'full'} run, "
             f"{dict(machine)['date']})")
    return publish(text, plan.markdown, title, bench.failures, say)


def main(argv: list[str] | None = None) -> int:
    # SIGTERM unwinds like Ctrl-C, so nodes and namespaces are cleaned up on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run(make_plan(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
