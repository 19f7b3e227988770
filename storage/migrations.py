"""Forward-only schema migrations. Entry ``i`` upgrades schema version ``i`` to ``i + 1``.

Never edit a migration that has shipped; append a new one. Money and quantities are stored as TEXT
(exact ``Decimal`` strings); times as ISO-8601 UTC text.
"""

from __future__ import annotations

V1_CORE = """
CREATE TABLE schema_version (
    version     INTEGER PRIMARY KEY,
    applied_at  TEXT NOT NULL
);

CREATE TABLE state (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE trades (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    mode                TEXT NOT NULL CHECK (mode IN ('paper', 'live')),
    symbol              TEXT NOT NULL,
    side                TEXT NOT NULL CHECK (side IN ('LONG', 'SHORT')),
    status              TEXT NOT NULL CHECK (status IN ('PENDING', 'OPEN', 'CLOSED', 'FAILED')),
    quantity            TEXT NOT NULL,
    initial_quantity    TEXT NOT NULL,
    entry_price         TEXT,
    stop_price          TEXT NOT NULL,
    initial_stop_price  TEXT NOT NULL,
    take_profit_price   TEXT,
    leverage            INTEGER NOT NULL,
    liquidation_price   TEXT,
    score               REAL,
    votes               TEXT NOT NULL DEFAULT '[]',
    opened_at           TEXT,
    closed_at           TEXT,
    exit_price          TEXT,
    exit_reason         TEXT,
    realized_pnl        TEXT NOT NULL DEFAULT '0',
    fees                TEXT NOT NULL DEFAULT '0',
    funding             TEXT NOT NULL DEFAULT '0',
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
CREATE INDEX trades_mode_status ON trades(mode, status);
CREATE INDEX trades_symbol ON trades(symbol, mode);

CREATE TABLE orders (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id       TEXT NOT NULL UNIQUE,
    trade_id        INTEGER REFERENCES trades(id),
    mode            TEXT NOT NULL CHECK (mode IN ('paper', 'live')),
    symbol          TEXT NOT NULL,
    purpose         TEXT NOT NULL CHECK (purpose IN ('ENTRY', 'STOP_LOSS', 'TAKE_PROFIT', 'EXIT', 'PARTIAL')),
    side            TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    order_type      TEXT NOT NULL,
    quantity        TEXT,
    trigger_price   TEXT,
    reduce_only     INTEGER NOT NULL DEFAULT 0,
    status          TEXT NOT NULL,
    exchange_id     TEXT,
    filled_quantity TEXT NOT NULL DEFAULT '0',
    avg_price       TEXT,
    fee             TEXT NOT NULL DEFAULT '0',
    error           TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX orders_trade ON orders(trade_id);
CREATE INDEX orders_status ON orders(mode, status);

CREATE TABLE fills (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    mode                TEXT NOT NULL CHECK (mode IN ('paper', 'live')),
    trade_id            INTEGER REFERENCES trades(id),
    order_client_id     TEXT,
    exchange_trade_id   TEXT NOT NULL,
    symbol              TEXT NOT NULL,
    side                TEXT NOT NULL,
    price               TEXT NOT NULL,
    quantity            TEXT NOT NULL,
    fee                 TEXT NOT NULL,
    realized_pnl        TEXT NOT NULL DEFAULT '0',
    time                TEXT NOT NULL,
    UNIQUE (mode, symbol, exchange_trade_id)
);
CREATE INDEX fills_trade ON fills(trade_id);

CREATE TABLE funding (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    mode        TEXT NOT NULL CHECK (mode IN ('paper', 'live')),
    trade_id    INTEGER REFERENCES trades(id),
    symbol      TEXT NOT NULL,
    amount      TEXT NOT NULL,
    time        TEXT NOT NULL,
    UNIQUE (mode, symbol, time)
);

CREATE TABLE equity_snapshots (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    mode        TEXT NOT NULL CHECK (mode IN ('paper', 'live')),
    time        TEXT NOT NULL,
    wallet      TEXT NOT NULL,
    equity      TEXT NOT NULL,
    unrealized  TEXT NOT NULL
);
CREATE INDEX equity_mode_time ON equity_snapshots(mode, time);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    time        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL
);
CREATE INDEX events_time ON events(time);

CREATE TABLE paper_account (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    wallet_balance  TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE paper_positions (
    symbol          TEXT PRIMARY KEY,
    side            TEXT NOT NULL CHECK (side IN ('LONG', 'SHORT')),
    quantity        TEXT NOT NULL,
    entry_price     TEXT NOT NULL,
    leverage        INTEGER NOT NULL,
    margin_type     TEXT NOT NULL,
    isolated_margin TEXT NOT NULL,
    opened_at       TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE paper_symbol_config (
    symbol      TEXT PRIMARY KEY,
    leverage    INTEGER NOT NULL,
    margin_type TEXT NOT NULL
);

CREATE TABLE paper_orders (
    client_id       TEXT PRIMARY KEY,
    exchange_id     TEXT NOT NULL UNIQUE,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL,
    order_type      TEXT NOT NULL,
    quantity        TEXT,
    trigger_price   TEXT,
    reduce_only     INTEGER NOT NULL DEFAULT 0,
    close_position  INTEGER NOT NULL DEFAULT 0,
    status          TEXT NOT NULL,
    filled_quantity TEXT NOT NULL DEFAULT '0',
    avg_price       TEXT NOT NULL DEFAULT '0',
    fee             TEXT NOT NULL DEFAULT '0',
    triggered_order_id TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX paper_orders_open ON paper_orders(symbol, status);

CREATE TABLE paper_fills (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id        TEXT NOT NULL,
    client_id       TEXT,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL,
    price           TEXT NOT NULL,
    quantity        TEXT NOT NULL,
    fee             TEXT NOT NULL,
    realized_pnl    TEXT NOT NULL,
    time            TEXT NOT NULL
);
CREATE INDEX paper_fills_symbol_time ON paper_fills(symbol, time);

CREATE TABLE paper_funding (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    symbol          TEXT NOT NULL,
    funding_time    TEXT NOT NULL,
    rate            TEXT NOT NULL,
    amount          TEXT NOT NULL,
    UNIQUE (symbol, funding_time)
);

CREATE TABLE paper_cursor (
    symbol      TEXT PRIMARY KEY,
    last_ms     INTEGER NOT NULL
)
"""

