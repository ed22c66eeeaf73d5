// memory_attention.cu — memory attention of Module I's memory block (twin:
// src/backend/cpu_memory_attention.rs). Per row of logits l:
//   w = softmax(l/τ); w' = relu(w − λ)·w/(|w − λ| + 1e-12); ŵ = w'/max(Σ|w'|, 1e-12).
// One block per row (grid rows, block min(256, cols rounded up to 32));
// each thread owns columns threadIdx.x + k·blockDim.x, so it re-reads only
// what it wrote itself and needs no barrier between the passes beyond the
// block reductions.
#include "common.cuh"

#define SHRINK_EPS 1e-12f
#define NORM_EPS 1e-12f

static __device__ __forceinline__ float shrink(float w, float lambda) {
    const float d = w - lambda;
    return fmaxf(d, 0.0f) * w / (fabsf(d) + SHRINK_EPS);
}

// d shrink / d w (0 where w ≤ λ).
static __device__ __forceinline__ float shrink_grad(float w, float lambda) {
    const float d = w - lambda;
    if (d <= 0.0f) return 0.0f;
    const float den = d + SHRINK_EPS;
    return w / den + d * (1.0f / den - w / (den * den));
}

// Writes the softmax w (saved for the backward) and the weights out, all [rows, cols].
extern "C" __global__ void memory_forward(u32 cols, float inv_tau, float lambda, const float* __restrict__ logits,
                                          float* __restrict__ w, float* __restrict__ out) {
    __shared__ float scratch[32];
    const u64 base = (u64)blockIdx.x * cols;
    float mx = __int_as_float((int)0xff800000u);
    for (u32 c = threadIdx.x; c < cols; c += blockDim.x) mx = fmaxf(mx, logits[base + c]);
    mx = block_max(mx, scratch) * inv_tau;
    float sum = 0.0f;
    for (u32 c = threadIdx.x; c < cols; c += blockDim.x) {
        const float e = expf(logits[base + c] * inv_tau - mx);
        w[base + c] = e;
        sum += e;
    }
    const float inv = 1.0f / block_sum(sum, scratch);
    float l1 = 0.0f;
    for (u32 c = threadIdx.x; c < cols; c += blockDim.x) {
        const float wi = w[base + c] * inv;
        const float o = shrink(wi, lambda);
        w[base + c] = wi;
        out[base + c] = o;
        l1 += o;
    }
    const float inv_l1 = 1.0f / fmaxf(block_sum(l1, scratch), NORM_EPS);
    for (u32 c = threadIdx.x; c < cols; c += blockDim.x) out[base + c] *= inv_l1;
}

// From the saved softmax w and dout = ∂L/∂ŵ writes dlogits = ∂L/∂l.
extern "C" __global__ void memory_backward(u32 cols, float inv_tau, float lambda, const float* __restrict__ w,
                                           const float* __restrict__ dout, float* __restrict__ dlogits) {
    __shared__ float scratch[32];
    const u64 base = (u64)blockIdx.x * cols;
    float s = 0.0f, q = 0.0f;
    for (u32 c = threadIdx.x; c < cols; c += blockDim.x) {
        const float sh = shrink(w[base + c], lambda);
        s += sh;
        q += dout[base + c] * sh;
    }
    s = block_sum(s, scratch);
    q = block_sum(q, scratch);
    // Renormalisation: ∂L/∂w'_j = (dout_j − Σ_k dout_k ŵ_k)/S while S > eps.
    float inv_s, proj;
    if (s > NORM_EPS) {
        inv_s = 1.0f / s;
        proj = q * inv_s;
    } else {
        inv_s = 1.0f / NORM_EPS;
        proj = 0.0f;
    }
    float dot = 0.0f;
    for (u32 c = threadIdx.x; c < cols; c += blockDim.x) {
        const float x = w[base + c];
        const float g = (dout[base + c] - proj) * inv_s * shrink_grad(x, lambda);
        dlogits[base + c] = g;
        dot += g * x;
    }
    dot = block_sum(dot, scratch);
    for (u32 c = threadIdx.x; c < cols; c += blockDim.x) {
        const float x = w[base + c];
        dlogits[base + c] = inv_tau * x * (dlogits[base + c] - dot);
    }
}
