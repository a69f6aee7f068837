"""`python3 -m fusec.dynamo.coverage`: the core aten ops in their groups, from the
backend's own tables."""
from __future__ import annotations

import subprocess
import sys

from fusec.dynamo.coverage import GROUPS, core_aten_ops, coverage


def test_every_core_op_is_in_exactly_one_group():
    groups = coverage()
    names = [n for g in GROUPS for n in groups[g]]
    assert sorted(names) == sorted(p.__name__ for p in core_aten_ops())
    assert len(names) == len(set(names)) > 100


def test_groups_follow_the_tables():
    groups = coverage()
    assert {"add", "sum", "var", "squeeze", "mm", "cumsum"} <= set(groups["lowered"])
    assert {"native_layer_norm", "_softmax"} <= set(groups["decomposed"])
    assert {"index_put", "scatter_add"} <= set(groups["library"])
    assert {"view", "as_strided"} <= set(groups["no kernel"])
    assert {"convolution", "sort"} <= set(groups["aten"])


def test_the_module_prints_the_groups():
    out = subprocess.run([sys.executable, "-m", "fusec.dynamo.coverage"], check=True,
                         capture_output=True, text=True).stdout
    assert out.startswith("core aten ops of torch") and "\naten (" in out
