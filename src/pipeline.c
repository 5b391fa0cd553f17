/* pipeline.c — `valley run`: prepare → train → evaluate → report.md. Later
 * issues add their stages (curve, surface, SWAG, PCA, inference, simplex). */
#include "gitversion.h"
#include "valley/pipeline.h"

#include <math.h>
#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "valley/bma.h"
#include "valley/cpu.h"
#include "valley/curve.h"
#include "valley/data.h"
#include "valley/error.h"
#include "valley/hessian.h"
#include "valley/log.h"
#include "valley/ncio.h"
#include "valley/onnx.h"
#include "valley/plot.h"
#include "valley/infer.h"
#include "valley/simplex.h"
#include "valley/subspace.h"
#include "valley/train.h"

int pipeline_prepare(vl_comm_t *c, vl_deck_t *d, const char *name, const char *path)
{
    char was[32]; /* the dataset file records the keys of `prepare` */
    snprintf(was, sizeof was, "%s", deck_command(d));
    int st = deck_set_command(d, "prepare");
    if (!st && c->rank == 0) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        st = slash ? ncio_mkdirs(dir) : VL_OK;
        if (!st) st = data_prepare(name, deck_str(d, "data.source"), (uint64_t)deck_int(d, "run.seed"), path, deck_text(d));
        if (!st) vl_log(MPI_COMM_SELF, "wrote %s", path);
    }
    if (!st) st = deck_set_command(d, was);
    int all = comm_agree(c->world, st);
    if (all && !st) return VL_FAIL_ALL(all, "preparing %s failed on rank 0", name);
    if (st) vl_error_set_collective();
    return st;
}

static int exists(const char *path) { return access(path, R_OK) == 0; }

static int exists_fig(const char *outdir, const char *name)
{
    char p[8400];
    snprintf(p, sizeof p, "%s/figures/%s", outdir, name);
    return exists(p);
}

static double read_scalar(const char *path, const char *var)
{
    int ncid, v;
    double x = NAN;
    if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR) return x;
    if (nc_inq_varid(ncid, var, &v) == NC_NOERR) nc_get_var_double(ncid, v, &x);
    nc_close(ncid);
    return x;
}

/* Table rows "| method | models | accuracy | NLL | ECE | ECE (count) | Brier |" of a bma.nc or a
 * classification infer.nc (dimension `method`). */
static void method_rows(FILE *f, const char *path)
{
    int ncid, dim, vn, vs;
    if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR) return;
    size_t nm = 0;
    if (nc_inq_dimid(ncid, "method", &dim) == NC_NOERR) nc_inq_dimlen(ncid, dim, &nm);
    const char *cols[5] = {"accuracy", "nll", "ece", "ece_count", "brier"};
    for (size_t k = 0; k < nm; k++) {
        char *name = NULL;
        int ns = 0;
        size_t one = 1;
        if (nc_inq_varid(ncid, "method_name", &vn) == NC_NOERR) nc_get_vara_string(ncid, vn, &k, &one, &name);
        if (nc_inq_varid(ncid, "n_samples", &vs) == NC_NOERR) nc_get_vara_int(ncid, vs, &k, &one, &ns);
        fprintf(f, "| %s | %d |", name ? name : "?", ns);
        for (int c = 0; c < 5; c++) {
            int v;
            double x = NAN;
            if (nc_inq_varid(ncid, cols[c], &v) == NC_NOERR) nc_get_vara_double(ncid, v, &k, &one, &x);
            fprintf(f, " %.4f |", x);
        }
        fprintf(f, "\n");
        if (name) nc_free_string(1, &name);
    }
    nc_close(ncid);
}

/* The baselines stage's table: every method of baselines/bma/bma.nc with accuracy, NLL, ECE,
 * the fitted temperature / prior precision, the mean predictive entropy on the training classes'
 * test images and on the held-out classes' ones; then which methods lead. */
static void baselines_section(FILE *f, const vl_deck_t *d, const char *outdir)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/baselines/bma/bma.nc", outdir);
    int ncid, dim, vn;
    if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR) return;
    size_t nm = 0;
    if (nc_inq_dimid(ncid, "method", &dim) == NC_NOERR) nc_inq_dimlen(ncid, dim, &nm);
    int nt = 0, nv = 0, no = 0;
    nc_get_att_int(ncid, NC_GLOBAL, "n_test", &nt);
    nc_get_att_int(ncid, NC_GLOBAL, "n_validation", &nv);
    nc_get_att_int(ncid, NC_GLOBAL, "n_ood", &no);
    fprintf(f, "\n## The SWAG paper's baselines and split classes (`baselines/`)\n\nA %s trained on classes %s only "
               "(%s epochs; %d training images held out for validation), then every method of `bma` on the %d test "
               "images of those classes and on the %d test images of the other classes (out of distribution: a good "
               "posterior is uncertain there, its predictive entropy high). Temperature scaling and the Laplace prior "
               "precision are fitted on the validation images.\n\n"
               "| method | models | accuracy | NLL | ECE | T | prior precision | entropy (training classes) | entropy (held-out classes) |\n"
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            deck_str(d, "model.kind"), deck_str(d, "baselines.classes"),
            deck_int(d, "baselines.epochs") > 0 ? deck_str(d, "baselines.epochs") : deck_str(d, "train.epochs"), nv, nt, no);
    const char *cols[7] = {"accuracy", "nll", "ece", "temperature", "prior_precision", "entropy", "ood_entropy"};
    char best_nll[32] = "?", best_ood[32] = "?";
    double bn = INFINITY, bo = -INFINITY;
    for (size_t k = 0; k < nm && k < 64; k++) {
        char *name = NULL;
        int ns = 0, vs;
        size_t one = 1;
        if (nc_inq_varid(ncid, "method_name", &vn) == NC_NOERR) nc_get_vara_string(ncid, vn, &k, &one, &name);
        if (nc_inq_varid(ncid, "n_samples", &vs) == NC_NOERR) nc_get_vara_int(ncid, vs, &k, &one, &ns);
        fprintf(f, "| %s | %d |", name ? name : "?", ns);
        double x[7];
        for (int c = 0; c < 7; c++) {
            int v;
            x[c] = NAN;
            if (nc_inq_varid(ncid, cols[c], &v) == NC_NOERR) nc_get_vara_double(ncid, v, &k, &one, &x[c]);
            if (isnan(x[c])) fprintf(f, " - |");
            else if (c == 4) fprintf(f, " %.3g |", x[c]);
            else fprintf(f, " %.4f |", x[c]);
        }
        fprintf(f, "\n");
        if (name && x[1] < bn) bn = x[1], snprintf(best_nll, sizeof best_nll, "%s", name);
        if (name && x[6] > bo) bo = x[6], snprintf(best_ood, sizeof best_ood, "%s", name);
        if (name) nc_free_string(1, &name);
    }
    nc_close(ncid);
    fprintf(f, "\nLowest test NLL: **%s** (%.4f); highest predictive entropy on the held-out classes: **%s** (%.4f). "
               "The SWAG paper's ordering (its CIFAR tables): SWAG and MultiSWAG lowest NLL, SWAG and KFAC-Laplace "
               "most uncertain on held-out classes, temperature scaling well calibrated in distribution but not out "
               "of it; how these numbers compare is in doc/results.md.\n", best_nll, bn, best_ood, bo);
    if (exists_fig(outdir, "baselines/bma_entropy.png"))
        fprintf(f, "\n![predictive entropy of each method on the training and the held-out classes](figures/baselines/bma_entropy.png)\n");
    if (exists_fig(outdir, "baselines/bma_reliability.png"))
        fprintf(f, "\n![reliability diagrams of the baselines](figures/baselines/bma_reliability.png)\n");
}

