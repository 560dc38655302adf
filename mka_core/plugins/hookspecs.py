"""The hooks a plugin can implement (pluggy project ``mka``, entry-point group ``mka``).

Every hook receives a ``register`` callback and calls it once per thing it adds. The core
records which distribution registered what and refuses duplicate names.
"""

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("mka")
hookimpl = HookimplMarker("mka")


@hookspec
def register_conditioners(register):
    """Register conditioners: ``register(ConditionerSubclass)``."""


@hookspec
def register_tasks(register):
    """Register tasks: ``register(TaskSubclass)``."""


@hookspec
def register_vocoders(register):
    """Register vocoders: ``register(VocoderSubclass)``; the class needs a ``name`` attribute."""


@hookspec
def register_samplers(register):
    """Register samplers: ``register(SamplerSubclass)``; a ``Sampler`` subclass with a ``name`` attribute."""


@hookspec
def register_vaes(register):
    """Register VAEs: ``register(LatentAutoencoderSubclass)``; the class needs a ``name`` attribute."""


@hookspec
def register_commands(register):
    """Register CLI commands: ``register(Command(name, help, add_arguments, run))``."""


@hookspec
def register_trainers(register):
    """Register trainable targets for ``mka train``: ``register(TrainTargetSubclass)``."""


@hookspec
def register_caption_experts(register):
    """Register captioning or retrieval experts for ``mka data caption``: ``register(CaptionExpertSubclass)``."""


@hookspec
def register_audio_classifiers(register):
    """Register audio classifiers for ``mka eval``: ``register(ClassifierClass)`` with a ``name`` and ``load(source, device)``."""
