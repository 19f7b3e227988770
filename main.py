"""Vigil command line: ``run`` (default) | ``demo`` | ``backtest`` | ``train`` | ``retrain`` | ``download`` |
``import-dumps`` | ``health`` | ``backup`` | ``restore`` | ``reset-overrides``.

    python main.py run              trade (paper by default) until Ctrl-C / SIGTERM
    python main.py demo             replay bundled real Binance data through the trader, offline, and summarise
    python main.py backtest         backtest a strategy on recorded data: summary, JSON, PNG
    python main.py train            walk-forward evaluation of the ML model, then the model file
    python main.py retrain          a candidate model, promoted only if it beats the one in use
    python main.py download         fetch 5m klines and funding history from Binance into the data folder
    python main.py import-dumps     merge Binance's monthly 5m kline and funding ZIP dumps into the data folder
    python main.py health           exit 0 if the last monitor tick is recent (Docker HEALTHCHECK)
    python main.py backup           online backup of the database into DATA_DIR/backups
    python main.py restore [FILE]   replace the database by a backup (the bot stopped)
    python main.py reset-overrides  list / clear the runtime choices stored in the database
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from settings import Settings, SettingsError, load_settings, unknown_keys, unknown_keys_line

EXIT_CONFIG = 2
EXIT_FAILED = 1
DATA_SUBDIR = "binance-futures"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py", description="Vigil — Binance USD-M perpetual futures trader (paper by default).",
        epilog="Configuration comes from the environment and .env; see .env.example for every key.")
    parser.add_argument("--env-file", default=".env", help="settings file to read besides the environment "
                        "(default: .env; missing is fine)")
    sub = parser.add_subparsers(dest="command", metavar="{run,demo,backtest,train,retrain,download,import-dumps,"
                                "health,backup,restore,reset-overrides}")

    sub.add_parser("run", help="run the trader (default command)", description=(
        "Run the scanner every SCAN_INTERVAL_SECONDS and the position monitor every MONITOR_INTERVAL_SECONDS. "
        "Paper mode (TRADING_MODE=paper, the default) simulates the account on real Binance prices; live mode "
        "needs BINANCE_API_KEY and BINANCE_API_SECRET. Stops cleanly on Ctrl-C or SIGTERM."))

    demo = sub.add_parser("demo", help="replay bundled real market data offline and print a summary",
                          description=(
                              "Replay real Binance futures 5m candles and funding rates (data/sample) through the "
                              "same trader code with a simulated clock and the paper exchange. Needs no network, "
                              "keys or Telegram; uses a throw-away database."))
    demo.add_argument("--data-dir", type=Path, default=Path(__file__).parent / "data" / "sample",
                      help="folder with SYMBOL-5m.csv.gz, SYMBOL-funding.csv.gz, exchange_info.json "
                           "(default: data/sample)")
    demo.add_argument("--symbols", default="BTCUSDT,ETHUSDT,SOLUSDT", help="comma-separated symbols to trade")
    demo.add_argument("--start", default="2025-03-24", help="first simulated day, UTC (default 2025-03-24)")
    demo.add_argument("--days", type=int, default=21, help="number of days to replay (default 21)")
    demo.add_argument("--quiet", action="store_true", help="print only the summary")
    demo.add_argument("--db", type=Path, default=None, help="keep the demo database at this path (default: temp)")

    backtest = sub.add_parser("backtest", help="backtest on recorded 5m data and report the metrics", description=(
        "Backtest Vigil's strategy (or the ema-cross cross-check rule) on recorded Binance USD-M 5m candles and "
        "funding over [--start, --end). Prints a summary with buy-and-hold side by side; --json and --report write "
        "the trade list with the metrics and a PNG. Needs no network, keys or Telegram."))
    from app.backtest_args import add_arguments

    add_arguments(backtest)
    train = sub.add_parser("train", help="walk-forward evaluation of the ML model, then train and save it",
                           description=(
        "Build features and triple-barrier labels (from the stop and take-profit settings) on recorded 5m data, "
        "evaluate the ML ensemble walk-forward (each test window predicted by a model trained only on the past, "
        "purged and embargoed), print the out-of-sample figures, then train the model on the newest window and "
        "save it with its metadata. CPU-heavy: on a small VPS, train elsewhere and copy the .joblib and .json."))
    from app.train_args import add_arguments as add_train_arguments

    add_train_arguments(train)

    retrain = sub.add_parser("retrain", description=(
        "Train a candidate ML model on the newest RETRAIN_TRAIN_DAYS of recorded 5m data (holding the newest "
        "RETRAIN_HOLDOUT_DAYS back), judge it and the model in use on the same rows neither has seen, and promote it "
        "only if its Brier score is lower and its hit rate not worse; the replaced model is kept as "
        "MODEL.previous.joblib (--rollback swaps back). One summary line; exit 0 promoted, 3 kept, 2 bad input, "
        "1 failed. The bot runs this weekly (RETRAIN_DAYS) and when the ML voter's live hit rate falls, and swaps a "
        "promoted model into its panel between two scans."),
                             help="train a candidate ML model and promote it only if it beats the one in use")
    from app.retrain_args import add_arguments as add_retrain_arguments

    add_retrain_arguments(retrain)

    download = sub.add_parser("download", help="fetch 5m klines and funding history from Binance", description=(
        "Fetch 5m klines and funding-rate history of USD-M perpetuals from Binance's public API (no keys) into "
        "DIR/SYMBOL-5m.csv.gz and DIR/SYMBOL-funding.csv.gz, plus DIR/exchange_info.json (the layout "
        "`backtest` and `demo` read). Resumable: a second run fetches only what is missing before the first "
        "or after the last stored row, and files are replaced atomically, so an interrupted run is simply "
        "run again. Stays within BINANCE_WEIGHT_BUDGET_PCT of the request-weight limit; BINANCE_BASE_URL, "
        "if set, replaces Binance's address. Needs no keys; with BINANCE_API_KEY and BINANCE_API_SECRET set, "
        "the leverage brackets (a signed, read-only request) are saved too as DIR/leverage_brackets.json."))
    download.add_argument("--symbols", required=True, help="comma-separated symbols, e.g. BTCUSDT,ETHUSDT")
    download.add_argument("--start", required=True, help="first day, UTC (YYYY-MM-DD)")
    download.add_argument("--end", required=True, help="day after the last one, UTC (YYYY-MM-DD, exclusive)")
    download.add_argument("--data-dir", type=Path, default=None,
                          help=f"folder to fill (default: DATA_DIR/{DATA_SUBDIR}, i.e. data/{DATA_SUBDIR})")

    dumps = sub.add_parser("import-dumps", help="merge Binance's monthly 5m kline (and funding) ZIP dumps into the "
                                                "data folder", description=(
        "Read Binance's public futures dumps (data.binance.vision files; a folder means every .zip in it) and "
        "merge them into the data folder: 5m klines such as BTCUSDT-5m-2024-01.zip, with or without a header "
        "row, into DIR/SYMBOL-5m.csv.gz, and funding such as BTCUSDT-fundingRate-2024-01.zip into "
        "DIR/SYMBOL-funding.csv.gz. Sorted, one row per time, rows already in a file kept. Every file is "
        "checked before anything is written."))
    dumps.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="ZIP files or folders of them")
    dumps.add_argument("--data-dir", type=Path, default=None,
                       help=f"folder to merge into (default: DATA_DIR/{DATA_SUBDIR}, i.e. data/{DATA_SUBDIR})")

    sub.add_parser("health", help="exit 0 if the last monitor tick is recent", description=(
        "Exit 0 if the running bot's last monitor tick (stored in DB_PATH) is younger than "
        "HEALTH_MAX_AGE_SECONDS (default 3 × MONITOR_INTERVAL_SECONDS, at least 180 s); exit 1 otherwise."))

    sub.add_parser("backup", help="back up the database now (safe while the bot runs)", description=(
        "Copy DB_PATH with SQLite's online backup API into DATA_DIR/backups/vigil-<UTC time>.sqlite3, check it, "
        "and keep the newest BACKUP_KEEP backups. The running bot also does this daily at BACKUP_TIME_UTC."))
    restore = sub.add_parser("restore", help="replace the database by a backup (stop the bot first)", description=(
        "Check FILE (default: the newest backup in DATA_DIR/backups), move the current DB_PATH and its -wal/-shm "
        "files aside as <name>.before-restore-<time>, and put the backup in its place. Refuses while the bot "
        "runs. On the next start the bot reconciles the restored books with the exchange."))
    restore.add_argument("file", type=Path, nargs="?", default=None, help="backup file to restore")
    reset = sub.add_parser("reset-overrides", help="list or clear the runtime choices stored in the database",
                           description=(
                               "Telegram choices are stored in the database and win over .env after a restart: "
                               "/set values, the /paper or /live choice, the /blacklist additions and the "
                               "pause/stop/kill-switch state. Without flags this lists them; each flag clears "
                               "one (the bot must be stopped)."))
    for name, what in (("settings", "/set values"), ("mode", "the stored paper/live choice"),
                       ("blacklist", "the /blacklist additions"), ("halts", "pause, stop or kill-switch")):
        reset.add_argument(f"--{name}", action="append_const", const=name, dest="clear", help=f"clear {what}")
    reset.add_argument("--all", action="store_const", const=["settings", "mode", "blacklist", "halts"],
                       dest="clear_all", help="clear all of them")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "run"
    env_file = args.env_file if Path(args.env_file).exists() else None
    try:
        offline = ("demo", "backtest", "train", "retrain")
        settings = load_settings(env_file) if command not in offline else load_settings(
            env_file, trading_mode="paper", telegram_bot_token=None)
    except SettingsError as exc:
        print("vigil: invalid configuration:", file=sys.stderr)
        for line in exc.lines:
            print(f"  {line}", file=sys.stderr)
        return EXIT_CONFIG
    warning = unknown_keys_line(env_file, unknown_keys(env_file, os.environ))
    if command == "run":
        return _run(settings, warning)
    if warning:
        print(f"vigil: warning: {warning}", file=sys.stderr)
    if command == "demo":
        return _demo(settings, args)
    if command == "backtest":
        return _backtest(settings, args)
    if command in ("backup", "restore", "reset-overrides"):
        from app import commands

        if command == "backup":
            return commands.backup(settings)
        if command == "restore":
            return commands.restore(settings, args.file)
        return commands.reset_overrides(settings, args.clear_all or args.clear or [])
    if command == "train":
        from app.logs import configure_logging
        from app.train import main as train_main

        configure_logging("WARNING")
        return train_main(settings, args)
    if command == "retrain":
        from app.retrain import entry as retrain_entry

        return retrain_entry(settings, args)
    if command == "download":
        return _download(settings, args)
    if command == "import-dumps":
        return _import_dumps(settings, args)
    return _health(settings)


def _run(settings: Settings, warning: str) -> int:
    import logging

    from app.llm import provider_keys
    from app.logs import configure_logging, settings_secrets
    from app.run import run_bot

    configure_logging(settings.log_level, log_file=settings.log_file,
                      max_bytes=int(settings.log_file_max_mb * 1024 * 1024), backup_count=settings.log_file_count,
                      secrets=(*settings_secrets(settings.binance_api_key, settings.binance_api_secret,
                                                 settings.telegram_bot_token), *provider_keys(settings)))
    if warning:
        logging.getLogger("vigil").warning(warning)
    return asyncio.run(run_bot(settings))


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from app.backtest import run_demo
    from app.logs import configure_logging
    from engine.backtest.replay import DemoOptions

    configure_logging("WARNING")
    try:
        start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    except ValueError:
        print(f"vigil: --start must be a date like 2025-03-01, got {args.start!r}", file=sys.stderr)
        return EXIT_CONFIG
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    options = DemoOptions(data_dir=args.data_dir, symbols=symbols, start=start, days=args.days,
                          quiet=args.quiet, db_path=args.db)
    try:
        return asyncio.run(run_demo(settings, options))
    except FileNotFoundError as exc:
        print(f"vigil: demo data not found: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def _backtest(settings: Settings, args: argparse.Namespace) -> int:
    import logging

    from app.backtest_cli import main as backtest_main

    # not app.run.configure_logging: importing the live runtime would cost seconds the backtest does not need
    logging.basicConfig(level=logging.WARNING, format="vigil: %(levelname)s %(name)s: %(message)s", force=True)
    return backtest_main(settings, args)


def _data_dir(settings: Settings, args: argparse.Namespace) -> Path:
    return args.data_dir if args.data_dir is not None else settings.data_dir / DATA_SUBDIR


def _day(text: str, flag: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{flag} must be a day like 2024-01-31, got {text!r}") from None


def _download(settings: Settings, args: argparse.Namespace) -> int:
    from app.logs import configure_logging
    from engine.datasets.download import DownloadError, DownloadRequest, download
    from engine.exchange.errors import ExchangeError

    configure_logging("ERROR")  # retries and throttle pauses are routine here; the outcome is printed
    try:
        symbols = tuple(dict.fromkeys(s.strip().upper() for s in args.symbols.split(",") if s.strip()))
        request = DownloadRequest(symbols, _day(args.start, "--start"), _day(args.end, "--end"),
                                  _data_dir(settings, args))
    except (ValueError, DownloadError) as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        result = asyncio.run(download(request, base_url=settings.binance_base_url,
                                      weight_budget_pct=settings.binance_weight_budget_pct,
                                      api_key=settings.binance_api_key, api_secret=settings.binance_api_secret,
                                      progress_stream=sys.stderr))
    except DownloadError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (ExchangeError, OSError, ValueError) as exc:
        print(f"vigil: download stopped: {exc}. What was fetched is saved; run the same command again to "
              f"resume.", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("vigil: download interrupted. What was fetched is saved; run the same command again to resume.",
              file=sys.stderr)
        return EXIT_FAILED
    for line in [*(r.render() for r in result.reports), *result.notes]:
        print(line)
    print(f"data folder: {request.data_dir}")
    return 0


def _import_dumps(settings: Settings, args: argparse.Namespace) -> int:
    from app.logs import configure_logging
    from engine.datasets.dumps import DumpError, import_dumps

    configure_logging("WARNING")
    data_dir = _data_dir(settings, args)
    try:
        summaries = import_dumps(args.paths, data_dir)
    except (DumpError, ValueError, OSError) as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for s in summaries:
        print(f"{s.symbol} {s.kind}: {s.files} files, {s.rows_read} rows read, {s.merge.added} added, "
              f"{s.merge.rows} in {s.merge.path}")
    return 0


def _health(settings: Settings) -> int:
    from app.run import heartbeat_age

    age = asyncio.run(heartbeat_age(settings, datetime.now(UTC)))
    limit = settings.heartbeat_max_age_seconds
    if age is None:
        print("unhealthy: no monitor tick recorded yet")
        return 1
    if age > limit:
        print(f"unhealthy: last monitor tick {age:.0f} s ago (limit {limit} s)")
        return 1
    print(f"healthy: last monitor tick {age:.0f} s ago")
    return 0


if __name__ == "__main__":
    sys.exit(main())
