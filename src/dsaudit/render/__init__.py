"""Renderers: each reads a ScanResult and nothing else."""
