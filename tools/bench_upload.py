#!/usr/bin/env python3
"""Benchmark the dashboard's upload route: `POST /upload` of a ~512 MiB tree against
`libernet put` of the same tree, each on a fresh node store, in the same run.

1. Writes a deterministic tree with bench_bundle.make_tree: 3,000 small files of 100 B
   to 64 KiB (half English-like text, half random) and 3 large random files, ~512 MiB.
2. Upload: a release node on a fresh store; this process sends the tree to `POST
   /upload` as the dashboard does (admin token; one `multipart/form-data` body, a
   `modified` part before each `file` part named by its percent-encoded path),
   streamed from the files with a precomputed Content-Length, so the client never
   holds the tree. The answer must be 201 with the tree's `files` and `bytes`.
3. put: `libernet --server URL put DIR` against a second node on a fresh store.
4. After each, files are fetched back through `<bundle URL><percent-encoded path>` and
   compared by SHA-256: a sample of small files and every large one (all with --smoke).

It reports MB/s, upload/put time, the client's CPU and peak RSS, and the node's CPU and
peak RSS (VmHWM) against the largest file: the node holds one ~1 MiB chunk per upload,
so its memory should not grow with the upload.

    python3 tools/bench_upload.py                    # full run (a few minutes)
    python3 tools/bench_upload.py --smoke            # ~8 MiB, < 1 min; exit 1 on any error
    python3 tools/bench_upload.py --markdown FILE    # also write a Markdown section

Everything runs on 127.0.0.1; every node started is stopped at the end, also on failure
or Ctrl-C. Needs Python 3.11 (stdlib only), cargo and GNU time.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import random
import resource
import shlex
import shutil
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

sys.dont_write_bytecode = True  # no __pycache__ next to the sibling modules
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_backup import TreeShape, warm  # noqa: E402
from bench_bundle import (  # noqa: E402
    BenchFailure, Timed, TreeFacts, build_node, make_tree, node_base, node_info,
    put_summary, run_timed, target_dir,
)
from bench_node import describe_machine, say, wait_for_quiet  # noqa: E402
from bench_report import MIB, Verdict, publish, render_table  # noqa: E402
from bench_servers import (  # noqa: E402
    NodeProcess, ServerError, cpu_seconds, machine_busy_seconds, memory_kib, start_node,
)

#: Targets: the upload's time over `libernet put`'s, and the node's peak RSS meanwhile.
#: The node holds one ~1 MiB chunk of an upload plus about one socket read in the
#: parser, and peaks near 30 MiB under `put`; 64 MiB leaves the allocator room and
#: still catches a buffer that grows with the upload (120 MiB for this tree before the
#: body was paced).
UPLOAD_VS_PUT = 1.5
NODE_PEAK_LIMIT = 64 * MIB

#: A step during which other processes used more cores than this is run again.
OTHER_LIMIT = 0.25

#: Seed of the tree and of the sample of files checked: every run is the same.
SEED = 17

#: Small files fetched back after a full run, besides every large one.
SAMPLE = 40

#: The client's one buffer, for part headers and small files; larger files use sendfile().
SEND_BUFFER = MIB

#: The multipart boundary: 40 fixed characters that random content will not contain.
BOUNDARY = "libernet-bench-" + hashlib.sha256(b"bench_upload").hexdigest()[:25]


# --- the plan --------------------------------------------------------------------------

@dataclass
class Plan:
    """Sizes and limits of one run."""

    smoke: bool
    data_dir: Path
    keep: bool
    build: bool
    markdown: Path | None
    shape: TreeShape
    quiet_wait: float
    attempts: int
    timeout: float
    node_log: str

    def quota(self) -> int:
        """Room for the tree with margin: nothing is evicted."""
        return max(4 << 30, 3 * self.shape.total_bytes)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--smoke", action="store_true",
                   help="tiny tree (~8 MiB), < 1 min; exit 1 on any error or mismatch")
    p.add_argument("--dir", type=Path, default=Path("/tmp/libernet-bench-upload"),
                   help="where the tree, stores and logs go (a fresh run-* subdirectory)")
    p.add_argument("--keep", action="store_true", help="keep the run directory")
    p.add_argument("--no-build", action="store_true",
                   help="use the existing $CARGO_TARGET_DIR/release/libernet")
    p.add_argument("--markdown", type=Path, metavar="FILE",
                   help="also write the results as a Markdown section to FILE")
    p.add_argument("--small-files", type=int, help="small files in the tree [3000; smoke 16]")
    p.add_argument("--large-files", type=int, help="large random files [3; smoke 2]")
    p.add_argument("--total-mib", type=int,
                   help="tree size in MiB; large files fill what small ones leave [512; smoke 8]")
    p.add_argument("--quiet-wait", type=float,
                   help="before each timed step, wait up to this many seconds for other "
                        "processes to use < 0.2 cores [60; smoke 0]")
    p.add_argument("--attempts", type=int,
                   help=f"run a step again while other processes used > {OTHER_LIMIT} cores "
                        "during it, up to this many times [3; smoke 1]")
    p.add_argument("--timeout", type=float,
                   help="seconds allowed for the upload or the put [1800; smoke 120]")
    p.add_argument("--node-log", default="warn", help="LIBERNET_LOG for the node")
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    smoke = args.smoke

    def pick(value, full, tiny):
        return value if value is not None else (tiny if smoke else full)

    shape = TreeShape(small_files=pick(args.small_files, 3000, 16), small_min=100,
                      small_max=64 * 1024, large_files=max(1, pick(args.large_files, 3, 2)),
                      total_bytes=pick(args.total_mib, 512, 8) * MIB)
    return Plan(smoke=smoke, data_dir=args.dir.resolve(), keep=args.keep,
                build=not args.no_build, markdown=args.markdown, shape=shape,
                quiet_wait=pick(args.quiet_wait, 60.0, 0.0), attempts=pick(args.attempts, 3, 1),
                timeout=pick(args.timeout, 1800.0, 120.0), node_log=args.node_log)


# --- the upload client -----------------------------------------------------------------

@dataclass
class Measure:
    """One way of sending the tree to a fresh node, and what it cost."""

    name: str
    seconds: float
    cpu_s: float
    maxrss_kib: int
    note: str
    #: Seconds until the client had sent its last byte (the upload only).
    sent_s: float | None = None
    node_cpu_s: float = 0.0
    node_hwm_kib: int = 0
    node_start_kib: int = 0
    #: Cores that other processes used meanwhile (machine busy time minus node and client).
    other_cores: float = 0.0
    check: str = ""

    def mb_s(self, total: int) -> float:
        return total / self.seconds / 1e6


def multipart_parts(root: Path, rels: list[str]) -> tuple[list[tuple[bytes, Path, int]], int]:
    """Each file's part headers (its `modified` part, then its `file` part's headers),
    path and size, and the whole body's length."""
    parts, length = [], 0
    for rel in rels:
        path = root / rel
        st = path.stat()
        head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"modified\"\r\n\r\n"
                f"{st.st_mtime_ns // 1_000_000}\r\n"
                f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"{quote(rel, safe='')}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode()
        parts.append((head, path, st.st_size))
        length += len(head) + st.st_size + 2  # the CRLF after the file's bytes
    return parts, length + len(f"--{BOUNDARY}--\r\n")


