"""Initial guesses for pose graphs."""

from .chordal import chordal_initialization

__all__ = ["chordal_initialization"]
