/* graph.c — the model's layer graph: building it (graph.h), model_create / model_free,
 * accessors, initialisation, and the graph as text (model_internal.h has the layout). */

#include "model_internal.h"

/* ---------------------------------------------------------------- building */

static int add_tensor(vl_model_t *m, const char *name, int kind, int role, int ndim,
                      const int64_t *shape, int fan_in, size_t *offset)
{
    if (m->ntensors >= MAX_TENSORS) return VL_FAIL(VL_EINPUT, "model too large: more than %d tensors", MAX_TENSORS);
    vl_tensor_t *t = &m->tensors[m->ntensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->kind = kind;
    t->role = role;
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) { t->shape[i] = shape[i]; t->numel *= (size_t)shape[i]; }
    t->fan_in = fan_in;
    size_t *counter = kind == TENSOR_PARAM ? &m->nparams : &m->nstate;
    t->offset = *counter;
    *counter += t->numel;
    *offset = t->offset;
    return VL_OK;
}

static int new_node(vl_model_t *m, int op, int in0, int in1, int *id)
{
    if (m->nnodes >= MAX_NODES) return VL_FAIL(VL_EINPUT, "model too large: more than %d layers", MAX_NODES);
    node_t *nd = &m->nodes[m->nnodes];
    memset(nd, 0, sizeof *nd);
    nd->op = op;
    nd->in0 = in0;
    nd->in1 = in1;
    if (in0 >= 0) {
        nd->spatial = m->nodes[in0].spatial;
        nd->c = m->nodes[in0].c; nd->h = m->nodes[in0].h; nd->w = m->nodes[in0].w;
    }
    *id = m->nnodes++;
    return VL_OK;
}

int graph_conv(vl_model_t *m, const char *name, int in, int cout, int k, int stride, int pad, int bias, int *id)
{
    CHECK(new_node(m, OP_CONV, in, -1, id));
    node_t *nd = &m->nodes[*id];
    const node_t *src = &m->nodes[in];
    nd->cin = src->c; nd->hin = src->h; nd->win = src->w;
    nd->k = k; nd->stride = stride; nd->pad = pad; nd->has_bias = bias;
    nd->c = cout;
    nd->h = (src->h + 2 * pad - k) / stride + 1;
    nd->w = (src->w + 2 * pad - k) / stride + 1;
    if (nd->h <= 0 || nd->w <= 0) return VL_FAIL(VL_EINPUT, "%s: input %dx%d too small for kernel %d", name, src->h, src->w, k);
    char tn[64];
    int64_t ws[4] = {cout, src->c, k, k};
    int fan_in = src->c * k * k;
    snprintf(tn, sizeof tn, "%s_weight", name);
    CHECK(add_tensor(m, tn, TENSOR_PARAM, ROLE_WEIGHT, 4, ws, fan_in, &nd->w_off));
    if (bias) {
        int64_t bs[1] = {cout};
        snprintf(tn, sizeof tn, "%s_bias", name);
        CHECK(add_tensor(m, tn, TENSOR_PARAM, ROLE_BIAS, 1, bs, fan_in, &nd->b_off));
    }
    return VL_OK;
}

int graph_linear(vl_model_t *m, const char *name, int in, int fout, int *id)
{
    CHECK(new_node(m, OP_LINEAR, in, -1, id));
    node_t *nd = &m->nodes[*id];
    const node_t *src = &m->nodes[in];
    nd->cin = src->c;
    nd->spatial = 0; nd->c = fout; nd->h = nd->w = 1;
    nd->has_bias = 1;
    char tn[64];
    int64_t ws[2] = {fout, src->c}, bs[1] = {fout};
    snprintf(tn, sizeof tn, "%s_weight", name);
    CHECK(add_tensor(m, tn, TENSOR_PARAM, ROLE_WEIGHT, 2, ws, src->c, &nd->w_off));
    snprintf(tn, sizeof tn, "%s_bias", name);
    CHECK(add_tensor(m, tn, TENSOR_PARAM, ROLE_BIAS, 1, bs, src->c, &nd->b_off));
    return VL_OK;
}

