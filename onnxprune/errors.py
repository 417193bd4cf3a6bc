"""The one exception type the CLI turns into a single stderr line."""


class OnnxPruneError(Exception):
    """A problem with the user's input or environment, explained in one line."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what a
    one-line error quotes of a library's failure."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
