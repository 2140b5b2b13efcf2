// Host emulation of the small part of CUDA that kernels/*.cu use, so that the tests can run every
// kernel on the CPU (g++ -fopenmp) against its torch twin. Not used on a GPU.
//
// Model: blocks run one after another; a block is an OpenMP team of exactly blockDim threads
// (threadIdx from the thread number), __syncthreads() is the team barrier, __shared__ storage is
// block-static (a static local, one per kernel instantiation), dynamic shared memory is one buffer of
// the launch's size, atomics are GCC atomics. The launch checks the limits a GPU enforces (threads per
// block, grid y/z, 48 KiB of dynamic shared memory without opt-in) so a geometry that a GPU would
// refuse fails here too.
//
// A translation unit includes this header, then a .cu file, then one CAMID_HOST_ENTRY(kernel) per
// kernel: ``int camid_launch_<kernel>(const unsigned grid[3], const unsigned block[3],
// unsigned long long shared_bytes, void** args)``, args as in cudaLaunchKernel (one pointer per
// parameter). It returns 0, or a CAMID_HOST_* error code.
#ifndef CAMID_HOST_EMULATION_H
#define CAMID_HOST_EMULATION_H

#include <omp.h>

#include <cstddef>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

// blockIdx/blockDim/gridDim are the same for every thread of the (one) running block
inline dim3 blockIdx, blockDim, gridDim;
inline thread_local dim3 threadIdx;

namespace camid_host {

enum : int {
    CAMID_HOST_OK = 0,
    CAMID_HOST_BAD_BLOCK = 1,    // more than 1024 threads, or a zero dimension
    CAMID_HOST_BAD_GRID = 2,     // grid y or z above 65535, or a zero dimension
    CAMID_HOST_BAD_SHARED = 3,   // more than 48 KiB of dynamic shared memory
    CAMID_HOST_NO_TEAM = 4,      // OpenMP did not give one thread per CUDA thread
};

inline std::vector<double>& dynamic_shared_storage()
{
    static std::vector<double> storage;  // double-aligned, as CUDA's dynamic shared memory
    return storage;
}

inline unsigned char* dynamic_shared() { return reinterpret_cast<unsigned char*>(dynamic_shared_storage().data()); }

template <typename... Params, std::size_t... I>
inline void invoke(void (*kernel)(Params...), void** args, std::index_sequence<I...>)
{
    kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<Params>>*>(args[I])...);
}

template <typename... Params>
inline int launch(void (*kernel)(Params...), const unsigned* grid, const unsigned* block,
                  unsigned long long shared_bytes, void** args)
{
    const unsigned long long threads = (unsigned long long)block[0] * block[1] * block[2];
    if (threads == 0 || threads > 1024 || block[2] > 64) {
        return CAMID_HOST_BAD_BLOCK;
    }
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || grid[1] > 65535 || grid[2] > 65535) {
        return CAMID_HOST_BAD_GRID;
    }
    if (shared_bytes > 48 * 1024) {
        return CAMID_HOST_BAD_SHARED;
    }
    dynamic_shared_storage().assign((shared_bytes + sizeof(double) - 1) / sizeof(double), 0.0);
    omp_set_dynamic(0);
    gridDim = dim3{grid[0], grid[1], grid[2]};
    blockDim = dim3{block[0], block[1], block[2]};
    int status = CAMID_HOST_OK;
    for (unsigned bz = 0; bz < grid[2] && status == CAMID_HOST_OK; ++bz) {
        for (unsigned by = 0; by < grid[1] && status == CAMID_HOST_OK; ++by) {
            for (unsigned bx = 0; bx < grid[0] && status == CAMID_HOST_OK; ++bx) {
                blockIdx = dim3{bx, by, bz};
#pragma omp parallel num_threads((int)threads)
                {
                    if ((unsigned long long)omp_get_num_threads() != threads) {
#pragma omp single
                        status = CAMID_HOST_NO_TEAM;
                    } else {
                        const unsigned t = (unsigned)omp_get_thread_num();
                        threadIdx = dim3{t % block[0], (t / block[0]) % block[1], t / (block[0] * block[1])};
                        invoke(kernel, args, std::index_sequence_for<Params...>{});
                    }
                }
            }
        }
    }
    return status;
}

}  // namespace camid_host

inline void __syncthreads()
{
#pragma omp barrier
}

inline unsigned long long atomicAdd(unsigned long long* address, unsigned long long value)
{
    return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
}

inline double __longlong_as_double(long long bits)
{
    double out;
    std::memcpy(&out, &bits, sizeof(out));
    return out;
}

#define CAMID_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(camid_host::dynamic_shared())

#define CAMID_HOST_ENTRY(kernel)                                                                       \
    extern "C" int camid_launch_##kernel(const unsigned* grid, const unsigned* block,                  \
                                         unsigned long long shared_bytes, void** args)                 \
    {                                                                                                  \
        return camid_host::launch(kernel, grid, block, shared_bytes, args);                            \
    }

#endif  // CAMID_HOST_EMULATION_H