def send_body(sock: socket.socket, parts: list[tuple[bytes, Path, int]]) -> int:
    """Writes the body: part headers and small files through one SEND_BUFFER, larger
    files with sendfile(). Returns the bytes sent."""
    buffer, sent = bytearray(), 0

    def flush() -> None:
        nonlocal sent
        sock.sendall(buffer)
        sent += len(buffer)
        buffer.clear()

    for head, path, size in parts:
        buffer += head
        with open(path, "rb") as f:
            if size > SEND_BUFFER:
                flush()
                sent += sock.sendfile(f)
            else:
                buffer += f.read()
        buffer += b"\r\n"
        if len(buffer) >= SEND_BUFFER:
            flush()
    buffer += f"--{BOUNDARY}--\r\n".encode()
    flush()
    return sent


def post_upload(node: NodeProcess, token: str, root: Path, rels: list[str],
                timeout: float) -> tuple[int, dict, Measure]:
    """Sends ``rels`` under ``root`` to the node's `POST /upload`: the answer's status
    and JSON, and the client's Measure (this process's CPU and peak RSS meanwhile)."""
    parts, length = multipart_parts(root, rels)
    with contextlib.suppress(OSError):  # resets VmHWM: the peak is this upload's
        Path("/proc/self/clear_refs").write_text("5")
    usage0, started = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=timeout)
    try:
        conn.putrequest("POST", "/upload", skip_accept_encoding=True)
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
        conn.putheader("Content-Length", str(length))
        conn.endheaders()
        try:
            sent, cut_off = send_body(conn.sock, parts), None
        except (BrokenPipeError, ConnectionResetError) as e:
            sent, cut_off = length, e  # the node may have answered early: read it
        sent_s = time.monotonic() - started
        try:
            reply = conn.getresponse()
            body = reply.read()
        except (OSError, http.client.HTTPException) as e:
            raise BenchFailure(f"POST /upload: no answer ({cut_off or e})") from e
    finally:
        conn.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime
    m = Measure("POST /upload", time.monotonic() - started, cpu,
                memory_kib(os.getpid()).get("VmHWM", 0), "", sent_s=sent_s)
    if sent != length:
        raise BenchFailure(f"sent {sent:,} bytes, announced {length:,}: a file changed")
    try:
        return reply.status, json.loads(body), m
    except ValueError:
        return reply.status, {"body": body[:300].decode(errors="replace")}, m


