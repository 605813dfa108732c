"""DatasetError: the dataset root cannot be used at all. Raised by the layout, the remote listing and
object access alike, so it lives apart from all three."""


class DatasetError(Exception):
    """The dataset root cannot be used at all (missing, not a folder, unreadable, no images).

    The CLI prints the message as one line and exits with code 2."""
