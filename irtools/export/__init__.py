"""Renderers and exporters over an analysis result (data collection lives elsewhere)."""
