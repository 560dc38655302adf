"""``mka eval``: objective scores of a pipeline against reference audio."""
