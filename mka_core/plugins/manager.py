"""Loading plugins from entry points and keeping the registry of what they added.

The core owns names: a name registered twice is a collision, reported with both
distributions and unusable until one of them is removed. Each registered item records the
distribution and version that provided it. A plugin that fails to import, fails validation
(a misspelled hook name) or raises while registering is reported in :attr:`Registry.failures`
and the rest of mka keeps working.

``MKA_LOAD_PLUGINS`` (comma-separated distribution names) restricts which third-party
distributions load; set but empty means built-ins only. The built-ins (distribution ``mka``)
always load, through the very same entry-point path a third party uses.
"""

from __future__ import annotations

import os
import threading
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any, Callable, Iterable

import pluggy

from mka_core.errors import PluginError
from mka_core.plugins import hookspecs

ENTRY_POINT_GROUP = "mka"
BUILTIN_DISTRIBUTION = "mka"
#: mka's own top-level packages: code there is never a third party's.
OWN_PACKAGES = ("mka_core", "mka_plugins", "training")

#: hook name -> registry kind
HOOK_KINDS = {
    "register_conditioners": "conditioner",
    "register_tasks": "task",
    "register_vocoders": "vocoder",
    "register_vaes": "vae",
    "register_samplers": "sampler",
    "register_commands": "command",
    "register_trainers": "trainer",
    "register_caption_experts": "caption-expert",
    "register_audio_classifiers": "audio-classifier",
}
KINDS = tuple(HOOK_KINDS.values())


@dataclass
class Registration:
    """One registered item and where it came from."""

    kind: str
    name: str
    obj: Any
    plugin: str
    distribution: str
    version: str


@dataclass
class Failure:
    """A plugin problem, reported by ``mka plugins`` instead of breaking mka."""

    plugin: str
    distribution: str
    message: str
    detail: str = ""
    version: str = ""
    #: What went wrong as a clause after the plugin's name ("failed to import (ImportError: ...)");
    #: empty for collisions, which name their own culprits.
    reason: str = ""


