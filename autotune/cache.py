"""The on-disk cache of compiled artifacts (CPU object code now; cubins and tuning results
with later work).

Layout: <root>/<key[:2]>/<key>/{meta.json, <artifact files>}. An entry is written into a
temporary folder and renamed into place, under a per-key file lock, so readers only ever see
complete entries. meta.json (JSON, never pickle) holds a sha256 per artifact; an entry whose
files do not match is removed and rebuilt. Keys hash the parts given by the caller together
with fusec's own version and a hash of its sources, so a changed compiler never reads old
entries. The folder is created 0700; if it cannot be written, a temporary folder is used
with a warning. The total size is capped: least recently used entries go first.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from filelock import FileLock, Timeout

DEFAULT_MAX_BYTES = 2 * 2 ** 30
_META = "meta.json"
_MEMOS = "memos"     # small answers kept across processes (compiler_fingerprint's, ...)


def _source_files() -> list[tuple[os.DirEntry, str]]:
    """(directory entry, package/relative name) of every source file of fusec's packages
    (plain os.scandir: pathlib took 4 of a warm first compile's ms)."""
    import fusec
    from fusec import autotune, backends, ir, passes
    out = []
    for package in (fusec, ir, passes, backends, autotune):
        root = os.path.dirname(package.__file__)
        stack = [(root, package.__name__ + "/")]
        while stack:
            folder, prefix = stack.pop()
            with os.scandir(folder) as entries:
                for e in entries:
                    if e.is_dir() and e.name != "__pycache__":
                        stack.append((e.path, prefix + e.name + "/"))
                    elif e.name.endswith((".py", ".lark")):
                        out.append((e, prefix + e.name))
    return sorted(out, key=lambda f: f[1])


def read_memo(path: Path) -> str | None:
    """A memo's text (see DiskCache.memos), or None when there is none to read."""
    try:
        return path.read_text()
    except OSError:
        return None


def write_memo(path: Path, text: str) -> None:
    """Write a memo atomically (a reader sees all of it or none); quietly nothing when
    the folder cannot be written (the answer is computed again next time)."""
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        pass


@functools.lru_cache(maxsize=None)
def compiler_fingerprint(memo: Path | None = None) -> str:
    """sha256 over fusec's version and every source file of its packages. With `memo` (a
    folder), the digest is kept there under a stamp of the files' names, sizes and
    modification times, so a later process skips reading them (as Python trusts those
    for its bytecode caches): ~5 ms of a warm process's first compile."""
    import fusec
    files = _source_files()
    stamp_file = None
    if memo is not None:
        stamp = hashlib.sha256(fusec.__version__.encode())
        for entry, name in files:
            st = entry.stat()
            stamp.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        stamp_file = memo / f"fingerprint-{stamp.hexdigest()}"
        known = read_memo(stamp_file) or ""
        if len(known) == 64 and all(c in "0123456789abcdef" for c in known):
            return known
    digest = hashlib.sha256(fusec.__version__.encode())
    for entry, name in files:
        digest.update(name.encode())
        with open(entry.path, "rb") as f:
            digest.update(f.read())
    value = digest.hexdigest()
    if stamp_file is not None:
        write_memo(stamp_file, value)
    return value


def cache_root() -> Path:
    """The cache folder: FUSEC_CACHE_DIR, else the user cache folder."""
    env = os.environ.get("FUSEC_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs
    return Path(platformdirs.user_cache_dir("fusec"))


def _usable(root: Path) -> bool:
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=root, prefix=".probe-", delete=True)
        probe.close()
        return True
    except OSError:
        return False


class DiskCache:
    def __init__(self, root: str | Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES):
        wanted = Path(root) if root is not None else cache_root()
        if not _usable(wanted):
            fallback = Path(tempfile.mkdtemp(prefix="fusec-cache-"))
            warnings.warn(f"fusec: cache folder {wanted} cannot be written; using {fallback} "
                          "for this process", RuntimeWarning, stacklevel=2)
            wanted = fallback
        self.root = wanted
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._unscanned = None       # bytes this process put since it last scanned the folder

    @property
    def memos(self) -> Path:
        """The folder of small answers worth keeping across processes (not entries: no
        eviction; `clear` removes it): the hash of fusec's sources by a stamp of their
        sizes and mtimes, the GPU toolchain's versions by a stamp of the environment."""
        return self.root / _MEMOS

    # -- keys ------------------------------------------------------------------------------
    def key(self, *parts) -> str:
        """A key for JSON-able parts, covering the compiler's own sources."""
        text = json.dumps([compiler_fingerprint(self.memos), *parts],
                          sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def _entry(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"bad cache key {key!r}")
        return self.root / key[:2] / key

    def _lock(self, key: str) -> FileLock:
        folder = self.root / key[:2]
        folder.mkdir(mode=0o700, exist_ok=True)
        return FileLock(str(folder / f".{key}.lock"), timeout=60)

    # -- read ------------------------------------------------------------------------------
    def get(self, key: str, required=()) -> dict[str, bytes] | None:
        """The entry's artifacts by name, or None (missing, lacking one of the `required`
        names, or corrupt and now removed)."""
        entry = self._entry(key)
        try:
            meta = json.loads((entry / _META).read_text())
            files = {}
            for name, digest in meta["files"].items():
                data = (entry / name).read_bytes()
                if hashlib.sha256(data).hexdigest() != digest:
                    raise ValueError(f"checksum mismatch in {name}")
                files[name] = data
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.discard(key)                     # corrupt or truncated: rebuild it
            self.misses += 1
            return None
        if not set(required) <= set(files):       # written by another build: a miss
            self.misses += 1
            return None
        try:
            os.utime(entry / _META)               # recently used, for eviction
        except OSError:
            pass
        self.hits += 1
        return files

    # -- write -----------------------------------------------------------------------------
    def put(self, key: str, files: dict[str, bytes], info: dict | None = None) -> None:
        entry = self._entry(key)
        for name in files:
            if name == _META or "/" in name or name.startswith("."):
                raise ValueError(f"bad artifact name {name!r}")
        try:
            with self._lock(key):
                if set(files) <= self._artifacts(entry):
                    return                        # another process wrote it first
                tmp = Path(tempfile.mkdtemp(prefix=f".{key[:8]}-", dir=entry.parent))
                try:
                    for name, data in files.items():
                        (tmp / name).write_bytes(data)
                    meta = {"files": {n: hashlib.sha256(d).hexdigest() for n, d in files.items()},
                            "created": time.time(), "info": info or {}}
                    (tmp / _META).write_text(json.dumps(meta, sort_keys=True))
                    if entry.exists():            # a leftover: corrupt, or fewer artifacts
                        shutil.rmtree(entry, ignore_errors=True)
                    os.replace(tmp, entry)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
        except (OSError, Timeout) as exc:
            warnings.warn(f"fusec: could not write cache entry {key[:12]}: {exc}",
                          RuntimeWarning, stacklevel=2)
            return
        self._evict_now_and_then(sum(len(data) for data in files.values()))

    @staticmethod
    def _artifacts(entry: Path) -> set[str]:
        """The artifact names a complete entry lists (none: missing or unreadable; an
        entry lacking some of a put's artifacts is written anew)."""
        try:
            return set(json.loads((entry / _META).read_text())["files"])
        except (OSError, ValueError, KeyError, TypeError):
            return set()

    def discard(self, key: str) -> None:
        """Remove an entry (one its reader found unusable: the next put writes it anew)."""
        shutil.rmtree(self._entry(key), ignore_errors=True)

    # -- housekeeping ----------------------------------------------------------------------
    def entries(self) -> list[tuple[Path, int, float]]:
        """(folder, bytes, last used) of every complete entry."""
        out = []
        for meta in self.root.glob(f"??/*/{_META}"):
            folder = meta.parent
            try:
                size = sum(f.stat().st_size for f in folder.iterdir())
                out.append((folder, size, meta.stat().st_mtime))
            except OSError:
                continue
        return out

    def _evict_now_and_then(self, put_bytes: int) -> None:
        """Scan the folder (a stat of every file) on a process's first put, then once it
        has put another sixteenth of the cap: a scan per put made a test session of a few
        thousand compiles quadratic (13 min against 6). The cap may be passed by that
        much per writing process between scans."""
        if self._unscanned is not None and \
                self._unscanned + put_bytes < self.max_bytes // 16:
            self._unscanned += put_bytes
            return
        self._unscanned = 0
        self._evict()

    def _evict(self) -> None:
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        for folder, size, _ in sorted(entries, key=lambda e: e[2]):
            if total <= self.max_bytes:
                break
            shutil.rmtree(folder, ignore_errors=True)
            total -= size

    def info(self) -> dict:
        """Entries and bytes, in all and by the kind their writer named (cubins, whole
        kernels, tuning results, ...)."""
        entries = self.entries()
        kinds: dict[str, list[int]] = {}
        for folder, size, _ in entries:
            try:
                kind = json.loads((folder / _META).read_text())["info"].get("kind", "other")
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                kind = "other"
            count = kinds.setdefault(str(kind), [0, 0])
            count[0] += 1
            count[1] += size
        return {"root": str(self.root), "entries": len(entries),
                "bytes": sum(size for _, size, _ in entries), "max_bytes": self.max_bytes,
                "kinds": {k: {"entries": n, "bytes": b} for k, (n, b) in sorted(kinds.items())}}

    def clear(self) -> int:
        entries = self.entries()
        for folder, _, _ in entries:
            shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(self.memos, ignore_errors=True)
        return len(entries)


_DEFAULT: tuple[Path, DiskCache] | None = None


def default_cache() -> DiskCache | None:
    """The process's cache (FUSEC_CACHE_DIR, else the user cache folder); None when
    FUSEC_DISABLE_CACHE=1."""
    global _DEFAULT
    if os.environ.get("FUSEC_DISABLE_CACHE") == "1":
        return None
    wanted = cache_root()
    if _DEFAULT is None or _DEFAULT[0] != wanted:
        _DEFAULT = (wanted, DiskCache(wanted))
    return _DEFAULT[1]
