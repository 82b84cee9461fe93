"""Watching a weld while it is being made (SPEC §12): streaming windows, alerts, verdicts."""
