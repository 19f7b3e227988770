"""/why and /model as HTML for a phone: one line per vote, a narrow table of learned weights."""

from __future__ import annotations

from bot.format import esc, table, when
from engine.vote_reports import ModelReport, VoteView, WhyReport

ARROW = {"LONG": "▲", "SHORT": "▼", "FLAT": "·"}
OUTCOME = {"tp": "✅ take-profit", "sl": "❌ stop", "timeout": "⌛ timed out", "void": "∅ void"}
REGIME_SHORT = {"trending_up": "up", "trending_down": "down", "ranging": "range", "volatile": "vol"}
REASON_CHARS = 90
VOTER_CHARS = 14


def vote_line(v: VoteView) -> str:
    reason = " ".join(v.reason.split())
    if len(reason) > REASON_CHARS:
        reason = reason[:REASON_CHARS - 1] + "…"
    line = f"{ARROW.get(v.direction, '?')} <b>{esc(v.voter)}</b> {esc(v.direction)} {v.confidence:.2f}"
    if reason:
        line += f" — {esc(reason)}"
    if v.outcome:
        line += f" → {OUTCOME.get(v.outcome, esc(v.outcome))}"
    return line


def why(r: WhyReport) -> str:
    threshold = f" (threshold {r.threshold:.2f})" if r.threshold is not None else ""
    icon = "✅" if r.trade_id is not None else "✋"
    lines = [f"🗳 <b>{esc(r.symbol)}</b> · {esc(r.source)} {when(r.scan_time)}",
             f"Consensus <b>{esc(r.consensus)}</b> score {r.score:.2f}{threshold}",
             f"Regime {esc(r.regime or 'unknown')} · price {r.price:,.6g}",
             f"{icon} {esc(r.decision)}"]
    lines += [vote_line(v) for v in r.votes] or ["(no votes)"]
    return "\n".join(lines)


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def model(r: ModelReport) -> str:
    lines = ["🧠 <b>Model</b>"]
    if r.meta is not None:
        m = r.meta
        lines.append(f"{esc(r.path.name)} · {esc(m.kind)} · {len(m.features)} features")
        lines.append(f"Trained {esc(m.train_start[:10])} → {esc(m.train_end[:10])} on "
                     f"{esc(', '.join(m.symbols))}")
        for side, f in sorted(r.oos.items()):
            lines.append(f"OOS {esc(side)}: hit {_rate(f.get('hit_rate'))} on {int(f.get('acted', 0)):,} acted · "
                         f"Brier {float(f.get('brier', 0)):.4f} (base {float(f.get('brier_base', 0)):.4f})")
    if r.problem:
        lines.append(f"⚠️ {esc(r.problem)}")
    live = (f"Live hit rate {_rate(r.live_hit_rate)} over the last {r.live_votes} resolved ML votes "
            f"(window {r.live_window})" if r.live_votes else "Live: no resolved ML vote yet")
    lines.append(live + (f" · out of sample {_rate(r.oos_hit_rate)}" if r.oos_hit_rate is not None else ""))
    lines.append(f"Panel: {esc(', '.join(r.panel) or 'none')}")
    applied = "applied to trading" if r.learned_weights else "not applied (LEARNED_WEIGHTS=false)"
    lines.append(f"<b>Learned weights</b> · {applied}; prior 1.00 below {r.min_votes} resolved votes")
    if r.skills:
        rows = [["voter", "regime", "w", "hit", "n"]]
        rows += [[s.voter[:VOTER_CHARS], REGIME_SHORT.get(s.regime, s.regime[:6]), f"{s.weight:.2f}",
                  f"{s.hit_rate:.2f}", str(s.resolved)] for s in r.skills]
        lines.append(table(rows, "llrrr"))
    else:
        lines.append("No resolved votes yet: every voter keeps the prior weight.")
    return "\n".join(lines)
