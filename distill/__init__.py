"""distill: synthetic-data distillation toolkit."""

__version__ = "0.1.0"
