"""What the training loaders really yield: their file listings and splits, simulated exactly
(keras.py) or read from the loader objects a user passes (objects.py), without importing the
frameworks unless their objects are given."""
