/* fusec's native call path for compiled kernels: one C call checks that the arguments
 * match the specialization a launch plan was made for, allocates the outputs, writes the
 * data pointers into the plan's parameter array and launches every function of the
 * kernel: on a GPU on torch's current stream, on the CPU through native_pool.c's workers
 * without the GIL.  fusec/fastcall.py builds it with the host C compiler and says what each
 * field holds; a call whose arguments do not match returns NotImplemented (the Python
 * dispatch then looks the call up), nothing else is returned without launching.
 *
 * No CUDA header is needed: the few driver entry points are declared here and looked up in
 * libcuda (already loaded by cuda-python) on first use.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

#include "native_pool.c"

typedef int CUresult;
typedef void *CUcontext;
typedef void *CUfunction;
typedef void *CUstream;

static CUresult (*p_cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned,
                                    unsigned, unsigned, unsigned, CUstream, void **, void **);
static CUresult (*p_cuCtxGetCurrent)(CUcontext *);
static CUresult (*p_cuCtxPushCurrent)(CUcontext);
static CUresult (*p_cuCtxPopCurrent)(CUcontext *);
static CUresult (*p_cuGetErrorName)(CUresult, const char **);

static int load_driver(void) {
    if (p_cuLaunchKernel) return 0;
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (!lib) lib = dlopen("libcuda.so", RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        PyErr_Format(PyExc_RuntimeError, "fusec fastcall: cannot load libcuda: %s", dlerror());
        return -1;
    }
    p_cuCtxGetCurrent = dlsym(lib, "cuCtxGetCurrent");
    p_cuCtxPushCurrent = dlsym(lib, "cuCtxPushCurrent_v2");
    p_cuCtxPopCurrent = dlsym(lib, "cuCtxPopCurrent_v2");
    p_cuGetErrorName = dlsym(lib, "cuGetErrorName");
    p_cuLaunchKernel = dlsym(lib, "cuLaunchKernel");
    if (!p_cuLaunchKernel || !p_cuCtxGetCurrent || !p_cuCtxPushCurrent || !p_cuCtxPopCurrent
        || !p_cuGetErrorName) {
        p_cuLaunchKernel = NULL;
        PyErr_SetString(PyExc_RuntimeError, "fusec fastcall: libcuda lacks a driver entry point");
        return -1;
    }
    return 0;
}

enum { ARG_TENSOR = 0, ARG_INT = 1, ARG_FLOAT = 2, ARG_OTHER = 3, ARG_IGNORED = 4,
       ARG_NDARRAY = 5, ARG_KNOWN_TENSOR = 6 };
/* ARG_KNOWN_TENSOR: a tensor whose dtype, sizes, strides and device the caller guarantees
   to be the compiling call's (a fused region's input of known layout): only its type and
   its pointer's 16-byte alignment are checked, one attribute read instead of five */

typedef struct {
    int kind;
    PyObject *value;          /* ARG_INT/ARG_OTHER: the value; ARG_TENSOR: the dtype;
                                 ARG_NDARRAY: its buffer format (str, PEP 3118) */
    PyTypeObject *type;       /* ARG_INT/ARG_OTHER/ARG_NDARRAY: its exact type */
    double real;              /* ARG_FLOAT */
    int ndim;
    long long *sizes, *strides;   /* ARG_NDARRAY: strides in bytes */
    long long device;         /* tensor.get_device(); ARG_NDARRAY: 1 when written to */
    long long align;          /* data_ptr & 15 */
    Py_ssize_t slot;          /* its pointer slot in the parameter array, or -1 */
} Guard;

typedef struct {
    PyObject *args, *kwargs;  /* torch.empty_strided(*args, **kwargs) */
    int zero;
    Py_ssize_t slot;
    PyObject *make;           /* NULL, or what makes it instead (numpy.empty / numpy.zeros,
                                 zeroed already): its data pointer is read as a buffer */
    PyObject *fast_args;      /* NULL, or (sizes, strides, dtype) for FastCall.fast_empty */
} Output;

typedef struct {
    CUfunction fn;
    unsigned blocks, threads, shared;   /* shared: dynamic shared memory bytes */
    PyObject *scratch_args;   /* NULL, or the args of empty_strided for its scratch */
    Py_ssize_t scratch_slot;
    PyObject *name;           /* for errors */
} Launch;

