"""Network analytics for the console: daily rollups kept as things happen."""
