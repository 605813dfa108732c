"""Placeholder: filled in by its issue."""

CHECKS: list = []
