"""Models: the backbone registry and the classifier built on it."""
