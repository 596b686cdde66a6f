"""Running wrk with the Lua scripts of tools/wrk/ and reading what they report.

Each script prints one line, ``LIBERNET-WRK-RESULT {json}``, from its ``done()``:
wrk's summary and latency percentiles plus the status counts the threads kept in
their ``response()`` callback. While wrk runs, the CPU time of the server's processes
and of wrk itself is measured, to tell a CPU-bound server from a starved one.
"""

from __future__ import annotations

import json
import resource
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench_servers import cpu_seconds, machine_busy_seconds

WRK_DIR = Path(__file__).resolve().parent / "wrk"
RESULT_MARKER = "LIBERNET-WRK-RESULT "


class WrkError(RuntimeError):
    """wrk failed, timed out, or printed no result line."""


@dataclass
class WrkResult:
    """What one wrk run measured."""

    duration_s: float
    requests: int
    response_bytes: int
    statuses: dict[int, int]
    latency_us: dict[str, float]
    socket_errors: dict[str, int]
    counters: dict[str, int] = field(default_factory=dict)
    #: False when the script had no response() callback: ``statuses`` is empty and
    #: wrk's count of statuses >= 400 is all that is known.
    counted: bool = True
    server_cores: float = 0.0
    wrk_cores: float = 0.0
    #: Busy cores of the whole machine during the run; what neither the server nor wrk
    #: used (other processes, kernel threads) is machine - server - wrk.
    machine_cores: float = 0.0
    output: str = ""

    def count(self, low: int, high: int) -> int:
        """Responses with a status in [low, high]."""
        return sum(n for status, n in self.statuses.items() if low <= status <= high)

    @property
    def ok(self) -> int:
        """2xx responses (uncounted runs: every response not >= 400)."""
        if not self.counted:
            return self.requests - self.wrk_non_2xx_3xx
        return self.count(200, 299)

    @property
    def non_2xx(self) -> int:
        """Responses with any other status: exact when counted in Lua, else wrk's count
        of statuses >= 400."""
        if not self.counted:
            return self.wrk_non_2xx_3xx
        return sum(self.statuses.values()) - self.ok

    @property
    def errors(self) -> int:
        """Requests that got no response: connect/read/write errors and timeouts."""
        return sum(self.socket_errors[k] for k in ("connect", "read", "write", "timeout"))

    @property
    def other_cores(self) -> float:
        """CPU used by everything else on the machine during the run."""
        return max(0.0, self.machine_cores - self.server_cores - self.wrk_cores)

    @property
    def wrk_non_2xx_3xx(self) -> int:
        """wrk's own "Non-2xx or 3xx responses" figure, for cross-checking."""
        return self.socket_errors["status"]


def run_wrk(
    url: str,
    script: str,
    script_args: list[str],
    *,
    threads: int,
    connections: int,
    duration_s: int,
    server_pids: list[int],
    request_timeout_s: float = 10.0,
    init_allowance_s: float = 120.0,
) -> WrkResult:
    """Runs ``wrk -s tools/wrk/<script>`` against ``url`` and returns its result.

    ``duration_s`` is whole seconds (wrk accepts no fractions). ``init_allowance_s``
    bounds the time wrk may spend before and after the measured ``duration_s``
    (loading a large PUT pool, say); past it wrk is killed. CPU use is
    measured from wrk's "Running ..." line (printed once every thread's ``init`` is
    done) to its exit, so loading a pool does not count.
    """
    cmd = [
        "stdbuf", "-oL",  # line-buffered stdout, so "Running" is seen when printed
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{int(duration_s)}s",
        "--timeout", f"{request_timeout_s:g}s",
        "-s", str(WRK_DIR / script), url, "--", *script_args,
    ]
    before_children = _children_cpu()
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True,
        )
        reader = _OutputReader(proc, server_pids)
        reader.start()
        limit = duration_s + init_allowance_s
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired as e:
            raise WrkError(f"wrk did not finish within {limit:.0f} s") from e
        finally:
            if proc.poll() is None:  # timed out, or this script is being stopped
                proc.kill()
                proc.wait()
            reader.join(timeout=10)
        ended = time.monotonic()
        server_end = sum(cpu_seconds(p) for p in server_pids)
        machine_end = machine_busy_seconds()
        wrk_total = _children_cpu() - before_children
        err.seek(0)
        stderr = err.read()
    stdout = "".join(reader.lines)
    if proc.returncode != 0:
        raise WrkError(f"wrk exited with {proc.returncode}: {(stdout + stderr).strip()[-500:]}")
    result = parse_result(stdout)
    if reader.mark is not None:
        at, server_start, wrk_start, machine_start = reader.mark
        window = max(ended - at, 1e-6)
        result.server_cores = (server_end - server_start) / window
        result.wrk_cores = (wrk_total - wrk_start) / window
        result.machine_cores = (machine_end - machine_start) / window
    result.output = stdout + stderr
    return result


class _OutputReader(threading.Thread):
    """Collects wrk's stdout; notes time and CPU counters at its "Running" line."""

    def __init__(self, proc: subprocess.Popen, server_pids: list[int]):
        super().__init__(daemon=True)
        self.proc = proc
        self.server_pids = server_pids
        self.lines: list[str] = []
        #: (monotonic time, server CPU s, wrk CPU s, machine busy s) when the measured
        #: run began.
        self.mark: tuple[float, float, float, float] | None = None

    def run(self) -> None:
        for line in self.proc.stdout:
            if self.mark is None and line.startswith("Running "):
                self.mark = (
                    time.monotonic(),
                    sum(cpu_seconds(p) for p in self.server_pids),
                    cpu_seconds(self.proc.pid),
                    machine_busy_seconds(),
                )
            self.lines.append(line)


def _children_cpu() -> float:
    """CPU seconds of all waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse_result(stdout: str) -> WrkResult:
    """The WrkResult in a script's output; WrkError if the line is missing."""
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            data = json.loads(line[len(RESULT_MARKER):])
            break
    else:
        raise WrkError("wrk printed no result line:\n" + stdout[-1000:])
    return WrkResult(
        duration_s=data["duration_us"] / 1e6,
        requests=int(data["requests"]),
        response_bytes=int(data["bytes"]),
        statuses={int(k): int(v) for k, v in data["statuses"].items()},
        latency_us={k: float(v) for k, v in data["latency_us"].items()},
        socket_errors={k: int(v) for k, v in data["errors"].items()},
        counters={k: int(v) for k, v in data["counters"].items()},
        counted=bool(data.get("counted", True)),
    )
