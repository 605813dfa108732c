"""dsaudit: a data-integrity auditor for image-classification datasets."""

__version__ = "0.1.0"
