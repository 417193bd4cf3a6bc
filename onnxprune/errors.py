"""The one exception type the CLI turns into a single stderr line."""


class OnnxPruneError(Exception):
    """A problem with the user's input or environment, explained in one line."""
