"""Comparing learners: reading run directories, paired statistics across seeds, the
comparison of runs and its report (tables, category diagnostics, plots)."""
