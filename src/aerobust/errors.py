"""Errors a user can cause and fix; the CLI prints them as one line and exits 2."""


class UserError(Exception):
    """Bad input from the user (path, file, name, range): shown without a traceback."""


class DataError(UserError):
    """A dataset file is missing, corrupt, truncated or fails its checksum."""


class CheckpointError(UserError):
    """A checkpoint is unreadable, unsafe, or for another architecture."""
