#!/usr/bin/env python3
"""Benchmark `libernet backup` against restic on the same data, in the same run.

1. Writes a deterministic mixed tree of ~1 GiB: 15,000 small files of 100 B to 64 KiB
   (half English-like text, half random bytes; bench_bundle.make_tree writes them), 4
   large random files (~50 to ~200 MiB), 1% of the small files copied to two more places,
   the smallest large file copied once, a few executable and read-only files, a
   symlink and an empty directory.
2. Setup: `libernet backup add --new-set TREE` against a release node on a fresh store, and
   `restic init` of a fresh local repository.
3. First backup: `libernet backup run --json` and `restic backup TREE`.
4. Changes 1% of the small files (bytes overwritten in place or appended) and appends to
   one large file, then the second backup with both.
5. Full restore with both into fresh directories (`libernet backup restore --to DEST`,
   `restic restore latest --target DEST`); each restored tree must match the source:
   contents (size and SHA-256), permission bits, file mtimes (to 1 us) and symlinks.
6. Verify: `libernet backup verify` and `restic check --read-data` (for information).
7. Excluded backup: adds a cache directory tagged with CACHEDIR.TAG (5% of the tree's
   bytes) and `*.tmp` files, then backs up with `--exclude '*.tmp' --exclude-caches`
   (both tools take the same options); they must not be read.
8. Forget: `libernet backup forget --keep-daily 1` (releases the forgotten runs' pins;
   the node evicts unpinned blocks only under quota pressure) and `restic forget
   --keep-daily 1 --prune` (rewrites the repository); all runs are from today, so each
   keeps only the excluded backup.
9. Restore after forget: the kept run, checked as in 5 against the tree without the
   excluded entries (the cache directory is not compared: the tools may keep its tag).

Each step reports wall time, MB/s (the tree's bytes over the time), CPU, the client's
peak RSS, the node's peak RSS (libernet: the node is restarted before every step, so its
VmHWM is the step's), and the bytes stored after each backup (the node's `blocks/`
against the restic repository). The targets (issue 16): libernet's first backup, second
backup and restore at most as slow as restic's, and its client's peak RSS in each at
most restic's.

    python3 tools/bench_backup.py                   # full run (about 2 minutes here)
    python3 tools/bench_backup.py --smoke           # tiny tree, < 1 min; exit 1 on any error
    python3 tools/bench_backup.py --only restic     # restic alone (no build, no node)
    python3 tools/bench_backup.py --markdown FILE   # also write a Markdown section

Everything runs on 127.0.0.1; every node started is stopped at the end, also on failure
or Ctrl-C. Needs Python 3.11 (stdlib only), cargo, restic and GNU time.
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
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ next to the sibling modules
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_bundle import (  # noqa: E402
    BenchFailure, Timed, build_node, compare_trees, make_tree, run_timed, scan_tree,
    target_dir, write_random,
)
from bench_node import describe_machine, say, wait_for_quiet  # noqa: E402
from bench_report import MIB, Verdict, publish, render_table  # noqa: E402
from bench_servers import (  # noqa: E402
    NodeProcess, ServerError, cpu_seconds, memory_kib, start_node,
)

RESTIC = Path("/usr/bin/restic")
TOOLS = ("libernet", "restic")

#: Targets (issue 16): libernet's time over restic's, at most, and its client's peak
#: RSS over restic's, at most, in the first backup, the second and the restore.
FIRST_VS_RESTIC = 1.0
SECOND_VS_RESTIC = 1.0
RESTORE_VS_RESTIC = 1.0
MEMORY_VS_RESTIC = 1.0

#: Seed of the tree and of the changes: every run writes the same bytes.
SEED = 11

#: Client credentials; the node's admin token is added once the node has created it.
USER = "bench"
MACHINE = "bench"
PASSPHRASE = "correct horse battery staple, benchmark only"

#: Fields of `libernet backup run --json` shown in the notes (reused: files taken from
#: the run before unread; skipped: blocks not sent because the node had them).
RUN_FIELDS = ("files", "bytes", "reused", "read_files", "sent", "sent_bytes", "skipped",
              "seconds")

#: libernet keeps mtimes in microseconds as a float, rounded: a restored file may be up
#: to 1 us off the original's nanoseconds (restic keeps nanoseconds).
MTIME_TOLERANCE_NS = 1000

#: The cache directory and the temporary files of the excluded backup: its share of the
#: tree's bytes, and how many `*.tmp` files.
JUNK_DIR = "cache"
JUNK_SHARE = 0.05
JUNK_TMP_FILES = 20

#: The exclusion options both tools take in the excluded backup.
EXCLUDES = ["--exclude", "*.tmp", "--exclude-caches"]

#: Every small file whose index in sorted order is 7 modulo this is made executable
#: (0755), every one at 11 modulo the other read-only (0444): modes the tools must keep.
EXECUTABLE_EVERY = 40
READONLY_EVERY = 60


# --- the plan --------------------------------------------------------------------------

@dataclass
class Plan:
    """Sizes, tools and limits of one run."""

    smoke: bool
    data_dir: Path
    keep: bool
    markdown: Path | None
    tools: list[str]
    libernet: Path | None
    build: bool
    small_files: int
    small_max: int
    large_files: int
    total_bytes: int
    change_percent: float
    append_bytes: int
    quiet_wait: float
    timeout: float
    node_log: str


@dataclass
class TreeShape:
    """The fields bench_bundle.make_tree reads from its plan."""

    small_files: int
    small_min: int
    small_max: int
    large_files: int
    total_bytes: int


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--smoke", action="store_true",
                   help="tiny tree (a few MiB), < 1 min; exit 1 on any error or mismatch")
    p.add_argument("--dir", type=Path, default=Path("/tmp/libernet-bench-backup"),
                   help="where the tree, store, repository and logs go (a fresh run-* "
                        "subdirectory)")
    p.add_argument("--keep", action="store_true", help="keep the run directory")
    p.add_argument("--markdown", type=Path, metavar="FILE",
                   help="also write the results as a Markdown section to FILE")
    p.add_argument("--only", default=",".join(TOOLS),
                   help="comma-separated tools to run: libernet, restic")
    p.add_argument("--libernet", type=Path, metavar="PATH",
                   help="the libernet binary to use (no build) [default: cargo build "
                        "--release, then $CARGO_TARGET_DIR/release/libernet]")
    p.add_argument("--no-build", action="store_true",
                   help="use the existing $CARGO_TARGET_DIR/release/libernet")
    p.add_argument("--small-files", type=int, help="small files in the tree [15000; smoke 300]")
    p.add_argument("--large-files", type=int, help="large random files [4; smoke 2]")
    p.add_argument("--total-mib", type=int,
                   help="approximate tree size in MiB, copies included [1024; smoke 8]")
    p.add_argument("--change-percent", type=float, default=1.0,
                   help="percent of the small files changed before the second backup")
    p.add_argument("--quiet-wait", type=float,
                   help="before each timed command, wait up to this many seconds for other "
                        "processes to use < 0.2 cores [60; smoke 0]")
    p.add_argument("--timeout", type=float,
                   help="seconds allowed for any one command [1800; smoke 120]")
    p.add_argument("--node-log", default="warn", help="LIBERNET_LOG for the node")
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    smoke = args.smoke

    def pick(value, full, tiny):
        return value if value is not None else (tiny if smoke else full)

    tools = [t.strip() for t in args.only.split(",") if t.strip()]
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown or not tools:
        raise SystemExit(f"--only: expected some of {', '.join(TOOLS)}, got {args.only!r}")
    return Plan(
        smoke=smoke,
        data_dir=args.dir.resolve(),
        keep=args.keep,
        markdown=args.markdown,
        tools=[t for t in TOOLS if t in tools],
        libernet=args.libernet,
        build=args.libernet is None and not args.no_build,
        small_files=pick(args.small_files, 15_000, 300),
        small_max=pick(None, 64 * 1024, 16 * 1024),
        large_files=max(1, pick(args.large_files, 4, 2)),
        total_bytes=pick(args.total_mib, 1024, 8) * MIB,
        change_percent=args.change_percent,
        append_bytes=pick(None, 8 * MIB, 256 * 1024),
        quiet_wait=pick(args.quiet_wait, 60.0, 0.0),
        timeout=pick(args.timeout, 1800.0, 120.0),
        node_log=args.node_log,
    )


# --- the tree --------------------------------------------------------------------------

@dataclass
class TreeInfo:
    """What was written, for the report and for choosing the files to change."""

    root: Path
    small: list[str]
    files: int = 0
    bytes: int = 0
    copies: int = 0
    copy_bytes: int = 0
    large_sizes: list[int] = field(default_factory=list)
    executable: int = 0
    readonly: int = 0
    changed: list[str] = field(default_factory=list)
    appended: str = ""


def write_tree(root: Path, plan: Plan) -> TreeInfo:
    """The deterministic tree: bench_bundle's small and large files (15/16 of the size),
    then modes, duplicated content, a symlink and an empty directory."""
    shape = TreeShape(plan.small_files, 100, plan.small_max, plan.large_files,
                      plan.total_bytes * 15 // 16)
    facts = make_tree(root, shape, seed=SEED)
    info = TreeInfo(root, sorted(rel for rel in facts.files if not rel.startswith("large/")),
                    large_sizes=list(facts.large_sizes))
    for i, rel in enumerate(info.small):
        if i % EXECUTABLE_EVERY == 7:
            (root / rel).chmod(0o755)
            info.executable += 1
        elif i % READONLY_EVERY == 11:
            (root / rel).chmod(0o444)
            info.readonly += 1
    add_copies(root, info, random.Random(SEED + 1))
    (root / "links").mkdir()
    (root / "links" / "first-large").symlink_to("../large/data0.bin")
    (root / "empty" / "inside").mkdir(parents=True)
    info.files, info.bytes = count_files(root)
    return info


def add_copies(root: Path, info: TreeInfo, rng: random.Random) -> None:
    """1% of the small files copied to two other directories each, and the first large
    file copied whole: content both tools should store once."""
    picked = rng.sample(info.small, max(2, len(info.small) // 100))
    for n, rel in enumerate(picked):
        flat = rel.replace("/", "_")
        for copy in (Path("copies/small") / flat, Path(f"top{n % 16:02d}/again/{flat}")):
            target = root / copy
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / rel, target)
            info.copies += 1
            info.copy_bytes += target.stat().st_size
    target = root / "copies" / "data0-copy.bin"
    shutil.copyfile(root / "large" / "data0.bin", target)
    info.copies += 1
    info.copy_bytes += target.stat().st_size


def change_tree(info: TreeInfo, plan: Plan) -> None:
    """Changes ``change_percent`` of the writable small files (half get 1 B to 4 KiB
    overwritten in place, same size; half get 100 B to 4 KiB appended) and appends
    ``append_bytes`` to the last large file."""
    rng = random.Random(SEED + 2)
    writable = [rel for rel in info.small if (info.root / rel).stat().st_mode & 0o200]
    count = max(1, round(len(info.small) * plan.change_percent / 100))
    info.changed = sorted(rng.sample(writable, min(count, len(writable))))
    for n, rel in enumerate(info.changed):
        path = info.root / rel
        size = path.stat().st_size
        if n % 2 == 0 and size > 0:
            offset = rng.randrange(size)
            with open(path, "r+b") as f:
                f.seek(offset)
                f.write(rng.randbytes(min(4096, size - offset)))
        else:
            with open(path, "ab") as f:
                f.write(rng.randbytes(rng.randint(100, 4096)))
    info.appended = f"large/data{plan.large_files - 1}.bin"
    extra = info.root / "append.tmp"
    write_random(extra, plan.append_bytes, SEED + 3)
    with open(info.root / info.appended, "ab") as f, open(extra, "rb") as src:
        shutil.copyfileobj(src, f)
    extra.unlink()
    info.files, info.bytes = count_files(info.root)


def add_junk(info: TreeInfo) -> int:
    """Writes the cache directory (a CACHEDIR.TAG and random files, JUNK_SHARE of the
    tree's bytes) and JUNK_TMP_FILES `*.tmp` files; returns their bytes."""
    cache = info.root / JUNK_DIR
    cache.mkdir()
    (cache / "CACHEDIR.TAG").write_bytes(
        b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache, for the benchmark\n")
    total = max(1, int(info.bytes * JUNK_SHARE))
    for n in range(4):
        write_random(cache / f"blob{n}", total // 4, SEED + 10 + n)
    for n in range(JUNK_TMP_FILES):
        path = info.root / f"scratch{n}.tmp"
        path.write_bytes(random.Random(SEED + 100 + n).randbytes(4096))
    return total + JUNK_TMP_FILES * 4096


def excluded(rel: str) -> bool:
    """True for what the restore after forget does not compare (see add_junk)."""
    return rel.endswith(".tmp") or rel == JUNK_DIR or rel.startswith(JUNK_DIR + "/")


def count_files(root: Path) -> tuple[int, int]:
    """Regular files under ``root`` and their bytes."""
    files = total = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode):
                files += 1
                total += st.st_size
    return files, total


def disk_usage(path: Path) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of everything under ``path``."""
    apparent = allocated = 0
    for dirpath, dirs, names in os.walk(path):
        for name in dirs + names:
            st = os.lstat(os.path.join(dirpath, name))
            apparent += st.st_size if not stat.S_ISDIR(st.st_mode) else 0
            allocated += st.st_blocks * 512
    return apparent, allocated


def warm(*dirs: Path) -> None:
    """Reads every regular file under ``dirs``, so both tools find them in the page
    cache."""
    buf = bytearray(MIB)
    for top in dirs:
        for dirpath, _dirs, names in os.walk(top):
            for name in names:
                path = os.path.join(dirpath, name)
                if not os.path.islink(path) and os.path.isfile(path):
                    with open(path, "rb", buffering=0) as f:
                        while f.readinto(buf):
                            pass


# --- checking a restore ----------------------------------------------------------------

def scan_meta(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: ("file", perm, mtime_ns), ("dir", perm),
    ("link", target) or ("other",), by relative path."""
    found: dict[str, tuple] = {}
    for dirpath, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                found[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
            else:
                found[rel] = ("other",)
    return found


def compare_meta(expected: dict[str, tuple], got: dict[str, tuple]) -> list[str]:
    """Entries missing or extra (directories and links included), kinds, permission
    bits, link targets and file mtimes (within MTIME_TOLERANCE_NS) that differ."""
    problems = []
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing:
        problems.append(f"{len(missing)} entries missing, e.g. {missing[:3]}")
    if extra:
        problems.append(f"{len(extra)} unexpected entries, e.g. {extra[:3]}")
    kinds, modes, times = [], [], []
    for rel in sorted(set(expected) & set(got)):
        want, have = expected[rel], got[rel]
        if want[0] != have[0] or (want[0] == "link" and want != have):
            kinds.append(f"{rel}: {want} vs {have}")
        elif want[0] in ("file", "dir") and want[1] != have[1]:
            modes.append(f"{rel}: {want[1]:o} vs {have[1]:o}")
        elif want[0] == "file" and abs(want[2] - have[2]) > MTIME_TOLERANCE_NS:
            times.append(f"{rel}: {want[2]} vs {have[2]} ns")
    for what, found in (("kinds or link targets", kinds), ("permissions", modes),
                        ("mtimes", times)):
        if found:
            problems.append(f"{len(found)} {what} differ, e.g. {found[:3]}")
    return problems


def stray_entries(dest: Path, root: Path) -> list[str]:
    """What a restore into ``dest`` wrote besides the path to the restored ``root``."""
    stray, here = [], dest
    for part in root.relative_to("/").parts:
        stray += [str(here / name) for name in os.listdir(here) if name != part]
        here = here / part
    return stray


@dataclass
class Expected:
    """The source tree as the restores must reproduce it."""

    contents: dict[str, tuple[int, str]]
    meta: dict[str, tuple]


def check_restore(expected: Expected, dest: Path, root: Path,
                  skip: Callable[[str], bool] | None = None) -> list[str]:
    """Problems of the tree restored under ``dest`` (at ``dest``/``root`` without its
    leading slash), not looking at paths ``skip`` names; empty when it is identical."""
    restored = dest / root.relative_to("/")
    if not restored.is_dir():
        return [f"nothing restored at {restored}"]
    keep = (lambda _: True) if skip is None else (lambda rel: not skip(rel))
    got_contents = {k: v for k, v in scan_tree(restored).items() if keep(k)}
    got_meta = {k: v for k, v in scan_meta(restored).items() if keep(k)}
    problems = compare_trees(expected.contents, got_contents)
    problems += compare_meta(expected.meta, got_meta)
    stray = stray_entries(dest, root)
    if stray:
        problems.append(f"{len(stray)} entries outside the restored path, e.g. {stray[:3]}")
    return problems


# --- measurements ----------------------------------------------------------------------

@dataclass
class Measure:
    """One timed command of one tool in one step."""

    step: str
    tool: str
    timed: Timed
    #: The tree's bytes, for MB/s; None for steps that do not move the tree.
    tree_bytes: int | None
    node_cpu_s: float | None = None
    node_hwm_kib: int | None = None
    node_start_kib: int | None = None
    #: (apparent, allocated) bytes of the blocks or repository after a backup.
    stored: tuple[int, int] | None = None
    note: str = ""

    @property
    def mb_s(self) -> float | None:
        return self.tree_bytes / self.timed.seconds / 1e6 if self.tree_bytes else None


def last_json(text: str, want: Callable[[dict], bool] = lambda _: True) -> dict | None:
    """The last line of ``text`` that is a JSON object accepted by ``want``."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                data = json.loads(line)
                if isinstance(data, dict) and want(data):
                    return data
    return None


def clean_env(home: Path, drop: tuple[str, ...]) -> dict[str, str]:
    """This process's environment without variables starting with ``drop``, with HOME
    and the XDG directories inside ``home`` (so no tool reads or writes the user's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_CACHE_HOME=str(home / ".cache"), XDG_DATA_HOME=str(home / ".local/share"),
               XDG_STATE_HOME=str(home / ".local/state"))
    home.mkdir(parents=True, exist_ok=True)
    return env


class Tool:
    """One backup tool under test. Each method runs one step and returns its Measure;
    it raises BenchFailure or ServerError when the tool fails."""

    name = ""

    def __init__(self, bench: Bench):
        self.bench = bench
        self.broken = False

    def setup(self) -> Measure:
        raise NotImplementedError

    def backup(self, step: str, exclude: bool = False) -> Measure:
        raise NotImplementedError

    def forget(self) -> Measure:
        raise NotImplementedError

    def restore(self, dest: Path) -> Measure:
        raise NotImplementedError

    def verify(self) -> Measure:
        raise NotImplementedError

    def state_note(self) -> str:
        """Sizes of what the tool keeps besides its repository (caches, indexes)."""
        raise NotImplementedError


class Restic(Tool):
    """restic with a fresh local repository; its cache and HOME inside the run dir."""

    name = "restic"

    def __init__(self, bench: Bench):
        super().__init__(bench)
        run = bench.run_dir
        self.repo, self.cache = run / "restic-repo", run / "restic-cache"
        self.env = clean_env(run / "home-restic", ("RESTIC_",))
        self.env.update(RESTIC_REPOSITORY=str(self.repo), RESTIC_PASSWORD=PASSPHRASE,
                        RESTIC_CACHE_DIR=str(self.cache))

    def run(self, args: list[str], name: str, quiet: bool = True) -> Timed:
        if quiet:
            self.bench.quiet([])
        return run_timed([str(RESTIC), *args], self.bench.run_dir / "cli", f"restic-{name}",
                         self.bench.plan.timeout, self.env)

    def setup(self) -> Measure:
        timed = self.run(["init"], "init", quiet=False)
        return Measure("setup", self.name, timed, None, note="restic init")

    def backup(self, step: str, exclude: bool = False) -> Measure:
        root = self.bench.tree.root
        extra = EXCLUDES if exclude else []
        timed = self.run(["backup", "--json", *extra, str(root)], step.replace(" ", "-"))
        summary = last_json(timed.stdout, lambda d: d.get("message_type") == "summary")
        note = "no summary line"
        if summary:
            note = (f"new {summary.get('files_new')}, changed {summary.get('files_changed')}, "
                    f"unmodified {summary.get('files_unmodified')}, added "
                    f"{summary.get('data_added', 0) / 1e6:,.1f} MB")
        return Measure(step, self.name, timed, self.bench.tree.bytes,
                       stored=disk_usage(self.repo), note=note)

    def restore(self, dest: Path, step: str = "restore") -> Measure:
        timed = self.run(["restore", "latest", "--target", str(dest)], step.replace(" ", "-"))
        return Measure(step, self.name, timed, self.bench.tree.bytes)

    def forget(self) -> Measure:
        timed = self.run(["forget", "--keep-daily", "1", "--prune"], "forget")
        return Measure("forget", self.name, timed, None, stored=disk_usage(self.repo),
                       note="restic forget --keep-daily 1 --prune")

    def verify(self) -> Measure:
        timed = self.run(["check", "--read-data"], "check")
        return Measure("verify", self.name, timed, None, note="restic check --read-data")

    def state_note(self) -> str:
        return f"cache {disk_usage(self.cache)[0] / 1e6:,.1f} MB"


class Libernet(Tool):
    """`libernet backup` against a release node on a fresh store. The node is started
    before each step and stopped after it, so its VmHWM is that step's peak."""

    name = "libernet"

    def __init__(self, bench: Bench, binary: Path):
        super().__init__(bench)
        self.binary = binary
        self.store = bench.run_dir / "store"
        self.home = bench.run_dir / "home-libernet"
        self.env = clean_env(self.home, ("LIBERNET_",))
        self.env.update(LIBERNET_USER=USER, LIBERNET_PASSPHRASE=PASSPHRASE,
                        LIBERNET_MACHINE=MACHINE, LIBERNET_LOG="warn")
        self.starts = 0

    @contextlib.contextmanager
    def node(self) -> Iterator[NodeProcess]:
        """A node on the store, stopped on the way out (a failed stop is recorded)."""
        self.starts += 1
        name = f"node-{self.starts}"
        quota = str(max(4 << 30, 4 * self.bench.plan.total_bytes))
        node = start_node(self.binary, self.store, self.bench.run_dir / name,
                          self.bench.plan.node_log, quota=quota)
        try:
            self.env["LIBERNET_SERVER"] = node.url
            self.env["LIBERNET_TOKEN"] = (self.store / "admin.token").read_text().strip()
            yield node
            if not node.alive():
                raise BenchFailure(f"{name} died (status {node.proc.returncode})")
        finally:
            try:
                node.stop()
            except ServerError as e:
                self.bench.failures.append(f"{name}: {e}")

    def run(self, node: NodeProcess, args: list[str], name: str, step: str,
            tree_bytes: int | None, quiet: bool = True) -> Measure:
        """``libernet ARGS`` timed, with the node's CPU and peak memory meanwhile."""
        start_kib = memory_kib(node.pid)["VmRSS"]
        if quiet:
            self.bench.quiet([node.pid])
        cpu0 = cpu_seconds(node.pid)
        timed = run_timed([str(self.binary), *args], self.bench.run_dir / "cli",
                          f"libernet-{name}", self.bench.plan.timeout, self.env)
        return Measure(step, self.name, timed, tree_bytes, cpu_seconds(node.pid) - cpu0,
                       memory_kib(node.pid)["VmHWM"], start_kib)

    def setup(self) -> Measure:
        with self.node() as node:
            m = self.run(node, ["backup", "add", "--new-set", str(self.bench.tree.root)],
                         "add", "setup", None, quiet=False)
        m.note = "libernet backup add --new-set TREE"
        return m

    def backup(self, step: str, exclude: bool = False) -> Measure:
        extra = EXCLUDES if exclude else []
        with self.node() as node:
            m = self.run(node, ["backup", "run", "--json", *extra], step.replace(" ", "-"),
                         step, self.bench.tree.bytes)
        summary = last_json(m.timed.stdout)
        if summary is None:
            raise BenchFailure(f"libernet backup run printed no JSON object: "
                               f"{m.timed.stdout[:300]!r}")
        m.note = ", ".join(f"{k} {summary[k]:,}" if isinstance(summary[k], int)
                           else f"{k} {summary[k]:.2f}" if isinstance(summary[k], float)
                           else f"{k} {summary[k]}"
                           for k in RUN_FIELDS + (("excluded",) if exclude else ())
                           if k in summary)
        m.stored = disk_usage(self.store / "blocks")
        return m

    def restore(self, dest: Path, step: str = "restore") -> Measure:
        with self.node() as node:
            return self.run(node, ["backup", "restore", "--to", str(dest)],
                            step.replace(" ", "-"), step, self.bench.tree.bytes)

    def forget(self) -> Measure:
        with self.node() as node:
            m = self.run(node, ["backup", "forget", "--keep-daily", "1", "--json"], "forget",
                         "forget", None)
        done = last_json(m.timed.stdout)
        if done is None:
            raise BenchFailure(f"libernet backup forget printed no JSON object: "
                               f"{m.timed.stdout[:300]!r}")
        pins = done.get("pins") or {}
        m.note = (f"libernet backup forget --keep-daily 1: kept {len(done['kept'])}, "
                  f"forgot {len(done['removed'])}, {pins.get('released', 0):,} pins released "
                  "(blocks stay until evicted)")
        m.stored = disk_usage(self.store / "blocks")
        return m

    def verify(self) -> Measure:
        with self.node() as node:
            m = self.run(node, ["backup", "verify"], "verify", "verify", None)
        m.note = "libernet backup verify"
        return m

    def state_note(self) -> str:
        return (f"client state (HOME) {disk_usage(self.home)[0] / 1e6:,.1f} MB, whole store "
                f"{disk_usage(self.store)[0] / 1e6:,.1f} MB")


# --- the run ---------------------------------------------------------------------------

class Bench:
    """One run: the tree, the tools, and what was measured."""

    def __init__(self, plan: Plan, run_dir: Path):
        self.plan = plan
        self.run_dir = run_dir
        self.failures: list[str] = []
        self.measures: list[Measure] = []
        self.state_notes: list[str] = []
        self.tree: TreeInfo | None = None
        self.tools: list[Tool] = []

    def quiet(self, own_pids: list[int]) -> None:
        if self.plan.quiet_wait > 0:
            waited, other = wait_for_quiet(own_pids, self.plan.quiet_wait)
            if waited >= 1:
                say(f"  (waited {waited:.0f} s for other load to settle; now {other:.2f} cores)")

    def step(self, title: str, action: Callable[[Tool], Measure],
             after: Callable[[Tool, Measure], None] | None = None) -> None:
        """Runs ``action`` for every tool still working; a failure marks the tool broken
        (its later steps are skipped) and is reported, the other tool goes on."""
        say(f"{title}:")
        for tool in self.tools:
            if tool.broken:
                say(f"  {tool.name}: skipped (failed earlier)")
                continue
            try:
                m = action(tool)
            except (BenchFailure, ServerError, OSError) as e:
                self.fail(tool, title, e)
                continue
            self.measures.append(m)
            try:
                if after:
                    after(tool, m)
            except (BenchFailure, ServerError, OSError) as e:
                self.fail(tool, title, e)
            say("  " + measure_line(m))

    def fail(self, tool: Tool, title: str, error: Exception) -> None:
        tool.broken = True
        self.failures.append(f"{tool.name} {title}: {type(error).__name__}: {error}")
        say(f"  {tool.name}: FAILED: {error}")

    def run(self, binary: Path | None) -> None:
        plan, root = self.plan, self.run_dir / "tree"
        say(f"writing the tree: {plan.small_files:,} small files + {plan.large_files} large, "
            f"~{plan.total_bytes / MIB:,.0f} MiB")
        self.tree = write_tree(root, plan)
        os.sync()
        say(f"  {self.tree.files:,} files, {self.tree.bytes / 1e6:,.1f} MB, "
            f"{self.tree.copies} of them copies ({self.tree.copy_bytes / 1e6:,.1f} MB)")
        self.tools = [Libernet(self, binary) if t == "libernet" else Restic(self)
                      for t in plan.tools]
        self.step("setup", lambda t: t.setup())
        warm(root)
        self.step("first backup", lambda t: t.backup("first backup"))
        change_tree(self.tree, plan)
        os.sync()
        say(f"changed {len(self.tree.changed)} small files and appended "
            f"{plan.append_bytes / MIB:g} MiB to {self.tree.appended}")
        warm(root)
        self.step("second backup", lambda t: t.backup("second backup"))
        expected = Expected(scan_tree(root), scan_meta(root))
        for tool in self.tools:
            if isinstance(tool, Libernet) and not tool.broken:
                warm(tool.store / "blocks")
            elif isinstance(tool, Restic) and not tool.broken:
                warm(tool.repo)
        self.step("restore", lambda t: t.restore(self.restore_dir(t)),
                  lambda t, m: self.check(t, m, expected, root))
        self.step("verify", lambda t: t.verify())
        junk = add_junk(self.tree)
        os.sync()
        say(f"added {junk / 1e6:,.1f} MB to exclude: {JUNK_DIR}/ (CACHEDIR.TAG) and "
            f"{JUNK_TMP_FILES} *.tmp files")
        warm(root)
        self.step("excluded backup", lambda t: t.backup("excluded backup", exclude=True))
        self.step("forget", lambda t: t.forget())
        kept = Expected({k: v for k, v in scan_tree(root).items() if not excluded(k)},
                        {k: v for k, v in scan_meta(root).items() if not excluded(k)})
        self.step("restore after forget",
                  lambda t: t.restore(self.restore_dir(t, "after-forget"),
                                      "restore after forget"),
                  lambda t, m: self.check(t, m, kept, root, "after-forget"))
        for tool in self.tools:
            with contextlib.suppress(OSError):
                self.state_notes.append(f"{tool.name} afterwards: {tool.state_note()}")

    def restore_dir(self, tool: Tool, suffix: str = "") -> Path:
        return self.run_dir / f"restored-{tool.name}{'-' + suffix if suffix else ''}"

    def check(self, tool: Tool, m: Measure, expected: Expected, root: Path,
              suffix: str = "") -> None:
        """Fails the restore step unless the restored tree equals the source (less what
        ``excluded`` names, when ``suffix`` is the restore after forget)."""
        dest = self.restore_dir(tool, suffix)
        problems = check_restore(expected, dest, root, excluded if suffix else None)
        if problems:
            m.note = "MISMATCH: " + "; ".join(problems)
            raise BenchFailure("restored tree differs: " + "; ".join(problems))
        m.note = (f"identical to the source: {len(expected.contents):,} files and links by "
                  f"size and SHA-256; "
                  f"modes, mtimes, links of {len(expected.meta):,} entries")
        if not self.plan.keep:
            shutil.rmtree(dest, ignore_errors=True)


def measure_line(m: Measure) -> str:
    """One progress line."""
    t = m.timed
    parts = [f"{m.tool}: {t.seconds:.2f} s"]
    if m.mb_s is not None:
        parts.append(f"{m.mb_s:,.0f} MB/s")
    parts.append(f"CPU {t.cpu_s:.1f} s, peak RSS {t.maxrss_kib / 1024:,.0f} MiB")
    if m.node_hwm_kib is not None:
        parts.append(f"node CPU {m.node_cpu_s:.1f} s, VmHWM {m.node_hwm_kib / 1024:,.0f} MiB")
    if m.stored:
        parts.append(f"stored {m.stored[0] / 1e6:,.1f} MB")
    return ", ".join(parts) + (f" [{m.note}]" if m.note else "")


# --- report ----------------------------------------------------------------------------

STEPS = ("setup", "first backup", "second backup", "restore", "verify", "excluded backup",
         "forget", "restore after forget")


def find(measures: list[Measure], step: str, tool: str) -> Measure | None:
    return next((m for m in measures if m.step == step and m.tool == tool), None)


def time_ratio(measures: list[Measure], step: str) -> float | None:
    """libernet's seconds over restic's in ``step``, when both ran."""
    ours, theirs = find(measures, step, "libernet"), find(measures, step, "restic")
    if ours and theirs and theirs.timed.seconds > 0:
        return ours.timed.seconds / theirs.timed.seconds
    return None


def table(measures: list[Measure]) -> str:
    headers = ["step", "tool", "seconds", "MB/s", "libernet/restic time", "client CPU s",
               "client peak RSS", "node CPU s", "node VmHWM", "stored after", "notes"]
    lines = []
    for step in STEPS:
        for m in (x for x in measures if x.step == step):
            ratio = time_ratio(measures, step) if m.tool == "libernet" else None
            lines.append([
                m.step, m.tool, f"{m.timed.seconds:.2f}",
                f"{m.mb_s:,.0f}" if m.mb_s is not None else "",
                f"{ratio:.2f}x" if ratio is not None else "",
                f"{m.timed.cpu_s:.1f}", f"{m.timed.maxrss_kib / 1024:,.0f} MiB",
                f"{m.node_cpu_s:.1f}" if m.node_cpu_s is not None else "",
                (f"{m.node_hwm_kib / 1024:,.0f} MiB (start {m.node_start_kib / 1024:,.0f})"
                 if m.node_hwm_kib is not None else ""),
                (f"{m.stored[0] / 1e6:,.1f} MB ({m.stored[1] / 1e6:,.1f} on disk)"
                 if m.stored else ""),
                m.note,
            ])
    return render_table(headers, lines)


def verdicts(measures: list[Measure]) -> list[Verdict]:
    out = []
    for step, limit in (("first backup", FIRST_VS_RESTIC), ("second backup", SECOND_VS_RESTIC),
                        ("restore", RESTORE_VS_RESTIC)):
        ratio = time_ratio(measures, step)
        if ratio is None:
            continue
        ours, theirs = find(measures, step, "libernet"), find(measures, step, "restic")
        out.append(Verdict(f"{step}: libernet time <= {limit:g}x restic's",
                           f"{ours.timed.seconds:.2f} s vs {theirs.timed.seconds:.2f} s = "
                           f"{ratio:.2f}x", ratio <= limit))
    for step in ("first backup", "second backup", "restore"):
        ours, theirs = find(measures, step, "libernet"), find(measures, step, "restic")
        if ours is None or theirs is None or not theirs.timed.maxrss_kib:
            continue
        ratio = ours.timed.maxrss_kib / theirs.timed.maxrss_kib
        out.append(Verdict(f"{step}: libernet peak RSS <= {MEMORY_VS_RESTIC:g}x restic's",
                           f"{ours.timed.maxrss_kib / 1024:,.0f} MiB vs "
                           f"{theirs.timed.maxrss_kib / 1024:,.0f} MiB = {ratio:.2f}x",
                           ratio <= MEMORY_VS_RESTIC))
    return out


def settings_lines(plan: Plan, bench: Bench) -> list[str]:
    lines = [f"mode: {'smoke' if plan.smoke else 'full'}; tools: {', '.join(plan.tools)}"]
    tree = bench.tree
    if tree:
        lines.append(
            f"tree (after the changes): {tree.files:,} regular files, {tree.bytes:,} bytes "
            f"({tree.bytes / MIB:,.1f} MiB): {plan.small_files:,} small files of "
            f"100-{plan.small_max:,} bytes (uniform; half English-like text, half random; "
            f"{tree.executable} made 0755, {tree.readonly} made 0444), "
            f"{len(tree.large_sizes)} large random files of "
            f"{', '.join(f'{s / MIB:.1f}' for s in tree.large_sizes)} MiB, {tree.copies} "
            f"copies ({tree.copy_bytes / MIB:,.1f} MiB: 1% of the small files twice each, "
            "and large/data0.bin once), a symlink and an empty directory; written by "
            f"bench_bundle.make_tree and this script with seed {SEED}")
        lines.append(
            f"change before the second backup: {len(tree.changed)} small files "
            f"({plan.change_percent:g}%; half overwritten in place, half appended to) and "
            f"{plan.append_bytes / MIB:g} MiB appended to {tree.appended}")
    lines += [
        "page cache warm for every timed command: the tree is read whole before each "
        "backup, the node's blocks/ and the restic repository before the restores",
        f"libernet: a release node (`serve --store S --listen 127.0.0.1:0`, "
        f"LIBERNET_LOG={plan.node_log}) restarted before each step; the client with "
        "LIBERNET_SERVER/USER/PASSPHRASE/MACHINE/TOKEN (the node's admin token), HOME and "
        "XDG dirs in the run dir, LIBERNET_LOG=warn",
        "restic: a local repository in the run dir (`restic init` defaults: repository "
        "version 2, compression auto), RESTIC_CACHE_DIR and HOME in the run dir; "
        "`backup --json TREE`, `restore latest --target DEST`, `check --read-data`, "
        "`backup --json --exclude '*.tmp' --exclude-caches TREE`, "
        "`forget --keep-daily 1 --prune`",
        "restore check: every file's size and SHA-256, every entry's kind, permission bits "
        f"(files and directories), symlink targets, file mtimes within "
        f"{MTIME_TOLERANCE_NS // 1000} us, nothing written outside DEST/<tree path>",
        "client CPU: wait4() of the command; client peak RSS: GNU time's %M; node CPU and "
        "VmHWM from /proc (the node restarted right before the step; start = its VmRSS "
        "then); stored after: apparent bytes of the node's blocks/ or of the whole restic "
        "repository (allocated bytes in brackets)",
        "MB/s: the tree's bytes (1 MB = 10^6 bytes) over the command's wall time",
        f"before each timed command: wait up to {plan.quiet_wait:g} s for other processes "
        "to use < 0.2 cores",
    ]
    lines += bench.state_notes
    return lines


def report(plan: Plan, machine: list[tuple[str, str]], command: str, bench: Bench) -> str:
    out = ["### Machine", ""] + [f"- {k}: {v}" for k, v in machine]
    out += ["", "### Command", "", "```", command, "```", "", "### Settings", ""]
    out += [f"- {s}" for s in settings_lines(plan, bench)]
    out += ["", "### Results", "", table(bench.measures)]
    lines = [v.line() for v in verdicts(bench.measures)]
    out += ["", "### Targets", "", "```"]
    out += lines or ["(none: the targets compare libernet with restic, and one did not run)"]
    out += ["```"]
    if bench.failures:
        # One line per failure: a command's stderr would break the Markdown list.
        out += ["", "### Failures", ""]
        out += ["- " + " / ".join(x.strip() for x in f.splitlines() if x.strip())
                for f in bench.failures]
    return "\n".join(out) + "\n"


# --- main ------------------------------------------------------------------------------

def find_binary(plan: Plan) -> Path | None:
    """The libernet binary: --libernet, else built (or not, with --no-build) in
    $CARGO_TARGET_DIR/release."""
    if "libernet" not in plan.tools:
        return None
    if plan.libernet:
        return plan.libernet.resolve()
    return build_node() if plan.build else target_dir() / "release" / "libernet"


def machine_lines(plan: Plan, binary: Path | None, copied: Path | None) -> list[tuple[str, str]]:
    """bench_node's description without the nginx and wrk lines, plus the two tools."""
    lines = [(k, v) for k, v in describe_machine(plan.data_dir) if k not in ("nginx", "wrk")]
    if "restic" in plan.tools:
        try:
            done = subprocess.run([str(RESTIC), "version"], capture_output=True, text=True,
                                  timeout=30)
            lines.append(("restic", done.stdout.strip() or done.stderr.strip()))
        except (OSError, subprocess.TimeoutExpired) as e:
            lines.append(("restic", f"unavailable ({e})"))
    if binary and copied:
        digest = hashlib.sha256(copied.read_bytes()).hexdigest()[:16]
        lines.append(("libernet binary", f"{binary} (sha256 {digest}..., copied for the run)"))
    return lines


def run(plan: Plan) -> int:
    command = shlex.join(sys.orig_argv)
    plan.data_dir.mkdir(parents=True, exist_ok=True)
    say(f"command: {command}")
    need = 4.5 * plan.total_bytes
    free = shutil.disk_usage(plan.data_dir).free
    if free < need:
        say(f"FAILED: {plan.data_dir} has {free / 1e9:.1f} GB free, needs ~{need / 1e9:.1f} GB")
        return 1
    if "restic" in plan.tools and not RESTIC.exists():
        say(f"FAILED: {RESTIC} not found (apt-get install restic)")
        return 1
    try:
        built = find_binary(plan)
    except (BenchFailure, OSError, ValueError) as e:
        say(f"FAILED: {e}")
        return 1
    if built is not None and not built.is_file():
        say(f"FAILED: no libernet binary at {built}")
        return 1
    run_dir = plan.data_dir / f"run-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    run_dir.mkdir(parents=True)
    say(f"data: {run_dir}")
    binary = None
    if built is not None:
        binary = run_dir / "libernet"
        shutil.copy2(built, binary)
    machine = machine_lines(plan, built, binary)
    print("machine:\n" + "\n".join(f"  {k}: {v}" for k, v in machine))

    bench = Bench(plan, run_dir)
    try:
        bench.run(binary)
    except (BenchFailure, ServerError, OSError) as e:
        bench.failures.append(f"{type(e).__name__}: {e}")
    finally:
        if not plan.keep:
            make_writable(run_dir)
            shutil.rmtree(run_dir, ignore_errors=True)
    text = report(plan, machine, command, bench)
    title = (f"## Backup: libernet against restic ({'smoke' if plan.smoke else 'full'} "
             f"run, {dict(machine)['date']})")
    return publish(text, plan.markdown, title, bench.failures, say)


def make_writable(top: Path) -> None:
    """Gives every directory under ``top`` its owner's write bit back, so rmtree works
    for a non-root user even if a restore left read-only directories."""
    for dirpath, dirs, _names in os.walk(top):
        for name in dirs:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) | 0o700)


def main(argv: list[str] | None = None) -> int:
    # SIGTERM unwinds like Ctrl-C, so the node is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run(make_plan(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
