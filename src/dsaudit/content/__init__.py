"""Content checks' measurements and analyses: per-image properties taken during the one decode
(``properties``), and the dataset-level analyses the quality, drift, outlier and label checks
share (``analysis``). Checks never open images; everything here reads the index."""