# --- checking files through the node ---------------------------------------------------

def fetch_sha256(url: str, timeout: float) -> tuple[int, int, str]:
    """GET ``url``, hashed as it streams: (status, bytes, SHA-256)."""
    h, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            while chunk := reply.read(MIB):
                h.update(chunk)
                size += len(chunk)
            return reply.status, size, h.hexdigest()
    except urllib.error.HTTPError as e:
        return e.code, 0, ""


def check_files(node: NodeProcess, bundle: str, tree: TreeFacts, rels: list[str]) -> list[str]:
    """Fetches each of ``rels`` from the bundle on ``node``; the files that differ."""
    problems = []
    for rel in rels:
        status, size, digest = fetch_sha256(f"{node.url}{bundle}{quote(rel)}", 120)
        if status != 200 or (size, digest) != tree.files[rel]:
            problems.append(f"{rel}: status {status}, {size:,} bytes, sha256 {digest[:12]}")
    return problems


def sample(tree: TreeFacts, smoke: bool) -> list[str]:
    """What is fetched back: the whole tree in smoke mode, else SAMPLE small files and
    every large one."""
    if smoke:
        return sorted(tree.files)
    large = sorted(r for r in tree.files if r.startswith("large/"))
    small = sorted(r for r in tree.files if not r.startswith("large/"))
    return sorted(random.Random(SEED).sample(small, min(SAMPLE, len(small)))) + large


# --- the run ---------------------------------------------------------------------------