int graph_bn(vl_model_t *m, const char *name, int in, int *id)
{
    CHECK(new_node(m, OP_BN, in, -1, id));
    node_t *nd = &m->nodes[*id];
    if (!nd->spatial) return VL_FAIL(VL_EINPUT, "%s: batch norm is implemented for spatial layers only", name);
    char tn[64];
    int64_t s[1] = {nd->c};
    size_t dummy;
    snprintf(tn, sizeof tn, "%s_weight", name);
    CHECK(add_tensor(m, tn, TENSOR_PARAM, ROLE_BN_WEIGHT, 1, s, 0, &nd->w_off));
    snprintf(tn, sizeof tn, "%s_bias", name);
    CHECK(add_tensor(m, tn, TENSOR_PARAM, ROLE_BN_BIAS, 1, s, 0, &nd->b_off));
    snprintf(tn, sizeof tn, "%s_running_mean", name);
    CHECK(add_tensor(m, tn, TENSOR_STATE, ROLE_BN_MEAN, 1, s, 0, &nd->rm_off));
    snprintf(tn, sizeof tn, "%s_running_var", name);
    CHECK(add_tensor(m, tn, TENSOR_STATE, ROLE_BN_VAR, 1, s, 0, &nd->rv_off));
    (void)dummy;
    m->has_bn = 1;
    m->last_bn = *id;
    return VL_OK;
}

static int add_simple(vl_model_t *m, int op, int in0, int in1, int *id)
{
    CHECK(new_node(m, op, in0, in1, id));
    node_t *nd = &m->nodes[*id];
    const node_t *src = &m->nodes[in0];
    switch (op) {
    case OP_MAXPOOL:
        nd->h = src->h / 2; nd->w = src->w / 2;
        if (!src->spatial || nd->h == 0 || nd->w == 0) return VL_FAIL(VL_EINPUT, "max-pool on a layer of shape %dx%d", src->h, src->w);
        break;
    case OP_AVGPOOL:
    case OP_FLATTEN:
        nd->spatial = 0;
        nd->c = op == OP_FLATTEN ? src->c * src->h * src->w : src->c;
        nd->h = nd->w = 1;
        break;
    case OP_ADD: {
        const node_t *b = &m->nodes[in1];
        if (b->c != src->c || b->h != src->h || b->w != src->w)
            return VL_FAIL(VL_EINPUT, "residual add of shapes %dx%dx%d and %dx%dx%d", src->c, src->h, src->w, b->c, b->h, b->w);
        break;
    }
    default: break;
    }
    return VL_OK;
}

int graph_relu(vl_model_t *m, int in, int *id) { return add_simple(m, OP_RELU, in, -1, id); }
int graph_maxpool(vl_model_t *m, int in, int *id) { return add_simple(m, OP_MAXPOOL, in, -1, id); }
int graph_avgpool(vl_model_t *m, int in, int *id) { return add_simple(m, OP_AVGPOOL, in, -1, id); }
int graph_flatten(vl_model_t *m, int in, int *id) { return add_simple(m, OP_FLATTEN, in, -1, id); }
int graph_add(vl_model_t *m, int a, int b, int *id) { return add_simple(m, OP_ADD, a, b, id); }

int graph_dropout(vl_model_t *m, int in, double p, int *id)
{
    if (!(p >= 0 && p < 1)) return VL_FAIL(VL_EINPUT, "dropout: probability %g is not in [0, 1)", p);
    CHECK(new_node(m, OP_DROPOUT, in, -1, id));
    m->nodes[*id].drop_p = p;
    m->has_dropout = 1;
    return VL_OK;
}

int graph_input(vl_model_t *m, int spatial, int *id)
{
    const vl_model_config_t *c = &m->cfg;
    if (m->nnodes) return VL_FAIL(VL_EINPUT, "model: the input must be the first node");
    if (c->in_c <= 0 || c->in_h <= 0 || c->in_w <= 0 || c->out_dim <= 0)
        return VL_FAIL(VL_EINPUT, "model: bad input shape %dx%dx%d or output size %d", c->in_c, c->in_h, c->in_w, c->out_dim);
    CHECK(new_node(m, OP_INPUT, -1, -1, id));
    node_t *in = &m->nodes[*id];
    in->spatial = spatial;
    in->c = spatial ? c->in_c : c->in_c * c->in_h * c->in_w;
    in->h = spatial ? c->in_h : 1;
    in->w = spatial ? c->in_w : 1;
    return VL_OK;
}

void graph_shape(const vl_model_t *m, int id, int *c, int *h, int *w)
{
    *c = m->nodes[id].c;
    *h = m->nodes[id].h;
    *w = m->nodes[id].w;
}

