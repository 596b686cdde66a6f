#!/usr/bin/env python3
"""Benchmark bundles end to end: `libernet put` and `get` of a 1 GiB mixed directory
against `tar cf - DIR | sha256sum`, and a node serving a 100 MiB file from a bundle
against nginx serving the same plain file.

1. put/get: writes a deterministic tree (10,000 small files of ~100 B to 64 KiB, half
   English-like text and half random bytes, in nested directories, plus 4 large random
   files bringing the total to 1 GiB), starts a release node on a fresh store, times
   `tar cf - DIR | sha256sum` (the floor), `libernet --server URL put DIR` on the fresh
   store, the same put again when every block is already on the node, and
   `libernet --server URL get BUNDLE -o OUT`, then checks that OUT is byte-identical.
   It reports MB/s, the CLI's and the node's CPU time and peak memory.
2. serving: puts a directory holding one 100 MiB random file `big.bin`, times the first
   and later `curl` of `<bundle>/big.bin` (the node hashes the file before its first
   answer), then drives the node and an nginx serving the plain file with wrk.

    python3 tools/bench_bundle.py                    # full run (a few minutes)
    python3 tools/bench_bundle.py --smoke            # tiny sizes, < 1 min; exit 1 on any error
    python3 tools/bench_bundle.py --markdown FILE    # also write a Markdown section

Everything runs on 127.0.0.1; every server started is stopped at the end, also on
failure or Ctrl-C. Needs Python 3.11 (stdlib only), cargo, Debian's nginx, wrk, curl,
tar and sha256sum.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ next to the sibling modules
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_node import (  # noqa: E402
    NGINX, REPO, describe_machine, say, wait_for_quiet,
)
from bench_report import MIB, Verdict, publish, render_table  # noqa: E402
from bench_servers import (  # noqa: E402
    NginxProcess, NodeProcess, ServerError, cpu_seconds, http_get, memory_kib,
    plain_nginx_config, start_nginx, start_node,
)
from bench_wrk import WrkError, WrkResult, run_wrk  # noqa: E402

GIB = 1 << 30

#: Targets of the issue.
PUT_GET_VS_FLOOR = 3.0
SERVE_VS_NGINX = 0.6

#: A wrk run during which other processes used more cores than this is run again.
OTHER_LIMIT = 0.25

#: Seconds between polls of a running CLI (its peak memory, its exit).
POLL = 0.02

#: Vocabulary of the text files: common English words, drawn with Zipf weights (the
#: k-th word about 1/k as likely), as benches/codec.rs does.
WORDS = """the of and to a in is it you that he was for on are with as I his they be at
one have this from or had by hot word but what some we can out other were all there when
up use your how said an each she which do their time if will way about many then them
write would like so these her long make thing see him two has look more day could go
come did number sound no most people my over know water than call first who may down
side been now find any new work part take get place made live where after back little
only round man year came show every good me give our under name very through just form
sentence great think say help low line differ turn cause much mean before move right boy
old too same tell does set three want air well also play small end put home read hand
port large spell add even land here must big high such follow act why ask men change went
light kind off need house picture try us again animal point mother world near build self
earth father head stand own page should country found answer school grow study still
learn plant cover food sun four between state keep eye never last let thought city tree
cross farm hard start might story saw far sea draw left late run while press close night
real life few north open seem together next white children begin got walk example ease
paper group always music those both mark often letter until mile river car feet care
second book carry took science eat room friend began idea fish mountain stop once base
hear horse cut sure watch color face wood main enough plain girl usual young ready above
ever red list though feel talk bird soon body dog family direct pose leave song measure
door product black short numeral class wind question happen complete ship area half rock
order fire south problem piece told knew pass since top whole king space heard best hour
better true during hundred five remember step early hold west ground interest reach fast
verb sing listen six table travel less morning ten simple several vowel toward war lay
against pattern slow center love person money serve appear road map rain rule govern
pull cold notice voice unit power town fine certain fly fall lead cry dark machine note
wait plan figure star box noun field rest correct able pound done beauty drive stood
contain front teach week final gave green quick develop ocean warm free minute strong
special mind behind clear tail produce fact street inch multiply nothing course stay
wheel full force blue object decide surface deep moon island foot system busy test record
boat common gold possible plane stead dry wonder laugh thousand ago ran check game shape
equate miss brought heat snow tire bring yes distant fill east paint language among""".split()


class BenchFailure(RuntimeError):
    """A process failed, timed out, or a result did not verify."""


# --- the plan --------------------------------------------------------------------------

@dataclass
class Plan:
    """Sizes and durations of one run."""

    smoke: bool
    data_dir: Path
    keep: bool
    build: bool
    markdown: Path | None
    small_files: int
    small_min: int
    small_max: int
    large_files: int
    total_bytes: int
    serve_bytes: int
    connections: list[int]
    duration: int
    node_log: str
    quiet_wait: float
    attempts: int
    cli_timeout: float
    skip_put_get: bool
    skip_serve: bool

    def quota(self) -> int:
        """Room for the tree and the served file with margin: nothing is evicted."""
        return max(4 * GIB, 3 * (self.total_bytes + self.serve_bytes))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--smoke", action="store_true",
                   help="tiny tree and file, 1 s wrk runs; exit 1 on any error or mismatch")
    p.add_argument("--dir", type=Path, default=Path("/tmp/libernet-bench"),
                   help="where trees, stores and logs go (a fresh run-* subdirectory)")
    p.add_argument("--keep", action="store_true", help="keep the run directory")
    p.add_argument("--no-build", action="store_true", help="skip cargo build --release")
    p.add_argument("--markdown", type=Path, metavar="FILE",
                   help="also write the results as a Markdown section to FILE")
    p.add_argument("--small-files", type=int, help="small files in the tree [10000; smoke 200]")
    p.add_argument("--large-files", type=int, help="large random files in the tree [4; smoke 2]")
    p.add_argument("--total-mib", type=int,
                   help="tree size in MiB; large files fill what small ones leave [1024; smoke 12]")
    p.add_argument("--serve-mib", type=int, help="size of big.bin in MiB [100; smoke 8]")
    p.add_argument("--connections", help="wrk connection counts [1,4,16; smoke 1,4]")
    p.add_argument("--duration", type=int, help="seconds per wrk run [10; smoke 1]")
    p.add_argument("--node-log", default="info", help="LIBERNET_LOG for the node")
    p.add_argument("--quiet-wait", type=float,
                   help="before each timed step, wait up to this many seconds for other "
                        "processes to use < 0.2 cores [60; smoke 0]")
    p.add_argument("--attempts", type=int,
                   help=f"repeat a wrk run while other processes used > {OTHER_LIMIT} cores, "
                        "up to this many times [3; smoke 1]")
    p.add_argument("--cli-timeout", type=float,
                   help="seconds allowed for one put or get [1800; smoke 60]")
    p.add_argument("--skip-put-get", action="store_true", help="only the serving part")
    p.add_argument("--skip-serve", action="store_true", help="only the put/get part")
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    smoke = args.smoke

    def pick(value, full, tiny):
        return value if value is not None else (tiny if smoke else full)

    return Plan(
        smoke=smoke,
        data_dir=args.dir,
        keep=args.keep,
        build=not args.no_build,
        markdown=args.markdown,
        small_files=pick(args.small_files, 10_000, 200),
        small_min=100,
        small_max=pick(None, 64 * 1024, 16 * 1024),
        large_files=pick(args.large_files, 4, 2),
        total_bytes=pick(args.total_mib, 1024, 12) * MIB,
        serve_bytes=pick(args.serve_mib, 100, 8) * MIB,
        connections=[int(c) for c in pick(args.connections, "1,4,16", "1,4").split(",")],
        duration=pick(args.duration, 10, 1),
        node_log=args.node_log,
        quiet_wait=pick(args.quiet_wait, 60.0, 0.0),
        attempts=pick(args.attempts, 3, 1),
        cli_timeout=pick(args.cli_timeout, 1800.0, 60.0),
        skip_put_get=args.skip_put_get,
        skip_serve=args.skip_serve,
    )


# --- the tree --------------------------------------------------------------------------

def text_corpus(size: int, seed: int) -> bytes:
    """English-like word salad: Zipf-weighted common words, sentences of 4-22 words with
    capitals, commas and full stops, paragraphs of 3-8 sentences."""
    rng = random.Random(seed)
    cum, total = [], 0.0
    for k in range(1, len(WORDS) + 1):
        total += 1.0 / k
        cum.append(total)
    words = rng.choices(WORDS, cum_weights=cum, k=size // 4)
    out, at, length = [], 0, 0
    while length < size:
        for _ in range(rng.randint(3, 8)):
            count = rng.randint(4, 22)
            if at + count > len(words):
                at = 0
            sentence = words[at:at + count]
            at += count
            sentence[0] = sentence[0].capitalize()
            for i in range(len(sentence) - 1):
                if rng.randrange(9) == 0:
                    sentence[i] += ","
            text = " ".join(sentence) + ("? " if rng.randrange(8) == 0 else ". ")
            out.append(text)
            length += len(text)
        out.append("\n")
        length += 1
    return "".join(out).encode()[:size]


def write_random(path: Path, size: int, seed: int) -> None:
    """``size`` deterministic pseudo-random bytes, written in 4 MiB pieces."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 * MIB)
            f.write(rng.randbytes(n))
            left -= n


