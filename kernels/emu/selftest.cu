// selftest.cu — kernels that exercise the emulator itself (compiled into the
// emulation library only; not part of the CUDA modules). Two are broken on
// purpose: the emulator must report them as launch errors, not hang.
#include "../common.cuh"

// Divergent barrier: only even threads reach __syncthreads while odd ones
// wait in a warp shuffle.
extern "C" __global__ void emu_divergent_barrier(float* out) {
    float v = (float)threadIdx.x;
    if (threadIdx.x % 2 == 0) {
        __syncthreads();
    } else {
        v = __shfl_xor_sync(FULL_MASK, v, 1);
    }
    out[threadIdx.x] = v;
}

// A lane exits before its warp-mates shuffle.
extern "C" __global__ void emu_exited_lane(float* out) {
    if (threadIdx.x == 3) return;
    out[threadIdx.x] = warp_sum(1.0f);
}

// Static shared memory is per block, dynamic shared memory is sized at
// launch, and atomics add up: out[b] = Σ_t (t + 1) over block b, computed
// through a shared array; total[0] += the same with atomicAdd.
extern "C" __global__ void emu_shared_and_atomics(u32 n_dyn, float* out, float* total) {
    __shared__ float stat[1024];
    EXTERN_SHARED(float, dyn);
    const u32 t = threadIdx.x + blockDim.x * threadIdx.y;
    const u32 nt = blockDim.x * blockDim.y;
    stat[t] = (float)(t + 1);
    if (t < n_dyn) dyn[t] = 0.0f;
    __syncthreads();
    if (t == 0) {
        float s = 0.0f;
        for (u32 k = 0; k < nt; ++k) s += stat[k];
        for (u32 k = 0; k < n_dyn; ++k) s += dyn[k];
        out[blockIdx.x + gridDim.x * blockIdx.y] = s;
    }
    atomicAdd(total, (float)(t + 1));
}
