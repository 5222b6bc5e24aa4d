"""The one exception the library raises for anything a user can fix.

The CLI prints its message as a single line and exits 1; notebook users see it as an
ordinary exception. Messages say what is wrong, the value given, what is allowed and
where it came from.
"""


class AutomlError(Exception):
    """A user-facing error: bad input, missing data, refused download, bad option."""


class UsageError(AutomlError):
    """An option that can never work as given (a budget of zero seconds, say): the CLI exits 2."""

    exit_code = 2
