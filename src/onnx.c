/* onnx.c — networks in from ONNX: the graph mapped onto valley's layers (onnx.h), its
 * initializers onto valley's tensors, model.nc written with model.kind = graph. */
#include "valley/onnx.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gen/onnx.pb-c.h"
#include "valley/ckpt.h"
#include "valley/error.h"
#include "valley/graphdesc.h"
#include "valley/log.h"
#include "valley/ncio.h"

enum { V_TENSOR = 1, V_NODE = 2, V_INTS = 3 };
enum { INTS_MAX = 8, NAMES_MAX = 48 };
#define BATCH_SENTINEL (-(INT64_C(1) << 40)) /* the symbolic batch size in shape arithmetic */
#define ONNX_FILE_MAX ((size_t)2 << 30)      /* 2 GiB: protobuf's own limit */
#define TENSOR_MAX ((size_t)1 << 31)         /* elements of one tensor */

typedef struct {
    const char *name;               /* the ONNX value's name (in the parsed message) */
    int kind;
    const Onnx__TensorProto *t;     /* V_TENSOR */
    int line, spatial, c, h, w;     /* V_NODE: the description line and the output's shape */
    int bias;                       /* V_NODE of a MatMul: index of its (zero) bias tensor, else -1 */
    int n;                          /* V_INTS */
    int64_t v[INTS_MAX];
} val_t;

typedef struct {
    const char *path;
    onnx_import_t *im;
    val_t *vals;
    int nvals, cap;
    char *desc;
    size_t dlen, dcap;
    int nlines;
    int tcap;
    char (*names)[NAMES_MAX + 1];
    int nnames;
    int counter;
    /* the node being mapped, for messages */
    int node_index;
    const Onnx__NodeProto *node;
} imp_t;

/* ---------------------------------------------------------------- helpers */

static int node_fail(imp_t *x, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    const Onnx__NodeProto *n = x->node;
    return VL_FAIL(VL_EINPUT, "%s: node %d '%.80s' (%.40s): %s", x->path, x->node_index, n && n->name ? n->name : "",
                   n && n->op_type ? n->op_type : "?", why);
}

static val_t *find(imp_t *x, const char *name)
{
    if (!name) return NULL;
    for (int i = x->nvals - 1; i >= 0; i--)
        if (!strcmp(x->vals[i].name, name)) return &x->vals[i];
    return NULL;
}

/* A new value. The table is sized once for the whole graph (parse_graph), never moved, so a
 * node's input values stay valid while its output is added. */
static val_t *add_val(imp_t *x, const char *name, int kind)
{
    if (x->nvals == x->cap) return NULL;
    val_t *v = &x->vals[x->nvals++];
    memset(v, 0, sizeof *v);
    v->name = name ? name : "";
    v->kind = kind;
    v->bias = -1;
    return v;
}

/* Appends one description line; returns its index, or -1 when out of memory. */
static int line(imp_t *x, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof buf) return -1;
    if (x->dlen + (size_t)n + 2 > x->dcap) {
        size_t cap = x->dcap ? 2 * x->dcap : 4096;
        while (cap < x->dlen + (size_t)n + 2) cap *= 2;
        char *d = realloc(x->desc, cap);
        if (!d) return -1;
        x->desc = d;
        x->dcap = cap;
    }
    memcpy(x->desc + x->dlen, buf, (size_t)n);
    x->dlen += (size_t)n;
    x->desc[x->dlen++] = '\n';
    x->desc[x->dlen] = '\0';
    return x->nlines++;
}

static const Onnx__AttributeProto *attr(const Onnx__NodeProto *n, const char *name)
{
    for (size_t i = 0; i < n->n_attribute; i++)
        if (n->attribute[i]->name && !strcmp(n->attribute[i]->name, name)) return n->attribute[i];
    return NULL;
}

static int64_t attr_int(const Onnx__NodeProto *n, const char *name, int64_t def)
{
    const Onnx__AttributeProto *a = attr(n, name);
    return a && a->has_i ? a->i : def;
}

static double attr_float(const Onnx__NodeProto *n, const char *name, double def)
{
    const Onnx__AttributeProto *a = attr(n, name);
    return a && a->has_f ? a->f : def;
}

/* An INTS attribute: count (0 when absent), values into v (at most max). -1 when longer. */
static int attr_ints(const Onnx__NodeProto *n, const char *name, int64_t *v, int max)
{
    const Onnx__AttributeProto *a = attr(n, name);
    if (!a) return 0;
    if (a->n_ints > (size_t)max) return -1;
    for (size_t i = 0; i < a->n_ints; i++) v[i] = a->ints[i];
    return (int)a->n_ints;
}

/* Elements of a tensor from its dims (each >= 0), or 0 with a message when too many. */
static int tensor_numel(imp_t *x, const Onnx__TensorProto *t, size_t *numel)
{
    size_t n = 1;
    if (t->n_dims > 4) return node_fail(x, "tensor '%.60s' has %zu dimensions (at most 4)", t->name ? t->name : "", t->n_dims);
    for (size_t i = 0; i < t->n_dims; i++) {
        if (t->dims[i] < 0 || (t->dims[i] > 0 && n > TENSOR_MAX / (size_t)t->dims[i]))
            return node_fail(x, "tensor '%.60s' claims a bad or huge shape", t->name ? t->name : "");
        n *= (size_t)t->dims[i];
    }
    *numel = n;
    return VL_OK;
}

