// reduce.cu — row, column and full reductions.
#include "common.cuh"

// Row reduction, one block per row (grid rows, block min(256, cols rounded
// up to 32)); accumulates in double, as the CPU twin.
static __device__ __forceinline__ void row_reduce(u32 cols, bool square, const float* __restrict__ x,
                                                  float* __restrict__ out) {
    __shared__ double scratch[32];
    const float* row = x + (u64)blockIdx.x * cols;
    double acc = 0.0;
    for (u32 c = threadIdx.x; c < cols; c += blockDim.x) {
        const double v = row[c];
        acc += square ? v * v : v;
    }
    acc = block_sum_d(acc, scratch);
    if (threadIdx.x == 0) out[blockIdx.x] = (float)acc;
}

// out[r] = Σ_c x[r, c]
extern "C" __global__ void row_sums(u32 cols, const float* x, float* out) { row_reduce(cols, false, x, out); }

// out[r] = Σ_c x[r, c]²
extern "C" __global__ void row_sumsq(u32 cols, const float* x, float* out) { row_reduce(cols, true, x, out); }

// out[c] = beta·out[c] + Σ_r x[r, c]. Block (32, COL_ROWS) owns 32 columns
// and walks every row (grid ceil(cols / 32)); no atomics, so the result does
// not depend on scheduling. With beta = 0, out is not read.
extern "C" __global__ void col_sums(u64 rows, u32 cols, const float* __restrict__ x, float beta,
                                   float* __restrict__ out) {
    __shared__ double scratch[32 * COL_ROWS];
    const u32 c = blockIdx.x * 32 + threadIdx.x;
    double acc = 0.0;
    if (c < cols)
        for (u64 r = threadIdx.y; r < rows; r += COL_ROWS) acc += x[r * cols + c];
    acc = col_block_sum(acc, scratch);
    if (threadIdx.y == 0 && c < cols) out[c] = (beta == 0.0f ? 0.0f : beta * out[c]) + (float)acc;
}

// Full sum (or sum of squares) pass 1: per-block partials (double) of a
// grid-stride loop (block 256, grid ≤ 1024) into partial[blockIdx.x].
extern "C" __global__ void sum_partial(u64 n, int square, const float* __restrict__ x, double* __restrict__ partial) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)blockDim.x * gridDim.x) {
        const double v = x[i];
        acc += square ? v * v : v;
    }
    acc = block_sum_d(acc, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// Pass 2: one block (256 threads) adds `parts` partials into out[0].
extern "C" __global__ void sum_final(u32 parts, const double* __restrict__ partial, double* __restrict__ out) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (u32 i = threadIdx.x; i < parts; i += blockDim.x) acc += partial[i];
    acc = block_sum_d(acc, scratch);
    if (threadIdx.x == 0) out[0] = acc;
}
