"""The one base class for errors a user can cause (bad files, configs, arguments).

Every module raises a subclass of :class:`CallmoodError` with a message that
names the input and the problem; the CLI and the service turn it into a clear
message (exit code 2 / HTTP 4xx) instead of a traceback.
"""


class CallmoodError(Exception):
    """A problem with the user's input, explained in the message."""
