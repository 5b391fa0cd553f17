/* hvp.c — exact Hessian-vector products by the R-operator (hessian.h has the formulas).
 *
 * The products run over the model's node list with buffers of their own (the model's fused
 * forms — BN in a conv's epilogue, ReLU and pool inside a BN, the recomputed input conv — keep
 * fewer values than a second-order pass needs): per node the activation a, its tangent ra,
 * the adjoint ga and its tangent rga, all (C, N, H, W) or (N, F) like the model's. 3x3 stride-1
 * convolutions run on the direct kernels of conv3.c or the Winograd ones of wino.c, the others
 * on im2col + GEMM over chunks of images; in each, an image's outputs are computed from that
 * image alone, in an order that does not depend on the batch (so its ReLU and pool decisions
 * are the same on any rank count). The weight parts of H v are summed in float per batch and
 * added to the caller's double vector. */
#include "model_internal.h"

#include "valley/hessian.h"

struct vl_hvp {
    const vl_model_t *m;
    int max_batch, nn;
    float **a, **ra, **ga, **rga; /* per node; a[0] is the transposed input of a spatial model */
    int32_t **arg;                /* max-pool winners */
    signed char *set;             /* backward: the node's adjoint and its tangent hold a value (always both) */
    float *col, *colr, *dcol;     /* a chunk's im2col of x and of R{x}, and a column gradient */
    float *xpad, *rxpad, *gpad, *rgpad; /* direct 3x3 convs: padded chunks of x, R{x}, g, R{g} */
    float *pw, *pv;               /* ... packed W and V (forward, then input-gradient layout) */
    float *uw, *uv, *wflip;       /* Winograd convs: transformed W and V (or their flips), a flip */
    float *wwork, *wtmp, *wM, *wdw; /* ... work space, a chunk's output, weight-gradient sums and result */
    float *hvf;                   /* a batch's product in float (np) */
    double bytes;
};

static size_t node_size(const node_t *nd) { return (size_t)nd->c * nd->h * nd->w; }

/* 3x3 stride-1 convs the direct kernels of conv3.c handle (their input gradient too: cin a
 * multiple of 8, unless the input is the model's). Where they run, H v is the same sum in another
 * order: each output still depends on its own image only. */
static int direct(const node_t *nd)
{
    return nd->op == OP_CONV && nd->direct_ok && nd->geom.stride == 1 && (nd->in0 == 0 || nd->cin % 8 == 0);
}

/* ... and of those, the ones whose forward-type products (the primal, the two tangent terms) run
 * as Winograd F(2x2, 3x3) (wino.c's shapes; the model's wino_ok minus its recompute exclusion),
 * whose input-gradient products do (the flipped weights' shape), and whose weight-gradient
 * products do (where wino_wgrad beats the direct kernel). */
static int wino_fwd(const node_t *nd) { return direct(nd) && wino_supported(nd->cin, nd->c, nd->h, nd->w); }
static int wino_dgrad(const node_t *nd) { return direct(nd) && nd->in0 != 0 && wino_supported(nd->c, nd->cin, nd->h, nd->w); }
static int wino_wg(const node_t *nd)
{
    return direct(nd) && wino_wgrad_supported(nd->cin, nd->c, nd->h, nd->w) && wino_wgrad_pays(nd->cin, nd->c);
}
static int wgrad_images(const node_t *nd)
{
    const int k = wino_wgrad_images(&nd->geom);
    return k < DIRECT_CHUNK ? k : DIRECT_CHUNK;
}

/* dst (channels, n hw at b0) += tmp (channels, nb hw): a Winograd chunk's output added in. */
static void add_chunk(float *restrict dst, const float *restrict tmp, int channels, size_t ld, size_t len)
{
    for (int c = 0; c < channels; c++) {
        float *d = dst + (size_t)c * ld;
        const float *t = tmp + (size_t)c * len;
        for (size_t j = 0; j < len; j++) d[j] += t[j];
    }
}

void hvp_free(vl_hvp_t *h)
{
    if (!h) return;
    for (int i = 0; i < h->nn; i++) {
        free(h->a[i]); /* a[0]: the transposed input of a spatial model, else NULL */
        free(h->ra[i]);
        free(h->ga[i]);
        free(h->rga[i]);
        free(h->arg[i]);
    }
    free(h->a); free(h->ra); free(h->ga); free(h->rga); free(h->arg);
    free(h->set);
    free(h->col); free(h->colr); free(h->dcol);
    free(h->xpad); free(h->rxpad); free(h->gpad); free(h->rgpad); free(h->pw); free(h->pv);
    free(h->uw); free(h->uv); free(h->wflip); free(h->wwork); free(h->wtmp); free(h->wM); free(h->wdw);
    free(h->hvf);
    free(h);
}

double hvp_bytes(const vl_hvp_t *h) { return h->bytes; }