class Bench:
    """One run: the tree, the nodes, and what was measured."""

    def __init__(self, plan: Plan, binary: Path, run_dir: Path):
        self.plan = plan
        self.binary = binary
        self.run_dir = run_dir
        self.failures: list[str] = []
        self.measures: list[Measure] = []
        self.tree: TreeFacts | None = None

    @contextlib.contextmanager
    def node(self, name: str) -> Iterator[NodeProcess]:
        """A node on a fresh store, stopped on the way out (a failed stop is recorded)."""
        node = start_node(self.binary, self.run_dir / f"store-{name}", self.run_dir / name,
                          self.plan.node_log, quota=str(self.plan.quota()))
        say(f"node {name}: {node.url} (pid {node.pid}, ready in {node.ready_secs:.2f} s)")
        try:
            yield node
            if not node.alive():
                raise BenchFailure(f"node {name} died (status {node.proc.returncode})")
        finally:
            try:
                node.stop()
            except ServerError as e:
                self.failures.append(f"node {name}: {e}")
        if not self.plan.keep:
            shutil.rmtree(self.run_dir / f"store-{name}", ignore_errors=True)

    def step(self, tag: str, send: Callable[[NodeProcess], tuple[Measure, str]]) -> None:
        """Runs ``send`` (which returns its Measure and the bundle path) against a fresh
        node, then checks the files through the bundle. Runs again on another fresh node
        while other processes used more than OTHER_LIMIT cores, up to plan.attempts
        times, and keeps the least disturbed run."""
        best = None
        for attempt in range(1, self.plan.attempts + 1):
            with self.node(f"{tag}-{attempt}") as node:
                start_kib = memory_kib(node.pid)["VmRSS"]
                warm(self.tree.root)
                if self.plan.quiet_wait > 0:
                    waited, other = wait_for_quiet([node.pid], self.plan.quiet_wait)
                    if waited >= 1:
                        say(f"  (waited {waited:.0f} s for other load; now {other:.2f} cores)")
                busy0, cpu0 = machine_busy_seconds(), cpu_seconds(node.pid)
                m, bundle = send(node)
                busy, m.node_cpu_s = machine_busy_seconds() - busy0, cpu_seconds(node.pid) - cpu0
                m.node_hwm_kib, m.node_start_kib = memory_kib(node.pid)["VmHWM"], start_kib
                m.other_cores = max(0.0, busy - m.node_cpu_s - m.cpu_s) / m.seconds
                self.verify(node, bundle, m)
            if best is None or m.other_cores < best.other_cores:
                best = m
            if m.other_cores < OTHER_LIMIT or attempt == self.plan.attempts:
                break
            say(f"  other processes used {m.other_cores:.2f} cores: running again")
        self.measures.append(best)

    def verify(self, node: NodeProcess, bundle: str, m: Measure) -> None:
        """Fetches the sample back through ``bundle``; a file that differs is a failure."""
        rels = sample(self.tree, self.plan.smoke)
        problems = check_files(node, bundle, self.tree, rels)
        checked = sum(self.tree.files[r][0] for r in rels)
        if problems:
            m.check = f"MISMATCH in {len(problems)} of {len(rels)} files"
            self.failures.append(f"{m.name}: {len(problems)} files differ: {problems[:3]}")
        else:
            m.check = f"{len(rels):,} files ({checked / 1e6:,.1f} MB) identical by SHA-256"
        sent = f" (body sent after {m.sent_s:.2f} s)" if m.sent_s is not None else ""
        say(f"  {m.name}: {m.seconds:.2f} s{sent}, {m.mb_s(self.tree.total_bytes):,.0f} MB/s, "
            f"client CPU {m.cpu_s:.2f} s, node CPU {m.node_cpu_s:.2f} s, node VmHWM "
            f"{m.node_hwm_kib / 1024:,.0f} MiB, other {m.other_cores:.2f} cores; {m.note}; "
            f"check: {m.check}")

    def run(self) -> None:
        plan, root = self.plan, self.run_dir / "tree"
        say(f"writing the tree: {plan.shape.small_files:,} small files + "
            f"{plan.shape.large_files} large, ~{plan.shape.total_bytes / MIB:,.0f} MiB")
        self.tree = make_tree(root, plan.shape, seed=SEED)
        os.sync()
        say(f"  {len(self.tree.files):,} files, {self.tree.total_bytes / 1e6:,.1f} MB; large "
            f"{', '.join(f'{s / MIB:.1f}' for s in self.tree.large_sizes)} MiB")
        self.step("upload", self.upload)
        self.step("put", self.put)

    def upload(self, node: NodeProcess) -> tuple[Measure, str]:
        tree = self.tree
        token = (node.store / "admin.token").read_text().strip()
        status, a, m = post_upload(node, token, tree.root, sorted(tree.files),
                                   self.plan.timeout)
        if (status, a.get("files"), a.get("bytes")) != (201, len(tree.files), tree.total_bytes):
            raise BenchFailure(f"POST /upload answered {status} {a}; expected 201 with "
                               f"files {len(tree.files)}, bytes {tree.total_bytes}")
        m.note = (f"answer: {a.get('blocks')} blocks new, {a.get('already_held')} already "
                  f"held; node: {node_info(node)}")
        return m, a.get("url", "")

    def put(self, node: NodeProcess) -> tuple[Measure, str]:
        timed: Timed = run_timed(
            [str(self.binary), "--server", node.url, "put", str(self.tree.root)],
            self.run_dir / "cli", f"put-{node.pid}", self.plan.timeout,
            dict(os.environ, LIBERNET_LOG="warn"))
        printed = timed.stdout.strip().splitlines()
        url = printed[-1].strip() if printed else ""
        bundle = url[len(node_base(url)):] if "://" in url else url
        if not bundle.startswith("/sha256/") or not bundle.endswith("/"):
            raise BenchFailure(f"put printed {timed.stdout[:300]!r}, not a bundle URL")
        note = f"{put_summary(timed)}; node: {node_info(node)}"
        return Measure("libernet put", timed.seconds, timed.cpu_s, timed.maxrss_kib,
                       note), bundle


