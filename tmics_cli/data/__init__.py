"""Data: rain synthesis and datasets."""
