/* kfac.c — the K-FAC factors of the conv and linear layers, gathered during backward passes
 * (model_kfac_layers, model_kfac_set in model.h; laplace.c builds the Laplace posterior on them).
 *
 * Layer with input patches a (one per sample and output location, with a trailing 1 when the
 * layer has a bias) and output gradients g at the same locations:
 *   A += sum a a^T,  G += sum g g^T.
 * Each is a float SYRK over a block of at most KFAC_BLOCK locations (OpenBLAS), added to the
 * double sink: the float partial sums stay short, the totals over a data set are double. */
#include "model_internal.h"

#define KFAC_BLOCK 4096

static int covered(const node_t *nd) { return nd->op == OP_CONV || nd->op == OP_LINEAR; }

int model_kfac_layers(const vl_model_t *m, vl_kfac_layer_t *lay, int max)
{
    int n = 0;
    for (int i = 1; i < m->nnodes; i++) {
        const node_t *nd = &m->nodes[i];
        if (!covered(nd)) continue;
        if (n < max) {
            const int in = nd->op == OP_CONV ? nd->cin * nd->k * nd->k : nd->cin;
            lay[n] = (vl_kfac_layer_t){.dim_a = in + (nd->has_bias ? 1 : 0), .dim_g = nd->c, .has_bias = nd->has_bias,
                                       .locations = nd->op == OP_CONV ? nd->h * nd->w : 1, .w_off = nd->w_off,
                                       .b_off = nd->b_off};
        }
        n++;
    }
    return n;
}

void kfac_free(vl_model_t *m)
{
    free(m->kfac_A);
    free(m->kfac_G);
    free(m->kfac_col);
    free(m->kfac_tmp);
    m->kfac_A = m->kfac_G = NULL;
    m->kfac_col = m->kfac_tmp = NULL;
}

int model_kfac_set(vl_model_t *m, double *const *A, double *const *G)
{
    kfac_free(m);
    for (int i = 1; i < m->nnodes; i++) { /* restore what an earlier set turned off */
        node_t *nd = &m->nodes[i];
        if (nd->recompute_kfac) nd->recompute = 1, nd->recompute_kfac = 0;
    }
    if (!A || !G) return VL_OK;
    const int nl = model_kfac_layers(m, NULL, 0);
    size_t col = 1, tmp = 1;
    for (int i = 1, l = 0; i < m->nnodes; i++) {
        node_t *nd = &m->nodes[i];
        if (!covered(nd)) continue;
        nd->kfac_index = l++;
        const size_t in = nd->op == OP_CONV ? (size_t)nd->cin * nd->k * nd->k : (size_t)nd->cin;
        const size_t big = in > (size_t)nd->c ? in : (size_t)nd->c;
        if (big * big > tmp) tmp = big * big;
        if (nd->op == OP_CONV) {
            const size_t c = in * conv_chunk(nd) * nd->h * nd->w;
            if (c > col) col = c;
        }
        if (nd->recompute) nd->recompute = 0, nd->recompute_kfac = 1;
    }
    m->kfac_A = malloc((size_t)nl * sizeof(double *));
    m->kfac_G = malloc((size_t)nl * sizeof(double *));
    m->kfac_col = vl_alloc(col * sizeof(float), "K-FAC input patches");
    m->kfac_tmp = vl_alloc(tmp * sizeof(float), "K-FAC partial sums");
    if (!m->kfac_A || !m->kfac_G || !m->kfac_col || !m->kfac_tmp) {
        model_kfac_set(m, NULL, NULL);
        return VL_FAIL(VL_EIO, "out of memory for the K-FAC factors");
    }
    for (int l = 0; l < nl; l++) m->kfac_A[l] = A[l], m->kfac_G[l] = G[l];
    return VL_OK;
}

/* S (d x d of a double matrix with row stride lds, full) += the float upper-triangle partial sum t
 * (d x d, row-major). */
