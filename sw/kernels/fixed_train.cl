/* fxbp integer training kernels: docs/datapath.md, bit for bit.
 *
 * One work-item per output element; global sizes are rounded up to the
 * work-group size, so every kernel first checks its index. Sums are exact in
 * long (the host refuses profiles whose sums could exceed the accumulator).
 * Every inner loop walks memory contiguously: activations and deltas are also
 * written transposed ([width, batch]) and weights kept transposed too, so that
 * sums over the batch or over the next layer read consecutive words (CPU
 * devices vectorise them; GPUs coalesce). Cast parameters come as 7 longs
 * (shift, mode, saturate, lo, hi, total_bits, signed), as fixed.cast_spec builds them.
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

/* Section 1: round, then saturate or wrap. Sets bit 0 of *ev on overflow, bit 1 on underflow. */
inline long cast_value(long v, uint i, __constant const long *sp, uint key, int *ev)
{
    const long shift = sp[0], mode = sp[1], saturate = sp[2], lo = sp[3], hi = sp[4];
    const long bits = sp[5], is_signed = sp[6];
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

/* Section 5: a[b, o] = sigmoid(cast(sum_k x[b, k] w[o, k] + (bias[o] << bias_shift))).
 * With gather != 0, row b of x is x[rows[offset + b]] (the batch's samples in the epoch order),
 * and the items of row b also write those inputs transposed into x_t[k, b].
 * a_t[o, b] receives the activations transposed. */
__kernel void forward(const int n_items, const int n_in, const int n_out,
                      __global const RAW_T *x, __global const int *rows, const int offset,
                      const int gather, __global RAW_T *x_t,
                      __global const RAW_T *w, __global const RAW_T *bias,
                      const int bias_shift, __constant const long *pre_spec,
                      const int kind, __global const RAW_T *table, const long r_raw,
                      const int addr_shift, const int plan_f, __constant const long *act_spec,
                      __global RAW_T *a_out, __global RAW_T *a_t, __global uint *ev,
                      const int r_pre, const int r_act)
{
    const int gid = get_global_id(0);
    if (gid >= n_items) return;
    const int n = n_items / n_out;
    const int b = gid / n_out, o = gid - b * n_out;
    const long row = gather ? rows[offset + b] : b;
    __global const RAW_T *xr = x + row * n_in, *wr = w + (long)o * n_in;
    long acc = 0;
    for (int k = 0; k < n_in; k++)
        acc += (long)xr[k] * (long)wr[k];
    if (gather)                         /* each item transposes every n_out-th input */
        for (int k = o; k < n_in; k += n_out)
            x_t[(long)k * n + b] = xr[k];
    int flags;
    const long z = cast_value((long)acc + ((long)bias[o] << bias_shift), gid, pre_spec, 0u, &flags);
    count(ev, r_pre, flags);
    long a;
    if (kind == 0) {
        a = (long)table[lut_index(z, r_raw, addr_shift)];
    } else {
        a = cast_value(plan_exact(z, plan_f), gid, act_spec, 0u, &flags);
        count(ev, r_act, flags);
    }
    a_out[gid] = (RAW_T)a;
    a_t[(long)o * n + b] = (RAW_T)a;
}

/* Section 6: e = cast(err); d = cast(a (1 - a)); delta = cast(e d) (or cast(e), xent output).
 * err is a - t for the output layer (n_next == 0), else sum_o delta_next[b, o] w_next[o, j],
 * read through the transposed weights w_next_t[j, o]. Writes delta and delta_t[j, b]. */
__kernel void delta(const int n_items, const int n_cur, const int n_next,
                    __global const RAW_T *act, __global const RAW_T *target,
                    __global const int *rows, const int offset,
                    __global const RAW_T *delta_next, __global const RAW_T *w_next_t,
                    __constant const long *e_spec, const uint e_key,
                    const int use_derivative, const long one,
                    __constant const long *d_spec, const uint d_key,
                    __constant const long *delta_spec, const uint delta_key,
                    __global RAW_T *delta_out, __global RAW_T *delta_t, __global uint *ev,
                    const int r_err, const int r_d, const int r_delta)
{
    const int gid = get_global_id(0);
    if (gid >= n_items) return;
    long err;
    const int n = n_items / n_cur;
    const int b = gid / n_cur, j = gid - b * n_cur;
    if (n_next == 0) {
        err = (long)act[gid] - (long)target[(long)rows[offset + b] * n_cur + j];
    } else {
        __global const RAW_T *dr = delta_next + (long)b * n_next;
        __global const RAW_T *wr = w_next_t + (long)j * n_next;
        long acc = 0;
        for (int o = 0; o < n_next; o++)
            acc += (long)dr[o] * (long)wr[o];
        err = (long)acc;
    }
    int flags;
    const long e = cast_value(err, gid, e_spec, e_key, &flags);
    count(ev, r_err, flags);
    long q;
    if (use_derivative) {
        const long a = (long)act[gid];
        const long d = cast_value(a * (one - a), gid, d_spec, d_key, &flags);
        count(ev, r_d, flags);
        q = cast_value(e * d, gid, delta_spec, delta_key, &flags);
    } else {
        q = cast_value(e, gid, delta_spec, delta_key, &flags);
    }
    count(ev, r_delta, flags);
    delta_out[gid] = (RAW_T)q;
    delta_t[(long)j * n + b] = (RAW_T)q;
}

/* Sections 7-8 for one parameter; returns the new value. */
inline long update_value(long g_exact, long w, uint i, long eta, __constant const long *g_spec,
                         uint g_key, int w_shift, int u_shift, __constant const long *upd_spec,
                         uint upd_key, __global uint *ev, int r_g, int r_upd)
{
    int flags;
    const long g = cast_value(g_exact, i, g_spec, g_key, &flags);
    count(ev, r_g, flags);
    const long u = (g * eta) << u_shift;
    const long q = cast_value((w << w_shift) - u, i, upd_spec, upd_key, &flags);
    if (flags & 1) atomic_inc(&ev[2 * r_upd]);
    if (u != 0 && q == w) atomic_inc(&ev[2 * r_upd + 1]);   /* a stalled update */
    return q;
}

/* w[o, i] <- cast(w - eta cast(sum_b delta_t[o, b] a_prev_t[i, b])), in place, with the
 * transposed copy w_t[i, o] kept equal. */
__kernel void weight_update(const int n_items, const int n_in, const int n_out, const int batch,
                            __global const RAW_T *delta_t, __global const RAW_T *a_prev_t,
                            __global RAW_T *w, __global RAW_T *w_t, const long eta,
                            __constant const long *g_spec, const uint g_key,
                            const int w_shift, const int u_shift,
                            __constant const long *upd_spec, const uint upd_key,
                            __global uint *ev, const int r_g, const int r_upd)
{
    const int gid = get_global_id(0);
    if (gid >= n_items) return;
    const int o = gid / n_in, i = gid - o * n_in;
    __global const RAW_T *dr = delta_t + (long)o * batch, *ar = a_prev_t + (long)i * batch;
    long acc = 0;
    for (int b = 0; b < batch; b++)
        acc += (long)dr[b] * (long)ar[b];
    const RAW_T q = (RAW_T)update_value(acc, (long)w[gid], gid, eta, g_spec, g_key, w_shift,
                                        u_shift, upd_spec, upd_key, ev, r_g, r_upd);
    w[gid] = q;
    w_t[(long)i * n_out + o] = q;
}

/* b[o] <- cast(b - eta cast(sum_b delta[b, o])), in place. */
__kernel void bias_update(const int n_out, const int batch, __global const RAW_T *delta_t,
                          __global RAW_T *bias, const long eta,
                          __constant const long *g_spec, const uint g_key,
                          const int w_shift, const int u_shift,
                          __constant const long *upd_spec, const uint upd_key,
                          __global uint *ev, const int r_g, const int r_upd)
{
    const int o = get_global_id(0);
    if (o >= n_out) return;
    __global const RAW_T *dr = delta_t + (long)o * batch;
    long s = 0;
    for (int b = 0; b < batch; b++)
        s += (long)dr[b];
    bias[o] = (RAW_T)update_value(s, (long)bias[o], o, eta, g_spec, g_key, w_shift, u_shift, upd_spec,
                           upd_key, ev, r_g, r_upd);
}
