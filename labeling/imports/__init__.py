"""Items in: read and check a file (CSV, TSV, JSON, Label Studio, Parquet, Arrow, a zipped
datasets folder), write it all or nothing, the import job around both."""