/* a CPU launch: `total` programs in `parts` ranges, each range with its scratch arena */
typedef struct {
    program_fn fn;
    long long total;
    int parts;
    char **arenas;            /* per range: 64-byte aligned, or NULL (no scratch) */
    void *arena_block;
} CpuLaunch;

typedef struct {
    PyObject_HEAD
    int cpu;                  /* launches are CPU functions (cpu_launches), not CUDA ones */
    CpuLaunch *cpu_launches;
    Py_ssize_t nargs;
    Guard *guards;
    Py_ssize_t nout;
    Output *outs;
    Py_ssize_t nlaunch;
    Launch *launches;
    Py_ssize_t nres;
    Py_ssize_t *res_index;    /* >= 0: argument; < 0: output -1-i */
    int result_kind;          /* 0: tuple, 1: the one result, 2: None */
    long long *vals;          /* the plan's parameter array */
    void **params;            /* kernelParams: pointers into vals */
    CUcontext ctx;
    PyObject *owner;          /* keeps vals and params alive */
    PyObject *stream_fn, *device_obj, *empty_strided, *scratch_kwargs;
    PyObject *fast_empty;     /* NULL, or torch's allocator for inductor's generated code
                                 (positional sizes, strides, dtype; on the current device:
                                 half empty_strided's cost) */
    PyObject *current_device; /* GPU: torch's current device index (a callable); the fast
                                 allocator serves only when it is the kernel's device, which
                                 the driver's current context does not tell (a CUDA guard may
                                 leave torch's device index apart from it) */
    PyObject *tensor_types;   /* tuple of exact types accepted as tensors */
    PyObject *error;          /* the exception class of launch failures */
    PyObject *kernel_name;
    char *env_backend, *env_interpret;   /* NULL: unset */
    int busy;                 /* a call in progress (torch may release the GIL inside) */
    long long device_index;   /* GPU: the kernel's device (for current_device) */
} FastCall;

static PyObject *s_dtype, *s_shape, *s_stride, *s_get_device, *s_data_ptr, *s_zero;

static void fastcall_dealloc(FastCall *self) {
    for (Py_ssize_t i = 0; i < self->nargs && self->guards; i++) {
        Py_XDECREF(self->guards[i].value);
        PyMem_Free(self->guards[i].sizes);
        PyMem_Free(self->guards[i].strides);
    }
    PyMem_Free(self->guards);
    for (Py_ssize_t i = 0; i < self->nout && self->outs; i++) {
        Py_XDECREF(self->outs[i].args);
        Py_XDECREF(self->outs[i].kwargs);
        Py_XDECREF(self->outs[i].make);
        Py_XDECREF(self->outs[i].fast_args);
    }
    PyMem_Free(self->outs);
    for (Py_ssize_t i = 0; i < self->nlaunch && self->launches; i++) {
        Py_XDECREF(self->launches[i].scratch_args);
        Py_XDECREF(self->launches[i].name);
    }
    PyMem_Free(self->launches);
    for (Py_ssize_t i = 0; i < self->nlaunch && self->cpu_launches; i++) {
        PyMem_RawFree(self->cpu_launches[i].arenas);
        PyMem_RawFree(self->cpu_launches[i].arena_block);
    }
    PyMem_Free(self->cpu_launches);
    PyMem_Free(self->res_index);
    PyMem_Free(self->env_backend);
    PyMem_Free(self->env_interpret);
    Py_XDECREF(self->owner);
    Py_XDECREF(self->stream_fn);
    Py_XDECREF(self->device_obj);
    Py_XDECREF(self->empty_strided);
    Py_XDECREF(self->fast_empty);
    Py_XDECREF(self->current_device);
    Py_XDECREF(self->scratch_kwargs);
    Py_XDECREF(self->tensor_types);
    Py_XDECREF(self->error);
    Py_XDECREF(self->kernel_name);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int read_ints(PyObject *seq, long long **out, int *n) {
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of ints");
    if (!fast) return -1;
    *n = (int)PySequence_Fast_GET_SIZE(fast);
    *out = PyMem_Calloc(*n ? *n : 1, sizeof(long long));
    for (int i = 0; i < *n; i++) {
        (*out)[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(fast, i));
    }
    Py_DECREF(fast);
    return PyErr_Occurred() ? -1 : 0;
}

static int bad_index(const char *what, Py_ssize_t index) {
    PyErr_Format(PyExc_ValueError, "fusec fastcall: %s %zd out of range", what, index);
    return -1;
}

static char *copy_env(PyObject *v) {
    if (v == Py_None) return NULL;
    const char *s = PyUnicode_AsUTF8(v);
    if (!s) return NULL;
    char *c = PyMem_Malloc(strlen(s) + 1);
    strcpy(c, s);
    return c;
}

/* the CPU launches (fn, total, parts, scratch bytes) with their scratch arenas */
static int read_cpu_launches(FastCall *self, PyObject *launches) {
    self->cpu_launches = PyMem_Calloc(self->nlaunch ? self->nlaunch : 1, sizeof(CpuLaunch));
    if (!self->cpu_launches) { PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < self->nlaunch; i++) {
        CpuLaunch *l = &self->cpu_launches[i];
        unsigned long long fn;
        long long scratch;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(launches, i), "KLiL", &fn, &l->total, &l->parts,
                              &scratch))
            return -1;
        if (!fn || l->parts < 1 || scratch < 0) {
            PyErr_SetString(PyExc_ValueError, "fusec fastcall: bad CPU launch");
            return -1;
        }
        l->fn = (program_fn)(uintptr_t)fn;
        l->arenas = PyMem_RawCalloc(l->parts, sizeof(char *));
        if (!l->arenas) { PyErr_NoMemory(); return -1; }
        if (scratch) {
            size_t stride = ((size_t)scratch + 63) & ~(size_t)63;
            l->arena_block = PyMem_RawMalloc(stride * l->parts + 64);
            if (!l->arena_block) { PyErr_NoMemory(); return -1; }
            uintptr_t base = ((uintptr_t)l->arena_block + 63) & ~(uintptr_t)63;
            for (int k = 0; k < l->parts; k++) l->arenas[k] = (char *)(base + stride * k);
        }
    }
    return 0;
}

