#!/usr/bin/env python3
"""Start, inspect and stop a mesh of libernet nodes on one machine.

As a command:

    python3 tools/mesh.py start 5 --dir /tmp/mesh            # 5 nodes on 127.0.0.1
    python3 tools/mesh.py status --dir /tmp/mesh             # peers and blocks per node
    python3 tools/mesh.py stop --dir /tmp/mesh               # SIGTERM, then SIGKILL
    python3 tools/mesh.py start 4 --dir /tmp/m --netns --rate 100mbit   # needs root

`start` runs N nodes on 127.0.0.1:0, each with its own store and log under DIR; node 0
has no seed, node i > 0 is seeded with node 0 and one random earlier node. It waits
until every node's `/peers` lists all the others, writes DIR/mesh.json (url, id, pid,
store, log per node) and prints the URLs. The nodes keep running after it exits; `stop`
finds them again through mesh.json and stops them by pid (checking first that the pid
is still that node).

As a library (what bench_mesh.py does):

    with Mesh(Path("/tmp/m"), binary, NodeSettings(quota="32MiB")) as mesh:
        mesh.start(20)
        reply = mesh.get(mesh.nodes[3], block_id, wait=5)
        mesh.kill(mesh.nodes[4])

Leaving the `with` block stops every node and deletes every network namespace the mesh
created, also on errors or Ctrl-C.

netns mode puts each node in its own network namespace (`ip netns add`), attached by a
veth pair to a bridge inside a separate hub namespace that the mesh also creates. Nodes
listen on 10.77.0.<i+1>:8042; an optional `tc tbf` qdisc on a node's end of its veth
limits what it sends. Nothing outside the namespaces the mesh creates is touched: the
host's own interfaces, routes and firewall stay as they are. This script reaches the
nodes from threads that joined the hub namespace (setns); commands meant to run beside a
node (curl, the CLI) go through `ip netns exec`. Needs root.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

sys.dont_write_bytecode = True

REPO = Path(__file__).resolve().parent.parent

#: The line a node prints on stdout once it listens.
SERVING_LINE = re.compile(r"^libernet: serving (http://\S+) \(node ([0-9a-f]{64}), store ")

#: Name of the file `start` writes and `stop` / `status` read.
MESH_FILE = "mesh.json"

#: Port every node listens on in netns mode (each namespace has its own ports).
NETNS_PORT = 8042

#: First three octets of the addresses in netns mode; the hub's bridge is .254.
NETNS_SUBNET = "10.77.0"

#: Seconds a node gets to print its serving line and answer GET /node.
START_TIMEOUT = 60.0

#: Seconds a node gets to exit after SIGTERM (it drains for at most 10 s) before SIGKILL.
STOP_GRACE = 20.0

CLONE_NEWNET = 0x40000000


class MeshError(RuntimeError):
    """A node did not start, died, or the mesh did not form in time."""


# --- settings and records --------------------------------------------------------------

@dataclass
class NodeSettings:
    """Flags every node of a mesh gets (None: the node's own default)."""

    quota: str | None = "64MiB"
    gossip: float | None = 2.0
    push: float | None = 5.0
    half_life: float | None = None
    wait: float | None = None
    scrub_rate: int | None = 0
    hot_cache: str | None = None
    max_connections: int | None = None
    repair: float | None = None
    custody_share: int | None = None
    log_level: str = "warn"

    def config_text(self) -> str:
        """The TOML file for settings that have no flag."""
        lines = ["# written by tools/mesh.py"]
        if self.scrub_rate is not None:
            lines.append(f"scrub_rate = {int(self.scrub_rate)}")
        if self.hot_cache is not None:
            lines.append(f'hot_cache = "{self.hot_cache}"')
        if self.max_connections is not None:
            lines.append(f"max_connections = {int(self.max_connections)}")
        return "\n".join(lines) + "\n"

    def flags(self) -> list[str]:
        out: list[str] = []
        for flag, value in (("--quota", self.quota), ("--gossip-interval", self.gossip),
                            ("--push-interval", self.push), ("--half-life", self.half_life),
                            ("--wait", self.wait), ("--repair-interval", self.repair),
                            ("--custody-share", self.custody_share)):
            if value is not None:
                out += [flag, str(value)]
        return out


@dataclass
class Node:
    """One node of the mesh. `proc` is set only in the process that started it."""

    index: int
    name: str
    dir: str
    store: str
    log: str
    url: str = ""
    id: str = ""
    pid: int = 0
    seeds: list[str] = field(default_factory=list)
    netns: str | None = None
    address: str = "127.0.0.1"
    rate: str | None = None
    state: str = "new"  # running, stopped, killed, failed
    proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    def record(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "proc"}

    @property
    def running(self) -> bool:
        return self.state == "running"

    def exited(self) -> bool:
        """Whether the process is gone (reaped, or a zombie of another parent)."""
        if self.proc is not None:
            return self.proc.poll() is not None
        return not pid_alive(self.pid)

    def admin_token(self) -> str:
        return (Path(self.store) / "admin.token").read_text().strip()


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pid_is_node(pid: int, store: str) -> bool:
    """Whether `pid` is still a `libernet serve` over `store` (pids get reused)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"serve" in args and store.encode() in args


# --- HTTP ------------------------------------------------------------------------------

@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    @property
    def hops(self) -> int | None:
        value = self.headers.get("libernet-hops")
        return int(value) if value is not None and value.isdigit() else None

    def json(self):
        return json.loads(self.body)


_local = threading.local()

#: Errors after which a kept-alive connection is opened again and the request resent
#: once (the node may have closed an idle connection).
_STALE = (http.client.RemoteDisconnected, http.client.BadStatusLine, BrokenPipeError,
          ConnectionResetError, ConnectionAbortedError)


def request(url: str, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 30.0) -> Reply:
    """One HTTP request over a kept-alive connection of the calling thread (one per
    host:port). Never uses a proxy. Raises OSError when the node cannot be reached."""
    parts = urllib.parse.urlsplit(url)
    key = (parts.hostname, parts.port or 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    pool: dict = getattr(_local, "pool", None) or {}
    _local.pool = pool
    for attempt in (0, 1):
        conn = pool.get(key)
        fresh = conn is None
        if fresh:
            conn = http.client.HTTPConnection(key[0], key[1], timeout=timeout)
            pool[key] = conn
        elif conn.sock is not None:
            conn.sock.settimeout(timeout)
        started = time.monotonic()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            answer = conn.getresponse()
            data = answer.read()
        except _STALE:
            conn.close()
            pool.pop(key, None)
            if fresh or attempt:
                raise
            continue
        except BaseException:
            conn.close()
            pool.pop(key, None)
            raise
        seconds = time.monotonic() - started
        got = {k.lower(): v for k, v in answer.getheaders()}
        if got.get("connection", "").lower() == "close":
            conn.close()
            pool.pop(key, None)
        return Reply(answer.status, got, data, seconds)
    raise AssertionError("unreachable")


def close_connections() -> None:
    """Closes the calling thread's kept-alive connections."""
    for conn in (getattr(_local, "pool", None) or {}).values():
        conn.close()
    _local.pool = {}


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text to {"name{labels}": value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[name] = float(value)
    return out


# --- network namespaces ----------------------------------------------------------------

def netns_unavailable() -> str | None:
    """Why netns mode cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "netns mode needs root (ip netns add, tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"netns mode needs `{tool}` (iproute2)"
    return None


def _run(cmd: list[str], timeout: float = 20.0) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise MeshError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")


def _enter_netns(name: str) -> None:
    """Moves the calling thread into network namespace `name` (sockets it opens from
    now on live there). Used as a thread-pool initializer."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


class Netns:
    """A hub namespace with a bridge, and one namespace per node linked to it."""

    def __init__(self, tag: str, http_threads: int = 8):
        self.tag = tag
        self.hub = f"lbm{tag}-hub"
        self.created: list[str] = []
        self.http_threads = http_threads
        self.executor: ThreadPoolExecutor | None = None

    @classmethod
    def existing(cls, hub: str, created: list[str], http_threads: int = 8) -> Netns:
        """The namespaces of a mesh started by another process (from mesh.json)."""
        net = cls(hub.removeprefix("lbm").removesuffix("-hub"), http_threads)
        net.hub, net.created = hub, list(created)
        if Path(f"/run/netns/{hub}").exists():
            net._start_executor()
        return net

    def _start_executor(self) -> None:
        self.executor = ThreadPoolExecutor(self.http_threads, thread_name_prefix="netns-http",
                                           initializer=_enter_netns, initargs=(self.hub,))

    def setup(self) -> None:
        reason = netns_unavailable()
        if reason:
            raise MeshError(reason)
        self._add(self.hub)
        hub = ["ip", "-n", self.hub]
        _run(hub + ["link", "set", "lo", "up"])
        _run(hub + ["link", "add", "br0", "type", "bridge"])
        _run(hub + ["addr", "add", f"{NETNS_SUBNET}.254/24", "dev", "br0"])
        _run(hub + ["link", "set", "br0", "up"])
        self._start_executor()

    def _add(self, name: str) -> None:
        _run(["ip", "netns", "add", name])
        self.created.append(name)

    def node_ns(self, index: int) -> str:
        return f"lbm{self.tag}-n{index}"

    def address(self, index: int) -> str:
        if not 0 <= index < 250:
            raise MeshError("netns mode has room for 250 nodes")
        return f"{NETNS_SUBNET}.{index + 1}"

    def add_node(self, index: int, rate: str | None, burst: str, latency: str) -> str:
        """Creates the node's namespace, its veth pair and (with `rate`) its tbf."""
        ns = self.node_ns(index)
        self._add(ns)
        hub_end = f"v{index}"
        _run(["ip", "-n", self.hub, "link", "add", hub_end, "type", "veth",
              "peer", "name", "eth0", "netns", ns])
        _run(["ip", "-n", self.hub, "link", "set", hub_end, "master", "br0"])
        _run(["ip", "-n", self.hub, "link", "set", hub_end, "up"])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        _run(["ip", "-n", ns, "addr", "add", f"{self.address(index)}/24", "dev", "eth0"])
        _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        if rate:
            _run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root",
                  "tbf", "rate", rate, "burst", burst, "latency", latency])
        return ns

    def call(self, fn: Callable, *args):
        """Runs fn(*args) on a thread inside the hub namespace."""
        if self.executor is None:
            raise MeshError("the hub namespace is not set up")
        return self.executor.submit(fn, *args).result()

    def teardown(self) -> list[str]:
        """Deletes every namespace created (nodes must be stopped first). Returns
        problems, if any."""
        if self.executor is not None:
            self.executor.submit(close_connections)
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None
        problems = []
        for name in reversed(self.created):
            done = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True,
                                  timeout=20)
            if done.returncode != 0 and "No such file" not in done.stderr:
                problems.append(f"ip netns del {name}: {done.stderr.strip()}")
        self.created = []
        return problems