void graph_init_normal(vl_model_t *m, int conv, double std)
{
    const node_t *nd = &m->nodes[conv];
    for (int i = 0; i < m->ntensors; i++) {
        vl_tensor_t *t = &m->tensors[i];
        if (t->kind != TENSOR_PARAM) continue;
        if (t->offset == nd->w_off && t->role == ROLE_WEIGHT) { t->init = INIT_NORMAL; t->init_std = (float)std; }
        if (nd->has_bias && t->offset == nd->b_off && t->role == ROLE_BIAS) t->init = INIT_ZERO;
    }
}

void graph_name(vl_model_t *m, const char *name) { snprintf(m->desc, sizeof m->desc, "%s", name); }
/* Nodes reading node i (once per input that names it). */
static int consumers(const vl_model_t *m, int i)
{
    int users = 0;
    for (int k = 1; k < m->nnodes; k++) users += (m->nodes[k].in0 == i) + (m->nodes[k].in1 == i);
    return users;
}

/* 1 when node i's only consumer is node i + 1 and that is an `op` reading it. */
static int only_consumer_is_next(const vl_model_t *m, int i, int op)
{
    if (i + 1 >= m->nnodes || m->nodes[i + 1].op != op || m->nodes[i + 1].in0 != i) return 0;
    return consumers(m, i) == 1;
}