# --- report ----------------------------------------------------------------------------

def find(measures: list[Measure], name: str) -> Measure | None:
    return next((m for m in measures if m.name == name), None)


def table(bench: Bench) -> str:
    headers = ["client", "seconds", "MB/s", "x put time", "body sent after s", "client CPU s",
               "client peak RSS", "node CPU s (cores)", "node VmHWM", "VmHWM / largest file",
               "other CPU", "check", "notes"]
    put, total = find(bench.measures, "libernet put"), bench.tree.total_bytes
    largest = max(bench.tree.large_sizes)
    lines = [[
        m.name, f"{m.seconds:.2f}", f"{m.mb_s(total):,.0f}",
        f"{m.seconds / put.seconds:.2f}x" if put else "",
        f"{m.sent_s:.2f}" if m.sent_s is not None else "",
        f"{m.cpu_s:.2f}", f"{m.maxrss_kib / 1024:,.0f} MiB",
        f"{m.node_cpu_s:.2f} ({m.node_cpu_s / m.seconds:.2f})",
        f"{m.node_hwm_kib / 1024:,.0f} MiB (start {m.node_start_kib / 1024:,.0f})",
        f"{m.node_hwm_kib * 1024 / largest:.2f}", f"{m.other_cores:.2f}", m.check, m.note,
    ] for m in bench.measures]
    return render_table(headers, lines)


def memory_line(bench: Bench) -> str:
    """The upload's node memory against the upload's size, spelled out."""
    m, tree = find(bench.measures, "POST /upload"), bench.tree
    if m is None:
        return ""
    return (f"node peak RSS during the upload: {m.node_hwm_kib / 1024:,.0f} MiB, "
            f"{(m.node_hwm_kib - m.node_start_kib) / 1024:,.0f} MiB above its start, for "
            f"{tree.total_bytes / MIB:,.0f} MiB uploaded (largest file "
            f"{max(tree.large_sizes) / MIB:,.0f} MiB, small files {tree.small_bytes / MIB:,.1f} "
            f"MiB in all, sent last); the client had sent the whole body "
            f"{m.seconds - m.sent_s:.2f} s before the node answered")


def verdicts(measures: list[Measure]) -> list[Verdict]:
    upload, put = find(measures, "POST /upload"), find(measures, "libernet put")
    out = []
    if upload and put:
        ratio = upload.seconds / put.seconds
        out.append(Verdict(f"POST /upload time <= {UPLOAD_VS_PUT:g}x `libernet put`'s "
                           "(a measurement: a MISS is reported, not failed)",
                           f"{upload.seconds:.2f} s vs {put.seconds:.2f} s = {ratio:.2f}x",
                           ratio <= UPLOAD_VS_PUT))
    if upload:
        out.append(Verdict(f"node peak RSS during POST /upload < {NODE_PEAK_LIMIT // MIB} MiB",
                           f"{upload.node_hwm_kib / 1024:,.0f} MiB",
                           upload.node_hwm_kib * 1024 < NODE_PEAK_LIMIT))
    return out