/* FastCall(guards, outputs, launches, results, result_kind, vals_addr, nvals, params_addr, ctx,
 *          owner, stream_fn, device, empty_strided, scratch_kwargs, tensor_types, error,
 *          kernel_name, env_backend, env_interpret[, cpu[, fast_empty[, current_device]]])
 * guards: per argument (kind, value, type, real, sizes, strides, device, align, slot)
 * (vals_addr is followed by the number of slots it holds: every slot index is checked)
 * outputs: (args, kwargs, zero, slot[, make[, fast_args]]); launches: (fn, blocks, threads,
 * shared, scratch_args|None, scratch_slot, name), or with cpu set (fn, total programs, parts,
 * scratch bytes per part);
 * results: argument index (>= 0) or -1 - output index.  With cpu set, vals_addr is the
 * functions' argument array and params_addr, ctx and stream_fn go unused. */
static int fastcall_init(FastCall *self, PyObject *args, PyObject *kw) {
    PyObject *guards, *outs, *launches, *results, *owner, *stream_fn, *device, *empty;
    PyObject *scratch_kwargs, *types, *error, *name, *env_b, *env_i, *fast_empty = Py_None;
    PyObject *current_device = Py_None;
    unsigned long long vals, params, ctx;
    Py_ssize_t nvals;
    if (!PyArg_ParseTuple(args, "O!O!O!O!iKnKKOOOOOO!OOOO|pOO", &PyList_Type, &guards, &PyList_Type,
                          &outs, &PyList_Type, &launches, &PyList_Type, &results,
                          &self->result_kind, &vals, &nvals, &params, &ctx, &owner, &stream_fn,
                          &device,
                          &empty, &scratch_kwargs, &PyTuple_Type, &types, &error, &name, &env_b,
                          &env_i, &self->cpu, &fast_empty, &current_device))
        return -1;
    self->vals = (long long *)(uintptr_t)vals;
    self->params = (void **)(uintptr_t)params;
    self->ctx = (CUcontext)(uintptr_t)ctx;
    Py_INCREF(owner); self->owner = owner;
    Py_INCREF(stream_fn); self->stream_fn = stream_fn;
    Py_INCREF(device); self->device_obj = device;
    self->device_index = self->cpu ? -1 : PyLong_AsLongLong(device);
    if (self->device_index == -1 && PyErr_Occurred()) return -1;
    Py_INCREF(empty); self->empty_strided = empty;
    self->fast_empty = fast_empty == Py_None ? NULL : (Py_INCREF(fast_empty), fast_empty);
    self->current_device = current_device == Py_None ? NULL
                                                     : (Py_INCREF(current_device), current_device);
    if (self->fast_empty && !self->cpu && !self->current_device) {
        PyErr_SetString(PyExc_ValueError, "fusec fastcall: a GPU fast allocator needs the "
                        "current-device function");
        return -1;
    }
    Py_INCREF(scratch_kwargs); self->scratch_kwargs = scratch_kwargs;
    Py_INCREF(types); self->tensor_types = types;
    Py_INCREF(error); self->error = error;
    Py_INCREF(name); self->kernel_name = name;
    self->env_backend = copy_env(env_b);
    self->env_interpret = copy_env(env_i);
    if (PyErr_Occurred()) return -1;

    self->nargs = PyList_GET_SIZE(guards);
    self->guards = PyMem_Calloc(self->nargs ? self->nargs : 1, sizeof(Guard));
    for (Py_ssize_t i = 0; i < self->nargs; i++) {
        Guard *g = &self->guards[i];
        PyObject *value, *type, *sizes, *strides;
        long long device_index, align, slot;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(guards, i), "iOOdOOLLL", &g->kind, &value, &type,
                              &g->real, &sizes, &strides, &device_index, &align, &slot))
            return -1;
        Py_INCREF(value); g->value = value;
        g->type = type == Py_None ? NULL : (PyTypeObject *)type;
        g->device = device_index; g->align = align; g->slot = (Py_ssize_t)slot;
        if (g->kind == ARG_TENSOR || g->kind == ARG_KNOWN_TENSOR || g->kind == ARG_NDARRAY) {
            int n2;
            if (read_ints(sizes, &g->sizes, &g->ndim) || read_ints(strides, &g->strides, &n2))
                return -1;
        }
    }
    self->nout = PyList_GET_SIZE(outs);
    self->outs = PyMem_Calloc(self->nout ? self->nout : 1, sizeof(Output));
    for (Py_ssize_t i = 0; i < self->nout; i++) {
        Output *o = &self->outs[i];
        PyObject *a, *k, *make = Py_None, *fast_args = Py_None;
        long long slot;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(outs, i), "O!O!iL|OO", &PyTuple_Type, &a,
                              &PyDict_Type, &k, &o->zero, &slot, &make, &fast_args))
            return -1;
        if (fast_args != Py_None && !PyTuple_Check(fast_args)) {
            PyErr_SetString(PyExc_TypeError, "fusec fastcall: fast_args must be a tuple");
            return -1;
        }
        o->fast_args = fast_args == Py_None ? NULL : (Py_INCREF(fast_args), fast_args);
        Py_INCREF(a); o->args = a;
        Py_INCREF(k); o->kwargs = k;
        o->slot = (Py_ssize_t)slot;
        o->make = make == Py_None ? NULL : (Py_INCREF(make), make);
    }
    self->nlaunch = PyList_GET_SIZE(launches);
    if (self->cpu) {
        if (read_cpu_launches(self, launches)) return -1;
    } else {
        self->launches = PyMem_Calloc(self->nlaunch ? self->nlaunch : 1, sizeof(Launch));
    }
    for (Py_ssize_t i = 0; i < self->nlaunch && !self->cpu; i++) {
        Launch *l = &self->launches[i];
        unsigned long long fn;
        long long slot;
        PyObject *sargs, *lname;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(launches, i), "KIIIOLO", &fn, &l->blocks,
                              &l->threads, &l->shared, &sargs, &slot, &lname))
            return -1;
        l->fn = (CUfunction)(uintptr_t)fn;
        l->scratch_args = sargs == Py_None ? NULL : (Py_INCREF(sargs), sargs);
        l->scratch_slot = (Py_ssize_t)slot;
        Py_INCREF(lname); l->name = lname;
    }
    self->nres = PyList_GET_SIZE(results);
    self->res_index = PyMem_Calloc(self->nres ? self->nres : 1, sizeof(Py_ssize_t));
    for (Py_ssize_t i = 0; i < self->nres; i++) {
        self->res_index[i] = PyLong_AsSsize_t(PyList_GET_ITEM(results, i));
    }
    if (PyErr_Occurred()) return -1;
    for (Py_ssize_t i = 0; i < self->nres; i++) {
        Py_ssize_t r = self->res_index[i];
        if (r >= self->nargs || -1 - r >= self->nout) return bad_index("result", r);
    }
    if (self->result_kind < 0 || self->result_kind > 2 || (self->result_kind == 1 && self->nres != 1))
        return bad_index("result kind", self->result_kind);
    for (Py_ssize_t i = 0; i < self->nargs; i++)
        if (self->guards[i].slot >= nvals) return bad_index("argument slot", self->guards[i].slot);
    for (Py_ssize_t i = 0; i < self->nout; i++)
        if (self->outs[i].slot < 0 || self->outs[i].slot >= nvals)
            return bad_index("output slot", self->outs[i].slot);
    for (Py_ssize_t i = 0; i < self->nlaunch && !self->cpu; i++)
        if (self->launches[i].scratch_args && (self->launches[i].scratch_slot < 0
                                               || self->launches[i].scratch_slot >= nvals))
            return bad_index("scratch slot", self->launches[i].scratch_slot);
    if (self->nlaunch && !self->cpu && load_driver()) return -1;
    return 0;
}