@dataclass
class Registry:
    items: dict[str, dict[str, Registration]] = field(default_factory=lambda: {k: {} for k in KINDS})
    collisions: dict[tuple[str, str], list[Registration]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    plugins: list[tuple[str, str, str]] = field(default_factory=list)  # (plugin, distribution, version)

    def add(self, registration: Registration) -> None:
        key = (registration.kind, registration.name)
        table = self.items[registration.kind]
        if key in self.collisions:
            self.collisions[key].append(registration)
            return
        if registration.name in table:
            first = table.pop(registration.name)
            self.collisions[key] = [first, registration]
            self.failures.append(
                Failure(
                    registration.plugin,
                    registration.distribution,
                    f"{registration.kind} name '{registration.name}' is registered by both "
                    f"'{first.distribution}' ({first.plugin}) and '{registration.distribution}' "
                    f"({registration.plugin}); uninstall one of them to use it.",
                )
            )
            return
        table[registration.name] = registration

    def get(self, kind: str, name: str) -> Registration:
        if (kind, name) in self.collisions:
            owners = " and ".join(f"'{r.distribution}'" for r in self.collisions[(kind, name)])
            raise PluginError(
                f"The {kind} '{name}' is registered by {owners}; uninstall one of them (mka uninstall NAME)."
            )
        table = self.items[kind]
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            broken = self._broken_providers(name)
            if broken:
                # The name is probably one a plugin that failed to load would have provided:
                # say which plugin and distribution, not just "unknown".
                raise PluginError(f"The {kind} '{name}' is not available because {broken}; fix or reinstall that "
                                  f"distribution (`mka plugins` shows the problem). Installed {kind}s: {known}.")
            raise PluginError(f"Unknown {kind} '{name}'; installed {kind}s: {known}. See `mka plugins --available`.")
        return table[name]

    def _broken_providers(self, name: str) -> str:
        """The failed plugins that may have provided ``name``, as a clause (empty when none failed).

        A failed plugin whose entry-point name is ``name`` is named alone; otherwise every
        plugin that failed to import or register is named (collisions are reported elsewhere).
        """
        failed = [f for f in self.failures if f.reason]
        exact = [f for f in failed if f.plugin.split(":")[-1] == name]
        chosen = exact or failed
        if not chosen:
            return ""
        parts = [f"the plugin '{f.plugin}' from the distribution '{f.distribution}'"
                 f"{' ' + f.version if f.version else ''} {f.reason}" for f in chosen[:3]]
        return " and ".join(parts)

    def names(self, kind: str) -> list[str]:
        return sorted(self.items[kind])


def _allowed_distributions() -> set[str] | None:
    value = os.environ.get("MKA_LOAD_PLUGINS")
    if value is None:
        return None
    return {_normalise(v) for v in value.split(",") if v.strip()}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


class PluginManager:
    """Owns the pluggy manager and the registry built from it."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("mka")
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self._origin: dict[int, tuple[str, str, str]] = {}
        #: module or package name -> (plugin, distribution, version) of third-party plugin code
        self.code_owners: dict[str, tuple[str, str, str]] = {}

    # -- loading ----------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        allowed = _allowed_distributions()
        seen: set[tuple[str, str]] = set()
        def order(ep: metadata.EntryPoint) -> tuple[bool, str, str]:
            # Built-ins first, so a third party colliding with one is named second.
            dist_name = ep.dist.name if ep.dist else ""
            return (_normalise(dist_name) != BUILTIN_DISTRIBUTION, dist_name, ep.name)

        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=order):
            dist = ep.dist.name if ep.dist else "unknown"
            version = ep.dist.version if ep.dist else "unknown"
            builtin = _normalise(dist) == BUILTIN_DISTRIBUTION
            if not builtin and allowed is not None and _normalise(dist) not in allowed:
                continue
            if (dist, ep.name) in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add((dist, ep.name))
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not break mka
                self.registry.failures.append(
                    Failure(ep.name, dist, f"plugin '{ep.name}' from '{dist}' failed to import: {exc}", traceback.format_exc(),
                            version=version, reason=f"failed to import ({_one_line(exc)})")
                )
                continue
            self.add_plugin(module, name=f"{dist}:{ep.name}", distribution=dist, version=version)

    def add_plugin(self, plugin: ModuleType | object, *, name: str, distribution: str, version: str = "0") -> None:
        """Register a plugin object (a module or any object with hook implementations)."""
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except Exception as exc:  # misspelled hooks, wrong signatures
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self.registry.failures.append(Failure(name, distribution, f"plugin '{name}' is invalid: {exc}", version=version,
                                                  reason=f"is invalid ({_one_line(exc)})"))
            return
        self._origin[id(plugin)] = (name, distribution, version)
        self._note_modules(plugin, name, distribution, version)
        self.registry.plugins.append((name, distribution, version))
        self._collect(plugin)

    def _collect(self, plugin: object) -> None:
        name, distribution, version = self._origin[id(plugin)]
        for hook_name, kind in HOOK_KINDS.items():
            caller = getattr(self.pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                added: list[Registration] = []

                def register(obj: Any, _kind: str = kind) -> None:
                    item_name = _item_name(obj, _kind)
                    added.append(Registration(_kind, item_name, obj, name, distribution, version))

                try:
                    impl.function(register=register)
                except Exception as exc:
                    self.registry.failures.append(
                        Failure(name, distribution, f"plugin '{name}' raised in {hook_name}: {exc}", traceback.format_exc(),
                                version=version, reason=f"raised in {hook_name} ({_one_line(exc)})")
                    )
                    continue
                for registration in added:
                    self.registry.add(registration)
                    self._note_object_module(registration)

    # -- provenance of code ----------------------------------------------------------------------
    def _note_modules(self, plugin: object, name: str, distribution: str, version: str) -> None:
        """Remember which Python package holds a third-party plugin's code.

        Only a distribution other than mka's own counts: its plugin module's top-level package
        (and, in :meth:`_note_object_module`, the module of every class it registers) then
        belongs to it, so an exception raised in that code can be named as the plugin's.
        """
        if _normalise(distribution) == BUILTIN_DISTRIBUTION:
            return
        module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
        top = module.split(".")[0]
        key = module if top in OWN_PACKAGES or top == "tests" else top
        self.code_owners.setdefault(key, (name, distribution, version))

    def _note_object_module(self, registration: Registration) -> None:
        if _normalise(registration.distribution) == BUILTIN_DISTRIBUTION:
            return
        module = getattr(registration.obj, "__module__", None)
        if isinstance(module, str) and module.split(".")[0] not in OWN_PACKAGES:
            self.code_owners.setdefault(module, (registration.plugin, registration.distribution, registration.version))

    def owner_of_module(self, module: str) -> tuple[str, str, str] | None:
        """(plugin, distribution, version) of the third-party plugin whose code ``module`` is, or None."""
        parts = module.split(".")
        for end in range(len(parts), 0, -1):
            owner = self.code_owners.get(".".join(parts[:end]))
            if owner is not None:
                return owner
        return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{exc.__class__.__name__}: {first[:200]}" if first else exc.__class__.__name__


def _item_name(obj: Any, kind: str) -> str:
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        raise PluginError(f"A {kind} was registered without a 'name' attribute: {obj!r}.")
    return name


_lock = threading.Lock()
_manager: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide manager, loaded from entry points on first use."""
    global _manager
    with _lock:
        if _manager is None:
            manager = PluginManager()
            manager.load_entry_points()
            _manager = manager
        return _manager


def reset_plugins() -> None:
    """Forget the loaded plugins (tests, or after ``mka install``)."""
    global _manager
    with _lock:
        _manager = None


def registry() -> Registry:
    return get_plugin_manager().registry


def get(kind: str, name: str) -> Any:
    """The registered object of ``kind`` called ``name`` (a clear error if unknown or colliding)."""
    return registry().get(kind, name).obj


def names(kind: str) -> list[str]:
    return registry().names(kind)


def registrations(kind: str) -> Iterable[Registration]:
    return registry().items[kind].values()


def provenance(obj: Any, kind: str | None = None) -> Registration | None:
    """The registration of ``obj`` (a registered class, or an instance or subclass of one), or None.

    Tells which plugin, distribution and version provided a conditioner, task, vocoder...
    """
    cls = obj if isinstance(obj, type) else type(obj)
    kinds = [kind] if kind else list(KINDS)
    table = registry().items
    for k in kinds:
        for registration in table[k].values():
            if registration.obj is obj or registration.obj is cls:
                return registration
    for k in kinds:  # a subclass of a registered class (e.g. a plugin's own variant)
        for registration in table[k].values():
            if isinstance(registration.obj, type) and issubclass(cls, registration.obj):
                return registration
    return None


def register_in_process(plugin: object, *, name: str, distribution: str = "<in-process>", version: str = "0") -> None:
    """Add a plugin object without an entry point (embedding applications, notebooks)."""
    get_plugin_manager().add_plugin(plugin, name=name, distribution=distribution, version=version)


HookCallback = Callable[[Any], None]
