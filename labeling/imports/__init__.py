"""Items in: parse a CSV/JSONL file, write it all or nothing, the import job around both."""
