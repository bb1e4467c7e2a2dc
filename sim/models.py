"""Reference models of the RTL units: the golden model's own code paths, element by element.

Every cast goes through :func:`fxbp.sw.fixed.cast_value` with a spec from
:func:`fxbp.sw.fixed.cast_spec` (what ``sw/golden.py``'s kernels call), every random word
through the golden ``hash32``, the PLAN segment through :func:`fxbp.sw.sigmoid.plan_exact`,
the LUT address through :func:`fxbp.sw.sigmoid.lut_index`, and an update through the golden
``_update_value``. The models only keep the per-element flags that the golden kernels sum
into their event counts. ``tests/test_sim_models.py`` proves each model equal to the golden
model over the same vectors (values and event counts), exhaustively where formats allow.

Each takes NumPy arrays of input fields and returns a dict of expected output fields.
"""

from __future__ import annotations

import numpy as np

# fxbp.sw first: importing it settles numba's cache directory (a read-only install
# falls back to a temporary one) before numba itself is imported here.
from ..sw.fixed import _NO_BITS, Overflow, QFormat, Rounding, cast_spec, cast_value
from ..sw.golden import _update_value
from ..sw.rng import _words, hash32
from ..sw.sigmoid import lut_index, lut_params, plan_exact, sigmoid_lut_table

from numba import njit  # noqa: E402

__all__ = ["random_words", "cast_with_flags", "mac_sums", "sigmoid_model", "derivative_model",
           "weight_update_model"]


def random_words(key: int, index) -> np.ndarray:
    """``hash32(key ^ index)`` per element (section 9)."""
    idx = np.asarray(index, dtype=np.int64)
    return np.array([int(hash32((key ^ int(i)) & 0xFFFFFFFF)) for i in idx.ravel()],
                    dtype=np.uint32).reshape(idx.shape)


@njit(cache=True, nogil=True)
def _cast_each(x, index, spec, key, out, over, under):
    for k in range(x.size):
        q, o, u = cast_value(x[k], index[k], spec, _NO_BITS, key)
        out[k], over[k], under[k] = q, o, u


def _key(spec, key: int) -> int:
    """The golden kernels pass a key only to casts that draw words (``_key`` in golden)."""
    return int(key) & 0xFFFFFFFF if spec[1] == 4 and spec[0] > 0 else -1


def _index(n: int, index) -> np.ndarray:
    return np.arange(n, dtype=np.int64) if index is None else \
        np.ascontiguousarray(index, dtype=np.int64).reshape(-1)


def cast_with_flags(values, from_frac: int, fmt: QFormat, rounding: Rounding, overflow: Overflow,
                    key: int = 0, index=None) -> dict:
    """The cast and its per-element ``overflow``/``underflow`` flags (section 1)."""
    v = np.ascontiguousarray(values, dtype=np.int64).reshape(-1)
    spec = cast_spec(from_frac, fmt, rounding, overflow)
    out, over, under = (np.empty_like(v) for _ in range(3))
    _cast_each(v, _index(v.size, index), spec, _key(spec, key), out, over, under)
    return {"value": out, "overflow": over, "underflow": under}


def mac_sums(a, b, lengths, bias=None, bias_shift: int = 0) -> list[int]:
    """Exact sums of consecutive runs of products (``lengths`` products each), each started
    at ``bias[k] << bias_shift`` when ``bias`` (one per run) is given (section 5)."""
    a = [int(x) for x in a]
    b = [int(x) for x in b]
    out, k = [], 0
    for j, n in enumerate(lengths):
        start = 0 if bias is None else int(bias[j]) << bias_shift
        out.append(start + sum(x * y for x, y in zip(a[k:k + n], b[k:k + n])))
        k += n
    return out


@njit(cache=True, nogil=True)
def _plan_each(z, f, spec, out, over, under):
    for k in range(z.size):
        q, o, u = cast_value(plan_exact(z[k], f), k, spec, _NO_BITS, -1)
        out[k], over[k], under[k] = q, o, u