int hvp_create(const vl_model_t *m, int max_batch, vl_hvp_t **out)
{
    *out = NULL;
    vl_hvp_t *h = vl_calloc(1, sizeof *h, "Hessian-vector product buffers");
    if (!h) return vl_error_status();
    h->m = m;
    h->max_batch = max_batch < 1 ? 1 : max_batch;
    h->nn = m->nnodes;
    const int nn = m->nnodes;
    h->a = calloc((size_t)nn, sizeof(float *));
    h->ra = calloc((size_t)nn, sizeof(float *));
    h->ga = calloc((size_t)nn, sizeof(float *));
    h->rga = calloc((size_t)nn, sizeof(float *));
    h->arg = calloc((size_t)nn, sizeof(int32_t *));
    h->set = calloc((size_t)nn, 1);
    int ok = h->a && h->ra && h->ga && h->rga && h->arg && h->set;
    size_t colf = 1, padf = 0, packf = 0, uf = 0, workf = 0, tmpf = 0;
    double bytes = 0.0;
    for (int i = 0; i < nn && ok; i++) {
        const node_t *nd = &m->nodes[i];
        if (nd->op == OP_COMBINE) {
            hvp_free(h);
            return VL_FAIL_ALL(VL_EINPUT, "Hessian-vector products: the model's first layer is a surface's combination "
                                          "of precomputed responses (evaluation only)");
        }
        const size_t sz = (size_t)h->max_batch * node_size(nd) + 1;
        if (i == 0) {
            if (nd->spatial && m->nodes[0].out) { h->a[0] = malloc(sz * sizeof(float)); ok = h->a[0] != NULL; }
            bytes += (double)sz * 4;
            continue;
        }
        h->a[i] = malloc(sz * sizeof(float));
        h->ra[i] = malloc(sz * sizeof(float));
        h->ga[i] = malloc(sz * sizeof(float));
        h->rga[i] = malloc(sz * sizeof(float));
        ok = h->a[i] && h->ra[i] && h->ga[i] && h->rga[i];
        bytes += 4.0 * sz * 4;
        if (nd->op == OP_MAXPOOL) {
            h->arg[i] = malloc(sz * sizeof(int32_t));
            ok = ok && h->arg[i];
            bytes += (double)sz * 4;
        }
        if (direct(nd)) {
            const int ch = nd->cin > nd->c ? nd->cin : nd->c;
            const size_t a = conv3_pad_floats(&nd->geom, ch, DIRECT_CHUNK), p = (size_t)nd->c * nd->cin * 9;
            if (a > padf) padf = a;
            if (p > packf) packf = p;
            conv3_geom_t gb;
            conv3_geom_layout(&gb, nd->c, nd->cin, nd->h, nd->w, nd->geom.flat);
            size_t wk = 0;
            if (wino_fwd(nd)) {
                uf = uf > wino_pack_floats(nd->cin, nd->c) ? uf : wino_pack_floats(nd->cin, nd->c);
                wk = wino_work_floats(&nd->geom, WINO_CHUNK);
            }
            if (wino_dgrad(nd)) {
                uf = uf > wino_pack_floats(nd->c, nd->cin) ? uf : wino_pack_floats(nd->c, nd->cin);
                wk = wk > wino_work_floats(&gb, WINO_CHUNK) ? wk : wino_work_floats(&gb, WINO_CHUNK);
            }
            if (wino_wg(nd)) {
                uf = uf > wino_pack_floats(nd->cin, nd->c) ? uf : wino_pack_floats(nd->cin, nd->c);
                const size_t ww = wino_wgrad_work_floats(&nd->geom, wgrad_images(nd));
                wk = wk > ww ? wk : ww;
            }
            if (wk > workf) workf = wk;
            const size_t t = (size_t)WINO_CHUNK * ch * nd->h * nd->w;
            if ((wino_fwd(nd) || wino_dgrad(nd)) && t > tmpf) tmpf = t;
        } else if (nd->op == OP_CONV) {
            const size_t per = (size_t)nd->cin * nd->k * nd->k * nd->h * nd->w;
            const size_t c = per * (size_t)conv_chunk(nd);
            if (c > colf) colf = c;
        }
    }
    if (ok) {
        h->col = malloc(colf * sizeof(float));
        h->colr = malloc(colf * sizeof(float));
        h->dcol = malloc(colf * sizeof(float));
        h->hvf = malloc((m->nparams + 1) * sizeof(float));
        ok = h->col && h->colr && h->dcol && h->hvf;
        bytes += 3.0 * colf * 4 + 4.0 * m->nparams;
        if (ok && padf) {
            h->xpad = malloc(padf * sizeof(float));
            h->rxpad = malloc(padf * sizeof(float));
            h->gpad = malloc(padf * sizeof(float));
            h->rgpad = malloc(padf * sizeof(float));
            h->pw = malloc(packf * sizeof(float));
            h->pv = malloc(packf * sizeof(float));
            ok = h->xpad && h->rxpad && h->gpad && h->rgpad && h->pw && h->pv;
            bytes += 4.0 * (4 * padf + 2 * packf);
        }
        if (ok && uf) {
            h->uw = malloc(uf * sizeof(float));
            h->uv = malloc(uf * sizeof(float));
            h->wM = malloc(uf * sizeof(float));
            h->wflip = malloc(packf * sizeof(float));
            h->wdw = malloc(packf * sizeof(float));
            h->wwork = malloc((workf + 1) * sizeof(float));
            h->wtmp = malloc((tmpf + 1) * sizeof(float));
            ok = h->uw && h->uv && h->wM && h->wflip && h->wdw && h->wwork && h->wtmp;
            bytes += 4.0 * (3 * uf + 2 * packf + workf + tmpf);
        }
    }
    h->bytes = bytes;
    if (!ok) {
        hvp_free(h);
        return VL_FAIL_ALL(VL_EIO, "out of memory for the Hessian-vector product buffers (%.0f MB, batch %d)",
                           bytes / 1e6, max_batch);
    }
    *out = h;
    return VL_OK;
}

