"""Capture layer: sources, the session clock, the time-aligned buffer, recording and replay.

This package never imports torch or anything from ``app``: capture must stay light and must never wait on
the model.
"""
