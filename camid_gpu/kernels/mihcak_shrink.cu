// Fused Mihcak shrink of a batch of wavelet (or DFT-magnitude) planes.
//
// For every plane b of coeffs (B, h, w), row-major, contiguous:
//   e      = c * c
//   m_k    = box mean of e over a (2r_k+1)^2 window, zero padded (count includes the padding)
//   v      = min over the requested windows of max(0, m_k - nv_b)
//   out    = c * nv_b / (v + nv_b)
// which is exactly the generic body of camid_gpu.prnu.residual.mihcak_shrink (the "torch twin").
//
// One block computes a TILE x TILE output tile. The block first stages e for the tile plus a
// HALO = 4 pixel border (enough for the 9x9 window) in shared memory, with zeros outside the plane
// (this *is* the zero padding), then every thread sums its 9x9 neighbourhood once, feeding the
// 3x3/5x5/7x7/9x9 sums at the same time (a neighbour at Chebyshev distance d belongs to every
// window of radius >= d).
//
// window_mask: bit r (r = 1..4) set <=> the (2r+1)x(2r+1) window takes part (3,5,7,9 -> 0x1e).
// noise_var: nv_per_plane != 0 -> noise_var[b] per plane, else noise_var[0] for all planes.
// plane_offset: index of the first plane of this launch (gridDim.z is limited to 65535).
//
// The sum is accumulated in the plane's own type: at most 81 non-negative terms, so the relative
// error stays ~1e-6 in float32, and it enters the result only through v + nv >= nv.

// MIHCAK_TILE and MIHCAK_HALO come from camid_gpu/_cuda/loader.py (KERNEL_DEFINES) as -D options: one
// source for the kernel and its launcher.
#if !defined(MIHCAK_TILE) || !defined(MIHCAK_HALO)
#error "compile with -DMIHCAK_TILE=... -DMIHCAK_HALO=... (camid_gpu._cuda.loader.compile_options())"
#endif
#define MIHCAK_SPAN (MIHCAK_TILE + 2 * MIHCAK_HALO)

template <typename T>
__device__ void mihcak_shrink_impl(const T* __restrict__ coeffs, const T* __restrict__ noise_var,
                                   T* __restrict__ out, int h, int w, int nv_per_plane,
                                   int window_mask, int plane_offset)
{
    __shared__ T energy[MIHCAK_SPAN][MIHCAK_SPAN];

    const long long plane = (long long)blockIdx.z + plane_offset;
    const long long plane_size = (long long)h * (long long)w;
    const T* src = coeffs + plane * plane_size;
    T* dst = out + plane * plane_size;

    const int tile_y = blockIdx.y * MIHCAK_TILE;
    const int tile_x = blockIdx.x * MIHCAK_TILE;
    const int tid = threadIdx.y * MIHCAK_TILE + threadIdx.x;
    const int nthreads = MIHCAK_TILE * MIHCAK_TILE;

    // stage c^2 of the tile and its halo; zero outside the plane (zero padding)
    for (int k = tid; k < MIHCAK_SPAN * MIHCAK_SPAN; k += nthreads) {
        const int sy = k / MIHCAK_SPAN;
        const int sx = k - sy * MIHCAK_SPAN;
        const int gy = tile_y + sy - MIHCAK_HALO;
        const int gx = tile_x + sx - MIHCAK_HALO;
        T e = (T)0;
        if (gy >= 0 && gy < h && gx >= 0 && gx < w) {
            const T c = src[(long long)gy * w + gx];
            e = c * c;
        }
        energy[sy][sx] = e;
    }
    __syncthreads();

    const int y = tile_y + threadIdx.y;
    const int x = tile_x + threadIdx.x;
    if (y >= h || x >= w) {
        return;  // after the only __syncthreads, so returning early is safe
    }

    // sums[r] = sum over the (2r+1)^2 window, r = 1..4 (index 0 unused)
    T sums[MIHCAK_HALO + 1];
    for (int r = 0; r <= MIHCAK_HALO; ++r) {
        sums[r] = (T)0;
    }
    for (int dy = -MIHCAK_HALO; dy <= MIHCAK_HALO; ++dy) {
        const int ady = dy < 0 ? -dy : dy;
        for (int dx = -MIHCAK_HALO; dx <= MIHCAK_HALO; ++dx) {
            const int adx = dx < 0 ? -dx : dx;
            const int ring = ady > adx ? ady : adx;  // Chebyshev distance from the centre
            const T e = energy[threadIdx.y + MIHCAK_HALO + dy][threadIdx.x + MIHCAK_HALO + dx];
            for (int r = 1; r <= MIHCAK_HALO; ++r) {
                if (r >= ring) {
                    sums[r] += e;
                }
            }
        }
    }

    const T nv = nv_per_plane ? noise_var[plane] : noise_var[0];
    bool have = false;
    T v = (T)0;
    for (int r = 1; r <= MIHCAK_HALO; ++r) {
        if (window_mask & (1 << r)) {
            const T side = (T)(2 * r + 1);
            T local = sums[r] / (side * side) - nv;
            if (local < (T)0) {
                local = (T)0;
            }
            if (!have || local < v) {
                v = local;
                have = true;
            }
        }
    }
    const T c = src[(long long)y * w + x];
    dst[(long long)y * w + x] = c * nv / (v + nv);
}

extern "C" __global__ void __launch_bounds__(MIHCAK_TILE * MIHCAK_TILE) mihcak_shrink_f32(const float* __restrict__ coeffs,
                                             const float* __restrict__ noise_var,
                                             float* __restrict__ out, int h, int w,
                                             int nv_per_plane, int window_mask, int plane_offset)
{
    mihcak_shrink_impl<float>(coeffs, noise_var, out, h, w, nv_per_plane, window_mask, plane_offset);
}

extern "C" __global__ void __launch_bounds__(MIHCAK_TILE * MIHCAK_TILE) mihcak_shrink_f64(const double* __restrict__ coeffs,
                                             const double* __restrict__ noise_var,
                                             double* __restrict__ out, int h, int w,
                                             int nv_per_plane, int window_mask, int plane_offset)
{
    mihcak_shrink_impl<double>(coeffs, noise_var, out, h, w, nv_per_plane, window_mask, plane_offset);
}
