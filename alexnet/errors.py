"""One exception type for problems the user can fix, so jobs can print them in one line."""


class UserError(Exception):
    """Bad input or configuration: the message names the file or flag and the fix."""