int model_create(const vl_model_config_t *cfg, int max_batch, vl_model_t **out)
{
    *out = NULL;
    if (max_batch <= 0) return VL_FAIL(VL_EINPUT, "model: batch size must be positive");
    vl_model_t *m = calloc(1, sizeof *m);
    if (m) {
        m->nodes = calloc(MAX_NODES, sizeof *m->nodes);
        m->tensors = calloc(MAX_TENSORS, sizeof *m->tensors);
    }
    if (!m || !m->nodes || !m->tensors) {
        if (m) { free(m->nodes); free(m->tensors); free(m); }
        return VL_FAIL(VL_EIO, "out of memory allocating the model");
    }
    m->cfg = *cfg;
    m->max_batch = max_batch;
    m->in_dim = cfg->in_c * cfg->in_h * cfg->in_w;
    int st = families_build(m, cfg);
    if (!st && m->nparams > ((size_t)1 << 31))
        st = VL_FAIL(VL_EINPUT, "model: %s has %zu parameters (more than 2^31)", m->desc, m->nparams);
    if (st) { model_free(m); return st; }
    for (int i = 1; i + 1 < m->nnodes; i++) {
        node_t *nd = &m->nodes[i];
        if (nd->op != OP_BN || m->nodes[i + 1].op != OP_RELU || m->nodes[i + 1].in0 != i) continue;
        nd->fuse_relu = only_consumer_is_next(m, i, OP_RELU);
        /* ReLU -> 2x2/2 max-pool, the pool its only consumer: fold both into the BN. */
        if (nd->fuse_relu && only_consumer_is_next(m, i + 1, OP_MAXPOOL)) {
            nd->fuse_pool = 1;
            m->nodes[i + 1].pooled_by_bn = m->nodes[i + 2].pooled_by_bn = 1;
        }
        /* A conv whose only consumer is this BN sums its output channels for the BN. */
        node_t *src = &m->nodes[nd->in0];
        if (src->op == OP_CONV && consumers(m, nd->in0) == 1) {
            src->csum = calloc(3 * (size_t)src->c, sizeof(double)); /* S, Q, shift */
            if (!src->csum) { model_free(m); return VL_FAIL(VL_EIO, "out of memory building the model"); }
        }
    }
    /* A residual add whose only consumer is the next node, a ReLU, writes the ReLU's output
     * (its own is read by nobody: the add's backward does not need it). A conv whose only
     * consumer is the next node, a BN: an evaluation without gradients can apply that BN (and
     * its fused ReLU) in the conv's epilogue (layers.c, conv_forward). */
    for (int i = 1; i + 1 < m->nnodes; i++) {
        node_t *nd = &m->nodes[i];
        if (nd->op == OP_ADD) nd->fuse_relu = only_consumer_is_next(m, i, OP_RELU);
        if (nd->op == OP_CONV) nd->sole_bn = only_consumer_is_next(m, i, OP_BN);
    }
    for (int i = 1; i + 2 < m->nnodes; i++) {
        node_t *nd = &m->nodes[i], *cv = &m->nodes[nd->in0];
        if (nd->op == OP_BN && nd->fuse_pool && cv->op == OP_CONV && cv->in0 == 0 && cv->csum &&
            conv_is_same(cv) && cv->k > 1)
            cv->recompute = 1;
    }
    /* Buffers, allocated once. */
    size_t col = 0, xchunk = 0, rows = 0, xpad = 0, dpad = 0, wpack = 0, wU = 0, wwork = 0;
    m->max_c = 1;
    for (int i = 0; i < m->nnodes; i++) {
        node_t *nd = &m->nodes[i];
        size_t sz = (size_t)max_batch * nd->c * nd->h * nd->w;
        if (nd->c > m->max_c) m->max_c = nd->c;
        if (i > 0) {
            nd->out = vl_alloc(sz * sizeof(float), "activations");
            nd->dout = vl_alloc(sz * sizeof(float), "activation gradients");
            if (!nd->out || !nd->dout) goto oom;
            if (nd->op == OP_DROPOUT && !(nd->mask = vl_alloc(sz * sizeof(float), "dropout masks"))) goto oom;
        } else if (nd->spatial && nd->c > 1) {
            nd->out = vl_alloc(sz * sizeof(float), "input transpose");
            if (!nd->out) goto oom;
        }
        if (nd->op == OP_CONV && !conv_is_pointwise(nd)) {
            size_t c = (size_t)nd->cin * nd->k * nd->k * nd->h * nd->w * conv_chunk(nd);
            if (c > col) col = c;
        }
        if (nd->fuse_pool && m->nodes[nd->in0].recompute) {
            nd->xwin = vl_alloc((size_t)max_batch * nd->c * (nd->h / 2) * (nd->w / 2) * sizeof(float) + 64, "BN winners");
            if (!nd->xwin) goto oom;
        }
        /* 3x3 convolutions on the direct kernels: "same" ones, and stride 2 over the input's four
         * phases (conv3.h) */
        const int s2 = nd->op == OP_CONV && nd->k == 3 && nd->stride == 2 && nd->pad == 1 && nd->hin == 2 * nd->h &&
                       nd->win == 2 * nd->w && !nd->recompute && conv3_supported_s2(nd->cin, nd->c, nd->h, nd->w);
        if (s2 || (nd->op == OP_CONV && nd->k == 3 && conv_is_same(nd) && conv3_supported(nd->cin, nd->c, nd->h, nd->w))) {
            nd->direct_ok = nd->direct = 1;
            if (s2) conv3_geom_s2(&nd->geom, nd->cin, nd->c, nd->h, nd->w);
            else conv3_geom(&nd->geom, nd->cin, nd->c, nd->h, nd->w);
            /* a recompute conv runs as a stored one (DIRECT_CHUNK images) while K-FAC factors are taken */
            const int pch = direct_chunk(nd) > DIRECT_CHUNK ? direct_chunk(nd) : DIRECT_CHUNK;
            size_t a = conv3_pad_in_floats(&nd->geom, nd->cin, pch);
            size_t b = conv3_pad_floats(&nd->geom, nd->c, pch);
            size_t p = (size_t)nd->c * nd->cin * 9;
            if (a > xpad) xpad = a;
            if (b > dpad) dpad = b;
            if (p > wpack) wpack = p;
            if (!s2 && !nd->recompute && wino_supported(nd->cin, nd->c, nd->h, nd->w)) {
                nd->wino_ok = nd->wino = 1;
                conv3_geom_t gb; /* the input gradient's: cout channels in, cin out */
                conv3_geom_layout(&gb, nd->c, nd->cin, nd->h, nd->w, nd->geom.flat);
                if (wino_pack_floats(nd->cin, nd->c) > wU) wU = wino_pack_floats(nd->cin, nd->c);
                if (wino_work_floats(&nd->geom, WINO_CHUNK) > wwork) wwork = wino_work_floats(&nd->geom, WINO_CHUNK);
                if (wino_work_floats(&gb, WINO_CHUNK) > wwork) wwork = wino_work_floats(&gb, WINO_CHUNK);
                if (wino_wgrad_supported(nd->cin, nd->c, nd->h, nd->w) && wino_wgrad_pays(nd->cin, nd->c)) { /* the weight gradient's V and D */
                    const int nbw = wino_wgrad_images(&nd->geom) < DIRECT_CHUNK ? wino_wgrad_images(&nd->geom) : DIRECT_CHUNK;
                    if (wino_wgrad_work_floats(&nd->geom, nbw) > wwork) wwork = wino_wgrad_work_floats(&nd->geom, nbw);
                }
            }
        }
        if (nd->op == OP_CONV && nd->recompute) {
            size_t xs = (size_t)nd->c * nd->h * nd->w * recompute_chunk(nd);
            if (xs > xchunk) xchunk = xs;
        }
        if (nd->fuse_pool && (size_t)nd->h * nd->w > rows) rows = (size_t)nd->h * nd->w;
        if (nd->fuse_pool && nd->h % 2 == 0 && nd->w % 2 == 0) { /* relu_pool_plane */
            node_t *pool = nd + 2;
            pool->pool_off = vl_alloc((size_t)pool->h * pool->w * sizeof(int32_t) + 64, "pool offsets");
            if (!pool->pool_off) goto oom;
            for (int i = 0; i < pool->h * pool->w; i++)
                pool->pool_off[i] = (int32_t)(2 * (i / pool->w) * nd->w + 2 * (i % pool->w));
        }
        if (nd->op == OP_BN) {
            nd->mean = calloc(7 * (size_t)nd->c, sizeof(double)); /* mean, invstd, acc_mean, acc_var, 3 C scratch */
            if (!nd->mean) goto oom;
            nd->invstd = nd->mean + nd->c;
            nd->acc_mean = nd->invstd + nd->c;
            nd->acc_var = nd->acc_mean + nd->c;
        }
        if (nd->op == OP_MAXPOOL) {
            nd->argmax = vl_alloc(sz * sizeof(int32_t), "max-pool indices");
            if (!nd->argmax) goto oom;
        }
    }
    if (xchunk) {
        m->xchunk = vl_alloc(xchunk * sizeof(float), "recomputed conv chunk");
        if (!m->xchunk) goto oom;
    }
    if (rows) {
        m->rows = vl_alloc(2 * rows * sizeof(float) + 64, "pool rows");
        if (!m->rows) goto oom;
    }
    if (xpad) {
        m->xpad = vl_alloc(xpad * sizeof(float), "padded conv input");
        m->dpad = vl_alloc(dpad * sizeof(float), "padded conv gradient");
        m->wpack = vl_alloc(wpack * sizeof(float), "packed conv weights");
        m->mom = vl_alloc(33 * (size_t)m->max_c * sizeof(float), "conv moments");
        if (!m->xpad || !m->dpad || !m->wpack || !m->mom) goto oom;
        m->shift = m->mom + 32 * (size_t)m->max_c;
    }
    if (wU) {
        m->wU = vl_alloc(wU * sizeof(float), "Winograd weights");
        m->wUb = vl_alloc(wU * sizeof(float), "Winograd input-gradient weights");
        m->wgM = vl_alloc(wU * sizeof(float), "Winograd weight-gradient sums");
        m->wwork = vl_alloc(wwork * sizeof(float), "Winograd work space");
        m->wU_src = vl_alloc(wpack * sizeof(float), "Winograd weights' source");
        if (!m->wU || !m->wUb || !m->wgM || !m->wwork || !m->wU_src) goto oom;
    }
    m->col_size = col;
    if (col) {
        m->col = vl_alloc(col * sizeof(float), "im2col workspace");
        m->dcol = vl_alloc(col * sizeof(float), "im2col gradient workspace");
        if (!m->col || !m->dcol) goto oom;
    }
    m->red = calloc(4 * (size_t)m->max_c + 2, sizeof(double));
    if (!m->red) goto oom;
    for (int i = 0; i < m->nnodes; i++) {
        const node_t *nd = &m->nodes[i];
        double sz = (double)max_batch * nd->c * nd->h * nd->w * sizeof(float);
        m->bytes += (i > 0 ? 2 : nd->out ? 1 : 0) * sz + (nd->argmax ? sz : 0) + (nd->mask ? sz : 0);
    }
    m->bytes += (double)(2 * col + xchunk + xpad + dpad + wpack + 3 * wU + wwork) * sizeof(float);
    char shape[64];
    snprintf(shape, sizeof shape, " %dx%dx%d -> %d, %zu parameters", cfg->in_c, cfg->in_h, cfg->in_w,
             cfg->out_dim, m->nparams);
    strncat(m->desc, shape, sizeof m->desc - strlen(m->desc) - 1);
    *out = m;
    return VL_OK;
oom:
    model_free(m);
    return VL_FAIL(VL_EIO, "out of memory building the model for batch %d", max_batch);
}

