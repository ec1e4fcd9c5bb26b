"""Thin click commands: they parse options and call library functions."""
