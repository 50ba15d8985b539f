"""The memory guard: every engine states its bytes before it allocates, and a step that would not
fit is refused with a clear error instead of letting the operating system kill the process.

The limit is, in order of precedence:

1. the value set with :func:`set_memory_limit` or inside a ``with memory_limit(...)`` block;
2. the environment variable ``MESHPROP_MEMORY_LIMIT`` (bytes, optionally with a unit such as
   ``512MiB`` or ``2GB``, or a percentage of the available RAM such as ``25%``);
3. half of the RAM available when the step starts (``MemAvailable`` in ``/proc/meminfo``, read
   at most every :data:`AVAILABLE_TTL_S` seconds).

``"none"`` (or ``0``) switches the guard off.  Estimates come from each engine's
``estimate_bytes`` (a model of the tensors it allocates for one step, sensitivities included);
the check itself, which knows the engines, is :mod:`meshprop.engines.guard`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = [
    "MEMORY_LIMIT_ENV",
    "MemoryLimitError",
    "available_bytes",
    "check_fits",
    "format_bytes",
    "get_memory_limit",
    "limit_setting",
    "memory_limit",
    "parse_bytes",
    "set_memory_limit",
]

MEMORY_LIMIT_ENV = "MESHPROP_MEMORY_LIMIT"

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_UNSET = object()
_limit: object = _UNSET  # bytes (int), None for "no limit", or _UNSET for the default


class MemoryLimitError(MemoryError):
    """A step's estimated memory exceeds the limit; nothing was allocated.

    Attributes: ``engine`` (name), ``estimate`` and ``limit`` (bytes), ``suggestion`` (the name of
    a registered engine that fits, or None).
    """

    def __init__(
        self, message: str, engine: str, estimate: int, limit: int, suggestion: str | None
    ) -> None:
        super().__init__(message)
        self.engine, self.estimate, self.limit, self.suggestion = (
            engine,
            estimate,
            limit,
            suggestion,
        )


def check_fits(need: int, what: str, explain: Callable[[int], str]) -> None:
    """Raise :class:`MemoryLimitError` (engine ``what``, message ``explain(limit)``) when
    ``need`` bytes exceed the limit that applies now; nothing otherwise."""
    limit = get_memory_limit()
    if limit is not None and need > limit:
        raise MemoryLimitError(explain(limit), what, need, limit, None)


def format_bytes(n: float) -> str:
    """``1536`` → ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


#: seconds a reading of ``MemAvailable`` is reused: reading /proc/meminfo costs ~17 µs, a
#: tenth of a small training step, and the guard runs before every step
AVAILABLE_TTL_S = 0.25
_available: tuple[float, int] = (-1e9, 0)  # (time.monotonic() of the reading, bytes)


def available_bytes() -> int:
    """RAM available to new allocations without swapping (``MemAvailable``), in bytes; a reading
    younger than :data:`AVAILABLE_TTL_S` seconds is reused."""
    global _available
    now = time.monotonic()
    if now - _available[0] < AVAILABLE_TTL_S:
        return _available[1]
    value = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    value = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if value is None:
        pages, size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        value = int(pages * size)
    _available = (now, value)
    return value


def parse_bytes(value: int | float | str | None, *, source: str = "memory limit") -> int | None:
    """A limit in bytes from an int, ``'512MiB'``, ``'2GB'``, ``'25%'`` (of the available RAM),
    or ``None``/``'none'``/``0`` (no limit)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{source} must be a number of bytes or a string, got a bool")
    if isinstance(value, int | float):
        if value != value or value < 0:
            raise ValueError(f"{source} must be >= 0 bytes, got {value}")
        return None if value == 0 else int(value)
    if not isinstance(value, str):
        raise TypeError(f"{source} must be bytes (int) or a string, got {type(value).__name__}")
    text = value.strip().lower()
    if text in ("none", "off", "0"):
        return None
    match = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(%|[a-z]*)", text)
    if match is None or match.group(2) not in {*_UNITS, "%"}:
        raise ValueError(
            f"{source} {value!r} is not understood: expected bytes such as 2000000000, '512MiB', "
            "'2GB', a percentage of the available RAM such as '25%', or 'none'"
        )
    number, unit = float(match.group(1)), match.group(2)
    if unit == "%":
        if not 0 < number <= 100:
            raise ValueError(f"{source} percentage must be in (0, 100], got {value!r}")
        return int(available_bytes() * number / 100)
    return None if number == 0 else int(number * _UNITS[unit])


def get_memory_limit() -> int | None:
    """The limit in bytes that applies now (None: no limit)."""
    if _limit is not _UNSET:
        return _limit  # type: ignore[return-value]
    env = os.environ.get(MEMORY_LIMIT_ENV)
    if env is not None and env.strip():
        return parse_bytes(env, source=f"${MEMORY_LIMIT_ENV}")
    return available_bytes() // 2


def limit_setting() -> tuple[object, str | None]:
    """What decides the limit, without reading /proc/meminfo: the value set in code (or a
    marker for "the default") and ``$MESHPROP_MEMORY_LIMIT`` — a key for caches of decisions
    that depend on the limit (``method="auto"``)."""
    explicit = "default" if _limit is _UNSET else _limit
    return explicit, os.environ.get(MEMORY_LIMIT_ENV)


def set_memory_limit(limit: int | float | str | object | None = _UNSET) -> None:
    """Set the limit (see :func:`parse_bytes`); without an argument, restore the default."""
    global _limit
    _limit = _UNSET if limit is _UNSET else parse_bytes(limit)  # type: ignore[arg-type]


@contextmanager
def memory_limit(limit: int | float | str | None) -> Iterator[int | None]:
    """``with memory_limit('2GiB'): ...`` applies a limit inside the block only."""
    global _limit
    previous = _limit
    _limit = parse_bytes(limit)
    try:
        yield _limit
    finally:
        _limit = previous
