"""The vectorised (k, m) grid search gives exactly what simulating each trade one by one gives."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

from engine.policy.adaptive import AdaptiveConfig, TradeOutcome, _grid, best_multiples, expectancy_r


def one_by_one(outcomes: list[TradeOutcome], cfg: AdaptiveConfig, base_k: Decimal,
               base_m: Decimal) -> tuple[Decimal, Decimal, float]:
    best = None
    for k in _grid(cfg.k_min, cfg.k_max, cfg.grid_step):
        for m in _grid(cfg.m_min, cfg.m_max, cfg.grid_step):
            if m < k * cfg.min_reward_risk:
                continue
            key = (-round(expectancy_r(outcomes, float(k), float(m)), 12), abs(k - base_k) + abs(m - base_m), k, m)
            if best is None or key < best:
                best = key
    assert best is not None
    return best[2], best[3], -best[0]


def test_grid_search_matches_the_trade_by_trade_simulation() -> None:
    rng = random.Random(11)
    cfg = AdaptiveConfig()
    for trial in range(40):
        outcomes = [TradeOutcome("XUSDT", rng.uniform(-2, 4), rng.choice([0.0, rng.uniform(0, 5), 2.0, 1.25]),
                                 rng.choice([0.0, rng.uniform(0, 9), 4.0, 6.5]), rng.uniform(-4, 8),
                                 datetime(2024, 1, 1, tzinfo=UTC)) for _ in range(1 + trial)]
        assert best_multiples(outcomes, cfg, Decimal(2), Decimal(4)) == one_by_one(outcomes, cfg, Decimal(2),
                                                                                   Decimal(4))
