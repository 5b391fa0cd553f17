/* onnx_export.c — `valley export`: any valley model out as ONNX (opset 13), built from the
 * model's description (model_graph_text) and its tensors, serialised with protobuf-c. */
#include "gitversion.h"
#include "valley/onnx.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gen/onnx.pb-c.h"
#include "valley/bma.h"
#include "valley/ckpt.h"
#include "valley/curve.h"
#include "valley/error.h"
#include "valley/log.h"
#include "valley/ncio.h"
#include "valley/train.h"

/* Every allocation of one export, freed together. */
typedef struct {
    void **p;
    size_t n, cap;
    int failed;
} arena_t;

static void *ar_alloc(arena_t *a, size_t size)
{
    if (a->failed) return NULL;
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 256;
        void **p = realloc(a->p, cap * sizeof *p);
        if (!p) { a->failed = 1; return NULL; }
        a->p = p;
        a->cap = cap;
    }
    void *q = calloc(1, size ? size : 1);
    if (!q) { a->failed = 1; return NULL; }
    return a->p[a->n++] = q;
}

static char *ar_printf(arena_t *a, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char *s = ar_alloc(a, strlen(buf) + 1);
    if (s) strcpy(s, buf);
    return s;
}

static void ar_free(arena_t *a)
{
    for (size_t i = 0; i < a->n; i++) free(a->p[i]);
    free(a->p);
}

typedef struct {
    arena_t ar;
    Onnx__NodeProto **nodes;
    size_t nnodes, cap;
    char **value;   /* description line -> the ONNX value holding its output */
    Onnx__TensorProto *extra[64]; /* initializers that are not the model's tensors (dropout ratios) */
    int nextra;
} exp_t;

/* A float scalar initializer (a dropout's ratio). */
static const char *scalar_init(exp_t *e, const char *name, float v)
{
    if (e->nextra == 64) return NULL;
    Onnx__TensorProto *tp = ar_alloc(&e->ar, sizeof *tp);
    float *val = ar_alloc(&e->ar, sizeof(float));
    if (!tp || !val) return NULL;
    onnx__tensor_proto__init(tp);
    *val = v;
    tp->name = ar_printf(&e->ar, "%s", name);
    tp->has_data_type = 1, tp->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tp->has_raw_data = 1, tp->raw_data.len = sizeof(float), tp->raw_data.data = (uint8_t *)val;
    e->extra[e->nextra++] = tp;
    return tp->name;
}

/* A new attribute of the given type (its value set by the caller). */
static Onnx__AttributeProto *attr_new(exp_t *e, const char *name, Onnx__AttributeProto__AttributeType type)
{
    Onnx__AttributeProto *a = ar_alloc(&e->ar, sizeof *a);
    if (!a) return NULL;
    onnx__attribute_proto__init(a);
    a->name = ar_printf(&e->ar, "%s", name);
    a->has_type = 1;
    a->type = type;
    return a;
}

