/* fxbp integer training kernels: docs/datapath.md, bit for bit.
 *
 * Built once per layer: the layer's cast parameters are compile-time constants
 * (-D <SITE>_SHIFT, _MODE, _SAT, _LO, _HI, _BITS, _SIGNED for the sites PRE, ACT,
 * ERR, D, DELTA, G, UPD, GB and UPDB, from the fixed.cast_spec arrays the golden
 * model uses), so every test on a mode or a shift folds away and no cast branches.
 *
 * Every kernel but bias_update is a 2-D range of items (dimension 0 the output's
 * columns), rounded up to TILE x TILE work-groups; items outside write nothing. The
 * three matrix products (forward x W^T, back-propagated error delta_next W_next,
 * weight gradient delta^T a_prev) come in two builds of this one source:
 *   TILED=1 (GPUs): a work-group stages a TILE x TILE tile of each operand in local
 *     memory, and every item sums its element over the tiles;
 *   TILED=0 (CPUs, where barriers cost more than the cache saves): every item sums
 *     its element straight from global memory.
 * Sums are exact in long (the host refuses profiles whose sums could exceed the
 * accumulator), so the order of a sum cannot change it. Activations and deltas are
 * also written transposed ([width, batch]) and weights kept transposed too, so that
 * every sum reads consecutive words.
 * Event counters: ev[2 * row] overflow, ev[2 * row + 1] underflow.
 */

/* Storage type of raw values: int when every stage format has <= 32 bits, else long.
 * Arithmetic on them is always done in long. */
#ifndef RAW_T
#define RAW_T long
#endif

/* Section 9: Jenkins' 32-bit integer hash. */
inline uint hash32(uint a)
{
    a = (a + 0x7ed55d16u) + (a << 12);
    a = (a ^ 0xc761c23cu) ^ (a >> 19);
    a = (a + 0x165667b1u) + (a << 5);
    a = (a + 0xd3a2646cu) ^ (a << 9);
    a = (a + 0xfd7046c5u) + (a << 3);
    a = (a ^ 0xb55a4f09u) ^ (a >> 16);
    return a;
}

/* Section 1: round, then saturate or wrap. Sets bit 0 of *ev on overflow, bit 1 on
 * underflow. Called only through CAST, whose parameters are constants. */
inline long cast_value(long v, uint i, const long shift, const long mode, const long saturate,
                       const long lo, const long hi, const long bits, const long is_signed,
                       uint key, int *ev)
{
    long q;
    if (shift > 0) {
        if (mode == 0)
            q = v >> shift;
        else if (mode == 1)
            q = (v + ((v >> 63) & ((1L << shift) - 1))) >> shift;
        else if (mode == 2)
            q = (v + (1L << (shift - 1))) >> shift;
        else if (mode == 3)
            q = (v + ((1L << (shift - 1)) - 1) + ((v >> shift) & 1)) >> shift;
        else {
            long r = (long)hash32(key ^ i);
            r = shift <= 32 ? r >> (32 - shift) : r << (shift - 32);
            q = (v + r) >> shift;
        }
    } else if (shift < 0) {
        q = v << (-shift);
    } else {
        q = v;
    }
    *ev = 0;
    if (q < lo || q > hi) {
        *ev = 1;
        if (saturate) {
            q = q < lo ? lo : hi;
        } else {
            const long mask = (1L << bits) - 1;
            q &= mask;
            if (is_signed && ((q >> (bits - 1)) & 1))
                q -= mask + 1;
        }
    }
    if (q == 0 && v != 0 && shift > 0)
        *ev |= 2;
    return q;
}

#define CAST(v, i, S, key, ev) \
    cast_value((v), (i), S##_SHIFT, S##_MODE, S##_SAT, S##_LO, S##_HI, S##_BITS, S##_SIGNED, \
               (key), (ev))

inline void count(__global uint *ev, int row, int flags)
{
    if (flags & 1) atomic_inc(&ev[2 * row]);
    if (flags & 2) atomic_inc(&ev[2 * row + 1]);
}

