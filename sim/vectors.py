"""Designed vector sets for formats too wide to test exhaustively.

Random 40-bit sums almost never land in a 16-bit format's range or on a rounding tie, so
the sets are built from parts: values in range, exact ties (of both parities and signs, for
the nearest modes) and exact multiples, values one input LSB either side of every rounding
threshold next to each saturation bound, small values that round to zero, the input
extremes, and a remainder of uniform values over the whole input range. Each generator
returns the values and the mix (how many of each part; a value counts once, in its first
part).
"""

from __future__ import annotations

import numpy as np

from ..sw.fixed import QFormat

__all__ = ["cast_vectors", "update_vectors", "describe_mix"]


def _threshold_offsets(s: int) -> list[int]:
    """Offsets from a multiple of ``2**s`` at which some rounding mode changes its result,
    and one LSB either side of each."""
    if s <= 0:
        return [-1, 0, 1]
    marks = {0, 1 << s, -(1 << s)}
    if s >= 1:
        marks |= {1 << (s - 1), -(1 << (s - 1))}
    return sorted({m + d for m in marks for d in (-1, 0, 1)})


def cast_vectors(in_width: int, from_frac: int, fmt: QFormat, n: int, rng) -> tuple[np.ndarray, dict]:
    """About ``n`` signed ``in_width``-bit values for ``cast(x, from_frac -> fmt)``: at least
    half in range, every kind of tie, each saturation bound +-1 input LSB per threshold."""
    s = from_frac - fmt.frac_bits
    x_lo, x_hi = -(1 << (in_width - 1)), (1 << (in_width - 1)) - 1
    shift = max(s, 0)
    r_lo, r_hi = max(x_lo, fmt.min_raw << shift), min(x_hi, (fmt.max_raw << shift) + (1 << shift) - 1)
    parts = {}
    parts["edges"] = [x_lo, x_lo + 1, -1, 0, 1, x_hi - 1, x_hi]
    parts["bound +-1"] = [(b << shift) + d for b in (fmt.min_raw, fmt.max_raw, fmt.min_raw - 1,
                                                     fmt.max_raw + 1)
                          for d in _threshold_offsets(s)]
    n_ties = max(16, n // 10)
    k = rng.integers(fmt.min_raw, fmt.max_raw + 1, n_ties)
    k[:4] = [0, 1, -1, 2][:4] if fmt.signed else [0, 1, 2, 3]
    if s > 0:
        parts["ties, exact"] = ((k << s) + (1 << (s - 1))).tolist() + ((-k) << s).tolist()
    near = max(8, n // 20)
    if s > 0:
        parts["near zero"] = rng.integers(-(1 << s), (1 << s) + 1, near).tolist()
    n_in = n // 2 + n // 10
    parts["in range"] = rng.integers(r_lo, r_hi + 1, n_in).tolist()
    used = sum(len(v) for v in parts.values())
    parts["anywhere"] = rng.integers(x_lo, x_hi, max(0, n - used), endpoint=True).tolist()
    values, mix, seen = [], {}, set()
    for name, vals in parts.items():
        count = 0
        for v in vals:
            v = int(v)
            if x_lo <= v <= x_hi and (v not in seen or name in ("in range", "anywhere")):
                seen.add(v)
                values.append(v)
                count += 1
        mix[name] = count
    values = np.array(values, dtype=np.int64)
    in_range = (values >> shift >= fmt.min_raw) & (values >> shift <= fmt.max_raw)
    mix["total"] = len(values)
    mix["in range (all parts)"] = int(in_range.sum())
    if s > 0:
        mix["ties (all parts)"] = int(((values & ((1 << s) - 1)) == (1 << (s - 1))).sum())
    return values, mix


def update_vectors(w_fmt: QFormat, g_fmt: QFormat, n: int, rng, *, eta: int | None = None,
                   lr_frac: int | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(w, g, mix)`` for a weight update: random pairs, weights at and next to both bounds
    with small gradients of both signs (saturation and stalls), zero and +-1 LSB gradients
    (vanishing updates), the extremes of both. With ``eta`` and ``lr_frac`` the mix also
    counts exact rounding ties and results out of range."""
    parts = {}
    wb = [w_fmt.min_raw, w_fmt.min_raw + 1, w_fmt.max_raw - 1, w_fmt.max_raw]
    gs = [-3, -2, -1, 0, 1, 2, 3, g_fmt.min_raw, g_fmt.max_raw]
    parts["bounds x small g"] = [(w, g) for w in wb for g in gs]
    m = max(16, n // 10)
    parts["tiny g"] = list(zip(rng.integers(w_fmt.min_raw, w_fmt.max_raw + 1, m).tolist(),
                               rng.integers(-2, 3, m).tolist()))
    rest = n - sum(len(v) for v in parts.values())
    parts["random"] = list(zip(rng.integers(w_fmt.min_raw, w_fmt.max_raw + 1, rest).tolist(),
                               rng.integers(g_fmt.min_raw, g_fmt.max_raw + 1, rest).tolist()))
    pairs = [p for v in parts.values() for p in v]
    mix = {name: len(v) for name, v in parts.items()}
    mix["total"] = len(pairs)
    w = np.array([p[0] for p in pairs], dtype=np.int64)
    g = np.array([p[1] for p in pairs], dtype=np.int64)
    if eta is not None:
        u_frac = lr_frac + g_fmt.frac_bits
        frac = max(u_frac, w_fmt.frac_bits)
        s = frac - w_fmt.frac_bits
        exact = (w << s) - ((g * eta) << (frac - u_frac))
        if s > 0:
            mix["ties (all parts)"] = int(((exact & ((1 << s) - 1)) == (1 << (s - 1))).sum())
        q = exact >> s
        mix["out of range (all parts)"] = int(((q < w_fmt.min_raw) | (q > w_fmt.max_raw)).sum())
    return w, g, mix


def describe_mix(mix: dict) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in mix.items())
