// adam.cu — one fused Adam/AdamW step (twin: CpuBackend::adam_step in
// src/backend/cpu.rs; the operation order of torch's single-tensor Adam).
// The host folds the step constants: step_size = lr/(1 − β1ᵗ),
// bc2_sqrt = sqrt(1 − β2ᵗ), decay = 1 − lr·wd for AdamW (else 1),
// wd_coupled = wd for Adam (else 0). Grid-stride, block 256.
#include "common.cuh"

extern "C" __global__ void adam_step(u64 n, float beta1, float beta2, float eps, float step_size, float bc2_sqrt,
                                     float decay, float wd_coupled, float* __restrict__ param,
                                     const float* __restrict__ grad, float* __restrict__ m, float* __restrict__ v) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)blockDim.x * gridDim.x) {
        const float p = param[i];
        const float g = grad[i] + wd_coupled * p;
        const float mi = m[i] + (g - m[i]) * (1.0f - beta1);
        const float vi = v[i] * beta2 + (1.0f - beta2) * g * g;
        const float denom = sqrtf(vi) / bc2_sqrt + eps;
        m[i] = mi;
        v[i] = vi;
        param[i] = p * decay - step_size * mi / denom;
    }
}
