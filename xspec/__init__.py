"""xspec: declarative studies of backdoors in CLIP models."""

__version__ = "0.1.0"