static int env_matches(const char *name, const char *want) {
    const char *got = getenv(name);
    if (!got || !want) return got == want;
    return strcmp(got, want) == 0;
}

/* 1: `v` is a tuple of `n` ints equal to want[0..n) (0 also when an item is no int: the
   caller tells the two apart by PyErr_Occurred) */
static int same_ints(PyObject *v, int n, const long long *want) {
    int same = PyTuple_Check(v) && PyTuple_GET_SIZE(v) == n;
    for (int d = 0; same && d < n; d++)
        same = PyLong_AsLongLong(PyTuple_GET_ITEM(v, d)) == want[d];
    return same;
}

/* whether a's exact type is one of the accepted tensor types */
static int is_tensor_type(FastCall *self, PyObject *a) {
    PyTypeObject *t = Py_TYPE(a);
    int known = 0;
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(self->tensor_types); k++)
        known |= (PyObject *)t == PyTuple_GET_ITEM(self->tensor_types, k);
    return known;
}

/* a tensor's data pointer into *ptr: 1 when its 16-byte alignment is the guard's, 0 when
   not, -1: error */
static int aligned_data_ptr(Guard *g, PyObject *a, long long *ptr) {
    PyObject *v = PyObject_CallMethodNoArgs(a, s_data_ptr);
    if (!v) return -1;
    *ptr = (long long)PyLong_AsUnsignedLongLongMask(v);
    Py_DECREF(v);
    if (PyErr_Occurred()) return -1;
    return (*ptr & 15) == g->align;
}