V2_TELEGRAM = """
CREATE TABLE notification_queue (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id     INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    text        TEXT NOT NULL,
    silent      INTEGER NOT NULL DEFAULT 0,
    status      TEXT NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'SENT', 'FAILED')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    created_at  TEXT NOT NULL,
    sent_at     TEXT
);
CREATE INDEX notification_queue_pending ON notification_queue(status, id);

CREATE TABLE confirmations (
    token       TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL,
    chat_id     INTEGER NOT NULL,
    message_id  INTEGER,
    action      TEXT NOT NULL,
    args        TEXT NOT NULL,
    summary     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT,
    outcome     TEXT
);

CREATE TABLE notifier_settings (
    category    TEXT PRIMARY KEY,
    level       TEXT NOT NULL CHECK (level IN ('on', 'silent', 'off')),
    updated_at  TEXT NOT NULL
)
"""

V3_ORDER_REASON = """
ALTER TABLE orders ADD COLUMN reason TEXT
"""

V4_LLM_CALLS = """
CREATE TABLE llm_calls (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    time                TEXT NOT NULL,
    provider            TEXT NOT NULL,
    model               TEXT NOT NULL,
    symbol              TEXT NOT NULL,
    candle_ms           INTEGER NOT NULL,
    status              TEXT NOT NULL,
    latency_ms          REAL NOT NULL,
    prompt_tokens       INTEGER NOT NULL,
    completion_tokens   INTEGER NOT NULL,
    cost_usd            TEXT NOT NULL,
    side                TEXT,
    confidence          REAL,
    reason              TEXT,
    error               TEXT NOT NULL DEFAULT ''
);
CREATE INDEX llm_calls_time ON llm_calls(time);
CREATE INDEX llm_calls_answer ON llm_calls(provider, symbol, candle_ms)
"""

V5_VOTES = """
CREATE TABLE votes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    scan_time   TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    candle_ms   INTEGER NOT NULL,
    voter       TEXT NOT NULL,
    direction   INTEGER NOT NULL CHECK (direction IN (-1, 0, 1)),
    confidence  REAL NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    consensus   INTEGER NOT NULL CHECK (consensus IN (-1, 0, 1)),
    score       REAL NOT NULL,
    regime      TEXT,
    price       REAL NOT NULL,
    stop_atr    REAL NOT NULL,
    decision    TEXT NOT NULL DEFAULT '',
    trade_id    INTEGER,
    outcome     TEXT CHECK (outcome IN ('tp', 'sl', 'timeout', 'void')),
    outcome_r   REAL,
    resolved_at TEXT
);
CREATE INDEX votes_symbol_time ON votes(symbol, scan_time);
CREATE INDEX votes_pending ON votes(scan_time) WHERE outcome IS NULL AND direction != 0
"""

# the kind of voter that cast each vote (core.enums.VoterKind); rows from before it existed are classified once by the
# names those voters always had: "ml" (earlier "ml:<kind>") and "llm:<provider>"
V6_VOTER_KIND = """
ALTER TABLE votes ADD COLUMN voter_kind TEXT NOT NULL DEFAULT 'rule' CHECK (voter_kind IN ('rule', 'ml', 'llm'));
UPDATE votes SET voter_kind = 'ml' WHERE voter = 'ml' OR voter LIKE 'ml:%';
UPDATE votes SET voter_kind = 'llm' WHERE voter LIKE 'llm:%'
"""

MIGRATIONS: list[str] = [V1_CORE, V2_TELEGRAM, V3_ORDER_REASON, V4_LLM_CALLS, V5_VOTES, V6_VOTER_KIND]