/* The numbers of a filter-normalised random plane (surface.nc, train_loss (y, x)): the training
 * loss at the centre, its range, the curvature at the centre (second differences along x and
 * y, averaged, per squared unit of the directions), the fraction of the grid under 1 nat and
 * under the centre + 0.5, the test error at the centre. 0 when the file holds them all. */
typedef struct {
    double centre, lo, hi, curv, below1, below_c, test_err;
    size_t n;
} plane_numbers_t;

static int stage_on(const char *stages, const char *name);

static int plane_numbers(const char *path, plane_numbers_t *r)
{
    int ncid, st = 1;
    if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR) return 1;
    int dx, dy, vx, vy, vl, ve;
    size_t nx = 0, ny = 0;
    if (nc_inq_dimid(ncid, "x", &dx) == NC_NOERR && nc_inq_dimid(ncid, "y", &dy) == NC_NOERR &&
        nc_inq_dimlen(ncid, dx, &nx) == NC_NOERR && nc_inq_dimlen(ncid, dy, &ny) == NC_NOERR && nx >= 3 && ny >= 3 &&
        nx * ny <= 1000000) {
        double *x = calloc(nx, sizeof(double)), *y = calloc(ny, sizeof(double));
        double *L = calloc(nx * ny, sizeof(double)), *E = calloc(nx * ny, sizeof(double));
        if (x && y && L && E && nc_inq_varid(ncid, "x", &vx) == NC_NOERR && nc_get_var_double(ncid, vx, x) == NC_NOERR &&
            nc_inq_varid(ncid, "y", &vy) == NC_NOERR && nc_get_var_double(ncid, vy, y) == NC_NOERR &&
            nc_inq_varid(ncid, "train_loss", &vl) == NC_NOERR && nc_get_var_double(ncid, vl, L) == NC_NOERR &&
            nc_inq_varid(ncid, "test_err", &ve) == NC_NOERR && nc_get_var_double(ncid, ve, E) == NC_NOERR) {
            size_t i = 0, j = 0; /* the grid point nearest the centre */
            for (size_t k = 1; k < ny; k++) if (fabs(y[k]) < fabs(y[i])) i = k;
            for (size_t k = 1; k < nx; k++) if (fabs(x[k]) < fabs(x[j])) j = k;
            if (i == 0) i = 1;
            if (i == ny - 1) i = ny - 2;
            if (j == 0) j = 1;
            if (j == nx - 1) j = nx - 2;
            const double c = L[i * nx + j], hx = x[1] - x[0], hy = y[1] - y[0];
            const double cx = (L[i * nx + j + 1] - 2 * c + L[i * nx + j - 1]) / (hx * hx);
            const double cy = (L[(i + 1) * nx + j] - 2 * c + L[(i - 1) * nx + j]) / (hy * hy);
            *r = (plane_numbers_t){.centre = c, .lo = INFINITY, .hi = -INFINITY, .curv = (cx + cy) / 2,
                                   .test_err = E[i * nx + j], .n = nx * ny};
            st = 0;
            for (size_t k = 0; k < nx * ny; k++) {
                if (!isfinite(L[k]) || L[k] > 1e30) { st = 1; break; } /* a point not computed */
                r->lo = fmin(r->lo, L[k]);
                r->hi = fmax(r->hi, L[k]);
                r->below1 += (L[k] < 1.0) / (double)(nx * ny);
                r->below_c += (L[k] < c + 0.5) / (double)(nx * ny);
            }
        }
        free(x); free(y); free(L); free(E);
    }
    nc_close(ncid);
    return st;
}

/* The hessian stage's table and figures (issue 19). */
static const char *hess_models[3] = {"sgd", "swa", "curve_mid"};
static const char *hess_labels[3] = {"SGD (first run)", "SWA (first run)", "curve midpoint t = 0.5"};

static void hessian_section(FILE *f, const vl_deck_t *d, const char *outdir)
{
    char path[4300];
    int any = 0;
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/hessian/%s/hessian.nc", outdir, hess_models[k]);
        if (!exists(path)) continue;
        if (!any)
            fprintf(f, "\n## Curvature (`hessian/`)\n\nThe Hessian of the mean training NLL over the first %lld training "
                       "images (no weight decay, BN in evaluation mode with each model's running statistics): Lanczos with full "
                       "reorthogonalisation, %lld steps per run, %lld runs from Rademacher vectors (their quadratures give the "
                       "density, their v^T H v the trace). The flatness claim of SWA is the first column against SGD's.\n\n"
                       "| model | lambda_max (residual) | lambda_2 | lambda_min (residual) | abs(min/max) | trace | train NLL |\n"
                       "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
                    deck_int(d, "hessian.samples"), deck_int(d, "hessian.steps"), deck_int(d, "hessian.probes"));
        any = 1;
        int ncid, v;
        double top[2] = {NAN, NAN}, topr[2] = {NAN, NAN}, mn = NAN, mnr = NAN, tr = NAN, trse = NAN, loss = NAN;
        if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR) continue;
        size_t st0 = 0, cnt = 2, nk = 0;
        int dim;
        if (nc_inq_dimid(ncid, "top", &dim) == NC_NOERR) nc_inq_dimlen(ncid, dim, &nk);
        cnt = nk < 2 ? nk : 2;
        if (nc_inq_varid(ncid, "top_eigenvalues", &v) == NC_NOERR) nc_get_vara_double(ncid, v, &st0, &cnt, top);
        if (nc_inq_varid(ncid, "top_residual", &v) == NC_NOERR) nc_get_vara_double(ncid, v, &st0, &cnt, topr);
        nc_close(ncid);
        mn = read_scalar(path, "min_eigenvalue");
        mnr = read_scalar(path, "min_residual");
        tr = read_scalar(path, "trace");
        trse = read_scalar(path, "trace_stderr");
        loss = read_scalar(path, "loss");
        fprintf(f, "| %s | %.4g (%.1g) | %.4g | %.4g (%.1g) | %.4f | %.4g +- %.2g | %.4f |\n", hess_labels[k], top[0], topr[0],
                top[1], mn, mnr, fabs(mn / top[0]), tr, trse, loss);
    }
    if (!any) return;
    fprintf(f, "\n");
    if (exists_fig(outdir, "hessian_compare.png"))
        fprintf(f, "![the spectral densities together (each kernel 1 %% of its own spectrum's range)](figures/hessian_compare.png)\n\n");
    for (int k = 0; k < 3; k++) {
        char fig[300];
        snprintf(fig, sizeof fig, "hessian_%s/hessian_density.png", hess_models[k]);
        if (exists_fig(outdir, fig)) fprintf(f, "![Hessian spectrum of the %s](figures/%s)\n\n", hess_labels[k], fig);
    }
    if (exists_fig(outdir, "hessian_plane/surface_hessian_ratio.png"))
        fprintf(f, "The Hessian's extreme eigenvalues over the plane of the two runs and the curve's middle point (%lld x %lld "
                   "points, each after a BN refresh; loss-landscape's map: abs(lambda_min / lambda_max) is near 0 where the "
                   "surface is convex):\n\n| largest eigenvalue | abs(lambda_min / lambda_max) |\n| --- | --- |\n"
                   "| ![lambda_max over the plane](figures/hessian_plane/surface_hessian_max.png) "
                   "| ![eigenvalue ratio over the plane](figures/hessian_plane/surface_hessian_ratio.png) |\n",
                deck_int(d, "hessian.grid"), deck_int(d, "hessian.grid"));
}

