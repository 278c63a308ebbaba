"""Test and benchmark harness: the relay and redis-server as real processes."""
