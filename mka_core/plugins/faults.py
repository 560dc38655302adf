"""Errors that come out of a plugin are named as that plugin's, with its distribution.

Three shapes reach the user:

* a plugin's options model rejects a value (``--cond-option bogus=1``): :func:`options_error`
  (or :func:`validate_options`, which checks and raises it) says which option, for which
  plugin, from which distribution;
* a plugin failed to import or register: the registry names it when its name is asked for
  (:meth:`mka_core.plugins.manager.Registry.get`);
* an exception raised inside a third-party plugin's code (its ``prepare``, ``encode``,
  ``run``...): :func:`plugin_fault` reads the traceback, finds the plugin's code in it and
  turns the exception into a :class:`~mka_core.errors.PluginError` sentence.

Anything else that escapes is a fault of mka's own (the CLI then says "internal error").
"""

from __future__ import annotations

import traceback
from typing import Any, Mapping

from mka_core.errors import MkaError, PluginError, PluginOptionsError, validation_problems


def describe_plugin(obj: Any, kind: str | None = None) -> str:
    """``"conditioner 'echo' from the distribution 'fake-echo' 1.2.3"`` for a registered class or instance.

    An object nobody registered is described by its class name only.
    """
    from mka_core.plugins import manager

    registration = manager.provenance(obj, kind)
    if registration is None:
        cls = obj if isinstance(obj, type) else type(obj)
        name = getattr(cls, "name", None) or cls.__name__
        return f"{kind or 'plugin'} '{name}'"
    return f"{registration.kind} '{registration.name}' {_from(registration.distribution, registration.version)}"


def _from(distribution: str, version: str) -> str:
    return f"from the distribution '{distribution}'{' ' + version if version and version != 'unknown' else ''}"


def options_error(cls: Any, exc: BaseException, kind: str | None = None) -> PluginOptionsError:
    """The error for ``cls.Options`` rejecting the given options (a pydantic ValidationError).

    A :class:`PluginOptionsError`: both an ``InputError`` (the caller's value) and a ``PluginError``
    (the sentence names the plugin and its distribution).
    """
    fields = sorted(getattr(getattr(cls, "Options", None), "model_fields", {}) or {})
    valid = f"; its options are: {', '.join(fields)}" if fields else "; it takes no options"
    return PluginOptionsError(f"The {describe_plugin(cls, kind)} rejected its options: {validation_problems(exc)}{valid}.")


def validate_options(cls: Any, values: Mapping[str, Any] | None, kind: str | None = None) -> Any:
    """``cls.Options(**values)``, with a rejected value reported as the plugin's :func:`options_error`."""
    from pydantic import ValidationError

    try:
        return cls.Options(**dict(values or {}))
    except ValidationError as exc:
        raise options_error(cls, exc, kind) from exc


def plugin_fault(exc: BaseException) -> MkaError | None:
    """A :class:`PluginError` naming the plugin when ``exc`` came out of a plugin, else None.

    * a pydantic ValidationError of a registered plugin's ``Options`` model: the options error;
    * an exception whose traceback passes through a third-party plugin's code (or whose direct
      cause does): "the conditioner 'x' from the distribution 'd' failed in encode: ...".

    mka's own code (``mka_core``, ``mka_plugins``, ``training``) is never blamed on a plugin.
    """
    if isinstance(exc, MkaError):
        return None
    options_owner = _options_model_owner(exc)
    if options_owner is not None:
        return options_error(options_owner, exc)
    for candidate in (exc, exc.__cause__):
        if candidate is None or candidate.__traceback__ is None:
            continue
        found = _plugin_frame(candidate)
        if found is not None:
            return _fault_sentence(exc, candidate, *found)
    return None


def _options_model_owner(exc: BaseException) -> Any:
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return None
    from mka_core.plugins import manager

    for kind in manager.KINDS:
        for registration in manager.registrations(kind):
            options = getattr(registration.obj, "Options", None)
            if isinstance(options, type) and options.__name__ == exc.title:
                return registration.obj
    return None


def _plugin_frame(exc: BaseException) -> tuple[tuple[str, str, str], Any] | None:
    """((plugin, distribution, version), frame) of the outermost frame in third-party plugin code.

    The outermost one is where mka called into the plugin (its ``encode``, say); frames further
    in are the plugin's own helpers or its libraries.
    """
    from mka_core.plugins import manager

    owners = manager.get_plugin_manager()
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        module = frame.f_globals.get("__name__")
        if not isinstance(module, str):
            continue
        owner = owners.owner_of_module(module)
        if owner is not None:
            return owner, frame
    return None


def _fault_sentence(exc: BaseException, raised: BaseException, owner: tuple[str, str, str], frame: Any) -> PluginError:
    from mka_core.plugins import manager

    plugin, distribution, version = owner
    target = frame.f_locals.get("self", frame.f_locals.get("cls"))
    registration = manager.provenance(target) if target is not None else None
    if registration is not None:  # a method of a registered conditioner, task...: name that item
        what = describe_plugin(target)
    else:  # a module-level function or a helper class of the plugin
        what = f"plugin '{plugin}' {_from(distribution, version)}"
    detail = (str(exc).strip().splitlines() or [""])[0][:200]
    error = f"{exc.__class__.__name__}: {detail}" if detail else exc.__class__.__name__
    return PluginError(
        f"The {what} failed in {frame.f_code.co_name} ({error}); this is a fault of that plugin, not of mka - "
        "report it to the plugin's authors (MKA_DEBUG=1 shows the traceback)."
    )
