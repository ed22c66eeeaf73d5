// cuda_emu.h — run CUDA kernel sources on the CPU, with CUDA semantics.
//
// The kernels in kernels/*.cu are compiled as C++20 with this header in
// front (build.rs does it), so the very same source that NVRTC/nvcc turns
// into PTX also runs in `cargo test` on a machine without a GPU.
//
// Model:
// - One launch runs its blocks one after another on the calling OS thread.
// - Each CUDA thread of a block is a fiber (ucontext, its own stack). A
//   fiber runs until it reaches __syncthreads() or a warp operation
//   (__shfl_*_sync, __syncwarp), where it yields to the block scheduler.
//   The scheduler releases a block barrier when every live thread waits at
//   it (exited threads count as arrived, as on Volta and later), and a warp
//   barrier when every lane of that warp waits at one.
// - A lane that exited while its warp-mates wait in a shuffle, or threads
//   waiting at different barriers with nothing left to run, is reported as
//   a launch error (never a hang).
// - `__shared__` is `static thread_local`: per OS thread, i.e. per running
//   block, and separate for test threads running launches in parallel.
//   Dynamic shared memory is reached through EXTERN_SHARED(T, name).
// - atomicAdd is a std::atomic_ref fetch_add.
// - Set ACSLEUTH_EMU_REVERSE=1 to run the threads of a block in reverse
//   order: a missing __syncthreads then changes results.
//
// Not emulated: tensor cores, inline PTX, the memory model and fences,
// texture/surface memory. Kernels here use none of them.
#pragma once
#define CUDA_EMU 1

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <ucontext.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static thread_local
#define __constant__ static const
#define __launch_bounds__(...)

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace cuda_emu {

// ---- context switching ----
// x86-64: a hand-written switch of the callee-saved registers (~10x faster
// than swapcontext, which makes a signal-mask system call per switch).
// Elsewhere, or with CUDA_EMU_UCONTEXT defined: ucontext.
#if defined(__x86_64__) && !defined(CUDA_EMU_UCONTEXT)
extern "C" void acs_emu_switch(void** save_sp, void* to_sp);
struct Ctx {
    void* sp = nullptr;
};
inline void ctx_init(Ctx& c, char* stack, size_t size, void (*entry)()) {
    // Stack as acs_emu_switch leaves it: [mxcsr|fpu cw][r15 r14 r13 r12 rbx rbp][ret = entry][0].
    auto top = (reinterpret_cast<uintptr_t>(stack) + size) & ~uintptr_t(15);
    auto* w = reinterpret_cast<uint64_t*>(top);
    w[-1] = 0;                                        // entry's (never used) return address
    w[-2] = reinterpret_cast<uint64_t>(entry);        // popped by ret: rsp ≡ 8 (mod 16) on entry
    for (int k = 3; k <= 8; ++k) w[-k] = 0;           // rbp rbx r12 r13 r14 r15
    w[-9] = 0x1F80ull | (0x037Full << 32);            // default MXCSR, x87 control word
    c.sp = &w[-9];
}
inline void ctx_switch(Ctx& from, Ctx& to) { acs_emu_switch(&from.sp, to.sp); }
#ifdef CUDA_EMU_RUNTIME
asm(R"(
    .text
    .globl acs_emu_switch
    .type acs_emu_switch,@function
acs_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size acs_emu_switch, .-acs_emu_switch
    .section .note.GNU-stack,"",@progbits
    .text
)");
#endif
#else
struct Ctx {
    ucontext_t uc;
};
inline void ctx_init(Ctx& c, char* stack, size_t size, void (*entry)()) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = size;
    c.uc.uc_link = nullptr;  // entry never returns
    makecontext(&c.uc, entry, 0);
}
inline void ctx_switch(Ctx& from, Ctx& to) { swapcontext(&from.uc, &to.uc); }
#endif

enum class State { Ready, AtBlock, AtWarp, Done };

struct Fiber {
    Ctx ctx;
    dim3 tid;
    unsigned linear = 0;
    State st = State::Ready;
};

constexpr size_t kStack = 64 * 1024;

/// State of the block being run on this OS thread.
struct Run {
    Ctx sched;
    std::vector<Fiber> fibers;
    std::vector<std::unique_ptr<char[]>> stacks;
    std::vector<uint64_t> warp_slots;  // [warps × 32] shuffle exchange
    std::vector<unsigned char> dyn_shared;
    dim3 grid, block, bidx;
    unsigned nthreads = 0;
    Fiber* cur = nullptr;
    void (*body)(void*) = nullptr;  // calls the kernel with the unpacked args
    void* body_ctx = nullptr;
    std::string error;
};

inline thread_local Run* g_run = nullptr;
inline thread_local std::string g_last_error;

