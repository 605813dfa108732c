"""The near-duplicate engine: candidate search, verification and match assembly over image descriptors."""