/* ------------------------------------------------------------------ forward */

/* The input of node i's first operand (its primal activation and tangent; tangent NULL = 0). */
static const float *act(const vl_hvp_t *h, int id, const float *x) { return id == 0 ? (h->a[0] ? h->a[0] : x) : h->a[id]; }
static const float *ract(const vl_hvp_t *h, int id) { return id == 0 ? NULL : h->ra[id]; }

static void conv_fwd_direct(vl_hvp_t *h, const node_t *nd, const float *w, const float *v, const float *x, const float *rx,
                            int n)
{
    const conv3_geom_t *g = &nd->geom;
    const size_t hw = (size_t)nd->h * nd->w, ld = (size_t)n * hw;
    const int i = (int)(nd - h->m->nodes);
    if (wino_fwd(nd)) {
        wino_pack(nd->cin, nd->c, w + nd->w_off, h->uw);
        wino_pack(nd->cin, nd->c, v + nd->w_off, h->uv);
        for (int b0 = 0; b0 < n; b0 += DIRECT_CHUNK) {
            const int nb = n - b0 < DIRECT_CHUNK ? n - b0 : DIRECT_CHUNK;
            conv3_pad(g, nd->cin, x + (size_t)b0 * hw, ld, nb, h->xpad);
            if (rx) conv3_pad(g, nd->cin, rx + (size_t)b0 * hw, ld, nb, h->rxpad);
            for (int k = 0; k < nb; k += WINO_CHUNK) {
                const int nk = nb - k < WINO_CHUNK ? nb - k : WINO_CHUNK;
                const size_t off = (size_t)k * nd->cin * g->plane, at = (size_t)(b0 + k) * hw;
                wino_out_t oz = {.out = h->a[i] + at, .cstride = ld}, orz = {.out = h->ra[i] + at, .cstride = ld};
                wino_forward(g, nk, conv3_pad_data(h->xpad) + off, h->uw, nd->has_bias ? w + nd->b_off : NULL, h->wwork, &oz);
                wino_forward(g, nk, conv3_pad_data(h->xpad) + off, h->uv, nd->has_bias ? v + nd->b_off : NULL, h->wwork, &orz);
                if (!rx) continue;
                wino_out_t ot = {.out = h->wtmp, .cstride = (size_t)nk * hw};
                wino_forward(g, nk, conv3_pad_data(h->rxpad) + off, h->uw, NULL, h->wwork, &ot);
                add_chunk(h->ra[i] + at, h->wtmp, nd->c, ld, (size_t)nk * hw);
            }
        }
        return;
    }
    conv3_pack_forward(g, w + nd->w_off, h->pw);
    conv3_pack_forward(g, v + nd->w_off, h->pv);
    for (int b0 = 0; b0 < n; b0 += DIRECT_CHUNK) {
        const int nb = n - b0 < DIRECT_CHUNK ? n - b0 : DIRECT_CHUNK;
        conv3_pad(g, nd->cin, x + (size_t)b0 * hw, ld, nb, h->xpad);
        const float *xp = conv3_pad_data(h->xpad);
        conv3_forward_n(g, nb, nd->cin, nd->c, xp, h->pw, nd->has_bias ? w + nd->b_off : NULL, h->a[i] + (size_t)b0 * hw, ld, 0,
                        NULL, NULL);
        conv3_forward_n(g, nb, nd->cin, nd->c, xp, h->pv, nd->has_bias ? v + nd->b_off : NULL, h->ra[i] + (size_t)b0 * hw, ld, 0,
                        NULL, NULL);
        if (rx) {
            conv3_pad(g, nd->cin, rx + (size_t)b0 * hw, ld, nb, h->rxpad);
            conv3_forward_n(g, nb, nd->cin, nd->c, conv3_pad_data(h->rxpad), h->pw, NULL, h->ra[i] + (size_t)b0 * hw, ld, 1,
                            NULL, NULL);
        }
    }
}