inline void yield_as(State s) {
    Run* r = g_run;
    Fiber* f = r->cur;
    f->st = s;
    ctx_switch(f->ctx, r->sched);
}

inline void trampoline() {
    Run* r = g_run;
    r->body(r->body_ctx);
    r->cur->st = State::Done;
    ctx_switch(r->cur->ctx, r->sched);
    std::abort();  // a finished fiber is never resumed
}

inline unsigned lane_id() { return g_run->cur->linear & 31u; }
inline unsigned warp_id() { return g_run->cur->linear >> 5; }

inline std::string describe_states(const Run& r) {
    std::string s;
    unsigned counts[4] = {0, 0, 0, 0};
    for (const Fiber& f : r.fibers) counts[(int)f.st]++;
    s += std::to_string(counts[1]) + " at __syncthreads, " + std::to_string(counts[2]) +
         " at a warp operation, " + std::to_string(counts[3]) + " exited";
    return s;
}

/// Runs one block to completion; false on a launch error (message in r.error).
inline bool run_block(Run& r, bool reverse) {
    const unsigned n = r.nthreads;
    for (unsigned t = 0; t < n; ++t) {
        Fiber& f = r.fibers[t];
        f.st = State::Ready;
        f.linear = t;
        f.tid = dim3(t % r.block.x, (t / r.block.x) % r.block.y, t / (r.block.x * r.block.y));
        ctx_init(f.ctx, r.stacks[t].get(), kStack, trampoline);
    }
    const unsigned warps = (n + 31) / 32;
    for (;;) {
        for (unsigned k = 0; k < n; ++k) {
            unsigned t = reverse ? n - 1 - k : k;
            Fiber& f = r.fibers[t];
            if (f.st != State::Ready) continue;
            r.cur = &f;
            ctx_switch(r.sched, f.ctx);
        }
        bool any_live = false, any_warp = false, released = false;
        for (const Fiber& f : r.fibers) {
            any_live |= f.st != State::Done;
            any_warp |= f.st == State::AtWarp;
        }
        if (!any_live) return true;
        if (any_warp) {
            for (unsigned w = 0; w < warps; ++w) {
                unsigned lo = w * 32, hi = lo + 32 < n ? lo + 32 : n;
                unsigned at = 0, done = 0;
                for (unsigned t = lo; t < hi; ++t) {
                    at += r.fibers[t].st == State::AtWarp;
                    done += r.fibers[t].st == State::Done;
                }
                if (at == 0) continue;
                if (done > 0) {
                    r.error = "warp " + std::to_string(w) + ": " + std::to_string(done) +
                              " lane(s) exited while others wait in a warp operation";
                    return false;
                }
                if (at == hi - lo) {
                    for (unsigned t = lo; t < hi; ++t) r.fibers[t].st = State::Ready;
                    released = true;
                }
            }
        } else {
            // Every live thread waits at __syncthreads.
            for (Fiber& f : r.fibers)
                if (f.st == State::AtBlock) f.st = State::Ready;
            released = true;
        }
        if (!released) {
            r.error = "barrier mismatch (threads wait at different barriers): " + describe_states(r);
            return false;
        }
    }
}

/// Per-OS-thread cache of fiber stacks (reused across launches).
inline Run& thread_run() {
    static thread_local Run run;
    return run;
}

/// Launch `grid × block` threads of `body(ctx)`; 0 on success, else 1 with
/// the message in g_last_error.
inline int launch_raw(dim3 grid, dim3 block, unsigned shared, void (*body)(void*), void* ctx) {
    Run& r = thread_run();
    if (g_run != nullptr) {
        g_last_error = "nested launch from inside a kernel";
        return 1;
    }
    const unsigned long long n = (unsigned long long)block.x * block.y * block.z;
    if (n == 0 || n > 1024 || block.z > 64) {
        g_last_error = "invalid block dimensions (" + std::to_string(block.x) + ", " +
                       std::to_string(block.y) + ", " + std::to_string(block.z) + ")";
        return 1;
    }
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
        g_last_error = "invalid grid dimensions (" + std::to_string(grid.x) + ", " +
                       std::to_string(grid.y) + ", " + std::to_string(grid.z) + ")";
        return 1;
    }
    if (shared > 227 * 1024) {
        g_last_error = "dynamic shared memory " + std::to_string(shared) + " B exceeds 227 KiB";
        return 1;
    }
    r.nthreads = (unsigned)n;
    r.fibers.resize(n);
    while (r.stacks.size() < n) r.stacks.emplace_back(new char[kStack]);
    r.warp_slots.assign(((n + 31) / 32) * 32, 0);
    r.dyn_shared.assign(shared + 16, 0);
    r.grid = grid;
    r.block = block;
    r.body = body;
    r.body_ctx = ctx;
    r.error.clear();
    const char* rev = std::getenv("ACSLEUTH_EMU_REVERSE");
    const bool reverse = rev != nullptr && rev[0] == '1';
    g_run = &r;
    bool ok = true;
    for (unsigned z = 0; ok && z < grid.z; ++z)
        for (unsigned y = 0; ok && y < grid.y; ++y)
            for (unsigned x = 0; ok && x < grid.x; ++x) {
                r.bidx = dim3(x, y, z);
                ok = run_block(r, reverse);
                if (!ok)
                    r.error = "block (" + std::to_string(x) + ", " + std::to_string(y) + ", " +
                              std::to_string(z) + "): " + r.error;
            }
    g_run = nullptr;
    if (!ok) {
        g_last_error = r.error;
        return 1;
    }
    return 0;
}

