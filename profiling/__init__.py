"""Targets, measurement and (later) runners and reports."""
