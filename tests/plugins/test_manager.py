"""The plugin manager: entry points, allow-list, collisions, failures, provenance."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mka_core.errors import PluginError
from mka_core.plugins import manager
from tests.plugins.fake_dists import make_distribution, on_sys_path

GOOD_CONDITIONER = '''
from mka_core import hookimpl
from mka_core.conditioning import Conditioner
from mka_core.config import StrictModel

class Options(StrictModel):
    pass

class Echo(Conditioner):
    name = "{name}"
    input_kind = "text"
    Options = Options

@hookimpl
def register_conditioners(register):
    register(Echo)
'''


@pytest.fixture
def plugin_root(tmp_path):
    with on_sys_path(tmp_path):
        yield tmp_path


def test_builtins_come_from_entry_points_of_the_mka_distribution():
    reg = manager.registry()
    assert ("mka:commands", "mka") in {(p, d) for p, d, _ in reg.plugins}
    info = reg.get("command", "info")
    assert info.distribution == "mka" and info.plugin == "mka:commands"


def test_allow_list_excludes_and_includes_third_party(plugin_root, monkeypatch):
    make_distribution(plugin_root, "fake-echo", "1.2.3", {"fake_echo": GOOD_CONDITIONER.format(name="echo-x")},
                      {"echo": "fake_echo"})
    monkeypatch.setenv("MKA_LOAD_PLUGINS", "")
    manager.reset_plugins()
    assert "echo-x" not in manager.names("conditioner")

    monkeypatch.setenv("MKA_LOAD_PLUGINS", "fake-echo")
    manager.reset_plugins()
    reg = manager.registry().get("conditioner", "echo-x")
    assert (reg.distribution, reg.version) == ("fake-echo", "1.2.3")

    monkeypatch.delenv("MKA_LOAD_PLUGINS")
    manager.reset_plugins()
    assert "echo-x" in manager.names("conditioner")


def test_import_failure_is_reported_and_others_still_work(plugin_root, monkeypatch):
    make_distribution(plugin_root, "fake-broken", "0.1", {"fake_broken": "raise RuntimeError('boom at import')"},
                      {"broken": "fake_broken"})
    make_distribution(plugin_root, "fake-fine", "0.1", {"fake_fine": GOOD_CONDITIONER.format(name="fine")},
                      {"fine": "fake_fine"})
    monkeypatch.setenv("MKA_LOAD_PLUGINS", "fake-broken,fake-fine")
    reg = manager.registry()
    messages = [f.message for f in reg.failures]
    assert any("fake-broken" in m and "boom at import" in m for m in messages)
    assert "fine" in reg.names("conditioner")
    assert "info" in reg.names("command")


def test_misspelled_hook_fails_loudly(plugin_root, monkeypatch):
    source = '''
from mka_core import hookimpl

@hookimpl
def register_conditioner(register):  # singular: not a hook
    pass
'''
    make_distribution(plugin_root, "fake-typo", "0.1", {"fake_typo": source}, {"typo": "fake_typo"})
    monkeypatch.setenv("MKA_LOAD_PLUGINS", "fake-typo")
    failures = manager.registry().failures
    assert any("fake-typo" in f.message and "register_conditioner" in f.message for f in failures)


def test_collision_names_both_distributions(plugin_root, monkeypatch):
    make_distribution(plugin_root, "fake-one", "1.0", {"fake_one": GOOD_CONDITIONER.format(name="twin")}, {"one": "fake_one"})
    make_distribution(plugin_root, "fake-two", "2.0", {"fake_two": GOOD_CONDITIONER.format(name="twin")}, {"two": "fake_two"})
    monkeypatch.setenv("MKA_LOAD_PLUGINS", "fake-one,fake-two")
    reg = manager.registry()
    assert any("twin" in f.message and "fake-one" in f.message and "fake-two" in f.message for f in reg.failures)
    with pytest.raises(PluginError, match="fake-one.*fake-two"):
        reg.get("conditioner", "twin")


def test_collision_with_a_builtin_is_an_error(plugin_root, monkeypatch):
    source = '''
from mka_core import hookimpl
from mka_core.cli.command import Command

@hookimpl
def register_commands(register):
    register(Command("info", "shadow", lambda parser: None, lambda args: 0))
'''
    make_distribution(plugin_root, "fake-clash", "1.0", {"fake_clash": source}, {"clash": "fake_clash"})
    monkeypatch.setenv("MKA_LOAD_PLUGINS", "fake-clash")
    with pytest.raises(PluginError, match="'mka' and 'fake-clash'"):
        manager.get("command", "info")
    assert "env" in manager.names("command")


def test_hook_that_raises_is_reported(plugin_root, monkeypatch):
    source = '''
from mka_core import hookimpl

@hookimpl
def register_tasks(register):
    raise ValueError("cannot register today")
'''
    make_distribution(plugin_root, "fake-raise", "0.1", {"fake_raise": source}, {"raise": "fake_raise"})
    monkeypatch.setenv("MKA_LOAD_PLUGINS", "fake-raise")
    assert any("cannot register today" in f.message for f in manager.registry().failures)


def test_unknown_name_lists_installed():
    with pytest.raises(PluginError, match="Unknown task 'nope'"):
        manager.get("task", "nope")


def test_cli_survives_broken_and_colliding_plugins(tmp_path):
    make_distribution(tmp_path, "fake-broken", "0.1", {"fake_broken": "raise ImportError('missing thing')"},
                      {"broken": "fake_broken"})
    make_distribution(tmp_path, "fake-one", "1.0", {"fake_one": GOOD_CONDITIONER.format(name="twin")}, {"one": "fake_one"})
    make_distribution(tmp_path, "fake-two", "2.0", {"fake_two": GOOD_CONDITIONER.format(name="twin")}, {"two": "fake_two"})
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "MKA_LOAD_PLUGINS": "fake-broken,fake-one,fake-two"}
    version = subprocess.run([sys.executable, "-m", "mka_core.cli.main", "--version"], env=env,
                             capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("mka ")
    listing = subprocess.run([sys.executable, "-m", "mka_core.cli.main", "plugins", "--json"], env=env,
                             capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    messages = " ".join(f["message"] for f in data["failures"])
    assert "missing thing" in messages and "twin" in messages
    assert any(row["name"] == "info" for row in data["installed"])
    assert "Traceback" not in listing.stderr


def test_every_kind_registers_through_its_hook(plugin_root, monkeypatch):
    source = '''
from mka_core import hookimpl
from mka_core.cli.command import Command


class Voc:
    name = "voc-x"


class Trainer:
    name = "trainer-x"


class Expert:
    name = "expert-x"


@hookimpl
def register_vocoders(register):
    register(Voc)


@hookimpl
def register_trainers(register):
    register(Trainer)


@hookimpl
def register_caption_experts(register):
    register(Expert)


@hookimpl
def register_commands(register):
    register(Command("cmd-x", "demo", lambda parser: None, lambda args: 0))
'''
    make_distribution(plugin_root, "fake-kinds", "0.3", {"fake_kinds": source}, {"kinds": "fake_kinds"})
    monkeypatch.setenv("MKA_LOAD_PLUGINS", "fake-kinds")
    reg = manager.registry()
    for kind, name in [("vocoder", "voc-x"), ("trainer", "trainer-x"), ("caption-expert", "expert-x"), ("command", "cmd-x")]:
        entry = reg.get(kind, name)
        assert (entry.distribution, entry.version) == ("fake-kinds", "0.3")