static void conv_fwd(vl_hvp_t *h, const node_t *nd, const float *w, const float *v, const float *x, const float *rx, int n)
{
    if (direct(nd)) { conv_fwd_direct(h, nd, w, v, x, rx, n); return; }
    const int K = nd->cin * nd->k * nd->k, co = nd->c;
    const size_t hw = (size_t)nd->h * nd->w, ld = (size_t)n * hw;
    float *z = h->a[nd - h->m->nodes], *rz = h->ra[nd - h->m->nodes];
    const int nbmax = conv_chunk(nd);
    for (int b0 = 0; b0 < n; b0 += nbmax) {
        const int nb = b0 + nbmax <= n ? nbmax : n - b0;
        const int P = nb * (int)hw;
        conv_im2col(nd, n, b0, nb, x, h->col);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, co, P, K, 1.0f, w + nd->w_off, K, h->col, P, 0.0f,
                    z + (size_t)b0 * hw, (int)ld);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, co, P, K, 1.0f, v + nd->w_off, K, h->col, P, 0.0f,
                    rz + (size_t)b0 * hw, (int)ld);
        if (rx) {
            conv_im2col(nd, n, b0, nb, rx, h->colr);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, co, P, K, 1.0f, w + nd->w_off, K, h->colr, P, 1.0f,
                        rz + (size_t)b0 * hw, (int)ld);
        }
    }
    if (nd->has_bias)
        for (int c = 0; c < co; c++) {
            const float b = w[nd->b_off + c], rb = v[nd->b_off + c];
            float *zc = z + (size_t)c * ld, *rc = rz + (size_t)c * ld;
            for (size_t j = 0; j < ld; j++) { zc[j] += b; rc[j] += rb; }
        }
}

static void linear_fwd(vl_hvp_t *h, const node_t *nd, const float *w, const float *v, const float *x, const float *rx, int n)
{
    const int fin = nd->cin, fout = nd->c;
    const int i = (int)(nd - h->m->nodes);
    float *z = h->a[i], *rz = h->ra[i];
    for (int b = 0; b < n; b++) {
        memcpy(z + (size_t)b * fout, w + nd->b_off, (size_t)fout * sizeof(float));
        memcpy(rz + (size_t)b * fout, v + nd->b_off, (size_t)fout * sizeof(float));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, fout, fin, 1.0f, x, fin, w + nd->w_off, fin, 1.0f, z, fout);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, fout, fin, 1.0f, x, fin, v + nd->w_off, fin, 1.0f, rz, fout);
    if (rx) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, fout, fin, 1.0f, rx, fin, w + nd->w_off, fin, 1.0f, rz, fout);
}

/* A BN node's channel c: its elements are c's block of n h w (spatial) or every C-th (dense):
 * *first, *count, *step. The per-channel constants of the evaluation-mode affine map. */
static void bn_span(const node_t *nd, int c, int n, size_t *first, size_t *count, size_t *step)
{
    const size_t per = (size_t)n * nd->h * nd->w;
    if (nd->spatial) *first = (size_t)c * per, *count = per, *step = 1;
    else *first = (size_t)c, *count = (size_t)n, *step = (size_t)nd->c;
}

static void bn_fwd(vl_hvp_t *h, const node_t *nd, const float *w, const float *v, const float *state, const float *x,
                   const float *rx, int n)
{
    const int i = (int)(nd - h->m->nodes);
    float *z = h->a[i], *rz = h->ra[i];
    for (int c = 0; c < nd->c; c++) {
        const double s = 1.0 / sqrt((double)state[nd->rv_off + c] + BN_EPS);
        const float mu = state[nd->rm_off + c], g = w[nd->w_off + c], fs = (float)s;
        const float a = (float)(g * s), b = (float)(w[nd->b_off + c] - g * s * mu);
        const float vg = v[nd->w_off + c], vb = v[nd->b_off + c];
        size_t j0, cnt, st;
        bn_span(nd, c, n, &j0, &cnt, &st);
        for (size_t k = 0, j = j0; k < cnt; k++, j += st) {
            z[j] = a * x[j] + b;
            rz[j] = vg * ((x[j] - mu) * fs) + vb + (rx ? a * rx[j] : 0.0f);
        }
    }
}

static void maxpool_fwd(vl_hvp_t *h, const node_t *nd, const node_t *src, const float *x, const float *rx, int n)
{
    const int i = (int)(nd - h->m->nodes);
    const int hh = src->h, ww = src->w, ho = nd->h, wo = nd->w;
    float *z = h->a[i], *rz = h->ra[i];
    int32_t *arg = h->arg[i];
    for (size_t p = 0; p < (size_t)nd->c * n; p++) {
        const float *xp = x + p * hh * ww;
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++) {
                int32_t best = (int32_t)((size_t)(2 * oy) * ww + 2 * ox);
                const int32_t cand[4] = {best, best + 1, best + ww, best + ww + 1};
                for (int k = 1; k < 4; k++) /* the first of equal values; a NaN wins (as PyTorch) */
                    if (xp[cand[k]] > xp[best] || (isnan(xp[cand[k]]) && !isnan(xp[best]))) best = cand[k];
                const size_t o = p * ho * wo + (size_t)oy * wo + ox;
                arg[o] = (int32_t)(p * hh * ww) + best;
                z[o] = xp[best];
                rz[o] = rx ? rx[arg[o]] : 0.0f;
            }
    }
}

/* ------------------------------------------------------------------ backward */