@dataclass
class TreeFacts:
    """What was written: every file's size and SHA-256, by relative path."""

    root: Path
    files: dict[str, tuple[int, str]]
    text_files: int = 0
    text_bytes: int = 0
    small_bytes: int = 0
    large_sizes: list[int] = field(default_factory=list)
    directories: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(size for size, _ in self.files.values())


def small_path(rng: random.Random, i: int) -> str:
    """Nested directories, 1 to 4 levels: 16 top directories, 8 below each, 4 below
    those; a few names with spaces and non-ASCII letters."""
    depth = 1 + i % 4
    parts = [f"top{rng.randrange(16):02d}"]
    if depth >= 2:
        parts.append(f"mid{rng.randrange(8)}")
    if depth >= 3:
        parts.append(f"leaf {rng.randrange(4)}" if i % 50 == 0 else f"leaf{rng.randrange(4)}")
    name = f"file{i:05d}"
    if i % 97 == 0:
        name = f"notes é {i}"
    parts.append(name)
    return "/".join(parts)


def make_tree(root: Path, plan: Plan, seed: int = 3) -> TreeFacts:
    """Writes the deterministic mixed tree under ``root`` and hashes every file."""
    rng = random.Random(seed)
    corpus = text_corpus(max(4 * MIB, plan.small_max * 4), seed)
    facts = TreeFacts(root, {})
    dirs = set()
    for i in range(plan.small_files):
        # Sizes uniform between small_min and small_max: mean ~32 KiB at full size.
        size = rng.randint(plan.small_min, plan.small_max)
        rel = small_path(rng, i)
        text = i % 2 == 0
        if text:
            start = rng.randrange(len(corpus) - size)
            data = corpus[start:start + size]
            rel += ".txt"
            facts.text_files += 1
            facts.text_bytes += size
        else:
            data = rng.randbytes(size)
            rel += ".bin"
        path = root / rel
        if path.parent not in dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            dirs.add(path.parent)
        path.write_bytes(data)
        facts.files[rel] = (size, hashlib.sha256(data).hexdigest())
        facts.small_bytes += size
    # Large files fill the rest, in shares 1:2:3:4..., at sizes that are not multiples
    # of a block's content.
    rest = max(plan.large_files * MIB, plan.total_bytes - facts.small_bytes)
    weights = list(range(1, plan.large_files + 1))
    (root / "large").mkdir(parents=True, exist_ok=True)
    for n, w in enumerate(weights):
        size = rest * w // sum(weights) - 12_345 * (n + 1)
        rel = f"large/data{n}.bin"
        write_random(root / rel, size, seed * 1000 + n)
        facts.files[rel] = (size, file_sha256(root / rel))
        facts.large_sizes.append(size)
    facts.directories = len({p for d in dirs for p in [d, *d.parents] if root in p.parents})
    return facts


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MIB):
            h.update(chunk)
    return h.hexdigest()


