"""Market-data files: the folder layout the backtests read, ``download`` from Binance and ``import-dumps``."""