static Onnx__AttributeProto *attr_ints(exp_t *e, const char *name, int n, const int64_t *v)
{
    Onnx__AttributeProto *a = attr_new(e, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *iv = ar_alloc(&e->ar, (size_t)n * sizeof(int64_t));
    if (!a || !iv) return NULL;
    memcpy(iv, v, (size_t)n * sizeof(int64_t));
    a->n_ints = (size_t)n;
    a->ints = iv;
    return a;
}

static Onnx__AttributeProto *attr_int(exp_t *e, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = attr_new(e, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) a->has_i = 1, a->i = v;
    return a;
}

static Onnx__AttributeProto *attr_float(exp_t *e, const char *name, float v)
{
    Onnx__AttributeProto *a = attr_new(e, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) a->has_f = 1, a->f = v;
    return a;
}

/* A node op(inputs...) -> out, with attributes (NULL-terminated after the inputs' count). */
static Onnx__NodeProto *node(exp_t *e, const char *op, const char *name, const char *out, int nin, const char **in,
                             int nattr, Onnx__AttributeProto **attrs)
{
    Onnx__NodeProto *n = ar_alloc(&e->ar, sizeof *n);
    char **ins = ar_alloc(&e->ar, (size_t)nin * sizeof(char *));
    char **outs = ar_alloc(&e->ar, sizeof(char *));
    Onnx__AttributeProto **at = ar_alloc(&e->ar, (size_t)nattr * sizeof *at);
    if (!n || !ins || !outs || !at) return NULL;
    onnx__node_proto__init(n);
    n->op_type = ar_printf(&e->ar, "%s", op);
    n->name = ar_printf(&e->ar, "%s", name);
    for (int i = 0; i < nin; i++) ins[i] = ar_printf(&e->ar, "%s", in[i]);
    outs[0] = ar_printf(&e->ar, "%s", out);
    n->n_input = (size_t)nin, n->input = ins;
    n->n_output = 1, n->output = outs;
    for (int i = 0; i < nattr; i++) {
        if (!attrs[i]) return NULL;
        at[i] = attrs[i];
    }
    n->n_attribute = (size_t)nattr, n->attribute = at;
    if (e->nnodes == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 64;
        Onnx__NodeProto **p = realloc(e->nodes, cap * sizeof *p);
        if (!p) return NULL;
        e->nodes = p;
        e->cap = cap;
    }
    return e->nodes[e->nnodes++] = n;
}

static Onnx__ValueInfoProto *value_info(exp_t *e, const char *name, int rank, const int64_t *dims)
{
    Onnx__ValueInfoProto *v = ar_alloc(&e->ar, sizeof *v);
    Onnx__TypeProto *t = ar_alloc(&e->ar, sizeof *t);
    Onnx__TypeProto__Tensor *tt = ar_alloc(&e->ar, sizeof *tt);
    Onnx__TensorShapeProto *sh = ar_alloc(&e->ar, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dm = ar_alloc(&e->ar, (size_t)rank * sizeof *dm);
    if (!v || !t || !tt || !sh || !dm) return NULL;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(t);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (int i = 0; i < rank; i++) {
        dm[i] = ar_alloc(&e->ar, sizeof **dm);
        if (!dm[i]) return NULL;
        onnx__tensor_shape_proto__dimension__init(dm[i]);
        if (i == 0) { /* the batch: symbolic */
            dm[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dm[i]->dim_param = ar_printf(&e->ar, "batch");
        } else {
            dm[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dm[i]->dim_value = dims[i];
        }
    }
    sh->n_dim = (size_t)rank, sh->dim = dm;
    tt->has_elem_type = 1, tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, tt->shape = sh;
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, t->tensor_type = tt;
    v->name = ar_printf(&e->ar, "%s", name), v->type = t;
    return v;
}

/* The ONNX model of m with weights w and statistics state. */
static int build(exp_t *e, const vl_model_t *m, const vl_model_config_t *cfg, const float *w, const float *state,
                 const char *doc, Onnx__ModelProto *mp, Onnx__GraphProto *g)
{
    char *text = model_graph_text(m);
    if (!text) return VL_FAIL(VL_EINPUT, "export: this model has no description to export");
    int nl = 0;
    for (const char *p = text; *p; p++) nl += *p == '\n';
    e->value = ar_alloc(&e->ar, (size_t)(nl + 1) * sizeof(char *));
    int st = e->value ? VL_OK : VL_FAIL(VL_EIO, "out of memory");
    int idx = 0;
    const char *last = NULL;
    for (char *ln = text, *nx; !st && ln && *ln; ln = nx, idx++) {
        nx = strchr(ln, '\n');
        if (nx) *nx++ = '\0';
        char op[16] = "", name[80] = "";
        int a = 0, b = 0, c = 0, k = 0, s = 0, p = 0, bias = 0;
        double pr = 0;
        char out[32];
        snprintf(out, sizeof out, "t%d", idx);
        const char *ins[5];
        sscanf(ln, "%15s", op);
        Onnx__AttributeProto *at[5];
        if (!strcmp(op, "input")) {
            if (strstr(ln, "dense")) { /* the images flattened, as valley's dense input layer reads them */
                ins[0] = "x";
                if (!node(e, "Flatten", "flatten_input", out, 1, ins, 1, (at[0] = attr_int(e, "axis", 1), at))) break;
                e->value[idx] = ar_printf(&e->ar, "%s", out);
            } else {
                e->value[idx] = ar_printf(&e->ar, "x");
            }
        } else if (!strcmp(op, "conv") && sscanf(ln, "conv %79s %d %d %d %d %d %d", name, &a, &c, &k, &s, &p, &bias) == 7) {
            ins[0] = e->value[a], ins[1] = ar_printf(&e->ar, "%s.weight", name), ins[2] = ar_printf(&e->ar, "%s.bias", name);
            const int64_t ks[2] = {k, k}, ss[2] = {s, s}, ps[4] = {p, p, p, p};
            at[0] = attr_ints(e, "kernel_shape", 2, ks), at[1] = attr_ints(e, "strides", 2, ss), at[2] = attr_ints(e, "pads", 4, ps);
            if (!node(e, "Conv", name, out, bias ? 3 : 2, ins, 3, at)) break;
        } else if (!strcmp(op, "linear") && sscanf(ln, "linear %79s %d %d", name, &a, &c) == 3) {
            ins[0] = e->value[a], ins[1] = ar_printf(&e->ar, "%s.weight", name), ins[2] = ar_printf(&e->ar, "%s.bias", name);
            at[0] = attr_int(e, "transB", 1);
            if (!node(e, "Gemm", name, out, 3, ins, 1, at)) break;
        } else if (!strcmp(op, "bn") && sscanf(ln, "bn %79s %d", name, &a) == 2) {
            ins[0] = e->value[a];
            ins[1] = ar_printf(&e->ar, "%s.weight", name), ins[2] = ar_printf(&e->ar, "%s.bias", name);
            ins[3] = ar_printf(&e->ar, "%s.running_mean", name), ins[4] = ar_printf(&e->ar, "%s.running_var", name);
            at[0] = attr_float(e, "epsilon", 1e-5f), at[1] = attr_float(e, "momentum", 0.9f);
            if (!node(e, "BatchNormalization", name, out, 5, ins, 2, at)) break;
        } else if (!strcmp(op, "relu") && sscanf(ln, "relu %d", &a) == 1) {
            ins[0] = e->value[a];
            if (!node(e, "Relu", ar_printf(&e->ar, "relu_%d", idx), out, 1, ins, 0, at)) break;
        } else if (!strcmp(op, "maxpool") && sscanf(ln, "maxpool %d", &a) == 1) {
            ins[0] = e->value[a];
            const int64_t two[2] = {2, 2};
            at[0] = attr_ints(e, "kernel_shape", 2, two), at[1] = attr_ints(e, "strides", 2, two);
            if (!node(e, "MaxPool", ar_printf(&e->ar, "maxpool_%d", idx), out, 1, ins, 2, at)) break;
        } else if (!strcmp(op, "avgpool") && sscanf(ln, "avgpool %d", &a) == 1) { /* valley's pool gives features */
            ins[0] = e->value[a];
            char *mid = ar_printf(&e->ar, "t%d_pooled", idx);
            if (!node(e, "GlobalAveragePool", ar_printf(&e->ar, "avgpool_%d", idx), mid, 1, ins, 0, at)) break;
            ins[0] = mid;
            at[0] = attr_int(e, "axis", 1);
            if (!node(e, "Flatten", ar_printf(&e->ar, "avgpool_%d_flatten", idx), out, 1, ins, 1, at)) break;
        } else if (!strcmp(op, "flatten") && sscanf(ln, "flatten %d", &a) == 1) {
            ins[0] = e->value[a];
            at[0] = attr_int(e, "axis", 1);
            if (!node(e, "Flatten", ar_printf(&e->ar, "flatten_%d", idx), out, 1, ins, 1, at)) break;
        } else if (!strcmp(op, "dropout") && sscanf(ln, "dropout %d %lf", &a, &pr) == 2) {
            ins[0] = e->value[a];
            ins[1] = scalar_init(e, ar_printf(&e->ar, "dropout_%d.ratio", idx), (float)pr);
            if (!ins[1]) { st = VL_FAIL(VL_EINPUT, "export: more than 64 dropout layers"); break; }
            if (!node(e, "Dropout", ar_printf(&e->ar, "dropout_%d", idx), out, 2, ins, 0, at)) break;
        } else if (!strcmp(op, "add") && sscanf(ln, "add %d %d", &a, &b) == 2) {
            ins[0] = e->value[a], ins[1] = e->value[b];
            if (!node(e, "Add", ar_printf(&e->ar, "add_%d", idx), out, 2, ins, 0, at)) break;
        } else {
            st = VL_FAIL(VL_EINPUT, "export: line %d of the model's description ('%.60s') has no ONNX counterpart here", idx + 1, ln);
            break;
        }
        if (strcmp(op, "input")) e->value[idx] = ar_printf(&e->ar, "%s", out);
        last = e->value[idx];
    }
    free(text);
    if (!st && (e->ar.failed || idx < nl)) st = VL_FAIL(VL_EIO, "out of memory building the ONNX graph");
    CHECK(st);
    /* the last node's output is the graph's: named "logits" */
    Onnx__NodeProto *final = e->nnodes ? e->nodes[e->nnodes - 1] : NULL;
    if (!final || strcmp(final->output[0], last)) return VL_FAIL(VL_EINPUT, "export: the last layer is not the output");
    final->output[0] = ar_printf(&e->ar, "logits");
    /* initializers: every tensor, as LAYER.weight, LAYER.bias, LAYER.running_mean, LAYER.running_var */
    int nt;
    const vl_tensor_t *t = model_tensors(m, &nt);
    Onnx__TensorProto **init = ar_alloc(&e->ar, (size_t)(nt + e->nextra) * sizeof *init);
    if (!init) return VL_FAIL(VL_EIO, "out of memory");
    static const char *suffix[4] = {"_weight", "_bias", "_running_mean", "_running_var"};
    for (int i = 0; i < nt; i++) {
        Onnx__TensorProto *tp = ar_alloc(&e->ar, sizeof *tp);
        if (!tp) return VL_FAIL(VL_EIO, "out of memory");
        onnx__tensor_proto__init(tp);
        char nm[80];
        snprintf(nm, sizeof nm, "%s", t[i].name);
        for (int s = 3; s >= 0; s--) { /* layer_suffix -> layer.suffix */
            const size_t l = strlen(nm), sl = strlen(suffix[s]);
            if (l > sl && !strcmp(nm + l - sl, suffix[s])) {
                nm[l - sl] = '.';
                break;
            }
        }
        tp->name = ar_printf(&e->ar, "%s", nm);
        int64_t *dims = ar_alloc(&e->ar, (size_t)t[i].ndim * sizeof(int64_t));
        if (!dims) return VL_FAIL(VL_EIO, "out of memory");
        for (int k = 0; k < t[i].ndim; k++) dims[k] = t[i].shape[k];
        tp->n_dims = (size_t)t[i].ndim, tp->dims = dims;
        tp->has_data_type = 1, tp->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
        tp->has_raw_data = 1;
        tp->raw_data.len = t[i].numel * sizeof(float);
        tp->raw_data.data = (uint8_t *)((t[i].kind == TENSOR_PARAM ? w : state) + t[i].offset); /* not copied */
        init[i] = tp;
    }
    const int64_t din[4] = {0, cfg->in_c, cfg->in_h, cfg->in_w}, dout[2] = {0, model_out_dim(m)};
    Onnx__ValueInfoProto **gin = ar_alloc(&e->ar, sizeof *gin), **gout = ar_alloc(&e->ar, sizeof *gout);
    Onnx__OperatorSetIdProto *ops = ar_alloc(&e->ar, sizeof *ops), **opsp = ar_alloc(&e->ar, sizeof *opsp);
    if (!gin || !gout || !ops || !opsp) return VL_FAIL(VL_EIO, "out of memory");
    gin[0] = value_info(e, "x", 4, din);
    gout[0] = value_info(e, "logits", 2, dout);
    if (!gin[0] || !gout[0]) return VL_FAIL(VL_EIO, "out of memory");
    onnx__graph_proto__init(g);
    g->name = ar_printf(&e->ar, "%s", model_describe(m));
    g->n_node = e->nnodes, g->node = e->nodes;
    for (int i = 0; i < e->nextra; i++) init[nt + i] = e->extra[i];
    g->n_initializer = (size_t)(nt + e->nextra), g->initializer = init;
    g->n_input = 1, g->input = gin;
    g->n_output = 1, g->output = gout;
    onnx__operator_set_id_proto__init(ops);
    ops->domain = ar_printf(&e->ar, "");
    ops->has_version = 1, ops->version = 13;
    opsp[0] = ops;
    onnx__model_proto__init(mp);
    mp->has_ir_version = 1, mp->ir_version = 7; /* ONNX 1.8+: opset 13 */
    mp->n_opset_import = 1, mp->opset_import = opsp;
    mp->producer_name = ar_printf(&e->ar, "valley");
    mp->producer_version = ar_printf(&e->ar, "%s (git %s)", VALLEY_VERSION, VALLEY_GIT_COMMIT);
    mp->doc_string = ar_printf(&e->ar, "%.200s", doc);
    mp->graph = g;
    return e->ar.failed ? VL_FAIL(VL_EIO, "out of memory") : VL_OK;
}

/* Writes the packed model to path through a temporary file (nothing half-written is left). */
static int write_packed(const Onnx__ModelProto *mp, const char *path)
{
    const size_t len = onnx__model_proto__get_packed_size(mp);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return VL_FAIL(VL_EIO, "out of memory for %s", path);
    onnx__model_proto__pack(mp, buf);
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(buf, 1, len, f) == len;
    if (f) ok = (fflush(f) == 0) & (fsync(fileno(f)) == 0) & (fclose(f) == 0) & ok;
    const int e = errno;
    free(buf);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return VL_FAIL(VL_EIO, "%s: cannot write: %s", path, strerror(e ? e : EIO));
    }
    return VL_OK;
}

/* Rank 0 writes outdir/model.onnx of m with w and state; the world agrees on the outcome. */
static int export_write(vl_comm_t *c, const char *outdir, const char *what, const vl_model_t *m,
                        const vl_model_config_t *cfg, const float *w, const float *state, int st)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/model.onnx", outdir);
    if (!st && c->rank == 0) {
        exp_t e;
        memset(&e, 0, sizeof e);
        Onnx__ModelProto mp;
        Onnx__GraphProto g;
        st = ncio_mkdirs(outdir);
        if (!st) st = build(&e, m, cfg, w, state, what, &mp, &g);
        if (!st) st = write_packed(&mp, path);
        if (!st) vl_log(MPI_COMM_SELF, "%s: %s, %zu ONNX nodes -> %s", what, model_describe(m), e.nnodes, path);
        free(e.nodes);
        ar_free(&e.ar);
    }
    return comm_agree_failure(c->world, st);
}

int onnx_export_command(vl_comm_t *c, vl_deck_t *d, int ninputs, char **inputs, const char *outdir)
{
    if (ninputs != 1) return VL_FAIL_ALL(VL_EINPUT, "export: give one model file (model.nc, swag.nc, a checkpoint, curve.nc)");
    const char *in = inputs[0];
    vl_model_config_t cfg;
    char dataset[32];
    CHECK(ckpt_read_configs(c->world, 1, inputs, &cfg, dataset));
    const int is_curve = curve_file(in);
    char what[300];
    if (!is_curve && deck_int(d, "export.sample") < 0) { /* a model file: its tensors, no data needed */
        vl_model_t *m = NULL;
        float *w = NULL, *state = NULL;
        int st = model_create(&cfg, 1, &m);
        if (!st) {
            w = vl_calloc(model_nparams(m) + 1, sizeof(float), "weights");
            state = vl_calloc(model_nstate(m) + 1, sizeof(float), "BN statistics");
            if (!w || !state) st = vl_error_status();
        }
        if (!st) st = ckpt_read(in, m, w, state, NULL, NULL);
        st = comm_agree_failure(c->world, st);
        snprintf(what, sizeof what, "%s", in);
        st = export_write(c, outdir, what, m, &cfg, w, state, st);
        free(w);
        free(state);
        model_free(m);
        CHECK(st);
        return VL_OK;
    }
    /* a curve point or a SWAG sample: its BN statistics are refreshed on the training data */
    vl_job_t j;
    CHECK(job_open(&j, c, d, &cfg, dataset, in));
    int st = VL_OK;
    if (is_curve) { /* a point of the curve: w(t), its BN statistics refreshed on the training data */
        vl_curve_t cv;
        const double t = deck_double(d, "curve.t");
        st = comm_agree_failure(c->world, curve_read(in, j.np, &cv, NULL));
        if (!st) {
            double *cc = calloc((size_t)cv.n, sizeof(double));
            if (!cc) st = VL_FAIL(VL_EIO, "out of memory");
            if (!st) {
                curve_coeffs(&cv, t, cc);
                curve_point(&cv, cc, j.w);
            }
            free(cc);
            curve_free(&cv);
        }
        if (!st) st = job_bn_update(&j, j.w, j.state, deck_double(d, "eval.bn_subset"));
        snprintf(what, sizeof what, "the point t = %g of the curve %s (BN statistics refreshed)", t, in);
    } else if (deck_int(d, "export.sample") >= 0) { /* a SWAG sample: bma's draw s, its BN statistics refreshed */
        const int s = (int)deck_int(d, "export.sample");
        vl_swag_t sw;
        memset(&sw, 0, sizeof sw);
        int K = 0;
        st = ckpt_swag_rank(in, &K);
        if (!st) st = swag_init(&sw, j.np, K > 0 ? K : 1);
        if (!st) st = ckpt_read_swag(in, &sw);
        st = comm_agree_failure(c->world, st);
        if (!st && sw.n < 1) st = VL_FAIL_ALL(VL_EINPUT, "%s: export.sample = %d, but the file holds no SWAG moments", in, s);
        float *var = st ? NULL : vl_calloc(j.np + 1, sizeof(float), "SWAG variances");
        if (!st && !var) st = vl_error_status();
        if (!st) {
            swag_variance(&sw, var);
            bma_swag_sample(&sw, var, (uint64_t)deck_int(d, "run.seed"), s, deck_double(d, "bma.scale"), 0, j.w);
        }
        if (!st) st = job_bn_update(&j, j.w, j.state, deck_double(d, "eval.bn_subset"));
        free(var);
        swag_free(&sw);
        snprintf(what, sizeof what, "SWAG sample %d of %s (bma.scale %g, run.seed %lld; BN statistics refreshed)", s, in,
                 deck_double(d, "bma.scale"), deck_int(d, "run.seed"));
    }
    st = export_write(c, outdir, what, j.model, &cfg, j.w, j.state, st);
    job_close(&j);
    CHECK(st);
    return VL_OK;
}
