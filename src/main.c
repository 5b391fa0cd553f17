/* main.c — valley: command-line front end (prolog, dispatch, epilog).
 *
 *   valley <command> [DECK.ini] [INPUT.nc ...] [--set section.key=value ...] [--out DIR]
 *
 * Errors: a command returns a status. Collective failures (every rank reached
 * the same one) are printed once by rank 0 and every rank exits with the
 * status; a failure only one rank knows about ends the job with MPI_Abort.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gitversion.h"
#include "valley/bma.h"
#include "valley/comm.h"
#include "valley/cpu.h"
#include "valley/curve.h"
#include "valley/deck.h"
#include "valley/error.h"
#include "valley/hessian.h"
#include "valley/infer.h"
#include "valley/log.h"
#include "valley/data.h"
#include "valley/onnx.h"
#include "valley/pipeline.h"
#include "valley/simplex.h"
#include "valley/plot.h"
#include "valley/rundir.h"
#include "valley/signals.h"
#include "valley/subspace.h"
#include "valley/train.h"

#define MAX_INPUTS 256
#define MAX_SETS 256

typedef struct {
    const char *command;
    const char *deck;
    char *inputs[MAX_INPUTS];
    int ninputs;
    char *sets[MAX_SETS];
    int nsets;
    const char *out;
} args_t;

static const struct { const char *name, *summary; int implemented; } commands[] = {
    {"prepare", "convert a dataset (fashion-mnist, mnist, cifar10, cifar100, toy1d, diabetes) to NetCDF under input/data/", 1},
    {"train", "SGD training (data-parallel in each group) -> model.nc, history.nc", 1},
    {"evaluate", "accuracy, NLL, ECE, Brier of MODEL.nc (their ensemble if several) -> eval.nc", 1},
    {"run", "the whole pipeline of a deck -> all outputs and report.md", 1},
    {"fge", "fast geometric ensembling from MODEL.nc: cyclic LR, snapshots, ensemble -> fge.nc", 1},
    {"curve", "fits a Bezier / polygonal-chain curve between MODEL.nc files; evaluates it and the line -> curve.nc, curve_eval.nc", 1},
    {"pca", "distributed PCA (ScaLAPACK / Gram) of swag.nc deviations or of checkpoints -> subspace.nc", 1},
    {"surface", "loss and error over a grid in a plane / line / random / PCA subspace, restartable -> surface.nc", 1},
    {"bma", "SWA, SWAG-Diag, SWAG and ensembles of swag.nc / MODEL.nc: BN refresh, model average, metrics -> bma.nc", 1},
    {"infer", "subspace inference (ESS, VI) in w = shift + P z of subspace.nc / curve.nc / swag.nc, BMA -> infer.nc", 1},
    {"simplex", "SPRO simplexes, mode-connecting complexes, ESPRO ensembles -> simplex.nc", 1},
    {"hessian", "Hessian spectrum of MODEL.nc's training loss: top eigenvalues, smallest, trace, density (Lanczos) -> hessian.nc", 1},
    {"export", "MODEL.nc (or a point of curve.nc: --set curve.t=T) as ONNX -> model.onnx", 1},
    {"import", "a network from ONNX (PyTorch's torch.onnx.export) -> model.nc of model.kind graph", 1},
    {"plot", "PNG figures from history, eval, fge, bma, curve_eval, surface, infer and simplex files, next to them or in --out", 1},
    {"help", "this text, or every deck key of a command with its live default: valley help train", 1},
};
#define NCOMMANDS ((int)(sizeof commands / sizeof commands[0]))

static void usage(FILE *f)
{
    fprintf(f, "valley %s (%s): loss valleys and Bayesian deep learning at cluster scale\n\n", VALLEY_VERSION,
            VALLEY_GIT_COMMIT);
    fprintf(f, "usage: [mpirun -np P] valley <command> [DECK.ini] [INPUT.nc ...] [--set section.key=value ...] [--out DIR]\n\n");
    fprintf(f, "commands:\n");
    for (int i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n  valley help [command]   deck keys with their live defaults\n  valley --version\n");
    fprintf(f, "\nexit status: 0 ok, 2 bad input, 3 numerical failure, 4 I/O failure, 143 stopped by a signal\n");
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* A deck given without the .ini ending: an empty file (/dev/null) or a text file whose first
 * line that is not blank or a comment is a [section] header (a UTF-8 byte-order mark
 * allowed). NetCDF files (HDF5 or classic signatures) and anything else are inputs, and so
 * are files named *.nc or *.onnx whatever they hold. */
