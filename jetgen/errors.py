"""The one user-facing error type.

Every problem a user can cause (bad input, wrong files, unsupported hardware) is raised as a
``JetgenError`` whose message is a sentence saying what was wrong and what to do. The CLI turns it
into that message on stderr and exit status 1, never a traceback. Python 3.6 compatible.
"""


class JetgenError(Exception):
    """A problem the user can fix; ``str(err)`` is the sentence to show them."""
