"""Datasets: their specs, verified downloads from mirrors, the IDX format, splits and their cache."""
