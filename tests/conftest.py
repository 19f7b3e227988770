"""Shared fixtures: the Binance adapter tests' fake server and adapter (tests/binance_fixtures.py)."""

pytest_plugins = ["tests.binance_fixtures"]
