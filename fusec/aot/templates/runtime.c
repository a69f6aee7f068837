/* The C dispatch of a fusec AOT package over its GPU variants (CUDA driver API).
 *
 * `fusec build` pastes this file into <package>.c after defining fc_tensor (the package's
 * tensor type), FC_MAX_SLOTS, FC_MAX_SYMBOLS, FC_MAX_LAUNCHES, FC_MAX_OUTPUTS,
 * FC_MAX_EQUAL (sizes in one group declared equal), FC_PACKAGE (its name), FC_ERROR_FN
 * (its error function), FC_NO_MATCHING_VARIANT and FC_NO_VARIANT_FOR_DEVICE (its error
 * codes), FC_NDTYPES and fc_dtype_names, and before the package's tables (variants,
 * rules, formulas, embedded cubins and PTX) and its per-kernel functions. It does what the
 * Python loader (_fusec_runtime) does, from the same data and by the same rules:
 *
 *   - pick the variant (fc_choose, which calls no driver function): the cubins that run on
 *     the current context's device (same major, minor >= the cubin's; sm_XYa only on
 *     sm_XY) or, on a device none of the kernel's cubins runs on, the PTX of the archs up
 *     to the device's (not sm_XYa; the driver compiles it); per signature the closest arch;
 *     the first in build order whose rules the call meets (dtypes, ranks, sizes, strides,
 *     alignment, int ranges, constexpr values, equal dims, power-of-two buckets). When
 *     none does, FC_NO_MATCHING_VARIANT (FC_NO_VARIANT_FOR_DEVICE when nothing built runs
 *     on the device) and a message listing every variant built and why it does not fit;
 *   - fill the outputs' shapes and strides (the caller allocates them: see
 *     <kernel>_output_shape), pack the 8-byte launch slots, load the cubin (or PTX) into
 *     the current context once (cuModuleLoadData), launch every device function on the
 *     given stream, with global scratch from cuMemAllocAsync / cuMemFreeAsync on it and the
 *     dynamic shared memory it asks for (a function asking for more than the 48 KB a block
 *     gets by default is opted in to it once, when its module is loaded).
 *
 * Every function here is static: packages linked into one program never collide. Errors
 * return a CUresult and leave a message for FC_ERROR_FN() (per thread). */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { FC_CONST, FC_SYM, FC_ADD, FC_MUL, FC_FLOORDIV, FC_MOD, FC_POW, FC_MAX, FC_MIN,
       FC_NEG };
typedef struct { int32_t op; int64_t value; } fc_token;
typedef struct { const fc_token *tokens; int32_t count; } fc_expr;

/* parameter kinds: runtime tensors and scalars, constexpr values by JSON type */
enum { FC_TENSOR_PARAM, FC_INT_PARAM, FC_FLOAT_PARAM, FC_BOOL_PARAM, FC_CONST_INT,
       FC_CONST_FLOAT, FC_CONST_BOOL, FC_CONST_STR, FC_CONST_NONE };

typedef struct { int64_t size; int64_t multiple_of; int64_t max; } fc_dim_rule; /* -1: none */
typedef struct {
    int32_t kind;
    int32_t dtype, rank, aligned16;        /* tensors */
    const fc_dim_rule *dims;
    uint32_t unit_stride, stride16;        /* bit d: assumed for dim d */
    int64_t min, max, multiple_of;         /* ints */
    int64_t ivalue;                        /* constexpr int / bool */
    double fvalue;                         /* constexpr float */
    const char *svalue;                    /* constexpr str */
} fc_param_rule;
typedef struct { int32_t param, dim; } fc_dim_ref;
typedef struct { const fc_dim_ref *dims; int32_t count; } fc_equal_rule;
typedef struct { fc_expr expr; const char *text; int64_t min, max; } fc_guard;
typedef struct { int32_t arg, dim; } fc_symbol;     /* a runtime arg's size, or (dim < 0) int */
typedef struct { int32_t arg, slot, rank; } fc_tensor_slot;  /* arg >= runtime: an output */
typedef struct { int32_t arg, slot, kind; } fc_scalar_slot;
typedef struct { int32_t slot; fc_expr expr; } fc_size_slot;
typedef struct { int32_t slot; fc_expr extent; int64_t block; } fc_grid_dim;
typedef struct {
    const char *function;
    const fc_grid_dim *grid;
    int32_t ndims, scratch_slot;
    int64_t scratch_bytes;                 /* per program */
    int32_t shared_bytes;                  /* dynamic shared memory per block, 0: none */
} fc_launch;
typedef struct { int32_t dtype, rank; const fc_expr *shape; } fc_alloc;