def scan_tree(root: Path) -> dict[str, tuple[int, str]]:
    """Every regular file under ``root``: relative path -> (size, SHA-256)."""
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink() or not path.is_file():
                found[rel] = (-1, "not a regular file")
                continue
            found[rel] = (path.stat().st_size, file_sha256(path))
    return found


def compare_trees(expected: dict[str, tuple[int, str]],
                  got: dict[str, tuple[int, str]]) -> list[str]:
    """Differences between two scans, at most a few lines."""
    problems = []
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    differ = sorted(p for p in set(expected) & set(got) if expected[p] != got[p])
    if missing:
        problems.append(f"{len(missing)} files missing, e.g. {missing[:3]}")
    if extra:
        problems.append(f"{len(extra)} unexpected files, e.g. {extra[:3]}")
    if differ:
        problems.append(f"{len(differ)} files differ, e.g. {differ[:3]}")
    return problems


# --- running the CLI and the floor -----------------------------------------------------

@dataclass
class Timed:
    """A finished command: wall time, its CPU and peak memory (with its children)."""

    seconds: float
    cpu_s: float
    maxrss_kib: int
    stdout: str
    stderr: str


#: GNU time: reports the peak RSS of the command it runs. wait4()'s own ru_maxrss would
#: not do: a child forked from this Python process starts with Python's peak RSS (the
#: kernel keeps the larger of the pre-exec and post-exec peaks).
GNU_TIME = Path("/usr/bin/time")


