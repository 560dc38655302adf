"""User-facing errors.

An :class:`MkaError` carries one sentence that says what was wrong and what to do.
The CLI prints it without a traceback and exits non-zero; the Python API lets it
propagate so callers can catch it.
"""

from __future__ import annotations

from typing import Any


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


class PluginOptionsError(InputError, PluginError):
    """A plugin's options model rejected a value: the caller's input (an InputError), named as that
    plugin's (a PluginError) with its distribution."""


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


def validation_problems(exc: BaseException, limit: int = 3) -> str:
    """The problems of a pydantic ``ValidationError`` as one clause: ``'where': what; ...``.

    Each problem names the field path (``mel.sample_rate``) and pydantic's message without its
    prefixes and documentation link; an unknown key says so in words. At most ``limit``
    problems are listed, then how many more there are. Anything that is not a pydantic error
    gives its own text (first line only).
    """
    errors = getattr(exc, "errors", None)
    try:
        problems: list[dict[str, Any]] = list(errors()) if callable(errors) else []
    except Exception:  # not pydantic's errors() after all
        problems = []
    if not problems:
        text = str(exc).strip().splitlines()
        return shown(text[0] if text else exc.__class__.__name__, 200)
    parts = []
    for problem in problems[:limit]:
        where = ".".join(str(part) for part in problem.get("loc", ()))
        if problem.get("type") == "extra_forbidden":
            message = "is not a known field (extra inputs are not permitted)"
        else:
            message = str(problem.get("msg", "invalid")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
            message = message[:1].lower() + message[1:]
        message = shown(message.rstrip("."), 200)
        parts.append(f"'{shown(where)}' {message}" if where else message)
    more = len(problems) - limit
    return "; ".join(parts) + (f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else "")


def validation_sentence(exc: BaseException, what: str) -> str:
    """One sentence for a pydantic ``ValidationError`` raised while checking ``what``.

    ``validation_sentence(exc, "options of sampler 'ddim'")`` ->
    ``"Invalid options of sampler 'ddim': 'eta' input should be greater than or equal to 0."``
    """
    return f"Invalid {what}: {validation_problems(exc)}."