/* Section 3.1 / 3.2 helpers. */
inline long lut_index(long z, long r_raw, int addr_shift)
{
    z = z < -r_raw ? -r_raw : (z > r_raw - 1 ? r_raw - 1 : z);
    return (z + r_raw) >> addr_shift;
}

inline long plan_exact(long z, int f)
{
    const long t = z < 0 ? -z : z;
    long y;
    if (t >= (5L << f))             y = 32L << f;
    else if ((t << 3) >= (19L << f)) y = t + (27L << f);
    else if (t >= (1L << f))         y = (t << 2) + (20L << f);
    else                             y = (t << 3) + (16L << f);
    return z < 0 ? (32L << f) - y : y;
}

#include "matrix_sum.h"

/* Section 5: a[b, o] = sigmoid(cast(sum_k x[b, k] w[o, k] + (bias[o] << bias_shift))).
 * Dimension 0 is o, dimension 1 is b. With gather != 0, row b of x is
 * x[rows[offset + b]] (the batch's samples in the epoch order), and the items of row b
 * also write those inputs transposed into x_t[k, b] (item o every n_out-th).
 * a_t[o, b] receives the activations transposed. */
__kernel WORK_GROUP_ATTR
void forward(const int n, const int n_in, const int n_out,
             __global const RAW_T *x, __global const int *rows, const int offset,
             const int gather, __global RAW_T *x_t,
             __global const RAW_T *w, __global const RAW_T *bias,
             const int bias_shift, const int kind, __global const RAW_T *table,
             const long r_raw, const int addr_shift, const int plan_f,
             __global RAW_T *a_out, __global RAW_T *a_t, __global uint *ev,
             const int r_pre, const int r_act)
{
    TILES(RAW_T, xs, ws);
    const int lc = get_local_id(0), lr = get_local_id(1);
    const int o = get_global_id(0), b = get_global_id(1);
    long acc = 0;
    MATRIX_SUM_GATHER(long, acc, xs, ws, x, rows, offset, gather, n, w, n_out, n_in);
    if (b >= n || o >= n_out) return;
    if (gather)
        for (int k = o; k < n_in; k += n_out)
            x_t[(long)k * n + b] = x[x_own + k];
    const int gid = b * n_out + o;
    int flags;
    const long z = CAST(acc + ((long)bias[o] << bias_shift), gid, PRE, 0u, &flags);
    count(ev, r_pre, flags);
    long a;
    if (kind == 0) {
        a = (long)table[lut_index(z, r_raw, addr_shift)];
    } else {
        a = CAST(plan_exact(z, plan_f), gid, ACT, 0u, &flags);
        count(ev, r_act, flags);
    }
    a_out[gid] = (RAW_T)a;
    a_t[(long)o * n + b] = (RAW_T)a;
}

/* Section 6: e = cast(err); d = cast(a (1 - a)); delta = cast(e d) (or cast(e), xent output).
 * Dimension 0 is j, dimension 1 is b. err is a - t for the output layer (n_next == 0),
 * else sum_o delta_next[b, o] w_next[o, j], read through the transposed weights
 * w_next_t[j, o]. Writes delta and delta_t[j, b]. */