static void shortcuts_section(FILE *f, const vl_deck_t *d, const char *outdir)
{
    plane_numbers_t r[2];
    char path[4300];
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/shortcuts/%s/plane/surface.nc", outdir, k ? "noshort" : "short");
        if (!exists(path) || plane_numbers(path, &r[k])) return;
    }
    fprintf(f, "\n## Skip connections (`shortcuts/`)\n\nThe loss-landscape paper's figure 1 at this machine's scale: "
               "ResNet-%lld at width factor %g trained with and without its shortcuts (the same recipe: %lld epochs on "
               "%lld images, lr %g, %s schedule), then the training loss over a filter-normalised random plane around "
               "each solution (%lld x %lld points over [-%g, %g]^2, each after a BN refresh, on %lld images). The paper's "
               "claim: without shortcuts a deep network's landscape turns chaotic and sharp; with them it stays convex "
               "around the minimum.\n\n"
               "| network | train loss at the centre | range over the plane | curvature at the centre | grid under 1 nat | "
               "grid under centre + 0.5 | test error at the centre |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
            deck_int(d, "shortcuts.depth"), deck_double(d, "shortcuts.width_factor"), deck_int(d, "shortcuts.epochs"),
            deck_int(d, "shortcuts.train_subset"), deck_double(d, "train.lr"), deck_str(d, "train.schedule"),
            deck_int(d, "shortcuts.grid"), deck_int(d, "shortcuts.grid"), deck_double(d, "shortcuts.span"),
            deck_double(d, "shortcuts.span"), deck_int(d, "shortcuts.eval_subset"));
    for (int k = 0; k < 2; k++)
        fprintf(f, "| %s shortcuts | %.3f | %.3f - %.3f | %.2f | %.0f%% | %.0f%% | %.3f |\n", k ? "without" : "with",
                r[k].centre, r[k].lo, r[k].hi, r[k].curv, 100 * r[k].below1, 100 * r[k].below_c, r[k].test_err);
    if (exists_fig(outdir, "shortcuts_short/surface_train_loss.png") &&
        exists_fig(outdir, "shortcuts_noshort/surface_train_loss.png"))
        fprintf(f, "\n| with shortcuts | without shortcuts |\n| --- | --- |\n"
                   "| ![train loss, with shortcuts](figures/shortcuts_short/surface_train_loss.png) "
                   "| ![train loss, without shortcuts](figures/shortcuts_noshort/surface_train_loss.png) |\n");
}

