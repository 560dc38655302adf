"""CLI commands of the training package: ``mka train``, ``mka data``, ``mka eval``."""
