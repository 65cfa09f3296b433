"""Analysis passes over the irtools IR; ``irtools.pipeline`` lists them in order."""