void model_free(vl_model_t *m)
{
    if (!m) return;
    for (int i = 0; i < m->nnodes; i++) {
        node_t *nd = &m->nodes[i];
        free(nd->out);
        free(nd->dout);
        free(nd->mean);
        free(nd->argmax);
        free(nd->csum);
        free(nd->xwin);
        free(nd->pool_off);
        free(nd->mask);
    }
    kfac_free(m);
    free(m->xchunk);
    free(m->rows);
    free(m->col);
    free(m->xpad);
    free(m->dpad);
    free(m->wpack);
    free(m->mom);
    free(m->wU);
    free(m->wwork);
    free(m->wgM);
    free(m->wU_src);
    free(m->wUb);
    free(m->dcol);
    free(m->red);
    free(m->nodes);
    free(m->tensors);
    free(m);
}

size_t model_nparams(const vl_model_t *m) { return m->nparams; }
size_t model_nstate(const vl_model_t *m) { return m->nstate; }
int model_max_batch(const vl_model_t *m) { return m->max_batch; }
int model_out_dim(const vl_model_t *m) { return m->cfg.out_dim; }
int model_in_dim(const vl_model_t *m) { return m->in_dim; }

int model_first_dense(const vl_model_t *m, size_t *w_off, size_t *b_off, int *fin, int *fout)
{
    if (m->nnodes < 2 || m->nodes[1].op != OP_LINEAR || m->nodes[1].in0 != 0) return 0;
    *w_off = m->nodes[1].w_off;
    *b_off = m->nodes[1].b_off;
    *fin = m->nodes[1].cin;
    *fout = m->nodes[1].c;
    return 1;
}

