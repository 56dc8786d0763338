"""Speed benchmarks (`python -m bench.speed`)."""