def run_timed(cmd: list[str], log_dir: Path, name: str, timeout: float,
              env: dict[str, str] | None = None) -> Timed:
    """Runs ``cmd`` and waits with os.wait4 (polled, so the wait is bounded), which
    gives its CPU time including the children it waited for; its peak RSS comes from
    GNU time (or, without it, from polling VmHWM in /proc). Raises BenchFailure on a
    non-zero exit or a timeout (after killing it)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{name}.stdout", log_dir / f"{name}.stderr"
    rss_path = log_dir / f"{name}.maxrss"
    rss_path.unlink(missing_ok=True)
    wrapped = [str(GNU_TIME), "-f", "%M", "-o", str(rss_path), *cmd] if GNU_TIME.exists() else cmd
    polled_hwm = 0
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(wrapped, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    deadline = started + timeout
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if time.monotonic() > deadline:
                raise BenchFailure(f"{name} did not finish within {timeout:.0f} s: "
                                   f"{shlex.join(cmd)}")
            with contextlib.suppress(OSError, KeyError):
                polled_hwm = max(polled_hwm, memory_kib(proc.pid)["VmHWM"])
            time.sleep(POLL)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.wait4(proc.pid, 0)
        proc.returncode = -9
        raise
    seconds = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    if proc.returncode != 0:
        raise BenchFailure(f"{name} exited with {proc.returncode}: {shlex.join(cmd)}\n"
                           f"{stderr.strip()[-2000:]}")
    maxrss = polled_hwm
    if GNU_TIME.exists():
        # GNU time's last line is the figure; lines before it are warnings, if any.
        lines = rss_path.read_text().split()
        maxrss = int(lines[-1]) if lines and lines[-1].isdigit() else 0
    return Timed(seconds, usage.ru_utime + usage.ru_stime, maxrss, stdout, stderr)


def run_floor(root: Path, log_dir: Path, name: str, timeout: float) -> Timed:
    """``tar cf - DIR | sha256sum``: reading every file once and hashing the stream."""
    script = (f"set -o pipefail; tar cf - -C {shlex.quote(str(root.parent))} "
              f"{shlex.quote(root.name)} | sha256sum")
    return run_timed(["bash", "-c", script], log_dir, name, timeout)


# --- the run ---------------------------------------------------------------------------

@dataclass
class Step:
    """One timed put/get/floor step."""

    name: str
    timed: Timed
    bytes: int
    floor: Timed | None = None
    node_cpu_s: float | None = None
    node_hwm_kib: int | None = None
    node_start_rss_kib: int | None = None
    note: str = ""

    @property
    def mb_s(self) -> float:
        return self.bytes / self.timed.seconds / 1e6

    @property
    def vs_floor(self) -> float | None:
        return self.timed.seconds / self.floor.seconds if self.floor else None


@dataclass
class FirstRequest:
    """curl timings of GET <bundle>/big.bin."""

    label: str
    status: int
    size: int
    ttfb_s: float
    total_s: float


@dataclass
class ServeRow:
    server: str
    connections: int
    result: WrkResult

    @property
    def mb_s(self) -> float:
        return self.result.response_bytes / self.result.duration_s / 1e6

    @property
    def req_per_s(self) -> float:
        return self.result.requests / self.result.duration_s


class Bench:
    """One run: directories, servers, and what was measured."""

    def __init__(self, plan: Plan, binary: Path, run_dir: Path, stack: contextlib.ExitStack):
        self.plan = plan
        self.binary = binary
        self.run_dir = run_dir
        self.stack = stack
        self.failures: list[str] = []
        self.steps: list[Step] = []
        self.tree: TreeFacts | None = None
        self.first_requests: list[FirstRequest] = []
        self.serve_rows: list[ServeRow] = []
        self.serve_notes: list[str] = []

    # servers

    def node(self, store: Path, name: str) -> NodeProcess:
        node = start_node(self.binary, store, self.run_dir / name, self.plan.node_log,
                          quota=str(self.plan.quota()))
        self.stack.callback(self._stop_quietly, node, name)
        say(f"node {name}: {node.url} (pid {node.pid}, ready in {node.ready_secs:.2f} s)")
        return node

    def stop(self, server: NodeProcess | NginxProcess, name: str) -> None:
        if not server.alive():
            self.failures.append(f"{name} died during the run (status {server.proc.returncode})")
            return
        try:
            server.stop()
        except ServerError as e:
            self.failures.append(str(e))

    def _stop_quietly(self, server: NodeProcess | NginxProcess, name: str) -> None:
        if server.proc.returncode is None:
            self.stop(server, name)

    def quiet(self, pids: list[int]) -> None:
        if self.plan.quiet_wait > 0:
            waited, other = wait_for_quiet(pids, self.plan.quiet_wait)
            if waited >= 1:
                say(f"  (waited {waited:.0f} s for other load to settle; now {other:.2f} cores)")

    def cli(self, node: NodeProcess, args: list[str], name: str) -> Timed:
        """``libernet --server URL ARGS``, timed; the CLI logs at warn."""
        env = dict(os.environ, LIBERNET_LOG="warn")
        cmd = [str(self.binary), "--server", node.url, *args]
        return run_timed(cmd, self.run_dir / "cli", name, self.plan.cli_timeout, env)

    def bundle_path(self, printed: str) -> str:
        """The path (``/sha256/<id>/aes256/<key>/``) of the bundle URL that put printed
        as its one stdout line; the host part names a node that may be restarted on
        another port, so only the path is kept."""
        lines = [line for line in printed.splitlines() if line.strip()]
        if len(lines) != 1:
            raise BenchFailure(f"put printed {len(lines)} lines, not one: {printed[:500]!r}")
        url = lines[0].strip()
        path = url[len(node_base(url)):] if "://" in url else url
        if not path.startswith("/sha256/") or not path.endswith("/"):
            raise BenchFailure(f"put printed {url!r}, not a bundle URL ending in /")
        return path

    # part 1: put and get

    def put_get(self) -> None:
        plan = self.plan
        root = self.run_dir / "tree"
        say(f"writing the tree: {plan.small_files:,} small files + {plan.large_files} large, "
            f"~{plan.total_bytes / MIB:,.0f} MiB")
        started = time.monotonic()
        tree = make_tree(root, plan)
        self.tree = tree
        os.sync()
        say(f"  {len(tree.files):,} files, {tree.total_bytes / 1e6:,.1f} MB "
            f"({tree.text_files:,} text files, {tree.text_bytes / 1e6:,.1f} MB; large "
            f"{', '.join(f'{s / MIB:.1f}' for s in tree.large_sizes)} MiB) in "
            f"{time.monotonic() - started:.1f} s")
        store = self.run_dir / "store"

        # Fresh store. The page cache holds the tree: it was just written and hashed,
        # and the floor reads it again right before the put.
        node = self.node(store, "node-put")
        start_rss = memory_kib(node.pid)["VmRSS"]
        self.quiet([node.pid])
        floor_put = self.floor(root, "floor-put")
        cpu0 = cpu_seconds(node.pid)
        put = self.cli(node, ["put", str(root)], "put-fresh")
        url = self.bundle_path(put.stdout)
        info = node_info(node)
        self.add_step(Step("put, fresh store", put, tree.total_bytes, floor_put,
                           cpu_seconds(node.pid) - cpu0, memory_kib(node.pid)["VmHWM"],
                           start_rss, note=f"{put_summary(put)}; node afterwards: {info}"))
        say(f"  bundle: {url}")
        self.stop(node, "node-put")

        # Same store, node restarted (fresh memory figures): every block is there.
        node = self.node(store, "node-put-again")
        start_rss = memory_kib(node.pid)["VmRSS"]
        self.quiet([node.pid])
        floor_again = self.floor(root, "floor-put-again")
        cpu0 = cpu_seconds(node.pid)
        again = self.cli(node, ["put", str(root)], "put-again")
        url_again = self.bundle_path(again.stdout)
        note = put_summary(again) + ("; same bundle URL" if url_again == url
                                     else f"; DIFFERENT bundle URL {url_again}")
        if url_again != url:
            self.failures.append(f"the second put printed another URL: {url_again} vs {url}")
        self.add_step(Step("put, all blocks already on the node", again, tree.total_bytes,
                           floor_again, cpu_seconds(node.pid) - cpu0,
                           memory_kib(node.pid)["VmHWM"], start_rss, note=note))
        self.stop(node, "node-put-again")

        # get into a new directory, from a restarted node.
        node = self.node(store, "node-get")
        start_rss = memory_kib(node.pid)["VmRSS"]
        out = self.run_dir / "restored"
        self.quiet([node.pid])
        floor_get = self.floor(root, "floor-get")
        cpu0 = cpu_seconds(node.pid)
        got = self.cli(node, ["get", node.url + url, "-o", str(out)], "get")
        step = Step("get into an empty directory", got, tree.total_bytes, floor_get,
                    cpu_seconds(node.pid) - cpu0, memory_kib(node.pid)["VmHWM"], start_rss)
        self.stop(node, "node-get")
        started = time.monotonic()
        problems = compare_trees(tree.files, scan_tree(out))
        if problems:
            step.note = "MISMATCH: " + "; ".join(problems)
            self.failures.append("restored tree differs: " + "; ".join(problems))
        else:
            step.note = (f"restored tree byte-identical ({len(tree.files):,} files, checked "
                         f"by SHA-256 in {time.monotonic() - started:.1f} s)")
        self.add_step(step)
        if not plan.keep:
            shutil.rmtree(out, ignore_errors=True)

    def floor(self, root: Path, name: str) -> Timed:
        """The floor, run twice in a row; the faster run counts (both are shown)."""
        runs = [run_floor(root, self.run_dir / "cli", f"{name}-{n}", self.plan.cli_timeout)
                for n in (1, 2)]
        best = min(runs, key=lambda t: t.seconds)
        self.add_step(Step("floor: tar + sha256sum", best, self.tree.total_bytes,
                           note="faster of 2 runs: "
                           + ", ".join(f"{t.seconds:.2f} s" for t in runs)))
        return best

    def add_step(self, step: Step) -> None:
        self.steps.append(step)
        t = step.timed
        extra = ""
        if step.floor:
            extra = (f", {step.vs_floor:.2f}x floor; node CPU {step.node_cpu_s:.1f} s, "
                     f"VmHWM {step.node_hwm_kib / 1024:.0f} MiB")
        say(f"  {step.name}: {t.seconds:.2f} s, {step.mb_s:,.0f} MB/s, CPU {t.cpu_s:.1f} s, "
            f"peak RSS {t.maxrss_kib / 1024:.0f} MiB{extra}"
            + (f" [{step.note}]" if step.note else ""))

    # part 2: serving one large file

    def serve(self) -> None:
        plan = self.plan
        tree = self.run_dir / "serve-tree"
        tree.mkdir()
        big = tree / "big.bin"
        write_random(big, plan.serve_bytes, 77)
        digest = file_sha256(big)
        os.sync()
        store = self.run_dir / "serve-store"
        node = self.node(store, "node-serve-put")
        put = self.cli(node, ["put", str(tree)], "put-serve")
        url = self.bundle_path(put.stdout)
        say(f"  put {plan.serve_bytes / MIB:.0f} MiB in {put.seconds:.2f} s: {url}")
        self.stop(node, "node-serve-put")

        # A restarted node has computed nothing about the file yet.
        node = self.node(store, "node-serve")
        path = url + "big.bin"
        target = f"{node.url}{path}"
        self.quiet([node.pid])
        for label in ["first request (fresh node)", "second request", "third request"]:
            fr = curl_get(target, self.run_dir / "curl.out", label)
            self.first_requests.append(fr)
            say(f"  curl {label}: status {fr.status}, {fr.size:,} bytes, first byte after "
                f"{fr.ttfb_s * 1000:.1f} ms, total {fr.total_s * 1000:.1f} ms")
            if fr.status != 200 or fr.size != plan.serve_bytes:
                raise BenchFailure(f"GET {path}: status {fr.status}, {fr.size} bytes")
            if label.startswith("first"):
                got = file_sha256(self.run_dir / "curl.out")
                if got != digest:
                    raise BenchFailure(f"GET {path} returned other bytes (sha256 {got})")
        (self.run_dir / "curl.out").unlink(missing_ok=True)

        nginx = start_nginx(NGINX, self.run_dir / "nginx", tree, "/big.bin",
                            access_log=plan.node_log in ("info", "debug", "trace"),
                            config=plain_nginx_config)
        self.stack.callback(self._stop_quietly, nginx, "nginx")
        say(f"nginx: {nginx.url} (pid {nginx.proc.pid}, workers {nginx.worker_pids})")
        status, body = http_get(f"{nginx.url}/big.bin", timeout=60)
        if status != 200 or hashlib.sha256(body).hexdigest() != digest:
            raise BenchFailure("nginx did not serve big.bin intact")
        del body
        for c in plan.connections:
            for name, server, wrk_path in (("node", node, path), ("nginx", nginx, "/big.bin")):
                row = self.wrk(name, server, c, wrk_path)
                if row:
                    self.serve_rows.append(row)
        self.serve_notes.append(f"node VmHWM after the wrk runs: "
                                f"{memory_kib(node.pid)['VmHWM'] / 1024:.0f} MiB")
        self.stop(nginx, "nginx")
        self.stop(node, "node-serve")

    def wrk(self, name: str, server: NodeProcess | NginxProcess, connections: int,
            path: str) -> ServeRow | None:
        """A wrk run of GET ``path``, repeated while other processes disturbed it."""
        best = None
        threads = min(2, connections)
        for attempt in range(1, self.plan.attempts + 1):
            if not server.alive():
                raise BenchFailure(f"{name} exited before wrk c={connections}")
            self.quiet(server.pids())
            try:
                # 100 MiB answers shared by 16 connections take seconds each.
                result = run_wrk(server.url, "get_path_uncounted.lua", [path], threads=threads,
                                 connections=connections, duration_s=self.plan.duration,
                                 server_pids=server.pids(), request_timeout_s=60)
            except WrkError as e:
                self.failures.append(f"wrk {name} c={connections}: {e}")
                return None
            if best is None or result.other_cores < best.other_cores:
                best = result
            if result.other_cores < OTHER_LIMIT or attempt == self.plan.attempts:
                break
            say(f"    other processes used {result.other_cores:.2f} cores: running again")
        row = ServeRow(name, connections, best)
        r = best
        say(f"  wrk {name:<5} c={connections:<2} {row.mb_s:>8,.0f} MB/s {row.req_per_s:6.1f} req/s "
            f"p50 {r.latency_us['p50'] / 1000:.0f} ms  non-2xx {r.non_2xx} sock err {r.errors} "
            f"cpu server {r.server_cores:.2f} wrk {r.wrk_cores:.2f} other {r.other_cores:.2f}")
        if r.non_2xx or r.errors:
            self.failures.append(f"wrk {name} c={connections}: {r.non_2xx} non-2xx, "
                                 f"{r.errors} socket errors")
        if r.requests == 0:
            self.failures.append(f"wrk {name} c={connections}: no request completed")
        return row


def node_base(url: str) -> str:
    """``http://host:port`` of a full URL."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def put_summary(timed: Timed) -> str:
    """The CLI's own summary line (``blocks sent, ... already there``), shortened."""
    for line in timed.stderr.splitlines():
        if line.startswith("libernet: put ") and "blocks sent" in line:
            return "CLI: " + line.split(": ", 2)[-1].split(" (")[0]
    return "CLI printed no summary"