typedef struct {
    const char *id, *signature;
    int32_t arch_major, arch_minor, arch_specific;  /* sm_90a: 9, 0, 1 */
    int32_t rank;                                   /* signature's build order */
    const fc_param_rule *rules;
    const fc_equal_rule *equal; int32_t nequal;
    const fc_guard *guards; int32_t nguards;
    const fc_symbol *symbols; int32_t nsymbols;
    const fc_tensor_slot *tensors; int32_t ntensors;
    const fc_scalar_slot *scalars; int32_t nscalars;
    const fc_size_slot *sizes; int32_t nsizes;
    const fc_launch *launches; int32_t nlaunches;
    const fc_alloc *allocs; int32_t nallocs;
    int32_t nslots, threads;
    const unsigned char *image; size_t image_size;  /* the cubin */
    const char *ptx; size_t ptx_size;               /* its PTX (NUL-terminated), or NULL */
} fc_variant;

#define FC_MAX_CONTEXTS 8
typedef struct {                                     /* a variant's modules, per context */
    int32_t count;
    CUcontext contexts[FC_MAX_CONTEXTS];
    CUmodule modules[FC_MAX_CONTEXTS];
    CUfunction functions[FC_MAX_CONTEXTS][FC_MAX_LAUNCHES];
} fc_loaded;

typedef struct {
    const char *name;
    int32_t nparams, nruntime;
    const char *const *param_names;
    const int32_t *runtime_params;                   /* param index of each runtime arg */
    const fc_variant *variants; int32_t nvariants;
    fc_loaded *loaded;                               /* one per variant */
} fc_kernel;

typedef struct { const fc_tensor *tensor; int64_t i; double f; const char *s; } fc_value;

static _Thread_local char fc_error[4096];
static pthread_mutex_t fc_load_lock = PTHREAD_MUTEX_INITIALIZER;

const char *FC_ERROR_FN(void) { return fc_error; }

static CUresult fc_fail(CUresult code, const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    vsnprintf(fc_error, sizeof fc_error, format, ap);
    va_end(ap);
    return code;
}

static void fc_append(const char *format, ...) {
    size_t used = strlen(fc_error);
    va_list ap;
    va_start(ap, format);
    vsnprintf(fc_error + used, sizeof fc_error - used, format, ap);
    va_end(ap);
}

static CUresult fc_driver(CUresult result, const char *kernel, const char *what) {
    const char *name = NULL, *text = NULL;
    if (result == CUDA_SUCCESS) return result;
    cuGetErrorName(result, &name);
    cuGetErrorString(result, &text);
    return fc_fail(result, "kernel '%s': %s failed: %s: %s", kernel, what,
                   name ? name : "?", text ? text : "?");
}

/* -- size formulas ------------------------------------------------------------------------ */
static int64_t fc_floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static int64_t fc_floormod(int64_t a, int64_t b) {
    int64_t r = a % b;
    return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}

/* 0 and *out set, or -1 (division by zero, negative power, malformed) */
static int fc_eval(const fc_expr *e, const int64_t *env, int64_t *out) {
    int64_t stack[64];
    int32_t top = 0;
    for (int32_t i = 0; i < e->count; i++) {
        const fc_token *t = &e->tokens[i];
        if (t->op == FC_CONST || t->op == FC_SYM) {
            if (top == 64) return -1;
            stack[top++] = t->op == FC_CONST ? t->value : env[t->value];
            continue;
        }
        if (t->op == FC_NEG) {
            if (top < 1) return -1;
            stack[top - 1] = -stack[top - 1];
            continue;
        }
        if (top < 2) return -1;
        int64_t b = stack[--top], a = stack[top - 1], r = 1;
        switch (t->op) {
        case FC_ADD: r = a + b; break;
        case FC_MUL: r = a * b; break;
        case FC_FLOORDIV: if (b == 0) return -1; r = fc_floordiv(a, b); break;
        case FC_MOD: if (b == 0) return -1; r = fc_floormod(a, b); break;
        case FC_POW: if (b < 0) return -1; for (int64_t k = 0; k < b; k++) r *= a; break;
        case FC_MAX: r = a > b ? a : b; break;
        case FC_MIN: r = a < b ? a : b; break;
        default: return -1;
        }
        stack[top - 1] = r;
    }
    if (top != 1) return -1;
    *out = stack[0];
    return 0;
}