def settings_lines(plan: Plan, bench: Bench) -> list[str]:
    s, tree = plan.shape, bench.tree
    lines = [f"mode: {'smoke' if plan.smoke else 'full'}"]
    if tree:
        lines.append(
            f"tree: {len(tree.files):,} files, {tree.total_bytes:,} bytes "
            f"({tree.total_bytes / MIB:,.1f} MiB): {s.small_files:,} small files of "
            f"{s.small_min}-{s.small_max:,} bytes (uniform; half English-like text, half "
            f"random; {tree.small_bytes / MIB:,.1f} MiB) in nested directories, "
            f"{len(tree.large_sizes)} large random files of "
            f"{', '.join(f'{x / MIB:.1f}' for x in tree.large_sizes)} MiB; "
            f"bench_bundle.make_tree, seed {SEED}")
    lines += [
        "upload: this process (http.client) POSTs one multipart/form-data body with a "
        "Content-Length and the admin token: per file, in sorted path order (large/ first), "
        "a `modified` part (mtime in ms), then a `file` part named by its percent-encoded "
        f"path; small files and headers go through one {SEND_BUFFER // MIB} MiB buffer, "
        "larger files through sendfile(). Client CPU: getrusage() of this process; client "
        "peak RSS: this whole process's VmHWM, reset right before the upload",
        "put: `libernet --server URL put DIR` (LIBERNET_LOG=warn); client CPU from "
        "wait4(), peak RSS from GNU time's %M",
        f"node: a release node on a fresh store for each run (`serve --listen 127.0.0.1:0 "
        f"--quota {plan.quota()}`, LIBERNET_LOG={plan.node_log}), started right before it, "
        "so VmHWM is the run's peak (start = VmRSS after start-up); node CPU from /proc; "
        "other CPU = the machine's busy cores minus the node's and the client's",
        "check: files fetched back through `<node><bundle URL><percent-encoded path>`, "
        "compared by size and SHA-256: "
        + ("the whole tree" if plan.smoke else f"{SAMPLE} small files and every large one")
        + "; the upload's answer must be 201 with `files` and `bytes` equal to the tree's",
        "before each run: the tree read whole (warm page cache), then a wait of up to "
        f"{plan.quiet_wait:g} s for other processes to use < 0.2 cores; a run during which "
        f"they used > {OTHER_LIMIT} cores is repeated on a fresh node ({plan.attempts} "
        "runs at most) and the least disturbed one is kept",
        "MB/s: the tree's bytes (1 MB = 10^6 bytes) over the wall time",
    ]
    return lines


def report(plan: Plan, machine: list[tuple[str, str]], command: str, bench: Bench) -> str:
    out = ["### Machine", ""] + [f"- {k}: {v}" for k, v in machine]
    out += ["", "### Command", "", "```", command, "```", "", "### Settings", ""]
    out += [f"- {s}" for s in settings_lines(plan, bench)]
    if bench.measures:
        out += ["", "### Results", "", table(bench), "", memory_line(bench)]
    out += ["", "### Targets", "", "```"] + [v.line() for v in verdicts(bench.measures)]
    out += ["```"]
    if bench.failures:
        out += ["", "### Failures", ""]
        out += ["- " + " / ".join(x.strip() for x in f.splitlines() if x.strip())
                for f in bench.failures]
    return "\n".join(out) + "\n"


# --- main ------------------------------------------------------------------------------

def run(plan: Plan) -> int:
    command = shlex.join(sys.orig_argv)
    plan.data_dir.mkdir(parents=True, exist_ok=True)
    say(f"command: {command}")
    need = 3.5 * plan.shape.total_bytes
    free = shutil.disk_usage(plan.data_dir).free
    if free < need:
        say(f"FAILED: {plan.data_dir} has {free / 1e9:.1f} GB free, needs ~{need / 1e9:.1f} GB")
        return 1
    try:
        built = build_node() if plan.build else target_dir() / "release" / "libernet"
    except (BenchFailure, OSError) as e:
        say(f"FAILED: {e}")
        return 1
    if not built.is_file():
        say(f"FAILED: no libernet binary at {built}")
        return 1
    run_dir = plan.data_dir / f"run-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    run_dir.mkdir(parents=True)
    say(f"data: {run_dir}")
    binary = run_dir / "libernet"
    shutil.copy2(built, binary)
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()[:16]
    machine = [(k, v) for k, v in describe_machine(plan.data_dir) if k not in ("nginx", "wrk")]
    machine.append(("libernet binary", f"{built} (sha256 {digest}..., copied for the run)"))
    print("machine:\n" + "\n".join(f"  {k}: {v}" for k, v in machine))

    bench = Bench(plan, binary, run_dir)
    try:
        bench.run()
    except (BenchFailure, ServerError, OSError) as e:
        bench.failures.append(f"{type(e).__name__}: {e}")
    finally:
        if not plan.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    text = report(plan, machine, command, bench)
    title = (f"## Upload: POST /upload against libernet put "
             f"({'smoke' if plan.smoke else 'full'} run, {dict(machine)['date']})")
    return publish(text, plan.markdown, title, bench.failures, say)


def main(argv: list[str] | None = None) -> int:
    # SIGTERM unwinds like Ctrl-C, so the nodes are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run(make_plan(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
