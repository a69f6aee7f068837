"""The on-disk cache: a second process loads instead of compiling, concurrent writers,
corrupt entries rebuilt, unusable folders fall back to a temp folder, no pickle."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fusec.autotune.cache import DiskCache, compiler_fingerprint

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, sys
import numpy as np
sys.path.insert(0, {examples!r})
from layernorm import layernorm, reference
x = np.random.default_rng(0).standard_normal((33, 70)).astype(np.float32)
w = np.ones(70, np.float32); b = np.zeros(70, np.float32)
ck = layernorm.compile(x, w, b, 1e-5, backend="cpu")
err = float(np.abs(ck(x, w, b, 1e-5) - reference(x, w, b)).max())
print(json.dumps({{"from_cache": ck.from_cache, "err": err}}))
"""


def _child(cache_dir, *, wait=True):
    # the object-code level of the cache: without whole kernels (test_kernel_store.py),
    # which would skip it in the second process
    env = dict(os.environ, FUSEC_CACHE_DIR=str(cache_dir), FUSEC_KERNEL_CACHE="0")
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(examples=str(ROOT / "examples"))],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    return _result(proc)


def _result(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_second_process_loads_instead_of_compiling(tmp_path):
    first = _child(tmp_path)
    second = _child(tmp_path)
    assert first == {"from_cache": False, "err": first["err"]} and first["err"] < 1e-5
    assert second["from_cache"] is True and second["err"] < 1e-5
    assert DiskCache(tmp_path).info()["entries"] == 1


def test_concurrent_processes_compiling_the_same_kernel(tmp_path):
    procs = [_child(tmp_path, wait=False) for _ in range(3)]
    results = [_result(p) for p in procs]
    assert all(r["err"] < 1e-5 for r in results)
    assert DiskCache(tmp_path).info()["entries"] == 1
    assert _child(tmp_path)["from_cache"] is True


def test_corrupt_or_truncated_entries_are_rebuilt(tmp_path):
    _child(tmp_path)
    (obj,) = tmp_path.glob("??/*/object.o")
    obj.write_bytes(obj.read_bytes()[:100])                   # truncated
    rebuilt = _child(tmp_path)
    assert rebuilt["from_cache"] is False and rebuilt["err"] < 1e-5
    (meta,) = tmp_path.glob("??/*/meta.json")
    meta.write_text("{not json")
    assert _child(tmp_path)["from_cache"] is False
    assert _child(tmp_path)["from_cache"] is True


def test_unusable_folder_falls_back_to_a_temp_folder(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.warns(RuntimeWarning, match="cannot be written"):
        cache = DiskCache(blocker / "cache")
    assert cache.root != blocker / "cache" and cache.root.exists()
    key = cache.key("x")
    cache.put(key, {"a.bin": b"123"})
    assert cache.get(key) == {"a.bin": b"123"}


def test_missing_folder_is_created_private(tmp_path):
    cache = DiskCache(tmp_path / "new" / "deeper")
    assert cache.root.is_dir() and (cache.root.stat().st_mode & 0o777) == 0o700


def test_no_root_means_the_configured_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSEC_CACHE_DIR", str(tmp_path / "configured"))
    assert DiskCache().root == tmp_path / "configured"


def test_keys_cover_the_compiler_and_the_parts(tmp_path):
    cache = DiskCache(tmp_path)
    assert cache.key("a", 1) == cache.key("a", 1) != cache.key("a", 2)
    assert len(compiler_fingerprint()) == 64
    with pytest.raises(ValueError):
        cache.get("../../etc")


def test_lru_eviction_keeps_the_size_cap(tmp_path):
    cache = DiskCache(tmp_path, max_bytes=2500)
    keys = [cache.key(i) for i in range(4)]
    for i, key in enumerate(keys):
        cache.put(key, {"blob": bytes(1000)})
        if i == 1:
            os.utime(next(tmp_path.glob(f"??/{keys[0]}/meta.json")), (1, 1))
    info = cache.info()
    assert info["bytes"] <= 2500 and info["entries"] == 2
    assert cache.get(keys[0]) is None and cache.get(keys[3]) is not None


def test_cli_info_and_clear(tmp_path):
    cache = DiskCache(tmp_path)
    cache.put(cache.key("k"), {"f": b"data"})
    cache.put(cache.key("c"), {"kernel.cubin": b"\x7fELF.."}, {"kind": "cuda-cubin"})
    kinds = cache.info()["kinds"]
    assert {k: v["entries"] for k, v in kinds.items()} == {"cuda-cubin": 1, "other": 1}
    assert kinds["cuda-cubin"]["bytes"] > 6            # the artifact and its meta.json
    run = lambda *a: subprocess.run([sys.executable, "-m", "fusec", "cache", *a, "--dir",  # noqa: E731
                                     str(tmp_path)], capture_output=True, text=True, check=True)
    shown = run("info").stdout
    assert "entries: 2" in shown and re.search(r"cuda-cubin +1 entries", shown)
    assert "removed 2 entries" in run("clear").stdout
    assert DiskCache(tmp_path).info()["entries"] == 0


def test_no_pickle_anywhere():
    offenders = []
    for folder in ("fusec", "ir", "passes", "backends", "autotune"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            if "import pickle" in text or "pickle." in text or "marshal." in text:
                offenders.append(str(path))
    assert not offenders


def test_an_entry_lacking_an_artifact_is_written_anew(tmp_path):
    cache = DiskCache(tmp_path)
    key = cache.key("partial")
    cache.put(key, {"a.bin": b"1"})
    assert cache.get(key, required=("a.bin", "b.bin")) is None
    cache.put(key, {"a.bin": b"1", "b.bin": b"2"})
    assert cache.get(key, required=("a.bin", "b.bin")) == {"a.bin": b"1", "b.bin": b"2"}
    cache.put(key, {"a.bin": b"other"})          # a subset: the entry stays as it is
    assert cache.get(key)["a.bin"] == b"1"