/* 1: a matching tensor (*ptr set), 0: no match, -1: error */
static int check_tensor(FastCall *self, Guard *g, PyObject *a, long long *ptr) {
    if (!is_tensor_type(self, a)) return 0;
    PyObject *v = PyObject_GetAttr(a, s_dtype);
    if (!v) return -1;
    int same = v == g->value;
    Py_DECREF(v);
    if (!same) return 0;
    v = PyObject_GetAttr(a, s_shape);
    if (!v) return -1;
    same = same_ints(v, g->ndim, g->sizes);
    Py_DECREF(v);
    if (!same) return PyErr_Occurred() ? -1 : 0;
    v = PyObject_CallMethodNoArgs(a, s_stride);
    if (!v) return -1;
    same = same_ints(v, g->ndim, g->strides);
    Py_DECREF(v);
    if (!same) return PyErr_Occurred() ? -1 : 0;
    v = PyObject_CallMethodNoArgs(a, s_get_device);
    if (!v) return -1;
    same = PyLong_AsLongLong(v) == g->device;
    Py_DECREF(v);
    if (!same) return PyErr_Occurred() ? -1 : 0;
    return aligned_data_ptr(g, a, ptr);
}

/* check_tensor for ARG_KNOWN_TENSOR: the type and the alignment */
static int check_known_tensor(FastCall *self, Guard *g, PyObject *a, long long *ptr) {
    if (!is_tensor_type(self, a)) return 0;
    return aligned_data_ptr(g, a, ptr);
}

