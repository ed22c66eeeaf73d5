// elementwise.cu — elementwise kernels, Philox fills, dropout, L1 loss.
//
// Geometry (all): 1-D grid-stride loops, block 256, grid
// min(ceil(n / 256), 4096) (src/backend/cuda/launch.rs `elementwise`), so
// any n works with any grid. Indices are 64-bit.
#include "common.cuh"

#define GRID_STRIDE(i, n) \
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (u64)blockDim.x * gridDim.x)

// y += alpha·x
extern "C" __global__ void axpy(u64 n, float alpha, const float* __restrict__ x, float* __restrict__ y) {
    GRID_STRIDE(i, n) y[i] += alpha * x[i];
}

// x *= alpha
extern "C" __global__ void elem_scale(u64 n, float alpha, float* __restrict__ x) {
    GRID_STRIDE(i, n) x[i] *= alpha;
}

// out = a + b
extern "C" __global__ void elem_add(u64 n, const float* a, const float* b, float* out) {
    GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

// out = a ⊙ b
extern "C" __global__ void elem_mul(u64 n, const float* a, const float* b, float* out) {
    GRID_STRIDE(i, n) out[i] = a[i] * b[i];
}

// x[r, c] += bias[c] over x: [rows, cols]
extern "C" __global__ void add_bias(u64 rows, u32 cols, const float* __restrict__ bias, float* __restrict__ x) {
    const u64 n = rows * cols;
    GRID_STRIDE(i, n) x[i] += bias[i % cols];
}

// out = act(x)
extern "C" __global__ void act_forward(u64 n, int act, float slope, const float* x, float* out) {
    GRID_STRIDE(i, n) out[i] = act_f(act, slope, x[i]);
}

// dx = dy ⊙ act'(x)
extern "C" __global__ void act_backward(u64 n, int act, float slope, const float* x, const float* dy, float* dx) {
    GRID_STRIDE(i, n) dx[i] = dy[i] * act_df(act, slope, x[i]);
}

// out = 1 / (1 + exp(−x))
extern "C" __global__ void sigmoid_forward(u64 n, const float* x, float* out) {
    GRID_STRIDE(i, n) out[i] = 1.0f / (1.0f + expf(-x[i]));
}

// dx = dy ⊙ y(1 − y), y the forward output
extern "C" __global__ void sigmoid_backward(u64 n, const float* y, const float* dy, float* dx) {
    GRID_STRIDE(i, n) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

// out = |x|
extern "C" __global__ void abs_forward(u64 n, const float* x, float* out) {
    GRID_STRIDE(i, n) out[i] = fabsf(x[i]);
}

// out = sign(x), 0 at 0 (torch.sign)
extern "C" __global__ void sign_forward(u64 n, const float* x, float* out) {
    GRID_STRIDE(i, n) {
        const float v = x[i];
        out[i] = v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f);
    }
}

// y = x ⊙ mask: element i kept when uniform(seed, offset + i) >= p, scaled by 1/(1 − p)
extern "C" __global__ void dropout(u64 n, float p, u64 seed, u64 offset, const float* x, float* y) {
    GRID_STRIDE(i, n) y[i] = x[i] * dropout_factor(p, seed, offset + i);
}

// L1 loss: grad = g·sign(pred − target) with g = scale/n, and per-block
// partial sums of |pred − target| (double) into partial[blockIdx.x]; the
// host adds the partials (gridDim.x of them) and divides by n.
extern "C" __global__ void l1_loss(u64 n, float g, const float* pred, const float* target, float* grad,
                                   double* partial) {
    __shared__ double scratch[32];
    double acc = 0.0;
    GRID_STRIDE(i, n) {
        const float d = pred[i] - target[i];
        grad[i] = g * (d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : 0.0f));
        acc += (double)fabsf(d);
    }
    acc = block_sum_d(acc, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// The Philox fills: thread t of the grid-stride loop owns Philox block
// b = offset/4 + t and writes its (up to) four outputs, so each block of
// random bits is computed once. Element i takes word offset + i.

// x[i] = lo + (hi − lo)·uniform(seed, offset + i)
extern "C" __global__ void fill_uniform(u64 n, u64 seed, u64 offset, float lo, float hi, float* x) {
    const u64 first = offset >> 2, last = (offset + n + 3) >> 2;  // Philox blocks [first, last)
    GRID_STRIDE(t, last - first) {
        const u64 b = first + t;
        const Philox4 w = philox_block(seed, b);
#pragma unroll
        for (int lane = 0; lane < 4; ++lane) {
            const u64 j = 4 * b + lane;
            if (j >= offset && j < offset + n) x[j - offset] = lo + (hi - lo) * bits_to_uniform(w.v[lane]);
        }
    }
}

// x[i] = mean + sd·normal(seed, offset + i) (Box–Muller on lanes (0,1) and (2,3))
extern "C" __global__ void fill_normal(u64 n, u64 seed, u64 offset, float mean, float sd, float* x) {
    const u64 first = offset >> 2, last = (offset + n + 3) >> 2;
    GRID_STRIDE(t, last - first) {
        const u64 b = first + t;
        const Philox4 w = philox_block(seed, b);
        float z[4];
        box_muller(w.v[0], w.v[1], &z[0], &z[1]);
        box_muller(w.v[2], w.v[3], &z[2], &z[3]);
#pragma unroll
        for (int lane = 0; lane < 4; ++lane) {
            const u64 j = 4 * b + lane;
            if (j >= offset && j < offset + n) x[j - offset] = mean + sd * z[lane];
        }
    }
}

// x[i] = value
extern "C" __global__ void fill_value(u64 n, float value, float* x) {
    GRID_STRIDE(i, n) x[i] = value;
}
