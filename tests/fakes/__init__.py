"""Local fakes of external services for integration tests (real clients over HTTP on 127.0.0.1)."""
