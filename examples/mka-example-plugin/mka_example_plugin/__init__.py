"""Entry point of the example plugin: one module with the hook implementations."""

from mka_core import hookimpl

from mka_example_plugin.conditioner import TrigramTextConditioner
from mka_example_plugin.task import ContinueTask


@hookimpl
def register_conditioners(register):
    register(TrigramTextConditioner)


@hookimpl
def register_tasks(register):
    register(ContinueTask)
