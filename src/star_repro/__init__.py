"""star-repro: a reproducibility pipeline for STAR (zero-shot skeleton action recognition, ACM MM 2024)."""
__version__ = "0.1.0"
