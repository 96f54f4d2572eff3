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


class OutputError(MixslamError, OSError):
    """A file could not be written (or will not be writable): names the path and the reason. The previous file at
    that path, if any, is left untouched (see :mod:`mixslam.atomic`)."""

    def __init__(self, path: str, reason: str, errno: int | None = None):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
        if errno is not None:
            self.errno = errno


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

    column: int | None
    """Set (only) by :class:`~mixslam.linear.direct.SparseCholesky` on a not-positive-definite matrix: the
    column where the factorization broke down, or None when the backend does not tell."""


def check_config_fields(
    config,
    ints: dict | None = None,
    nonnegative: tuple = (),
    positive: tuple = (),
    choices: dict | None = None,
    fractions: tuple = (),
    bools: tuple = (),
) -> None:
    """The one validation of every configuration dataclass (called from its ``__post_init__``).

    Raises :class:`ConfigError` naming ``Class.field``, the value and the rule, unless:
    each of ``ints`` (name -> least value) is an integer (not a bool) at least that value; each of
    ``nonnegative`` a finite number >= 0; each of ``positive`` a finite number > 0; each of ``fractions`` a
    number in [0, 1]; each of ``bools`` True or False; each of ``choices`` (name -> allowed values) one of
    its values.
    """
    import math
    from numbers import Integral, Real

    cls = type(config).__name__

    def number(v) -> bool:
        return not isinstance(v, bool) and isinstance(v, Real) and math.isfinite(v)

    for name, low in (ints or {}).items():
        v = getattr(config, name)
        if not isinstance(v, Integral) or isinstance(v, bool) or v < low:
            raise ConfigError(f"{cls}.{name} must be an integer >= {low}, got {v!r}")
    for name in nonnegative:
        v = getattr(config, name)
        if not number(v) or v < 0:
            raise ConfigError(f"{cls}.{name} must be a finite number >= 0, got {v!r}")
    for name in positive:
        v = getattr(config, name)
        if not number(v) or v <= 0:
            raise ConfigError(f"{cls}.{name} must be a finite number > 0, got {v!r}")
    for name in fractions:
        v = getattr(config, name)
        if not number(v) or not 0 <= v <= 1:
            raise ConfigError(f"{cls}.{name} must be a number in [0, 1], got {v!r}")
    for name in bools:
        v = getattr(config, name)
        if not isinstance(v, bool):
            raise ConfigError(f"{cls}.{name} must be True or False, got {v!r}")
    for name, allowed in (choices or {}).items():
        v = getattr(config, name)
        if v not in allowed:
            raise ConfigError(f"{cls}.{name} must be one of {list(allowed)}, got {v!r}")


def check_seed(seed, name: str = "seed") -> int:
    """``seed`` as an int, or :class:`ConfigError` naming ``name``: seeds are integers >= 0 (not bools), the
    values numpy's ``SeedSequence`` and ``default_rng`` accept."""
    from numbers import Integral

    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ConfigError(f"{name} must be an integer >= 0 (numpy seeds cannot be negative), got {seed!r}")
    return int(seed)
