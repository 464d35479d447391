"""Server administration: what the admin API does beyond reading and writing rows."""
