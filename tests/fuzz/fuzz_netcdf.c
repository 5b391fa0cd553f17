/* fuzz_netcdf.c — libFuzzer target: valley's readers of NetCDF files from outside.
 * The input is one file (NetCDF-4/HDF5 or classic/CDF-5), given in turn to:
 *   data_load          the dataset reader ("train" whole on 1 rank, "test" subset 2 as
 *                      rank 1 of 3)
 *   ckpt_read_config   the model description of a model file; when it succeeds and the
 *                      model is small, model_create and then
 *   ckpt_read          tensors, momentum and training position of a checkpoint
 *   ckpt_read_swag     SWA/SWAG moments (swag.nc, checkpoints)
 *   curve_read         curve.nc (control points, position)
 *   surface's subspace reader (build_subspace with surface.basis = pca, i.e. the
 *                      subspace.nc reader; src/surface.c is compiled into this target
 *                      so that its static function can be called)
 * Each must return VL_OK or a failure with a message (fz_check_status). */
#include <stdint.h>

#include "fuzz_common.h"

#define surface_command fuzz_unused_surface_command
#include "../../src/surface.c"
#undef surface_command

#include "valley/data.h"
#include "valley/model.h"
#include "valley/swag.h"

enum { SUBSPACE_NP = 59 }; /* parameters of the seed subspace.nc (tests/fuzz/make_seeds.sh) */

/* No MPI_Init: these readers are serial and call no MPI function (one that did would abort
 * the target, a finding). MPI_Init (an Open MPI singleton) took 0.3 of the 0.4 s a target
 * process needs to start, and fork mode starts a new process after every crash inside
 * HDF5 and for every merge.
 *
 * The input's path is opened once with a valid file first. valley tries the first
 * successful open of a path in a process in a forked child (ncio.c, probe_open); without
 * this, an input on which HDF5 crashes was refused by that probe when it came before any
 * valid file (and, new coverage, entered the corpus) but crashed the target when it came
 * after one: results depended on the order, and such corpus entries crashed every later
 * fork-mode job while it replayed its corpus at start-up (most jobs died there). Primed,
 * every input meets the readers as every open after the first does in valley, an HDF5
 * crash is always a crash (a library finding), and the probe itself is tested by
 * rel_corpus on tests/corpus/<reader>/hdf5crash_*. */
static const char *input_path;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    input_path = fz_write(0, "input.nc", "", 0);
    int ncid;
    if (nc_create(input_path, NC_NETCDF4 | NC_CLOBBER, &ncid) != NC_NOERR ||
        nc_close(ncid) != NC_NOERR || ncio_open(input_path, &ncid) != VL_OK) {
        fprintf(stderr, "fuzz_netcdf: cannot prime %s: %s\n", input_path, vl_error_message());
        abort();
    }
    nc_close(ncid);
    return 0;
}

static void read_model_files(const char *path)
{
    vl_model_config_t cfg;
    char ds[32];
    vl_error_clear();
    int st = ckpt_read_config(path, &cfg, ds);
    fz_check_status(st, "ckpt_read_config");
    if (st) return;
    /* only small models: a file may describe any size, and building it is not the reader */
    long long in = (long long)cfg.in_c * cfg.in_h * cfg.in_w, width = in;
    if (cfg.in_c < 1 || cfg.in_h < 1 || cfg.in_w < 1 || in > 4096 || cfg.out_dim < 1 || cfg.out_dim > 64) return;
    for (int i = 0; i < cfg.nwidths; i++) {
        if (cfg.widths[i] < 1 || cfg.widths[i] > 256) return;
        width = cfg.widths[i];
    }
    (void)width;
    if (cfg.kind != MODEL_MLP) return;
    vl_model_t *m = NULL;
    st = model_create(&cfg, 2, &m);
    if (st) { vl_error_clear(); return; }
    const size_t np = model_nparams(m), ns = model_nstate(m);
    float *w = calloc(np + 1, sizeof(float)), *state = calloc(ns + 1, sizeof(float)), *mom = calloc(np + 1, sizeof(float));
    vl_train_pos_t pos;
    memset(&pos, 0, sizeof pos);
    vl_error_clear();
    st = ckpt_read(path, m, w, state, mom, &pos);
    fz_check_status(st, "ckpt_read");
    free(pos.rank_sums);
    vl_swag_t sw;
    if (swag_init(&sw, np, 4) == VL_OK) {
        vl_error_clear();
        fz_check_status(ckpt_read_swag(path, &sw), "ckpt_read_swag");
        swag_free(&sw);
    }
    vl_curve_t cv;
    memset(&cv, 0, sizeof cv);
    memset(&pos, 0, sizeof pos);
    vl_error_clear();
    fz_check_status(curve_read(path, np, &cv, &pos), "curve_read");
    curve_free(&cv);
    free(pos.rank_sums);
    free(w); free(state); free(mom);
    model_free(m);
}

static void read_subspace(const char *path)
{
    static vl_deck_t *d;
    if (!d) {
        char *sets[1] = {"surface.basis=pca"};
        if (deck_load(NULL, 1, sets, &d)) abort();
    }
    vl_job_t j;
    memset(&j, 0, sizeof j);
    j.np = SUBSPACE_NP;
    j.deck = d;
    vl_subspace_t s;
    memset(&s, 0, sizeof s);
    named_t pts[64];
    double cx[64], cy[64];
    int npts = 0, ncurve = 0;
    char *in[1] = {(char *)path};
    vl_error_clear();
    fz_check_status(build_subspace(&j, d, 1, in, &s, pts, &npts, cx, cy, &ncurve), "subspace reader (surface pca)");
    subspace_free(&s);
}

/* FZ_READER selects the readers (build.sh makes one binary each, so that the slow
 * HDF5 opens of one reader do not take the others' time): 1 dataset, 2 model files,
 * 3 subspace; 0 all. */
#ifndef FZ_READER
#define FZ_READER 0
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_write(0, "input.nc", data, size); /* input_path */
    if (FZ_READER == 0 || FZ_READER == 1) {
        vl_split_t s;
        vl_error_clear();
        fz_check_status(data_load(path, "train", 0, 0, 1, &s), "data_load train");
        data_free(&s);
        vl_error_clear();
        fz_check_status(data_load(path, "test", 2, 1, 3, &s), "data_load test");
        data_free(&s);
    }
    if (FZ_READER == 0 || FZ_READER == 2) read_model_files(path);
    if (FZ_READER == 0 || FZ_READER == 3) read_subspace(path);
    vl_error_clear();
    return 0;
}
