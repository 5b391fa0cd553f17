/* passes.c — the passes over the model's graph: forward, backward, the BN refresh's
 * accumulation, dropout (model_internal.h has the layout). */

#include "model_internal.h"

/* ----------------------------------------------------------- forward/back */


/* Dropout of node `idx`: sample b draws its elements' keep decisions in order (features, or
 * channel-major over the plane) from the Philox stream (seed, RNG_DROPOUT, pass << 12 | idx,
 * ids[b]): the same masks whatever rank holds the sample and wherever it sits in the batch. */
static void dropout_forward(vl_model_t *m, node_t *nd, int idx, const float *xin, int n)
{
    const size_t per = (size_t)nd->c * nd->h * nd->w, hw = (size_t)nd->h * nd->w;
    nd->dropped = m->drop_on && nd->drop_p > 0;
    if (!nd->dropped) {
        memcpy(nd->out, xin, (size_t)n * per * sizeof(float));
        return;
    }
    const double p = nd->drop_p;
    const float scale = (float)(1.0 / (1.0 - p));
    for (int b = 0; b < n; b++) {
        vl_rng_t r;
        rng_init(&r, m->key_seed, rng_stream(RNG_DROPOUT, (m->key_pass << 12) | (uint64_t)idx, (uint64_t)m->key_ids[b]));
        for (size_t e = 0; e < per; e++) {
            const size_t j = nd->spatial ? ((e / hw) * (size_t)n + (size_t)b) * hw + e % hw : (size_t)b * per + e;
            const float keep = rng_uniform(&r) >= p ? scale : 0.0f;
            nd->mask[j] = keep;
            nd->out[j] = xin[j] * keep;
        }
    }
}

void model_dropout_key(vl_model_t *m, uint64_t seed, uint64_t pass, const int64_t *ids)
{
    m->key_seed = seed;
    m->key_pass = pass;
    m->key_ids = ids;
    m->key_set = ids != NULL;
}

void model_set_mc_dropout(vl_model_t *m, int on) { m->mc_dropout = on; }
int model_has_dropout(const vl_model_t *m) { return m->has_dropout; }

const float *model_forward(vl_model_t *m, const float *w, float *state, const float *x, int n, int mode)
{
    m->n = n;
    m->x = x;
    m->mode = mode;
    m->state = state;
    /* dropout drops in a training forward (and, with MC dropout, in an evaluation one) that has
     * keys; the keys serve this forward (and its backward) only */
    m->drop_on = m->key_set && (mode == MODE_TRAIN || (mode == MODE_EVAL && m->mc_dropout));
    m->key_set = 0;
    node_t *in = &m->nodes[0];
    if (in->out) { /* (N, C, H, W) -> (C, N, H, W) */
        const size_t hw = (size_t)in->h * in->w;
        for (int b = 0; b < n; b++)
            for (int c = 0; c < in->c; c++)
                memcpy(in->out + ((size_t)c * n + b) * hw, x + ((size_t)b * in->c + c) * hw, hw * sizeof(float));
    }
    for (int i = 1; i < m->nnodes; i++) {
        node_t *nd = &m->nodes[i];
        const node_t *src = &m->nodes[nd->in0];
        const float *xin = nd->in0 == 0 && !src->out ? x : src->out;
        const size_t size = (size_t)n * nd->c * nd->h * nd->w;
        switch (nd->op) {
        case OP_CONV:
            if (!nd->recompute) conv_forward(m, nd, w, xin, n); /* else recomputed by its BN */
            break;
        case OP_LINEAR: linear_forward(nd, w, xin, n); break;
        case OP_COMBINE: { /* out = resp_0 + sum_r coef_r resp_r per sample */
            const int F = nd->c, R = m->nresp;
            for (int b = 0; b < n; b++) {
                float *restrict o = nd->out + (size_t)b * F;
                const float *restrict r0 = xin + (size_t)b * R * F;
                memcpy(o, r0, (size_t)F * sizeof(float));
                for (int r = 1; r < R; r++) {
                    const float cr = m->coef[r], *restrict rr = r0 + (size_t)r * F;
                    for (int f = 0; f < F; f++) o[f] += cr * rr[f];
                }
            }
            break;
        }
        case OP_BN:
            if (nd->eval_fused) { /* done in its conv's epilogue (conv_forward) */
                nd->eval_fused = 0;
                break;
            }
            if (mode == MODE_BN_UPDATE && i == m->last_bn) { /* nothing after these statistics is needed */
                bn_forward(m, nd, w, state, xin, n, mode, 1);
                return NULL;
            }
            bn_forward(m, nd, w, state, xin, n, mode, 0);
            break;
        case OP_RELU:
            if (!src->fuse_relu) relu_forward(xin, nd->out, size); /* else written by the BN */
            break;
        case OP_MAXPOOL:
            if (!nd->pooled_by_bn) maxpool_forward(nd, src, xin, n); /* else written by the BN */
            break;
        case OP_AVGPOOL: {
            const size_t hw = (size_t)src->h * src->w;
            for (int c = 0; c < nd->c; c++)
                for (int b = 0; b < n; b++) {
                    const float *p = xin + ((size_t)c * n + b) * hw;
                    double s = 0.0;
                    for (size_t j = 0; j < hw; j++) s += p[j];
                    nd->out[(size_t)b * nd->c + c] = (float)(s / (double)hw);
                }
            break;
        }
        case OP_FLATTEN: {
            const size_t hw = (size_t)src->h * src->w;
            for (int c = 0; c < src->c; c++)
                for (int b = 0; b < n; b++)
                    memcpy(nd->out + (size_t)b * nd->c + c * hw, xin + ((size_t)c * n + b) * hw, hw * sizeof(float));
            break;
        }
        case OP_ADD: /* with fuse_relu, straight into its ReLU's output */
            add_forward(xin, m->nodes[nd->in1].out, nd->fuse_relu ? (nd + 1)->out : nd->out, size, nd->fuse_relu);
            break;
        case OP_DROPOUT: dropout_forward(m, nd, i, xin, n); break;
        default: break;
        }
    }
    return m->nodes[m->nnodes - 1].out;
}

