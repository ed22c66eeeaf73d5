// argmax.cu — kin pairing (Module II): exact maximum-inner-product search,
// the fused "GEMM + row argmax" over one tile of keys (twin:
// src/backend/cpu_argmax.rs `kin_argmax_merge`; host side:
// src/backend/cuda/ops_argmax.rs). No rows × keys product ever reaches
// global memory: each block keeps its rows' best key in registers.
#include "common.cuh"

// The tile sizes of tile_dots_64x64 (common.cuh):
#define AQ TILE_N      // query rows per block (64)
#define AK TILE_N      // keys per step (64)
#define AD TILE_K      // embedding coordinates per shared-memory chunk (32)
#define APAD TILE_PAD  // padded tile row: conflict-free transposed stores

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
        tile_dots_64x64(q, rows, k, keys, dim, i0, j0, qs, ks, tid, tx, ty, acc);
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
