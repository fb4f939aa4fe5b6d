"""The base of dgss's expected, user-facing errors.

Every error a user can cause (a bad path, a corrupt file, an invalid option value, a data problem, a
checkpoint/config mismatch) is raised as a subclass of :class:`DgssError`. The command line prints
such errors as one line, ``dgss <verb>: error: <message>``, and exits with status 2; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class DgssError(Exception):
    """An expected error whose message tells the user what is wrong, where, and what to do."""


class DataError(DgssError):
    """A data problem the user has to fix; the message names the file or directory.

    `values` lists offending label values when the problem is a label value outside the class set.
    """

    def __init__(self, message: str, values: Iterable[int] = ()):
        super().__init__(message)
        self.values = tuple(int(v) for v in values)


class AdapterInitError(DgssError, RuntimeError):
    """A weight-level adapter (SoMA) whose initialisation from the loaded frozen weights never ran."""


class BackendError(DgssError, ValueError):
    """An inference backend / precision combination that cannot run here."""


class ClassCountError(DgssError, ValueError):
    """More classes than a model's class attention can take with its class pruning switched off."""


class ClipWeightsError(DgssError, RuntimeError):
    """A CLIP weights file that does not fit the model's CLIP towers (wrong size or keys); names the key."""


class CLIError(DgssError):
    """An error the CLI reports as one clear line (no traceback)."""


class CheckpointError(DgssError, RuntimeError):
    """A checkpoint that cannot be read or does not fit the model."""


class ClassesFileError(DataError, ValueError):
    """A `classes.yaml` that is missing or malformed; the message names the file and the key."""


class CompareError(DgssError, ValueError):
    """A bad ``--methods`` list or option (one line, names the problem)."""


class FADAWindowError(DgssError, ValueError):
    """A window whose patch grid FADA's channel-grid Haar layout cannot handle."""


class FrozenWeightsError(DgssError, RuntimeError):
    """A frozen encoder could not be filled completely and correctly from its declared source."""


class GtrLtrError(DgssError, ValueError):
    """The user-supplied style folder or style-transfer network cannot be used."""


class HubError(DgssError, ValueError):
    """A model reference that cannot be resolved or loaded; the message says what to pass instead."""


class InputError(DgssError, ValueError):
    """An input path that is missing, unreadable or of an unsupported type."""


class InputSizeError(DgssError, ValueError):
    """Input image sides are not multiples of the encoder's patch size."""


class LabelValueError(DgssError, ValueError):
    """A label holds values outside the set its format allows; `values` lists them."""

    def __init__(self, message: str, values: Iterable[int]):
        super().__init__(message)
        self.values = tuple(int(v) for v in values)


class OptionError(DgssError, ValueError):
    """An option value that is invalid for this model or input (found after parsing)."""


class OutputPathError(DgssError, OSError):
    """An output location that cannot be written (under a regular file, read-only, or a foreign folder)."""


class ReferenceFormatError(DgssError, ValueError):
    """A reference checkpoint with keys dgss cannot place."""


class ResumeError(DgssError, RuntimeError):
    """No usable checkpoint to resume from, or one that does not fit this run."""


class TextTableError(DgssError, RuntimeError):
    """Text tables that can be neither loaded from the cache nor computed."""


class TooLongPromptError(DgssError, ValueError):
    """A prompt longer than CLIP's 77-token context."""


class TrainingError(DgssError, RuntimeError):
    """Training cannot continue (non-finite loss, work directory conflicts, ...)."""


class UnknownModelError(DgssError, KeyError):
    """A model or encoder name that dgss does not know; the message lists the known names."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class UserError(DgssError, ValueError):
    """Something the user can fix (bad file, empty class list, ...): shown on the page, never a traceback."""


class VocabularyError(DgssError, ValueError):
    """An empty, duplicated, unknown or malformed vocabulary."""


class ConfigError(DgssError, ValueError):
    """A run config that cannot be used; the message names the offending key."""
