"""vpstudy: a reproducible, interactive study of video prediction (SimVP and a lightweight CrevNet-style model)."""

__version__ = "0.1.0"
