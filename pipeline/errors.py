"""Errors a user can cause and fix.

Each carries one line that names the problem and the fix. The CLI prints that line and exits
non-zero; anything else that escapes is a programming error and keeps its traceback.
"""


class UserError(Exception):
    """A problem in the user's input or environment, with the fix in the message."""


class ScheduleError(UserError):
    """A compression schedule that cannot be read, rewritten or applied to the model."""


class DataError(UserError):
    """A data set that is missing or not in an expected layout."""


class ModelError(UserError):
    """An unknown model name, or a checkpoint that does not fit the model."""


class BenchmarkError(UserError):
    """A model file or target that cannot be benchmarked."""


class QueueError(UserError):
    """The queue (Redis) cannot be reached or holds something unusable."""


class SweepError(UserError):
    """A sweep config that cannot be read or mapped onto the schedule."""


class OutputError(UserError):
    """An output path that cannot be written as asked (e.g. it names a device or a symlink)."""