def node_info(node: NodeProcess) -> str:
    """Block count and bytes from ``GET /node``, if it says."""
    try:
        status, body = http_get(f"{node.url}/node")
        data = json.loads(body)
    except (OSError, ValueError):
        return "GET /node failed"
    if status != 200:
        return f"GET /node: {status}"
    store = data.get("store", data)
    blocks, used = store.get("blocks"), store.get("bytes", store.get("used_bytes"))
    parts = []
    if blocks is not None:
        parts.append(f"{blocks:,} blocks")
    if used is not None:
        parts.append(f"{used / 1e6:,.1f} MB stored")
    return ", ".join(parts) or "?"


def curl_get(url: str, out: Path, label: str, timeout: float = 120.0) -> FirstRequest:
    """One GET with curl: status, size, time to first byte and total."""
    cmd = ["curl", "-sS", "-o", str(out), "--max-time", str(int(timeout)),
           "-w", "%{http_code} %{size_download} %{time_starttransfer} %{time_total}", url]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 10)
    except subprocess.TimeoutExpired as e:
        raise BenchFailure(f"curl {url} did not finish") from e
    if done.returncode != 0:
        raise BenchFailure(f"curl {url} failed ({done.returncode}): {done.stderr.strip()}")
    status, size, ttfb, total = done.stdout.split()
    return FirstRequest(label, int(status), int(size), float(ttfb), float(total))