/* a numpy array (any exporter of the buffer protocol of the guard's exact type) whose
 * format, shape, byte strides, 16-byte alignment and, when written to, writability match:
 * 1 (*ptr set), else 0 */
static int check_ndarray(Guard *g, PyObject *a, long long *ptr) {
    if (Py_TYPE(a) != g->type) return 0;
    Py_buffer view;
    if (PyObject_GetBuffer(a, &view, g->device ? PyBUF_RECORDS : PyBUF_RECORDS_RO) < 0) {
        PyErr_Clear();                  /* read-only where written, or no buffer: Python */
        return 0;
    }
    const char *format = PyUnicode_AsUTF8(g->value);
    int same = format && view.format && strcmp(view.format, format) == 0
               && view.ndim == g->ndim;
    for (int d = 0; same && d < g->ndim; d++)
        same = view.shape[d] == g->sizes[d] && view.strides[d] == g->strides[d];
    *ptr = (long long)(uintptr_t)view.buf;
    PyBuffer_Release(&view);          /* the array, an argument, keeps the memory */
    if (PyErr_Occurred()) return -1;
    return same && (*ptr & 15) == g->align;
}

/* 1: matches, 0: does not, -1: error */
static int check_arg(FastCall *self, Guard *g, PyObject *a) {
    switch (g->kind) {
    case ARG_TENSOR:
    case ARG_KNOWN_TENSOR:
    case ARG_NDARRAY: {
        long long ptr = 0;
        int ok = g->kind == ARG_TENSOR ? check_tensor(self, g, a, &ptr)
                 : g->kind == ARG_KNOWN_TENSOR ? check_known_tensor(self, g, a, &ptr)
                                               : check_ndarray(g, a, &ptr);
        if (ok == 1 && g->slot >= 0) self->vals[g->slot] = ptr;
        return ok;
    }
    case ARG_INT:
        if (Py_TYPE(a) != g->type) return 0;
        return PyObject_RichCompareBool(a, g->value, Py_EQ);
    case ARG_FLOAT: {
        if (!PyFloat_CheckExact(a)) return 0;
        double x = PyFloat_AS_DOUBLE(a);
        return memcmp(&x, &g->real, sizeof x) == 0;     /* -0.0 and NaN payloads differ */
    }
    case ARG_OTHER:
        if (Py_TYPE(a) != g->type) return 0;
        return PyObject_RichCompareBool(a, g->value, Py_EQ);
    default:
        return 1;
    }
}

static PyObject *launch_error(FastCall *self, Launch *l, CUresult err, const char *what) {
    const char *ename = NULL;
    if (p_cuGetErrorName) p_cuGetErrorName(err, &ename);
    PyErr_Format(self->error, "kernel %R failed on backend cuda: %s(%S, grid=%u, block=%u) "
                 "failed: %s (%d)", self->kernel_name, what, l ? l->name : Py_None,
                 l ? l->blocks : 0, l ? l->threads : 0, ename ? ename : "unknown error", err);
    return NULL;
}

