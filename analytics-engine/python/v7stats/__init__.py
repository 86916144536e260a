"""V7 statistics component: see :mod:`v7stats.server` for the stdin/stdout protocol."""

from .stats import percentile, summarize, summarize_groups

__all__ = ["percentile", "summarize", "summarize_groups"]
__version__ = "0.1.0"
