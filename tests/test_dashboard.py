"""deploy/grafana-dashboard.json only queries metrics that Vigil exports (names drift silently otherwise)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from app.metrics import VigilMetrics

ROOT = Path(__file__).parent.parent


def exported_names() -> set[str]:
    metrics = VigilMetrics()
    metrics.observe_job("scan", 0.1)
    names: set[str] = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def test_every_dashboard_query_uses_an_exported_metric():
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"\b((?:vigil|process)_[a-z_]+)\b", expr)}
    assert used, "the dashboard has no queries"
    assert used - exported_names() == set()
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
