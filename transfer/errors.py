"""The one exception type for mistakes a user can fix, and the checks every config dataclass runs on its own fields.

The CLI prints a UserError as one line and exits 2. The checks name the key as the user types it
(`augment.hue=0.7: must be <= 0.5.`), so each config dataclass validates itself in `__post_init__` with them and no
second table of ranges exists anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class UserError(Exception):
    """A problem with the user's input (a path, a file, a config value) and how to fix it.

    The message names the file or config key and says what to do; the CLI prints it without a traceback.
    """


def check_choice(key: str, value: Any, options: Iterable[str]) -> None:
    options = tuple(options)
    if str(value) not in options:
        raise UserError(f"{key}={value!r}: choose one of {', '.join(options)}.")


def check_at_least(key: str, value: Any, low: float, why: str = "") -> None:
    if value is not None and not value >= low:
        raise UserError(f"{key}={value}: must be >= {low:g}{f' ({why})' if why else ''}.")


def check_positive(key: str, value: Any, why: str = "") -> None:
    if value is not None and not value > 0:
        raise UserError(f"{key}={value}: must be > 0{f' ({why})' if why else ''}.")


def check_fraction(key: str, value: Any, low_open: bool = True, high_open: bool = True) -> None:
    """A value in (0, 1), [0, 1) or (0, 1] as the flags say."""
    if value is None:
        return
    ok_low = value > 0 if low_open else value >= 0
    ok_high = value < 1 if high_open else value <= 1
    if not (ok_low and ok_high):
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise UserError(f"{key}={value}: must be in {lo}0, 1{hi}.")


def whole_number(value: Any) -> int | None:
    """`value` as an int when it is a whole number (3, "3", 3.0), else None (True/False are not numbers here)."""
    if isinstance(value, bool):
        return None
    try:
        f = float(str(value))
    except ValueError:
        return None
    return int(f) if f.is_integer() else None
