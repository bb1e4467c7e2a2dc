/* The matrix sums of the training kernels (fixed_train.cl, float_train.cl), in two
 * builds of one source:
 *   TILED=1 (GPUs): a TILE x TILE work-group stages a tile of each operand in local
 *     memory, and every item sums its element over the tiles;
 *   TILED=0 (CPUs, where barriers cost more than the cache saves): every item sums
 *     its element straight from global memory.
 * Either way an item adds its products in index order.
 *
 * MATRIX_SUM(T, acc, As, Bs, A, a_load, a_own, B, b_load, b_own, n_k):
 *   acc += sum_k (T)A[r, k] * (T)B[c, k] for this item's (r, c), both operands row-major
 *   with k contiguous. a_own / b_own: the offsets of this item's rows (-1 outside the
 *   matrix); a_load / b_load: those of the rows it loads into a tile (row lr of each).
 *   Every item of the work-group must reach it (the tiled form holds barriers); it
 *   uses the item's local ids lc (dimension 0) and lr (dimension 1).
 * TILES(S, As, Bs): the two tiles (elements of type S), declared in the kernel.
 * MATRIX_SUM_ROWS(T, acc, As, Bs, A, n_r, B, n_c, n_k): MATRIX_SUM over a range whose
 *   dimension 1 indexes A's n_r rows and dimension 0 B's n_c rows, each n_k long.
 * MATRIX_SUM_GATHER(T, acc, As, Bs, X, rows, offset, gather, n, W, n_w, n_k): the same
 *   for X's rows 0..n (or, with gather, rows[offset + b]) against W's n_w rows; sets
 *   x_own, the offset of this item's row of X. */

#ifndef TILE
#define TILE 16
#endif
#ifndef TILED
#define TILED 1
#endif

#if TILED
#define WORK_GROUP_ATTR __attribute__((reqd_work_group_size(TILE, TILE, 1)))
#define TILES(S, As, Bs) __local S As[TILE][TILE + 1], Bs[TILE][TILE + 1]
#define MATRIX_SUM(T, acc, As, Bs, A, a_load, a_own, B, b_load, b_own, n_k)              \
    for (int k0 = 0; k0 < (n_k); k0 += TILE) {                                           \
        const int k_ = k0 + lc;                                                          \
        As[lr][lc] = ((a_load) >= 0 && k_ < (n_k)) ? (A)[(a_load) + k_] : 0;             \
        Bs[lr][lc] = ((b_load) >= 0 && k_ < (n_k)) ? (B)[(b_load) + k_] : 0;             \
        barrier(CLK_LOCAL_MEM_FENCE);                                                    \
        for (int kk = 0; kk < TILE; kk++)                                                \
            acc += (T)As[lr][kk] * (T)Bs[lc][kk];                                        \
        barrier(CLK_LOCAL_MEM_FENCE);                                                    \
    }
#else
#define WORK_GROUP_ATTR
#define TILES(S, As, Bs)
#define MATRIX_SUM(T, acc, As, Bs, A, a_load, a_own, B, b_load, b_own, n_k)              \
    if ((a_own) >= 0 && (b_own) >= 0)                                                    \
        for (int k_ = 0; k_ < (n_k); k_++)                                               \
            acc += (T)(A)[(a_own) + k_] * (T)(B)[(b_own) + k_];
#endif

#define MATRIX_SUM_ROWS(T, acc, As, Bs, A, n_r, B, n_c, n_k)                              \
    do {                                                                                 \
        const int r_load_ = get_group_id(1) * TILE + lr, c_load_ = get_group_id(0) * TILE + lr; \
        const int r_ = get_global_id(1), c_ = get_global_id(0);                          \
        const long a_load_ = r_load_ < (n_r) ? (long)r_load_ * (n_k) : -1;               \
        const long b_load_ = c_load_ < (n_c) ? (long)c_load_ * (n_k) : -1;               \
        const long a_own_ = r_ < (n_r) ? (long)r_ * (n_k) : -1;                          \
        const long b_own_ = c_ < (n_c) ? (long)c_ * (n_k) : -1;                          \
        MATRIX_SUM(T, acc, As, Bs, A, a_load_, a_own_, B, b_load_, b_own_, n_k)          \
    } while (0)

#define MATRIX_SUM_GATHER(T, acc, As, Bs, X, rows, offset, gather, n, W, n_w, n_k)        \
    const int x_load_row_ = get_group_id(1) * TILE + lr;                                \
    const int w_load_row_ = get_group_id(0) * TILE + lr;                                 \
    const long x_load_ = x_load_row_ < (n)                                               \
        ? ((gather) ? (long)(rows)[(offset) + x_load_row_] : x_load_row_) * (n_k) : -1;  \
    const long w_load_ = w_load_row_ < (n_w) ? (long)w_load_row_ * (n_k) : -1;           \
    const long x_own = get_global_id(1) < (n)                                            \
        ? ((gather) ? (long)(rows)[(offset) + get_global_id(1)] : get_global_id(1)) * (n_k) : -1; \
    const long w_own_ = get_global_id(0) < (n_w) ? (long)get_global_id(0) * (n_k) : -1;  \
    MATRIX_SUM(T, acc, As, Bs, X, x_load_, x_own, W, w_load_, w_own_, n_k)