static int write_report(const vl_comm_t *c, const vl_deck_t *d, const char *outdir, double seconds)
{
    if (c->rank != 0) return VL_OK;
    char path[4200], tmp[4300], hist[4200], ev[4200];
    snprintf(path, sizeof path, "%s/report.md", outdir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(hist, sizeof hist, "%s/train/history.nc", outdir);
    int two = 0;
    if (!exists(hist)) { snprintf(hist, sizeof hist, "%s/endpoints/group_0/history.nc", outdir); two = 1; }
    snprintf(ev, sizeof ev, "%s/eval/eval.nc", outdir);
    FILE *f = fopen(tmp, "w");
    if (!f) return VL_FAIL(VL_EIO, "%s: cannot write", tmp);
    fprintf(f, "# valley report\n\nvalley %s (git %s), %d MPI rank(s), %d group(s), %s kernels, %lld thread(s) per rank; "
               "wall time %.0f s.\n\n",
            VALLEY_VERSION, VALLEY_GIT_COMMIT, c->size, c->ngroups, vl_isa_name(vl_isa()),
            deck_int(d, "parallel.threads"), seconds);
    fprintf(f, "## Training (`%s`)\n\n%sModel `%s` on `%s`, %lld epochs, batch %lld, lr %g (%s schedule), "
               "momentum %g, weight decay %g.\n\n",
            two ? "endpoints/" : "train/",
            two ? "Two independent runs (seeds run.seed and run.seed + 1) trained at the same time in two groups; "
                  "the table is the first. " : "",
            deck_str(d, "model.kind"), deck_str(d, "data.dataset"), deck_int(d, "train.epochs"),
            deck_int(d, "train.batch_size"), deck_double(d, "train.lr"), deck_str(d, "train.schedule"),
            deck_double(d, "train.momentum"), deck_double(d, "train.wd"));
    int ncid;
    if (nc_open(hist, NC_NOWRITE, &ncid) == NC_NOERR) {
        int dim;
        size_t rows = 0;
        nc_inq_dimid(ncid, "epoch", &dim);
        nc_inq_dimlen(ncid, dim, &rows);
        const char *cols[5] = {"train_loss", "train_acc", "test_loss", "test_acc", "lr"};
        double *v[5];
        for (int k = 0; k < 5; k++) {
            int var;
            v[k] = calloc(rows + 1, sizeof(double));
            if (v[k] && nc_inq_varid(ncid, cols[k], &var) == NC_NOERR) nc_get_var_double(ncid, var, v[k]);
        }
        fprintf(f, "| epoch | train loss | train acc | test loss | test acc | lr |\n|---:|---:|---:|---:|---:|---:|\n");
        for (size_t i = 0; i < rows; i++)
            fprintf(f, "| %zu | %.4f | %.4f | %.4f | %.4f | %.4g |\n", i + 1, v[0][i], v[1][i], v[2][i], v[3][i], v[4][i]);
        for (int k = 0; k < 5; k++) free(v[k]);
        nc_close(ncid);
    }
    if (exists_fig(outdir, "history.png"))
        fprintf(f, "\n![training history: loss and error per epoch](figures/history.png)\n");
    if (exists_fig(outdir, "endpoint_0/history.png"))
        fprintf(f, "\n![training history of the first run](figures/endpoint_0/history.png)\n");
    const char *m[6] = {"accuracy", "nll", "ece", "ece_count", "brier", "entropy"};
    const char *ml[6] = {"test accuracy", "test NLL (nats)", "ECE (15 equal-width bins)", "ECE (20 equal-count bins)",
                         "Brier score", "predictive entropy (nats)"};
    if (exists(ev)) {
        fprintf(f, "\n## Evaluation (`eval/eval.nc`)\n\n| metric | value |\n|---|---:|\n");
        for (int k = 0; k < 6; k++) fprintf(f, "| %s | %.4f |\n", ml[k], read_scalar(ev, m[k]));
    }
    if (exists_fig(outdir, "eval_reliability.png"))
        fprintf(f, "\n![reliability diagram of the trained model](figures/eval_reliability.png)\n");
    /* Posterior approximations and ensembles. */
    char bma[4200], fge[4200];
    snprintf(bma, sizeof bma, "%s/bma/bma.nc", outdir);
    snprintf(fge, sizeof fge, "%s/fge/fge.nc", outdir);
    int have_bma = exists(bma), have_fge = exists(fge);
    if (have_bma || have_fge) {
        fprintf(f, "\n## Posterior approximations and ensembles (`bma/bma.nc`, `fge/fge.nc`)\n\n"
                   "Test-set metrics of each model average (BN refreshed for every sample that SGD did not "
                   "produce). NLL in nats; ECE with 15 equal-width and 20 equal-count bins.\n\n"
                   "| method | models | accuracy | NLL | ECE | ECE (count) | Brier |\n|---|---:|---:|---:|---:|---:|---:|\n");
    }
    if (have_bma) method_rows(f, bma);
    if (have_fge) {
        int members = 0;
        if (nc_open(fge, NC_NOWRITE, &ncid) == NC_NOERR) {
            int dim;
            size_t n = 0;
            if (nc_inq_dimid(ncid, "member", &dim) == NC_NOERR) nc_inq_dimlen(ncid, dim, &n);
            members = (int)n;
            nc_close(ncid);
        }
        fprintf(f, "| fge | %d | %.4f | %.4f | %.4f | %.4f | %.4f |\n", members, read_scalar(fge, "accuracy"),
                read_scalar(fge, "nll"), read_scalar(fge, "ece"), read_scalar(fge, "ece_count"), read_scalar(fge, "brier"));
        fprintf(f, "\nFGE: %lld cycles of %lld epochs from the trained model (lr %g to %g); its extra budget is "
                   "%lld epochs.\n",
                deck_int(d, "fge.cycles"), deck_int(d, "fge.cycle"), deck_double(d, "fge.lr1"), deck_double(d, "fge.lr2"),
                deck_int(d, "fge.cycles") * deck_int(d, "fge.cycle"));
    }
    if (exists_fig(outdir, "bma_reliability.png"))
        fprintf(f, "\n![reliability diagrams of the model averages](figures/bma_reliability.png)\n");
    char cev[4200];
    snprintf(cev, sizeof cev, "%s/curve/curve_eval.nc", outdir);
    if (exists(cev) && nc_open(cev, NC_NOWRITE, &ncid) == NC_NOERR) {
        int v;
        double sm[8][4] = {{0}};
        double len = NAN, llen = NAN;
        if (nc_inq_varid(ncid, "summary", &v) == NC_NOERR) nc_get_var_double(ncid, v, &sm[0][0]);
        if (nc_inq_varid(ncid, "length", &v) == NC_NOERR) nc_get_var_double(ncid, v, &len);
        if (nc_inq_varid(ncid, "line_length", &v) == NC_NOERR) nc_get_var_double(ncid, v, &llen);
        int dim;
        size_t T = 0;
        nc_inq_dimid(ncid, "t", &dim);
        nc_inq_dimlen(ncid, dim, &T);
        double e0 = NAN, e1 = NAN;
        if (T > 0 && nc_inq_varid(ncid, "test_err", &v) == NC_NOERR) {
            size_t i0 = 0, i1 = T - 1;
            nc_get_var1_double(ncid, v, &i0, &e0);
            nc_get_var1_double(ncid, v, &i1, &e1);
        }
        nc_close(ncid);
        fprintf(f, "\n## Mode connectivity (`curve/`)\n\nA %s curve (%lld bends) between the two runs, trained %lld "
                   "epochs, evaluated at %zu values of t after a BN refresh at each, beside the straight line between "
                   "the same endpoints. Endpoint test errors: %.4f and %.4f.\n\n"
                   "| path | max train loss | max test error | mean test error | length-weighted test error | length |\n"
                   "|---|---:|---:|---:|---:|---:|\n"
                   "| curve | %.4f | %.4f | %.4f | %.4f | %.2f |\n| straight line | %.4f | %.4f | %.4f | %.4f | %.2f |\n",
                deck_str(d, "curve.kind"), deck_int(d, "curve.bends"), deck_int(d, "curve.epochs"), T, e0, e1, sm[0][1],
                sm[3][1], sm[3][2], sm[3][3], len, sm[4][1], sm[7][1], sm[7][2], sm[7][3], llen);
        if (exists_fig(outdir, "curve_eval.png"))
            fprintf(f, "\n![loss and error along the fitted curve and the straight line](figures/curve_eval.png)\n");
    }
    char ssub[64] = "all the";
    if (deck_int(d, "surface.train_subset") > 0) snprintf(ssub, sizeof ssub, "the first %lld", deck_int(d, "surface.train_subset"));
    else if (deck_int(d, "data.train_subset") > 0) snprintf(ssub, sizeof ssub, "the first %lld", deck_int(d, "data.train_subset"));
    if (exists_fig(outdir, "surface_train_loss.png"))
        fprintf(f, "\n## Loss surface (`plane/surface.nc`)\n\nThe plane through the two endpoints and the curve's "
                   "middle control point, every grid point after a BN refresh; the curve drawn on top. Training "
                   "loss and the BN refreshes on %s training images.\n\n"
                   "![train loss over the plane](figures/surface_train_loss.png)\n\n"
                   "![test error over the plane](figures/surface_test_err.png)\n", ssub);
    char sub_nc[4200];
    snprintf(sub_nc, sizeof sub_nc, "%s/pca/subspace.nc", outdir);
    if (exists(sub_nc) && nc_open(sub_nc, NC_NOWRITE, &ncid) == NC_NOERR) {
        int dim, vs, ve;
        size_t k = 0;
        if (nc_inq_dimid(ncid, "k", &dim) == NC_NOERR) nc_inq_dimlen(ncid, dim, &k);
        double sv[64] = {0}, ev[64] = {0};
        if (k > 64) k = 64;
        size_t start = 0;
        if (k && nc_inq_varid(ncid, "singular_values", &vs) == NC_NOERR) nc_get_vara_double(ncid, vs, &start, &k, sv);
        if (k && nc_inq_varid(ncid, "explained_variance_ratio", &ve) == NC_NOERR) nc_get_vara_double(ncid, ve, &start, &k, ev);
        nc_close(ncid);
        fprintf(f, "\n## PCA of the SWAG deviations (`pca/subspace.nc`)\n\nThe top %zu principal directions of the "
                   "first run's SWAG deviation matrix (distributed PCA, route `%s`); they span the subspace of "
                   "the inference stage.\n\n| direction | singular value | explained variance |\n|---:|---:|---:|\n",
                k, deck_str(d, "pca.route"));
        for (size_t i = 0; i < k; i++) fprintf(f, "| %zu | %.4g | %.4f |\n", i + 1, sv[i], ev[i]);
    }
    char inf[4200];
    snprintf(inf, sizeof inf, "%s/infer/infer.nc", outdir);
    if (exists(inf)) {
        size_t kdim = 0; /* the subspace's dimension, as infer.nc holds it (infer.rank 0 = the input's) */
        if (nc_open(inf, NC_NOWRITE, &ncid) == NC_NOERR) {
            int dk;
            if (nc_inq_dimid(ncid, "k", &dk) == NC_NOERR) nc_inq_dimlen(ncid, dk, &kdim);
            nc_close(ncid);
        }
        char subset[64] = "all the";
        if (deck_int(d, "infer.train_subset") > 0) snprintf(subset, sizeof subset, "the first %lld", deck_int(d, "infer.train_subset"));
        fprintf(f, "\n## Subspace inference (`infer/infer.nc`)\n\n%s in the %lld-dimensional PCA subspace w = w_SWA + P z "
                   "(prior std %g, temperature %s), %lld sample(s) per chain after %lld burn-in iterations; the "
                   "likelihood and every BN refresh on %s training images. The Bayesian model average "
                   "of the samples beside the subspace's centre (the SWA mean) and the SGD model.\n\n"
                   "| method | models | accuracy | NLL | ECE | ECE (count) | Brier |\n|---|---:|---:|---:|---:|---:|---:|\n",
                !strcmp(deck_str(d, "infer.method"), "ess") ? "Elliptical slice sampling" : "Variational inference",
                (long long)kdim, deck_double(d, "infer.prior_std"),
                deck_double(d, "infer.temperature") > 0 ? deck_str(d, "infer.temperature") : "N/10",
                deck_int(d, "infer.samples"), deck_int(d, "infer.burnin"), subset);
        method_rows(f, inf);
        if (exists_fig(outdir, "infer_reliability.png"))
            fprintf(f, "\n![reliability diagrams of the subspace posterior and its point estimates](figures/infer_reliability.png)\n");
    }
    char spx[4200];
    snprintf(spx, sizeof spx, "%s/simplex/simplex.nc", outdir);
    if (exists(spx) && nc_open(spx, NC_NOWRITE, &ncid) == NC_NOERR) {
        int dim, v;
        size_t nv = 0, npt = 0;
        if (nc_inq_dimid(ncid, "vertex", &dim) == NC_NOERR) nc_inq_dimlen(ncid, dim, &nv);
        if (nc_inq_dimid(ncid, "point", &dim) == NC_NOERR) nc_inq_dimlen(ncid, dim, &npt);
        double verr[64], vol = NAN, perr[4096];
        if (nv > 64) nv = 64;
        if (npt > 4096) npt = 4096;
        size_t z = 0, one = 1;
        if (nv && nc_inq_varid(ncid, "vertex_test_err", &v) == NC_NOERR) nc_get_vara_double(ncid, v, &z, &nv, verr);
        if (npt && nc_inq_varid(ncid, "point_test_err", &v) == NC_NOERR) nc_get_vara_double(ncid, v, &z, &npt, perr);
        if (nc_inq_varid(ncid, "volume", &v) == NC_NOERR) nc_get_vara_double(ncid, v, &z, &one, &vol);
        nc_close(ncid);
        double lo = INFINITY, hi = -INFINITY, mean = 0;
        for (size_t i = 0; i < npt; i++) { lo = fmin(lo, perr[i]); hi = fmax(hi, perr[i]); mean += perr[i] / (double)npt; }
        fprintf(f, "\n## Simplex (`simplex/simplex.nc`)\n\nA %lld-vertex SPRO simplex grown from the first run's model "
                   "(its base vertex, frozen): each new vertex starts at the centroid of the others and trains for %lld "
                   "epoch(s) (cosine lr from %g) on the mean loss of %lld Dirichlet(1) points per batch minus "
                   "lambda log(V + 1e-4). Volume of the simplex: %.4g.\n\n| vertex | test error |\n|---:|---:|\n",
                deck_int(d, "simplex.vertices"), deck_int(d, "simplex.epochs"), deck_double(d, "simplex.lr"),
                deck_int(d, "simplex.samples"), vol);
        for (size_t i = 0; i < nv; i++) fprintf(f, "| %zu%s | %.4f |\n", i + 1, i == 0 ? " (base)" : "", verr[i]);
        fprintf(f, "\n%zu random points of the simplex (BN refreshed each): test error min %.4f, mean %.4f, max %.4f. "
                   "Their ensemble: accuracy %.4f, NLL %.4f, ECE %.4f.\n",
                npt, lo, mean, hi, read_scalar(spx, "accuracy"), read_scalar(spx, "nll"), read_scalar(spx, "ece"));
        if (exists_fig(outdir, "simplex_plane_err.png"))
            fprintf(f, "\n![test error over the plane of the simplex, the triangle on top](figures/simplex_plane_err.png)\n");
        if (exists_fig(outdir, "simplex_points.png"))
            fprintf(f, "\n![test error of the sampled points and of the vertices](figures/simplex_points.png)\n");
    }
    baselines_section(f, d, outdir);
    hessian_section(f, d, outdir);
    shortcuts_section(f, d, outdir);
    char onx[4300];
    snprintf(onx, sizeof onx, "%s/export/model.onnx", outdir);
    struct stat sb;
    if (stat(onx, &sb) == 0)
        fprintf(f, "\n## ONNX (`export/model.onnx`)\n\nThe first run's %s written as ONNX (opset 13, %.1f kB) by "
                   "`valley export`: it opens in PyTorch's ONNX tooling or any ONNX runtime, and "
                   "`python/valley`'s `load_model` reads any of this run's model files as a `torch.nn.Module` "
                   "(doc/onnx.md).\n",
                stage_on(deck_str(d, "run.stages"), "train") || stage_on(deck_str(d, "run.stages"), "endpoints")
                    ? "SWA mean (or its final SGD model when it collected no SWA)" : "model",
                sb.st_size / 1024.0);
    fprintf(f, "\n## Effective deck\n\n```ini\n%s```\n", deck_text(d));
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return VL_FAIL(VL_EIO, "%s: cannot write", path);
    }
    vl_log(MPI_COMM_SELF, "wrote %s", path);
    return VL_OK;
}