int model_combine(vl_model_t *m, int nresp)
{
    size_t wo, bo;
    int fin, fout;
    if (!model_first_dense(m, &wo, &bo, &fin, &fout) || nresp < 1 || nresp > MODEL_COMBINE_MAX)
        return VL_FAIL(VL_EINPUT, "model_combine: the first layer is not a dense layer on the input (or %d responses)", nresp);
    m->nodes[1].op = OP_COMBINE;
    m->nodes[0].c = nresp * fout;
    m->in_dim = nresp * fout;
    m->nresp = nresp;
    for (int r = 0; r < MODEL_COMBINE_MAX; r++) m->coef[r] = r == 0 ? 1.0f : 0.0f;
    return VL_OK;
}

void model_set_combine_coef(vl_model_t *m, const float *coef)
{
    for (int r = 0; r < m->nresp; r++) m->coef[r] = coef[r];
}
int model_has_bn(const vl_model_t *m) { return m->has_bn; }

void model_set_grad(vl_model_t *m, int on) { m->no_grad = !on; }

int model_conv_direct(vl_model_t *m, int on)
{
    int count = 0;
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].direct_ok) {
            if (on >= 0) m->nodes[i].direct = on != 0;
            count += m->nodes[i].direct;
        }
    return count;
}

int model_conv_winograd(vl_model_t *m, int on)
{
    int count = 0;
    for (int i = 0; i < m->nnodes; i++) {
        node_t *nd = &m->nodes[i];
        if (!nd->wino_ok) continue;
        if (on >= 0) nd->wino = on != 0;
        count += nd->wino && nd->direct;
    }
    return count;
}
const char *model_describe(const vl_model_t *m) { return m->desc; }
double model_bytes(const vl_model_t *m) { return m->bytes; }
const vl_tensor_t *model_tensors(const vl_model_t *m, int *n)
{
    *n = m->ntensors;
    return m->tensors;
}

void model_set_reduce(vl_model_t *m, vl_reduce_fn fn, void *ctx)
{
    m->reduce = fn;
    m->reduce_ctx = ctx;
}

void model_reset_state(const vl_model_t *m, float *state)
{
    for (int i = 0; i < m->ntensors; i++) {
        const vl_tensor_t *t = &m->tensors[i];
        if (t->kind != TENSOR_STATE) continue;
        float v = t->role == ROLE_BN_VAR ? 1.0f : 0.0f;
        for (size_t j = 0; j < t->numel; j++) state[t->offset + j] = v;
    }
}

