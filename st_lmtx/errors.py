"""The errors st-lmtx raises on purpose. Each message names what is wrong and the way out.

The command line prints an `LMTXError` as one line, ``st-lmtx: error: <message>``, and exits with its
``exit_code``: 2 for bad input or configuration (fix the command or the files), 1 when the teacher or the run
failed (run the same command again once the cause is gone: every answer is cached), 3 when the run waits for a
batch job's answers (`BatchPending`).
"""

from __future__ import annotations


class LMTXError(Exception):
    """Base class of the errors st-lmtx raises on purpose."""

    exit_code = 2


class InputError(LMTXError, ValueError):
    """A labels or documents input is malformed; the message names the file and line, or the item."""


class ArgumentsError(LMTXError, ValueError):
    """An `LMTXArguments` setting is out of range or not one of its choices."""


class ModelLoadError(LMTXError, OSError):
    """A model that is neither a local folder nor given by the Hub; the message names it and what to pass."""


class TeacherConfigError(LMTXError, ValueError):
    """A teacher specification that cannot be turned into a teacher; the message says what to give."""


class JudgmentsFileError(LMTXError, ValueError):
    """A judgments file cannot be imported (malformed, truncated, or another teacher's); nothing was imported."""


class RunFileError(LMTXError, RuntimeError):
    """A file of a run (state, model, cache) cannot be read; the message names the file and how to recover."""


class CacheFileError(RunFileError):
    """The teacher's answer cache cannot be read; the message says how to recover its answers."""


class CacheLockedError(LMTXError, RuntimeError):
    """Another process held the teacher's answer cache for longer than the patience; the file is fine. Wait for it,
    or give each process its own cache and merge them (``judgments export`` / ``--import-judgments``)."""


class RunInUseError(LMTXError, RuntimeError):
    """Another process is running in the same output folder; wait for it, or use another folder."""


class RunMismatchError(LMTXError, RuntimeError):
    """The output folder holds a run with other settings, documents, labels, base model or teacher."""


class TeacherError(LMTXError, RuntimeError):
    """The teacher could not answer (after retries). Answers already given are in the cache."""

    exit_code = 1


class TeacherBudgetExceeded(TeacherError):
    """A teacher's budget is spent. Answers already given are in the cache; run again with a larger budget to
    continue where this run stopped."""


class ModelFetchError(LMTXError, RuntimeError):
    """The teacher model could not be downloaded or assembled; the destination was left as it was."""

    exit_code = 1


class BatchPending(LMTXError):
    """A batch teacher (``--teacher batch:DIR``) wrote the pairs it needs as batch request lines: run them, import
    the output (``st-lmtx judgments import``), and run the same command again; it resumes where it stopped."""

    exit_code = 3


class NothingToTrainError(LMTXError, RuntimeError):
    """The teacher said "yes" to no shortlisted label of a round: there is nothing to train on."""

    exit_code = 1


class NotATaggerError(LMTXError, FileNotFoundError):
    """A folder or Hub id that holds no LMTX tagger (no label set beside the model)."""
