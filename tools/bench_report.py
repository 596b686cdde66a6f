"""Turning bench_node.py's measurements into rows, target verdicts and Markdown."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench_wrk import WrkResult

KIB = 1024
MIB = 1024 * 1024


def size_name(size: int) -> str:
    """4096 -> "4 KiB", 1048576 -> "1 MiB", 128 -> "128 B"."""
    if size >= MIB and size % MIB == 0:
        return f"{size // MIB} MiB"
    if size >= KIB and size % KIB == 0:
        return f"{size // KIB} KiB"
    return f"{size} B"


@dataclass
class Row:
    """One wrk run: a test against one server at one connection count."""

    test: str
    server: str
    connections: int
    result: WrkResult
    #: Payload bytes per 2xx answer (a block); None when the payload is the response
    #: itself (LIKE), whose MB/s is then wrk's bytes read.
    block_size: int | None = None
    is_put: bool = False
    #: LIKE with random targets: 404 means "no stored id shares 12 bits", a valid answer.
    expect_404: bool = False

    @property
    def unexpected(self) -> int:
        """Non-2xx answers that signal a problem (404 excluded when expected)."""
        allowed = self.result.statuses.get(404, 0) if self.expect_404 else 0
        return self.result.non_2xx - allowed

    @property
    def req_per_s(self) -> float:
        return self.result.requests / self.result.duration_s

    @property
    def stored_per_s(self) -> float:
        """PUTs answered 201 (a new block stored and fsynced) per second."""
        return self.result.statuses.get(201, 0) / self.result.duration_s

    @property
    def mb_per_s(self) -> float:
        """Payload MB/s (1 MB = 1e6 bytes): block bytes moved by 2xx answers; for a PUT,
        only fresh blocks (201); for LIKE, the response bytes wrk read."""
        r = self.result
        if self.block_size is None:
            return r.response_bytes / r.duration_s / 1e6
        moved = r.statuses.get(201, 0) if self.is_put else r.ok
        return moved * self.block_size / r.duration_s / 1e6

    @property
    def p50_ms(self) -> float:
        return self.result.latency_us["p50"] / 1000

    @property
    def p99_ms(self) -> float:
        return self.result.latency_us["p99"] / 1000

    def note(self) -> str:
        """Status breakdown worth showing: 201/200 for PUTs, anything odd otherwise."""
        r = self.result
        parts = []
        if self.is_put:
            parts.append(f"201: {r.statuses.get(201, 0)}, 200: {r.statuses.get(200, 0)}")
            parked = r.counters.get("parked", 0)
            if parked:
                parts.append(f"a thread used up its pool share: {parked} connections parked "
                             "until the end")
            repeats = r.counters.get("repeats", 0)
            if repeats:
                parts.append(f"{repeats} PUTs repeated a block")
        odd = {s: n for s, n in sorted(r.statuses.items()) if not 200 <= s <= 299}
        if odd:
            parts.append("statuses " + ", ".join(f"{s}: {n}" for s, n in odd.items()))
            if self.expect_404 and set(odd) == {404}:
                parts.append("404 = no id within 12 bits (expected for random targets)")
        if r.errors:
            parts.append("socket errors " + ", ".join(
                f"{k}: {v}" for k, v in r.socket_errors.items() if v and k != "status"))
        counted = sum(r.statuses.values())
        if not r.counted:
            parts.append("no response() callback: non-2xx = wrk's count of status >= 400")
        elif counted != r.requests:
            parts.append(f"Lua counted {counted} of {r.requests} responses")
        return "; ".join(parts)


@dataclass
class Verdict:
    """A target and whether it was met."""

    name: str
    measured: str
    passed: bool

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'MISS'}  {self.name}: {self.measured}"


def find(rows: list[Row], test: str, server: str, connections: int) -> Row | None:
    """The row of one test, server and connection count, if it ran."""
    for row in rows:
        if (row.test, row.server, row.connections) == (test, server, connections):
            return row
    return None


def ratio(rows: list[Row], row: Row) -> float | None:
    """node/nginx for a node GET row: MB/s for 1 MiB blocks, req/s otherwise."""
    if row.server != "node" or not row.test.startswith("GET"):
        return None
    other = find(rows, row.test, "nginx", row.connections)
    if other is None:
        return None
    if row.block_size and row.block_size >= MIB:
        return row.mb_per_s / other.mb_per_s if other.mb_per_s else None
    return row.req_per_s / other.req_per_s if other.req_per_s else None


def render_table(headers: list[str], lines: list[list[str]]) -> str:
    """A Markdown table with padded columns (readable as plain text too)."""
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(headers)]

    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [fmt(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(fmt(line) for line in lines)
    return "\n".join(out)


def results_table(rows: list[Row]) -> str:
    """The main table: one line per wrk run."""
    headers = ["test", "server", "conns", "req/s", "MB/s", "p50 ms", "p99 ms",
               "non-2xx", "sock err", "node/nginx", "server CPU", "wrk CPU", "other CPU",
               "notes"]
    lines = []
    for row in rows:
        r = ratio(rows, row)
        lines.append([
            row.test, row.server, str(row.connections),
            f"{row.req_per_s:,.0f}", f"{row.mb_per_s:,.1f}",
            f"{row.p50_ms:.2f}", f"{row.p99_ms:.2f}",
            str(row.result.non_2xx), str(row.result.errors),
            f"{r:.2f}x" if r is not None else "",
            f"{row.result.server_cores:.2f}", f"{row.result.wrk_cores:.2f}",
            f"{row.result.other_cores:.2f}", row.note(),
        ])
    return render_table(headers, lines)


def main_verdicts(rows: list[Row], connections: list[int]) -> list[Verdict]:
    """The issue's targets for the 10k/1k-block runs, one verdict per connection count
    (GET targets also per variant: with and without the Lua response() callback)."""
    verdicts = []
    get_tests = list(dict.fromkeys(row.test for row in rows if row.test.startswith("GET")))
    for test in get_tests:
        large = "1 MiB" in test
        for c in connections:
            node = find(rows, test, "node", c)
            if node is None or (r := ratio(rows, node)) is None:
                continue
            if large:
                verdicts.append(Verdict(f"{test}: node >= 0.8x nginx MB/s (c={c})",
                                        f"{r:.2f}x ({node.mb_per_s:,.0f} MB/s)", r >= 0.8))
            else:
                # Issue 16 raised this from 0.6x (issue 1) to 0.7x.
                verdicts.append(Verdict(f"{test}: node >= 0.7x nginx req/s (c={c})",
                                        f"{r:.2f}x ({node.req_per_s:,.0f} req/s)", r >= 0.7))
    for c in connections:
        put = find(rows, "PUT 1 MiB", "node", c)
        if put:
            verdicts.append(Verdict(f"PUT 1 MiB >= 500 MB/s (c={c})",
                                    f"{put.mb_per_s:,.0f} MB/s stored", put.mb_per_s >= 500))
        put = find(rows, "PUT 4 KiB", "node", c)
        if put:
            verdicts.append(Verdict(f"PUT 4 KiB >= 5,000 req/s (c={c})",
                                    f"{put.stored_per_s:,.0f} stored/s", put.stored_per_s >= 5000))
    bad = sum(row.unexpected for row in rows)
    verdicts.append(Verdict("zero non-2xx responses (all runs above)", str(bad), bad == 0))
    return verdicts


@dataclass
class ScaleFigures:
    """The 1M-block run: start-up, memory, LIKE latency."""

    blocks: int
    block_size: int
    #: Seconds to write and sync the store; None when an earlier run's was reused.
    write_secs: float | None = None
    empty_rss_kib: int = 0
    first_line_secs: float = 0.0
    first_ready_secs: float = 0.0
    warm_line_secs: float = 0.0
    warm_ready_secs: float = 0.0
    rss_kib: int = 0
    hwm_kib: int = 0
    rss_after_like_kib: int = 0
    idle_cores: float = 0.0
    cold_line_secs: float | None = None
    cold_ready_secs: float | None = None
    cold_note: str = ""
    like_rows: list[Row] = field(default_factory=list)

    @property
    def bytes_per_block(self) -> float:
        return (self.rss_kib - self.empty_rss_kib) * 1024 / self.blocks

    def lines(self) -> list[str]:
        """The figures as Markdown bullet lines."""
        written = ("reused from an earlier run" if self.write_secs is None
                   else f"written and synced in {self.write_secs:.1f} s")
        out = [
            f"- blocks: {self.blocks:,} x {size_name(self.block_size)}, {written}",
            f"- start-up, first start after writing (or reusing) the store: "
            f"{self.first_ready_secs:.2f} s from spawn to the first 200 from `GET /node` "
            f"(serving line after {self.first_line_secs:.2f} s)",
            f"- start-up, warm restart (caches filled by the first start): "
            f"{self.warm_ready_secs:.2f} s (serving line after {self.warm_line_secs:.2f} s)",
        ]
        if self.cold_ready_secs is not None:
            out.append(f"- start-up (cold, after drop_caches): {self.cold_ready_secs:.2f} s "
                       f"(serving line after {self.cold_line_secs:.2f} s)")
        else:
            out.append(f"- start-up (cold): not measured: {self.cold_note}")
        out += [
            f"- VmRSS on an empty store: {self.empty_rss_kib / 1024:.1f} MiB; with the blocks, "
            f"after start: {self.rss_kib / 1024:.1f} MiB (peak VmHWM {self.hwm_kib / 1024:.1f} MiB;"
            f" after the LIKE runs {self.rss_after_like_kib / 1024:.1f} MiB)",
            f"- index memory: ({self.rss_kib} - {self.empty_rss_kib}) KiB / {self.blocks:,} = "
            f"{self.bytes_per_block:.1f} bytes per block",
            f"- node CPU while idle right after start (background scrub): "
            f"{self.idle_cores:.2f} cores",
        ]
        return out

    def verdicts(self, full_scale: bool) -> list[Verdict]:
        """Start-up, index size and LIKE p99 targets (meant for 1M blocks)."""
        suffix = "" if full_scale else f" [only {self.blocks:,} blocks: indicative]"
        out = [
            Verdict(f"start-up < 10 s, warm restart{suffix}", f"{self.warm_ready_secs:.2f} s",
                    self.warm_ready_secs < 10),
            *([Verdict(f"start-up < 10 s, cold page cache{suffix}",
                       f"{self.cold_ready_secs:.2f} s", self.cold_ready_secs < 10)]
              if self.cold_ready_secs is not None else []),
            Verdict(f"index < 100 bytes/block{suffix}", f"{self.bytes_per_block:.1f} B/block",
                    self.bytes_per_block < 100),
        ]
        for row in self.like_rows:
            out.append(Verdict(f"{row.test} p99 < 1 ms (c={row.connections}){suffix}",
                               f"{row.p99_ms:.3f} ms", row.p99_ms < 1.0))
        return out


def markdown_section(title: str, machine: list[tuple[str, str]], command: str,
                     settings: list[str], rows: list[Row], verdicts: list[Verdict],
                     scale: ScaleFigures | None, scale_verdicts: list[Verdict]) -> str:
    """The whole report as one Markdown section."""
    out = [f"## {title}", "", "### Machine", ""]
    out += [f"- {k}: {v}" for k, v in machine]
    out += ["", "### Command", "", "```", command, "```", "", "### Settings", ""]
    out += [f"- {s}" for s in settings]
    out += ["", "### Results", "", results_table(rows), ""]
    out += ["MB/s is payload (block bytes; for PUT only newly stored blocks, for LIKE the "
            "JSON answers), 1 MB = 10^6 bytes. non-2xx is counted per status in Lua; sock err "
            "= connect/read/write errors and timeouts. CPU columns are cores used during the "
            "measured window (2 = the whole machine): the server's processes, wrk, and "
            "everything else on the machine (other processes, kernel threads).", ""]
    out += ["### Targets", "", "```"] + [v.line() for v in verdicts] + ["```", ""]
    if scale is not None:
        out += ["### Scale run", ""] + scale.lines() + ["", results_table(scale.like_rows), ""]
        out += ["```"] + [v.line() for v in scale_verdicts] + ["```", ""]
    return "\n".join(out)


def publish(text: str, markdown, title: str, failures: list[str], say=print) -> int:
    """Prints a benchmark's report, writes it under ``title`` to ``markdown`` (a Path,
    or None), says each failure, and returns the exit status: 1 if any failed."""
    print("\n" + text)
    if markdown:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(title + "\n\n" + text, encoding="utf-8")
        say(f"wrote {markdown}")
    for failure in failures:
        say(f"FAILED: {failure}")
    return 1 if failures else 0