/* -- variant choice ----------------------------------------------------------------------- */
/* the rules of the Python loader (runtime/cuda.py runs_on, ptx_runs_on, preference) */
static int fc_runs_on(const fc_variant *v, int major, int minor) {
    if (v->arch_specific) return v->arch_major == major && v->arch_minor == minor;
    return v->arch_major == major && v->arch_minor <= minor;
}

/* the driver compiles PTX for sm_XY on any device of compute capability >= XY */
static int fc_ptx_runs_on(const fc_variant *v, int major, int minor) {
    return v->ptx && !v->arch_specific
        && v->arch_major * 10 + v->arch_minor <= major * 10 + minor;
}

/* larger is better among the variants that run on a device */
static int fc_preference(const fc_variant *v, int major, int minor) {
    int exact = v->arch_major == major && v->arch_minor == minor;
    return exact * 100000 + v->arch_specific * 10000 + v->arch_major * 100 + v->arch_minor;
}

/* whether the device runs the kernel's cubins (else the PTX fallback applies) */
static int fc_any_cubin_runs(const fc_kernel *k, int major, int minor) {
    for (int32_t i = 0; i < k->nvariants; i++)
        if (fc_runs_on(&k->variants[i], major, minor)) return 1;
    return 0;
}

static int fc_can_run(const fc_variant *v, int use_ptx, int major, int minor) {
    return use_ptx ? fc_ptx_runs_on(v, major, minor) : fc_runs_on(v, major, minor);
}

/* among the variants of its signature that can run, v has the best arch */
static int fc_is_best_arch(const fc_kernel *k, const fc_variant *v, int use_ptx, int major,
                           int minor) {
    for (int32_t i = 0; i < k->nvariants; i++) {
        const fc_variant *o = &k->variants[i];
        if (o->rank == v->rank && fc_can_run(o, use_ptx, major, minor)
            && fc_preference(o, major, minor) > fc_preference(v, major, minor))
            return 0;
    }
    return 1;
}

static const fc_tensor *fc_runtime_tensor(const fc_kernel *k, const fc_value *params,
                                          int32_t arg) {
    return params[k->runtime_params[arg]].tensor;
}

static void fc_bind(const fc_kernel *k, const fc_variant *v, const fc_value *params,
                    int64_t *env) {
    for (int32_t i = 0; i < v->nsymbols; i++) {
        const fc_symbol *s = &v->symbols[i];
        env[i] = s->dim < 0 ? params[k->runtime_params[s->arg]].i
                            : fc_runtime_tensor(k, params, s->arg)->sizes[s->dim];
    }
}

static const char *fc_dtype_name(int32_t code) {
    return code >= 0 && code < FC_NDTYPES ? fc_dtype_names[code] : "(not a dtype)";
}

/* 0: fits; 1: a rule fails; 2: only a guard fails. why: the reason, worded as the Python
   loader words it (runtime/rules.py) */