# --- report ----------------------------------------------------------------------------

def put_get_table(steps: list[Step]) -> str:
    headers = ["step", "seconds", "MB/s", "x floor time", "CLI CPU s", "CLI peak RSS",
               "node CPU s", "node VmHWM", "notes"]
    lines = []
    for s in steps:
        lines.append([
            s.name, f"{s.timed.seconds:.2f}", f"{s.mb_s:,.0f}",
            f"{s.vs_floor:.2f}x" if s.vs_floor is not None else "",
            f"{s.timed.cpu_s:.1f}", f"{s.timed.maxrss_kib / 1024:,.0f} MiB",
            f"{s.node_cpu_s:.1f}" if s.node_cpu_s is not None else "",
            (f"{s.node_hwm_kib / 1024:,.0f} MiB (start {s.node_start_rss_kib / 1024:.0f})"
             if s.node_hwm_kib is not None else ""),
            s.note,
        ])
    return render_table(headers, lines)


def serve_table(rows: list[ServeRow]) -> str:
    headers = ["server", "conns", "MB/s", "req/s", "p50 ms", "p99 ms", "node/nginx",
               "non-2xx", "sock err", "server CPU", "wrk CPU", "other CPU"]
    lines = []
    for row in rows:
        other = next((o for o in rows if o.server == "nginx" and o.connections == row.connections),
                     None)
        ratio = (f"{row.mb_s / other.mb_s:.2f}x" if row.server == "node" and other and other.mb_s
                 else "")
        r = row.result
        lines.append([
            row.server, str(row.connections), f"{row.mb_s:,.0f}", f"{row.req_per_s:.1f}",
            f"{r.latency_us['p50'] / 1000:.0f}", f"{r.latency_us['p99'] / 1000:.0f}", ratio,
            str(r.non_2xx), str(r.errors), f"{r.server_cores:.2f}", f"{r.wrk_cores:.2f}",
            f"{r.other_cores:.2f}",
        ])
    return render_table(headers, lines)