/* A stage's own training subset (surface.train_subset, infer.train_subset,
 * simplex.train_subset): stage_subset sets data.train_subset to it when it is positive and
 * keeps the deck's value in saved (64 chars); stage_subset_end restores it and passes st on. */
static int stage_subset(vl_deck_t *d, const char *key, char *saved)
{
    snprintf(saved, 64, "%s", deck_str(d, "data.train_subset"));
    if (deck_int(d, key) <= 0) return VL_OK;
    char ts[64];
    snprintf(ts, sizeof ts, "%lld", deck_int(d, key));
    return deck_set(d, "data.train_subset", ts);
}

static int stage_subset_end(vl_deck_t *d, const char *saved, int st)
{
    int st2 = deck_set(d, "data.train_subset", saved);
    return st ? st : st2;
}

/* A stage runs its command with the deck serving that command, so that the stage's outputs
 * record the keys it read (deck_set_command); the pipeline's own report keeps all of them. */
static int stage_end(vl_deck_t *d, int st)
{
    const int st2 = deck_set_command(d, "run");
    return st ? st : st2;
}
#define stage_as(d, name, call) (deck_set_command((d), (name)) ? vl_error_status() : stage_end((d), (call)))

/* Rank 0's view of the file system, shared: every rank takes the same branch. */
static int exists_agreed(const vl_comm_t *c, const char *path)
{
    int e = c->rank == 0 ? exists(path) : 0;
    MPI_Bcast(&e, 1, MPI_INT, 0, c->world);
    return e;
}

/* A finished stage's output is reused, unless run.overwrite asks for the whole run again. */
static int reusable(const vl_comm_t *c, const vl_deck_t *d, const char *path)
{
    return !deck_bool(d, "run.overwrite") && exists_agreed(c, path);
}

/* A training run is finished when its last file is there: swag.nc, written after model.nc,
 * when the deck collects SWA/SWAG. A run killed between the two must train again, or the
 * bma stage would average without its SWAG and the pca stage would find no deviations. */
static int train_done(const vl_comm_t *c, const vl_deck_t *d, const char *model, const char *swag)
{
    const int swa = deck_bool(d, "train.swa") || deck_bool(d, "train.swag");
    return reusable(c, d, model) && (!swa || exists_agreed(c, swag));
}

static int stage_on(const char *stages, const char *name)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", stages);
    for (char *t = strtok(buf, ", "); t; t = strtok(NULL, ", "))
        if (!strcmp(t, name)) return 1;
    return 0;
}

/* The deck values a stage overrides for its commands, restored after it (keys_restore). */
typedef struct {
    int n;
    const char *key[24];
    char old[24][128];
} saved_keys_t;

static int keys_set(vl_deck_t *d, saved_keys_t *sv, const char *key, const char *value)
{
    if (sv->n == 24) return VL_FAIL(VL_EINPUT, "internal: a stage overrides more than 24 keys");
    sv->key[sv->n] = key;
    snprintf(sv->old[sv->n], sizeof sv->old[0], "%s", deck_str(d, key));
    sv->n++;
    return deck_set(d, key, value);
}

static int keys_restore(vl_deck_t *d, saved_keys_t *sv, int st)
{
    for (int i = sv->n - 1; i >= 0; i--) {
        const int st2 = deck_set(d, sv->key[i], sv->old[i]);
        if (!st) st = st2;
    }
    sv->n = 0;
    return st;
}

