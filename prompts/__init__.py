"""Prompt templates of each method, shipped as package data."""
