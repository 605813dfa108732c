"""The one pass over a dataset: layout, per-file records, features, cache, engine."""
