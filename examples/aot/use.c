/* Use the AOT example package from C: softmax on the GPU through the generated
 * aotkernels.h / aotkernels.c (CUDA driver API, cubins embedded), checked against a CPU
 * reference. Build the package first (python examples/aot/build.py), then:
 *
 *   P=examples/aot/dist/aotkernels/c
 *   cc -O2 -o /tmp/aot_use examples/aot/use.c $P/aotkernels.c -I$P \
 *      -I/usr/local/cuda/include -lcuda -lm && /tmp/aot_use
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "aotkernels.h"

#define CHECK(call)                                                                     \
    do {                                                                                \
        CUresult r_ = (call);                                                           \
        if (r_ != CUDA_SUCCESS) {                                                       \
            const char *name_ = NULL;                                                   \
            cuGetErrorName(r_, &name_);                                                 \
            fprintf(stderr, "%s failed: %s\n%s\n", #call, name_ ? name_ : "?",          \
                    aotkernels_last_error());                                           \
            return 1;                                                                   \
        }                                                                               \
    } while (0)

int main(void) {
    enum { M = 257, N = 61 };                      /* not multiples of 16 */
    static float x[M * N], y[M * N];
    CUdevice device;
    CUcontext ctx;
    CUdeviceptr dx, dy;
    int64_t shape[AOTKERNELS_MAX_RANK];
    double worst = 0.0;

    for (int i = 0; i < M * N; i++) x[i] = (float)sin(0.37 * i) * 3.0f;
    CHECK(cuInit(0));
    CHECK(cuDeviceGet(&device, 0));
    CHECK(cuDevicePrimaryCtxRetain(&ctx, device));
    CHECK(cuCtxSetCurrent(ctx));
    CHECK(cuMemAlloc(&dx, sizeof x));
    CHECK(cuMemcpyHtoD(dx, x, sizeof x));

    aotkernels_tensor in = {dx, AOTKERNELS_FLOAT32, 2, {M, N}, {N, 1}};
    int rank = aotkernels_softmax_output_shape(0, shape, &in);
    if (rank != 2 || shape[0] != M || shape[1] != N) {
        fprintf(stderr, "output_shape: rank %d: %s\n", rank, aotkernels_last_error());
        return 1;
    }
    CHECK(cuMemAlloc(&dy, sizeof y));
    aotkernels_tensor out = {.data = dy};
    CHECK(aotkernels_softmax(NULL, &in, &out));    /* NULL: the context's default stream */
    CHECK(cuCtxSynchronize());
    CHECK(cuMemcpyDtoH(y, dy, sizeof y));

    for (int m = 0; m < M; m++) {
        double top = -INFINITY, sum = 0.0;
        for (int n = 0; n < N; n++) top = fmax(top, x[m * N + n]);
        for (int n = 0; n < N; n++) sum += exp(x[m * N + n] - top);
        for (int n = 0; n < N; n++) {
            double want = exp(x[m * N + n] - top) / sum;
            worst = fmax(worst, fabs(y[m * N + n] - want) / (1.0 + fabs(want)));
        }
    }
    printf("softmax from C: [%d, %d], max rel error %.1e: %s\n", M, N, worst,
           worst <= 2e-5 ? "ok" : "MISMATCH");

    /* a call no variant fits (rows longer than the bound the package was built with) */
    aotkernels_tensor wide = {dx, AOTKERNELS_FLOAT32, 2, {1, 1 << 20}, {1 << 20, 1}};
    if (aotkernels_softmax(NULL, &wide, &out) != AOTKERNELS_NO_MATCHING_VARIANT) return 1;
    printf("refused as expected:\n%s\n", aotkernels_last_error());
    cuMemFree(dx);
    cuMemFree(dy);
    cuDevicePrimaryCtxRelease(device);
    return worst <= 2e-5 ? 0 : 1;
}
