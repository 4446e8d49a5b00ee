/* The six LLVM OpenMP entry points an MLIR-compiled parallel kernel calls, over GNU libgomp.
 *
 * MLIR lowers `omp.parallel` / `omp.wsloop` to calls of __kmpc_fork_call, __kmpc_push_num_threads,
 * __kmpc_global_thread_num, __kmpc_for_static_init_8u, __kmpc_for_static_fini and __kmpc_barrier
 * (the libomp / libiomp5 ABI).  PyTorch's CPU build runs its own parallel regions on GNU libgomp
 * (torch/lib/libgomp.so.1).  Two runtimes in one process means two thread teams: after an eager op
 * torch's threads spin for the next region while a kernel's team wants the same cores (issue 17:
 * 0.58x of eager on 2 cores until OMP_WAIT_POLICY=PASSIVE).  This library implements those entry
 * points with libgomp's own parallel regions, so kernels and torch share one team: the one that
 * torch already loaded (libgomp.so.1, matched by soname), or the system's where torch is absent.
 *
 * Built on first use by tilewise.ir.compiler.openmp_runtime() with `gcc -fopenmp`.
 */
#include <omp.h>
#include <stdarg.h>
#include <stdint.h>

typedef struct ident ident_t;                    /* source location: unused */
typedef void (*kmpc_micro)(int32_t *gtid, int32_t *btid, ...);

#define MAX_ARGS 16
static __thread int32_t pushed_threads = 0;      /* __kmpc_push_num_threads for the next fork */

int32_t __kmpc_global_thread_num(ident_t *loc) {
    (void)loc;
    return omp_get_thread_num();
}

void __kmpc_push_num_threads(ident_t *loc, int32_t gtid, int32_t n) {
    (void)loc; (void)gtid;
    pushed_threads = n;
}

static void call_micro(kmpc_micro f, int32_t *g, int32_t *b, int argc, void **a) {
    switch (argc) {
    case 0: f(g, b); break;
    case 1: f(g, b, a[0]); break;
    case 2: f(g, b, a[0], a[1]); break;
    case 3: f(g, b, a[0], a[1], a[2]); break;
    case 4: f(g, b, a[0], a[1], a[2], a[3]); break;
    case 5: f(g, b, a[0], a[1], a[2], a[3], a[4]); break;
    case 6: f(g, b, a[0], a[1], a[2], a[3], a[4], a[5]); break;
    case 7: f(g, b, a[0], a[1], a[2], a[3], a[4], a[5], a[6]); break;
    case 8: f(g, b, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]); break;
    case 9: f(g, b, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]); break;
    case 10: f(g, b, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9]); break;
    case 11: f(g, b, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10]); break;
    case 12: f(g, b, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11]); break;
    case 13: f(g, b, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12]); break;
    case 14: f(g, b, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13]); break;
    case 15: f(g, b, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14]); break;
    default: f(g, b, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]); break;
    }
}

/* The captured values arrive as pointer-sized varargs (MLIR passes pointers to them). */
void __kmpc_fork_call(ident_t *loc, int32_t argc, kmpc_micro microtask, ...) {
    void *args[MAX_ARGS];
    va_list ap;
    (void)loc;
    if (argc > MAX_ARGS)
        argc = MAX_ARGS;                         /* the compiler passes one aggregate: never reached */
    va_start(ap, microtask);
    for (int i = 0; i < argc; i++)
        args[i] = va_arg(ap, void *);
    va_end(ap);
    int32_t n = pushed_threads > 0 ? pushed_threads : omp_get_max_threads();
    pushed_threads = 0;
#pragma omp parallel num_threads(n)
    {
        int32_t gtid = omp_get_thread_num(), btid = gtid;
        call_micro(microtask, &gtid, &btid, argc, args);
    }
}

/* Static schedule of iterations lower..upper (inclusive, step incr > 0) over the team:
 * schedtype 34 (unchunked) gives each thread one balanced block, 33 (chunked) round-robin chunks. */
void __kmpc_for_static_init_8u(ident_t *loc, int32_t gtid, int32_t schedtype, int32_t *plastiter,
                               uint64_t *plower, uint64_t *pupper, int64_t *pstride, int64_t incr,
                               int64_t chunk) {
    (void)loc; (void)gtid;
    uint64_t nth = (uint64_t)omp_get_num_threads(), tid = (uint64_t)omp_get_thread_num();
    uint64_t lower = *plower, upper = *pupper, step = incr > 0 ? (uint64_t)incr : 1;
    uint64_t trip = upper >= lower ? (upper - lower) / step + 1 : 0;
    if (plastiter)
        *plastiter = 0;
    if (schedtype == 33 && chunk > 0) {          /* static, chunked */
        uint64_t c = (uint64_t)chunk;
        *plower = lower + tid * c * step;
        *pupper = *plower + (c - 1) * step;
        *pstride = (int64_t)(nth * c * step);
        if (plastiter && trip)
            *plastiter = ((trip - 1) / c) % nth == tid;
        return;
    }
    uint64_t small = trip / nth, extra = trip % nth;
    uint64_t first = tid * small + (tid < extra ? tid : extra);
    uint64_t count = small + (tid < extra ? 1 : 0);
    *pstride = (int64_t)(trip * step);
    if (count == 0) {                            /* no iterations: an empty range (upper < lower) */
        *plower = upper + step;
        *pupper = upper;
        return;
    }
    *plower = lower + first * step;
    *pupper = *plower + (count - 1) * step;
    if (plastiter)
        *plastiter = first + count == trip;
}

void __kmpc_for_static_fini(ident_t *loc, int32_t gtid) {
    (void)loc; (void)gtid;
}

void __kmpc_barrier(ident_t *loc, int32_t gtid) {
    (void)loc; (void)gtid;
#pragma omp barrier
}
