// common.cuh — shared device helpers of the acsleuth kernels.
//
// Compiled three ways: by NVRTC (sources embedded at build time), by nvcc
// (PTX embedded at build time) and as C++ under kernels/emu/cuda_emu.h (the
// CPU emulation of the twin tests). So: no standard headers, only the
// built-in CUDA math functions, and dynamic shared memory through
// EXTERN_SHARED.
#pragma once

typedef unsigned int u32;
typedef unsigned long long u64;

#ifndef CUDA_EMU
// Dynamic shared memory as a typed pointer. The raw array has a per-use
// name so kernels of one module may view it with different types.
#define EXTERN_SHARED(T, name)                                          \
    extern __shared__ __align__(16) unsigned char name##_raw_[];       \
    T* name = reinterpret_cast<T*>(name##_raw_)
#endif

#define FULL_MASK 0xffffffffu

// Activation codes (src/backend/mod.rs `Act`): 0 identity, 1 ReLU,
// 2 LeakyReLU with `slope`.
#define ACT_IDENTITY 0
#define ACT_RELU 1
#define ACT_LEAKY 2

static __device__ __forceinline__ float act_f(int act, float slope, float x) {
    if (act == ACT_RELU) return x > 0.0f ? x : 0.0f;
    if (act == ACT_LEAKY) return x > 0.0f ? x : slope * x;
    return x;
}

// Derivative at pre-activation x; at 0 the left slope (as PyTorch).
static __device__ __forceinline__ float act_df(int act, float slope, float x) {
    if (act == ACT_RELU) return x > 0.0f ? 1.0f : 0.0f;
    if (act == ACT_LEAKY) return x > 0.0f ? 1.0f : slope;
    return 1.0f;
}

// ---- Philox4x32-10, bit for bit as src/backend/rng.rs ----

struct Philox4 {
    u32 v[4];
};

static __device__ __forceinline__ Philox4 philox4x32_10(u32 c0, u32 c1, u32 c2, u32 c3, u32 k0, u32 k1) {
    const u32 M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += W0;
            k1 += W1;
        }
        const u32 hi0 = __umulhi(M0, c0), lo0 = M0 * c0;
        const u32 hi1 = __umulhi(M1, c2), lo1 = M1 * c2;
        const u32 n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
    }
    Philox4 r;
    r.v[0] = c0;
    r.v[1] = c1;
    r.v[2] = c2;
    r.v[3] = c3;
    return r;
}

// Philox block `b` of stream `seed`: counter (lo32 b, hi32 b, 0, 0), key (lo32 seed, hi32 seed).
static __device__ __forceinline__ Philox4 philox_block(u64 seed, u64 b) {
    return philox4x32_10((u32)b, (u32)(b >> 32), 0u, 0u, (u32)seed, (u32)(seed >> 32));
}

// 24 high bits centred in their cell: a uniform in (0, 1), exact in f32.
static __device__ __forceinline__ float bits_to_uniform(u32 x) {
    return ((float)(x >> 8) + 0.5f) * (1.0f / 16777216.0f);
}

// Uniform `j` of stream `seed` (word j: block j/4, lane j%4).
static __device__ __forceinline__ float philox_uniform(u64 seed, u64 j) {
    const Philox4 w = philox_block(seed, j >> 2);
    return bits_to_uniform(w.v[j & 3]);
}

// Box–Muller on a pair of words, in double (as rng.rs), rounded to f32.
static __device__ __forceinline__ void box_muller(u32 a, u32 b, float* z0, float* z1) {
    const double u1 = (double)bits_to_uniform(a);
    const double u2 = (double)bits_to_uniform(b);
    const double r = sqrt(-2.0 * log(u1));
    const double t = 6.283185307179586 * u2;
    *z0 = (float)(r * cos(t));
    *z1 = (float)(r * sin(t));
}

