"""Exact money: amounts are :class:`decimal.Decimal` yuan, ledgers hold integer fen.

Amounts may be written as plain yuan (``10000000``), with 万 (10,000) or 亿
(100,000,000): ``1000万``, ``1.2亿``. Floats never enter a sum.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

WAN = Decimal(10_000)
YI = Decimal(100_000_000)
_AMOUNT = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*(万|亿|万元|亿元|元)?\s*$")


def parse_yuan(value) -> Decimal:
    """Parse an amount in yuan; ``'1000万'`` → ``Decimal('10000000')``.

    Raises
    ------
    ValueError
        If the value is not a finite number with an optional 万/亿 unit.
    """
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, bool) or value is None:
        raise ValueError(f"not an amount: {value!r}")
    elif isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not an amount: {value!r}")
        d = Decimal(repr(value))
    else:
        m = _AMOUNT.match(str(value).replace(",", ""))
        if not m:
            raise ValueError(f"not an amount: {value!r} (write yuan, or e.g. 1000万, 1.2亿)")
        d = Decimal(m.group(1))
        unit = m.group(2) or ""
        if unit.startswith("万"):
            d *= WAN
        elif unit.startswith("亿"):
            d *= YI
    if not d.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    return d


def to_fen(yuan: Decimal) -> int:
    """Yuan → integer fen, rounding half to even at the fen."""
    return int((Decimal(yuan) * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def fen_to_yuan(fen: int) -> Decimal:
    """Integer fen → Decimal yuan with two places."""
    return (Decimal(int(fen)) / 100).quantize(Decimal("0.01"))


def to_decimal(value) -> Decimal:
    """A measured value (float from a file) as Decimal via its shortest repr."""
    try:
        return value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    except (InvalidOperation, ValueError, TypeError) as exc:
        raise ValueError(f"not a number: {value!r}") from exc


def split_fen(total: int, shares: list[Decimal]) -> list[int]:
    """Split integer fen by shares that sum to 1, exactly (see :func:`_split_fen`)."""
    return list(_split_fen(int(total), tuple(shares)))


@lru_cache(maxsize=65536)
def _split_fen(total: int, shares: tuple[Decimal, ...]) -> tuple[int, ...]:
    """Split integer fen by shares that sum to 1, exactly (largest remainder, stable order).

    The parts always sum to ``total``; leftover fen go to the earliest parties
    with the largest remainders, so the split is reproducible.
    """
    if not shares:
        raise ValueError("no parties to split between")
    s = sum(shares)
    if s != 1:
        raise ValueError(f"shares {[str(x) for x in shares]} sum to {s}, not 1")
    sign = -1 if total < 0 else 1
    t = abs(total)
    raw = [Decimal(t) * sh for sh in shares]
    base = [int(r) for r in raw]
    left = t - sum(base)
    order = sorted(range(len(shares)), key=lambda i: (-(raw[i] - base[i]), i))
    for i in order[:left]:
        base[i] += 1
    return tuple(sign * b for b in base)


def fmt_wan(fen: int) -> str:
    """Integer fen as 万元 with two decimals, for reports."""
    return f"{Decimal(fen) / 100 / WAN:,.2f}"