/* The float values of an initializer or constant (malloc'd copy, checked against its dims). */
static int tensor_floats(imp_t *x, const Onnx__TensorProto *t, float **out, size_t *numel)
{
    *out = NULL;
    CHECK(tensor_numel(x, t, numel));
    const char *nm = t->name ? t->name : "";
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return node_fail(x, "tensor '%.60s' is stored outside the file (external data): export it inside the .onnx", nm);
    if (!t->has_data_type || t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return node_fail(x, "tensor '%.60s' is of ONNX type %d, valley reads float (1)", nm, t->has_data_type ? t->data_type : 0);
    const size_t n = *numel;
    float *f = malloc(n ? n * sizeof(float) : 1);
    if (!f) return VL_FAIL(VL_EIO, "out of memory for tensor '%.60s'", nm);
    if (t->has_raw_data && t->raw_data.len) {
        if (t->raw_data.len != n * sizeof(float)) {
            free(f);
            return node_fail(x, "tensor '%.60s': %zu bytes of data for %zu floats", nm, t->raw_data.len, n);
        }
        memcpy(f, t->raw_data.data, n * sizeof(float)); /* little-endian, as on x86 */
    } else if (t->n_float_data == n) {
        for (size_t i = 0; i < n; i++) f[i] = t->float_data[i];
    } else {
        free(f);
        return node_fail(x, "tensor '%.60s': %zu values for %zu elements", nm, t->n_float_data, n);
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(f[i])) {
            free(f);
            return node_fail(x, "tensor '%.60s' holds a NaN or an infinity (element %zu)", nm, i);
        }
    *out = f;
    return VL_OK;
}

/* The int64 values of a small constant (a shape, an index). */
static int tensor_ints(imp_t *x, const Onnx__TensorProto *t, int64_t *v, int *n)
{
    size_t numel = 0;
    CHECK(tensor_numel(x, t, &numel));
    if (numel > INTS_MAX) return node_fail(x, "integer tensor '%.60s' has %zu values (at most %d)", t->name ? t->name : "", numel, INTS_MAX);
    if (!t->has_data_type || t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__INT64)
        return node_fail(x, "tensor '%.60s' is used as integers but is of ONNX type %d", t->name ? t->name : "",
                         t->has_data_type ? t->data_type : 0);
    if (t->has_raw_data && t->raw_data.len) {
        if (t->raw_data.len != numel * 8) return node_fail(x, "tensor '%.60s': %zu bytes for %zu int64", t->name ? t->name : "", t->raw_data.len, numel);
        memcpy(v, t->raw_data.data, numel * 8);
    } else if (t->n_int64_data == numel) {
        for (size_t i = 0; i < numel; i++) v[i] = t->int64_data[i];
    } else {
        return node_fail(x, "tensor '%.60s': %zu values for %zu elements", t->name ? t->name : "", t->n_int64_data, numel);
    }
    *n = (int)numel;
    return VL_OK;
}

/* A valley layer name from an initializer's name ("layer1.0.conv1.weight" -> layer1_0_conv1),
 * or op_N when it has none worth keeping; unique. */
static int layer_name(imp_t *x, const char *init, const char *op, char *out)
{
    char buf[NAMES_MAX + 1] = "";
    const char *dot = init ? strrchr(init, '.') : NULL;
    if (init && dot && (!strcmp(dot, ".weight") || !strcmp(dot, ".bias")) && dot > init && strncmp(init, "onnx::", 6)) {
        size_t n = (size_t)(dot - init);
        if (n > NAMES_MAX) n = NAMES_MAX;
        for (size_t i = 0; i < n; i++) {
            const char ch = init[i];
            buf[i] = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ? ch : '_';
        }
        buf[n] = '\0';
    }
    if (!*buf) snprintf(buf, sizeof buf, "%s_%d", op, ++x->counter);
    for (int k = 2;; k++) {
        int used = 0;
        for (int i = 0; i < x->nnames && !used; i++) used = !strcmp(x->names[i], buf);
        if (!used) break;
        char tail[16];
        snprintf(tail, sizeof tail, "_%d", k);
        size_t base = strlen(buf);
        if (k > 2) base = strrchr(buf, '_') ? (size_t)(strrchr(buf, '_') - buf) : base;
        if (base + strlen(tail) > NAMES_MAX) base = NAMES_MAX - strlen(tail);
        snprintf(buf + base, sizeof buf - base, "%s", tail);
    }
    if (x->nnames == GRAPHDESC_MAX_NODES) return VL_FAIL(VL_EINPUT, "%s: more than %d layers", x->path, GRAPHDESC_MAX_NODES);
    snprintf(x->names[x->nnames++], NAMES_MAX + 1, "%s", buf);
    snprintf(out, NAMES_MAX + 1, "%s", buf);
    return VL_OK;
}

/* Adds layer_suffix with its data (owned from here on). */
static int put_tensor(imp_t *x, const char *layer, const char *suffix, int ndim, const int64_t *shape, float *data,
                      size_t numel)
{
    onnx_import_t *im = x->im;
    if (im->ntensors == x->tcap) {
        int cap = x->tcap ? 2 * x->tcap : 64;
        onnx_tensor_t *t = realloc(im->tensors, (size_t)cap * sizeof *t);
        if (!t) { free(data); return VL_FAIL(VL_EIO, "out of memory"); }
        im->tensors = t;
        x->tcap = cap;
    }
    onnx_tensor_t *t = &im->tensors[im->ntensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s_%s", layer, suffix);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = numel;
    t->data = data;
    return VL_OK;
}

/* The node's input k as a value of the given kind (0 = any), or a message. */
static int input(imp_t *x, size_t k, int kind, val_t **v)
{
    const Onnx__NodeProto *n = x->node;
    if (k >= n->n_input || !n->input[k] || !*n->input[k]) return node_fail(x, "input %zu is missing", k + 1);
    *v = find(x, n->input[k]);
    if (!*v) return node_fail(x, "input '%.80s' is neither an initializer nor an earlier node's output", n->input[k]);
    if (kind && (*v)->kind != kind)
        return node_fail(x, "input '%.80s' must be %s", n->input[k],
                         kind == V_TENSOR ? "an initializer (a constant tensor)" : kind == V_NODE ? "a layer's output" : "integers");
    return VL_OK;
}

static int output(imp_t *x, int kind, val_t **v)
{
    const Onnx__NodeProto *n = x->node;
    if (n->n_output < 1 || !n->output[0] || !*n->output[0]) return node_fail(x, "no output");
    *v = add_val(x, n->output[0], kind);
    return *v ? VL_OK : VL_FAIL(VL_EIO, "internal: the value table is full");
}

/* --------------------------------------------------------------- the ops */

static int map_conv(imp_t *x)
{
    const Onnx__NodeProto *n = x->node;
    val_t *in, *wv, *bv = NULL, *o;
    CHECK(input(x, 0, V_NODE, &in));
    CHECK(input(x, 1, V_TENSOR, &wv));
    if (n->n_input > 2 && n->input[2] && *n->input[2]) CHECK(input(x, 2, V_TENSOR, &bv));
    if (!in->spatial) return node_fail(x, "a convolution of features (not of a plane)");
    int64_t ks[4], st[4] = {1, 1}, pd[4] = {0, 0, 0, 0}, dl[4] = {1, 1};
    const int nk = attr_ints(n, "kernel_shape", ks, 4), ns = attr_ints(n, "strides", st, 4);
    const int np = attr_ints(n, "pads", pd, 4), nd = attr_ints(n, "dilations", dl, 4);
    const Onnx__AttributeProto *ap = attr(n, "auto_pad");
    if (ap && ap->has_s && ap->s.len && strncmp((const char *)ap->s.data, "NOTSET", ap->s.len))
        return node_fail(x, "auto_pad %.*s (valley takes explicit pads)", (int)ap->s.len, (const char *)ap->s.data);
    if (attr_int(n, "group", 1) != 1) return node_fail(x, "a grouped convolution (group %lld)", (long long)attr_int(n, "group", 1));
    if (nd < 0 || (nd > 0 && (nd != 2 || dl[0] != 1 || dl[1] != 1))) return node_fail(x, "dilated convolution");
    const Onnx__TensorProto *W = wv->t;
    if (W->n_dims != 4) return node_fail(x, "weight '%.60s' is not 4-D", W->name ? W->name : "");
    const int64_t cout = W->dims[0], cin = W->dims[1], kh = W->dims[2], kw = W->dims[3];
    if (nk < 0 || (nk > 0 && (nk != 2 || ks[0] != kh || ks[1] != kw))) return node_fail(x, "kernel_shape disagrees with the weight");
    if (kh != kw || kh < 1 || kh > 15) return node_fail(x, "a %lldx%lld kernel (valley: square, at most 15)", (long long)kh, (long long)kw);
    if (ns < 0 || (ns > 0 && (ns != 2 || st[0] != st[1] || st[0] < 1 || st[0] > 8)))
        return node_fail(x, "strides must be equal along both axes, 1 to 8");
    if (np < 0 || (np > 0 && (np != 4 || pd[0] != pd[1] || pd[0] != pd[2] || pd[0] != pd[3] || pd[0] < 0 || pd[0] > 15)))
        return node_fail(x, "pads must be equal on every side, 0 to 15");
    if (cin != in->c) return node_fail(x, "the weight expects %lld input channels, the input has %d", (long long)cin, in->c);
    if (cout < 1 || cout > (1 << 16)) return node_fail(x, "%lld output channels", (long long)cout);
    const int k = (int)kh, s = (int)st[0], p = (int)pd[0];
    const int h = (in->h + 2 * p - k) / s + 1, w = (in->w + 2 * p - k) / s + 1;
    if (in->h + 2 * p < k || in->w + 2 * p < k || h < 1 || w < 1)
        return node_fail(x, "a %dx%d kernel does not fit the %dx%d plane", k, k, in->h, in->w);
    char name[NAMES_MAX + 1];
    CHECK(layer_name(x, W->name, "conv", name));
    float *wd, *bd = NULL;
    size_t wn, bn = 0;
    CHECK(tensor_floats(x, W, &wd, &wn));
    const int64_t wshape[4] = {cout, cin, k, k};
    CHECK(put_tensor(x, name, "weight", 4, wshape, wd, wn));
    if (bv) {
        CHECK(tensor_floats(x, bv->t, &bd, &bn));
        if (bn != (size_t)cout) { free(bd); return node_fail(x, "the bias has %zu values for %lld channels", bn, (long long)cout); }
        CHECK(put_tensor(x, name, "bias", 1, &cout, bd, bn));
    }
    CHECK(output(x, V_NODE, &o));
    o->line = line(x, "conv %s %d %lld %d %d %d %d", name, in->line, (long long)cout, k, s, p, bv ? 1 : 0);
    o->spatial = 1, o->c = (int)cout, o->h = h, o->w = w;
    return o->line < 0 ? VL_FAIL(VL_EIO, "out of memory") : VL_OK;
}

static int map_bn(imp_t *x)
{
    const Onnx__NodeProto *n = x->node;
    val_t *in, *p[4], *o;
    CHECK(input(x, 0, V_NODE, &in));
    for (int k = 0; k < 4; k++) CHECK(input(x, (size_t)k + 1, V_TENSOR, &p[k]));
    if (!in->spatial) return node_fail(x, "batch norm of features (BatchNorm1d) is not implemented");
    const double eps = attr_float(n, "epsilon", 1e-5);
    if (fabs(eps - 1e-5) > 1e-9) return node_fail(x, "epsilon %g (valley's batch norm uses 1e-5)", eps);
    if (attr_int(n, "training_mode", 0)) return node_fail(x, "training_mode 1 (export the model in eval mode)");
    if (n->n_output > 1) return node_fail(x, "batch norm with running-statistics outputs (export with the model in eval mode)");
    char name[NAMES_MAX + 1];
    CHECK(layer_name(x, p[0]->t->name, "bn", name));
    static const char *suffix[4] = {"weight", "bias", "running_mean", "running_var"};
    for (int k = 0; k < 4; k++) {
        float *d;
        size_t nn;
        CHECK(tensor_floats(x, p[k]->t, &d, &nn));
        if (nn != (size_t)in->c) { free(d); return node_fail(x, "%s has %zu values for %d channels", suffix[k], nn, in->c); }
        if (k == 3)
            for (size_t i = 0; i < nn; i++)
                if (d[i] < 0) { free(d); return node_fail(x, "a negative running variance (channel %zu)", i); }
        const int64_t c = in->c;
        CHECK(put_tensor(x, name, suffix[k], 1, &c, d, nn));
    }
    CHECK(output(x, V_NODE, &o));
    o->line = line(x, "bn %s %d", name, in->line);
    o->spatial = 1, o->c = in->c, o->h = in->h, o->w = in->w;
    return o->line < 0 ? VL_FAIL(VL_EIO, "out of memory") : VL_OK;
}

/* Gemm (transB = 1: B is (out, in); 0: (in, out)) or MatMul (B is (in, out)): a linear layer. */
static int map_linear(imp_t *x, int gemm)
{
    const Onnx__NodeProto *n = x->node;
    val_t *in, *bv, *cv = NULL, *o;
    CHECK(input(x, 0, V_NODE, &in));
    CHECK(input(x, 1, V_TENSOR, &bv));
    if (gemm && n->n_input > 2 && n->input[2] && *n->input[2]) CHECK(input(x, 2, V_TENSOR, &cv));
    if (in->spatial) return node_fail(x, "a matrix product of a %dx%dx%d plane: flatten it first", in->c, in->h, in->w);
    const int transb = gemm ? (int)attr_int(n, "transB", 0) : 0;
    if (gemm && (attr_int(n, "transA", 0) || attr_float(n, "alpha", 1) != 1.0 || attr_float(n, "beta", 1) != 1.0))
        return node_fail(x, "transA, alpha or beta other than 0, 1, 1");
    const Onnx__TensorProto *B = bv->t;
    if (B->n_dims != 2) return node_fail(x, "the weight '%.60s' is not 2-D", B->name ? B->name : "");
    const int64_t fout = transb ? B->dims[0] : B->dims[1], fin = transb ? B->dims[1] : B->dims[0];
    if (fin != in->c) return node_fail(x, "the weight expects %lld features, the input has %d", (long long)fin, in->c);
    if (fout < 1 || fout > (1 << 20)) return node_fail(x, "%lld outputs", (long long)fout);
    char name[NAMES_MAX + 1];
    CHECK(layer_name(x, B->name, "linear", name));
    float *wd, *bd;
    size_t wn, bn;
    CHECK(tensor_floats(x, B, &wd, &wn));
    if (!transb) { /* (in, out) -> valley's (out, in) */
        float *tr = malloc(wn ? wn * sizeof(float) : 1);
        if (!tr) { free(wd); return VL_FAIL(VL_EIO, "out of memory"); }
        for (int64_t i = 0; i < fin; i++)
            for (int64_t j = 0; j < fout; j++) tr[j * fin + i] = wd[i * fout + j];
        free(wd);
        wd = tr;
    }
    const int64_t ws[2] = {fout, fin};
    CHECK(put_tensor(x, name, "weight", 2, ws, wd, wn));
    if (cv) {
        CHECK(tensor_floats(x, cv->t, &bd, &bn));
        if (bn != (size_t)fout) { free(bd); return node_fail(x, "the bias has %zu values for %lld outputs", bn, (long long)fout); }
    } else {
        bn = (size_t)fout;
        bd = calloc(bn, sizeof(float));
        if (!bd) return VL_FAIL(VL_EIO, "out of memory");
    }
    CHECK(put_tensor(x, name, "bias", 1, &fout, bd, bn));
    CHECK(output(x, V_NODE, &o));
    o->line = line(x, "linear %s %d %lld", name, in->line, (long long)fout);
    o->spatial = 0, o->c = (int)fout, o->h = o->w = 1;
    if (!gemm) o->bias = x->im->ntensors - 1; /* an Add of a bias may follow */
    return o->line < 0 ? VL_FAIL(VL_EIO, "out of memory") : VL_OK;
}

static int map_add(imp_t *x)
{
    val_t *a, *b, *o;
    CHECK(input(x, 0, 0, &a));
    CHECK(input(x, 1, 0, &b));
    if (a->kind == V_TENSOR && b->kind == V_NODE) { val_t *t = a; a = b; b = t; }
    if (a->kind == V_NODE && b->kind == V_TENSOR) { /* MatMul + Add: the linear layer's bias */
        if (a->bias < 0) return node_fail(x, "adding a constant to a layer other than a MatMul's output");
        float *d;
        size_t nn;
        CHECK(tensor_floats(x, b->t, &d, &nn));
        onnx_tensor_t *t = &x->im->tensors[a->bias];
        if (nn != t->numel) { free(d); return node_fail(x, "a bias of %zu values for %zu outputs", nn, t->numel); }
        free(t->data);
        t->data = d;
        CHECK(output(x, V_NODE, &o));
        o->line = a->line, o->spatial = a->spatial, o->c = a->c, o->h = a->h, o->w = a->w; /* the same layer; bias done */
        return VL_OK;
    }
    if (a->kind != V_NODE || b->kind != V_NODE) return node_fail(x, "an Add of constants");
    if (a->spatial != b->spatial || a->c != b->c || a->h != b->h || a->w != b->w)
        return node_fail(x, "an Add of shapes %dx%dx%d and %dx%dx%d (valley adds equal shapes, no broadcasting)", a->c, a->h,
                         a->w, b->c, b->h, b->w);
    CHECK(output(x, V_NODE, &o));
    o->line = line(x, "add %d %d", a->line, b->line);
    o->spatial = a->spatial, o->c = a->c, o->h = a->h, o->w = a->w;
    return o->line < 0 ? VL_FAIL(VL_EIO, "out of memory") : VL_OK;
}

/* Relu, MaxPool, AveragePool, GlobalAveragePool, Flatten, Reshape, Identity, Dropout. */
static int map_simple(imp_t *x, const char *op)
{
    const Onnx__NodeProto *n = x->node;
    val_t *in, *o;
    if (!strcmp(op, "Identity") || !strcmp(op, "Dropout")) { /* no-ops at inference: the output names the input */
        CHECK(input(x, 0, 0, &in));
        if (!strcmp(op, "Dropout") && n->n_output > 1 && n->output[1] && *n->output[1]) return node_fail(x, "a dropout mask output");
        const val_t copy = *in;
        CHECK(output(x, copy.kind, &o));
        const char *name = o->name;
        *o = copy;
        o->name = name;
        return VL_OK;
    }
    CHECK(input(x, 0, V_NODE, &in));
    const val_t src = *in;
    CHECK(output(x, V_NODE, &o));
    *o = (val_t){.name = o->name, .kind = V_NODE, .bias = -1, .spatial = src.spatial, .c = src.c, .h = src.h, .w = src.w};
    if (!strcmp(op, "Relu")) {
        o->line = line(x, "relu %d", src.line);
    } else if (!strcmp(op, "MaxPool")) {
        int64_t ks[4] = {0, 0}, st[4] = {0, 0}, pd[4] = {0, 0, 0, 0}, dl[4] = {1, 1};
        const int nk = attr_ints(n, "kernel_shape", ks, 4), ns = attr_ints(n, "strides", st, 4);
        const int np = attr_ints(n, "pads", pd, 4), nd = attr_ints(n, "dilations", dl, 4);
        if (!src.spatial) return node_fail(x, "a max-pool of features");
        if (nk != 2 || ks[0] != 2 || ks[1] != 2 || ns != 2 || st[0] != 2 || st[1] != 2 || np < 0 || pd[0] || pd[1] || pd[2] ||
            pd[3] || nd < 0 || dl[0] != 1 || dl[1] != 1 || attr_int(n, "ceil_mode", 0) || attr_int(n, "storage_order", 0))
            return node_fail(x, "valley's max-pool is 2x2 with stride 2, no padding, floor mode");
        if (n->n_output > 1 && n->output[1] && *n->output[1]) return node_fail(x, "max-pool indices as an output");
        if (src.h < 2 || src.w < 2) return node_fail(x, "a max-pool of a %dx%d plane", src.h, src.w);
        o->line = line(x, "maxpool %d", src.line);
        o->h = src.h / 2, o->w = src.w / 2;
    } else if (!strcmp(op, "GlobalAveragePool") || !strcmp(op, "AveragePool") || !strcmp(op, "ReduceMean")) {
        if (!src.spatial) return node_fail(x, "an average pool of features");
        if (op[0] == 'R') { /* x.mean(dim=(2, 3)): axes as an attribute (opset < 18) or an input */
            int64_t ax[INTS_MAX];
            int na = attr_ints(n, "axes", ax, INTS_MAX);
            if (na == 0 && n->n_input > 1 && n->input[1] && *n->input[1]) {
                val_t *av;
                CHECK(input(x, 1, 0, &av));
                if (av->kind == V_INTS) memcpy(ax, av->v, sizeof ax), na = av->n;
                else if (av->kind == V_TENSOR) CHECK(tensor_ints(x, av->t, ax, &na));
                else na = -1;
            }
            for (int i = 0; i < na; i++) ax[i] = ax[i] < 0 ? ax[i] + 4 : ax[i];
            if (na != 2 || !((ax[0] == 2 && ax[1] == 3) || (ax[0] == 3 && ax[1] == 2)))
                return node_fail(x, "a mean over other axes than the plane's (2, 3)");
        }
        if (op[0] == 'A') {
            int64_t ks[4] = {0, 0}, pd[4] = {0, 0, 0, 0};
            const int nk = attr_ints(n, "kernel_shape", ks, 4), np = attr_ints(n, "pads", pd, 4);
            if (nk != 2 || ks[0] != src.h || ks[1] != src.w || np < 0 || pd[0] || pd[1] || pd[2] || pd[3] ||
                attr_int(n, "ceil_mode", 0))
                return node_fail(x, "an average pool over part of the %dx%d plane (valley pools the whole plane)", src.h, src.w);
        }
        o->line = line(x, "avgpool %d", src.line);
        o->spatial = 0, o->h = o->w = 1;
    } else if (!strcmp(op, "Flatten") || !strcmp(op, "Reshape")) {
        if (op[0] == 'F' && attr_int(n, "axis", 1) != 1) return node_fail(x, "a flatten at axis %lld (valley: 1)", (long long)attr_int(n, "axis", 1));
        if (op[0] == 'R') { /* to (N, C*H*W): [N or -1 or 0 or the batch, -1 or C*H*W] */
            val_t *sv;
            CHECK(input(x, 1, 0, &sv));
            int64_t v[INTS_MAX];
            int nv = 0;
            if (sv->kind == V_TENSOR) CHECK(tensor_ints(x, sv->t, v, &nv));
            else if (sv->kind == V_INTS) memcpy(v, sv->v, sizeof v), nv = sv->n;
            else return node_fail(x, "a shape that is computed from layer values");
            const int64_t f = (int64_t)src.c * src.h * src.w;
            if (nv != 2 || !(v[1] == -1 || v[1] == f) || !(v[0] == 0 || v[0] == -1 || v[0] == BATCH_SENTINEL || v[0] > 0) ||
                (v[0] == -1 && v[1] == -1))
                return node_fail(x, "a reshape other than to (batch, %lld)", (long long)f);
        }
        o->spatial = 0, o->c = src.c * src.h * src.w, o->h = o->w = 1;
        o->line = src.spatial ? line(x, "flatten %d", src.line) : src.line;
    } else {
        return node_fail(x, "internal: map_simple of %s", op);
    }
    return o->line < 0 ? VL_FAIL(VL_EIO, "out of memory") : VL_OK;
}

/* Shape arithmetic on the batch size: Shape, Gather, Unsqueeze, Concat, Constant. */
static int map_shape_op(imp_t *x, const char *op)
{
    const Onnx__NodeProto *n = x->node;
    val_t *o, *a;
    int64_t v[INTS_MAX];
    int nv = 0;
    if (!strcmp(op, "Constant")) {
        const Onnx__AttributeProto *at = attr(n, "value");
        if (!at || !at->t) return node_fail(x, "a constant other than a tensor 'value'");
        CHECK(output(x, V_TENSOR, &o));
        o->t = at->t;
        if (at->t->has_data_type && at->t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64) {
            size_t numel = 0;
            CHECK(tensor_numel(x, at->t, &numel));
            if (numel <= INTS_MAX) {
                CHECK(tensor_ints(x, at->t, o->v, &o->n));
                o->kind = V_INTS;
            }
        }
        return VL_OK;
    }
    if (!strcmp(op, "Shape")) {
        CHECK(input(x, 0, V_NODE, &a));
        if (a->spatial) v[0] = BATCH_SENTINEL, v[1] = a->c, v[2] = a->h, v[3] = a->w, nv = 4;
        else v[0] = BATCH_SENTINEL, v[1] = a->c, nv = 2;
    } else if (!strcmp(op, "Gather")) {
        val_t *iv;
        CHECK(input(x, 0, V_INTS, &a));
        CHECK(input(x, 1, 0, &iv));
        int64_t idx[INTS_MAX];
        int ni = 0;
        if (iv->kind == V_INTS) memcpy(idx, iv->v, sizeof idx), ni = iv->n;
        else if (iv->kind == V_TENSOR) CHECK(tensor_ints(x, iv->t, idx, &ni));
        else return node_fail(x, "gather indices from layer values");
        if (attr_int(n, "axis", 0) != 0 || ni != 1) return node_fail(x, "a gather other than one element of a shape");
        const int64_t i = idx[0] < 0 ? idx[0] + a->n : idx[0];
        if (i < 0 || i >= a->n) return node_fail(x, "index %lld of a %d-element shape", (long long)idx[0], a->n);
        v[0] = a->v[i], nv = 1;
    } else if (!strcmp(op, "Unsqueeze")) {
        CHECK(input(x, 0, V_INTS, &a));
        if (a->n != 1) return node_fail(x, "an unsqueeze of a %d-element shape", a->n);
        v[0] = a->v[0], nv = 1;
    } else if (!strcmp(op, "Concat")) {
        for (size_t k = 0; k < n->n_input; k++) {
            CHECK(input(x, k, V_INTS, &a));
            if (nv + a->n > INTS_MAX) return node_fail(x, "a shape of more than %d values", INTS_MAX);
            for (int i = 0; i < a->n; i++) v[nv++] = a->v[i];
        }
    }
    CHECK(output(x, V_INTS, &o));
    memcpy(o->v, v, sizeof v);
    o->n = nv;
    return VL_OK;
}

/* ------------------------------------------------------------- the model */

static int graph_input_of(imp_t *x, const Onnx__GraphProto *g, const Onnx__ValueInfoProto **vin)
{
    *vin = NULL;
    for (size_t i = 0; i < g->n_input; i++) {
        const Onnx__ValueInfoProto *v = g->input[i];
        if (!v || !v->name) continue;
        int is_init = 0;
        for (size_t k = 0; k < g->n_initializer && !is_init; k++)
            is_init = g->initializer[k]->name && !strcmp(g->initializer[k]->name, v->name);
        if (is_init) continue;
        if (*vin) return VL_FAIL(VL_EINPUT, "%s: the graph has several inputs ('%.60s', '%.60s'); valley's networks take one",
                                 x->path, (*vin)->name, v->name);
        *vin = v;
    }
    if (!*vin) return VL_FAIL(VL_EINPUT, "%s: the graph has no input", x->path);
    return VL_OK;
}

static int parse_graph(imp_t *x, const Onnx__ModelProto *mp)
{
    onnx_import_t *im = x->im;
    const Onnx__GraphProto *g = mp->graph;
    if (!g) return VL_FAIL(VL_EINPUT, "%s: no graph in the model", x->path);
    if (mp->producer_name) snprintf(im->producer, sizeof im->producer, "%s", mp->producer_name);
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
        if (o && o->domain && *o->domain && strcmp(o->domain, "ai.onnx"))
            return VL_FAIL(VL_EINPUT, "%s: operators of domain '%.60s' (valley reads the default ONNX domain)", x->path, o->domain);
    }
    const Onnx__ValueInfoProto *vin;
    CHECK(graph_input_of(x, g, &vin));
    const Onnx__TypeProto *ty = vin->type;
    if (!ty || ty->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !ty->tensor_type || !ty->tensor_type->shape)
        return VL_FAIL(VL_EINPUT, "%s: input '%.60s' has no tensor shape", x->path, vin->name);
    const Onnx__TypeProto__Tensor *tt = ty->tensor_type;
    if (!tt->has_elem_type || tt->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return VL_FAIL(VL_EINPUT, "%s: input '%.60s' is not float", x->path, vin->name);
    const Onnx__TensorShapeProto *sh = tt->shape;
    if (sh->n_dim != 4 && sh->n_dim != 2)
        return VL_FAIL(VL_EINPUT, "%s: input '%.60s' has %zu dimensions (valley: (N, C, H, W) or (N, features))", x->path,
                       vin->name, sh->n_dim);
    int64_t d[4] = {1, 1, 1, 1};
    for (size_t i = 1; i < sh->n_dim; i++) {
        const Onnx__TensorShapeProto__Dimension *dm = sh->dim[i];
        if (!dm || dm->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE || dm->dim_value < 1 ||
            dm->dim_value > (1 << 16))
            return VL_FAIL(VL_EINPUT, "%s: input '%.60s': dimension %zu is dynamic or out of range (export with a fixed "
                                      "image shape; only the batch dimension may be symbolic)", x->path, vin->name, i);
        d[i] = dm->dim_value;
    }
    im->spatial = sh->n_dim == 4;
    im->in_c = (int)d[1], im->in_h = im->spatial ? (int)d[2] : 1, im->in_w = im->spatial ? (int)d[3] : 1;
    if ((double)im->in_c * im->in_h * im->in_w > (double)(1 << 24))
        return VL_FAIL(VL_EINPUT, "%s: input '%.60s' has more than 2^24 values per sample", x->path, vin->name);
    /* every value the graph can make: the input, the initializers, one output per node */
    x->cap = (int)(2 + g->n_initializer + g->n_node);
    if (g->n_initializer > (size_t)GRAPHDESC_MAX_NODES * 8 || g->n_node > GRAPHDESC_MAX_NODES)
        return VL_FAIL(VL_EINPUT, "%s: %zu initializers and %zu nodes (at most %d nodes)", x->path, g->n_initializer,
                       g->n_node, GRAPHDESC_MAX_NODES);
    x->vals = calloc((size_t)x->cap, sizeof *x->vals);
    if (!x->vals) return VL_FAIL(VL_EIO, "out of memory");
    val_t *v0 = add_val(x, vin->name, V_NODE);
    if (!v0) return VL_FAIL(VL_EIO, "out of memory");
    v0->line = line(x, "input %s", im->spatial ? "spatial" : "dense");
    v0->spatial = im->spatial, v0->c = im->in_c, v0->h = im->in_h, v0->w = im->in_w;
    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *t = g->initializer[i];
        if (!t || !t->name || !*t->name) return VL_FAIL(VL_EINPUT, "%s: initializer %zu has no name", x->path, i + 1);
        val_t *v = add_val(x, t->name, V_TENSOR);
        if (!v) return VL_FAIL(VL_EIO, "out of memory");
        v->t = t;
        if (t->has_data_type && t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 && t->n_dims <= 1) {
            x->node = NULL;
            size_t numel = 0;
            if (tensor_numel(x, t, &numel) == VL_OK && numel <= INTS_MAX && tensor_ints(x, t, v->v, &v->n) == VL_OK) v->kind = V_INTS;
            vl_error_clear();
        }
    }
    if (g->n_node > GRAPHDESC_MAX_NODES) return VL_FAIL(VL_EINPUT, "%s: %zu nodes (at most %d)", x->path, g->n_node, GRAPHDESC_MAX_NODES);
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *n = g->node[i];
        x->node = n;
        x->node_index = (int)i + 1;
        if (!n || !n->op_type) return VL_FAIL(VL_EINPUT, "%s: node %zu has no op_type", x->path, i + 1);
        if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx")) return node_fail(x, "an operator of domain '%.60s'", n->domain);
        const char *op = n->op_type;
        int st;
        if (!strcmp(op, "Conv")) st = map_conv(x);
        else if (!strcmp(op, "BatchNormalization")) st = map_bn(x);
        else if (!strcmp(op, "Gemm")) st = map_linear(x, 1);
        else if (!strcmp(op, "MatMul")) st = map_linear(x, 0);
        else if (!strcmp(op, "Add")) st = map_add(x);
        else if (!strcmp(op, "Relu") || !strcmp(op, "MaxPool") || !strcmp(op, "AveragePool") || !strcmp(op, "ReduceMean") ||
                 !strcmp(op, "GlobalAveragePool") || !strcmp(op, "Flatten") || !strcmp(op, "Reshape") ||
                 !strcmp(op, "Identity") || !strcmp(op, "Dropout"))
            st = map_simple(x, op);
        else if (!strcmp(op, "Shape") || !strcmp(op, "Gather") || !strcmp(op, "Unsqueeze") || !strcmp(op, "Concat") ||
                 !strcmp(op, "Constant"))
            st = map_shape_op(x, op);
        else
            st = node_fail(x, "valley cannot run this operator (it runs Conv, BatchNormalization, Relu, MaxPool, "
                              "AveragePool, GlobalAveragePool, ReduceMean over the plane, Add, Flatten, Reshape, Gemm, "
                              "MatMul, Dropout, Identity)");
        CHECK(st);
    }
    x->node = NULL;
    if (g->n_output != 1 || !g->output[0] || !g->output[0]->name)
        return VL_FAIL(VL_EINPUT, "%s: the graph has %zu outputs (valley's networks have one)", x->path, g->n_output);
    const val_t *out = find(x, g->output[0]->name);
    if (!out || out->kind != V_NODE) return VL_FAIL(VL_EINPUT, "%s: the output '%.60s' is not a layer's output", x->path, g->output[0]->name);
    if (out->spatial) return VL_FAIL(VL_EINPUT, "%s: the output '%.60s' is a plane, not (N, classes)", x->path, g->output[0]->name);
    if (out->line != x->nlines - 1)
        return VL_FAIL(VL_EINPUT, "%s: the output '%.60s' is not the last layer (layers after it feed nothing)", x->path,
                       g->output[0]->name);
    im->out_dim = out->c;
    im->desc = x->desc;
    x->desc = NULL;
    return VL_OK;
}

