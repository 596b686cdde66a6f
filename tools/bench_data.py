"""Test data for bench_node.py: random blocks written straight into a store's layout,
and pools of fresh blocks for the PUT runs.

A block is named by the SHA-256 of its bytes and lives at
``<store>/blocks/<ab>/<cd>/<64-hex id>`` (ab, cd: the first four hex digits), which is
exactly what the node rebuilds its index from at start-up. Generation runs in a few
worker processes; every worker writes its own files and its own id list, so nothing
large travels between processes.
"""

from __future__ import annotations

import hashlib
import os
import random
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

#: Bytes handed to os.write in one call when writing a pool file.
_POOL_BATCH = 8 << 20


def block_path(store: Path, block_id: str) -> Path:
    """Where the node keeps block ``block_id`` inside ``store``."""
    return store / "blocks" / block_id[0:2] / block_id[2:4] / block_id


def _write_block_share(store: str, count: int, size: int, ids_file: str) -> int:
    """Worker: writes ``count`` random blocks of ``size`` bytes; lists their ids."""
    blocks = Path(store) / "blocks"
    made_dirs: set[str] = set()
    with open(ids_file, "w", encoding="ascii") as ids:
        for _ in range(count):
            data = os.urandom(size)
            block_id = hashlib.sha256(data).hexdigest()
            leaf = f"{block_id[0:2]}/{block_id[2:4]}"
            if leaf not in made_dirs:
                os.makedirs(blocks / leaf, exist_ok=True)
                made_dirs.add(leaf)
            fd = os.open(blocks / leaf / block_id, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            ids.write(block_id + "\n")
    return count


def _split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal non-negative counts."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def fill_store(store: Path, count: int, size: int, ids_file: Path, workers: int) -> list[str]:
    """Writes ``count`` random blocks of ``size`` bytes into ``store``.

    Returns their ids (also written, one a line, to ``ids_file``). Files are not fsynced
    one by one; callers run ``os.sync()`` once before measuring.
    """
    (store / "blocks").mkdir(parents=True, exist_ok=True)
    shares = [n for n in _split(count, workers) if n > 0]
    part_files = [ids_file.with_name(f"{ids_file.name}.part{i}") for i in range(len(shares))]
    with ProcessPoolExecutor(max_workers=len(shares)) as pool:
        jobs = [
            pool.submit(_write_block_share, str(store), n, size, str(part))
            for n, part in zip(shares, part_files, strict=True)
        ]
        written = sum(job.result() for job in jobs)
    if written != count:
        raise RuntimeError(f"wrote {written} blocks, expected {count}")
    ids: list[str] = []
    for part in part_files:
        ids.extend(part.read_text(encoding="ascii").split())
        part.unlink()
    ids_file.write_text("\n".join(ids) + "\n", encoding="ascii")
    return ids


def _write_pool_share(bin_file: str, ids_file: str, count: int, size: int) -> int:
    """Worker: ``count`` fresh random blocks, concatenated, and their ids in order."""
    batch: list[bytes] = []
    batch_bytes = 0
    with open(bin_file, "wb") as blob, open(ids_file, "w", encoding="ascii") as ids:
        for _ in range(count):
            data = os.urandom(size)
            ids.write(hashlib.sha256(data).hexdigest() + "\n")
            batch.append(data)
            batch_bytes += size
            if batch_bytes >= _POOL_BATCH:
                blob.write(b"".join(batch))
                batch, batch_bytes = [], 0
        blob.write(b"".join(batch))
    return count


def make_put_pool(pool_dir: Path, threads: int, per_thread: int, size: int, workers: int) -> int:
    """Pre-generates PUT bodies for ``threads`` wrk threads, ``per_thread`` blocks each.

    Thread n (1-based, as wrk's Lua scripts number them) gets ``t<n>.bin`` (its blocks,
    concatenated) and ``t<n>.ids`` (their ids, same order): disjoint shares of blocks
    that no store has seen. Returns the number of blocks generated.
    """
    pool_dir.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=max(1, min(workers, threads))) as pool:
        jobs = [
            pool.submit(
                _write_pool_share,
                str(pool_dir / f"t{n}.bin"),
                str(pool_dir / f"t{n}.ids"),
                per_thread,
                size,
            )
            for n in range(1, threads + 1)
        ]
        return sum(job.result() for job in jobs)


def random_ids(count: int, seed: int | None = None) -> list[str]:
    """``count`` random 64-hex ids (almost surely not stored anywhere)."""
    rng = random.Random(seed)
    return [f"{rng.getrandbits(256):064x}" for _ in range(count)]


def write_ids(path: Path, ids: list[str]) -> Path:
    """Writes ids one a line, the format the wrk scripts read."""
    path.write_text("\n".join(ids) + "\n", encoding="ascii")
    return path


def sample(ids: list[str], count: int, seed: int = 1) -> list[str]:
    """At most ``count`` ids drawn without replacement (all of them if fewer)."""
    if len(ids) <= count:
        return list(ids)
    return random.Random(seed).sample(ids, count)