/* The gradient buffer of node `id` and whether to add into it. NULL for the input. */
static float *grad_target(vl_model_t *m, int id, int *acc)
{
    if (id == 0) return NULL;
    node_t *nd = &m->nodes[id];
    *acc = nd->dout_set;
    nd->dout_set = 1;
    return nd->dout;
}

void model_backward(vl_model_t *m, const float *w, const float *dout, float *g)
{
    if (m->no_grad && m->mode == MODE_EVAL) { /* a programming error, not an input error */
        fprintf(stderr, "valley: internal error: model_backward after a forward without gradients\n");
        abort();
    }
    const int n = m->n;
    for (int i = 0; i < m->nnodes; i++) m->nodes[i].dout_set = m->nodes[i].relu_dy = 0;
    node_t *last = &m->nodes[m->nnodes - 1];
    memcpy(last->dout, dout, (size_t)n * last->c * sizeof(float));
    last->dout_set = 1;
    for (int i = m->nnodes - 1; i >= 1; i--) {
        node_t *nd = &m->nodes[i];
        const size_t size = (size_t)n * nd->c * nd->h * nd->w;
        if (nd->pooled_by_bn || nd->recompute) continue; /* done by the fused BN */
        if (nd->fuse_pool) {
            node_t *pool = nd + 2;
            if (!pool->dout_set) memset(pool->dout, 0, (size_t)n * pool->c * pool->h * pool->w * sizeof(float));
            node_t *src = &m->nodes[nd->in0];
            int acc = 0;
            float *dx = grad_target(m, nd->in0, &acc);
            bn_backward_pooled(m, nd, w, nd->in0 == 0 && !src->out ? m->x : src->out, n, g, dx, acc);
            continue;
        }
        if (!nd->dout_set) { /* no path to the output: zero parameter gradients */
            if (nd->op == OP_CONV || nd->op == OP_LINEAR || nd->op == OP_BN) memset(nd->dout, 0, size * sizeof(float));
            else continue;
        }
        node_t *src = &m->nodes[nd->in0];
        const float *xin = nd->in0 == 0 && !src->out ? m->x : src->out;
        int acc = 0;
        float *dx = grad_target(m, nd->in0, &acc);
        if (m->kfac_A && (nd->op == OP_CONV || nd->op == OP_LINEAR)) kfac_accumulate(m, nd, xin, n); /* model_kfac_set */
        switch (nd->op) {
        case OP_CONV: conv_backward(m, nd, w, xin, n, g, dx, acc); break;
        case OP_LINEAR: linear_backward(nd, w, xin, n, g, dx, acc); break;
        case OP_COMBINE: /* evaluation only: no gradient for the replaced layer */
            memset(g + nd->w_off, 0, (size_t)nd->c * nd->cin * sizeof(float));
            memset(g + nd->b_off, 0, (size_t)nd->c * sizeof(float));
            break;
        case OP_BN: bn_backward(m, nd, w, xin, n, g, dx, acc); break;
        case OP_RELU:
            if (!dx) break;
            if (src->op == OP_BN && src->fuse_relu && !acc) { /* folded into the BN's backward */
                src->relu_dy = 1;
                break;
            }
            relu_backward(nd->out, nd->dout, dx, size, acc);
            break;
        case OP_MAXPOOL:
            if (!dx) break;
            if (!acc) memset(dx, 0, (size_t)n * src->c * src->h * src->w * sizeof(float));
            for (size_t j = 0; j < size; j++) dx[nd->argmax[j]] += nd->dout[j];
            break;
        case OP_AVGPOOL: {
            if (!dx) break;
            const size_t hw = (size_t)src->h * src->w;
            for (int c = 0; c < nd->c; c++)
                for (int b = 0; b < n; b++) {
                    float v = (float)(nd->dout[(size_t)b * nd->c + c] / (double)hw);
                    float *p = dx + ((size_t)c * n + b) * hw;
                    for (size_t j = 0; j < hw; j++) p[j] = acc ? p[j] + v : v;
                }
            break;
        }
        case OP_FLATTEN: {
            if (!dx) break;
            const size_t hw = (size_t)src->h * src->w;
            for (int c = 0; c < src->c; c++)
                for (int b = 0; b < n; b++) {
                    const float *s = nd->dout + (size_t)b * nd->c + c * hw;
                    float *p = dx + ((size_t)c * n + b) * hw;
                    for (size_t j = 0; j < hw; j++) p[j] = acc ? p[j] + s[j] : s[j];
                }
            break;
        }
        case OP_DROPOUT:
            if (!dx) break;
            for (size_t j = 0; j < size; j++) {
                const float v = nd->dropped ? nd->dout[j] * nd->mask[j] : nd->dout[j];
                dx[j] = acc ? dx[j] + v : v;
            }
            break;
        case OP_ADD: {
            const float *gy = nd->dout; /* the gradient both inputs receive */
            if (dx && !acc && nd->in0 != nd->in1) { /* the first input takes this buffer: no copy */
                src->dout = nd->dout;
                nd->dout = dx;
            } else if (dx) {
                add_into(dx, gy, size, acc);
            }
            int acc1 = 0;
            float *dy = grad_target(m, nd->in1, &acc1);
            if (dy) add_into(dy, gy, size, acc1);
            break;
        }
        default: break;
        }
    }
}

