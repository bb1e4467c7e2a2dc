/* fxbp float32 training kernels: the GPU user's baseline, the same network and
 * update rule as fxbp.sw.float_ref (eta = lr / batch times the batch-summed
 * gradient). One work-item per output element; global sizes are rounded up. */

__kernel void forward(const int n_items, const int n_in, const int n_out,
                      __global const float *x, __global const int *rows, const int offset,
                      const int gather, __global const float *w,
                      __global const float *bias, __global float *a_out)
{
    const int gid = get_global_id(0);
    if (gid >= n_items) return;
    const int b = gid / n_out, o = gid - b * n_out;
    const long row = gather ? rows[offset + b] : b;
    __global const float *xr = x + row * n_in, *wr = w + (long)o * n_in;
    float acc = 0.0f;
    for (int k = 0; k < n_in; k++)
        acc += xr[k] * wr[k];
    a_out[gid] = 1.0f / (1.0f + exp(-(acc + bias[o])));
}

__kernel void delta(const int n_items, const int n_cur, const int n_next,
                    __global const float *act, __global const float *target,
                    __global const int *rows, const int offset,
                    __global const float *delta_next, __global const float *w_next,
                    const int use_derivative, __global float *delta_out)
{
    const int gid = get_global_id(0);
    if (gid >= n_items) return;
    float err;
    const int b = gid / n_cur, j = gid - b * n_cur;
    if (n_next == 0) {
        err = act[gid] - target[(long)rows[offset + b] * n_cur + j];
    } else {
        float acc = 0.0f;
        for (int o = 0; o < n_next; o++)
            acc += delta_next[(long)b * n_next + o] * w_next[(long)o * n_cur + j];
        err = acc;
    }
    const float a = act[gid];
    delta_out[gid] = use_derivative ? err * a * (1.0f - a) : err;
}

__kernel void weight_update(const int n_items, const int n_in, const int n_out, const int batch,
                            __global const float *delta, __global const float *a_prev,
                            __global const int *rows, const int offset, const int gather,
                            __global float *w, const float eta)
{
    const int gid = get_global_id(0);
    if (gid >= n_items) return;
    const int o = gid / n_in, i = gid - o * n_in;
    float acc = 0.0f;
    for (int b = 0; b < batch; b++)
        acc += delta[(long)b * n_out + o]
             * a_prev[(gather ? (long)rows[offset + b] : (long)b) * n_in + i];
    w[gid] -= eta * acc;
}

__kernel void bias_update(const int n_out, const int batch, __global const float *delta,
                          __global float *bias, const float eta)
{
    const int o = get_global_id(0);
    if (o >= n_out) return;
    float s = 0.0f;
    for (int b = 0; b < batch; b++)
        s += delta[(long)b * n_out + o];
    bias[o] -= eta * s;
}
