#!/usr/bin/env python3
"""Codec throughput per core, against the machine's own SHA-256 and AES-256-GCM rates.

Runs ``cargo bench --bench codec`` (benches/codec.rs: encode, decode and decode_by of
1 MiB blocks of random and of text content, single-threaded, median of several timed
batches, plus the primitives a block is made of), runs ``openssl speed`` for SHA-256 and
AES-256-GCM on 1 MiB buffers before and after it, and prints a table with ratios and
PASS/MISS against the issue's target: encoding incompressible content end to end at no
less than 40% of one core's SHA-256 rate (one encode is two SHA-256 passes and one
AES-GCM pass).

    python3 tools/bench_codec.py                     # full run (about 1-2 minutes)
    python3 tools/bench_codec.py --smoke             # quick check; exits 1 on any failure
    python3 tools/bench_codec.py --markdown FILE     # also write a Markdown section
    python3 tools/bench_codec.py --aws-lc            # also aws-lc-rs's AES-256-GCM

Set CARGO_TARGET_DIR as for any cargo command. Needs Python 3.11 (stdlib), cargo, openssl.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ next to the sibling modules
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_node import REPO, _first_line, describe_machine, say, wait_for_quiet  # noqa: E402
from bench_report import Verdict, render_table  # noqa: E402

#: The issue's target: encode (random) >= this fraction of openssl's single-core SHA-256.
ENCODE_VS_SHA256 = 0.40

#: Every (op, data) the bench prints; a smoke run fails if one is missing.
EXPECTED = [
    ("encode", "random"), ("decode", "random"), ("decode_by", "random"),
    ("decode_by_into", "random"),
    ("encode", "text"), ("decode", "text"), ("decode_by", "text"), ("decode_by_into", "text"),
    ("sha256", "random"), ("aes256gcm_seal_in_place", "random"),
    ("aes256gcm_open_copy", "random"), ("aes256gcm_open_into", "random"), ("memcpy", "random"),
    ("zlib6_compress", "text"), ("zlib1_compress", "text"), ("zlib_inflate", "text"),
]

#: What each primitive row is, for the report.
PRIMITIVE_NOTES = {
    "sha256": "sha2 crate, one pass",
    "aes256gcm_seal_in_place": "aes-gcm crate, in place (as encode)",
    "aes256gcm_open_copy": "aes-gcm crate, copy + open (as decode)",
    "aes256gcm_open_into": "aes-gcm crate, open into a reused buffer (as the node's file reads)",
    "aws_lc_gcm_seal_in_place": "aws-lc-rs, in place (--aws-lc only)",
    "aws_lc_gcm_open_copy": "aws-lc-rs, copy into a reused buffer + open (--aws-lc only)",
    "memcpy": "Vec copy of 1 MiB",
    "zlib6_compress": "flate2 (miniz_oxide) level 6 (as encode)",
    "zlib1_compress": "flate2 (miniz_oxide) level 1, for comparison",
    "zlib_inflate": "flate2 (miniz_oxide) inflate (as decode)",
}


class BenchFailure(RuntimeError):
    """A command failed or printed something unexpected."""


@dataclass
class Speed:
    """One ``openssl speed`` figure."""

    name: str
    mb_s: float


def openssl_speed(algorithm: str, seconds: int) -> Speed:
    """``openssl speed -seconds N -bytes 1048576 [-evp] ALG``, parsed to MB/s (10^6 B/s).

    openssl prints the rate in 1000s of bytes per second on its last line, for example
    ``sha256   1109449.71k``.
    """
    evp = [] if algorithm == "sha256" else ["-evp"]
    cmd = ["openssl", "speed", "-seconds", str(seconds), "-bytes", "1048576", *evp, algorithm]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 10 + 60)
    except subprocess.TimeoutExpired as e:
        raise BenchFailure(f"{shlex.join(cmd)} did not finish in time") from e
    if done.returncode != 0:
        raise BenchFailure(f"{shlex.join(cmd)} failed: {done.stderr.strip()[-500:]}")
    for line in reversed(done.stdout.splitlines()):
        match = re.match(r"^(\S.*?)\s+([\d.]+)k\s*$", line)
        if match:
            return Speed(match.group(1), float(match.group(2)) * 1000 / 1e6)
    raise BenchFailure(f"no rate in the output of {shlex.join(cmd)}:\n{done.stdout[-500:]}")


def run_codec_bench(smoke: bool, reps: int | None, timeout: float,
                    aws_lc: bool = False) -> tuple[list[dict], str]:
    """``cargo bench --bench codec``; returns its JSON lines and its stderr (the
    human-readable lines and cargo's messages). With ``aws_lc``, built with the
    ``bench-aws-lc`` feature: AWS-LC's AES-256-GCM is measured beside the aes-gcm crate's."""
    cmd = ["cargo", "bench", "--bench", "codec"]
    if aws_lc:
        cmd += ["--features", "bench-aws-lc"]
    cmd.append("--")
    if smoke:
        cmd.append("--smoke")
    if reps is not None:
        cmd += ["--reps", str(reps)]
    say(f"running: {shlex.join(cmd)} (CARGO_TARGET_DIR={os.environ.get('CARGO_TARGET_DIR', '')})")
    try:
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise BenchFailure(f"cargo bench did not finish within {timeout:.0f} s") from e
    if done.returncode != 0:
        raise BenchFailure(f"cargo bench failed ({done.returncode}):\n{done.stderr[-3000:]}")
    rows = []
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            data = json.loads(line)
            if data.get("bench") == "codec":
                rows.append(data)
    return rows, done.stderr


def ratio_cell(value: float, reference: float | None) -> str:
    return f"{value / reference:.2f}" if reference else ""


def results_table(rows: list[dict], sha: float, gcm: float) -> str:
    """One line per measurement: MB/s of content, spread, ratios to openssl."""
    headers = ["op", "data", "MB/s (median)", "min-max", "ms/op", "wall MB/s", "on CPU",
               "block/content", "x openssl sha256", "x openssl aes-256-gcm", "what"]
    lines = []
    for r in rows:
        block = f"{r['block_bytes'] / r['bytes']:.3f}" if r["block_bytes"] else ""
        on_cpu = f"{r['on_cpu'] * 100:.0f}%" if r.get("on_cpu") is not None else "?"
        what = PRIMITIVE_NOTES.get(r["op"], "libernet::codec")
        lines.append([
            r["op"], r["data"], f"{r['median_mb_s']:,.1f}",
            f"{r['min_mb_s']:,.0f}-{r['max_mb_s']:,.0f}", f"{r['median_ms_per_op']:.2f}",
            f"{r['wall_median_mb_s']:,.1f}", on_cpu,
            block, ratio_cell(r["median_mb_s"], sha), ratio_cell(r["median_mb_s"], gcm),
            what,
        ])
    return render_table(headers, lines)


def find(rows: list[dict], op: str, data: str) -> dict | None:
    for r in rows:
        if (r["op"], r["data"]) == (op, data):
            return r
    return None


def serial(*rates: float) -> float:
    """Rate of passes run one after the other over the same bytes."""
    return 1.0 / sum(1.0 / r for r in rates)


def analysis(rows: list[dict], sha: float, gcm: float) -> list[str]:
    """What encode and decode cost against their parts (both measured in this run)."""
    out = [f"- encode (random) is SHA-256 + AES-256-GCM + SHA-256 over 1 MiB; with "
           f"openssl's rates that chain would run at {serial(sha, sha, gcm):,.0f} MB/s "
           f"({serial(sha, sha, gcm) / sha:.2f}x openssl sha256)."]
    r_sha, r_seal = find(rows, "sha256", "random"), find(rows, "aes256gcm_seal_in_place", "random")
    r_open = find(rows, "aes256gcm_open_copy", "random")
    enc, dec = find(rows, "encode", "random"), find(rows, "decode", "random")
    if r_sha and r_seal and enc:
        chain = serial(r_sha["median_mb_s"], r_sha["median_mb_s"], r_seal["median_mb_s"])
        out.append(f"- with the Rust crates' rates measured here (sha2 "
                   f"{r_sha['median_mb_s']:,.0f}, aes-gcm seal {r_seal['median_mb_s']:,.0f} MB/s) "
                   f"the same chain runs at {chain:,.0f} MB/s; encode measured "
                   f"{enc['median_mb_s']:,.0f} MB/s ({enc['median_mb_s'] / chain:.0%} of it).")
    r_into, r_aws = find(rows, "aes256gcm_open_into", "random"), find(rows, "aws_lc_gcm_open_copy",
                                                                     "random")
    if r_open and r_into:
        out.append(f"- opening into a reused buffer: {r_into['median_mb_s']:,.0f} MB/s against "
                   f"{r_open['median_mb_s']:,.0f} MB/s with a fresh copy of the ciphertext.")
    if r_into and r_aws:
        out.append(f"- aws-lc-rs opens at {r_aws['median_mb_s']:,.0f} MB/s (copy included), "
                   f"{r_aws['median_mb_s'] / r_into['median_mb_s']:.2f}x the aes-gcm crate's "
                   f"{r_into['median_mb_s']:,.0f} MB/s.")
    if r_sha and r_open and dec:
        chain = serial(r_open["median_mb_s"], r_sha["median_mb_s"])
        out.append(f"- decode (random) = GCM open + one SHA-256 check: predicted "
                   f"{chain:,.0f} MB/s from the parts, measured {dec['median_mb_s']:,.0f} MB/s.")
    text = find(rows, "encode", "text")
    z = find(rows, "zlib6_compress", "text")
    if text and z:
        out.append(f"- encode (text) is bound by zlib level 6: compression alone runs at "
                   f"{z['median_mb_s']:,.1f} MB/s, encode at {text['median_mb_s']:,.1f} MB/s.")
    return out


def verdicts(rows: list[dict], sha: float) -> list[Verdict]:
    enc = find(rows, "encode", "random")
    if enc is None:
        return [Verdict("encode (random) measured", "missing", False)]
    share = enc["median_mb_s"] / sha
    return [Verdict(f"encode (random) >= {ENCODE_VS_SHA256:.0%} of openssl sha256 single-core",
                    f"{enc['median_mb_s']:,.0f} / {sha:,.0f} MB/s = {share:.0%}",
                    share >= ENCODE_VS_SHA256)]


def markdown(title: str, machine: list[tuple[str, str]], command: str, settings: list[str],
             speeds: list[str], table: str, notes: list[str], results: list[Verdict]) -> str:
    out = [f"## {title}", "", "### Machine", ""]
    out += [f"- {k}: {v}" for k, v in machine]
    out += ["", "### Command", "", "```", command, "```", "", "### Settings", ""]
    out += [f"- {s}" for s in settings]
    out += ["", "### openssl speed (1 MiB buffers, one core)", ""]
    out += [f"- {s}" for s in speeds]
    out += ["", "### Results", "", table, "",
            "MB/s counts content bytes (1 MiB block minus 28 bytes of nonce and tag), "
            "1 MB = 10^6 bytes, per second of the bench thread's CPU time (as `openssl "
            "speed` counts, without `-elapsed`); each figure is the median of the timed "
            "batches, min-max their spread; 'wall MB/s' is the same median by the wall "
            "clock, and 'on CPU' the thread's CPU time over wall time during the batches "
            "(below ~95%: other processes took the core). 'block/content' is the encoded "
            "block's size over the content's (zlib at work for text).", ""]
    out += notes + [""]
    out += ["### Targets", "", "```"] + [v.line() for v in results] + ["```", ""]
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--smoke", action="store_true",
                   help="3 short reps and 1-second openssl runs; exit 1 on any failure")
    p.add_argument("--markdown", type=Path, metavar="FILE",
                   help="also write the results as a Markdown section to FILE")
    p.add_argument("--reps", type=int, help="timed batches per measurement [11; smoke 3]")
    p.add_argument("--openssl-seconds", type=int, help="openssl speed -seconds [3; smoke 1]")
    p.add_argument("--quiet-wait", type=float,
                   help="wait up to this many seconds for other processes to use < 0.2 "
                        "cores before measuring [120; smoke 0]")
    p.add_argument("--aws-lc", action="store_true",
                   help="also measure aws-lc-rs's AES-256-GCM (builds AWS-LC: needs a C "
                        "compiler and a few minutes)")
    p.add_argument("--timeout", type=float, default=1800.0,
                   help="seconds allowed for cargo bench (including the build)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seconds = args.openssl_seconds or (1 if args.smoke else 3)
    quiet_wait = args.quiet_wait if args.quiet_wait is not None else (0 if args.smoke else 120)
    command = shlex.join(sys.orig_argv)
    machine = [(k, v) for k, v in describe_machine(Path("/tmp"))
               if k not in ("nginx", "wrk", "data dir filesystem")]
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    wanted = ["sha_ni", "aes", "vaes", "pclmulqdq", "vpclmulqdq", "avx2", "avx512f"]
    machine.insert(1, ("CPU features", " ".join(f for f in wanted if f in flags) or "none"))
    machine.append(("openssl", _first_line(["openssl", "version"])))
    print("machine:\n" + "\n".join(f"  {k}: {v}" for k, v in machine))
    say(f"command: {command}")
    try:
        if quiet_wait > 0:
            waited, other = wait_for_quiet([os.getpid()], quiet_wait)
            say(f"waited {waited:.0f} s for a quiet machine (others now {other:.2f} cores)")
        speeds_before = [openssl_speed(a, seconds) for a in ("sha256", "aes-256-gcm")]
        for s in speeds_before:
            say(f"openssl speed {s.name}: {s.mb_s:,.0f} MB/s")
        rows, stderr = run_codec_bench(args.smoke, args.reps, args.timeout, args.aws_lc)
        print("".join(line + "\n" for line in stderr.splitlines()
                      if not line.lstrip().startswith(("Compiling", "Finished", "Running",
                                                       "Blocking", "Locking", "Updating"))),
              end="", flush=True)
        speeds_after = [openssl_speed(a, seconds) for a in ("sha256", "aes-256-gcm")]
        for s in speeds_after:
            say(f"openssl speed {s.name} (after): {s.mb_s:,.0f} MB/s")
    except BenchFailure as e:
        say(f"FAILED: {e}")
        return 1
    missing = [f"{op} {data}" for op, data in EXPECTED if find(rows, op, data) is None]
    # The machine's limit: the better of the two openssl runs around the codec bench.
    sha = max(speeds_before[0].mb_s, speeds_after[0].mb_s)
    gcm = max(speeds_before[1].mb_s, speeds_after[1].mb_s)
    speed_lines = [f"{b.name}: {b.mb_s:,.0f} MB/s before the codec bench, {a.mb_s:,.0f} "
                   f"after; reference {max(a.mb_s, b.mb_s):,.0f} MB/s"
                   for b, a in zip(speeds_before, speeds_after, strict=True)]
    table = results_table(rows, sha, gcm)
    notes = analysis(rows, sha, gcm)
    results = verdicts(rows, sha)
    print("\nopenssl speed:\n" + "\n".join(f"  {s}" for s in speed_lines))
    print("\nresults:\n" + table)
    print("\n" + "\n".join(notes))
    print("\ntargets:\n" + "\n".join(v.line() for v in results))
    settings = [
        f"mode: {'smoke' if args.smoke else 'full'}; cargo bench --bench codec "
        f"({'3' if args.smoke and not args.reps else args.reps or 11} timed batches per "
        f"measurement, each ~{'20' if args.smoke else '200'} ms, after a warm-up; the "
        "batches of all measurements are interleaved round-robin; one thread)",
        "content: codec::MAX_CONTENT = 1,048,548 bytes; 'random' = xorshift64 bytes "
        "(incompressible); 'text' = English-like word salad: words from a fixed list of "
        "~500 common English words with Zipf weights (k-th word ~1/k), sentences of 4-22 "
        "words with capitals, commas and full stops, paragraphs of 3-8 sentences, same "
        "seed every run (zlib level 6 shrinks it to ~36%)",
        f"openssl speed -seconds {seconds} -bytes 1048576 sha256 / -evp aes-256-gcm, "
        "run before and after the codec bench; the higher figure is the reference",
        f"before measuring: wait up to {quiet_wait:g} s for other processes to use < 0.2 cores",
    ]
    if args.markdown:
        mode = "smoke" if args.smoke else "full"
        title = f"Codec throughput ({mode} run, {dict(machine)['date']})"
        text = markdown(title, machine, command, settings, speed_lines, table, notes, results)
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")
        print(f"\nwrote {args.markdown}")
    if missing:
        say(f"FAILED: the bench printed no result for {', '.join(missing)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