/* The shortcuts stage: a ResNet of depth shortcuts.depth trained with and without its
 * shortcuts (the same recipe: the deck's train keys, shortcuts.epochs on shortcuts.train_subset
 * images), then a filter-normalised random plane around each (loss-landscape's figure 1 at
 * this machine's scale) -> outdir/shortcuts/{short,noshort}/{model.nc, plane/surface.nc}. */
static int stage_shortcuts(vl_comm_t *c, vl_deck_t *d, const char *outdir)
{
    if (strlen(outdir) > 4096) return VL_FAIL_ALL(VL_EINPUT, "%.64s...: the output directory's name is too long", outdir);
    char v[64], lo[64], hi[64], figs[8400];
    for (int k = 0; k < 2; k++) {
        const char *name = k == 0 ? "short" : "noshort";
        char sub[4400], model[4500], plane[4500], out[4600];
        snprintf(sub, sizeof sub, "%s/shortcuts/%s", outdir, name);
        snprintf(model, sizeof model, "%s/model.nc", sub);
        snprintf(plane, sizeof plane, "%s/plane", sub);
        snprintf(out, sizeof out, "%s/surface.nc", plane);
        saved_keys_t sv = {0};
        int st = keys_set(d, &sv, "model.kind", "resnet");
        if (!st) st = keys_set(d, &sv, "model.depth", deck_str(d, "shortcuts.depth"));
        if (!st) st = keys_set(d, &sv, "model.width_factor", deck_str(d, "shortcuts.width_factor"));
        if (!st) st = keys_set(d, &sv, "model.shortcuts", k == 0 ? "true" : "false");
        if (reusable(c, d, model)) {
            vl_log(c->world, "stage shortcuts: reusing %s", model);
        } else if (!st) {
            st = keys_set(d, &sv, "train.epochs", deck_str(d, "shortcuts.epochs"));
            if (!st && deck_int(d, "shortcuts.train_subset") > 0)
                st = keys_set(d, &sv, "data.train_subset", deck_str(d, "shortcuts.train_subset"));
            if (!st) st = keys_set(d, &sv, "train.swa", "false");
            if (!st) st = keys_set(d, &sv, "train.swag", "false");
            if (!st) st = keys_set(d, &sv, "train.checkpoint_every", "0");
            if (!st) vl_log(c->world, "stage shortcuts -> %s (resnet%s %s shortcuts)", sub, deck_str(d, "model.depth"),
                            k == 0 ? "with" : "without");
            if (!st) st = stage_as(d, "train", train_command(c, d, sub));
        }
        if (!st && reusable(c, d, out)) {
            vl_log(c->world, "stage shortcuts: reusing %s", out);
        } else if (!st) {
            const double span = deck_double(d, "shortcuts.span");
            snprintf(lo, sizeof lo, "%.17g", -span);
            snprintf(hi, sizeof hi, "%.17g", span);
            st = keys_set(d, &sv, "surface.basis", "random");
            if (!st) st = keys_set(d, &sv, "surface.xmin", lo);
            if (!st) st = keys_set(d, &sv, "surface.xmax", hi);
            if (!st) st = keys_set(d, &sv, "surface.ymin", lo);
            if (!st) st = keys_set(d, &sv, "surface.ymax", hi);
            if (!st) st = keys_set(d, &sv, "surface.nx", deck_str(d, "shortcuts.grid"));
            if (!st) st = keys_set(d, &sv, "surface.ny", deck_str(d, "shortcuts.grid"));
            snprintf(v, sizeof v, "%lld", deck_int(d, "shortcuts.eval_subset"));
            if (!st && deck_int(d, "shortcuts.eval_subset") > 0) st = keys_set(d, &sv, "data.train_subset", v);
            if (!st && deck_int(d, "shortcuts.eval_subset") > 0) st = keys_set(d, &sv, "data.test_subset", v);
            char *in[1] = {model};
            if (!st) vl_log(c->world, "stage shortcuts -> %s (a filter-normalised random plane)", plane);
            if (!st) st = stage_as(d, "surface", surface_command(c, d, 1, in, plane));
        }
        CHECK(keys_restore(d, &sv, st));
        snprintf(figs, sizeof figs, "%s/figures/shortcuts_%s", outdir, name);
        char *p[1] = {out};
        CHECK(plot_command(c, 1, p, figs));
    }
    return VL_OK;
}

/* The baselines stage (issue 18): the deck's network trained on baselines.classes with
 * baselines.validation images held out (SWAG collected as the deck says), then bma with
 * baselines.methods on it -> outdir/baselines/{train, bma}: the SWAG paper's split-classes
 * comparison (calibration on the kept classes, entropy on the others). */
static int stage_baselines(vl_comm_t *c, vl_deck_t *d, const char *outdir)
{
    if (strlen(outdir) > 4096) return VL_FAIL_ALL(VL_EINPUT, "%.64s...: the output directory's name is too long", outdir);
    char sub[4400], model[4500], swag[4500], bsub[4500], out[4600], figs[4500];
    snprintf(sub, sizeof sub, "%s/baselines/train", outdir);
    snprintf(model, sizeof model, "%s/model.nc", sub);
    snprintf(swag, sizeof swag, "%s/swag.nc", sub);
    snprintf(bsub, sizeof bsub, "%s/baselines/bma", outdir);
    snprintf(out, sizeof out, "%s/bma.nc", bsub);
    saved_keys_t sv = {0};
    int st = keys_set(d, &sv, "data.classes", deck_str(d, "baselines.classes"));
    if (!st) st = keys_set(d, &sv, "data.validation", deck_str(d, "baselines.validation"));
    if (!st && deck_int(d, "baselines.train_subset") > 0)
        st = keys_set(d, &sv, "data.train_subset", deck_str(d, "baselines.train_subset"));
    if (!st && deck_int(d, "baselines.epochs") > 0) st = keys_set(d, &sv, "train.epochs", deck_str(d, "baselines.epochs"));
    if (!st && train_done(c, d, model, swag)) {
        vl_log(c->world, "stage baselines: reusing %s", model);
    } else if (!st) {
        st = keys_set(d, &sv, "train.swag", "true");
        if (!st) vl_log(c->world, "stage baselines -> %s (classes %s, %s validation images)", sub,
                        deck_str(d, "data.classes"), deck_str(d, "data.validation"));
        if (!st) st = stage_as(d, "train", train_command(c, d, sub));
    }
    if (!st && reusable(c, d, out)) {
        vl_log(c->world, "stage baselines: reusing %s", out);
    } else if (!st) {
        st = keys_set(d, &sv, "bma.methods", deck_str(d, "baselines.methods"));
        if (!st) st = keys_set(d, &sv, "bma.samples", deck_str(d, "baselines.samples"));
        char *in[2] = {swag, model};
        if (!st) vl_log(c->world, "stage baselines -> %s (%s)", bsub, deck_str(d, "bma.methods"));
        if (!st) st = stage_as(d, "bma", bma_command(c, d, 2, in, bsub));
    }
    CHECK(keys_restore(d, &sv, st));
    snprintf(figs, sizeof figs, "%s/figures/baselines", outdir);
    char *p[1] = {out};
    return plot_command(c, 1, p, figs);
}

/* The hessian stage (issue 19): the spectrum of the first run's SGD model, its SWA mean and the
 * curve's midpoint -> outdir/hessian/{sgd,swa,curve_mid}/hessian.nc, and with the curve a
 * hessian.grid^2 map of the extreme eigenvalues over the curve's plane -> outdir/hessian/plane. */
