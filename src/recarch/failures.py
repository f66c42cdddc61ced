"""Failures of a run that the command line reports without a traceback (importable without torch)."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""