static int looks_like_deck(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || !(S_ISREG(sb.st_mode) || S_ISCHR(sb.st_mode))) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char buf[4097];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (n == 0) return 1;
    if (memchr(buf, '\0', n) || !memcmp(buf, "\x89HDF", n < 4 ? n : 4) || !memcmp(buf, "CDF", n < 3 ? n : 3))
        return 0;
    const char *p = buf;
    if (n >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) p += 3;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
        if (*p != '#' && *p != ';') break;
        p = strchr(p, '\n');
        if (!p) return 1; /* comments only */
    }
    return *p == '[' || *p == '\0';
}

static int parse_args(int argc, char **argv, args_t *a)
{
    memset(a, 0, sizeof *a);
    if (argc < 2) return VL_FAIL_ALL(VL_EINPUT, "no command given (try: valley help)");
    a->command = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--set") || !strcmp(s, "--out")) {
            if (i + 1 >= argc) return VL_FAIL_ALL(VL_EINPUT, "%s needs a value", s);
            if (s[2] == 's') {
                if (a->nsets >= MAX_SETS) return VL_FAIL_ALL(VL_EINPUT, "too many --set options");
                a->sets[a->nsets++] = argv[++i];
            } else {
                a->out = argv[++i];
            }
        } else if (!strncmp(s, "--set=", 6)) {
            if (a->nsets >= MAX_SETS) return VL_FAIL_ALL(VL_EINPUT, "too many --set options");
            a->sets[a->nsets++] = argv[i] + 6;
        } else if (!strncmp(s, "--out=", 6)) {
            a->out = s + 6;
        } else if (s[0] == '-' && s[1] == '-') {
            return VL_FAIL_ALL(VL_EINPUT, "unknown option '%s'", s);
        } else if ((ends_with(s, ".ini") || (!ends_with(s, ".nc") && !ends_with(s, ".onnx") && looks_like_deck(s))) &&
                   !a->deck) {
            a->deck = s;
        } else {
            if (a->ninputs >= MAX_INPUTS) return VL_FAIL_ALL(VL_EINPUT, "too many input files");
            a->inputs[a->ninputs++] = argv[i];
        }
    }
    return VL_OK;
}

