// argmax.cu — kin pairing (Module II): exact maximum-inner-product search,
// the fused "GEMM + row argmax" over one tile of keys (twin:
// src/backend/cpu_argmax.rs `kin_argmax_merge`; host side:
// src/backend/cuda/ops_argmax.rs). No rows × keys product ever reaches
// global memory: each block keeps its rows' best key in registers.
#include "common.cuh"

#define AQ 64          // query rows per block
#define AK 64          // keys per step
#define AD 32          // embedding coordinates per shared-memory chunk
#define APAD (AQ + 1)  // padded tile row: conflict-free transposed stores

// (v, j) beats (b, i): larger product, or equal product and lower key
// index. A NaN v never beats anything, so NaN products are skipped.
static __device__ __forceinline__ bool kin_beats(float v, u32 j, float b, u32 i) {
    return v > b || (v == b && j < i);
}

// Running row argmax of q kᵀ: q: [rows, dim], k: [keys, dim] (key row j is
// global index key_base + j), best: [rows] products, best_idx: [rows] key
// indices (u32; 0xffffffff = none yet). Block: 256 threads owning AQ = 64
// query rows (grid ceil(rows / 64)); dynamic shared memory 2·AD·APAD floats
// (two transposed 64×32 chunks of q and k). Each step over AK = 64 keys
// computes the 64×64 product block in f32 (thread (ty, tx) = (tid/16,
// tid%16) holds rows ty + 16r and keys tx + 16c, r, c < 4) and folds it
// into per-thread running bests; the 16 threads of a row group (a half
// warp) are merged with shuffles at the end, and thread tx = 0 merges the
// result into best/best_idx. A block owns its rows: no atomics, and the
// order of candidates is total, so the result does not depend on
// scheduling.
extern "C" __global__ void kin_argmax(u32 rows, u32 keys, u32 dim, u32 key_base, const float* __restrict__ q,
                                      const float* __restrict__ k, float* __restrict__ best,
                                      u32* __restrict__ best_idx) {
    EXTERN_SHARED(float, tiles);
    float* qs = tiles;              // [AD][APAD] q chunk, transposed
    float* ks = tiles + AD * APAD;  // [AD][APAD] k chunk, transposed
    const u32 tid = threadIdx.x, tx = tid & 15u, ty = tid >> 4;
    const u32 i0 = blockIdx.x * AQ;
    float bv[4];
    u32 bj[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        bv[r] = __int_as_float((int)0xff800000u);  // -inf
        bj[r] = 0xffffffffu;
    }
    for (u32 j0 = 0; j0 < keys; j0 += AK) {
        float acc[4][4];
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
            for (int c = 0; c < 4; ++c) acc[r][c] = 0.0f;
        for (u32 d0 = 0; d0 < dim; d0 += AD) {
            __syncthreads();  // the previous chunk has been read
#pragma unroll
            for (int l = 0; l < (AQ * AD) / 256; ++l) {
                const u32 idx = tid + 256 * l, row = idx >> 5, dd = idx & 31u, g = d0 + dd;
                const u32 gi = i0 + row, gj = j0 + row;
                qs[dd * APAD + row] = (gi < rows && g < dim) ? q[(u64)gi * dim + g] : 0.0f;
                ks[dd * APAD + row] = (gj < keys && g < dim) ? k[(u64)gj * dim + g] : 0.0f;
            }
            __syncthreads();
#pragma unroll 4
            for (int dd = 0; dd < AD; ++dd) {
                float ar[4], bc[4];
#pragma unroll
                for (int r = 0; r < 4; ++r) ar[r] = qs[dd * APAD + ty + 16 * r];
#pragma unroll
                for (int c = 0; c < 4; ++c) bc[c] = ks[dd * APAD + tx + 16 * c];
#pragma unroll
                for (int r = 0; r < 4; ++r)
#pragma unroll
                    for (int c = 0; c < 4; ++c) acc[r][c] += ar[r] * bc[c];
            }
        }
        // Keys in ascending order per thread; the full order decides ties.
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const u32 j = j0 + tx + 16 * c;
            if (j >= keys) continue;
#pragma unroll
            for (int r = 0; r < 4; ++r)
                if (kin_beats(acc[r][c], key_base + j, bv[r], bj[r])) {
                    bv[r] = acc[r][c];
                    bj[r] = key_base + j;
                }
        }
    }
    // Merge the 16 lanes of each row group (lanes 0–15 and 16–31 of a warp
    // hold different rows; xor offsets below 16 stay inside a group).
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int o = 8; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(FULL_MASK, bv[r], o);
            const u32 oj = __shfl_xor_sync(FULL_MASK, bj[r], o);
            if (kin_beats(ov, oj, bv[r], bj[r])) {
                bv[r] = ov;
                bj[r] = oj;
            }
        }
    if (tx == 0)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const u32 i = i0 + ty + 16 * r;
            if (i < rows && kin_beats(bv[r], bj[r], best[i], best_idx[i])) {
                best[i] = bv[r];
                best_idx[i] = bj[r];
            }
        }
}
