"""The library's error hierarchy.

Every error raised on bad input is a :class:`MixslamError`; each message states the value, the rule that
it breaks and, where there is one, the fix.
"""
from __future__ import annotations


class MixslamError(Exception):
    """Base class of every error mixslam raises on purpose."""


class InputFormatError(MixslamError, ValueError):
    """A file could not be read: names the path, the 1-based line number and the reason."""

    def __init__(self, path: str, line: int | None, reason: str):
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


class InformationMatrixError(MixslamError, ValueError):
    """An information matrix is not symmetric positive definite (or has NaN/inf entries)."""


class GaugeError(MixslamError, ValueError):
    """Some variables are not constrained by any factor chain to a fixed variable."""

    def __init__(self, message: str, unconstrained: list | None = None):
        self.unconstrained = list(unconstrained or [])
        super().__init__(message)


class PrecisionPolicyError(MixslamError, ValueError):
    """A precision policy that makes no sense (for example, accumulating in a narrower type than storage)."""


class NonFiniteError(MixslamError, FloatingPointError):
    """A NaN or infinity appeared where a finite value is required."""


class ConfigError(MixslamError, ValueError):
    """A configuration value that is not one of the accepted choices."""


class SolverError(MixslamError, RuntimeError):
    """A linear or nonlinear solver could not produce a valid answer."""


def check_config_fields(config, ints: dict | None = None, nonnegative: tuple = ()) -> None:
    """Raise :class:`ConfigError` naming ``Class.field`` unless each of ``ints`` (name -> least value) is an
    integer (not a bool) at least that value, and each of ``nonnegative`` a finite number >= 0."""
    import math
    from numbers import Integral, Real

    cls = type(config).__name__
    for name, low in (ints or {}).items():
        v = getattr(config, name)
        if not isinstance(v, Integral) or isinstance(v, bool) or v < low:
            raise ConfigError(f"{cls}.{name} must be an integer >= {low}, got {v!r}")
    for name in nonnegative:
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v) or v < 0:
            raise ConfigError(f"{cls}.{name} must be a finite number >= 0, got {v!r}")