/* The adjoint and its tangent of node id (n elements each) = or += g, rg. */
static void put(vl_hvp_t *h, int id, const float *g, const float *rg, size_t n)
{
    float *ga = h->ga[id], *rga = h->rga[id];
    if (h->set[id]) {
        for (size_t j = 0; j < n; j++) ga[j] += g[j], rga[j] += rg[j];
    } else {
        memcpy(ga, g, n * sizeof(float));
        memcpy(rga, rg, n * sizeof(float));
    }
    h->set[id] = 1;
}

/* The adjoint buffers of node id, zeroed when they hold nothing yet (for scattering adds). */
static void prepare(vl_hvp_t *h, int id, size_t n)
{
    if (!h->set[id]) {
        memset(h->ga[id], 0, n * sizeof(float));
        memset(h->rga[id], 0, n * sizeof(float));
    }
    h->set[id] = 1;
}

/* A conv's bias part of H v: R{db} = the sum of R{g} over the batch's positions, per channel. */
static void conv_bias_part(vl_hvp_t *h, const node_t *nd, const float *rgy, size_t ld)
{
    if (!nd->has_bias) return;
    for (int c = 0; c < nd->c; c++) {
        double s = 0.0;
        for (size_t j = 0; j < ld; j++) s += rgy[(size_t)c * ld + j];
        h->hvf[nd->b_off + c] += (float)s;
    }
}

static void conv_bwd_direct(vl_hvp_t *h, const node_t *nd, const float *w, const float *v, const float *x, const float *rx,
                            int n)
{
    const vl_model_t *m = h->m;
    const conv3_geom_t *g = &nd->geom;
    const int i = (int)(nd - m->nodes), co = nd->c;
    const size_t hw = (size_t)nd->h * nd->w, ld = (size_t)n * hw;
    const float *gy = h->ga[i], *rgy = h->rga[i];
    const int need_dx = nd->in0 != 0, wd = wino_dgrad(nd), ww = wino_wg(nd);
    conv3_geom_t gb; /* the input gradient's: cout channels in, cin out, the same planes */
    conv3_geom_layout(&gb, co, nd->cin, nd->h, nd->w, g->flat);
    if (need_dx) {
        prepare(h, nd->in0, (size_t)n * node_size(&m->nodes[nd->in0]));
        if (wd) {
            conv3_flip(g, w + nd->w_off, h->wflip);
            wino_pack(co, nd->cin, h->wflip, h->uw);
            conv3_flip(g, v + nd->w_off, h->wflip);
            wino_pack(co, nd->cin, h->wflip, h->uv);
        } else {
            conv3_pack_backward(g, w + nd->w_off, h->pw);
            conv3_pack_backward(g, v + nd->w_off, h->pv);
        }
    }
    const int nbw = ww ? wgrad_images(nd) : 0;
    for (int b0 = 0; b0 < n; b0 += DIRECT_CHUNK) {
        const int nb = n - b0 < DIRECT_CHUNK ? n - b0 : DIRECT_CHUNK;
        conv3_pad(g, nd->cin, x + (size_t)b0 * hw, ld, nb, h->xpad);
        if (rx) conv3_pad(g, nd->cin, rx + (size_t)b0 * hw, ld, nb, h->rxpad);
        if (!ww || need_dx) {
            conv3_pad(g, co, gy + (size_t)b0 * hw, ld, nb, h->gpad);
            conv3_pad(g, co, rgy + (size_t)b0 * hw, ld, nb, h->rgpad);
        }
        const float *gp = conv3_pad_data(h->gpad), *rgp = conv3_pad_data(h->rgpad);
        /* R{dW} = R{g} * x + g * R{x} (correlations over the padded planes) */
        if (ww) {
            for (int k = 0; k < nb; k += nbw) {
                const int nk = nb - k < nbw ? nb - k : nbw;
                const size_t off = (size_t)k * nd->cin * g->plane, at = (size_t)(b0 + k) * hw;
                wino_wgrad(g, nk, conv3_pad_data(h->xpad) + off, rgy + at, ld, h->wwork, h->wM, b0 > 0 || k > 0);
                if (rx) wino_wgrad(g, nk, conv3_pad_data(h->rxpad) + off, gy + at, ld, h->wwork, h->wM, 1);
            }
        } else {
            conv3_wgrad(g, nb, conv3_pad_data(h->xpad), rgp, h->hvf + nd->w_off, 1);
            if (rx) conv3_wgrad(g, nb, conv3_pad_data(h->rxpad), gp, h->hvf + nd->w_off, 1);
        }
        if (!need_dx) continue;
        /* g_x += W' * g; R{g_x} += W' * R{g} + V' * g (flipped, transposed weights: a "full" conv) */
        float *gx = h->ga[nd->in0] + (size_t)b0 * hw, *rgx = h->rga[nd->in0] + (size_t)b0 * hw;
        if (wd) {
            for (int k = 0; k < nb; k += WINO_CHUNK) {
                const int nk = nb - k < WINO_CHUNK ? nb - k : WINO_CHUNK;
                const size_t off = (size_t)k * co * g->plane, at = (size_t)k * hw, len = (size_t)nk * hw;
                wino_out_t ot = {.out = h->wtmp, .cstride = len};
                wino_forward(&gb, nk, gp + off, h->uw, NULL, h->wwork, &ot);
                add_chunk(gx + at, h->wtmp, nd->cin, ld, len);
                wino_forward(&gb, nk, rgp + off, h->uw, NULL, h->wwork, &ot);
                add_chunk(rgx + at, h->wtmp, nd->cin, ld, len);
                wino_forward(&gb, nk, gp + off, h->uv, NULL, h->wwork, &ot);
                add_chunk(rgx + at, h->wtmp, nd->cin, ld, len);
            }
        } else {
            conv3_forward_n(g, nb, co, nd->cin, gp, h->pw, NULL, gx, ld, 1, NULL, NULL);
            conv3_forward_n(g, nb, co, nd->cin, rgp, h->pw, NULL, rgx, ld, 1, NULL, NULL);
            conv3_forward_n(g, nb, co, nd->cin, gp, h->pv, NULL, rgx, ld, 1, NULL, NULL);
        }
    }
    if (ww && n > 0) { /* dW = G^T M G, added to the product */
        wino_wgrad_finish(nd->cin, co, h->wM, h->wdw);
        const size_t nw = (size_t)co * nd->cin * 9;
        for (size_t q = 0; q < nw; q++) h->hvf[nd->w_off + q] += h->wdw[q];
    }
    conv_bias_part(h, nd, rgy, ld);
}