static int stage_hessian(vl_comm_t *c, vl_deck_t *d, const char *outdir, const char *model, const char *swag,
                         const char *curve)
{
    if (strlen(outdir) > 4096) return VL_FAIL_ALL(VL_EINPUT, "%.64s...: the output directory's name is too long", outdir);
    const char *in[3] = {model, swag, curve};
    saved_keys_t sv = {0};
    int st = VL_OK, nh = 0;
    char hfiles[3][4600], *hp[3];
    for (int k = 0; k < 3 && !st; k++) {
        if (!in[k] || !exists_agreed(c, in[k])) continue;
        char sub[4400], out[4500], figs[4500];
        snprintf(sub, sizeof sub, "%s/hessian/%s", outdir, hess_models[k]);
        snprintf(out, sizeof out, "%s/hessian.nc", sub);
        if (reusable(c, d, out)) {
            vl_log(c->world, "stage hessian: reusing %s", out);
        } else {
            if (k == 2) st = keys_set(d, &sv, "curve.t", "0.5");
            char *p[1] = {(char *)in[k]};
            if (!st) vl_log(c->world, "stage hessian -> %s (%s)", sub, hess_labels[k]);
            if (!st) st = stage_as(d, "hessian", hessian_command(c, d, 1, p, sub));
            st = keys_restore(d, &sv, st);
        }
        snprintf(figs, sizeof figs, "%s/figures/hessian_%s", outdir, hess_models[k]);
        char *p[1] = {out};
        if (!st) st = plot_command(c, 1, p, figs);
        snprintf(hfiles[nh], sizeof hfiles[nh], "%s", out);
        hp[nh] = hfiles[nh];
        nh++;
    }
    if (!st && nh >= 2) { /* the densities in one panel */
        char figs[4500];
        snprintf(figs, sizeof figs, "%s/figures", outdir);
        if (c->rank == 0) st = plot_hessian_compare(nh, hp, figs);
        st = comm_agree_first(c->world, st, 1);
    }
    if (st || !curve || !exists_agreed(c, curve) || deck_int(d, "hessian.grid") < 2) return st;
    char plane[4400], out[4500], figs[4500], g[32];
    snprintf(plane, sizeof plane, "%s/hessian/plane", outdir);
    snprintf(out, sizeof out, "%s/surface.nc", plane);
    snprintf(g, sizeof g, "%lld", deck_int(d, "hessian.grid"));
    st = keys_set(d, &sv, "surface.basis", "plane");
    if (!st) st = keys_set(d, &sv, "surface.nx", g);
    if (!st) st = keys_set(d, &sv, "surface.ny", g);
    if (!st) st = keys_set(d, &sv, "surface.hessian", "true");
    if (!st) st = keys_set(d, &sv, "surface.test", "false");
    if (!st && deck_int(d, "hessian.samples") > 0) st = keys_set(d, &sv, "data.train_subset", deck_str(d, "hessian.samples"));
    char *p[1] = {(char *)curve};
    if (!st) vl_log(c->world, "stage hessian -> %s (the extreme eigenvalues over the curve's plane, %s x %s points)", plane, g, g);
    if (!st) st = stage_as(d, "surface", surface_command(c, d, 1, p, plane)); /* restartable: finished points are kept */
    CHECK(keys_restore(d, &sv, st));
    snprintf(figs, sizeof figs, "%s/figures/hessian_plane", outdir);
    char *q[1] = {out};
    return plot_command(c, 1, q, figs);
}