void model_init(const vl_model_t *m, uint64_t seed, float *w, float *state)
{
    for (int i = 0; i < m->ntensors; i++) {
        const vl_tensor_t *t = &m->tensors[i];
        if (t->kind != TENSOR_PARAM) continue;
        float *p = w + t->offset;
        if (t->role == ROLE_BN_WEIGHT || t->role == ROLE_BN_BIAS) {
            float v = t->role == ROLE_BN_WEIGHT ? 1.0f : 0.0f;
            for (size_t j = 0; j < t->numel; j++) p[j] = v;
            continue;
        }
        vl_rng_t r;
        rng_init(&r, seed, rng_stream(RNG_INIT, (uint64_t)i, 0));
        if (t->init == INIT_ZERO) {
            memset(p, 0, t->numel * sizeof *p);
        } else if (t->init == INIT_NORMAL) {
            for (size_t j = 0; j < t->numel; j++) p[j] = (float)(t->init_std * rng_normal(&r));
        } else {
            double bound = 1.0 / sqrt((double)t->fan_in);
            for (size_t j = 0; j < t->numel; j++) p[j] = (float)((2.0 * rng_uniform(&r) - 1.0) * bound);
        }
    }
    if (state) model_reset_state(m, state);
}


/* ------------------------------------------------------- the graph as text */

/* The name of the layer whose first parameter tensor starts at w_off ("layer1_0_conv1"). */
static const char *layer_of(const vl_model_t *m, size_t w_off, char *buf, size_t n)
{
    for (int i = 0; i < m->ntensors; i++) {
        const vl_tensor_t *t = &m->tensors[i];
        if (t->kind != TENSOR_PARAM || t->offset != w_off) continue;
        const size_t len = strlen(t->name);
        if (len > 7 && !strcmp(t->name + len - 7, "_weight")) {
            snprintf(buf, n, "%.*s", (int)(len - 7), t->name);
            return buf;
        }
    }
    return NULL;
}

char *model_graph_text(const vl_model_t *m)
{
    size_t cap = 64 * (size_t)m->nnodes + 64, len = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    s[0] = '\0';
    for (int i = 0; i < m->nnodes; i++) {
        const node_t *nd = &m->nodes[i];
        char line[160], name[80];
        const char *nm = (nd->op == OP_CONV || nd->op == OP_LINEAR || nd->op == OP_BN) ? layer_of(m, nd->w_off, name, sizeof name) : "";
        switch (nd->op) {
        case OP_INPUT: snprintf(line, sizeof line, "input %s", nd->spatial ? "spatial" : "dense"); break;
        case OP_CONV:
            snprintf(line, sizeof line, "conv %s %d %d %d %d %d %d", nm ? nm : "?", nd->in0, nd->c, nd->k, nd->stride, nd->pad,
                     nd->has_bias);
            break;
        case OP_LINEAR: snprintf(line, sizeof line, "linear %s %d %d", nm ? nm : "?", nd->in0, nd->c); break;
        case OP_BN: snprintf(line, sizeof line, "bn %s %d", nm ? nm : "?", nd->in0); break;
        case OP_RELU: snprintf(line, sizeof line, "relu %d", nd->in0); break;
        case OP_MAXPOOL: snprintf(line, sizeof line, "maxpool %d", nd->in0); break;
        case OP_AVGPOOL: snprintf(line, sizeof line, "avgpool %d", nd->in0); break;
        case OP_FLATTEN: snprintf(line, sizeof line, "flatten %d", nd->in0); break;
        case OP_ADD: snprintf(line, sizeof line, "add %d %d", nd->in0, nd->in1); break;
        case OP_DROPOUT: snprintf(line, sizeof line, "dropout %d %.17g", nd->in0, nd->drop_p); break;
        default: free(s); return NULL; /* model_combine's first layer: not a network of its own */
        }
        if (!nm) { free(s); return NULL; }
        const size_t l = strlen(line);
        if (len + l + 2 > cap) {
            cap = 2 * (len + l + 2);
            char *g = realloc(s, cap);
            if (!g) { free(s); return NULL; }
            s = g;
        }
        memcpy(s + len, line, l);
        len += l;
        s[len++] = '\n';
        s[len] = '\0';
    }
    return s;
}
