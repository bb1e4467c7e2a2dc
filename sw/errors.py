"""The one exception type for problems a user can fix (bad data, formats, options, tools)."""


class FxbpError(ValueError):
    """A problem with the user's input, a missing tool or a design that does not fit.

    The message is one line naming the problem and the fix; the command line
    prints it and exits with status 2.
    """