def delete_namespaces(names: Iterable[str]) -> None:
    for name in names:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)


# --- the mesh --------------------------------------------------------------------------

def default_binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "release" / "libernet"


class Mesh:
    """Nodes started by this process (or found again in mesh.json)."""

    def __init__(self, base: Path, binary: Path | None = None,
                 settings: NodeSettings | None = None, netns: bool = False,
                 rate: str | None = None, burst: str = "256kb", latency: str = "50ms",
                 seed: int | None = None, http_threads: int = 8):
        self.base = Path(base).resolve()
        self.binary = Path(binary or default_binary()).resolve()
        self.settings = settings or NodeSettings()
        self.rate, self.burst, self.latency = rate, burst, latency
        self.rng = random.Random(seed)
        self.nodes: list[Node] = []
        self.net: Netns | None = None
        self._netns = netns
        self._http_threads = http_threads
        self._stopped = False

    # context manager: always stop

    def __enter__(self) -> Mesh:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # starting

    def _ensure_netns(self) -> None:
        if self._netns and self.net is None:
            self.net = Netns(f"{os.getpid() % 100000}{self.rng.randrange(100):02d}",
                             self._http_threads)
            try:
                self.net.setup()
            except BaseException:
                self.net.teardown()
                raise

    def start(self, count: int, timeout: float = 60.0) -> list[Node]:
        """Starts `count` nodes (node 0 unseeded; node i seeded with node 0 and one
        random earlier node) and waits until each lists all the others as peers."""
        self.base.mkdir(parents=True, exist_ok=True)
        started: list[Node] = []
        for i in range(count):
            seeds = []
            if started:
                seeds.append(started[0].url)
                if len(started) > 1:
                    seeds.append(self.rng.choice(started[1:]).url)
            started.append(self.add_node(seeds=seeds, rate=self.rate))
        self.wait_converged(started, timeout)
        return started

    def add_node(self, seeds: Iterable[str] = (), rate: str | None = None,
                 settings: NodeSettings | None = None, name: str | None = None,
                 store: Path | None = None) -> Node:
        """Starts one more node and waits until it answers GET /node."""
        self._ensure_netns()
        settings = settings or self.settings
        index = len(self.nodes)
        name = name or f"node{index:02d}"
        node_dir = self.base / name
        node_dir.mkdir(parents=True, exist_ok=True)
        node = Node(index=index, name=name, dir=str(node_dir),
                    store=str(store or node_dir / "store"), log=str(node_dir / "node.log"),
                    seeds=list(seeds), rate=rate)
        self.nodes.append(node)
        config = node_dir / "node.toml"
        config.write_text(settings.config_text())
        cmd = [str(self.binary), "serve", "--store", node.store, "--config", str(config),
               *settings.flags()]
        if self.net is not None:
            node.netns = self.net.add_node(index, rate, self.burst, self.latency)
            node.address = self.net.address(index)
            url = f"http://{node.address}:{NETNS_PORT}"
            cmd = ["ip", "netns", "exec", node.netns, *cmd,
                   "--listen", f"{node.address}:{NETNS_PORT}", "--url", url]
        else:
            cmd += ["--listen", "127.0.0.1:0"]
        for seed in node.seeds:
            cmd += ["--peer", seed]
        out_path = node_dir / "node.out"
        env = dict(os.environ, LIBERNET_LOG=settings.log_level)
        with open(out_path, "wb") as out, open(node.log, "ab") as err:
            node.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)
        node.pid = node.proc.pid
        node.state = "running"
        (node_dir / "command").write_text(" ".join(cmd) + "\n")
        try:
            self._wait_serving(node, out_path)
            self._wait_answers(node)
        except BaseException:
            self._stop_one(node, grace=5.0)
            node.state = "failed"
            raise
        return node

    def _wait_serving(self, node: Node, out_path: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for line in out_path.read_text(errors="replace").splitlines():
                m = SERVING_LINE.match(line)
                if m:
                    node.url, node.id = m.group(1), m.group(2)
                    return
            if node.exited():
                raise MeshError(f"{node.name} exited with {node.proc.returncode} before "
                                f"serving; see {node.log}")
            time.sleep(0.01)
        raise MeshError(f"{node.name} printed no serving line in {START_TIMEOUT:.0f} s")

    def _wait_answers(self, node: Node) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            if node.exited():
                raise MeshError(f"{node.name} exited while starting; see {node.log}")
            try:
                if self.http(node, "/node", timeout=2).status == 200:
                    return
            except OSError as e:
                last = str(e)
            time.sleep(0.02)
        raise MeshError(f"{node.name} did not answer GET /node in {START_TIMEOUT:.0f} s "
                        f"({last})")

    def wait_converged(self, nodes: list[Node] | None = None, timeout: float = 60.0) -> float:
        """Waits until each of `nodes` (default: every running node) lists all the others
        in `/peers`. Returns the seconds it took; raises MeshError on timeout."""
        group = [n for n in (nodes or self.nodes) if n.running]
        ids = {n.id for n in group}
        started = time.monotonic()
        deadline = started + timeout
        missing: dict[str, int] = {}
        while True:
            missing = {}
            for node in group:
                if node.exited():
                    raise MeshError(f"{node.name} died; see {node.log}")
                try:
                    known = {p["id"] for p in self.peers(node)["peers"]}
                except (OSError, ValueError, KeyError):
                    known = set()
                lacking = len(ids - {node.id} - known)
                if lacking:
                    missing[node.name] = lacking
            if not missing:
                return time.monotonic() - started
            if time.monotonic() > deadline:
                raise MeshError(f"the mesh did not form in {timeout:.0f} s; peers missing: "
                                + ", ".join(f"{k}: {v}" for k, v in sorted(missing.items())))
            time.sleep(0.25)

    # stopping

    def kill(self, node: Node) -> None:
        """SIGKILL, no drain: the node vanishes as after a crash."""
        if node.running and not node.exited():
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, signal.SIGKILL)
            self._reap(node, 10.0)
        node.state = "killed"

    def stop_node(self, node: Node, grace: float = STOP_GRACE) -> int | None:
        """SIGTERM and wait; SIGKILL after `grace`. Returns the exit status (None when
        it had to be killed or is not a child)."""
        code = self._stop_one(node, grace)
        node.state = "stopped"
        return code

    def _stop_one(self, node: Node, grace: float) -> int | None:
        if node.exited():
            return node.proc.returncode if node.proc else None
        if node.proc is None and not pid_is_node(node.pid, node.store):
            return None  # not ours any more
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.pid, signal.SIGTERM)
        if self._reap(node, grace):
            return node.proc.returncode if node.proc else 0
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.pid, signal.SIGKILL)
        self._reap(node, 10.0)
        return None

    def _reap(self, node: Node, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if node.exited():
                return True
            time.sleep(0.02)
        return node.exited()

    def stop(self, grace: float = STOP_GRACE) -> list[str]:
        """Stops every node (SIGTERM to all, then waits; SIGKILL after `grace`) and
        deletes the namespaces. Returns problems (unclean exits); idempotent."""
        problems: list[str] = []
        live = [n for n in self.nodes if n.state == "running" and not n.exited()]
        for node in live:
            if node.proc is None and not pid_is_node(node.pid, node.store):
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for node in live:
            if not self._reap(node, max(0.1, deadline - time.monotonic())):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.pid, signal.SIGKILL)
                self._reap(node, 10.0)
                problems.append(f"{node.name} (pid {node.pid}) ignored SIGTERM for "
                                f"{grace:.0f} s; killed")
            elif node.proc is not None and node.proc.returncode not in (0, None):
                problems.append(f"{node.name} exited with {node.proc.returncode} on SIGTERM")
            node.state = "stopped"
        for node in self.nodes:
            if node.state == "running" and node.exited():
                code = node.proc.returncode if node.proc else "?"
                problems.append(f"{node.name} died during the run (status {code})")
                node.state = "failed"
        if self.net is not None:
            problems += self.net.teardown()
            self.net = None
        self._stopped = True
        return problems

    # records

    def save(self, path: Path | None = None) -> Path:
        path = path or self.base / MESH_FILE
        data = {
            "binary": str(self.binary),
            "netns": self.net.created if self.net else [],
            "hub": self.net.hub if self.net else None,
            "nodes": [n.record() for n in self.nodes],
        }
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, base: Path) -> Mesh:
        """A mesh from DIR/mesh.json: its nodes (no process handles) and namespaces."""
        data = json.loads((Path(base) / MESH_FILE).read_text())
        mesh = cls(Path(base), Path(data["binary"]))
        mesh.nodes = [Node(**n) for n in data["nodes"]]
        if data.get("hub"):
            mesh._netns = True
            mesh.net = Netns.existing(data["hub"], data["netns"])
        return mesh

    # talking to nodes

    @property
    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.running]

    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def ids(self) -> list[str]:
        return [n.id for n in self.nodes]

    def http(self, node: Node | str, path: str, method: str = "GET", body: bytes | None = None,
             headers: dict[str, str] | None = None, timeout: float = 30.0) -> Reply:
        """A request to a node (or a node URL), from inside the hub in netns mode."""
        base = node if isinstance(node, str) else node.url
        url = base.rstrip("/") + path
        if self.net is not None and self.net.executor is not None:
            return self.net.call(request, url, method, body, headers, timeout)
        return request(url, method, body, headers, timeout)

    def get(self, node: Node | str, block: str, wait: float | None = None,
            timeout: float = 70.0) -> Reply:
        query = f"?wait={wait:g}" if wait is not None else ""
        return self.http(node, f"/sha256/{block}{query}", timeout=timeout)

    def head(self, node: Node | str, block: str, wait: float = 0, timeout: float = 30.0) -> int:
        return self.http(node, f"/sha256/{block}?wait={wait:g}", "HEAD", timeout=timeout).status

    def put(self, node: Node | str, data: bytes, block: str | None = None,
            timeout: float = 60.0) -> int:
        block = block or hashlib.sha256(data).hexdigest()
        return self.http(node, f"/sha256/{block}", "PUT", data,
                         {"Content-Type": "application/octet-stream"}, timeout).status

    def info(self, node: Node | str) -> dict:
        return self.http(node, "/node", timeout=10).json()

    def peers(self, node: Node | str) -> dict:
        return self.http(node, "/peers", timeout=10).json()

    def metrics(self, node: Node | str) -> dict[str, float]:
        return parse_metrics(self.http(node, "/metrics", timeout=10).body.decode())

    def admin(self, node: Node, path: str) -> Reply:
        return self.http(node, path, headers={"Authorization": f"Bearer {node.admin_token()}"},
                         timeout=20)

    def netns_cmd(self, node: Node, cmd: list[str]) -> list[str]:
        """`cmd` prefixed to run beside `node` (inside its namespace in netns mode)."""
        if node.netns:
            return ["ip", "netns", "exec", node.netns, *cmd]
        return cmd


