"""The two servers bench_node.py measures: a libernet node and an nginx serving the same
block files at the same URLs. Both are started as children of this process, on
127.0.0.1 only, and stopped by their own pid (never by name).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

#: The line the node prints on stdout once its index is built and it listens.
_SERVING_LINE = re.compile(r"^libernet: serving http://127\.0\.0\.1:(\d+) ")

#: Seconds between polls while waiting for a server.
_POLL = 0.005

#: nginx's temp directories; all are put under the run's prefix.
_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class ServerError(RuntimeError):
    """A server failed to start, died, or did not stop cleanly."""


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url``; returns (status, body), also for 4xx/5xx answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle (user, nice, system, irq, softirq, steal)
    since boot, from the first line of /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def free_port() -> int:
    """A port that was free a moment ago: bind port 0 on 127.0.0.1, read it, close."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, grace: float, sig: int = signal.SIGTERM) -> int | None:
    """Sends ``sig`` to ``proc`` and waits up to ``grace`` s, then kills its process
    group (it was started in its own session, so the group is exactly its own
    processes). Returns its exit code, or None when it had to be killed."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    return None


@dataclass
class NodeProcess:
    """A running ``libernet serve`` and what its start-up took."""

    proc: subprocess.Popen
    port: int
    store: Path
    #: Seconds from spawn to the "serving" line on stdout.
    line_secs: float
    #: Seconds from spawn to the first successful ``GET /node``.
    ready_secs: float

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """Processes whose CPU time counts as the node's."""
        return [self.proc.pid]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, then wait for the drain (at most 10 s in the node) plus margin."""
        code = _stop(self.proc, grace=20.0)
        if code is None:
            raise ServerError(f"node {self.pid} did not stop within 20 s of SIGTERM; killed")
        if code != 0:
            raise ServerError(f"node {self.pid} exited with status {code} on SIGTERM")


def start_node(
    binary: Path,
    store: Path,
    run_dir: Path,
    log_level: str,
    quota: str | None = None,
    config: Path | None = None,
    timeout: float = 120.0,
) -> NodeProcess:
    """Spawns a node on 127.0.0.1:0 and waits until ``GET /node`` answers 200.

    stdout and stderr go to files in ``run_dir``; the port is read from the stdout line.
    Raises ServerError (after stopping the node) if it exits or is not ready in time.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    out_path = run_dir / "node.stdout"
    cmd = [str(binary), "serve", "--store", str(store), "--listen", "127.0.0.1:0"]
    if quota:
        cmd += ["--quota", quota]
    if config:
        cmd += ["--config", str(config)]
    env = dict(os.environ, LIBERNET_LOG=log_level)
    with open(out_path, "wb") as out, open(run_dir / "node.stderr", "ab") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )
    try:
        port, line_secs = _wait_for_serving_line(proc, out_path, started, timeout)
        node = NodeProcess(proc, port, store, line_secs, 0.0)
        node.ready_secs = _wait_until_answers(proc, f"{node.url}/node", started, timeout)
        return node
    except BaseException:
        _stop(proc, grace=5.0)
        raise


def _wait_for_serving_line(
    proc: subprocess.Popen, out_path: Path, started: float, timeout: float
) -> tuple[int, float]:
    """Polls the node's stdout file for the serving line; returns (port, seconds)."""
    deadline = started + timeout
    while time.monotonic() < deadline:
        text = out_path.read_text(errors="replace")
        for line in text.splitlines():
            match = _SERVING_LINE.match(line)
            if match:
                return int(match.group(1)), time.monotonic() - started
        if proc.poll() is not None:
            raise ServerError(f"node exited with status {proc.returncode} before serving")
        time.sleep(_POLL)
    raise ServerError(f"node printed no serving line within {timeout:.0f} s")


def _wait_until_answers(
    proc: subprocess.Popen, url: str, started: float, timeout: float
) -> float:
    """Polls ``url`` until it answers 200; returns seconds since ``started``."""
    deadline = started + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"server exited with status {proc.returncode} while starting")
        try:
            status, _ = http_get(url, timeout=max(0.1, deadline - time.monotonic()))
            if status == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(_POLL)
    raise ServerError(f"{url} did not answer 200 within {timeout:.0f} s")


