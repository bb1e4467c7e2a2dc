/* fxbp float32 training kernels: the GPU user's baseline, the same network and
 * update rule as fxbp.sw.float_ref (eta = lr / batch times the batch-summed
 * gradient). One work-item per output element; global sizes are rounded up.
 * Same memory layout as fixed_train.cl: transposed copies of activations,
 * deltas and weights keep every inner loop contiguous. */

__kernel void forward(const int n_items, const int n_in, const int n_out,
                      __global const float *x, __global const int *rows, const int offset,
                      const int gather, __global float *x_t, __global const float *w,
                      __global const float *bias, __global float *a_out, __global float *a_t)
{
    const int gid = get_global_id(0);
    if (gid >= n_items) return;
    const int n = n_items / n_out;
    const int b = gid / n_out, o = gid - b * n_out;
    const long row = gather ? rows[offset + b] : b;
    __global const float *xr = x + row * n_in, *wr = w + (long)o * n_in;
    float acc = 0.0f;
    for (int k = 0; k < n_in; k++)
        acc += xr[k] * wr[k];
    const float a = 1.0f / (1.0f + exp(-(acc + bias[o])));
    a_out[gid] = a;
    a_t[(long)o * n + b] = a;
    if (gather)                         /* each item transposes every n_out-th input */
        for (int k = o; k < n_in; k += n_out)
            x_t[(long)k * n + b] = xr[k];
}

__kernel void delta(const int n_items, const int n_cur, const int n_next,
                    __global const float *act, __global const float *target,
                    __global const int *rows, const int offset,
                    __global const float *delta_next, __global const float *w_next_t,
                    const int use_derivative, __global float *delta_out, __global float *delta_t)
{
    const int gid = get_global_id(0);
    if (gid >= n_items) return;
    float err;
    const int n = n_items / n_cur;
    const int b = gid / n_cur, j = gid - b * n_cur;
    if (n_next == 0) {
        err = act[gid] - target[(long)rows[offset + b] * n_cur + j];
    } else {
        float acc = 0.0f;
        for (int o = 0; o < n_next; o++)
            acc += delta_next[(long)b * n_next + o] * w_next_t[(long)j * n_next + o];
        err = acc;
    }
    const float a = act[gid];
    const float d = use_derivative ? err * a * (1.0f - a) : err;
    delta_out[gid] = d;
    delta_t[(long)j * n + b] = d;
}

__kernel void weight_update(const int n_items, const int n_in, const int n_out, const int batch,
                            __global const float *delta_t, __global const float *a_prev_t,
                            __global float *w, __global float *w_t, const float eta)
{
    const int gid = get_global_id(0);
    if (gid >= n_items) return;
    const int o = gid / n_in, i = gid - o * n_in;
    float acc = 0.0f;
    for (int b = 0; b < batch; b++)
        acc += delta_t[(long)o * batch + b] * a_prev_t[(long)i * batch + b];
    const float q = w[gid] - eta * acc;
    w[gid] = q;
    w_t[(long)i * n_out + o] = q;
}

__kernel void bias_update(const int n_out, const int batch, __global const float *delta_t,
                          __global float *bias, const float eta)
{
    const int o = get_global_id(0);
    if (o >= n_out) return;
    float s = 0.0f;
    for (int b = 0; b < batch; b++)
        s += delta_t[(long)o * batch + b];
    bias[o] -= eta * s;
}