__kernel WORK_GROUP_ATTR
void delta(const int n, const int n_cur, const int n_next,
           __global const RAW_T *act, __global const RAW_T *target,
           __global const int *rows, const int offset,
           __global const RAW_T *delta_next, __global const RAW_T *w_next_t,
           const uint e_key, const int use_derivative, const long one,
           const uint d_key, const uint delta_key,
           __global RAW_T *delta_out, __global RAW_T *delta_t, __global uint *ev,
           const int r_err, const int r_d, const int r_delta)
{
    TILES(RAW_T, ds, ws);
    const int lc = get_local_id(0), lr = get_local_id(1);
    const int j = get_global_id(0), b = get_global_id(1);
    long acc = 0;
    if (n_next > 0)                     /* the same for every item: the barriers agree */
        MATRIX_SUM_ROWS(long, acc, ds, ws, delta_next, n, w_next_t, n_cur, n_next);
    if (b >= n || j >= n_cur) return;
    const int gid = b * n_cur + j;
    const long err = n_next == 0
        ? (long)act[gid] - (long)target[(long)rows[offset + b] * n_cur + j] : acc;
    int flags;
    const long e = CAST(err, gid, ERR, e_key, &flags);
    count(ev, r_err, flags);
    long q;
    if (use_derivative) {
        const long a = (long)act[gid];
        const long d = CAST(a * (one - a), gid, D, d_key, &flags);
        count(ev, r_d, flags);
        q = CAST(e * d, gid, DELTA, delta_key, &flags);
    } else {
        q = CAST(e, gid, DELTA, delta_key, &flags);
    }
    count(ev, r_delta, flags);
    delta_out[gid] = (RAW_T)q;
    delta_t[(long)j * n + b] = (RAW_T)q;
}

/* Sections 7-8 for one parameter: the new value of w (G: the gradient cast's site,
 * U: the update's). A macro, so that each use gets its sites' constants. */
#define UPDATE_VALUE(out, g_exact, w, i, eta, G, g_key, w_shift, u_shift, U, upd_key,     \
                     ev, r_g, r_upd)                                                      \
    do {                                                                                  \
        int flags_;                                                                       \
        const long g_ = CAST(g_exact, i, G, g_key, &flags_);                              \
        count(ev, r_g, flags_);                                                           \
        const long u_ = (g_ * (eta)) << (u_shift);                                        \
        out = CAST(((long)(w) << (w_shift)) - u_, i, U, upd_key, &flags_);                \
        if (flags_ & 1) atomic_inc(&(ev)[2 * (r_upd)]);                                   \
        if (u_ != 0 && out == (long)(w)) atomic_inc(&(ev)[2 * (r_upd) + 1]); /* stalled */ \
    } while (0)

/* The update of a layer, fused: w[o, i] <- cast(w - eta cast(sum_b delta_t[o, b]
 * a_prev_t[i, b])), in place, with the transposed copy w_t[i, o] kept equal; and in
 * column i = n_in the bias, b[o] <- cast(b - eta cast(sum_b delta_t[o, b])).
 * Dimension 0 is i (0 .. n_in), dimension 1 is o. */
__kernel WORK_GROUP_ATTR
void update(const int n_in, const int n_out, const int batch,
            __global const RAW_T *delta_t, __global const RAW_T *a_prev_t,
            __global RAW_T *w, __global RAW_T *w_t, __global RAW_T *bias, const long eta,
            const uint g_key, const int w_shift, const int u_shift, const uint upd_key,
            const uint gb_key, const int b_w_shift, const int b_u_shift, const uint updb_key,
            __global uint *ev, const int r_g, const int r_upd, const int r_gb, const int r_updb)
{
    TILES(RAW_T, ds, as);
    const int lc = get_local_id(0), lr = get_local_id(1);
    const int i = get_global_id(0), o = get_global_id(1);
    const long d_own = o < n_out ? (long)o * batch : -1;
    long acc = 0;
    MATRIX_SUM_ROWS(long, acc, ds, as, delta_t, n_out, a_prev_t, n_in, batch);
    if (o >= n_out || i > n_in) return;
    long q;
    if (i == n_in) {
        for (int b = 0; b < batch; b++)
            acc += (long)delta_t[d_own + b];
        UPDATE_VALUE(q, acc, bias[o], o, eta, GB, gb_key, b_w_shift, b_u_shift, UPDB, updb_key,
                     ev, r_gb, r_updb);
        bias[o] = (RAW_T)q;
        return;
    }
    const int gid = o * n_in + i;
    UPDATE_VALUE(q, acc, w[gid], gid, eta, G, g_key, w_shift, u_shift, UPD, upd_key, ev, r_g,
                 r_upd);
    w[gid] = (RAW_T)q;
    w_t[(long)i * n_out + o] = (RAW_T)q;
}
