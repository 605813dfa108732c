"""Checks: small units with stable IDs, each yielding findings from the index."""