static int fc_mismatch(const fc_kernel *k, const fc_variant *v, const fc_value *params,
                       int64_t *env, char *why, size_t n) {
    for (int32_t p = 0; p < k->nparams; p++) {
        const fc_param_rule *r = &v->rules[p];
        const fc_value *a = &params[p];
        const char *name = k->param_names[p];
        switch (r->kind) {
        case FC_TENSOR_PARAM: {
            const fc_tensor *t = a->tensor;
            int empty = 0;
            if (!t) { snprintf(why, n, "%s is NULL, built for a tensor", name); return 1; }
            if ((int32_t)t->dtype != r->dtype) {
                snprintf(why, n, "%s has dtype %s, built for %s", name,
                         fc_dtype_name((int32_t)t->dtype), fc_dtype_name(r->dtype));
                return 1;
            }
            if (t->rank != r->rank) {
                snprintf(why, n, "%s has rank %d, built for rank %d", name, t->rank,
                         r->rank);
                return 1;
            }
            for (int32_t d = 0; d < t->rank; d++) empty |= t->sizes[d] == 0;
            for (int32_t d = 0; d < t->rank; d++) {
                const fc_dim_rule *dr = &r->dims[d];
                int64_t size = t->sizes[d], stride = t->strides[d];
                if (dr->size >= 0 && size != dr->size) {
                    snprintf(why, n, "%s has size %lld in dim %d, built for %lld", name,
                             (long long)size, d, (long long)dr->size);
                    return 1;
                }
                if (size % dr->multiple_of) {
                    snprintf(why, n, "%s has size %lld in dim %d, built for multiples of "
                             "%lld", name, (long long)size, d, (long long)dr->multiple_of);
                    return 1;
                }
                if (dr->max >= 0 && size > dr->max) {
                    snprintf(why, n, "%s has size %lld in dim %d, built for at most %lld",
                             name, (long long)size, d, (long long)dr->max);
                    return 1;
                }
                if ((r->unit_stride >> d & 1) && stride != 1 && size > 1 && !empty) {
                    snprintf(why, n, "%s has stride %lld in dim %d, built for unit stride",
                             name, (long long)stride, d);
                    return 1;
                }
                if ((r->stride16 >> d & 1) && stride % 16 && size > 1 && !empty) {
                    snprintf(why, n, "%s has stride %lld in dim %d, built for multiples of"
                             " 16", name, (long long)stride, d);
                    return 1;
                }
            }
            if (r->aligned16 && t->data % 16) {
                snprintf(why, n, "%s's data pointer is not 16-byte aligned (built for "
                         "aligned data)", name);
                return 1;
            }
            break;
        }
        case FC_INT_PARAM:
            if (a->i < r->min || a->i > r->max) {
                snprintf(why, n, "%s = %lld is outside [%lld, %lld]", name, (long long)a->i,
                         (long long)r->min, (long long)r->max);
                return 1;
            }
            if (a->i % r->multiple_of) {
                snprintf(why, n, "%s = %lld is not a multiple of %lld", name,
                         (long long)a->i, (long long)r->multiple_of);
                return 1;
            }
            break;
        case FC_CONST_INT: case FC_CONST_BOOL:
            if (a->i != r->ivalue) {
                snprintf(why, n, "%s = %lld (constexpr), built for %lld", name,
                         (long long)a->i, (long long)r->ivalue);
                return 1;
            }
            break;
        case FC_CONST_FLOAT:
            if (a->f != r->fvalue) {
                snprintf(why, n, "%s = %.17g (constexpr), built for %.17g", name, a->f,
                         r->fvalue);
                return 1;
            }
            break;
        case FC_CONST_STR:
            if (!a->s || strcmp(a->s, r->svalue) != 0) {
                snprintf(why, n, "%s = %s%s%s (constexpr), built for '%s'", name,
                         a->s ? "'" : "", a->s ? a->s : "NULL", a->s ? "'" : "", r->svalue);
                return 1;
            }
            break;
        case FC_CONST_NONE:
            if (a->s) {
                snprintf(why, n, "%s = '%s' (constexpr), built for None", name, a->s);
                return 1;
            }
            break;
        default:
            break;                         /* floats and bools: the C types say it all */
        }
    }
    for (int32_t g = 0; g < v->nequal; g++) {
        const fc_equal_rule *e = &v->equal[g];
        int64_t sizes[FC_MAX_EQUAL], first;
        int32_t distinct = 0, used = 0;
        first = params[e->dims[0].param].tensor->sizes[e->dims[0].dim];
        for (int32_t i = 0; i < e->count; i++) {
            int64_t size = params[e->dims[i].param].tensor->sizes[e->dims[i].dim];
            int32_t at = 0;
            distinct |= size != first;
            while (at < used && sizes[at] < size) at++;          /* sorted, no repeats */
            if (at < used && sizes[at] == size) continue;
            memmove(&sizes[at + 1], &sizes[at], sizeof(int64_t) * (size_t)(used - at));
            sizes[at] = size;
            used++;
        }
        if (distinct) {
            size_t len = (size_t)snprintf(why, n, "sizes declared equal differ (");
            for (int32_t i = 0; i < e->count && len < n; i++)
                len += (size_t)snprintf(why + len, n - len, "%s%s dim %d", i ? ", " : "",
                                        k->param_names[e->dims[i].param], e->dims[i].dim);
            for (int32_t i = 0; i < used && len < n; i++)
                len += (size_t)snprintf(why + len, n - len, "%s%lld", i ? ", " : ": [",
                                        (long long)sizes[i]);
            if (len < n) snprintf(why + len, n - len, "])");
            return 1;
        }
    }
    fc_bind(k, v, params, env);
    for (int32_t g = 0; g < v->nguards; g++) {
        int64_t value;
        if (fc_eval(&v->guards[g].expr, env, &value) != 0) {
            snprintf(why, n, "%s has no value for these arguments", v->guards[g].text);
            return 2;
        }
        if (value < v->guards[g].min || value > v->guards[g].max) {
            snprintf(why, n, "%s = %lld is outside the built buckets", v->guards[g].text,
                     (long long)value);
            return 2;
        }
    }
    return 0;
}

