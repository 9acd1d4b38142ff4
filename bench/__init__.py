"""Benchmarks and the stress-test tooling for gptapi (never imported by the service)."""