// Dropout multiplier of element j: 1/(1-p) when uniform_j >= p, else 0.
static __device__ __forceinline__ float dropout_factor(float p, u64 seed, u64 j) {
    if (p <= 0.0f) return 1.0f;
    return philox_uniform(seed, j) >= p ? 1.0f / (1.0f - p) : 0.0f;
}

// ---- reductions ----

static __device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

static __device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

// Sum over a 1-D block whose size is a multiple of 32 (≤ 1024); every
// thread gets the result. `scratch` holds 32 values and is reused after a
// barrier, so back-to-back calls are safe.
static __device__ __forceinline__ float block_sum(float v, float* scratch) {
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : 0.0f;
    return warp_sum(v);
}

static __device__ __forceinline__ double block_sum_d(double v, double* scratch) {
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum_d(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : 0.0;
    return warp_sum_d(v);
}

static __device__ __forceinline__ float block_max(float v, float* scratch) {
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : __int_as_float((int)0xff800000u);  // -inf
    return warp_max(v);
}

// Column-block geometry shared by the column reductions: a block of
// (32, COL_ROWS) threads owns 32 adjacent columns and walks all rows;
// threadIdx.x is the column, threadIdx.y the row phase.
#define COL_ROWS 8

// Sum over threadIdx.y of a (32, COL_ROWS) block; the result is valid in
// every thread. `scratch` holds 32·COL_ROWS doubles.
static __device__ __forceinline__ double col_block_sum(double v, double* scratch) {
    const unsigned tx = threadIdx.x, ty = threadIdx.y;
    __syncthreads();
    scratch[ty * 32 + tx] = v;
    __syncthreads();
    double s = 0.0;
#pragma unroll
    for (int k = 0; k < COL_ROWS; ++k) s += scratch[k * 32 + tx];
    return s;
}

// ---- 64 × 64 tile of row dot products (kin_argmax, mmd_pairwise) ----
// A block of 256 threads computes acc[r][c] = A[i0 + ty + 16r] · B[j0 + tx + 16c]
// for rows of A: [a_rows, cols] and B: [b_rows, cols] (row-major), reading
// both through shared memory in chunks of TILE_K columns, transposed and
// padded (TILE_PAD) so the stores are conflict-free. `as`, `bs`: TILE_K ×
// TILE_PAD floats each. Out-of-range rows and columns count as zeros.
#define TILE_N 64
#define TILE_K 32
#define TILE_PAD (TILE_N + 1)
static __device__ __forceinline__ void tile_dots_64x64(const float* __restrict__ A, u32 a_rows,
                                                       const float* __restrict__ B, u32 b_rows, u32 cols,
                                                       u32 i0, u32 j0, float* as, float* bs, u32 tid,
                                                       u32 tx, u32 ty, float acc[4][4]) {
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[r][c] = 0.0f;
    for (u32 k0 = 0; k0 < cols; k0 += TILE_K) {
        __syncthreads();  // the previous chunk has been read
#pragma unroll
        for (int l = 0; l < (TILE_N * TILE_K) / 256; ++l) {
            const u32 idx = tid + 256 * l, row = idx >> 5, kk = idx & 31u, g = k0 + kk;
            const u32 gi = i0 + row, gj = j0 + row;
            as[kk * TILE_PAD + row] = (gi < a_rows && g < cols) ? A[(u64)gi * cols + g] : 0.0f;
            bs[kk * TILE_PAD + row] = (gj < b_rows && g < cols) ? B[(u64)gj * cols + g] : 0.0f;
        }
        __syncthreads();
#pragma unroll 4
        for (int kk = 0; kk < TILE_K; ++kk) {
            float ar[4], bc[4];
#pragma unroll
            for (int r = 0; r < 4; ++r) ar[r] = as[kk * TILE_PAD + ty + 16 * r];
#pragma unroll
            for (int c = 0; c < 4; ++c) bc[c] = bs[kk * TILE_PAD + tx + 16 * c];
#pragma unroll
            for (int r = 0; r < 4; ++r)
#pragma unroll
                for (int c = 0; c < 4; ++c) acc[r][c] += ar[r] * bc[c];
        }
    }
}