static void conv_bwd(vl_hvp_t *h, const node_t *nd, const float *w, const float *v, const float *x, const float *rx, int n)
{
    if (direct(nd)) { conv_bwd_direct(h, nd, w, v, x, rx, n); return; }
    const vl_model_t *m = h->m;
    const int i = (int)(nd - m->nodes), K = nd->cin * nd->k * nd->k, co = nd->c;
    const size_t hw = (size_t)nd->h * nd->w, ld = (size_t)n * hw;
    const float *gy = h->ga[i], *rgy = h->rga[i];
    float *hw_w = h->hvf + nd->w_off;
    const int need_dx = nd->in0 != 0;
    if (need_dx) prepare(h, nd->in0, (size_t)n * node_size(&m->nodes[nd->in0]));
    const int nbmax = conv_chunk(nd);
    for (int b0 = 0; b0 < n; b0 += nbmax) {
        const int nb = b0 + nbmax <= n ? nbmax : n - b0;
        const int P = nb * (int)hw;
        conv_im2col(nd, n, b0, nb, x, h->col);
        /* R{dW} = R{g} col(x)^T + g col(R{x})^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, co, K, P, 1.0f, rgy + (size_t)b0 * hw, (int)ld, h->col, P, 1.0f,
                    hw_w, K);
        if (rx) {
            conv_im2col(nd, n, b0, nb, rx, h->colr);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, co, K, P, 1.0f, gy + (size_t)b0 * hw, (int)ld, h->colr, P,
                        1.0f, hw_w, K);
        }
        if (!need_dx) continue;
        /* g_x = col2im(W^T g); R{g_x} = col2im(W^T R{g} + V^T g) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, P, co, 1.0f, w + nd->w_off, K, gy + (size_t)b0 * hw, (int)ld,
                    0.0f, h->dcol, P);
        conv_col2im_add(nd, n, b0, nb, h->dcol, h->ga[nd->in0]);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, P, co, 1.0f, w + nd->w_off, K, rgy + (size_t)b0 * hw, (int)ld,
                    0.0f, h->dcol, P);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, P, co, 1.0f, v + nd->w_off, K, gy + (size_t)b0 * hw, (int)ld,
                    1.0f, h->dcol, P);
        conv_col2im_add(nd, n, b0, nb, h->dcol, h->rga[nd->in0]);
    }
    conv_bias_part(h, nd, rgy, ld);
}

static void linear_bwd(vl_hvp_t *h, const node_t *nd, const float *w, const float *v, const float *x, const float *rx, int n)
{
    const int i = (int)(nd - h->m->nodes), fin = nd->cin, fout = nd->c;
    const float *gy = h->ga[i], *rgy = h->rga[i];
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, fout, fin, n, 1.0f, rgy, fout, x, fin, 1.0f, h->hvf + nd->w_off, fin);
    if (rx) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, fout, fin, n, 1.0f, gy, fout, rx, fin, 1.0f, h->hvf + nd->w_off, fin);
    for (int o = 0; o < fout; o++) {
        double s = 0.0;
        for (int b = 0; b < n; b++) s += rgy[(size_t)b * fout + o];
        h->hvf[nd->b_off + o] += (float)s;
    }
    if (nd->in0 == 0) return;
    const int id = nd->in0;
    const float acc = h->set[id] ? 1.0f : 0.0f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, fin, fout, 1.0f, gy, fout, w + nd->w_off, fin, acc, h->ga[id], fin);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, fin, fout, 1.0f, rgy, fout, w + nd->w_off, fin, acc, h->rga[id], fin);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, fin, fout, 1.0f, gy, fout, v + nd->w_off, fin, 1.0f, h->rga[id], fin);
    h->set[id] = 1;
}

static void bn_bwd(vl_hvp_t *h, const node_t *nd, const float *w, const float *v, const float *state, const float *x,
                   const float *rx, int n)
{
    const int i = (int)(nd - h->m->nodes);
    const float *gy = h->ga[i], *rgy = h->rga[i];
    const int id = nd->in0, dx = id != 0;
    if (dx) prepare(h, id, (size_t)n * node_size(nd));
    for (int c = 0; c < nd->c; c++) {
        const double s = 1.0 / sqrt((double)state[nd->rv_off + c] + BN_EPS);
        const float mu = state[nd->rm_off + c], a = (float)(w[nd->w_off + c] * s), fs = (float)s;
        const float vgs = v[nd->w_off + c] * fs;
        size_t j0, cnt, st;
        bn_span(nd, c, n, &j0, &cnt, &st);
        /* R{dγ} = sum R{g} x̂ + g s R{x};  R{dβ} = sum R{g} (float lanes of 1024, blocks in double) */
        double sg = 0.0, sb = 0.0;
        for (size_t k0 = 0; k0 < cnt; k0 += 1024) {
            const size_t k1 = k0 + 1024 < cnt ? k0 + 1024 : cnt;
            float pg = 0.0f, pb = 0.0f;
            for (size_t k = k0, j = j0 + k0 * st; k < k1; k++, j += st) {
                pg += rgy[j] * ((x[j] - mu) * fs) + (rx ? gy[j] * fs * rx[j] : 0.0f);
                pb += rgy[j];
            }
            sg += pg;
            sb += pb;
        }
        h->hvf[nd->w_off + c] += (float)sg;
        h->hvf[nd->b_off + c] += (float)sb;
        if (!dx) continue;
        float *gx = h->ga[id], *rgx = h->rga[id];
        for (size_t k = 0, j = j0; k < cnt; k++, j += st) {
            gx[j] += a * gy[j];
            rgx[j] += a * rgy[j] + vgs * gy[j];
        }
    }
}

