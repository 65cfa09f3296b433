"""Reference models written for irtools (no downloads, transformers-independent)."""