template <class... A, size_t... I>
inline void call_kernel(void (*k)(A...), void** args, std::index_sequence<I...>) {
    k(*static_cast<std::remove_reference_t<A>*>(args[I])...);
}

template <class... A>
struct Bound {
    void (*k)(A...);
    void** args;
    static void call(void* self) {
        auto* b = static_cast<Bound*>(self);
        call_kernel(b->k, b->args, std::index_sequence_for<A...>{});
    }
};

/// cuLaunchKernel-shaped entry: `args[i]` points at the value of parameter i.
/// `nargs` is how many the caller passed: unpacking reads exactly as many as
/// the kernel declares, so a different count is an error, not a stray read.
template <class... A>
inline int launch(void (*k)(A...), const unsigned* grid, const unsigned* block, unsigned shared,
                  void** args, unsigned nargs) {
    if (nargs != sizeof...(A)) {
        g_last_error = std::to_string(nargs) + " arguments for " + std::to_string(sizeof...(A)) + " parameters";
        return 1;
    }
    Bound<A...> b{k, args};
    return launch_raw(dim3(grid[0], grid[1], grid[2]), dim3(block[0], block[1], block[2]), shared,
                      &Bound<A...>::call, &b);
}

inline unsigned char* dyn_shared() {
    // 16-byte aligned start, as CUDA guarantees for dynamic shared memory.
    auto p = reinterpret_cast<uintptr_t>(g_run->dyn_shared.data());
    return reinterpret_cast<unsigned char*>((p + 15) & ~uintptr_t(15));
}

template <class T>
inline T shfl(T v, unsigned src, unsigned width) {
    static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
    Run* r = g_run;
    const unsigned lane = lane_id(), w = warp_id();
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    r->warp_slots[w * 32 + lane] = bits;
    yield_as(State::AtWarp);
    const unsigned seg = lane & ~(width - 1);
    if (src >= seg + width || src < seg || w * 32 + src >= r->nthreads) src = lane;
    T out;
    bits = r->warp_slots[w * 32 + src];
    memcpy(&out, &bits, sizeof(T));
    yield_as(State::AtWarp);  // nobody overwrites a slot before all have read
    return out;
}

}  // namespace cuda_emu

#define threadIdx (::cuda_emu::g_run->cur->tid)
#define blockIdx (::cuda_emu::g_run->bidx)
#define blockDim (::cuda_emu::g_run->block)
#define gridDim (::cuda_emu::g_run->grid)
#define warpSize 32

#define EXTERN_SHARED(T, name) T* name = reinterpret_cast<T*>(::cuda_emu::dyn_shared())

inline void __syncthreads() { ::cuda_emu::yield_as(::cuda_emu::State::AtBlock); }
inline void __syncwarp(unsigned = 0xffffffffu) { ::cuda_emu::yield_as(::cuda_emu::State::AtWarp); }

template <class T>
inline T __shfl_sync(unsigned, T v, int src, int width = 32) {
    return ::cuda_emu::shfl(v, (::cuda_emu::lane_id() & ~unsigned(width - 1)) + (unsigned)src % width,
                            (unsigned)width);
}
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
    return ::cuda_emu::shfl(v, ::cuda_emu::lane_id() ^ (unsigned)mask, (unsigned)width);
}
template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
    return ::cuda_emu::shfl(v, ::cuda_emu::lane_id() + delta, (unsigned)width);
}

template <class T>
inline T atomicAdd(T* p, T v) {
    return std::atomic_ref<T>(*p).fetch_add(v);
}

inline unsigned __umulhi(unsigned a, unsigned b) {
    return (unsigned)(((unsigned long long)a * b) >> 32);
}
inline float __int_as_float(int x) {
    float f;
    memcpy(&f, &x, 4);
    return f;
}
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __fdividef(float a, float b) { return a / b; }
template <class T>
inline T __ldg(const T* p) { return *p; }
