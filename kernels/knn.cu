// knn.cu — exact k-nearest neighbours (src/model/novelty/knn.rs): folds one
// tile of query × key products into per-row sorted top-k lists kept on the
// device, so only the final lists are downloaded (twin:
// src/backend/cpu_knn.rs `knn_topk_merge`; host side:
// src/backend/cuda/ops_knn.rs).
#include "common.cuh"

// One thread per query row (block 128, grid ceil(rows / 128)): row i walks
// the tile's columns in increasing key order and insertion-sorts each
// candidate into its list dist2/index [rows, k] in global memory. k is
// small (≤ ~30) and insertions become rare once a list is full, so the
// list lives in global memory and only its current k-th distance in a
// register. prod: [rows, cols] = Q Kᵀ of the tile; q_norms: [rows] and
// k_norms: [cols] the squared norms; key column j is global key key_base +
// j. has_self != 0 leaves out key self_base + i for row i. A candidate
// enters only when strictly below the k-th distance, so equal distances
// keep the lower index (keys arrive in increasing order), exactly as the
// twin. d2 = max(qn + kn − 2p, 0): 2p is exact, so an FMA contraction of
// the subtraction rounds the same way as the twin's two operations.
extern "C" __global__ void knn_topk_merge(u32 rows, u32 cols, u32 k, u32 key_base, u32 has_self, u64 self_base,
                                          const float* __restrict__ prod, const float* __restrict__ q_norms,
                                          const float* __restrict__ k_norms, float* __restrict__ dist2,
                                          u32* __restrict__ index) {
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows) return;
    float* dr = dist2 + (u64)i * k;
    u32* ir = index + (u64)i * k;
    const float* pr = prod + (u64)i * cols;
    const float qn = q_norms[i];
    const u64 skip = has_self ? self_base + i : ~(u64)0;
    float worst = dr[k - 1];
    for (u32 j = 0; j < cols; ++j) {
        const u32 kj = key_base + j;
        if ((u64)kj == skip) continue;
        const float d2 = fmaxf(qn + k_norms[j] - 2.0f * pr[j], 0.0f);
        if (!(d2 < worst)) continue;
        u32 pos = k - 1;
        while (pos > 0 && dr[pos - 1] > d2) {
            dr[pos] = dr[pos - 1];
            ir[pos] = ir[pos - 1];
            --pos;
        }
        dr[pos] = d2;
        ir[pos] = kj;
        worst = dr[k - 1];
    }
}
