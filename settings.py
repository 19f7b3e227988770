"""Vigil's configuration: one typed ``Settings`` read from the environment and ``.env``.

Every key is documented in ``.env.example`` with its default. ``load_settings()`` turns validation
errors into ``SettingsError`` whose lines read ``KEY: what is wrong`` — one line per bad key, no
traceback. Secrets are ``SecretStr`` so they never show up in a repr, a log line or /config.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{2,20}USDT$")
TIMEFRAMES_ALLOWED = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")

CommaList = Annotated[list[str], NoDecode]
CommaInts = Annotated[list[int], NoDecode]


class SettingsError(Exception):
    """Configuration is invalid. ``lines`` holds one ``KEY: reason`` line per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class Settings(BaseSettings):
    _env_file: Path | None = PrivateAttr(default=Path(".env"))  # the file these settings were read from

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      case_sensitive=False, validate_default=True)

    # --- mode and exchange -------------------------------------------------------------------
    trading_mode: Literal["paper", "live"] = "paper"
    binance_api_key: SecretStr | None = None
    binance_api_secret: SecretStr | None = None
    binance_env: Literal["live", "testnet", "demo"] = "live"
    binance_base_url: str | None = None
    binance_weight_budget_pct: float = Field(40.0, gt=0, le=90)

    # --- telegram ----------------------------------------------------------------------------
    telegram_bot_token: SecretStr | None = None
    telegram_allowed_user_ids: CommaInts = Field(default_factory=list)
    telegram_api_base_url: str | None = None

    # --- storage -----------------------------------------------------------------------------
    data_dir: Path = Path("data")
    db_path: Path = Path("data/vigil.sqlite3")  # empty or unset: DATA_DIR/vigil.sqlite3
    backup_keep: int = Field(7, ge=0, le=3650)
    backup_time_utc: str = "00:30"

    # --- scheduling --------------------------------------------------------------------------
    scan_interval_seconds: int = Field(300, ge=1, le=86_400)
    scan_delay_seconds: int = Field(5, ge=0, le=120)
    monitor_interval_seconds: int = Field(60, ge=1, le=3_600)
    health_max_age_seconds: int | None = Field(None, ge=1)
    watchdog_seconds: int | None = Field(None, ge=0, le=86_400)

    # --- market data -------------------------------------------------------------------------
    universe_size: int = Field(20, ge=1, le=300)
    symbols: CommaList = Field(default_factory=list)
    blacklist: CommaList = Field(default_factory=list)
    timeframes: CommaList = Field(default_factory=lambda: ["5m", "15m", "1h", "4h"])
    kline_history: int = Field(300, ge=60, le=1500)
    max_concurrent_requests: int = Field(8, ge=1, le=50)
    min_quote_volume_usdt: Decimal = Field(Decimal("20000000"), ge=0)

    # --- paper account -----------------------------------------------------------------------
    paper_start_balance: Decimal = Field(Decimal("1000"), gt=0)
    paper_taker_fee: Decimal = Field(Decimal("0.0005"), ge=0, lt=Decimal("0.01"))
    paper_maker_fee: Decimal = Field(Decimal("0.0002"), ge=0, lt=Decimal("0.01"))
    paper_slippage_pct: Decimal = Field(Decimal("0.02"), ge=0, le=2)
    paper_trigger_interval: Literal["1m", "5m"] = "1m"

    # --- risk ----------------------------------------------------------------------------------
    leverage: int = Field(3, ge=1, le=125)
    margin_type: Literal["ISOLATED", "CROSSED"] = "ISOLATED"
    risk_per_trade_pct: Decimal = Field(Decimal("1.0"), gt=0, le=10)
    max_open_positions: int = Field(3, ge=0, le=50)
    max_position_notional_pct: Decimal = Field(Decimal("100"), gt=0, le=1000)
    stop_atr_timeframe: str = "1h"
    stop_atr_mult: Decimal = Field(Decimal("2.0"), gt=0, le=20)
    take_profit_atr_mult: Decimal = Field(Decimal("3.0"), gt=0, le=50)
    min_stop_pct: Decimal = Field(Decimal("0.5"), gt=0, le=50)
    max_stop_pct: Decimal = Field(Decimal("5.0"), gt=0, le=50)
    min_reward_risk: Decimal = Field(Decimal("1.5"), gt=0, le=20)
    entry_threshold: float = Field(0.7, gt=0, le=1)
    voters: CommaList = Field(default_factory=lambda: ["trend_momentum", "trend_following", "breakout"])
    min_agreeing_voters: int = Field(1, ge=1, le=20)
    min_agreement: float = Field(0.0, ge=0, le=1)
    ml_model_path: Path | None = None  # empty: DATA_DIR/models/vigil-ml.joblib
    ml_threshold: float = Field(0.5, gt=0, lt=1)
    retrain_days: float = Field(7, gt=0, le=365)
    retrain_train_days: float = Field(90, ge=7, le=3_650)
    retrain_holdout_days: float = Field(14, ge=1, le=365)
    retrain_min_rows: int = Field(200, ge=10, le=10_000_000)
    retrain_live_margin: float = Field(0.05, ge=0, le=1)
    retrain_timeout_minutes: float = Field(90, gt=0, le=24 * 60)
    max_position_notional_usdt: Decimal = Field(Decimal("0"), ge=0)
    max_total_exposure_pct: Decimal = Field(Decimal("300"), gt=0, le=5000)
    vol_scale_threshold: Decimal = Field(Decimal("1.5"), ge=0, le=20)
    vol_min_scale: Decimal = Field(Decimal("0.25"), gt=0, le=1)
    kelly_enabled: bool = False
    kelly_fraction: Decimal = Field(Decimal("0.25"), gt=0, le=1)
    kelly_min_trades: int = Field(30, ge=5, le=10_000)
    kelly_max_risk_pct: Decimal = Field(Decimal("2"), gt=0, le=10)
    liq_min_stop_multiple: Decimal = Field(Decimal("2"), ge=0, le=50)
    min_leverage: int = Field(1, ge=1, le=125)
    equity_per_slot_usdt: Decimal = Field(Decimal("0"), ge=0)
    correlation_threshold: float = Field(0.8, gt=0, le=1)
    max_correlated_positions: int = Field(1, ge=0, le=50)
    funding_max_pay_pct: Decimal = Field(Decimal("0.05"), ge=0, le=5)
    funding_window_minutes: int = Field(480, ge=0, le=1440)
    adaptive_enabled: bool = True
    adaptive_min_samples: int = Field(20, ge=5, le=1000)

    # --- exits ---------------------------------------------------------------------------------
    trail_enabled: bool = True
    trail_activation_r: Decimal = Field(Decimal("1"), ge=0, le=20)
    trail_method: Literal["peak_share", "atr"] = "peak_share"
    trail_lock_share: Decimal = Field(Decimal("0.5"), gt=0, lt=1)
    trail_atr_mult: Decimal = Field(Decimal("2"), gt=0, le=20)
    min_stop_step_pct: Decimal = Field(Decimal("0.1"), ge=0, le=10)
    partial_ladder: str = "1:1/3,2:1/3"
    breakeven_after_first: bool = True
    time_stop_hours: float = Field(72, ge=0, le=24 * 90)
    stale_after_hours: float = Field(24, ge=0, le=24 * 90)
    signal_exit_score: float = Field(0.75, ge=0, le=1)

    # --- circuit breakers (0 disables one) ----------------------------------------------------
    daily_loss_limit_pct: Decimal = Field(Decimal("3"), ge=0, le=100)
    max_drawdown_pct: Decimal = Field(Decimal("15"), ge=0, le=100)
    drawdown_close_all: bool = False
    max_consecutive_losses: int = Field(4, ge=0, le=100)
    consecutive_losses_pause_hours: float = Field(12, ge=0, le=24 * 30)
    volatility_breaker_ratio: float = Field(2.5, ge=0, le=20)
    api_errors_max: int = Field(10, ge=0, le=10_000)
    api_errors_window_minutes: int = Field(5, ge=1, le=1440)
    symbol_cooldown_minutes: int = Field(120, ge=0, le=10_080)
    symbol_daily_loss_pct: Decimal = Field(Decimal("2"), ge=0, le=100)

    # --- LLM voters (optional) ------------------------------------------------------------------
    llm_providers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    llm_top_n: int = Field(3, ge=1, le=20)
    llm_timeout_seconds: float = Field(8.0, gt=0, le=120)
    llm_scan_deadline_seconds: float = Field(20.0, gt=0, le=240)
    llm_daily_budget_usd: Decimal = Field(Decimal("1"), ge=0, le=10_000)

    # --- the vote book (every vote and its outcome; learned weights) ----------------------------
    votes_retention_days: int = Field(30, ge=1, le=3_650)
    vote_horizon_hours: float = Field(24, gt=0, le=24 * 14)
    learned_weights: bool = False
    model_live_window: int = Field(200, ge=10, le=100_000)

    # --- notifications ---------------------------------------------------------------------------
    notify_daily_summary_utc: str = "00:00"
    notify_levels: str = ""

    # --- logging and metrics -------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_file_max_mb: float = Field(10, ge=0, le=10_000)
    log_file_count: int = Field(5, ge=1, le=100)
    metrics_port: int | None = Field(None, ge=1, le=65_535)
    metrics_host: str = "127.0.0.1"

    @model_validator(mode="before")
    @classmethod
    def _db_path_in_data_dir(cls, data: Any) -> Any:
        """DB_PATH unset or empty: the database lives in DATA_DIR."""
        if isinstance(data, dict):
            keys = {str(k).lower(): k for k in data}
            given = data.get(keys.get("db_path", "db_path"))
            if given is None or (isinstance(given, str) and not given.strip()):
                data = {k: v for k, v in data.items() if str(k).lower() != "db_path"}
                data_dir = data.get(keys.get("data_dir", "data_dir")) or "data"
                data["db_path"] = Path(str(data_dir).strip() or "data") / "vigil.sqlite3"
        return data

    @field_validator("health_max_age_seconds", "watchdog_seconds", "metrics_port", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """``KEY=`` (as in .env.example) means "use the default"."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("ml_model_path", mode="before")
    @classmethod
    def _empty_model_path(cls, value: Any) -> Any:
        return None if value is None or (isinstance(value, str) and not value.strip()) else value

    @field_validator("data_dir", mode="before")
    @classmethod
    def _empty_data_dir(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return Path("data")
        return value

    @field_validator("log_level", "trading_mode", "binance_env", "margin_type", mode="before")
    @classmethod
    def _normalise_case(cls, value: Any, info: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = value.strip()
        return value.upper() if info.field_name in ("log_level", "margin_type") else value.lower()

    @field_validator("symbols", "blacklist", mode="before")
    @classmethod
    def _parse_symbols(cls, value: Any) -> list[str]:
        items = _split(value)
        out = [s.upper() for s in items]
        bad = [s for s in out if not SYMBOL_PATTERN.match(s)]
        if bad:
            raise ValueError(f"not a USDT perpetual symbol: {', '.join(bad)} (expected e.g. BTCUSDT,ETHUSDT)")
        return out

    @field_validator("timeframes", mode="before")
    @classmethod
    def _parse_timeframes(cls, value: Any) -> list[str]:
        items = _split(value)
        bad = [t for t in items if t not in TIMEFRAMES_ALLOWED]
        if bad:
            raise ValueError(f"unknown timeframe {', '.join(bad)}; use {', '.join(TIMEFRAMES_ALLOWED)}")
        if not items:
            raise ValueError("at least one timeframe is needed, e.g. 5m,15m,1h,4h")
        return items

    @field_validator("voters", mode="before")
    @classmethod
    def _parse_voters(cls, value: Any) -> list[str]:
        from strategies.panel import check_voter_names

        return check_voter_names(s.lower() for s in _split(value))

    @field_validator("stop_atr_timeframe")
    @classmethod
    def _check_stop_tf(cls, value: str) -> str:
        if value not in TIMEFRAMES_ALLOWED:
            raise ValueError(f"unknown timeframe {value}; use one of TIMEFRAMES")
        return value

    @field_validator("partial_ladder")
    @classmethod
    def _check_ladder(cls, value: str) -> str:
        parse_ladder(value)
        return value

    @field_validator("llm_providers", mode="before")
    @classmethod
    def _parse_llm_providers(cls, value: Any) -> list[str]:
        from strategies.llm import ProviderSpec

        items = _split(value)
        names = [ProviderSpec.parse(item).name for item in items]
        if len(set(names)) != len(names):
            raise ValueError(f"provider names must be unique, got {', '.join(names)}")
        return items

    @field_validator("notify_daily_summary_utc", "backup_time_utc")
    @classmethod
    def _check_summary_time(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("", "off") and not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", value):
            raise ValueError("expected HH:MM in UTC (e.g. 00:00) or off")
        return value

    @field_validator("notify_levels")
    @classmethod
    def _check_levels(cls, value: str) -> str:
        from bot.notices import CATEGORIES, LEVELS  # pure constants; the bot layer owns the categories

        for part in _split(value):
            name, _, level = part.partition("=")
            if name.strip().lower() not in CATEGORIES or level.strip().lower() not in LEVELS:
                raise ValueError(f"bad entry {part!r}; use category=on|silent|off with a category among "
                                 f"{', '.join(CATEGORIES)}")
        return value

    @field_validator("telegram_allowed_user_ids", mode="before")
    @classmethod
    def _parse_ids(cls, value: Any) -> list[int]:
        items = _split(value)
        try:
            return [int(i) for i in items]
        except ValueError:
            raise ValueError("expected comma-separated numeric Telegram user ids, e.g. 12345,67890") from None

    @field_validator("binance_base_url", "telegram_api_base_url", mode="before")
    @classmethod
    def _parse_url(cls, value: Any) -> str | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        value = str(value).strip().rstrip("/")
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"expected an http(s) URL such as http://127.0.0.1:9000, got {value!r}")
        return value

    @field_validator("binance_api_key", "binance_api_secret", "telegram_bot_token", mode="before")
    @classmethod
    def _empty_secret_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        problems: list[str] = []
        if self.trading_mode == "live" and not self.has_binance_keys:
            problems.append("TRADING_MODE: live trading needs BINANCE_API_KEY and BINANCE_API_SECRET")
        if self.min_stop_pct > self.max_stop_pct:
            problems.append("MIN_STOP_PCT: must not exceed MAX_STOP_PCT")
        if self.telegram_bot_token is not None and not self.telegram_allowed_user_ids:
            problems.append("TELEGRAM_ALLOWED_USER_IDS: set at least one user id when TELEGRAM_BOT_TOKEN is set")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # --- derived ---------------------------------------------------------------------------
    @property
    def has_binance_keys(self) -> bool:
        return bool(self.binance_api_key and self.binance_api_secret)

    @property
    def heartbeat_max_age_seconds(self) -> int:
        return self.health_max_age_seconds or max(3 * self.monitor_interval_seconds, 180)

    @property
    def watchdog_limit_seconds(self) -> int:
        """Seconds without a finished monitor tick before the process exits (0 = watchdog off)."""
        if self.watchdog_seconds is not None:
            return self.watchdog_seconds
        return max(5 * self.monitor_interval_seconds, 300)

    # --- DATA_DIR layout ---------------------------------------------------------------------
    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def env_file(self) -> Path | None:
        """The settings file read besides the environment (``--env-file``), if any: provider keys named by
        LLM_PROVIDERS are looked up there too."""
        return self._env_file

    @property
    def log_file(self) -> Path:
        return self.logs_dir / "vigil.log"

    @property
    def backups_dir(self) -> Path:
        return self.data_dir / "backups"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def ml_model_file(self) -> Path:
        """The ML voter's model: ``ML_MODEL_PATH``, else ``DATA_DIR/models/vigil-ml.joblib``."""
        return self.ml_model_path or self.models_dir / "vigil-ml.joblib"

    @property
    def market_data_dir(self) -> Path:
        """Where downloaded Binance futures history (klines, funding) is kept."""
        return self.data_dir / "binance-futures"

    def redacted(self) -> dict[str, str]:
        """Every setting as text, secrets replaced (for /config and the startup log)."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                out[name.upper()] = "set (hidden)"
            elif value is None:
                out[name.upper()] = ""
            elif isinstance(value, list):
                out[name.upper()] = ",".join(str(v) for v in value)
            else:
                out[name.upper()] = str(value)
        return out


def parse_ladder(text: str) -> list[tuple[Decimal, Decimal]]:
    """``"1:1/3,2:1/3"`` → [(1, 1/3), (2, 1/3)]: close a fraction of the initial size at R multiples."""
    steps: list[tuple[Decimal, Decimal]] = []
    for part in _split(text):
        try:
            r_text, frac_text = part.split(":")
            num, _, den = frac_text.partition("/")
            r, fraction = Decimal(r_text), Decimal(num) / Decimal(den or "1")
        except (ValueError, ArithmeticError):
            raise ValueError(f"expected R:fraction pairs like 1:1/3,2:1/3, got {part!r}") from None
        if r <= 0 or not 0 < fraction < 1:
            raise ValueError(f"{part!r}: R must be > 0 and the fraction between 0 and 1")
        steps.append((r, fraction))
    if sum((f for _, f in steps), Decimal(0)) >= 1:
        raise ValueError("the ladder's fractions must add up to less than 1 (the rest trails)")
    return steps


def _split(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    if isinstance(value, list | tuple):
        return [str(p).strip() for p in value if str(p).strip()]
    return [str(value)]


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Read settings; raise ``SettingsError`` with one readable line per bad key."""
    try:
        settings = Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc)) from None
    settings._env_file = Path(env_file) if env_file is not None else None
    return settings


