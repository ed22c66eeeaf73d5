// mmd.cu — the pairwise kernel row sums of the γ_c MMD objective, the
// scorer's RBF step (`Backend::mmd_pairwise_sums`; CPU twin
// src/backend/cpu_mmd.rs `pairwise_row_sums`). Deviations δ: [N, G] f32
// row-major; the weights a, b, row norms s and the outputs u, v are double,
// as on the CPU. The O(N) finish (loss and gradient from u, v) stays on the
// host, and so does the linear kernel's exact O(N·G) form (two streamed
// passes over δ, which would cost as much to upload as to compute).
#include "common.cuh"

// Row norms s_i = ‖δ_i‖² (double), one block per cell, for the pairwise form.
extern "C" __global__ void mmd_row_norms(u32 genes, const float* __restrict__ delta, double* __restrict__ s) {
    __shared__ double scratch[32];
    const float* row = delta + (u64)blockIdx.x * genes;
    double ss = 0.0;
    for (u32 g = threadIdx.x; g < genes; g += blockDim.x) {
        const double d = row[g];
        ss += d * d;
    }
    ss = block_sum_d(ss, scratch);
    if (threadIdx.x == 0) s[blockIdx.x] = ss;
}

// The tile sizes of tile_dots_64x64 (common.cuh):
#define PT TILE_N      // cells per tile (rows i of a block, columns j of a step; 64)
#define PK TILE_K      // genes per shared-memory chunk (32)
#define PPAD TILE_PAD  // padded tile row: conflict-free transposed stores

// Pairwise form for any kernel, never storing N×N: u_i = Σ_{j≠i} k_ij a_j,
// v_i = Σ_{j≠i} k_ij b_j. Block: 256 threads owning PT = 64 cells i (grid
// ceil(N / 64)); dynamic shared memory 2·PK·PPAD floats (two transposed
// 64×32 chunks of δ_I and δ_J). Each step over a column tile J computes the
// 64×64 Gram block in f32 (thread (ty, tx) = (tid/16, tid%16) holds rows
// ty + 16r and columns tx + 16c, r, c < 4), turns it into kernel values in
// double and adds k·a_j, k·b_j into per-thread row sums; the 16 threads of
// a row group (a half warp) are summed with shuffles at the end. A block
// owns its rows: no atomics, the result does not depend on scheduling.
//
// Kernel: nbw = 0 linear (k = δ_i·δ_j); nbw = 1..4 a sum of RBFs
// k = Σ_h exp(c_h·max(s_i + s_j − 2δ_i·δ_j, 0)) with c_h = −1/(2h²).
extern "C" __global__ void mmd_pairwise(u32 n, u32 genes, int nbw, double c0, double c1, double c2, double c3,
                                        const float* __restrict__ delta, const double* __restrict__ s,
                                        const double* __restrict__ a, const double* __restrict__ b,
                                        double* __restrict__ u, double* __restrict__ v) {
    EXTERN_SHARED(float, tiles);
    float* xi = tiles;              // [PK][PPAD] δ_I chunk, transposed
    float* xj = tiles + PK * PPAD;  // [PK][PPAD] δ_J chunk, transposed
    const u32 tid = threadIdx.x, tx = tid & 15u, ty = tid >> 4;
    const u32 i0 = blockIdx.x * PT;
    double si[4], su[4], sv[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const u32 i = i0 + ty + 16 * r;
        si[r] = i < n ? s[i] : 0.0;
        su[r] = 0.0;
        sv[r] = 0.0;
    }
    for (u32 j0 = 0; j0 < n; j0 += PT) {
        float acc[4][4];
        tile_dots_64x64(delta, n, delta, n, genes, i0, j0, xi, xj, tid, tx, ty, acc);
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const u32 j = j0 + tx + 16 * c;
            if (j >= n) continue;
            const double aj = a[j], bj = b[j], sj = s[j];
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const u32 i = i0 + ty + 16 * r;
                if (i >= n || i == j) continue;
                const double dot = (double)acc[r][c];
                double k;
                if (nbw == 0) {
                    k = dot;
                } else {
                    const double d2 = fmax(si[r] + sj - 2.0 * dot, 0.0);
                    k = exp(c0 * d2);
                    if (nbw > 1) k += exp(c1 * d2);
                    if (nbw > 2) k += exp(c2 * d2);
                    if (nbw > 3) k += exp(c3 * d2);
                }
                su[r] += k * aj;
                sv[r] += k * bj;
            }
        }
    }
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int o = 8; o > 0; o >>= 1) {
            su[r] += __shfl_xor_sync(FULL_MASK, su[r], o);
            sv[r] += __shfl_xor_sync(FULL_MASK, sv[r], o);
        }
    if (tx == 0)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const u32 i = i0 + ty + 16 * r;
            if (i < n) {
                u[i] = su[r];
                v[i] = sv[r];
            }
        }
}
