/* ${pkg}.h: the C interface of the fusec AOT package '${pkg}' (fusec ${version}).
 *
 * The GPU variants of the package's kernels, callable from C and C++ through the CUDA
 * driver API: the cubins (and their PTX, for GPUs newer than every cubin) are embedded in
 * ${pkg}.c, which picks the variant for the current context's device and the arguments
 * by the package's Python loader's rules.
 *
 *   cc -c ${pkg}.c -I<CUDA include dir>      link the program with -lcuda
 *
 * Tensors are device pointers with sizes and strides (in elements). Outputs are allocated
 * by the caller: ask <kernel>_output_shape for the shape of each, allocate its bytes, set
 * .data; the call fills the rest (dtype, rank, sizes, C-contiguous strides). Calls are
 * enqueued on `stream`; a failure returns its CUresult and ${pkg}_last_error() says why
 * (including, when no variant fits, every variant built and why it does not fit: see
 * ${PKG}_NO_MATCHING_VARIANT below).
 */
#ifndef ${PKG}_H
#define ${PKG}_H

#include <stdint.h>
#include <cuda.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ${PKG}_MAX_RANK ${max_rank}

typedef enum ${pkg}_dtype {
${dtypes}
} ${pkg}_dtype;

typedef struct ${pkg}_tensor {
    CUdeviceptr data;
    ${pkg}_dtype dtype;
    int32_t rank;
    int64_t sizes[${PKG}_MAX_RANK];
    int64_t strides[${PKG}_MAX_RANK];    /* in elements */
} ${pkg}_tensor;

/* what a call returns when no variant can run it (${pkg}_last_error() then lists every
 * variant built and why it does not fit) */
#define ${PKG}_NO_MATCHING_VARIANT CUDA_ERROR_NOT_FOUND           /* the arguments fit none */
#define ${PKG}_NO_VARIANT_FOR_DEVICE CUDA_ERROR_NO_BINARY_FOR_GPU /* none runs on the GPU */

/* why the last failing call of this thread failed */
const char *${pkg}_last_error(void);

${kernels}
#ifdef __cplusplus
}
#endif

#endif