def format_validation_error(exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if not str(p).isdigit()]
        msg = err.get("msg", "invalid value")
        if not loc:
            # model-level check: messages already start with KEY:
            text = msg.removeprefix("Value error, ")
            lines.extend(line for line in text.splitlines() if line)
            continue
        key = loc[0].upper()
        text = msg.removeprefix("Value error, ")
        given = err.get("input")
        shown = "" if given is None or key in _SECRET_KEYS or isinstance(given, dict) else f" (got {given!r})"
        lines.append(f"{key}: {text}{shown}")
    return lines


_SECRET_KEYS = {"BINANCE_API_KEY", "BINANCE_API_SECRET", "TELEGRAM_BOT_TOKEN"}


@dataclass(frozen=True, slots=True)
class UnknownKey:
    key: str
    closest: str | None  # the valid key it most resembles (a likely typo), if any


def unknown_keys(env_file: str | Path | None, environ: Mapping[str, str] | None = None) -> list[UnknownKey]:
    """Keys that are no setting, each with the closest valid key: every such key of the settings file (e.g.
    ``LEVERGE``), and the environment variables that are near-misses of a setting (Docker Compose passes
    ``.env`` as environment variables, among many that are not Vigil's)."""
    from dotenv import dotenv_values

    valid = [name.upper() for name in Settings.model_fields]
    found: dict[str, UnknownKey] = {}
    if env_file is not None and Path(env_file).is_file():
        values = dotenv_values(env_file)
        key_variables = _llm_key_variables(values.get("LLM_PROVIDERS") or (environ or {}).get("LLM_PROVIDERS"))
        for key in values:
            name = key.strip().upper()
            if name and name not in valid and name not in key_variables:
                match = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
                found[name] = UnknownKey(name, match[0] if match else None)
    for key in environ or {}:
        name = key.strip().upper()
        if name and name not in valid and name not in found:
            match = difflib.get_close_matches(name, valid, n=1, cutoff=0.85)
            if match:
                found[name] = UnknownKey(name, match[0])
    return list(found.values())


def _llm_key_variables(providers: str | None) -> set[str]:
    """The variables that LLM_PROVIDERS names as holding keys: settings of their own, not typos."""
    names = set()
    for item in _split(providers):
        parts = item.split("|")
        if len(parts) >= 4 and parts[3].strip():
            names.add(parts[3].strip().upper())
    return names


def unknown_keys_line(env_file: str | Path | None, unknown: list[UnknownKey]) -> str:
    """One warning line naming every unknown key (empty when there is none)."""
    if not unknown:
        return ""
    parts = [f"{u.key} (did you mean {u.closest}?)" if u.closest else u.key for u in unknown]
    return f"{env_file or 'environment'}: not a setting, ignored: {', '.join(parts)}"