@dataclass
class NginxProcess:
    """A running nginx (master in the foreground, two workers)."""

    proc: subprocess.Popen
    port: int
    prefix: Path
    worker_pids: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """Master and workers: their CPU time counts as nginx's."""
        return [self.proc.pid, *self.worker_pids]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGQUIT (graceful shutdown), then kill the group if it lingers."""
        code = _stop(self.proc, grace=10.0, sig=signal.SIGQUIT)
        if code is None:
            raise ServerError(f"nginx {self.proc.pid} did not stop within 10 s; killed")


def _nginx_conf(prefix: Path, port: int, access_log: bool, what: str, server_body: str) -> str:
    """An nginx.conf with the settings every benchmark compares against (sendfile,
    2 workers, keep-alive) and ``server_body`` inside its one server block.

    Every path nginx writes (pid, logs, temp dirs) is under ``prefix``; when run as root
    the workers keep the current user instead of switching to an unprivileged one, so
    they can read what the benchmark wrote.
    """
    user_line = ""
    if os.geteuid() == 0:
        user = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(os.getegid()).gr_name
        user_line = f"user {user} {group};"
    temp_dirs = "\n".join(
        f"    {name}_temp_path {prefix / 'temp' / name};"
        for name in _TEMP_DIRS
    )
    log_line = f"access_log {prefix / 'access.log'};" if access_log else "access_log off;"
    return f"""# Generated by tools/bench_servers.py; {what}.
daemon off;
master_process on;
worker_processes 2;
{user_line}
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} warn;

events {{
    worker_connections 1024;
}}

http {{
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    {log_line}
{temp_dirs}

    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
{server_body}
    }}
}}
"""


def nginx_config(prefix: Path, store: Path, port: int, access_log: bool) -> str:
    """An nginx.conf serving ``store``'s block files at ``/sha256/<id>``."""
    blocks = store.resolve() / "blocks"
    body = f"""
        # /sha256/<id> -> blocks/<first 2 hex>/<next 2 hex>/<id>, like the node.
        location ~ "^/sha256/([0-9a-f]{{2}})([0-9a-f]{{2}})([0-9a-f]{{60}})$" {{
            alias {blocks}/$1/$2/$1$2$3;
        }}

        location / {{
            return 404;
        }}"""
    return _nginx_conf(prefix, port, access_log, "serves libernet block files read-only", body)


def plain_nginx_config(prefix: Path, root: Path, port: int, access_log: bool) -> str:
    """An nginx.conf serving the files of ``root`` at ``/<name>``."""
    body = f"        root {root.resolve()};"
    return _nginx_conf(prefix, port, access_log, "serves plain files read-only", body)


def start_nginx(
    nginx: Path, prefix: Path, store: Path, probe_path: str, access_log: bool,
    attempts: int = 3, timeout: float = 10.0,
    config: Callable[[Path, Path, int, bool], str] = nginx_config,
) -> NginxProcess:
    """Starts nginx on a free 127.0.0.1 port and waits until ``probe_path`` answers 200.

    nginx cannot report the port it bound, so a port is picked by binding port 0 and
    closing; if another process takes it meanwhile, the next attempt picks another.
    ``config(prefix, store, port, access_log)`` writes the nginx.conf: by default
    ``nginx_config`` (block files at ``/sha256/<id>``).
    """
    for name in _TEMP_DIRS:
        (prefix / "temp" / name).mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    last_error = ""
    for _ in range(attempts):
        port = free_port()
        conf.write_text(config(prefix, store, port, access_log), encoding="utf-8")
        with open(prefix / "nginx.stderr", "ab") as err:
            started = time.monotonic()
            proc = subprocess.Popen(
                [str(nginx), "-p", f"{prefix}/", "-c", str(conf), "-e", str(prefix / "error.log")],
                stdout=err, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        try:
            _wait_until_answers(proc, f"http://127.0.0.1:{port}{probe_path}", started, timeout)
        except ServerError as e:
            last_error = str(e)
            _stop(proc, grace=5.0, sig=signal.SIGQUIT)
            continue
        server = NginxProcess(proc, port, prefix)
        server.worker_pids = _children(proc.pid)
        return server
    raise ServerError(f"nginx did not start after {attempts} attempts: {last_error}; "
                      f"see {prefix / 'error.log'}")


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (nginx's workers)."""
    kids: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    for task in task_dir.iterdir():
        text = (task / "children").read_text().split()
        kids.extend(int(k) for k in text)
    return kids
