"""Trainable targets: what ``mka train NAME`` trains, one module per target."""
