"""The Grafana dashboard in deploy/grafana parses, and every series it queries is one ftserve exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import service.metrics
import service.metrics.inference
import service.metrics.trainer  # noqa: F401  (their series join the default registry)

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "ftserve.json"


def exported_names() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("ftserve_"):
            names.add(family.name)
            names.update(s.name for s in family.samples)
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}.get(family.type, ())
            names.update(family.name + suffix for suffix in suffixes)
    return names


def test_the_dashboard_queries_only_series_ftserve_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bftserve_[a-z_]+", expr)}
    exported = exported_names()
    assert used - exported == set()
    # Every family of the API, the trainer and the adapter cache has a panel.
    families = {n for n in exported if not n.endswith(("_bucket", "_count", "_sum", "_created"))}
    bare = {n.removesuffix("_total") for n in used} | {re.sub(r"_(bucket|count|sum)$", "", n) for n in used}
    assert {n.removesuffix("_total") for n in families} - bare == set()
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
