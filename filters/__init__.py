"""Dataset filters: MinHash dedup, decontamination, quality filters."""
