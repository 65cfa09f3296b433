"""Analysis passes over the irtools IR; ``passes.pipeline`` lists them in order."""
