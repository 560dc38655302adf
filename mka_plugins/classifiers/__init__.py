"""Built-in audio classifiers for ``mka eval`` that are registered as plugins (real-data evaluation)."""