def verdicts(bench: Bench) -> list[Verdict]:
    out = []
    for s in bench.steps:
        if s.floor is not None:
            out.append(Verdict(f"{s.name}: time <= {PUT_GET_VS_FLOOR:g}x the floor's",
                               f"{s.timed.seconds:.2f} s vs {s.floor.seconds:.2f} s = "
                               f"{s.vs_floor:.2f}x", s.vs_floor <= PUT_GET_VS_FLOOR))
    for row in bench.serve_rows:
        if row.server != "node":
            continue
        other = next((o for o in bench.serve_rows
                      if o.server == "nginx" and o.connections == row.connections), None)
        if other and other.mb_s:
            ratio = row.mb_s / other.mb_s
            out.append(Verdict(f"serve big.bin from a bundle >= {SERVE_VS_NGINX:g}x nginx "
                               f"(c={row.connections})",
                               f"{ratio:.2f}x ({row.mb_s:,.0f} vs {other.mb_s:,.0f} MB/s)",
                               ratio >= SERVE_VS_NGINX))
    return out


def settings_lines(plan: Plan, bench: Bench) -> list[str]:
    tree = bench.tree
    lines = [f"mode: {'smoke' if plan.smoke else 'full'}"]
    if tree:
        lines.append(
            f"tree: {len(tree.files):,} files, {tree.total_bytes:,} bytes "
            f"({tree.total_bytes / MIB:,.1f} MiB) in {tree.directories} directories: "
            f"{plan.small_files:,} small files of {plan.small_min}-{plan.small_max:,} bytes "
            f"(uniform; {tree.small_bytes / MIB:,.1f} MiB), half English-like text "
            f"({tree.text_files:,} files, {tree.text_bytes / MIB:,.1f} MiB: slices of a "
            "word-salad corpus of Zipf-weighted common English words, as in the codec bench) "
            f"and half random bytes; plus {len(tree.large_sizes)} random files of "
            f"{', '.join(f'{s / MIB:.1f}' for s in tree.large_sizes)} MiB")
    lines += [
        "floor: `tar cf - DIR | sha256sum` (bash, pipefail), run twice right before each "
        "put and the get, the faster run counts; page cache warm for all (the tree was "
        "just written and hashed, and the floor reads it again right before the put; the "
        "store was just written by the put); nothing dropped",
        "put: `libernet --server URL put DIR` against a node on a fresh store; again with "
        "every block already stored (node restarted on the same store); get: "
        "`libernet --server URL get BUNDLE_URL -o NEW_DIR` (node restarted), then every "
        "restored file compared with the original by size and SHA-256",
        "CLI CPU: from wait4() of the CLI process (with its children, for the floor); "
        "CLI peak RSS: GNU time's %M (for the floor: the largest of tar and sha256sum); "
        "node CPU: from /proc "
        "during the step; node VmHWM: its peak RSS since it started right before the step "
        "(start = VmRSS after start-up)",
        f"node: LIBERNET_LOG={plan.node_log} (stderr to a file), --quota {plan.quota()}; "
        "CLI: LIBERNET_LOG=warn",
        f"serving: one random file big.bin of {plan.serve_bytes / MIB:.0f} MiB put as a "
        "bundle; the node restarted, then 3 curl GETs of <bundle>/big.bin (the first one "
        "checked by SHA-256); wrk with tools/wrk/get_path_uncounted.lua (no Lua response "
        f"callback), 1 thread for 1 connection else 2, {plan.duration} s per run, "
        f"connections {', '.join(map(str, plan.connections))}; nginx serves the plain file "
        "(sendfile on, 2 workers)",
        f"before each timed step: wait up to {plan.quiet_wait:g} s for other processes to "
        f"use < 0.2 cores; a wrk run during which they used > {OTHER_LIMIT} cores is repeated, "
        f"up to {plan.attempts} attempts",
        "MB/s: 1 MB = 10^6 bytes; put/get count the tree's file bytes; wrk rows count the "
        "bytes wrk read",
    ]
    return lines


