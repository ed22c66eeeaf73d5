// desc.cu — DESC's Student-t soft assignment and the backward of its
// KL(P‖Q) loss, for Module IV's fine-grained subtyping (twin:
// src/backend/cpu_desc.rs, where the formulas are written out).
//
// Shapes: z [rows, dim] (z*), mu [k, dim] (centroids), dist/q/p/g [rows, k],
// dz [rows, dim], dmu [k, dim]. With a = (ν+1)/2:
//   log t_ij = −a·ln(1 + ‖z_i − μ_j‖²/ν),  q_i = softmax_j(log t_i),
//   g_ij = ∂L/∂dist_ij = scale·a·(p_ij − q_ij·Σ_l p_il)/(ν + dist_ij).
// q is computed in log space (max-shifted), so a cell far from every
// centroid never gives 0/0.
//
// desc_soft_assign and desc_kl_grad: one block per row (block a multiple of
// 32 threads); desc_centroid_grad: one block per centroid.
#include "common.cuh"

static __device__ __forceinline__ float desc_log_t(float nu, float d) {
    return -0.5f * (nu + 1.0f) * log1pf(d / nu);
}

// dist[i, j] = ‖z_i − μ_j‖² (one warp per centroid, lanes over dim), then
// q[i, :] = softmax(log t[i, :]).
extern "C" __global__ void desc_soft_assign(u32 k, u32 dim, float nu, const float* __restrict__ z,
                                            const float* __restrict__ mu, float* dist, float* __restrict__ q) {
    __shared__ float scratch[32];
    const u64 row = blockIdx.x;
    const float* zi = z + row * dim;
    float* di = dist + row * k;
    float* qi = q + row * k;
    const u32 lane = threadIdx.x & 31u, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    // Warp-uniform loop: every lane of a warp takes part in its warp_sum.
    for (u32 j = warp; j < k; j += nw) {
        const float* mj = mu + (u64)j * dim;
        float s = 0.0f;
        for (u32 c = lane; c < dim; c += 32) {
            const float e = zi[c] - mj[c];
            s += e * e;
        }
        s = warp_sum(s);
        if (lane == 0) di[j] = s;
    }
    __syncthreads();  // dist of this row is complete
    float mx = __int_as_float((int)0xff800000u);
    for (u32 j = threadIdx.x; j < k; j += blockDim.x) mx = fmaxf(mx, desc_log_t(nu, di[j]));
    mx = block_max(mx, scratch);
    float sum = 0.0f;
    for (u32 j = threadIdx.x; j < k; j += blockDim.x) sum += expf(desc_log_t(nu, di[j]) - mx);
    const float lse = mx + logf(block_sum(sum, scratch));
    for (u32 j = threadIdx.x; j < k; j += blockDim.x) qi[j] = expf(desc_log_t(nu, di[j]) - lse);
}

// Loss, g = ∂L/∂dist and dz = ∂L/∂z of one row; the row's loss
// (scale·Σ_j p ln(p/q), terms with p = 0 dropped) goes to row_loss[i] (f64).
extern "C" __global__ void desc_kl_grad(u32 k, u32 dim, float nu, float scale, const float* __restrict__ z,
                                        const float* __restrict__ mu, const float* __restrict__ p,
                                        const float* __restrict__ dist, float* g, float* __restrict__ dz,
                                        double* __restrict__ row_loss) {
    __shared__ float scratch[32];
    __shared__ double scratch_d[32];
    const u64 row = blockIdx.x;
    const float* di = dist + row * k;
    const float* pi = p + row * k;
    float* gi = g + row * k;
    float mx = __int_as_float((int)0xff800000u), ps = 0.0f;
    for (u32 j = threadIdx.x; j < k; j += blockDim.x) {
        mx = fmaxf(mx, desc_log_t(nu, di[j]));
        ps += pi[j];
    }
    mx = block_max(mx, scratch);
    ps = block_sum(ps, scratch);
    float sum = 0.0f;
    for (u32 j = threadIdx.x; j < k; j += blockDim.x) sum += expf(desc_log_t(nu, di[j]) - mx);
    const float lse = mx + logf(block_sum(sum, scratch));
    const float a = 0.5f * (nu + 1.0f);
    double loss = 0.0;
    for (u32 j = threadIdx.x; j < k; j += blockDim.x) {
        const float lq = desc_log_t(nu, di[j]) - lse;
        const float pj = pi[j];
        if (pj > 0.0f) loss += (double)(pj * (logf(pj) - lq));
        gi[j] = scale * a * (pj - expf(lq) * ps) / (nu + di[j]);
    }
    loss = block_sum_d(loss, scratch_d);  // its barriers also publish g
    if (threadIdx.x == 0) row_loss[row] = (double)scale * loss;
    const float* zi = z + row * dim;
    for (u32 c = threadIdx.x; c < dim; c += blockDim.x) {
        const float zc = zi[c];
        float s = 0.0f;
        for (u32 j = 0; j < k; ++j) s += gi[j] * (zc - mu[(u64)j * dim + c]);
        dz[row * dim + c] = 2.0f * s;
    }
}

// dmu[j, c] += −2·Σ_i g[i, j]·(z[i, c] − μ[j, c]); threads over c.
extern "C" __global__ void desc_centroid_grad(u32 rows, u32 k, u32 dim, const float* __restrict__ z,
                                              const float* __restrict__ mu, const float* __restrict__ g,
                                              float* __restrict__ dmu) {
    const u64 j = blockIdx.x;
    for (u32 c = threadIdx.x; c < dim; c += blockDim.x) {
        const float m = mu[j * dim + c];
        float s = 0.0f;
        for (u32 i = 0; i < rows; ++i) s += g[(u64)i * k + j] * (z[(u64)i * dim + c] - m);
        dmu[j * dim + c] += -2.0f * s;
    }
}