@njit(cache=True, nogil=True)
def _lut_each(z, table, r_raw, addr_shift, out):
    for k in range(z.size):
        out[k] = table[lut_index(z[k], r_raw, addr_shift)]


def sigmoid_model(z, z_fmt: QFormat, a_fmt: QFormat, spec, rounding=Rounding.NEAREST_EVEN,
                  overflow=Overflow.SATURATE) -> dict:
    """The forward kernel's activation (section 3): LUT, or PLAN cast with the activation
    stage's rounding and overflow, with PLAN's per-element event flags."""
    z = np.ascontiguousarray(z, dtype=np.int64).reshape(-1)
    out = np.empty_like(z)
    over, under = np.zeros_like(z), np.zeros_like(z)
    if spec.kind == "lut":
        r_raw, shift = lut_params(z_fmt, spec)
        _lut_each(z, sigmoid_lut_table(spec, a_fmt), r_raw, shift, out)
    else:
        f = z_fmt.frac_bits
        _plan_each(z, f, cast_spec(f + 5, a_fmt, rounding, overflow), out, over, under)
    return {"value": out, "overflow": over, "underflow": under}


def derivative_model(a, a_fmt: QFormat, d_fmt: QFormat, rounding, overflow, key=0, index=None):
    """``cast(a ((1 << fa) - a))`` as the golden delta kernel forms it (section 3.3)."""
    a = np.ascontiguousarray(a, dtype=np.int64).reshape(-1)
    exact = a * ((1 << a_fmt.frac_bits) - a)
    return cast_with_flags(exact, 2 * a_fmt.frac_bits, d_fmt, rounding, overflow, key, index)


@njit(cache=True, nogil=True)
def _update_each(w, g, index, eta, g_spec, w_shift, u_shift, spec, bits, out, over, stalled):
    for k in range(w.size):
        # The golden update: g is cast first (an identity spec here, so exact), then
        # w - eta g; the update cast reads word bits[i] as golden's kernel does.
        q, _go, _gu, o, s = _update_value(g[k], w[k], index[k], eta, g_spec, _NO_BITS, w_shift,
                                          u_shift, spec, bits)
        out[k], over[k], stalled[k] = q, o, s


def weight_update_model(w, g, eta: int, w_fmt, g_fmt, lr_fmt, rounding, overflow, key=0,
                        index=None, lr_shift: int | None = None) -> dict:
    """``w' = cast((w << (F - fw)) - ((eta g) << (F - fl - fg)))`` through golden's
    ``_update_value`` (section 8); ``stalled`` is the update site's underflow.
    ``lr_fmt=None`` with ``lr_shift=k``: shift mode (``eta = 1``, ``fl = k``)."""
    w = np.ascontiguousarray(w, dtype=np.int64).reshape(-1)
    g = np.ascontiguousarray(g, dtype=np.int64).reshape(-1)
    fl = lr_fmt.frac_bits if lr_fmt is not None else lr_shift
    eta = eta if lr_fmt is not None else 1
    u_frac = fl + g_fmt.frac_bits
    frac = max(u_frac, w_fmt.frac_bits)
    spec = cast_spec(frac, w_fmt, rounding, overflow)
    g_identity = cast_spec(g_fmt.frac_bits, g_fmt, Rounding.NEAREST_EVEN, Overflow.SATURATE)
    idx = _index(w.size, index)
    k = _key(spec, key)
    bits = _words(k, int(idx.max(initial=0)) + 1) if k >= 0 else _NO_BITS
    out, over, stalled = (np.empty_like(w) for _ in range(3))
    _update_each(w, g, idx, int(eta), g_identity, frac - w_fmt.frac_bits, frac - u_frac, spec,
                 bits, out, over, stalled)
    return {"value": out, "overflow": over, "stalled": stalled}
