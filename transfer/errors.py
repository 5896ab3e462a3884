"""The one exception type for mistakes a user can fix: the CLI prints it as one line and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (a path, a file, a config value) and how to fix it.

    The message names the file or config key and says what to do; the CLI prints it without a traceback.
    """
