"""User-facing errors.

An :class:`MkaError` carries one sentence that says what was wrong and what to do.
The CLI prints it without a traceback and exits non-zero; the Python API lets it
propagate so callers can catch it.
"""

from __future__ import annotations


class MkaError(Exception):
    """An error caused by the user's input or environment, with a clear message."""

    exit_code = 2


class InputError(MkaError):
    """An input file, value or option is invalid."""


class AudioFileError(InputError):
    """An audio file cannot be used; ``reason`` says why in a word callers can branch on.

    Reasons: ``missing``, ``folder``, ``permission``, ``unreadable`` (not an audio format
    soundfile knows), ``corrupt`` (the header reads, the samples do not), ``empty``,
    ``non-finite`` (NaN or Inf samples).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class WeightsError(MkaError):
    """Weights are missing, corrupt, unsafe to load or of the wrong family."""


class PluginError(MkaError):
    """A plugin is missing, broken or collides with another."""


class SpaceMismatchError(MkaError):
    """A conditioner writes into another embedding space than the model was trained in."""


class NumericalError(MkaError):
    """NaN or Inf appeared in a tensor; the message names the stage that produced it."""


def shown(text: str, limit: int = 60) -> str:
    """The user's text as an error message quotes it: on one line (control characters and line
    separators escaped) and at most ``limit`` characters, so the message stays one readable sentence."""
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."