# --- command line ----------------------------------------------------------------------

def cmd_start(args: argparse.Namespace) -> int:
    base = args.dir.resolve()
    if (base / MESH_FILE).exists():
        old = Mesh.load(base)
        if any(n.running and pid_is_node(n.pid, n.store) for n in old.nodes):
            print(f"mesh.py: {base / MESH_FILE} names running nodes; stop them first",
                  file=sys.stderr)
            return 2
    if args.netns:
        reason = netns_unavailable()
        if reason:
            print(f"mesh.py: {reason}", file=sys.stderr)
            return 2
    binary = args.binary or default_binary()
    if not binary.exists():
        print(f"mesh.py: no binary at {binary} (cargo build --release, or --binary)",
              file=sys.stderr)
        return 2
    settings = NodeSettings(quota=args.quota, gossip=args.gossip, push=args.push,
                            half_life=args.half_life, wait=args.wait, log_level=args.log)
    mesh = Mesh(base, binary, settings, netns=args.netns, rate=args.rate, seed=args.seed)
    try:
        started = time.monotonic()
        mesh.start(args.count, timeout=args.timeout)
        path = mesh.save()
    except BaseException as e:
        problems = mesh.stop()
        if isinstance(e, Exception):
            print(f"mesh.py: {e}", file=sys.stderr)
            for p in problems:
                print(f"mesh.py: {p}", file=sys.stderr)
            return 1
        raise
    # The nodes outlive this process; only the namespace helper threads stop here.
    if mesh.net is not None and mesh.net.executor is not None:
        mesh.net.executor.shutdown(wait=False)
    print(f"mesh of {args.count} nodes ready in {time.monotonic() - started:.1f} s; "
          f"wrote {path}", file=sys.stderr)
    for node in mesh.nodes:
        where = f" netns {node.netns}" if node.netns else ""
        print(f"{node.url}  {node.id[:16]}  pid {node.pid}{where}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    base = args.dir.resolve()
    if not (base / MESH_FILE).exists():
        print(f"mesh.py: no {base / MESH_FILE}", file=sys.stderr)
        return 2
    mesh = Mesh.load(base)
    problems = mesh.stop(grace=args.grace)
    mesh.save()
    for p in problems:
        print(f"mesh.py: {p}", file=sys.stderr)
    print(f"stopped {len(mesh.nodes)} nodes", file=sys.stderr)
    return 1 if problems else 0


def cmd_status(args: argparse.Namespace) -> int:
    mesh = Mesh.load(args.dir.resolve())
    rows = []
    bad = 0
    for node in mesh.nodes:
        alive = node.running and pid_alive(node.pid) and pid_is_node(node.pid, node.store)
        if not alive:
            rows.append((node.name, node.url, "-", "-", "-", node.state if not node.running
                         else "gone"))
            continue
        try:
            info = mesh.info(node)
            peers = mesh.peers(node)["peers"]
            healthy = sum(1 for p in peers if p["health"] == "ok")
            store = info["store"]
            rows.append((node.name, node.url, f"{len(peers)} ({healthy} ok)",
                         str(store["blocks"]), f"{store['bytes'] / 2**20:.1f}/"
                         f"{store['quota'] / 2**20:.0f} MiB", "running"))
        except (OSError, ValueError, KeyError) as e:
            bad += 1
            rows.append((node.name, node.url, "?", "?", "?", f"error: {e}"))
    headers = ("node", "url", "peers", "blocks", "stored", "state")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for r in (headers, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    if mesh.net is not None and mesh.net.executor is not None:
        mesh.net.executor.shutdown(wait=False)
    return 1 if bad else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("start", help="start N nodes and wait until they all know each other")
    s.add_argument("count", type=int, metavar="N")
    s.add_argument("--dir", type=Path, required=True, help="stores, logs and mesh.json")
    s.add_argument("--quota", default="64MiB", help="each node's quota [64MiB]")
    s.add_argument("--gossip", type=float, default=2.0, help="gossip interval, s [2]")
    s.add_argument("--push", type=float, default=5.0, help="push interval, s [5]")
    s.add_argument("--half-life", type=float, help="half-life of request heat, s [node's]")
    s.add_argument("--wait", type=float, help="default GET wait, s [node's]")
    s.add_argument("--binary", type=Path, help="libernet binary [$CARGO_TARGET_DIR or "
                   "target/release/libernet]")
    s.add_argument("--log", default="warn", help="LIBERNET_LOG for the nodes [warn]")
    s.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to wait for every node to know all others [60]")
    s.add_argument("--seed", type=int, help="random seed (which earlier node seeds which)")
    s.add_argument("--netns", action="store_true",
                   help="each node in its own network namespace (root)")
    s.add_argument("--rate", help="netns: egress limit per node, e.g. 100mbit (tc tbf)")
    s.set_defaults(func=cmd_start)
    t = sub.add_parser("stop", help="stop the nodes of DIR/mesh.json (and its namespaces)")
    t.add_argument("--dir", type=Path, required=True)
    t.add_argument("--grace", type=float, default=STOP_GRACE,
                   help=f"seconds after SIGTERM before SIGKILL [{STOP_GRACE:g}]")
    t.set_defaults(func=cmd_stop)
    u = sub.add_parser("status", help="peers and blocks of each node of DIR/mesh.json")
    u.add_argument("--dir", type=Path, required=True)
    u.set_defaults(func=cmd_status)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
