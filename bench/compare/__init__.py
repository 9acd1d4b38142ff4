"""Engines side by side (``python -m bench.engines``): which servers to start (targets), one
concurrency level against one server (levels), how servers take turns (rounds) and the tables
and plot of the result (tables)."""