def report(plan: Plan, machine: list[tuple[str, str]], command: str, bench: Bench) -> str:
    results = verdicts(bench)
    first = [f"- {fr.label}: status {fr.status}, {fr.size:,} bytes, first byte after "
             f"{fr.ttfb_s * 1000:.1f} ms, complete after {fr.total_s * 1000:.1f} ms "
             f"({fr.size / fr.total_s / 1e6:,.0f} MB/s)" for fr in bench.first_requests]
    out = ["### Machine", ""] + [f"- {k}: {v}" for k, v in machine]
    out += ["", "### Command", "", "```", command, "```", "", "### Settings", ""]
    out += [f"- {s}" for s in settings_lines(plan, bench)]
    if bench.steps:
        out += ["", "### put and get", "", put_get_table(bench.steps)]
    if bench.first_requests or bench.serve_rows:
        out += ["", "### Serving big.bin from a bundle", ""] + first
        out += [f"- {n}" for n in bench.serve_notes]
        out += ["", serve_table(bench.serve_rows)]
    out += ["", "### Targets", "", "```"] + [v.line() for v in results] + ["```"]
    if bench.failures:
        out += ["", "### Failures", ""] + [f"- {f}" for f in bench.failures]
    return "\n".join(out) + "\n"


# --- main ------------------------------------------------------------------------------

def build_node() -> Path:
    say("building: cargo build --release")
    started = time.monotonic()
    done = subprocess.run(["cargo", "build", "--release"], cwd=REPO, capture_output=True,
                          text=True, timeout=3600)
    if done.returncode != 0:
        raise BenchFailure("cargo build --release failed:\n" + done.stderr[-3000:])
    say(f"  built in {time.monotonic() - started:.0f} s")
    return target_dir() / "release" / "libernet"


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))


def run(plan: Plan) -> int:
    command = shlex.join(sys.orig_argv)
    plan.data_dir.mkdir(parents=True, exist_ok=True)
    machine = describe_machine(plan.data_dir)
    print("machine:\n" + "\n".join(f"  {k}: {v}" for k, v in machine))
    say(f"command: {command}")
    need = 3.3 * plan.total_bytes + 3 * plan.serve_bytes
    free = shutil.disk_usage(plan.data_dir).free
    if free < need:
        say(f"FAILED: {plan.data_dir} has {free / 1e9:.1f} GB free, needs ~{need / 1e9:.1f} GB")
        return 1
    try:
        built = build_node() if plan.build else target_dir() / "release" / "libernet"
    except (BenchFailure, subprocess.TimeoutExpired) as e:
        say(f"FAILED: {e}")
        return 1
    run_dir = plan.data_dir / f"bundle-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    run_dir.mkdir(parents=True)
    say(f"data: {run_dir}")
    binary = run_dir / "libernet"
    shutil.copy2(built, binary)
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()[:16]
    machine.append(("libernet binary", f"{built} (sha256 {digest}..., copied for the run)"))

    with contextlib.ExitStack() as stack:
        if not plan.keep:
            stack.callback(shutil.rmtree, run_dir, True)
        bench = Bench(plan, binary, run_dir, stack)
        try:
            if not plan.skip_put_get:
                bench.put_get()
            if not plan.skip_serve:
                bench.serve()
        except (BenchFailure, ServerError, OSError) as e:
            bench.failures.append(f"{type(e).__name__}: {e}")
    text = report(plan, machine, command, bench)
    title = (f"## Bundles: put/get and serving ({'smoke' if plan.smoke else 'full'} run, "
             f"{dict(machine)['date']})")
    return publish(text, plan.markdown, title, bench.failures, say)


def main(argv: list[str] | None = None) -> int:
    # SIGTERM unwinds like Ctrl-C, so the servers are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run(make_plan(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
