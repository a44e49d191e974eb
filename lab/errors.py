"""The lab's error type (shared by the control code and its backends)."""

from __future__ import annotations

__all__ = ["LabError"]


class LabError(RuntimeError):
    """The lab cannot do what was asked."""
