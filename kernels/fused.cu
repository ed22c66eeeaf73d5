// fused.cu — bias + BatchNorm + activation + dropout, forward and backward
// (twin: src/backend/cpu_fused.rs `fused_forward` / `fused_backward`).
//
// Forward = [bn_stats] + fused_apply; backward = fused_grad + [bn_backward]
// (+ col_sums from reduce.cu for dbias without BN). BatchNorm in training
// needs column statistics over all rows before any output can be written,
// hence two launches where a GPU has no grid-wide barrier.
//
// The per-column affine map is that of the CPU twin: a = z·s + t with
// s = γ·invstd, t = β + (bias − mean)·s under BN, and s = 1, t = bias
// without. Optional buffers are null pointers.
#include "common.cuh"

static __device__ __forceinline__ void affine(u32 c, const float* bias, const float* gamma, const float* beta,
                                              const float* mean, const float* invstd, float* s, float* t) {
    const float b = bias ? bias[c] : 0.0f;
    if (gamma) {
        *s = gamma[c] * invstd[c];
        *t = beta[c] + (b - mean[c]) * *s;
    } else {
        *s = 1.0f;
        *t = b;
    }
}

// BatchNorm statistics. Block (32, COL_ROWS) owns 32 columns, grid
// ceil(cols / 32). Training: batch mean and 1/sqrt(biased var + eps) of
// z + bias (two passes, double accumulators) into save_mean/save_invstd,
// and the running stats updated with `momentum` (running var from the
// unbiased variance). Eval: save_* from the running stats.
extern "C" __global__ void bn_stats(u64 rows, u32 cols, int train, float eps, float momentum,
                                    const float* __restrict__ z, const float* __restrict__ bias,
                                    float* __restrict__ running_mean, float* __restrict__ running_var,
                                    float* __restrict__ save_mean, float* __restrict__ save_invstd) {
    __shared__ double scratch[32 * COL_ROWS];
    const u32 c = blockIdx.x * 32 + threadIdx.x;
    const bool live = c < cols;
    if (!train) {
        if (threadIdx.y == 0 && live) {
            save_mean[c] = running_mean[c];
            save_invstd[c] = 1.0f / sqrtf(running_var[c] + eps);
        }
        return;
    }
    const float b = (live && bias) ? bias[c] : 0.0f;
    double acc = 0.0;
    if (live)
        for (u64 r = threadIdx.y; r < rows; r += COL_ROWS) acc += (double)(z[r * cols + c] + b);
    const double mean = col_block_sum(acc, scratch) / (double)rows;
    acc = 0.0;
    if (live)
        for (u64 r = threadIdx.y; r < rows; r += COL_ROWS) {
            const double d = (double)(z[r * cols + c] + b) - mean;
            acc += (double)(float)(d * d);
        }
    const double ssd = col_block_sum(acc, scratch);
    if (threadIdx.y == 0 && live) {
        const double var_b = ssd / (double)rows;
        const double var_u = ssd / (double)(rows - 1);
        save_mean[c] = (float)mean;
        save_invstd[c] = (float)(1.0 / sqrt(var_b + (double)eps));
        running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * (float)mean;
        running_var[c] = (1.0f - momentum) * running_var[c] + momentum * (float)var_u;
    }
}

// y = act(z·s + t)·dropout over z, y: [rows, cols]. Grid-stride, block 256.
// p = 0 disables dropout (the host passes 0 in eval).
extern "C" __global__ void fused_apply(u64 rows, u32 cols, int act, float slope, float p, u64 seed, u64 offset,
                                       const float* __restrict__ z, const float* __restrict__ bias,
                                       const float* __restrict__ gamma, const float* __restrict__ beta,
                                       const float* __restrict__ mean, const float* __restrict__ invstd,
                                       float* __restrict__ y) {
    const u64 n = rows * cols;
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)blockDim.x * gridDim.x) {
        float s, t;
        affine((u32)(i % cols), bias, gamma, beta, mean, invstd, &s, &t);
        y[i] = act_f(act, slope, z[i] * s + t) * dropout_factor(p, seed, offset + i);
    }
}

// g = dy·dropout·act'(z·s + t) into dz (the first half of the backward).
extern "C" __global__ void fused_grad(u64 rows, u32 cols, int act, float slope, float p, u64 seed, u64 offset,
                                      const float* __restrict__ z, const float* __restrict__ bias,
                                      const float* __restrict__ gamma, const float* __restrict__ beta,
                                      const float* __restrict__ mean, const float* __restrict__ invstd,
                                      const float* __restrict__ dy, float* __restrict__ dz) {
    const u64 n = rows * cols;
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)blockDim.x * gridDim.x) {
        float s, t;
        affine((u32)(i % cols), bias, gamma, beta, mean, invstd, &s, &t);
        dz[i] = dy[i] * dropout_factor(p, seed, offset + i) * act_df(act, slope, z[i] * s + t);
    }
}

// BatchNorm backward in place on dz (holding g from fused_grad). Block
// (32, COL_ROWS) owns 32 columns (grid ceil(cols / 32)):
//   dbeta += Σ g, dgamma += Σ g·x̂ with x̂ = (z + bias − mean)·invstd;
//   train: dz = s·(g − mean(g) − x̂·mean(g·x̂)); eval: dz = s·g;
//   dbias (optional) += Σ dz (the final one).
extern "C" __global__ void bn_backward(u64 rows, u32 cols, int train, const float* __restrict__ z,
                                       const float* __restrict__ bias, const float* __restrict__ gamma,
                                       const float* __restrict__ mean, const float* __restrict__ invstd,
                                       float* __restrict__ dz, float* __restrict__ dgamma,
                                       float* __restrict__ dbeta, float* __restrict__ dbias) {
    __shared__ double scratch[32 * COL_ROWS];
    const u32 c = blockIdx.x * 32 + threadIdx.x;
    const bool live = c < cols;
    const float b = (live && bias) ? bias[c] : 0.0f;
    const float mu = live ? mean[c] : 0.0f, is = live ? invstd[c] : 0.0f;
    const float s = live ? gamma[c] * is : 0.0f;
    double sg = 0.0, sgx = 0.0;
    if (live)
        for (u64 r = threadIdx.y; r < rows; r += COL_ROWS) {
            const float g = dz[r * cols + c];
            const float xh = (z[r * cols + c] + b - mu) * is;
            sg += g;
            sgx += (double)(g * xh);
        }
    sg = col_block_sum(sg, scratch);
    sgx = col_block_sum(sgx, scratch);
    if (threadIdx.y == 0 && live) {
        dbeta[c] += (float)sg;
        dgamma[c] += (float)sgx;
    }
    const float mg = (float)(sg / (double)rows), mgx = (float)(sgx / (double)rows);
    double sd = 0.0;
    if (live)
        for (u64 r = threadIdx.y; r < rows; r += COL_ROWS) {
            const u64 i = r * cols + c;
            const float g = dz[i];
            float d;
            if (train) {
                const float xh = (z[i] + b - mu) * is;
                d = s * (g - mg - xh * mgx);
            } else {
                d = s * g;
            }
            dz[i] = d;
            sd += d;
        }
    if (dbias) {
        sd = col_block_sum(sd, scratch);
        if (threadIdx.y == 0 && live) dbias[c] += (float)sd;
    }
}