static PyObject *call_matching(FastCall *self, PyObject *args) {
    if (PyTuple_GET_SIZE(args) != self->nargs) Py_RETURN_NOTIMPLEMENTED;
    if (!env_matches("FUSEC_BACKEND", self->env_backend)
        || !env_matches("FUSEC_INTERPRET", self->env_interpret))
        Py_RETURN_NOTIMPLEMENTED;
    for (Py_ssize_t i = 0; i < self->nargs; i++) {
        int ok = check_arg(self, &self->guards[i], PyTuple_GET_ITEM(args, i));
        if (ok < 0) return NULL;
        if (!ok) Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject *outs = PyTuple_New(self->nout);
    PyObject *scratch = NULL;
    PyObject *result = NULL;
    int pushed = 0;
    if (!outs) return NULL;
    if (self->nlaunch && !self->cpu) {
        CUcontext current = NULL;
        CUresult err = p_cuCtxGetCurrent(&current);
        if (err) { launch_error(self, NULL, err, "cuCtxGetCurrent"); goto done; }
        if (current != self->ctx) {
            err = p_cuCtxPushCurrent(self->ctx);
            if (err) { launch_error(self, NULL, err, "cuCtxPushCurrent"); goto done; }
            pushed = 1;
        }
    }
    /* the fast allocator makes tensors on torch's current device: used where that is the
       kernel's (the CPU's always is) */
    int fast = self->fast_empty != NULL && self->nout > 0;
    if (fast && !self->cpu) {
        PyObject *now = PyObject_CallNoArgs(self->current_device);
        if (!now) goto done;
        long long index = PyLong_AsLongLong(now);
        Py_DECREF(now);
        if (index == -1 && PyErr_Occurred()) goto done;
        fast = index == self->device_index;
    }
    for (Py_ssize_t i = 0; i < self->nout; i++) {
        Output *o = &self->outs[i];
        PyObject *t = fast && o->fast_args && !o->make
            ? PyObject_Call(self->fast_empty, o->fast_args, NULL)
            : PyObject_Call(o->make ? o->make : self->empty_strided, o->args, o->kwargs);
        if (!t) goto done;
        PyTuple_SET_ITEM(outs, i, t);
        if (o->make) {
            Py_buffer view;
            if (PyObject_GetBuffer(t, &view, PyBUF_SIMPLE | PyBUF_WRITABLE) < 0) goto done;
            self->vals[o->slot] = (long long)(uintptr_t)view.buf;
            PyBuffer_Release(&view);
            continue;
        }
        if (o->zero) {
            PyObject *z = PyObject_CallMethodNoArgs(t, s_zero);
            if (!z) goto done;
            Py_DECREF(z);
        }
        PyObject *p = PyObject_CallMethodNoArgs(t, s_data_ptr);
        if (!p) goto done;
        self->vals[o->slot] = (long long)PyLong_AsUnsignedLongLongMask(p);
        Py_DECREF(p);
    }
    if (self->nlaunch && self->cpu) {
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t k = 0; k < self->nlaunch; k++) {
            CpuLaunch *l = &self->cpu_launches[k];
            pool_run(l->fn, self->vals, l->total, l->parts, l->arenas);
        }
        Py_END_ALLOW_THREADS
    } else if (self->nlaunch) {
        PyObject *s = PyObject_CallOneArg(self->stream_fn, self->device_obj);
        if (!s) goto done;
        CUstream stream = (CUstream)(uintptr_t)PyLong_AsUnsignedLongLongMask(s);
        Py_DECREF(s);
        if (PyErr_Occurred()) goto done;
        CUresult err;
        scratch = PyList_New(0);              /* alive until every launch is enqueued */
        if (!scratch) goto done;
        for (Py_ssize_t k = 0; k < self->nlaunch; k++) {
            Launch *l = &self->launches[k];
            if (l->scratch_args) {
                PyObject *buf = PyObject_Call(self->empty_strided, l->scratch_args,
                                              self->scratch_kwargs);
                if (!buf || PyList_Append(scratch, buf)) { Py_XDECREF(buf); goto done; }
                Py_DECREF(buf);
                PyObject *p = PyObject_CallMethodNoArgs(buf, s_data_ptr);
                if (!p) goto done;
                self->vals[l->scratch_slot] = (long long)PyLong_AsUnsignedLongLongMask(p);
                Py_DECREF(p);
            }
            err = p_cuLaunchKernel(l->fn, l->blocks, 1, 1, l->threads, 1, 1, l->shared,
                                   stream, self->params, NULL);
            if (err) { launch_error(self, l, err, "cuLaunchKernel"); goto done; }
        }
    }
    if (self->result_kind == 2) {
        result = Py_None; Py_INCREF(result);
    } else if (self->result_kind == 1) {
        Py_ssize_t r = self->res_index[0];
        result = r >= 0 ? PyTuple_GET_ITEM(args, r) : PyTuple_GET_ITEM(outs, -1 - r);
        Py_INCREF(result);
    } else {
        result = PyTuple_New(self->nres);
        if (!result) goto done;
        for (Py_ssize_t i = 0; i < self->nres; i++) {
            Py_ssize_t r = self->res_index[i];
            PyObject *v = r >= 0 ? PyTuple_GET_ITEM(args, r) : PyTuple_GET_ITEM(outs, -1 - r);
            Py_INCREF(v);
            PyTuple_SET_ITEM(result, i, v);
        }
    }
done:
    if (pushed) {
        CUcontext popped;
        CUresult err = p_cuCtxPopCurrent(&popped);
        if (err && result) {
            Py_CLEAR(result);
            launch_error(self, NULL, err, "cuCtxPopCurrent");
        }
    }
    Py_XDECREF(scratch);
    Py_DECREF(outs);
    return result;
}

