"""Sentence embeddings: the embedders, their on-disk store, a campaign's pool, the jobs."""