int pipeline_command(vl_comm_t *c, vl_deck_t *d, const char *deck_path, const char *outdir)
{
    (void)deck_path;
    double t0 = vl_now();
    const char *ds = deck_str(d, "data.dataset"), *stages = deck_str(d, "run.stages");
    static const char *known[] = {"train", "endpoints", "evaluate", "bma", "fge", "curve", "surface", "pca", "infer", "simplex",
                                  "baselines", "hessian", "shortcuts", "export"};
    char buf[512];
    snprintf(buf, sizeof buf, "%s", stages);
    for (char *t = strtok(buf, ", "); t; t = strtok(NULL, ", ")) {
        int ok = 0;
        for (size_t k = 0; k < sizeof known / sizeof *known; k++) ok |= !strcmp(t, known[k]);
        if (!ok) return VL_FAIL_ALL(VL_EINPUT, "run.stages: unknown stage '%s' (train, endpoints, evaluate, bma, fge, curve, surface, pca, infer, simplex, "
                                                 "baselines, hessian, shortcuts, export)", t);
    }
    char data[4200], model[8400], sub[4200], swag[8400], model2[8400], swag2[8400];
    snprintf(data, sizeof data, "input/data/%s.nc", ds);
    if (*deck_str(d, "data.path")) snprintf(data, sizeof data, "%s", deck_str(d, "data.path"));
    if (!exists_agreed(c, data)) CHECK(pipeline_prepare(c, d, ds, data));
    if (c->rank == 0) CHECK(ncio_mkdirs(outdir));
    char figs[8400];
    snprintf(figs, sizeof figs, "%s/figures", outdir);
    snprintf(model, sizeof model, "%s/train/model.nc", outdir);
    snprintf(swag, sizeof swag, "%s/train/swag.nc", outdir);
    const int endpoints = stage_on(stages, "endpoints");
    if (endpoints) { /* two independent runs: the first also stands for "the trained model" */
        snprintf(model, sizeof model, "%s/endpoints/group_0/model.nc", outdir);
        snprintf(swag, sizeof swag, "%s/endpoints/group_0/swag.nc", outdir);
        snprintf(model2, sizeof model2, "%s/endpoints/group_1/model.nc", outdir);
        snprintf(swag2, sizeof swag2, "%s/endpoints/group_1/swag.nc", outdir);
    }
    const int group_size = (int)deck_int(d, "parallel.group_size");

    if (endpoints) {
        if (train_done(c, d, model, swag) && train_done(c, d, model2, swag2)) vl_log(c->world, "stage endpoints: reusing %s and %s", model, model2);
        else if (c->size % 2 == 0) { /* both at once, in two groups, seeds run.seed and run.seed + 1 */
            snprintf(sub, sizeof sub, "%s/endpoints", outdir);
            vl_log(c->world, "stage endpoints -> %s (two runs in two groups of %d rank(s))", sub, c->size / 2);
            CHECK(comm_split(c, c->size / 2));
            CHECK(stage_as(d, "train", train_command(c, d, sub)));
            CHECK(comm_split(c, group_size));
        } else { /* one after the other */
            const long long seed = deck_int(d, "run.seed");
            char sv[32];
            for (int g = 0; g < 2; g++) {
                snprintf(sub, sizeof sub, "%s/endpoints/group_%d", outdir, g);
                snprintf(sv, sizeof sv, "%lld", seed + g);
                CHECK(deck_set(d, "run.seed", sv));
                vl_log(c->world, "stage endpoints -> %s (seed %s)", sub, sv);
                CHECK(stage_as(d, "train", train_command(c, d, sub)));
            }
            snprintf(sv, sizeof sv, "%lld", seed);
            CHECK(deck_set(d, "run.seed", sv));
        }
        for (int g = 0; g < 2; g++) {
            char hist[8400], fig[8400];
            snprintf(hist, sizeof hist, "%s/endpoints/group_%d/history.nc", outdir, g);
            snprintf(fig, sizeof fig, "%s/figures/endpoint_%d", outdir, g);
            char *p[1] = {hist};
            CHECK(plot_command(c, 1, p, fig));
        }
    }

    if (stage_on(stages, "train")) {
        snprintf(sub, sizeof sub, "%s/train", outdir);
        if (train_done(c, d, model, swag)) vl_log(c->world, "stage train: reusing %s", model);
        else {
            vl_log(c->world, "stage train -> %s", sub);
            CHECK(stage_as(d, "train", train_command(c, d, sub)));
        }
        char hist[8400];
        snprintf(hist, sizeof hist, "%s/train/history.nc", outdir);
        char *p[1] = {hist};
        CHECK(plot_command(c, 1, p, figs));
    }
    if (stage_on(stages, "evaluate")) {
        char *models[1] = {model};
        snprintf(sub, sizeof sub, "%s/eval", outdir);
        vl_log(c->world, "stage evaluate -> %s", sub);
        CHECK(stage_as(d, "evaluate", evaluate_command(c, d, 1, models, sub)));
        char ev[8400];
        snprintf(ev, sizeof ev, "%s/eval/eval.nc", outdir);
        char *p[1] = {ev};
        CHECK(plot_command(c, 1, p, figs));
    }
    if (stage_on(stages, "bma")) {
        snprintf(sub, sizeof sub, "%s/bma", outdir);
        char out[8400];
        snprintf(out, sizeof out, "%s/bma.nc", sub);
        if (reusable(c, d, out)) vl_log(c->world, "stage bma: reusing %s", out);
        else {
            char *in[4];
            int nin = 0;
            if (exists_agreed(c, swag)) in[nin++] = swag;
            if (endpoints && exists_agreed(c, swag2)) in[nin++] = swag2; /* MultiSWAG over both runs */
            in[nin++] = model;
            if (endpoints) in[nin++] = model2; /* and their deep ensemble */
            vl_log(c->world, "stage bma -> %s", sub);
            CHECK(stage_as(d, "bma", bma_command(c, d, nin, in, sub)));
        }
        char *p[1] = {out};
        CHECK(plot_command(c, 1, p, figs));
    }
    if (stage_on(stages, "fge")) {
        snprintf(sub, sizeof sub, "%s/fge", outdir);
        char out[8400];
        snprintf(out, sizeof out, "%s/fge.nc", sub);
        if (reusable(c, d, out)) vl_log(c->world, "stage fge: reusing %s", out);
        else {
            char *in[1] = {model};
            vl_log(c->world, "stage fge -> %s", sub);
            CHECK(stage_as(d, "fge", fge_command(c, d, 1, in, sub)));
        }
    }
    if (stage_on(stages, "curve")) {
        if (!endpoints) return VL_FAIL_ALL(VL_EINPUT, "run.stages: the curve stage needs the endpoints stage");
        snprintf(sub, sizeof sub, "%s/curve", outdir);
        char out[8400];
        snprintf(out, sizeof out, "%s/curve_eval.nc", sub);
        if (reusable(c, d, out)) vl_log(c->world, "stage curve: reusing %s", out);
        else {
            char *in[2] = {model, model2};
            vl_log(c->world, "stage curve -> %s", sub);
            CHECK(stage_as(d, "curve", curve_command(c, d, 2, in, sub)));
            CHECK(comm_split(c, group_size));
        }
        char *p[1] = {out};
        CHECK(plot_command(c, 1, p, figs));
    }
    if (stage_on(stages, "surface")) { /* the plane of the curve (SPEC §2), over the deck's groups */
        if (!stage_on(stages, "curve")) return VL_FAIL_ALL(VL_EINPUT, "run.stages: the surface stage needs the curve stage");
        snprintf(sub, sizeof sub, "%s/plane", outdir);
        char cv[8400], out[8400];
        snprintf(cv, sizeof cv, "%s/curve/curve.nc", outdir);
        snprintf(out, sizeof out, "%s/surface.nc", sub);
        char *in[1] = {cv}, saved[64];
        vl_log(c->world, "stage surface -> %s", sub);
        CHECK(stage_subset(d, "surface.train_subset", saved));
        CHECK(stage_subset_end(d, saved, stage_as(d, "surface", surface_command(c, d, 1, in, sub)))); /* restartable: finished points are kept */
        char *p[1] = {out};
        CHECK(plot_command(c, 1, p, figs));
    }
    if (stage_on(stages, "pca")) { /* principal directions of the first run's SWAG deviations */
        snprintf(sub, sizeof sub, "%s/pca", outdir);
        char out[8400];
        snprintf(out, sizeof out, "%s/subspace.nc", sub);
        if (reusable(c, d, out)) vl_log(c->world, "stage pca: reusing %s", out);
        else {
            if (!exists_agreed(c, swag)) return VL_FAIL_ALL(VL_EINPUT, "run.stages: the pca stage needs %s (train.swag = true)", swag);
            char *in[1] = {swag};
            vl_log(c->world, "stage pca -> %s", sub);
            CHECK(stage_as(d, "pca", pca_command(c, d, 1, in, sub)));
        }
    }
    if (stage_on(stages, "infer")) { /* ESS / VI in the PCA subspace of the pca stage */
        if (!stage_on(stages, "pca")) return VL_FAIL_ALL(VL_EINPUT, "run.stages: the infer stage needs the pca stage");
        snprintf(sub, sizeof sub, "%s/infer", outdir);
        char out[8400], sp[8400];
        snprintf(out, sizeof out, "%s/infer.nc", sub);
        snprintf(sp, sizeof sp, "%s/pca/subspace.nc", outdir);
        if (reusable(c, d, out)) vl_log(c->world, "stage infer: reusing %s", out);
        else {
            char *in[2] = {sp, model}, saved[64];
            vl_log(c->world, "stage infer -> %s", sub);
            CHECK(stage_subset(d, "infer.train_subset", saved)); /* the likelihood passes' images */
            CHECK(stage_subset_end(d, saved, stage_as(d, "infer", infer_command(c, d, 2, in, sub))));
        }
        char *p[1] = {out};
        CHECK(plot_command(c, 1, p, figs));
    }
    if (stage_on(stages, "simplex")) { /* a SPRO simplex around the first run's model */
        snprintf(sub, sizeof sub, "%s/simplex", outdir);
        char out[8400];
        snprintf(out, sizeof out, "%s/simplex.nc", sub);
        if (reusable(c, d, out)) vl_log(c->world, "stage simplex: reusing %s", out);
        else {
            char *in[1] = {model}, saved[64];
            vl_log(c->world, "stage simplex -> %s", sub);
            CHECK(stage_subset(d, "simplex.train_subset", saved));
            CHECK(stage_subset_end(d, saved, stage_as(d, "simplex", simplex_command(c, d, 1, in, sub))));
        }
        char *p[1] = {out};
        CHECK(plot_command(c, 1, p, figs));
    }
    if (stage_on(stages, "baselines")) CHECK(stage_baselines(c, d, outdir));
    if (stage_on(stages, "hessian")) { /* SGD, SWA and the curve's midpoint; the plane's eigenvalue maps */
        char cpath[8400];
        snprintf(cpath, sizeof cpath, "%s/curve/curve.nc", outdir);
        CHECK(stage_hessian(c, d, outdir, model, swag, stage_on(stages, "curve") ? cpath : NULL));
    }
    if (stage_on(stages, "shortcuts")) CHECK(stage_shortcuts(c, d, outdir));
    if (stage_on(stages, "export")) { /* the first run's SWA mean (its model without SWA) as ONNX */
        snprintf(sub, sizeof sub, "%s/export", outdir);
        char out[8400];
        snprintf(out, sizeof out, "%s/model.onnx", sub);
        if (reusable(c, d, out)) vl_log(c->world, "stage export: reusing %s", out);
        else {
            char *in[1] = {exists_agreed(c, swag) ? swag : model};
            vl_log(c->world, "stage export -> %s (%s)", sub, in[0]);
            CHECK(stage_as(d, "export", onnx_export_command(c, d, 1, in, sub)));
        }
    }
    CHECK(write_report(c, d, outdir, vl_now() - t0));
    return VL_OK;
}
