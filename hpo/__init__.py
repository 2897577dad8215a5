"""Forge HPO: hyperparameter optimization for customizing language models."""

__version__ = "0.1.0"
