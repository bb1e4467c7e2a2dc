/* fxbp float32 training kernels: the GPU user's baseline, the same network and
 * update rule as fxbp.sw.float_ref (eta = lr / batch times the batch-summed
 * gradient). The same structure as fixed_train.cl, so that the two compare fairly:
 * the three matrix products are tiled in TILE x TILE work-groups through local
 * memory, and activations, deltas and weights keep transposed copies so that every
 * tile load reads consecutive words. Each item still sums its element in index
 * order (tile by tile, then within the tile). */

#include "matrix_sum.h"

/* Dimension 0 is o, dimension 1 is b. */
__kernel WORK_GROUP_ATTR
void forward(const int n, const int n_in, const int n_out,
             __global const float *x, __global const int *rows, const int offset,
             const int gather, __global float *x_t, __global const float *w,
             __global const float *bias, __global float *a_out, __global float *a_t)
{
    TILES(float, xs, ws);
    const int lc = get_local_id(0), lr = get_local_id(1);
    const int o = get_global_id(0), b = get_global_id(1);
    float acc = 0.0f;
    MATRIX_SUM_GATHER(float, acc, xs, ws, x, rows, offset, gather, n, w, n_out, n_in);
    if (b >= n || o >= n_out) return;
    if (gather)
        for (int k = o; k < n_in; k += n_out)
            x_t[(long)k * n + b] = x[x_own + k];
    const float a = 1.0f / (1.0f + exp(-(acc + bias[o])));
    a_out[b * n_out + o] = a;
    a_t[(long)o * n + b] = a;
}

/* Dimension 0 is j, dimension 1 is b. */
__kernel WORK_GROUP_ATTR
void delta(const int n, const int n_cur, const int n_next,
           __global const float *act, __global const float *target,
           __global const int *rows, const int offset,
           __global const float *delta_next, __global const float *w_next_t,
           const int use_derivative, __global float *delta_out, __global float *delta_t)
{
    TILES(float, ds, ws);
    const int lc = get_local_id(0), lr = get_local_id(1);
    const int j = get_global_id(0), b = get_global_id(1);
    float acc = 0.0f;
    if (n_next > 0)                     /* the same for every item: the barriers agree */
        MATRIX_SUM_ROWS(float, acc, ds, ws, delta_next, n, w_next_t, n_cur, n_next);
    if (b >= n || j >= n_cur) return;
    const int gid = b * n_cur + j;
    const float err = n_next == 0 ? act[gid] - target[(long)rows[offset + b] * n_cur + j] : acc;
    const float a = act[gid];
    const float d = use_derivative ? err * a * (1.0f - a) : err;
    delta_out[gid] = d;
    delta_t[(long)j * n + b] = d;
}

/* The update of a layer, fused: weights (w and w_t) and, in column i = n_in, the bias.
 * Dimension 0 is i (0 .. n_in), dimension 1 is o. */
__kernel WORK_GROUP_ATTR
void update(const int n_in, const int n_out, const int batch,
            __global const float *delta_t, __global const float *a_prev_t,
            __global float *w, __global float *w_t, __global float *bias, const float eta)
{
    TILES(float, ds, as);
    const int lc = get_local_id(0), lr = get_local_id(1);
    const int i = get_global_id(0), o = get_global_id(1);
    const long d_own = o < n_out ? (long)o * batch : -1;
    float acc = 0.0f;
    MATRIX_SUM_ROWS(float, acc, ds, as, delta_t, n_out, a_prev_t, n_in, batch);
    if (o >= n_out || i > n_in) return;
    if (i == n_in) {
        for (int b = 0; b < batch; b++)
            acc += delta_t[d_own + b];
        bias[o] -= eta * acc;
        return;
    }
    const int gid = o * n_in + i;
    const float q = w[gid] - eta * acc;
    w[gid] = q;
    w_t[(long)i * n_out + o] = q;
}
