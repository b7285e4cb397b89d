"""The language model: names and loading, plumbing, per-token log-probs, batching, sampling."""