static int dispatch(vl_comm_t *c, args_t *a)
{
    const char *cmd = a->command;
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        if (c->rank == 0) {
            printf("valley %s (git %s)\n", VALLEY_VERSION, VALLEY_GIT_COMMIT);
            printf("kernels: %s (this CPU can run:", vl_isa_name(vl_isa()));
            for (int i = vl_isa_cpu(); i >= VL_ISA_PORTABLE; i--) printf(" %s", vl_isa_name(i));
            printf("; VALLEY_ISA=avx2 or portable chooses a lower one)\n");
        }
        return VL_OK;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        if (c->rank != 0) return VL_OK;
        if (a->ninputs == 0) { usage(stdout); return VL_OK; }
        int found = 0;
        for (int i = 0; i < NCOMMANDS; i++) found |= !strcmp(commands[i].name, a->inputs[0]);
        if (!found) return VL_FAIL_ALL(VL_EINPUT, "help: unknown command '%s' (try: valley help)", a->inputs[0]);
        vl_deck_t *d = NULL;
        CHECK(deck_load(a->deck, a->nsets, a->sets, &d));
        printf("deck keys for `valley %s` (value shown is the live default", a->inputs[0]);
        printf(a->deck || a->nsets ? " after your deck and --set)\n\n" : ")\n\n");
        deck_help(stdout, a->inputs[0], d);
        deck_free(d);
        return VL_OK;
    }
    int known = -1;
    for (int i = 0; i < NCOMMANDS; i++)
        if (!strcmp(commands[i].name, cmd)) known = i;
    if (known < 0) return VL_FAIL_ALL(VL_EINPUT, "unknown command '%s' (try: valley help)", cmd);
    if (!commands[known].implemented)
        return VL_FAIL_ALL(VL_EINPUT, "command '%s' is not implemented in this version", cmd);

    vl_deck_t *d = NULL;
    CHECK(deck_load(a->deck, a->nsets, a->sets, &d));
    int st = deck_set_command(d, cmd); /* outputs record the keys this command reads */
    if (!st) st = comm_split(c, (int)deck_int(d, "parallel.group_size"));
    openblas_set_num_threads((int)deck_int(d, "parallel.threads"));
    vl_set_threads((int)deck_int(d, "parallel.threads"));
    char out[4096];
    snprintf(out, sizeof out, "%s", a->out ? a->out : "");
    if (!a->out) snprintf(out, sizeof out, "output/%s", cmd);
    /* Every command that writes a run directory takes it (lock, record of what ran there). */
    const int takes_dir = strcmp(cmd, "prepare") && strcmp(cmd, "plot");
    vl_rundir_t rd;
    memset(&rd, 0, sizeof rd);
    rd.fd = -1;
    if (!st && takes_dir) st = rundir_open(c, &rd, out, d, a->ninputs, a->inputs);
    if (!st) {
        if (!strcmp(cmd, "prepare")) {
            const char *ds = a->ninputs ? a->inputs[0] : deck_str(d, "data.dataset");
            if (a->ninputs) st = deck_set(d, "data.dataset", ds);
            char path[4200];
            if (*deck_str(d, "data.path")) snprintf(path, sizeof path, "%s", deck_str(d, "data.path"));
            else snprintf(path, sizeof path, "input/data/%s.nc", ds);
            if (!st) st = pipeline_prepare(c, d, ds, path);
        } else if (!strcmp(cmd, "train")) {
            if (a->ninputs)
                st = VL_FAIL_ALL(VL_EINPUT, "train takes no input files, got '%s' (a deck: name it .ini; to continue a "
                                            "run: --set train.resume=FILE)", a->inputs[0]);
            else st = train_command(c, d, out);
        } else if (!strcmp(cmd, "evaluate")) {
            st = evaluate_command(c, d, a->ninputs, a->inputs, out);
        } else if (!strcmp(cmd, "surface")) {
            st = surface_command(c, d, a->ninputs, a->inputs, out);
        } else if (!strcmp(cmd, "pca")) {
            st = pca_command(c, d, a->ninputs, a->inputs, out);
        } else if (!strcmp(cmd, "curve")) {
            st = curve_command(c, d, a->ninputs, a->inputs, out);
        } else if (!strcmp(cmd, "bma")) {
            st = bma_command(c, d, a->ninputs, a->inputs, out);
        } else if (!strcmp(cmd, "fge")) {
            st = fge_command(c, d, a->ninputs, a->inputs, out);
        } else if (!strcmp(cmd, "infer")) {
            st = infer_command(c, d, a->ninputs, a->inputs, out);
        } else if (!strcmp(cmd, "simplex")) {
            st = simplex_command(c, d, a->ninputs, a->inputs, out);
        } else if (!strcmp(cmd, "plot")) {
            st = plot_command(c, a->ninputs, a->inputs, a->out);
        } else if (!strcmp(cmd, "hessian")) {
            st = hessian_command(c, d, a->ninputs, a->inputs, out);
        } else if (!strcmp(cmd, "export")) {
            st = onnx_export_command(c, d, a->ninputs, a->inputs, out);
        } else if (!strcmp(cmd, "import")) {
            st = onnx_import_command(c, d, a->ninputs, a->inputs, out);
        } else if (!strcmp(cmd, "run")) {
            st = pipeline_command(c, d, a->deck, out);
        }
    }
    /* The command has finished: its phase timers (min/max/avg over the ranks) go to
     * OUT/timers.txt and to stdout, also after a pre-emption (exit 143, a run that will go
     * on), but not after a failure: a failed command leaves nothing new in OUT. A timers
     * file that cannot be written is a warning, not a failed command. */
    if (strcmp(cmd, "prepare") && strcmp(cmd, "plot") && (!st || (st == VL_ESIGNAL && vl_error_collective()))) {
        if (timer_write(c->world, out, cmd) && !st) { /* fails on rank 0 only */
            fprintf(stderr, "valley: warning: %s\n", vl_error_message());
            vl_error_clear();
        }
    }
    if (takes_dir) rundir_close(&rd, st);
    deck_free(d);
    return st;
}

int main(int argc, char **argv)
{
    vl_comm_t c;
    comm_init(&argc, &argv, &c);
    vl_now();
    signals_install(c.rank);
    args_t a;
    int st = parse_args(argc, argv, &a);
    if (!st) st = dispatch(&c, &a);
    if (st) {
        if (vl_error_collective()) {
            if (c.rank == 0) {
                fprintf(stderr, "valley: %s\n", vl_error_message());
                if (getenv("VALLEY_DEBUG")) fprintf(stderr, "  at %s\n", vl_error_where());
            }
            comm_finalize(&c);
            return st;
        }
        comm_abort(&c, st);
    }
    comm_finalize(&c);
    return 0;
}
