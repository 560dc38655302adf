"""Training data: manifests, preparation, datasets and pseudo prompt enhancement."""
