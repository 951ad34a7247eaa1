"""The label export: per-item records (rows) and the formats written from them."""
