"""Composition-level operations of ``main.py run``: log files, watchdog, backups, metrics."""