/* ------------------------------------------------------------------ one batch */

double hvp_add(vl_hvp_t *h, const float *w, const float *state, const float *x, const int32_t *y, int n, const float *v,
               double *hv, int64_t *correct)
{
    const vl_model_t *m = h->m;
    const int nn = m->nnodes;
    if (correct) *correct = 0;
    if (n <= 0) return 0.0;
    if (n > h->max_batch) { /* a programming error, not an input error */
        fprintf(stderr, "valley: internal error: hvp_add of %d samples, buffers for %d\n", n, h->max_batch);
        abort();
    }
    const node_t *in = &m->nodes[0];
    if (h->a[0]) { /* (N, C, H, W) -> (C, N, H, W) */
        const size_t hw = (size_t)in->h * in->w;
        for (int b = 0; b < n; b++)
            for (int c = 0; c < in->c; c++)
                memcpy(h->a[0] + ((size_t)c * n + b) * hw, x + ((size_t)b * in->c + c) * hw, hw * sizeof(float));
    }
    for (int i = 1; i < nn; i++) {
        const node_t *nd = &m->nodes[i];
        const node_t *src = &m->nodes[nd->in0];
        const float *xi = act(h, nd->in0, x), *rxi = ract(h, nd->in0);
        const size_t size = (size_t)n * node_size(nd);
        float *z = h->a[i], *rz = h->ra[i];
        switch (nd->op) {
        case OP_CONV: conv_fwd(h, nd, w, v, xi, rxi, n); break;
        case OP_LINEAR: linear_fwd(h, nd, w, v, xi, rxi, n); break;
        case OP_BN: bn_fwd(h, nd, w, v, state, xi, rxi, n); break;
        case OP_RELU:
            for (size_t j = 0; j < size; j++) {
                const int on = xi[j] > 0.0f;
                z[j] = on ? xi[j] : (isnan(xi[j]) ? xi[j] : 0.0f);
                rz[j] = on && rxi ? rxi[j] : 0.0f;
            }
            break;
        case OP_MAXPOOL: maxpool_fwd(h, nd, src, xi, rxi, n); break;
        case OP_AVGPOOL: {
            const size_t hw = (size_t)src->h * src->w;
            for (int c = 0; c < nd->c; c++)
                for (int b = 0; b < n; b++) {
                    const size_t p0 = ((size_t)c * n + b) * hw;
                    double s = 0.0, r = 0.0;
                    for (size_t j = 0; j < hw; j++) s += xi[p0 + j], r += rxi ? rxi[p0 + j] : 0.0f;
                    z[(size_t)b * nd->c + c] = (float)(s / (double)hw);
                    rz[(size_t)b * nd->c + c] = (float)(r / (double)hw);
                }
            break;
        }
        case OP_FLATTEN: {
            const size_t hw = (size_t)src->h * src->w;
            for (int c = 0; c < src->c; c++)
                for (int b = 0; b < n; b++) {
                    const size_t d0 = (size_t)b * nd->c + c * hw, s0 = ((size_t)c * n + b) * hw;
                    memcpy(z + d0, xi + s0, hw * sizeof(float));
                    if (rxi) memcpy(rz + d0, rxi + s0, hw * sizeof(float));
                    else memset(rz + d0, 0, hw * sizeof(float));
                }
            break;
        }
        case OP_ADD: {
            const float *y1 = act(h, nd->in1, x), *r1 = ract(h, nd->in1);
            for (size_t j = 0; j < size; j++) {
                z[j] = xi[j] + y1[j];
                rz[j] = (rxi ? rxi[j] : 0.0f) + (r1 ? r1[j] : 0.0f);
            }
            break;
        }
        case OP_DROPOUT: /* evaluation: the identity */
            memcpy(z, xi, size * sizeof(float));
            if (rxi) memcpy(rz, rxi, size * sizeof(float));
            else memset(rz, 0, size * sizeof(float));
            break;
        default: break;
        }
    }
    /* the loss: softmax cross-entropy per sample; g = p - e_y, R{g} = p (R{z} - <p, R{z}>) */
    const int last = nn - 1, C = m->nodes[last].c;
    const float *zl = h->a[last], *rzl = h->ra[last];
    float *gl = h->ga[last], *rgl = h->rga[last];
    double loss = 0.0;
    for (int b = 0; b < n; b++) {
        const float *zb = zl + (size_t)b * C, *rb = rzl + (size_t)b * C;
        double mx = zb[0];
        int am = 0;
        for (int k = 1; k < C; k++)
            if (zb[k] > mx) mx = zb[k], am = k;
        if (correct && am == y[b]) (*correct)++;
        double se = 0.0, pr = 0.0;
        for (int k = 0; k < C; k++) se += exp((double)zb[k] - mx);
        for (int k = 0; k < C; k++) pr += exp((double)zb[k] - mx) / se * rb[k];
        loss += log(se) + mx - zb[y[b]];
        for (int k = 0; k < C; k++) {
            const double p = exp((double)zb[k] - mx) / se;
            gl[(size_t)b * C + k] = (float)(p - (k == y[b]));
            rgl[(size_t)b * C + k] = (float)(p * (rb[k] - pr));
        }
    }
    memset(h->set, 0, (size_t)nn);
    h->set[last] = 1;
    memset(h->hvf, 0, m->nparams * sizeof(float));
    for (int i = nn - 1; i >= 1; i--) {
        const node_t *nd = &m->nodes[i];
        if (!h->set[i]) continue; /* no path to the output: its parameters' part of H v is 0 */
        const node_t *src = &m->nodes[nd->in0];
        const float *xi = act(h, nd->in0, x), *rxi = ract(h, nd->in0);
        const size_t size = (size_t)n * node_size(nd);
        const int id = nd->in0;
        const float *gy = h->ga[i], *rgy = h->rga[i];
        switch (nd->op) {
        case OP_CONV: conv_bwd(h, nd, w, v, xi, rxi, n); break;
        case OP_LINEAR: linear_bwd(h, nd, w, v, xi, rxi, n); break;
        case OP_BN: bn_bwd(h, nd, w, v, state, xi, rxi, n); break;
        case OP_RELU:
            if (!id) break;
            prepare(h, id, size);
            for (size_t j = 0; j < size; j++)
                if (xi[j] > 0.0f) { h->ga[id][j] += gy[j]; h->rga[id][j] += rgy[j]; }
            break;
        case OP_MAXPOOL:
            if (!id) break;
            prepare(h, id, (size_t)n * node_size(src));
            for (size_t j = 0; j < size; j++) {
                h->ga[id][h->arg[i][j]] += gy[j];
                h->rga[id][h->arg[i][j]] += rgy[j];
            }
            break;
        case OP_AVGPOOL: {
            if (!id) break;
            const size_t hw = (size_t)src->h * src->w;
            prepare(h, id, (size_t)n * node_size(src));
            for (int c = 0; c < nd->c; c++)
                for (int b = 0; b < n; b++) {
                    const float g1 = (float)(gy[(size_t)b * nd->c + c] / (double)hw);
                    const float r1 = (float)(rgy[(size_t)b * nd->c + c] / (double)hw);
                    float *pg = h->ga[id] + ((size_t)c * n + b) * hw, *pr = h->rga[id] + ((size_t)c * n + b) * hw;
                    for (size_t j = 0; j < hw; j++) pg[j] += g1, pr[j] += r1;
                }
            break;
        }
        case OP_FLATTEN: {
            if (!id) break;
            const size_t hw = (size_t)src->h * src->w;
            prepare(h, id, size);
            for (int c = 0; c < src->c; c++)
                for (int b = 0; b < n; b++) {
                    const size_t s0 = (size_t)b * nd->c + c * hw, d0 = ((size_t)c * n + b) * hw;
                    for (size_t j = 0; j < hw; j++) {
                        h->ga[id][d0 + j] += gy[s0 + j];
                        h->rga[id][d0 + j] += rgy[s0 + j];
                    }
                }
            break;
        }
        case OP_ADD:
            if (id) put(h, id, gy, rgy, size);
            if (nd->in1) put(h, nd->in1, gy, rgy, size);
            break;
        case OP_DROPOUT:
            if (id) put(h, id, gy, rgy, size);
            break;
        default: break;
        }
    }
    for (size_t p = 0; p < m->nparams; p++) hv[p] += h->hvf[p];
    return loss;
}
