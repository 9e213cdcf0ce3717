"""Test and benchmark harness: Redis processes, load generators, no-op servers.

Imported by tests/ and bench/ only; not installed with the product."""