void onnx_import_free(onnx_import_t *im)
{
    if (!im) return;
    for (int i = 0; i < im->ntensors; i++) free(im->tensors[i].data);
    free(im->tensors);
    free(im->desc);
    memset(im, 0, sizeof *im);
}

int onnx_parse(const uint8_t *buf, size_t len, const char *path, onnx_import_t *im)
{
    memset(im, 0, sizeof *im);
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, buf);
    if (!mp) return VL_FAIL(VL_EINPUT, "%s: not an ONNX model (the protobuf message does not parse)", path);
    imp_t x = {.path = path, .im = im};
    x.names = calloc(GRAPHDESC_MAX_NODES, sizeof *x.names);
    int st = x.names ? parse_graph(&x, mp) : VL_FAIL(VL_EIO, "out of memory");
    free(x.names);
    free(x.vals);
    free(x.desc);
    onnx__model_proto__free_unpacked(mp, NULL);
    if (st) onnx_import_free(im);
    CHECK(st);
    return VL_OK;
}

/* ------------------------------------------------------------- the command */

static int read_file(const char *path, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return VL_FAIL(VL_EINPUT, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return VL_FAIL(VL_EINPUT, "%s: not a regular file", path);
    }
    if ((size_t)sb.st_size > ONNX_FILE_MAX) {
        fclose(f);
        return VL_FAIL(VL_EINPUT, "%s: %lld bytes (at most 2 GiB, protobuf's limit)", path, (long long)sb.st_size);
    }
    *len = (size_t)sb.st_size;
    *buf = malloc(*len ? *len : 1);
    if (!*buf) { fclose(f); return VL_FAIL(VL_EIO, "out of memory for %s", path); }
    if (fread(*buf, 1, *len, f) != *len) {
        fclose(f);
        free(*buf);
        *buf = NULL;
        return VL_FAIL(VL_EIO, "%s: read error", path);
    }
    fclose(f);
    return VL_OK;
}

