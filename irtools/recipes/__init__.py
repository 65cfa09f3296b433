"""Recipes: how to build a model and its example inputs (presets, transformers configs and
classes) and the config symbols its formulas can be written in."""
