"""Runs the `// RUN:` lines of every .fir file here with bash, lit style.

`%s` is the file's path; `fusec` runs `python -m fusec` with this interpreter; `not CMD`
succeeds when CMD fails; `filecheck` is the pip FileCheck clone. Pipelines run with
`pipefail`, so a crash anywhere in a RUN line fails the test.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
FIR_FILES = sorted(HERE.glob("*.fir"))
RUN_PREFIX = "// RUN:"

_SHIMS = {
    "fusec": f'exec {shlex.quote(sys.executable)} -m fusec "$@"\n',
    "not": '"$@"\n[ $? -ne 0 ]\n',
}


@pytest.fixture(scope="session")
def tools_path(tmp_path_factory) -> str:
    bin_dir = tmp_path_factory.mktemp("filecheck-bin")
    shims = dict(_SHIMS)
    if shutil.which("filecheck") is None:
        shims["filecheck"] = f'exec {shlex.quote(sys.executable)} -m filecheck "$@"\n'
    for name, body in shims.items():
        script = bin_dir / name
        script.write_text("#!/usr/bin/env bash\n" + body)
        script.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def run_lines(path: Path) -> list[str]:
    """The RUN commands of a file; a line ending in `\\` continues on the next RUN line."""
    commands, pending = [], ""
    for line in path.read_text().splitlines():
        if not line.lstrip().startswith(RUN_PREFIX):
            continue
        part = line.lstrip()[len(RUN_PREFIX):].strip()
        if part.endswith("\\"):
            pending += part[:-1] + " "
            continue
        commands.append(pending + part)
        pending = ""
    return commands


@pytest.mark.parametrize("path", FIR_FILES, ids=[p.name for p in FIR_FILES])
def test_filecheck(path: Path, tools_path: str):
    commands = run_lines(path)
    assert commands, f"{path.name} has no {RUN_PREFIX} line"
    env = {**os.environ, "PATH": tools_path}
    for command in commands:
        command = command.replace("%s", shlex.quote(str(path)))
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", command], env=env, cwd=HERE,
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            pytest.fail(f"RUN: {command}\nexit status {proc.returncode}\n"
                        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
                        pytrace=False)