/* fast(args): args is the tuple of the kernel's arguments.  A second thread calling while
 * a call is in progress gets NotImplemented (the Python dispatch makes its own plan). */
static PyObject *fastcall_call(FastCall *self, PyObject *callargs, PyObject *kwargs) {
    if ((kwargs && PyDict_GET_SIZE(kwargs)) || PyTuple_GET_SIZE(callargs) != 1
        || !PyTuple_CheckExact(PyTuple_GET_ITEM(callargs, 0)) || self->busy)
        Py_RETURN_NOTIMPLEMENTED;
    self->busy = 1;
    PyObject *result = call_matching(self, PyTuple_GET_ITEM(callargs, 0));
    self->busy = 0;
    return result;
}

static PyTypeObject FastCallType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fusec_fastcall.FastCall",
    .tp_basicsize = sizeof(FastCall),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)fastcall_init,
    .tp_dealloc = (destructor)fastcall_dealloc,
    .tp_call = (ternaryfunc)fastcall_call,
    .tp_doc = "A compiled kernel's launch plan, callable with the kernel's arguments.",
};

/* use_openmp(path): CPU launches run on the thread team of the OpenMP runtime already
 * loaded from path (native_pool.c); returns whether they will */
static PyObject *use_openmp(PyObject *module, PyObject *arg) {
    const char *path = PyUnicode_AsUTF8(arg);
    if (!path) return NULL;
    return PyBool_FromLong(pool_use_openmp(path));
}

/* run_programs(fn, args, total, scratch): programs [0, total) of the CPU function at address
 * fn over the argument array at address args, in len(scratch) ranges (one per core), range
 * i with the arena at address scratch[i] (0: none); the GIL released meanwhile */
static PyObject *run_programs(PyObject *module, PyObject *args) {
    unsigned long long fn, argv;
    long long total;
    PyObject *scratch;
    if (!PyArg_ParseTuple(args, "KKLO!", &fn, &argv, &total, &PyTuple_Type, &scratch))
        return NULL;
    Py_ssize_t parts = PyTuple_GET_SIZE(scratch);
    if (!fn || !argv || parts < 1 || parts > POOL_MAX_WORKERS + 1) {
        PyErr_SetString(PyExc_ValueError, "fusec run_programs: bad launch");
        return NULL;
    }
    char *arenas[POOL_MAX_WORKERS + 1];
    for (Py_ssize_t i = 0; i < parts; i++) {
        arenas[i] = (char *)(uintptr_t)PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(scratch, i));
        if (PyErr_Occurred()) return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    pool_run((program_fn)(uintptr_t)fn, (long long *)(uintptr_t)argv, total, (int)parts,
             arenas);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef fastcall_functions[] = {
    {"use_openmp", use_openmp, METH_O, "Run CPU launches on an OpenMP runtime's threads."},
    {"run_programs", run_programs, METH_VARARGS, "Run a CPU launch over the cores."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fastcall_module = {
    PyModuleDef_HEAD_INIT, "fusec_fastcall", NULL, -1, fastcall_functions,
};

PyMODINIT_FUNC PyInit_fusec_fastcall(void) {
    s_dtype = PyUnicode_InternFromString("dtype");
    s_shape = PyUnicode_InternFromString("shape");
    s_stride = PyUnicode_InternFromString("stride");
    s_get_device = PyUnicode_InternFromString("get_device");
    s_data_ptr = PyUnicode_InternFromString("data_ptr");
    s_zero = PyUnicode_InternFromString("zero_");
    if (PyType_Ready(&FastCallType) < 0) return NULL;
    PyObject *m = PyModule_Create(&fastcall_module);
    if (!m) return NULL;
    Py_INCREF(&FastCallType);
    if (PyModule_AddObject(m, "FastCall", (PyObject *)&FastCallType) < 0) {
        Py_DECREF(&FastCallType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
