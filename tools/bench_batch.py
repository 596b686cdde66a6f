#!/usr/bin/env python3
"""Durable PUTs through the batch path (issue 16): ``POST /sha256/batch`` against one
``PUT /sha256/<id>`` per block, sent by the same client, on a fresh node each.

The client is this script: C threads, each with its own keep-alive connection, sending
pre-generated fresh blocks (random bytes, so every one is stored: 201). Batches are
framed as ``id (32) | length (u32 BE) | bytes`` (src/proto.rs). Every answer is checked:
a single PUT must be 201, a batch answer must list 201 for every frame. Afterwards a
sample of blocks is read back and compared.

    python3 tools/bench_batch.py            # full: 64k x 4 KiB and 2 GiB of 1 MiB blocks
    python3 tools/bench_batch.py --smoke    # small, about a minute with the build; CI

Exit 1 on any refused block, wrong answer or failed process; targets (10,000 blocks/s for
4 KiB, 600 MB/s for 1 MiB, both through batches) are reported, not enforced.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_servers  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def fresh_blocks(n: int, size: int) -> list[tuple[bytes, bytes]]:
    """``n`` random blocks of ``size`` bytes, with their ids."""
    out = []
    for _ in range(n):
        data = os.urandom(size)
        out.append((hashlib.sha256(data).digest(), data))
    return out


def batch_bodies(blocks: list[tuple[bytes, bytes]], per_batch: int) -> list[tuple[int, bytes]]:
    """Frames of ``per_batch`` blocks each: (frames in it, body)."""
    bodies = []
    for at in range(0, len(blocks), per_batch):
        part = blocks[at : at + per_batch]
        body = b"".join(i + struct.pack(">I", len(d)) + d for i, d in part)
        bodies.append((len(part), body))
    return bodies


class Failure(RuntimeError):
    """A block was refused or an answer was wrong."""


def run_clients(port: int, jobs: list, connections: int, send) -> float:
    """Runs ``send(conn, job)`` for every job over ``connections`` threads, each on its
    own connection; returns the wall seconds. Any exception fails the run."""
    lock = threading.Lock()
    queue = list(reversed(jobs))
    errors: list[BaseException] = []

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while True:
                with lock:
                    if not queue or errors:
                        return
                    job = queue.pop()
                send(conn, job)
        except BaseException as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append(e)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    if errors:
        raise Failure(str(errors[0]))
    return wall


def put_single(conn: http.client.HTTPConnection, block: tuple[bytes, bytes]) -> None:
    block_id, data = block
    conn.request("PUT", f"/sha256/{block_id.hex()}", body=data)
    reply = conn.getresponse()
    body = reply.read()
    if reply.status != 201:
        raise Failure(f"PUT answered {reply.status}: {body[:200]!r}")


def put_batch(conn: http.client.HTTPConnection, job: tuple[int, bytes]) -> None:
    frames, body = job
    conn.request("POST", "/sha256/batch", body=body,
                 headers={"content-type": "application/vnd.libernet.blocks"})
    reply = conn.getresponse()
    text = reply.read()
    if reply.status != 200:
        raise Failure(f"batch answered {reply.status}: {text[:200]!r}")
    answer = json.loads(text)
    if answer["stored"] != frames or answer.get("stopped"):
        raise Failure(f"batch of {frames} answered {text[:300]!r}")


def check_sample(port: int, blocks: list[tuple[bytes, bytes]]) -> None:
    """Reads back up to 50 blocks spread over the run and compares their bytes."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    step = max(1, len(blocks) // 50)
    for block_id, data in blocks[::step]:
        conn.request("GET", f"/sha256/{block_id.hex()}?wait=0")
        reply = conn.getresponse()
        body = reply.read()
        if reply.status != 200 or body != data:
            raise Failure(f"block {block_id.hex()} read back as {reply.status}")
    conn.close()


def measure(binary: Path, work: Path, name: str, size: int, count: int, per_batch: int,
            connections: int) -> dict:
    """One run on a fresh node: ``count`` blocks of ``size`` bytes, batched by
    ``per_batch`` (1 = one PUT per block)."""
    store = work / f"store-{name}"
    node = bench_servers.start_node(binary, store, work / f"run-{name}", "warn")
    try:
        blocks = fresh_blocks(count, size)
        if per_batch == 1:
            jobs, send = blocks, put_single
        else:
            jobs, send = batch_bodies(blocks, per_batch), put_batch
        busy0 = bench_servers.machine_busy_seconds()
        cpu0 = bench_servers.cpu_seconds(node.pid)
        wall = run_clients(node.port, jobs, connections, send)
        node_cpu = (bench_servers.cpu_seconds(node.pid) - cpu0) / wall
        busy = (bench_servers.machine_busy_seconds() - busy0) / wall
        check_sample(node.port, blocks)
        if not node.alive():
            raise Failure("the node died")
    finally:
        node.stop()
        shutil.rmtree(store, ignore_errors=True)
    return {
        "name": name,
        "size": size,
        "blocks": count,
        "per_request": per_batch,
        "connections": connections,
        "seconds": wall,
        "blocks_per_s": count / wall,
        "mb_per_s": count * size / wall / 1e6,
        "node_cores": node_cpu,
        "machine_cores": busy,
    }


def report(rows: list[dict]) -> str:
    lines = [
        "| run | blocks | per request | conns | seconds | blocks/s | MB/s | node cores | machine cores |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['blocks']:,} | {r['per_request']} | {r['connections']} "
            f"| {r['seconds']:.2f} | {r['blocks_per_s']:,.0f} | {r['mb_per_s']:,.1f} "
            f"| {r['node_cores']:.2f} | {r['machine_cores']:.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small counts, for CI")
    parser.add_argument("--no-build", action="store_true", help="use target/release/libernet")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--small", type=int, default=None, help="4 KiB blocks per run")
    parser.add_argument("--large", type=int, default=None, help="1 MiB blocks per run")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    small = args.small or (2_000 if args.smoke else 64_000)
    large = args.large or (48 if args.smoke else 2_048)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = target / "release" / "libernet"
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "libernet"], cwd=ROOT, check=True)
    c = args.connections
    plan = [
        ("PUT 4 KiB, one per request", 4096, min(small, 20_000), 1),
        ("PUT 4 KiB, batches of 1,024", 4096, small, 1024),
        ("PUT 1 MiB, one per request", 1 << 20, large, 1),
        ("PUT 1 MiB, batches of 16", 1 << 20, large, 16),
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="libernet-batch-") as tmp:
        for i, (name, size, count, per) in enumerate(plan):
            row = measure(binary, Path(tmp), f"{i}", size, count, per, c)
            row["name"] = name
            rows.append(row)
            print(f"{name}: {row['blocks_per_s']:,.0f} blocks/s, {row['mb_per_s']:,.1f} MB/s",
                  flush=True)
    print()
    print(report(rows))
    small_batch, large_batch = rows[1], rows[3]
    print()
    print(f"target: batch PUT 4 KiB >= 10,000 blocks/s: {small_batch['blocks_per_s']:,.0f} "
          f"{'PASS' if small_batch['blocks_per_s'] >= 10_000 else 'MISS'}")
    print(f"target: batch PUT 1 MiB >= 600 MB/s: {large_batch['mb_per_s']:,.1f} "
          f"{'PASS' if large_batch['mb_per_s'] >= 600 else 'MISS'}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (Failure, bench_servers.ServerError, subprocess.CalledProcessError) as e:
        print(f"bench_batch: {e}", file=sys.stderr)
        sys.exit(1)