/* The imported tensors into the model's w and state, each by name and shape. */
static int fill_tensors(const char *path, const onnx_import_t *im, const vl_model_t *m, float *w, float *state)
{
    int nt;
    const vl_tensor_t *t = model_tensors(m, &nt);
    if (nt != im->ntensors)
        return VL_FAIL(VL_EINPUT, "%s: %d tensors imported, the network has %d", path, im->ntensors, nt);
    for (int i = 0; i < nt; i++) {
        const onnx_tensor_t *s = NULL;
        for (int k = 0; k < im->ntensors && !s; k++)
            if (!strcmp(im->tensors[k].name, t[i].name)) s = &im->tensors[k];
        if (!s) return VL_FAIL(VL_EINPUT, "%s: no tensor for %s", path, t[i].name);
        int same = s->numel == t[i].numel && s->ndim == t[i].ndim;
        for (int k = 0; same && k < s->ndim; k++) same = s->shape[k] == t[i].shape[k];
        if (!same) return VL_FAIL(VL_EINPUT, "%s: tensor %s has another shape than the layer needs", path, t[i].name);
        memcpy((t[i].kind == TENSOR_PARAM ? w : state) + t[i].offset, s->data, s->numel * sizeof(float));
    }
    return VL_OK;
}

static int import_one(const vl_deck_t *d, const char *path, const char *outdir)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK(read_file(path, &buf, &len));
    onnx_import_t im;
    int st = onnx_parse(buf, len, path, &im);
    free(buf);
    CHECK(st);
    vl_model_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.kind = MODEL_GRAPH;
    cfg.graph = graphdesc_intern(im.desc);
    cfg.width_factor = 1.0;
    cfg.shortcuts = cfg.bn = 1;
    cfg.in_c = im.in_c, cfg.in_h = im.in_h, cfg.in_w = im.in_w, cfg.out_dim = im.out_dim;
    vl_model_t *m = NULL;
    float *w = NULL, *state = NULL;
    if (!cfg.graph) st = VL_FAIL(VL_EIO, "out of memory");
    if (!st) {
        st = model_create(&cfg, 1, &m);
        if (st) { /* a graph the importer accepted but the builder did not: say which file */
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", vl_error_message());
            vl_error_clear();
            st = VL_FAIL(VL_EINPUT, "%s: %s", path, msg);
        }
    }
    if (!st) {
        w = vl_calloc(model_nparams(m) + 1, sizeof(float), "imported weights");
        state = vl_calloc(model_nstate(m) + 1, sizeof(float), "imported statistics");
        if (!w || !state) st = vl_error_status();
    }
    if (!st) st = fill_tensors(path, &im, m, w, state);
    char out[4200], title[4400];
    snprintf(out, sizeof out, "%s/model.nc", outdir);
    snprintf(title, sizeof title, "valley model imported from %s", path);
    if (!st) st = ncio_mkdirs(outdir);
    if (!st) {
        vl_ckpt_t c = {.m = m, .cfg = &cfg, .dataset = deck_str(d, "data.dataset"), .w = w, .state = state,
                       .title = title, .deck_text = deck_text(d)};
        st = ckpt_write(out, &c);
    }
    if (!st)
        vl_log(MPI_COMM_SELF, "%s (from %s): %s, %d tensors, for data.dataset = %s -> %s", path,
               *im.producer ? im.producer : "an unnamed producer", model_describe(m), im.ntensors,
               deck_str(d, "data.dataset"), out);
    free(w);
    free(state);
    model_free(m);
    onnx_import_free(&im);
    CHECK(st);
    return VL_OK;
}

int onnx_import_command(vl_comm_t *c, vl_deck_t *d, int ninputs, char **inputs, const char *outdir)
{
    if (ninputs != 1) return VL_FAIL_ALL(VL_EINPUT, "import: give one MODEL.onnx (got %d files)", ninputs);
    int st = c->rank == 0 ? import_one(d, inputs[0], outdir) : VL_OK;
    return comm_agree_failure(c->world, st);
}
