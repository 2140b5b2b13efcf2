// Fused two-degree-of-freedom Mahalanobis comparison (camid method 2), in two passes.
//
// Layouts (row-major, contiguous; P pixels per trace, component 0 = I0 intensity, 1 = PRNU):
//   disputed      per_camera == 0: (D, 2, P)      one trace per disputed image
//                 per_camera == 1: (D, C, 2, P)   one trace per (image, camera) ("paper" mode,
//                                                  where each camera selects its own pixels)
//   fingerprints  (C, 2, P)
//   mask          (D, C, P) uint8, used when has_mask != 0: pixel p takes part for camera j
//   coef          (D, C, 6) float64: valid, inv00, inv01, inv11, 1/var_i0, 1/var_prnu
//
// Pass 1 (mahalanobis_sums_*): per (d, j) and per block, the float64 sums
//   n, sum dx, sum dy, sum dx^2, sum dy^2, sum dx*dy     with dx, dy = disputed - fingerprint
// written to partial (D, C, nblocks, 6); the host adds the blocks (deterministic, no float atomics)
// and turns them into covariances and their inverses (camid_gpu.mahalanobis.statistics.quadratic_coefficients).
//
// Pass 2 (mahalanobis_counts_*): per pixel, the C squared distances (full 2x2 form, I0 alone, PRNU
// alone) go to shared memory, then the threads of the block, each owning fixed (q, j) pairs,
// count over the tile
//   counts[d, q, j, 0] = pixels selected for both q and j
//   counts[d, q, j, 1] = ... where MD_q^2 <= MD_j^2          (the paper's "satisfied")
//   counts[d, q, j, 2] = ... where dx_q^2/var_q <= dx_j^2/var_j   (intensity alone)
//   counts[d, q, j, 3] = ... where dy_q^2/var_q <= dy_j^2/var_j   (PRNU alone)
// in registers, and add them to global memory with one atomicAdd per counter per block at the end.
// The D x C x P distances never exist in global memory. Squared distances are compared (the same
// order as the distances themselves). A camera whose covariance is unusable (valid == 0) is at
// distance +inf from every pixel, as in the generic twin.
//
// Launch: blockDim.x == MAHAL_THREADS for both kernels.
//   sums:   grid (nblocks, C, D)      partial must have room for D*C*nblocks*6 doubles
//   counts: grid (nblocks, D), dynamic shared memory tile*C*(3*8+1) bytes, C <= MAHAL_MAX_CAMERAS,
//           counts zeroed by the caller.

// MAHAL_THREADS, MAHAL_MAX_CAMERAS and MAHAL_PAIRS_PER_THREAD (pairs one thread owns,
// MAHAL_MAX_CAMERAS^2 / MAHAL_THREADS) come from camid_gpu/_cuda/loader.py (KERNEL_DEFINES) as -D options.
#if !defined(MAHAL_THREADS) || !defined(MAHAL_MAX_CAMERAS) || !defined(MAHAL_PAIRS_PER_THREAD)
#error "compile with -DMAHAL_THREADS=... -DMAHAL_MAX_CAMERAS=... -DMAHAL_PAIRS_PER_THREAD=... (camid_gpu._cuda.loader.compile_options())"
#endif
#if MAHAL_PAIRS_PER_THREAD * MAHAL_THREADS < MAHAL_MAX_CAMERAS * MAHAL_MAX_CAMERAS
#error "MAHAL_PAIRS_PER_THREAD * MAHAL_THREADS must cover MAHAL_MAX_CAMERAS^2 pairs"
#endif
// Dynamic shared memory. A macro so that the host emulation that runs this file on the CPU in the
// tests (kernels/host_emulation.h) can supply the storage.
#ifndef CAMID_DYNAMIC_SHARED
#define CAMID_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

__device__ __forceinline__ double mahal_inf()
{
    return __longlong_as_double(0x7ff0000000000000LL);
}

__device__ __forceinline__ long long mahal_trace_base(int d, int j, int C, long long P, int per_camera)
{
    // offset of component 0 of the disputed trace compared with camera j
    return per_camera ? ((long long)d * C + j) * 2 * P : (long long)d * 2 * P;
}