/* why v, which the device cannot run (or not as well as another), does not fit */
static void fc_not_candidate(const fc_variant *v, int use_ptx, int major, int minor,
                             char *why, size_t n) {
    if (!use_ptx && fc_runs_on(v, major, minor))
        snprintf(why, n, "the cubin of a closer arch is used on this sm_%d%d device", major,
                 minor);
    else if (use_ptx && fc_ptx_runs_on(v, major, minor))
        snprintf(why, n, "the PTX of a closer arch is used on this sm_%d%d device", major,
                 minor);
    else
        snprintf(why, n, "does not run on this sm_%d%d device", major, minor);
}

static int fc_same_group(const fc_variant *a, const fc_variant *b) {
    return a->rank == b->rank && a->arch_major == b->arch_major
        && a->arch_minor == b->arch_minor && a->arch_specific == b->arch_specific;
}

/* the error listing every variant built (one line per arch and signature, buckets folded)
   and why it does not fit: the Python loader's NoMatchingVariantError lines */
static CUresult fc_no_variant(const fc_kernel *k, const fc_value *params, int use_ptx,
                              int major, int minor, int any) {
    char why[512], first_why[512];
    int64_t env[FC_MAX_SYMBOLS + 1];
    CUresult code = any ? FC_NO_MATCHING_VARIANT : FC_NO_VARIANT_FOR_DEVICE;
    fc_fail(code, "%s(): no variant of package '%s' fits these arguments on this sm_%d%d "
            "device%s\n  built variants (target: signature -- why it does not fit):",
            k->name, FC_PACKAGE, major, minor,
            any ? ":" : " (nothing built runs on it):");
    for (int32_t i = 0; i < k->nvariants; i++) {
        const fc_variant *v = &k->variants[i];
        int32_t dup = 0, count = 0, found = 0;
        for (int32_t j = 0; j < i; j++) dup |= fc_same_group(&k->variants[j], v);
        if (dup) continue;
        for (int32_t j = i; j < k->nvariants; j++) {
            const fc_variant *o = &k->variants[j];
            int kind = 1;
            if (!fc_same_group(o, v)) continue;
            count++;
            if (found) continue;
            if (fc_can_run(o, use_ptx, major, minor)
                && fc_is_best_arch(k, o, use_ptx, major, minor))
                kind = fc_mismatch(k, o, params, env, why, sizeof why);
            else
                fc_not_candidate(o, use_ptx, major, minor, why, sizeof why);
            if (count == 1) memcpy(first_why, why, sizeof why);
            found = kind != 2;                 /* the first reason that is not a guard's */
            if (found) memcpy(first_why, why, sizeof why);
        }
        if (count > 1)
            fc_append("\n    sm_%d%d%s: %s (%d buckets) -- %s", v->arch_major, v->arch_minor,
                      v->arch_specific ? "a" : "", v->signature, count, first_why);
        else
            fc_append("\n    sm_%d%d%s: %s -- %s", v->arch_major, v->arch_minor,
                      v->arch_specific ? "a" : "", v->signature, first_why);
    }
    return code;
}