void model_bn_begin(vl_model_t *m)
{
    for (int i = 0; i < m->nnodes; i++) {
        node_t *nd = &m->nodes[i];
        if (nd->op != OP_BN) continue;
        memset(nd->acc_mean, 0, 2 * (size_t)nd->c * sizeof(double));
        nd->acc_n = 0.0;
    }
}

void model_bn_finish(vl_model_t *m, float *state)
{
    for (int i = 0; i < m->nnodes; i++) {
        node_t *nd = &m->nodes[i];
        if (nd->op != OP_BN || nd->acc_n <= 0) continue;
        for (int c = 0; c < nd->c; c++) {
            state[nd->rm_off + c] = (float)(nd->acc_mean[c] / nd->acc_n);
            state[nd->rv_off + c] = (float)(nd->acc_var[c] / nd->acc_n);
        }
    }
}

uint64_t model_pattern_hash(const vl_model_t *m)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a over the decisions */
    for (int i = 1; i < m->nnodes; i++) {
        const node_t *nd = &m->nodes[i];
        size_t size = (size_t)m->n * nd->c * nd->h * nd->w;
        if (nd->op == OP_RELU && !nd->pooled_by_bn)
            for (size_t j = 0; j < size; j++) { h ^= nd->out[j] > 0.0f; h *= 1099511628211ull; }
        if (nd->op == OP_MAXPOOL)
            for (size_t j = 0; j < size; j++) { h ^= (uint64_t)nd->argmax[j]; h *= 1099511628211ull; }
        if (nd->op == OP_MAXPOOL && nd->pooled_by_bn) /* the stored ReLU signs of a fused block */
            for (size_t j = 0; j < size; j++) { h ^= nd->out[j] > 0.0f; h *= 1099511628211ull; }
    }
    return h;
}
