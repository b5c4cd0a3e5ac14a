"""Retention policy, the partitioned encrypted store layout, the purge engine and its log."""