/* The variant that runs a call on a device of compute capability major.minor, picked as
   the Python loader picks (runtime/kernel.py): the cubins that run on the device or, when
   none of the kernel's does, the PTX of the archs up to the device's; of those, per
   signature, the best arch; the first in build order whose rules the call meets.
   CUDA_SUCCESS with *index, *use_ptx and the call's size symbols in env, or the error
   code and message of fc_no_variant. Calls no driver function. */
static CUresult fc_choose(const fc_kernel *k, const fc_value *params, int major, int minor,
                          int64_t *env, int32_t *index, int *use_ptx) {
    char why[512];
    int any = 0;
    *use_ptx = !fc_any_cubin_runs(k, major, minor);
    for (int32_t i = 0; i < k->nvariants; i++) {
        const fc_variant *v = &k->variants[i];
        if (!fc_can_run(v, *use_ptx, major, minor)
            || !fc_is_best_arch(k, v, *use_ptx, major, minor))
            continue;
        any = 1;
        if (fc_mismatch(k, v, params, env, why, sizeof why) == 0) {
            *index = i;
            return CUDA_SUCCESS;
        }
    }
    return fc_no_variant(k, params, *use_ptx, major, minor, any);
}

static CUresult fc_device_arch(const char *kernel, int *major, int *minor) {
    CUcontext ctx = NULL;
    CUdevice dev;
    CUresult r = cuCtxGetCurrent(&ctx);
    if (r != CUDA_SUCCESS) return fc_driver(r, kernel, "cuCtxGetCurrent");
    if (!ctx)
        return fc_fail(CUDA_ERROR_INVALID_CONTEXT, "kernel '%s': no current CUDA context "
                       "(make one current, e.g. the device's primary context)", kernel);
    if ((r = cuCtxGetDevice(&dev)) != CUDA_SUCCESS)
        return fc_driver(r, kernel, "cuCtxGetDevice");
    r = cuDeviceGetAttribute(major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
    if (r == CUDA_SUCCESS)
        r = cuDeviceGetAttribute(minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
    return fc_driver(r, kernel, "cuDeviceGetAttribute(compute capability)");
}

/* the variant for this call on the current context's device (fc_choose) */
static CUresult fc_select(const fc_kernel *k, const fc_value *params, int64_t *env,
                          int32_t *index, int *use_ptx) {
    int major, minor;
    CUresult r = fc_device_arch(k->name, &major, &minor);
    if (r != CUDA_SUCCESS) return r;
    return fc_choose(k, params, major, minor, env, index, use_ptx);
}

/* -- loading and launching ---------------------------------------------------------------- */
/* launch's function in module m, allowed the dynamic shared memory it asks for: past the
   48 KB default a function must be opted in (once; the Python loader does the same) */
static CUresult fc_get_function(const fc_kernel *k, CUmodule m, const fc_launch *launch,
                                CUfunction *f) {
    char what[256];
    CUresult r = cuModuleGetFunction(f, m, launch->function);
    if (r != CUDA_SUCCESS) return fc_driver(r, k->name, "cuModuleGetFunction");
    if (launch->shared_bytes <= 0) return CUDA_SUCCESS;
    r = cuFuncSetAttribute(*f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                           launch->shared_bytes);
    if (r == CUDA_SUCCESS) return r;
    snprintf(what, sizeof what, "cuFuncSetAttribute(%s, max dynamic shared = %d)",
             launch->function, (int)launch->shared_bytes);
    return fc_driver(r, k->name, what);
}

/* the variant's functions in the current context, its module loaded there once: the
   cubin, or (use_ptx) its PTX, which the driver compiles for the device */
static CUresult fc_functions(const fc_kernel *k, int32_t vi, int use_ptx, CUfunction **out) {
    const fc_variant *v = &k->variants[vi];
    fc_loaded *loaded = &k->loaded[vi];
    CUcontext ctx = NULL;
    CUresult r = cuCtxGetCurrent(&ctx);
    if (r != CUDA_SUCCESS) return fc_driver(r, k->name, "cuCtxGetCurrent");
    pthread_mutex_lock(&fc_load_lock);
    for (int32_t c = 0; c < loaded->count; c++)
        if (loaded->contexts[c] == ctx) {
            *out = loaded->functions[c];
            pthread_mutex_unlock(&fc_load_lock);
            return CUDA_SUCCESS;
        }
    if (loaded->count == FC_MAX_CONTEXTS) {
        pthread_mutex_unlock(&fc_load_lock);
        return fc_fail(CUDA_ERROR_OUT_OF_MEMORY, "kernel '%s': loaded into more than %d "
                       "contexts", k->name, FC_MAX_CONTEXTS);
    }
    int32_t c = loaded->count;
    r = cuModuleLoadData(&loaded->modules[c],
                         use_ptx ? (const void *)v->ptx : (const void *)v->image);
    if (r != CUDA_SUCCESS) {
        pthread_mutex_unlock(&fc_load_lock);
        return fc_driver(r, k->name, "cuModuleLoadData");
    }
    for (int32_t l = 0; l < v->nlaunches; l++) {
        r = fc_get_function(k, loaded->modules[c], &v->launches[l], &loaded->functions[c][l]);
        if (r != CUDA_SUCCESS) {                   /* the message is set */
            cuModuleUnload(loaded->modules[c]);
            pthread_mutex_unlock(&fc_load_lock);
            return r;
        }
    }
    loaded->contexts[c] = ctx;
    loaded->count = c + 1;
    *out = loaded->functions[c];
    pthread_mutex_unlock(&fc_load_lock);
    return CUDA_SUCCESS;
}

static CUresult fc_fill_outputs(const fc_kernel *k, const fc_variant *v, const int64_t *env,
                                fc_tensor *outputs) {
    for (int32_t o = 0; o < v->nallocs; o++) {
        const fc_alloc *a = &v->allocs[o];
        fc_tensor *t = &outputs[o];
        int64_t stride = 1;
        t->dtype = a->dtype;
        t->rank = a->rank;
        for (int32_t d = 0; d < a->rank; d++)
            if (fc_eval(&a->shape[d], env, &t->sizes[d]) != 0 || t->sizes[d] < 0)
                return fc_fail(CUDA_ERROR_INVALID_VALUE, "kernel '%s': output %d has no "
                               "valid shape for these arguments", k->name, o);
        for (int32_t d = a->rank - 1; d >= 0; d--) {
            t->strides[d] = stride;
            stride *= t->sizes[d] > 1 ? t->sizes[d] : 1;
        }
    }
    return CUDA_SUCCESS;
}

/* outputs are fresh allocations to the compiled code: set (unless empty), 16-byte aligned */
static CUresult fc_check_outputs(const fc_kernel *k, const fc_variant *v,
                                 const fc_tensor *outputs) {
    for (int32_t o = 0; o < v->nallocs; o++) {
        int64_t numel = 1;
        for (int32_t d = 0; d < outputs[o].rank; d++) numel *= outputs[o].sizes[d];
        if ((numel > 0 && !outputs[o].data) || outputs[o].data % 16)
            return fc_fail(CUDA_ERROR_INVALID_VALUE, "kernel '%s': output %d needs device "
                           "memory at a 16-byte aligned address (cuMemAlloc gives that)",
                           k->name, o);
    }
    return CUDA_SUCCESS;
}

static CUresult fc_call(const fc_kernel *k, const fc_value *params, fc_tensor *outputs,
                        CUstream stream) {
    int64_t env[FC_MAX_SYMBOLS + 1], vals[FC_MAX_SLOTS + 1];
    void *ptrs[FC_MAX_SLOTS + 1];
    int64_t programs[FC_MAX_LAUNCHES] = {0};   /* initialized: gcc -O2 -Wall cannot see */
    CUfunction *fns = NULL;                    /* every path that reads them sets them */
    int32_t vi;
    int use_ptx;
    CUresult r = fc_select(k, params, env, &vi, &use_ptx);
    if (r != CUDA_SUCCESS) return r;
    const fc_variant *v = &k->variants[vi];
    if (v->nallocs && !outputs)
        return fc_fail(CUDA_ERROR_INVALID_VALUE, "kernel '%s' has %d output(s): pass them",
                       k->name, v->nallocs);
    if ((r = fc_fill_outputs(k, v, env, outputs)) != CUDA_SUCCESS) return r;
    if ((r = fc_check_outputs(k, v, outputs)) != CUDA_SUCCESS) return r;
    if ((r = fc_functions(k, vi, use_ptx, &fns)) != CUDA_SUCCESS) return r;
    memset(vals, 0, sizeof vals);
    for (int32_t i = 0; i < v->ntensors; i++) {
        const fc_tensor_slot *s = &v->tensors[i];
        const fc_tensor *t = s->arg < k->nruntime ? fc_runtime_tensor(k, params, s->arg)
                                                  : &outputs[s->arg - k->nruntime];
        vals[s->slot] = (int64_t)t->data;
        for (int32_t d = 0; d < s->rank; d++) {
            vals[s->slot + 1 + d] = t->sizes[d];
            vals[s->slot + 1 + s->rank + d] = t->strides[d];
        }
    }
    for (int32_t i = 0; i < v->nscalars; i++) {
        const fc_scalar_slot *s = &v->scalars[i];
        const fc_value *a = &params[k->runtime_params[s->arg]];
        if (s->kind == FC_FLOAT_PARAM) memcpy(&vals[s->slot], &a->f, sizeof a->f);
        else vals[s->slot] = s->kind == FC_BOOL_PARAM ? (a->i != 0) : a->i;
    }
    for (int32_t i = 0; i < v->nsizes; i++)
        if (fc_eval(&v->sizes[i].expr, env, &vals[v->sizes[i].slot]) != 0)
            return fc_fail(CUDA_ERROR_INVALID_VALUE, "kernel '%s': a size formula failed",
                           k->name);
    for (int32_t l = 0; l < v->nlaunches; l++) {
        programs[l] = 1;
        for (int32_t d = 0; d < v->launches[l].ndims; d++) {
            const fc_grid_dim *g = &v->launches[l].grid[d];
            int64_t extent;
            if (fc_eval(&g->extent, env, &extent) != 0)
                return fc_fail(CUDA_ERROR_INVALID_VALUE, "kernel '%s': a grid formula "
                               "failed", k->name);
            vals[g->slot] = extent > 0 ? (extent + g->block - 1) / g->block : 0;
            programs[l] *= vals[g->slot];
        }
    }
    for (int32_t i = 0; i < v->nslots; i++) ptrs[i] = &vals[i];
    for (int32_t l = 0; l < v->nlaunches; l++) {
        const fc_launch *launch = &v->launches[l];
        CUdeviceptr scratch = 0;
        if (programs[l] <= 0) continue;
        if (programs[l] > 2147483647LL)
            return fc_fail(CUDA_ERROR_INVALID_VALUE, "kernel '%s': %s has %lld programs, more"
                           " than a grid allows", k->name, launch->function,
                           (long long)programs[l]);
        if (launch->scratch_bytes) {
            r = cuMemAllocAsync(&scratch, (size_t)(programs[l] * launch->scratch_bytes),
                                stream);
            if (r != CUDA_SUCCESS) return fc_driver(r, k->name, "cuMemAllocAsync(scratch)");
            vals[launch->scratch_slot] = (int64_t)scratch;
        }
        r = cuLaunchKernel(fns[l], (unsigned)programs[l], 1, 1, (unsigned)v->threads, 1, 1,
                           (unsigned)launch->shared_bytes, stream, ptrs, NULL);
        if (scratch) cuMemFreeAsync(scratch, stream);
        if (r != CUDA_SUCCESS) return fc_driver(r, k->name, launch->function);
    }
    return CUDA_SUCCESS;
}

/* the rank of output `index` (its sizes in shape), or -1 with the error set */
static int fc_output_shape(const fc_kernel *k, const fc_value *params, int index,
                           int64_t *shape) {
    int64_t env[FC_MAX_SYMBOLS + 1];
    fc_tensor outputs[FC_MAX_OUTPUTS + 1];
    int32_t vi;
    int use_ptx;
    if (fc_select(k, params, env, &vi, &use_ptx) != CUDA_SUCCESS) return -1;
    const fc_variant *v = &k->variants[vi];
    if (index < 0 || index >= v->nallocs) {
        fc_fail(CUDA_ERROR_INVALID_VALUE, "kernel '%s' has %d output(s), not %d", k->name,
                v->nallocs, index + 1);
        return -1;
    }
    if (fc_fill_outputs(k, v, env, outputs) != CUDA_SUCCESS) return -1;
    memcpy(shape, outputs[index].sizes, sizeof(int64_t) * (size_t)outputs[index].rank);
    return outputs[index].rank;
}
