"""Package data: the code benchmarks (data/*.jsonl.gz, provenance in data/SOURCES.md)."""
