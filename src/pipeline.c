/* pipeline.c — `valley run`: prepare → train → evaluate → report.md. Later
 * issues add their stages (curve, surface, SWAG, PCA, inference, simplex). */
#include "gitversion.h"
#include "valley/pipeline.h"

#include <math.h>
#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "valley/data.h"
#include "valley/error.h"
#include "valley/log.h"
#include "valley/ncio.h"
#include "valley/plot.h"
#include "valley/train.h"

int pipeline_prepare(vl_comm_t *c, const vl_deck_t *d, const char *name, const char *path)
{
    int st = VL_OK;
    if (c->rank == 0) {
        st = ncio_mkdirs("input/data");
        if (!st) st = data_prepare(name, deck_str(d, "data.source"), (uint64_t)deck_int(d, "run.seed"), path, deck_text(d));
        if (!st) vl_log(MPI_COMM_SELF, "wrote %s", path);
    }
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

static int write_report(const vl_comm_t *c, const vl_deck_t *d, const char *outdir, double seconds)
{
    if (c->rank != 0) return VL_OK;
    char path[4200], tmp[4300], hist[4200], ev[4200];
    snprintf(path, sizeof path, "%s/report.md", outdir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(hist, sizeof hist, "%s/train/history.nc", outdir);
    snprintf(ev, sizeof ev, "%s/eval/eval.nc", outdir);
    FILE *f = fopen(tmp, "w");
    if (!f) return VL_FAIL(VL_EIO, "%s: cannot write", tmp);
    fprintf(f, "# valley report\n\nvalley %s (git %s), %d MPI rank(s), %d group(s); wall time %.0f s.\n\n",
            VALLEY_VERSION, VALLEY_GIT_COMMIT, c->size, c->ngroups, seconds);
    fprintf(f, "## Training (`train/`)\n\nModel `%s` on `%s`, %lld epochs, batch %lld, lr %g (%s schedule), "
               "momentum %g, weight decay %g.\n\n",
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
    fprintf(f, "\n## Evaluation (`eval/eval.nc`)\n\n| metric | value |\n|---|---:|\n");
    const char *m[6] = {"accuracy", "nll", "ece", "ece_count", "brier", "entropy"};
    const char *ml[6] = {"test accuracy", "test NLL (nats)", "ECE (15 equal-width bins)", "ECE (20 equal-count bins)",
                         "Brier score", "predictive entropy (nats)"};
    for (int k = 0; k < 6; k++) fprintf(f, "| %s | %.4f |\n", ml[k], read_scalar(ev, m[k]));
    if (exists_fig(outdir, "eval_reliability.png"))
        fprintf(f, "\n![reliability diagram of the trained model](figures/eval_reliability.png)\n");
    fprintf(f, "\n## Effective deck\n\n```ini\n%s```\n", deck_text(d));
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return VL_FAIL(VL_EIO, "%s: cannot write", path);
    }
    vl_log(MPI_COMM_SELF, "wrote %s", path);
    return VL_OK;
}

int pipeline_command(vl_comm_t *c, vl_deck_t *d, const char *deck_path, const char *outdir)
{
    (void)deck_path;
    double t0 = vl_now();
    const char *ds = deck_str(d, "data.dataset");
    char data[4200], path[8400], sub[4200];
    snprintf(data, sizeof data, "input/data/%s.nc", ds);
    if (*deck_str(d, "data.path")) snprintf(data, sizeof data, "%s", deck_str(d, "data.path"));
    if (!exists(data)) CHECK(pipeline_prepare(c, d, ds, data));
    if (c->rank == 0) CHECK(ncio_mkdirs(outdir));

    snprintf(sub, sizeof sub, "%s/train", outdir);
    snprintf(path, sizeof path, "%s/model.nc", sub);
    if (exists(path)) vl_log(c->world, "stage train: reusing %s", path);
    else {
        vl_log(c->world, "stage train -> %s", sub);
        CHECK(train_command(c, d, sub));
    }
    char *models[1] = {path};
    snprintf(sub, sizeof sub, "%s/eval", outdir);
    vl_log(c->world, "stage evaluate -> %s", sub);
    CHECK(evaluate_command(c, d, 1, models, sub));
    /* figures: rank 0 draws them, everyone agrees on the outcome */
    char figs[8400], hist[8400], ev[8400];
    snprintf(figs, sizeof figs, "%s/figures", outdir);
    snprintf(hist, sizeof hist, "%s/train/history.nc", outdir);
    snprintf(ev, sizeof ev, "%s/eval/eval.nc", outdir);
    char *plots[2] = {hist, ev};
    CHECK(plot_command(c, 2, plots, figs));
    CHECK(write_report(c, d, outdir, vl_now() - t0));
    return VL_OK;
}
