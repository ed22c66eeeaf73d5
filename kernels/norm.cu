// norm.cu — row softmax with temperature and LayerNorm (twins:
// src/backend/cpu_fused.rs `softmax_rows`, `softmax_rows_backward`,
// `layer_norm_forward`, `layer_norm_backward`). Row kernels: one block per
// row (grid rows, block min(256, cols rounded up to 32)); each thread owns
// columns threadIdx.x + k·blockDim.x.
#include "common.cuh"

// y[r, :] = softmax(x[r, :]·scale)
extern "C" __global__ void softmax_rows(u32 cols, float scale, const float* __restrict__ x, float* __restrict__ y) {
    __shared__ float scratch[32];
    const u64 base = (u64)blockIdx.x * cols;
    float mx = __int_as_float((int)0xff800000u);
    for (u32 c = threadIdx.x; c < cols; c += blockDim.x) mx = fmaxf(mx, x[base + c] * scale);
    mx = block_max(mx, scratch);
    float s = 0.0f;
    for (u32 c = threadIdx.x; c < cols; c += blockDim.x) {
        const float e = expf(x[base + c] * scale - mx);
        y[base + c] = e;
        s += e;
    }
    const float inv = 1.0f / block_sum(s, scratch);
    for (u32 c = threadIdx.x; c < cols; c += blockDim.x) y[base + c] *= inv;
}

// dx = scale·y ⊙ (dy − rowsum(dy ⊙ y))
extern "C" __global__ void softmax_rows_backward(u32 cols, float scale, const float* __restrict__ y,
                                                 const float* __restrict__ dy, float* __restrict__ dx) {
    __shared__ float scratch[32];
    const u64 base = (u64)blockIdx.x * cols;
    float dot = 0.0f;
    for (u32 c = threadIdx.x; c < cols; c += blockDim.x) dot += y[base + c] * dy[base + c];
    dot = block_sum(dot, scratch);
    for (u32 c = threadIdx.x; c < cols; c += blockDim.x) dx[base + c] = scale * y[base + c] * (dy[base + c] - dot);
}

// y = γ·(x − μ)·invstd + β per row, statistics in double; saves mean, invstd: [rows].
extern "C" __global__ void layer_norm_forward(u32 cols, float eps, const float* __restrict__ x,
                                              const float* __restrict__ gamma, const float* __restrict__ beta,
                                              float* __restrict__ y, float* __restrict__ mean,
                                              float* __restrict__ invstd) {
    __shared__ double scratch[32];
    const u64 base = (u64)blockIdx.x * cols;
    double s = 0.0;
    for (u32 c = threadIdx.x; c < cols; c += blockDim.x) s += (double)x[base + c];
    const double mu = block_sum_d(s, scratch) / (double)cols;
    double v = 0.0;
    for (u32 c = threadIdx.x; c < cols; c += blockDim.x) {
        const double d = (double)x[base + c] - mu;
        v += d * d;
    }
    const double inv = 1.0 / sqrt(block_sum_d(v, scratch) / (double)cols + (double)eps);
    for (u32 c = threadIdx.x; c < cols; c += blockDim.x)
        y[base + c] = (float)(((double)x[base + c] - mu) * inv) * gamma[c] + beta[c];
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = (float)mu;
        invstd[blockIdx.x] = (float)inv;
    }
}

// LayerNorm backward, input gradient (per row): with g = dy·γ and
// x̂ = (x − μ)·invstd, dx = invstd·(g − mean(g) − x̂·mean(g·x̂)).
extern "C" __global__ void layer_norm_backward_dx(u32 cols, const float* __restrict__ x,
                                                  const float* __restrict__ gamma, const float* __restrict__ mean,
                                                  const float* __restrict__ invstd, const float* __restrict__ dy,
                                                  float* __restrict__ dx) {
    __shared__ double scratch[32];
    const u64 base = (u64)blockIdx.x * cols;
    const float mu = mean[blockIdx.x], is = invstd[blockIdx.x];
    double a = 0.0, b = 0.0;
    for (u32 c = threadIdx.x; c < cols; c += blockDim.x) {
        const float g = dy[base + c] * gamma[c];
        a += (double)g;
        b += (double)g * (double)((x[base + c] - mu) * is);
    }
    const float ma = (float)(block_sum_d(a, scratch) / (double)cols);
    const float mb = (float)(block_sum_d(b, scratch) / (double)cols);
    for (u32 c = threadIdx.x; c < cols; c += blockDim.x) {
        const float g = dy[base + c] * gamma[c];
        dx[base + c] = is * (g - ma - (x[base + c] - mu) * is * mb);
    }
}

// LayerNorm backward, parameters: dbeta += Σ_r dy, dgamma += Σ_r dy·x̂.
// Block (32, COL_ROWS) owns 32 columns (grid ceil(cols / 32)).
extern "C" __global__ void layer_norm_backward_params(u64 rows, u32 cols, const float* __restrict__ x,
                                                      const float* __restrict__ mean,
                                                      const float* __restrict__ invstd,
                                                      const float* __restrict__ dy, float* __restrict__ dgamma,
                                                      float* __restrict__ dbeta) {
    __shared__ double scratch[32 * COL_ROWS];
    const u32 c = blockIdx.x * 32 + threadIdx.x;
    double sg = 0.0, sgx = 0.0;
    if (c < cols)
        for (u64 r = threadIdx.y; r < rows; r += COL_ROWS) {
            const float g = dy[r * cols + c];
            sg += (double)g;
            sgx += (double)(g * ((x[r * cols + c] - mean[r]) * invstd[r]));
        }
    sg = col_block_sum(sg, scratch);
    sgx = col_block_sum(sgx, scratch);
    if (threadIdx.y == 0 && c < cols) {
        dbeta[c] += (float)sg;
        dgamma[c] += (float)sgx;
    }
}