template <typename T>
__device__ void mahalanobis_sums_impl(const T* __restrict__ disputed, const T* __restrict__ fingerprints,
                                      const unsigned char* __restrict__ mask, double* __restrict__ partial,
                                      int C, long long P, int per_camera, int has_mask)
{
    __shared__ double red[6][MAHAL_THREADS];

    const int j = blockIdx.y;
    const int d = blockIdx.z;
    const long long tbase = mahal_trace_base(d, j, C, P, per_camera);
    const long long fbase = (long long)j * 2 * P;
    const long long mbase = ((long long)d * C + j) * P;

    double n = 0.0, sx = 0.0, sy = 0.0, sxx = 0.0, syy = 0.0, sxy = 0.0;
    const long long stride = (long long)gridDim.x * MAHAL_THREADS;
    for (long long p = (long long)blockIdx.x * MAHAL_THREADS + threadIdx.x; p < P; p += stride) {
        if (has_mask && mask[mbase + p] == 0) {
            continue;
        }
        // the difference is formed in the trace's own type, as the generic twin does
        const T tx = disputed[tbase + p] - fingerprints[fbase + p];
        const T ty = disputed[tbase + P + p] - fingerprints[fbase + P + p];
        const double dx = (double)tx;
        const double dy = (double)ty;
        n += 1.0;
        sx += dx;
        sy += dy;
        sxx += dx * dx;
        syy += dy * dy;
        sxy += dx * dy;
    }
    red[0][threadIdx.x] = n;
    red[1][threadIdx.x] = sx;
    red[2][threadIdx.x] = sy;
    red[3][threadIdx.x] = sxx;
    red[4][threadIdx.x] = syy;
    red[5][threadIdx.x] = sxy;
    __syncthreads();
    for (int half = MAHAL_THREADS / 2; half > 0; half >>= 1) {
        if (threadIdx.x < half) {
            for (int k = 0; k < 6; ++k) {
                red[k][threadIdx.x] += red[k][threadIdx.x + half];
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        double* out = partial + (((long long)d * C + j) * gridDim.x + blockIdx.x) * 6;
        for (int k = 0; k < 6; ++k) {
            out[k] = red[k][0];
        }
    }
}

template <typename T>
__device__ void mahalanobis_counts_impl(const T* __restrict__ disputed, const T* __restrict__ fingerprints,
                                        const unsigned char* __restrict__ mask, const double* __restrict__ coef,
                                        unsigned long long* __restrict__ counts, int C, long long P,
                                        int per_camera, int has_mask, int tile)
{
    // dynamic shared memory: three tile x C double arrays, then tile x C selection flags
    CAMID_DYNAMIC_SHARED(double, smem);
    double* dist_full = smem;
    double* dist_i0 = smem + (long long)tile * C;
    double* dist_prnu = smem + 2LL * tile * C;
    unsigned char* sel = (unsigned char*)(smem + 3LL * tile * C);

    const int d = blockIdx.y;
    const int tid = threadIdx.x;
    const int pairs = C * C;
    const double inf = mahal_inf();

    // Which (q, j) pairs this thread counts, and for which pixels of a tile. With few cameras
    // (C*C < threads) several groups of threads share the pairs and split the tile's pixels;
    // otherwise every thread owns up to MAHAL_PAIRS_PER_THREAD pairs and scans all pixels.
    int groups = 1;
    if (pairs < MAHAL_THREADS) {
        groups = MAHAL_THREADS / pairs;
    }
    int phase = 0;
    int my_q[MAHAL_PAIRS_PER_THREAD];
    int my_j[MAHAL_PAIRS_PER_THREAD];
    unsigned int cnt[MAHAL_PAIRS_PER_THREAD][4];
#pragma unroll
    for (int s = 0; s < MAHAL_PAIRS_PER_THREAD; ++s) {
        int k = -1;
        if (groups > 1) {
            if (s == 0 && tid < groups * pairs) {
                k = tid % pairs;
            }
        } else if (tid + s * MAHAL_THREADS < pairs) {
            k = tid + s * MAHAL_THREADS;
        }
        my_q[s] = k < 0 ? -1 : k / C;
        my_j[s] = k < 0 ? -1 : k % C;
        cnt[s][0] = 0u;
        cnt[s][1] = 0u;
        cnt[s][2] = 0u;
        cnt[s][3] = 0u;
    }
    if (groups > 1) {
        phase = tid / pairs;  // threads with phase >= groups own no pair (my_q == -1)
    }

    const long long ntiles = (P + tile - 1) / tile;
    for (long long t = blockIdx.x; t < ntiles; t += gridDim.x) {
        const long long start = t * tile;
        const int len = (int)((P - start) < (long long)tile ? (P - start) : (long long)tile);

        __syncthreads();  // the previous tile's counting is done before its distances are replaced
        for (int idx = tid; idx < tile * C; idx += MAHAL_THREADS) {
            const int pl = idx / C;
            const int j = idx - pl * C;
            unsigned char on = 0;
            double full = inf, zi = inf, zp = inf;
            if (pl < len) {
                const long long p = start + pl;
                on = has_mask ? (mask[((long long)d * C + j) * P + p] != 0) : 1;
                const double* cj = coef + ((long long)d * C + j) * 6;
                if (on && cj[0] != 0.0) {
                    const long long tb = mahal_trace_base(d, j, C, P, per_camera);
                    const long long fb = (long long)j * 2 * P;
                    const double dx = (double)(T)(disputed[tb + p] - fingerprints[fb + p]);
                    const double dy = (double)(T)(disputed[tb + P + p] - fingerprints[fb + P + p]);
                    full = cj[1] * dx * dx + 2.0 * cj[2] * dx * dy + cj[3] * dy * dy;
                    zi = dx * dx * cj[4];
                    zp = dy * dy * cj[5];
                }
            }
            // pixel-major layout: the threads of a warp read consecutive cameras j of one pixel
            dist_full[idx] = full;
            dist_i0[idx] = zi;
            dist_prnu[idx] = zp;
            sel[idx] = on;
        }
        __syncthreads();

        for (int pl = phase; pl < len; pl += groups) {
            const int base = pl * C;
#pragma unroll
            for (int s = 0; s < MAHAL_PAIRS_PER_THREAD; ++s) {
                const int q = my_q[s];
                if (q < 0) {
                    continue;
                }
                const int j = my_j[s];
                if (sel[base + q] && sel[base + j]) {
                    cnt[s][0] += 1u;
                    cnt[s][1] += dist_full[base + q] <= dist_full[base + j] ? 1u : 0u;
                    cnt[s][2] += dist_i0[base + q] <= dist_i0[base + j] ? 1u : 0u;
                    cnt[s][3] += dist_prnu[base + q] <= dist_prnu[base + j] ? 1u : 0u;
                }
            }
        }
    }

#pragma unroll
    for (int s = 0; s < MAHAL_PAIRS_PER_THREAD; ++s) {
        const int q = my_q[s];
        if (q < 0) {
            continue;
        }
        unsigned long long* out = counts + (((long long)d * C + q) * C + my_j[s]) * 4;
        for (int m = 0; m < 4; ++m) {
            if (cnt[s][m] != 0u) {
                atomicAdd(out + m, (unsigned long long)cnt[s][m]);
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(MAHAL_THREADS) mahalanobis_sums_f32(const float* __restrict__ disputed,
                                                const float* __restrict__ fingerprints,
                                                const unsigned char* __restrict__ mask,
                                                double* __restrict__ partial, int C, long long P,
                                                int per_camera, int has_mask)
{
    mahalanobis_sums_impl<float>(disputed, fingerprints, mask, partial, C, P, per_camera, has_mask);
}

extern "C" __global__ void __launch_bounds__(MAHAL_THREADS) mahalanobis_sums_f64(const double* __restrict__ disputed,
                                                const double* __restrict__ fingerprints,
                                                const unsigned char* __restrict__ mask,
                                                double* __restrict__ partial, int C, long long P,
                                                int per_camera, int has_mask)
{
    mahalanobis_sums_impl<double>(disputed, fingerprints, mask, partial, C, P, per_camera, has_mask);
}

extern "C" __global__ void __launch_bounds__(MAHAL_THREADS, 2) mahalanobis_counts_f32(const float* __restrict__ disputed,
                                                  const float* __restrict__ fingerprints,
                                                  const unsigned char* __restrict__ mask,
                                                  const double* __restrict__ coef,
                                                  unsigned long long* __restrict__ counts, int C, long long P,
                                                  int per_camera, int has_mask, int tile)
{
    mahalanobis_counts_impl<float>(disputed, fingerprints, mask, coef, counts, C, P, per_camera, has_mask, tile);
}

extern "C" __global__ void __launch_bounds__(MAHAL_THREADS, 2) mahalanobis_counts_f64(const double* __restrict__ disputed,
                                                  const double* __restrict__ fingerprints,
                                                  const unsigned char* __restrict__ mask,
                                                  const double* __restrict__ coef,
                                                  unsigned long long* __restrict__ counts, int C, long long P,
                                                  int per_camera, int has_mask, int tile)
{
    mahalanobis_counts_impl<double>(disputed, fingerprints, mask, coef, counts, C, P, per_camera, has_mask, tile);
}