static void add_sym(double *S, size_t lds, const float *t, int d)
{
    for (int i = 0; i < d; i++)
        for (int j = i; j < d; j++) {
            S[(size_t)i * lds + j] += t[(size_t)i * d + j];
            if (j != i) S[(size_t)j * lds + i] += t[(size_t)i * d + j];
        }
}

/* S += X X^T for X (d rows, cols columns, row stride ld): blocks of KFAC_BLOCK columns. */
static void syrk_rows(double *S, size_t lds, float *tmp, int d, const float *X, size_t cols, size_t ld)
{
    for (size_t c0 = 0; c0 < cols; c0 += KFAC_BLOCK) {
        const int nc = (int)(cols - c0 < KFAC_BLOCK ? cols - c0 : KFAC_BLOCK);
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, d, nc, 1.0f, X + c0, (int)ld, 0.0f, tmp, d);
        add_sym(S, lds, tmp, d);
    }
}

/* S += X^T X for X (rows x d, row stride ld): blocks of KFAC_BLOCK rows. */
static void syrk_cols(double *S, size_t lds, float *tmp, int d, const float *X, size_t rows, size_t ld)
{
    for (size_t r0 = 0; r0 < rows; r0 += KFAC_BLOCK) {
        const int nr = (int)(rows - r0 < KFAC_BLOCK ? rows - r0 : KFAC_BLOCK);
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, d, nr, 1.0f, X + r0 * ld, (int)ld, 0.0f, tmp, d);
        add_sym(S, lds, tmp, d);
    }
}

/* The bias entries of A (K + 1 wide): the patch sums s into the last row and column. */
static void add_bias_sums(double *A, int K, int r, double s)
{
    A[(size_t)K * (K + 1) + r] += s;
    A[(size_t)r * (K + 1) + K] += s;
}

void kfac_accumulate(vl_model_t *m, const node_t *nd, const float *x, int n)
{
    if (n <= 0) return;
    double *A = m->kfac_A[nd->kfac_index], *G = m->kfac_G[nd->kfac_index];
    const int K = nd->op == OP_CONV ? nd->cin * nd->k * nd->k : nd->cin; /* patch length */
    const size_t da = (size_t)K + (nd->has_bias ? 1 : 0);                /* A's row stride */
    if (nd->op == OP_LINEAR) { /* patches: the n rows of x (n, K) */
        syrk_cols(A, da, m->kfac_tmp, K, x, (size_t)n, (size_t)K);
        if (nd->has_bias) {
            for (int j = 0; j < K; j++) {
                double s = 0.0;
                for (int b = 0; b < n; b++) s += x[(size_t)b * K + j];
                add_bias_sums(A, K, j, s);
            }
            A[(size_t)K * da + K] += n;
        }
        syrk_cols(G, (size_t)nd->c, m->kfac_tmp, nd->c, nd->dout, (size_t)n, (size_t)nd->c);
        return;
    }
    /* conv: the input patches chunk by chunk of images (im2col), the output gradient (cout, n hw) */
    const size_t hw = (size_t)nd->h * nd->w, np = (size_t)n * hw;
    const int chunk = conv_chunk(nd);
    for (int b0 = 0; b0 < n; b0 += chunk) {
        const int nb = n - b0 < chunk ? n - b0 : chunk;
        const size_t cols = (size_t)nb * hw;
        conv_im2col(nd, n, b0, nb, x, m->kfac_col);
        syrk_rows(A, da, m->kfac_tmp, K, m->kfac_col, cols, cols);
        if (nd->has_bias)
            for (int r = 0; r < K; r++) {
                double s = 0.0;
                const float *row = m->kfac_col + (size_t)r * cols;
                for (size_t j = 0; j < cols; j++) s += row[j];
                add_bias_sums(A, K, r, s);
            }
    }
    if (nd->has_bias) A[(size_t)K * da + K] += (double)np;
    syrk_rows(G, (size_t)nd->c, m->kfac_tmp, nd->c, nd->dout, np, np);
}
