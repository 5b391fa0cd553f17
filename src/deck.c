/* deck.c — INI deck parser, the key table, --set overrides, deck text and help.
 *
 * HOW TO ADD A KEY: add one row to `rows[]` below (keep rows of one section
 * together; sections are listed in order of first appearance, and a new section
 * name used in a row becomes a known section). Fields:
 *   .name     "section.key" (lower case, [a-z0-9_])
 *   .type     T_INT, T_DOUBLE, T_BOOL, T_STRING, T_CHOICE, T_INTLIST
 *   .def      default as text, parsed like a value (checked by deck_load)
 *   .min/.max allowed range of INT / DOUBLE values and of each INTLIST entry
 *   .open_min 1 when min itself is excluded, e.g. (0, 1]
 *   .choices  CHOICE only: "a|b|c"
 *   .check    optional extra validation: int (*)(long long v, char *why, size_t nwhy), non-zero = bad
 *   .check_text  STRING only: optional parser of the text into its canonical form,
 *             int (*)(const char *s, char *canon, size_t ncanon, char *why, size_t nwhy), non-zero = bad
 *   .cmds     commands the key concerns, for `valley help CMD`: "train,run", or "*"
 *   .help     one-line meaning
 * Nothing else needs to change: getters, validation, help and deck_text follow.
 */
#include "valley/deck.h"

#include "valley/error.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum { T_INT, T_DOUBLE, T_BOOL, T_STRING, T_CHOICE, T_INTLIST } deck_type_t;

typedef struct {
    const char *name;
    deck_type_t type;
    const char *def;
    double min, max;
    int open_min;
    const char *choices;
    /* Extra check of an INT value already in range: returns 0 if fine, else
     * writes the reason (without key) into why. */
    int (*check)(long long v, char *why, size_t nwhy);
    /* Parser of a STRING value (a list with its own syntax): returns 0 and writes the canonical
     * text, else writes the reason (without key) into why. */
    int (*check_text)(const char *s, char *canon, size_t ncanon, char *why, size_t nwhy);
    int is_name;  /* T_STRING that names something (a dataset): non-empty, letters, digits, '.', '_', '-',
                     lower-cased */
    const char *cmds;
    /* Commands for which the key says how to run, not what to compute (threads, logging,
     * checkpoint cadence, where to resume from): it is left out of a run's identity, so
     * changing it neither refuses a run directory nor counts as a change on resume. */
    const char *operational;
    const char *help;
} deck_row_t;

/* Command groups for the .cmds column. */
#define CMDS_ALL "*"
#define CMDS_DATA "prepare,train,evaluate,fge,curve,surface,bma,infer,simplex,run,import,export,hessian"
#define CMDS_MODEL "train,evaluate,fge,curve,surface,bma,infer,simplex,run,export,hessian"
#define CMDS_SGD "train,fge,curve,simplex,run"
#define CMDS_EVAL "train,evaluate,fge,curve,surface,bma,infer,simplex,run,export"
#define CMDS_GROUPS_SAME "evaluate,curve,surface,bma,pca,hessian" /* results do not depend on the groups */
#define CMDS_BN "evaluate,fge,curve,surface,bma,infer,simplex,run,export,hessian"

static int check_classes(const char *s, char *canon, size_t ncanon, char *why, size_t nwhy);

/* The key table. Defaults are the contract in INTERFACE.md. */
static const deck_row_t rows[] = {
    {.name = "run.seed", .type = T_INT, .def = "1", .min = 0, .max = 4611686018427387904.0 /* 2^62 */,
     .cmds = CMDS_ALL, .help = "seed of everything random (init, data order, sampling)"},
    {.name = "run.name", .type = T_STRING, .def = "", .cmds = CMDS_ALL, .operational = "*",
     .help = "label stored in outputs"},
    {.name = "run.overwrite", .type = T_BOOL, .def = "false", .cmds = CMDS_ALL, .operational = "*",
     .help = "write into a --out directory that holds another command's or another deck's run (valley-run.txt); "
             "its files are replaced as the new run writes them (`run` recomputes every stage, `surface` every point)"},
    {.name = "run.stages", .type = T_STRING, .def = "train,evaluate,bma,fge", .cmds = "run",
     .operational = "*",
     .help = "stages of `valley run`, in order (train or endpoints, evaluate, bma, fge, curve, surface, pca, infer, simplex, baselines, hessian, shortcuts, export); finished ones are reused"},

    {.name = "data.dataset", .type = T_STRING, .is_name = 1, .def = "fashion-mnist", .cmds = CMDS_DATA,
     .help = "dataset to train and evaluate on: fashion-mnist, mnist (from data.source), cifar10, cifar100 (prepare them first), toy1d, "
             "diabetes, or the name of your own file in the layout of doc/data.md (with data.path)"},
    {.name = "data.path", .type = T_STRING, .def = "", .cmds = CMDS_DATA,
     .help = "dataset file (prepare writes it); empty = input/data/<dataset>.nc"},
    {.name = "data.source", .type = T_STRING, .def = "", .cmds = "prepare,run",
     .help = "directory of the raw files for prepare (empty = where Debian's package installs them; cifar10 and "
             "cifar100: the directory of the official binary files, required)"},
    {.name = "data.train_subset", .type = T_INT, .def = "0", .min = 0, .max = 1e9, .cmds = CMDS_MODEL,
     .help = "use only the first N training samples (0 = all)"},
    {.name = "data.test_subset", .type = T_INT, .def = "0", .min = 0, .max = 1e9, .cmds = CMDS_MODEL,
     .help = "use only the first N test samples (0 = all)"},
    {.name = "data.validation", .type = T_INT, .def = "0", .min = 0, .max = 1e9, .cmds = CMDS_MODEL,
     .help = "hold out the last N images of the training selection (after data.train_subset and data.classes) as "
             "the validation split: the same images on any rank count; training, BN refreshes and every training "
             "pass skip them, methods that fit something (bma's sgd-temp, swa-temp) fit on them (0 = none)"},
    {.name = "data.classes", .type = T_STRING, .def = "all", .check_text = check_classes, .cmds = CMDS_MODEL,
     .help = "classes to train and test on, e.g. 0,1,2,3,4 (labels keep their ids, the network keeps every output); "
             "bma also evaluates on the test images of the other classes (out of distribution); all = every class"},
    {.name = "data.augment", .type = T_CHOICE, .def = "none", .choices = "none|crop-flip", .cmds = CMDS_SGD,
     .help = "training-data augmentation: random crop (padding 4 from 32x32 on, 2 below) and horizontal flip, "
             "the same for every channel"},

    {.name = "model.kind", .type = T_CHOICE, .def = "convnet",
     .choices = "mlp|convnet|resnet|preresnet|vgg|wideresnet|linear|graph", .cmds = CMDS_MODEL,
     .help = "network: mlp (model.widths), convnet, resnet, preresnet, vgg, wideresnet (model.depth, model.widen, "
             "model.width_factor, model.shortcuts, model.bn), linear (no hidden layer), graph (an imported "
             "network: only from its model.nc, `valley import`)"},
    {.name = "model.widths", .type = T_INTLIST, .def = "512,512", .min = 1, .max = 1e6, .cmds = CMDS_MODEL,
     .help = "hidden widths of mlp"},
    {.name = "model.depth", .type = T_INT, .def = "0", .min = 0, .max = 1000, .cmds = CMDS_MODEL,
     .help = "depth: resnet 6n+2 (20, 32, 44, 56, 110), preresnet 6n+2 below 44 or 9n+2 from 44 (bottleneck: 164), "
             "vgg 11/13/16/19, wideresnet 6n+4 (16, 28); 0 = the family's default (resnet 20, preresnet 8, vgg 16, "
             "wideresnet 28)"},
    {.name = "model.widen", .type = T_INT, .def = "10", .min = 1, .max = 64, .cmds = CMDS_MODEL,
     .help = "wideresnet widening factor k (stages of 16k, 32k, 64k channels)"},
    {.name = "model.dropout", .type = T_DOUBLE, .def = "0", .min = 0, .max = 0.999, .cmds = CMDS_MODEL,
     .help = "dropout probability (PyTorch's nn.Dropout; training drops, evaluation does not unless MC dropout): mlp "
             "after each hidden layer, vgg before the classifier's two hidden layers; 0 = none"},
    {.name = "model.width_factor", .type = T_DOUBLE, .def = "1", .min = 0.001, .max = 64, .cmds = CMDS_MODEL,
     .help = "scales every channel count of convnet, resnet, preresnet, vgg, wideresnet (rounded, at least 1): small "
             "networks for tests and small machines"},
    {.name = "model.shortcuts", .type = T_BOOL, .def = "true", .cmds = CMDS_MODEL,
     .help = "resnet: residual shortcuts (false: the loss-landscape paper's no-shortcut network)"},
    {.name = "model.bn", .type = T_BOOL, .def = "true", .cmds = CMDS_MODEL,
     .help = "vgg: batch norm after each conv"},
    {.name = "model.noise", .type = T_CHOICE, .def = "homoscedastic", .choices = "homoscedastic|heteroscedastic",
     .cmds = CMDS_MODEL, .help = "regression likelihood"},
    {.name = "model.noise_std", .type = T_DOUBLE, .def = "0", .min = 0, .max = 1e6, .cmds = CMDS_MODEL,
     .help = "fixed noise std for homoscedastic regression (0 = re-estimate as train RMSE)"},

    {.name = "train.epochs", .type = T_INT, .def = "20", .min = 0, .max = 1e6, .cmds = CMDS_SGD,
     .help = "number of training epochs"},
    {.name = "train.batch_size", .type = T_INT, .def = "128", .min = 1, .max = 1e6, .cmds = CMDS_MODEL,
     .help = "SGD mini-batch size (global, over all ranks of a group); also the batches of evaluation passes and BN refreshes"},
    {.name = "train.lr", .type = T_DOUBLE, .def = "0.05", .min = 0, .max = 1e6, .cmds = CMDS_SGD,
     .help = "initial SGD learning rate"},
    {.name = "train.momentum", .type = T_DOUBLE, .def = "0.9", .min = 0, .max = 1, .cmds = CMDS_SGD,
     .help = "SGD momentum"},
    {.name = "train.wd", .type = T_DOUBLE, .def = "5e-4", .min = 0, .max = 1e6, .cmds = CMDS_SGD ",bma",
     .help = "weight decay (L2 penalty coefficient); bma: the one the model was trained with (KFAC-Laplace's prior)"},
    {.name = "train.nesterov", .type = T_BOOL, .def = "false", .cmds = CMDS_SGD, .help = "Nesterov momentum"},
    {.name = "train.schedule", .type = T_CHOICE, .def = "swa", .choices = "swa|constant|cosine", .cmds = CMDS_SGD,
     .help = "learning-rate schedule"},
    {.name = "train.checkpoint_every", .type = T_INT, .def = "0", .min = 0, .max = 1e9, .cmds = "train,run",
     .operational = "*",
     .help = "write checkpoints/epoch_NNNN.nc every N epochs (0 = only at the end)"},
    {.name = "train.init", .type = T_STRING, .def = "", .cmds = "train,run",
     .help = "start from this model file's weights and BN statistics (its network replaces the deck's model keys) "
             "with a fresh momentum buffer: SGD, SWA or SWAG from a pre-trained or imported (`valley import`) model"},
    {.name = "train.resume", .type = T_STRING, .def = "", .cmds = "train,fge,curve,run",
     .operational = "*",
     .help = "checkpoint to continue from (train, curve, fge), or 'auto': train the newest checkpoint of the run "
             "directory (checkpoints/*.nc; none: start), fge each chain its own checkpoints/preempt.nc"},
    {.name = "train.resume_force", .type = T_BOOL, .def = "false", .cmds = "train,fge,curve,run", .operational = "*",
     .help = "resume even when the deck changes what the checkpoint's run computes (dataset, subsets, validation "
             "split, classes, batch size, seed, model); other changes (lr, epochs, ...) are always allowed, printed and recorded in history.nc"},
    {.name = "train.checkpoint_minutes", .type = T_DOUBLE, .def = "15", .min = 0, .max = 1e6, .cmds = "train,curve,run",
     .operational = "*",
     .help = "also write checkpoints/latest.nc whenever this much wall-clock time has passed since the last "
             "checkpoint (0 = never), so that a hard kill loses minutes, not the run"},
    {.name = "train.allow_nonfinite", .type = T_BOOL, .def = "false", .cmds = CMDS_SGD,
     .operational = "*",
     .help = "continue past a non-finite loss instead of exit 3"},
    {.name = "train.log_every", .type = T_INT, .def = "0", .min = 0, .max = 1e9, .cmds = CMDS_SGD,
     .operational = "*",
     .help = "progress line every N steps (0 = about 10 per epoch)"},

    {.name = "parallel.group_size", .type = T_INT, .def = "0", .min = 0, .max = 1e7, .cmds = CMDS_ALL,
     .operational = CMDS_GROUPS_SAME,
     .help = "ranks per group (0 = all ranks one group)"},
    {.name = "parallel.threads", .type = T_INT, .def = "1", .min = 1, .max = 1024, .cmds = CMDS_ALL,
     .operational = "*",
     .help = "threads per rank: valley's kernels (OpenMP, bit-identical for any count) and OpenBLAS"},

    {.name = "train.swa", .type = T_BOOL, .def = "false", .cmds = "train,run",
     .help = "collect the SWA mean of the iterates (writes swag.nc)"},
    {.name = "train.swa_start", .type = T_INT, .def = "0", .min = 0, .max = 1e6, .cmds = "train,run",
     .help = "first epoch (1-based) whose iterates are collected; 0 = 75% of train.epochs"},
    {.name = "train.swa_lr", .type = T_DOUBLE, .def = "0.05", .min = 0, .max = 1e6, .cmds = "train,run",
     .help = "learning rate of the SWA phase (the swa schedule decays lr to it until swa_start)"},
    {.name = "train.swa_freq", .type = T_INT, .def = "1", .min = 1, .max = 1e6, .cmds = "train,run",
     .help = "collections per epoch (evenly spaced)"},
    {.name = "train.swag", .type = T_BOOL, .def = "false", .cmds = "train,run",
     .help = "also collect SWAG moments and deviations (implies train.swa)"},
    {.name = "train.swag_rank", .type = T_INT, .def = "20", .min = 1, .max = 10000, .cmds = "train,run",
     .help = "K: deviations kept for the low-rank SWAG covariance"},

    {.name = "fge.cycle", .type = T_INT, .def = "4", .min = 2, .max = 1e6, .cmds = "fge,run",
     .help = "cycle length in epochs (even); a snapshot at each mid-cycle"},
    {.name = "fge.lr1", .type = T_DOUBLE, .def = "0.05", .min = 0, .max = 1e6, .cmds = "fge,run",
     .help = "learning rate at the ends of a cycle"},
    {.name = "fge.lr2", .type = T_DOUBLE, .def = "1e-4", .min = 0, .max = 1e6, .cmds = "fge,run",
     .help = "learning rate at mid-cycle"},
    {.name = "fge.cycles", .type = T_INT, .def = "4", .min = 1, .max = 1e6, .cmds = "fge,run",
     .help = "cycles, i.e. snapshots per chain (epochs = cycles x cycle)"},

    {.name = "curve.kind", .type = T_CHOICE, .def = "bezier", .choices = "bezier|polychain", .cmds = "curve,run",
     .help = "curve family: Bezier (two checkpoints) or polygonal chain (two or more)"},
    {.name = "curve.bends", .type = T_INT, .def = "3", .min = 2, .max = 100, .cmds = "curve,run",
     .help = "control points per segment including its two ends (3: one trained point)"},
    {.name = "curve.epochs", .type = T_INT, .def = "10", .min = 0, .max = 1e6, .cmds = "curve,run",
     .help = "epochs of curve training (0: evaluate the initial straight curve)"},
    {.name = "curve.lr", .type = T_DOUBLE, .def = "0.015", .min = 0, .max = 1e6, .cmds = "curve,run",
     .help = "initial learning rate (constant to 50%, linear to 1% of it at 90%)"},
    {.name = "curve.wd", .type = T_DOUBLE, .def = "5e-4", .min = 0, .max = 1e6, .cmds = "curve,run",
     .help = "weight decay 0.5 wd |w(t)|^2 on the curve point of each batch"},
    {.name = "curve.points", .type = T_INT, .def = "61", .min = 2, .max = 1024, .cmds = "curve,run",
     .help = "values of t in [0, 1] where the curve and the line are evaluated"},

    {.name = "pca.rank", .type = T_INT, .def = "5", .min = 1, .max = 10000, .cmds = "pca,run",
     .help = "k: principal directions kept (the default keeps at most as many as the input has columns)"},
    {.name = "pca.route", .type = T_CHOICE, .def = "gram2", .choices = "gram2|gram|qr|svd", .cmds = "pca,run",
     .help = "algorithm: two-pass Gram (default), Gram, TSQR (pdgeqrf + small SVD), ScaLAPACK pdgesvd"},
    {.name = "pca.scale", .type = T_CHOICE, .def = "sv", .choices = "sv|unit", .cmds = "pca,run",
     .help = "basis scaling: sigma_i/sqrt(K-1) (subspace inference) or unit norm (plots)"},

    {.name = "surface.basis", .type = T_CHOICE, .def = "plane", .choices = "plane|line|random|pca", .cmds = "surface,run",
     .help = "plane (3 checkpoints or a curve.nc), line (2), random filter-normalised (1), pca (subspace.nc)"},
    {.name = "surface.xmin", .type = T_DOUBLE, .def = "-0.2", .min = -1e6, .max = 1e6, .cmds = "surface,run", .help = "grid: first x"},
    {.name = "surface.xmax", .type = T_DOUBLE, .def = "1.2", .min = -1e6, .max = 1e6, .cmds = "surface,run", .help = "grid: last x"},
    {.name = "surface.nx", .type = T_INT, .def = "21", .min = 1, .max = 100000, .cmds = "surface,run", .help = "grid: points along x"},
    {.name = "surface.ymin", .type = T_DOUBLE, .def = "-0.2", .min = -1e6, .max = 1e6, .cmds = "surface,run", .help = "grid: first y"},
    {.name = "surface.ymax", .type = T_DOUBLE, .def = "1.2", .min = -1e6, .max = 1e6, .cmds = "surface,run", .help = "grid: last y"},
    {.name = "surface.ny", .type = T_INT, .def = "21", .min = 1, .max = 100000, .cmds = "surface,run",
     .help = "grid: points along y (1 for a line)"},
    {.name = "surface.train", .type = T_BOOL, .def = "true", .cmds = "surface,run", .help = "compute training loss and error"},
    {.name = "surface.test", .type = T_BOOL, .def = "true", .cmds = "surface,run", .help = "compute test loss and error"},
    {.name = "surface.chunk", .type = T_INT, .def = "4", .min = 1, .max = 1000000, .cmds = "surface,run",
     .operational = "*",
     .help = "grid points a group takes at a time"},
    {.name = "surface.train_subset", .type = T_INT, .def = "0", .min = 0, .max = 1e9, .cmds = "run",
     .help = "`valley run`'s surface stage: training images of the BN refreshes and training loss (0 = data.train_subset)"},
    {.name = "surface.precompute", .type = T_BOOL, .def = "true", .cmds = "surface,run",
     .help = "mlp: the first layer's responses to the shift and directions computed once per sample, combined per point"},
    {.name = "surface.hessian", .type = T_BOOL, .def = "false", .cmds = "surface,run",
     .help = "also the Hessian's largest and smallest eigenvalue at each point (Lanczos of hessian.steps steps over the "
             "first hessian.samples training images, BN in eval mode after the point's refresh): maps hessian_max, "
             "hessian_min"},
    {.name = "surface.flush_seconds", .type = T_DOUBLE, .def = "30", .min = 0, .max = 1e6, .cmds = "surface,run",
     .operational = "*",
     .help = "rank 0 writes the results so far to surface.nc this often"},

    {.name = "bma.methods", .type = T_STRING, .def = "sgd,ensemble,swa,swag-diag,swag", .cmds = "bma,run",
     .help = "model averages to compute (those the inputs allow): sgd, ensemble, swa, swag-diag, swag; sgd-temp, "
             "swa-temp (the first MODEL.nc / the SWA mean of the first swag.nc with a temperature fitted on "
             "data.validation); sgd-drop, swa-drop (MC dropout: bma.samples stochastic passes of a network with "
             "model.dropout; swa-drop takes chain s mod chains)"},
    {.name = "bma.samples", .type = T_INT, .def = "30", .min = 1, .max = 1e6, .cmds = "bma,infer,run",
     .help = "posterior samples per SWAG method (each gets a BN refresh); MC-dropout passes of sgd-drop and swa-drop"},
    {.name = "bma.scale", .type = T_DOUBLE, .def = "0.5", .min = 0, .max = 1e6, .cmds = "bma,infer,run,export",
     .help = "covariance scale s of SWAG samples (0.5: the paper's 1/sqrt(2) factors)"},
    {.name = "bma.ood_data", .type = T_STRING, .def = "", .cmds = "bma,run",
     .help = "a dataset file (e.g. input/data/mnist.nc) whose test images every method is also evaluated on as out "
             "of distribution (entropy), normalised as the training data; empty = none (data.classes gives the other)"},
    {.name = "bma.diag_scale", .type = T_DOUBLE, .def = "1.0", .min = 0, .max = 1e6, .cmds = "bma,run",
     .help = "covariance scale of SWAG-Diag samples"},

    {.name = "laplace.prior_precision", .type = T_DOUBLE, .def = "0", .min = 0, .max = 1e12, .cmds = "bma,run",
     .help = "KFAC-Laplace (bma methods laplace-sgd, laplace-swa): prior precision tau of the weights; 0 = fitted on "
             "the validation split (data.validation > 0), else the training samples x train.wd"},
    {.name = "laplace.fit_samples", .type = T_INT, .def = "4", .min = 1, .max = 1e4, .cmds = "bma,run",
     .help = "KFAC-Laplace: draws per prior precision when laplace.prior_precision = 0 fits it on the validation split "
             "(data.validation; grid n_train x train.wd x 10^k, k = -1..7)"},
    {.name = "laplace.scale", .type = T_DOUBLE, .def = "1.0", .min = 0, .max = 1e6, .cmds = "bma,run",
     .help = "KFAC-Laplace: draws are point estimate + scale x a posterior deviation (1 = the Laplace posterior)"},

    {.name = "hessian.samples", .type = T_INT, .def = "0", .min = 0, .max = 1e12, .cmds = "hessian,surface,run",
     .help = "the Hessian is that of the mean training NLL over the first N images of the training split (0 = all of "
             "it), without weight decay, BN in eval mode with the model's running statistics"},
    {.name = "hessian.steps", .type = T_INT, .def = "40", .min = 1, .max = 100000, .cmds = "hessian,surface,run",
     .help = "Lanczos steps (Hessian-vector products) per run, with full reorthogonalisation"},
    {.name = "hessian.probes", .type = T_INT, .def = "4", .min = 1, .max = 100000, .cmds = "hessian,run",
     .help = "Lanczos runs from Rademacher vectors, spread over the groups: their quadratures average into the "
             "spectral density, their v^T H v into the trace (Hutchinson); run 0 gives the top eigenvalues"},
    {.name = "hessian.top", .type = T_INT, .def = "5", .min = 1, .max = 256, .cmds = "hessian,run",
     .help = "largest eigenvalues reported (with residual bounds)"},
    {.name = "hessian.grid", .type = T_INT, .def = "7", .min = 0, .max = 1000, .cmds = "run",
     .help = "run's hessian stage: points per side of the map of the extreme eigenvalues over the curve's plane (0 = no map)"},
    {.name = "hessian.density_points", .type = T_INT, .def = "512", .min = 2, .max = 1e6, .cmds = "hessian,run",
     .help = "points of the spectral density's grid"},
    {.name = "hessian.density_sigma", .type = T_DOUBLE, .def = "0.01", .min = 0, .max = 1, .open_min = 1,
     .cmds = "hessian,run", .help = "width of the density's Gaussian kernel, as a fraction of the spectrum's range"},

    {.name = "baselines.classes", .type = T_STRING, .def = "0,1,2,3,4", .check_text = check_classes, .cmds = "run",
     .help = "run's baselines stage: the classes its network is trained on (the others are its out-of-distribution test)"},
    {.name = "baselines.validation", .type = T_INT, .def = "2000", .min = 1, .max = 1e9, .cmds = "run",
     .help = "run's baselines stage: training images held out for temperature scaling and the Laplace prior"},
    {.name = "baselines.train_subset", .type = T_INT, .def = "0", .min = 0, .max = 1e12, .cmds = "run",
     .help = "run's baselines stage: the first N training images before the class selection (0 = all)"},
    {.name = "baselines.epochs", .type = T_INT, .def = "0", .min = 0, .max = 1e6, .cmds = "run",
     .help = "run's baselines stage: training epochs (0 = train.epochs)"},
    {.name = "baselines.methods", .type = T_STRING, .def = "sgd,swa,swag-diag,swag,sgd-temp,swa-temp,laplace-sgd,laplace-swa",
     .cmds = "run",
     .help = "run's baselines stage: the bma methods compared (add sgd-drop,swa-drop for a network with model.dropout)"},
    {.name = "baselines.samples", .type = T_INT, .def = "10", .min = 1, .max = 1e6, .cmds = "run",
     .help = "run's baselines stage: samples per sampling method (bma.samples)"},

    {.name = "infer.method", .type = T_CHOICE, .def = "ess", .choices = "ess|vi", .cmds = "infer,run",
     .help = "posterior in the subspace: elliptical slice sampling or variational inference"},
    {.name = "infer.subspace", .type = T_CHOICE, .def = "auto", .choices = "auto|pca|random|curve", .cmds = "infer,run",
     .help = "subspace: auto = pca for subspace.nc / swag.nc (Gram PCA of its deviations), curve for curve.nc; random = orthonormal Gaussian rows scaled to the PCA row norms"},
    {.name = "infer.rank", .type = T_INT, .def = "0", .min = 0, .max = 16, .cmds = "infer,run",
     .help = "k: directions used, the first k of subspace.nc (0 = what the input holds: every direction of "
             "subspace.nc, 2 for a curve, 5 for swag.nc's PCA); random subspaces draw k"},
    {.name = "infer.samples", .type = T_INT, .def = "30", .min = 1, .max = 1e6, .cmds = "infer,run",
     .help = "posterior samples kept per chain (ESS after burn-in; VI draws from q)"},
    {.name = "infer.burnin", .type = T_INT, .def = "10", .min = 0, .max = 1e6, .cmds = "infer,run",
     .help = "ESS iterations discarded at the start of each chain"},
    {.name = "infer.temperature", .type = T_DOUBLE, .def = "0", .min = 0, .max = 1e12, .cmds = "infer,run",
     .help = "T in log-likelihood/T (0 = auto: training-set size / 10 for classification, 1 for regression)"},
    {.name = "infer.prior_std", .type = T_DOUBLE, .def = "1", .min = 0, .max = 1e6, .open_min = 1, .cmds = "infer,run",
     .help = "prior z ~ N(0, prior_std^2 I)"},
    {.name = "infer.chains", .type = T_INT, .def = "0", .min = 0, .max = 1e6, .cmds = "infer,run",
     .help = "independent chains (0 = one per group); chain c runs on group c mod groups"},
    {.name = "infer.vi_epochs", .type = T_INT, .def = "20", .min = 1, .max = 1e6, .cmds = "infer,run",
     .help = "VI: epochs of minibatch optimisation of (mu, rho)"},
    {.name = "infer.vi_lr", .type = T_DOUBLE, .def = "0.01", .min = 0, .max = 1e6, .open_min = 1, .cmds = "infer,run",
     .help = "VI: Adam step size, constant for half the steps then linear to 1/100; (mu, rho) averaged over the last quarter"},
    {.name = "infer.train_subset", .type = T_INT, .def = "0", .min = 0, .max = 1e9, .cmds = "run",
     .help = "`valley run`'s infer stage: training images of the likelihood and BN refreshes (0 = data.train_subset)"},
    {.name = "infer.grid_points", .type = T_INT, .def = "200", .min = 2, .max = 1e6, .cmds = "infer,run",
     .help = "1-D regression: x-grid points of the predictive band"},

    {.name = "simplex.vertices", .type = T_INT, .def = "3", .min = 1, .max = 64, .cmds = "simplex,run",
     .help = "vertices of each simplex, its base (input) vertex included"},
    {.name = "simplex.samples", .type = T_INT, .def = "5", .min = 1, .max = 1000, .cmds = "simplex,run",
     .help = "points sampled from the simplex per minibatch (their losses averaged)"},
    {.name = "simplex.lmbd", .type = T_DOUBLE, .def = "1e-6", .min = 0, .max = 1e6, .cmds = "simplex,run",
     .help = "LMBD of the volume term: lambda = max(LMBD / log(V_init + 1e-4), 1e-8), V_init = squared volume of as many "
             "randomly initialised networks (as in the reference code)"},
    {.name = "simplex.epochs", .type = T_INT, .def = "10", .min = 0, .max = 1e6, .cmds = "simplex,run",
     .help = "epochs of training per added vertex"},
    {.name = "simplex.lr", .type = T_DOUBLE, .def = "0.01", .min = 0, .max = 1e6, .cmds = "simplex,run",
     .help = "initial learning rate of each vertex's training (cosine schedule)"},
    {.name = "simplex.wd", .type = T_DOUBLE, .def = "5e-4", .min = 0, .max = 1e6, .cmds = "simplex,run",
     .help = "weight decay 0.5 wd |w|^2 on each sampled point"},
    {.name = "simplex.components", .type = T_INT, .def = "0", .min = 0, .max = 1e6, .cmds = "simplex,run",
     .help = "ESPRO: simplexes in the ensemble (0 = one per group), component c trained by group c mod groups"},
    {.name = "shortcuts.depth", .type = T_INT, .def = "56", .min = 8, .max = 1000, .cmds = "run",
     .help = "`valley run`'s shortcuts stage: depth of the ResNet trained with and without shortcuts (6n+2)"},
    {.name = "shortcuts.width_factor", .type = T_DOUBLE, .def = "0.25", .min = 0.001, .max = 64, .cmds = "run",
     .help = "shortcuts stage: the two networks' model.width_factor"},
    {.name = "shortcuts.epochs", .type = T_INT, .def = "5", .min = 1, .max = 100000, .cmds = "run",
     .help = "shortcuts stage: training epochs of each network (the deck's train.lr, schedule, momentum, wd)"},
    {.name = "shortcuts.train_subset", .type = T_INT, .def = "5000", .min = 0, .max = 1e9, .cmds = "run",
     .help = "shortcuts stage: training images of the two trainings (0 = data.train_subset)"},
    {.name = "shortcuts.grid", .type = T_INT, .def = "9", .min = 3, .max = 1001, .cmds = "run",
     .help = "shortcuts stage: points along each axis of the filter-normalised random plane around each network"},
    {.name = "shortcuts.span", .type = T_DOUBLE, .def = "1", .min = 0, .max = 1e6, .open_min = 1, .cmds = "run",
     .help = "shortcuts stage: the plane covers [-span, span]^2 in units of the filter-normalised directions"},
    {.name = "shortcuts.eval_subset", .type = T_INT, .def = "500", .min = 0, .max = 1e9, .cmds = "run",
     .help = "shortcuts stage: training and test images of each plane point (BN refresh, losses; 0 = the data's subsets)"},
    {.name = "simplex.train_subset", .type = T_INT, .def = "0", .min = 0, .max = 1e9, .cmds = "run",
     .help = "`valley run`'s simplex stage: training images of the simplex training and BN refreshes (0 = data.train_subset)"},
    {.name = "simplex.eval_samples", .type = T_INT, .def = "20", .min = 1, .max = 1e6, .cmds = "simplex,run",
     .help = "points sampled from each simplex for its evaluation and the ensemble (each gets a BN refresh)"},
    {.name = "simplex.grid", .type = T_INT, .def = "0", .min = 0, .max = 1000, .cmds = "simplex,run",
     .help = "N > 1: test loss/error on an N x N grid over the plane of the first 3-vertex simplex (BN refresh per point; 0 = none)"},

    {.name = "debug.surface_stop_after", .type = T_INT, .def = "0", .min = 0, .max = 1e9, .cmds = "surface",
     .operational = "*",
     .help = "tests only: stop a sweep (exit 143) once this many points are computed (0 = never)"},
    {.name = "debug.stop_at_step", .type = T_INT, .def = "0", .min = 0, .max = 1e12, .cmds = "train,fge,curve",
     .operational = "*",
     .help = "tests only: behave as if a signal arrived during this SGD step (checkpoint, exit 143); 0 = never"},
    {.name = "debug.step_delay", .type = T_DOUBLE, .def = "0", .min = 0, .max = 3600, .cmds = "train,fge,curve",
     .operational = "*",
     .help = "tests only: wall-clock seconds each SGD step waits before its allreduce (a signal lands inside a step)"},
    {.name = "debug.nan_step", .type = T_INT, .def = "0", .min = 0, .max = 1e12, .cmds = "train,fge,curve,simplex",
     .operational = "*",
     .help = "tests only: make the loss of this SGD step non-finite on rank debug.nan_rank (0 = never)"},
    {.name = "debug.nan_rank", .type = T_INT, .def = "0", .min = 0, .max = 1e7, .cmds = "train,fge,curve,simplex",
     .operational = "*",
     .help = "tests only: world rank where debug.nan_step injects the NaN"},
    {.name = "debug.fail_rank", .type = T_INT, .def = "-1", .min = -1, .max = 1e7, .cmds = "train",
     .operational = "*",
     .help = "tests only: this world rank fails alone after loading its data (-1 = none)"},

    {.name = "export.sample", .type = T_INT, .def = "-1", .min = -1, .max = 1e9, .cmds = "export",
     .help = "export of a swag.nc: -1 = its SWA mean; s >= 0 = SWAG sample s as `valley bma` draws it (run.seed, "
             "bma.scale), its BN statistics refreshed on the training data"},
    {.name = "curve.t", .type = T_DOUBLE, .def = "0.5", .min = 0, .max = 1, .cmds = "export,hessian",
     .help = "export or hessian of a curve.nc: the point w(t) (its BN statistics refreshed on the training data)"},
    {.name = "eval.logits", .type = T_BOOL, .def = "false", .cmds = "evaluate",
     .help = "eval.nc also holds logits(member, sample, class): each model's outputs on the test samples"},
    {.name = "eval.bn_refresh", .type = T_BOOL, .def = "false", .cmds = "evaluate",
     .help = "refresh the BN statistics of each model (one pass over the training data) before evaluating"},
    {.name = "eval.bn_subset", .type = T_DOUBLE, .def = "1.0", .min = 0, .max = 1, .open_min = 1, .cmds = CMDS_BN,
     .help = "fraction of training data used by BN refresh"},
};
enum { NROWS = (int)(sizeof rows / sizeof rows[0]) };

enum { FILE_MAX = 1 << 20, /* largest accepted deck file, bytes */
       SEC_MAX = 32,       /* most sections */
       NAME_MAX_ = 64 };   /* longest "section" or "key" part we compare */

/* One value: canonical text plus the parsed form of its type. */
typedef struct {
    char *text; /* canonical text, owned (vl_alloc) */
    long long i;
    double d;
    int b;
    int n;                   /* INTLIST count */
    int list[DECK_LIST_MAX]; /* INTLIST entries */
    int set;                 /* given in file, --set or deck_set */
    int line;                /* file line it was given on (0 = not in the file) */
    char *source;            /* deck_adopt: the input file the value was taken from (owned) */
    char *where;             /* where it was given: "deck.ini:12", "--set k=v", an input file (owned) */
} deck_val_t;

struct vl_deck {
    deck_val_t v[NROWS];
    char command[32]; /* deck_set_command: the keys deck_text shows ("" = all) */
    char *text;       /* deck_text, owned */
    char *ident;      /* deck_identity, owned */
};

/* ---------------------------------------------------------------- helpers */

static const deck_row_t *row_find(const char *name, int *idx)
{
    for (int k = 0; k < NROWS; k++)
        if (strcmp(rows[k].name, name) == 0) {
            if (idx) *idx = k;
            return &rows[k];
        }
    return NULL;
}

/* Length of the section part of a row name ("train" of "train.lr"). */
static size_t sec_len(const char *name)
{
    const char *dot = strchr(name, '.');
    return dot ? (size_t)(dot - name) : strlen(name);
}

static int sec_is(const deck_row_t *r, const char *sec)
{
    size_t n = sec_len(r->name);
    return strlen(sec) == n && strncmp(r->name, sec, n) == 0;
}

/* The sections in order of first appearance: names[i] points into rows[], lens[i]. */
static int sections(const char *names[SEC_MAX], size_t lens[SEC_MAX])
{
    int ns = 0;
    for (int k = 0; k < NROWS; k++) {
        size_t n = sec_len(rows[k].name);
        int seen = 0;
        for (int s = 0; s < ns; s++)
            if (lens[s] == n && strncmp(names[s], rows[k].name, n) == 0) seen = 1;
        if (!seen && ns < SEC_MAX) {
            names[ns] = rows[k].name;
            lens[ns++] = n;
        }
    }
    return ns;
}

static int section_known(const char *sec)
{
    for (int k = 0; k < NROWS; k++)
        if (sec_is(&rows[k], sec)) return 1;
    return 0;
}

/* "run, data, model, ..." */
static void section_list(char *buf, size_t n)
{
    const char *names[SEC_MAX];
    size_t lens[SEC_MAX];
    int ns = sections(names, lens);
    buf[0] = '\0';
    size_t used = 0;
    for (int s = 0; s < ns && used < n; s++)
        used += (size_t)snprintf(buf + used, n - used, "%s%.*s", s ? ", " : "", (int)lens[s], names[s]);
}

/* A value shown inside a message: at most 60 bytes, then "...". */
static void clip(const char *s, char *buf, size_t n)
{
    size_t len = strlen(s);
    if (len <= 60) snprintf(buf, n, "%s", s);
    else snprintf(buf, n, "%.57s...", s);
}

static int is_blank(int c) { return c == ' ' || c == '\t'; }

/* Trims blanks at both ends in place; returns the new start. */
static char *trim(char *s)
{
    while (is_blank((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && is_blank((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

/* Levenshtein distance of two short strings (each at most NAME_MAX_ bytes). */
static int edit_distance(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (na > NAME_MAX_ || nb > NAME_MAX_) return 1 << 20;
    int prev[NAME_MAX_ + 1], cur[NAME_MAX_ + 1];
    for (size_t j = 0; j <= nb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (nb + 1) * sizeof *prev);
    }
    return prev[nb];
}

/* 1 if `abbr` looks like an abbreviation of `word`: same first letter and its
 * letters appear in order in word ("lr" of "learning_rate", "wd" of "weight_decay"). */
static int abbreviates(const char *abbr, const char *word)
{
    if (strlen(abbr) < 2 || abbr[0] != word[0]) return 0;
    const char *w = word;
    for (const char *a = abbr; *a; a++) {
        w = strchr(w, *a);
        if (!w) return 0;
        w++;
    }
    return 1;
}

/* Nearest known key for an unknown `key` in section `sec`: the same key in
 * another section, else the closest key of this section by edit distance (within
 * a third of the length, at least 2), else a key that abbreviates it or that it
 * is a prefix of. Returns the row or NULL. */
static const deck_row_t *suggest_key(const char *sec, const char *key)
{
    for (int k = 0; k < NROWS; k++)
        if (strcmp(strchr(rows[k].name, '.') + 1, key) == 0) return &rows[k];
    const deck_row_t *best = NULL;
    int best_d = 1 << 20, limit = (int)strlen(key) / 3;
    if (limit < 2) limit = 2;
    for (int k = 0; k < NROWS; k++) {
        if (!sec_is(&rows[k], sec)) continue;
        int dist = edit_distance(key, strchr(rows[k].name, '.') + 1);
        if (dist <= limit && dist < best_d) { best = &rows[k]; best_d = dist; }
    }
    if (best) return best;
    for (int k = 0; k < NROWS; k++) {
        if (!sec_is(&rows[k], sec)) continue;
        const char *kk = strchr(rows[k].name, '.') + 1;
        if (abbreviates(kk, key) || (strlen(key) >= 3 && strncmp(kk, key, strlen(key)) == 0)) return &rows[k];
    }
    return NULL;
}

/* ----------------------------------------------------------- value parsing */

/* Strict decimal integer: optional sign, digits, nothing else. 0 ok, 1 not an
 * integer, 2 overflow. */
static int parse_ll(const char *s, long long *out)
{
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    if (!isdigit((unsigned char)*p)) return 1;
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q)) return 1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE) return 2;
    if (*end) return 1;
    *out = v;
    return 0;
}

/* Finite decimal number (digits, sign, '.', exponent): 0 ok, 1 not a number,
 * 2 not finite (overflow). "nan", "inf" and hex floats are not numbers here. */
static int parse_double(const char *s, double *out)
{
    int digits = 0;
    for (const char *q = s; *q; q++) {
        if (isdigit((unsigned char)*q)) digits = 1;
        else if (!strchr("+-.eE", *q)) return 1;
    }
    if (!digits) return 1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end) return 1;
    if (!isfinite(v)) return 2;
    if (errno == ERANGE && fabs(v) > 1.0) return 2; /* overflow; underflow to ~0 is fine */
    *out = v;
    return 0;
}

static int parse_bool(const char *s, int *out)
{
    static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
    for (int k = 0; k < 4; k++) {
        if (strcasecmp(s, yes[k]) == 0) { *out = 1; return 0; }
        if (strcasecmp(s, no[k]) == 0) { *out = 0; return 0; }
    }
    return 1;
}

/* Shortest "%.Ng" text that reads back as exactly v. */
static void format_double(double v, char *buf, size_t n)
{
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* "[0, 1e+06]" / "(0, 1]" / "[0, 1000000]" */
static void format_range(const deck_row_t *r, char *buf, size_t n)
{
    if (r->type == T_DOUBLE)
        snprintf(buf, n, "%c%g, %g]", r->open_min ? '(' : '[', r->min, r->max);
    else
        snprintf(buf, n, "%c%lld, %lld]", r->open_min ? '(' : '[', (long long)r->min, (long long)r->max);
}

/* Range check of an integer (INT, INTLIST entry); 0 fine, else writes why. */
static int int_in_range(const deck_row_t *r, long long v, const char *shown, char *why, size_t nwhy)
{
    long long lo = (long long)r->min, hi = (long long)r->max;
    if (v < lo || v > hi || (r->open_min && v == lo)) {
        char range[96];
        format_range(r, range, sizeof range);
        snprintf(why, nwhy, "%s is out of range %s", shown, range);
        return 1;
    }
    return 0;
}

static const char *type_word(deck_type_t t)
{
    switch (t) {
    case T_INT: return "an integer";
    case T_DOUBLE: return "a number";
    case T_BOOL: return "a boolean (true/false, yes/no, on/off, 1/0)";
    case T_STRING: return "a string";
    case T_CHOICE: return "one of the choices";
    case T_INTLIST: return "a comma-separated list of integers";
    }
    return "a value";
}

static int cmp_int(const void *a, const void *b)
{
    const int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* data.classes: "all", or distinct class ids >= 0 separated by commas; canonical text: "all" or
 * the ids in ascending order ("4, 0,2" -> "0,2,4"). Whether each id is a class of the dataset is
 * checked when the dataset is opened (job_open). */
enum { CLASSES_MAX = DECK_LINE_MAX / 2 + 1, CLASS_ID_MAX = 999999 };
static int check_classes(const char *s, char *canon, size_t ncanon, char *why, size_t nwhy)
{
    char shown[72];
    clip(s, shown, sizeof shown);
    if (!strcasecmp(s, "all")) {
        snprintf(canon, ncanon, "all");
        return 0;
    }
    if (!*s) {
        snprintf(why, nwhy, "empty value (give class ids such as 0,1,2,3,4, or all)");
        return 1;
    }
    int ids[CLASSES_MAX];
    int n = 0;
    char item[DECK_LINE_MAX + 1];
    for (const char *p = s;;) {
        size_t len = strcspn(p, ",");
        memcpy(item, p, len);
        item[len] = '\0';
        char *it = trim(item), ishown[72];
        clip(it, ishown, sizeof ishown);
        long long x = 0;
        if (!*it) {
            snprintf(why, nwhy, "'%s': entry %d is empty (class ids separated by commas, or all)", shown, n + 1);
            return 1;
        }
        int st = parse_ll(it, &x);
        if (st == 1) {
            snprintf(why, nwhy, "'%s': entry %d '%s' is not a class id (an integer from 0)", shown, n + 1, ishown);
            return 1;
        }
        if (st == 2 || x < 0 || x > CLASS_ID_MAX) {
            snprintf(why, nwhy, "'%s': entry %d '%s' is not a class id (0 to %d)", shown, n + 1, ishown, CLASS_ID_MAX);
            return 1;
        }
        for (int k = 0; k < n; k++)
            if (ids[k] == (int)x) {
                snprintf(why, nwhy, "'%s': class %lld is given twice", shown, x);
                return 1;
            }
        ids[n++] = (int)x; /* at most one entry per two bytes of a DECK_LINE_MAX value: fits */
        if (!p[len]) break;
        p += len + 1;
    }
    qsort(ids, (size_t)n, sizeof *ids, cmp_int);
    size_t used = 0;
    canon[0] = '\0';
    for (int k = 0; k < n && used < ncanon; k++)
        used += (size_t)snprintf(canon + used, ncanon - used, "%s%d", k ? "," : "", ids[k]);
    return 0;
}

/* Parses the (trimmed) text s as a value of row r into *v (v->text left NULL)
 * and its canonical text into canon[DECK_LINE_MAX + 1]. Returns 0 when valid,
 * else 1 with the reason (without where/key) in why. */
static int value_parse(const deck_row_t *r, const char *s, deck_val_t *v, char *canon, char *why, size_t nwhy)
{
    char shown[72];
    clip(s, shown, sizeof shown);
    memset(v, 0, sizeof *v);
    if (strlen(s) > DECK_LINE_MAX) {
        snprintf(why, nwhy, "value longer than %d bytes", DECK_LINE_MAX);
        return 1;
    }
    for (const unsigned char *q = (const unsigned char *)s; *q; q++)
        if ((*q < 0x20 && *q != '\t') || *q == 0x7f) {
            snprintf(why, nwhy, "control character 0x%02x in value", *q);
            return 1;
        }
    if (!*s && r->type != T_STRING && !r->is_name) {
        if (r->type == T_CHOICE) snprintf(why, nwhy, "empty value (expected one of %s)", r->choices);
        else snprintf(why, nwhy, "empty value (expected %s)", type_word(r->type));
        return 1;
    }
    switch (r->type) {
    case T_INT: {
        int st = parse_ll(s, &v->i);
        if (st == 1) { snprintf(why, nwhy, "'%s' is not an integer", shown); return 1; }
        if (st == 2) { snprintf(why, nwhy, "'%s' is out of the integer range (overflow)", shown); return 1; }
        if (int_in_range(r, v->i, shown, why, nwhy)) return 1;
        if (r->check && r->check(v->i, why, nwhy)) return 1;
        snprintf(canon, DECK_LINE_MAX + 1, "%lld", v->i);
        return 0;
    }
    case T_DOUBLE: {
        int st = parse_double(s, &v->d);
        if (st == 1) { snprintf(why, nwhy, "'%s' is not a number", shown); return 1; }
        if (st == 2) { snprintf(why, nwhy, "'%s' is not a finite number", shown); return 1; }
        if (v->d < r->min || v->d > r->max || (r->open_min && v->d == r->min)) {
            char range[96];
            format_range(r, range, sizeof range);
            snprintf(why, nwhy, "%s is out of range %s", shown, range);
            return 1;
        }
        format_double(v->d, canon, DECK_LINE_MAX + 1);
        return 0;
    }
    case T_BOOL:
        if (parse_bool(s, &v->b)) {
            snprintf(why, nwhy, "'%s' is not %s", shown, type_word(T_BOOL));
            return 1;
        }
        snprintf(canon, DECK_LINE_MAX + 1, "%s", v->b ? "true" : "false");
        return 0;
    case T_STRING:
        if (r->is_name) {
            if (!*s || strlen(s) > 31) {
                snprintf(why, nwhy, "'%s': a name of 1 to 31 letters, digits, '.', '_' or '-' (fashion-mnist, cifar10, "
                                    "cifar100, toy1d, diabetes, or your file's)", shown);
                return 1;
            }
            for (const char *q = s; *q; q++)
                if (!isalnum((unsigned char)*q) && *q != '.' && *q != '_' && *q != '-') {
                    snprintf(why, nwhy, "'%s': a name has letters, digits, '.', '_' or '-' only", shown);
                    return 1;
                }
            size_t k = 0;
            for (; s[k]; k++) canon[k] = (char)tolower((unsigned char)s[k]);
            canon[k] = '\0';
            return 0;
        }
        if (r->check_text) return r->check_text(s, canon, DECK_LINE_MAX + 1, why, nwhy);
        snprintf(canon, DECK_LINE_MAX + 1, "%s", s);
        return 0;
    case T_CHOICE: {
        size_t n = strlen(s);
        for (const char *c = r->choices; *c;) {
            size_t len = strcspn(c, "|");
            if (len == n && strncasecmp(c, s, n) == 0) {
                snprintf(canon, DECK_LINE_MAX + 1, "%.*s", (int)len, c);
                return 0;
            }
            c += len + (c[len] == '|');
        }
        snprintf(why, nwhy, "'%s' is not one of %s", shown, r->choices);
        return 1;
    }
    case T_INTLIST: {
        char item[DECK_LINE_MAX + 1];
        size_t used = 0;
        canon[0] = '\0';
        for (const char *p = s;;) {
            size_t len = strcspn(p, ",");
            if (v->n == DECK_LIST_MAX) {
                snprintf(why, nwhy, "'%s' has more than %d entries", shown, DECK_LIST_MAX);
                return 1;
            }
            memcpy(item, p, len);
            item[len] = '\0';
            char *it = trim(item), ishown[72];
            clip(it, ishown, sizeof ishown);
            long long x = 0;
            int st = *it ? parse_ll(it, &x) : 1;
            if (st == 1) {
                snprintf(why, nwhy, "'%s': entry %d '%s' is not an integer", shown, v->n + 1, ishown);
                return 1;
            }
            char w2[128];
            if (st == 2 || int_in_range(r, x, ishown, w2, sizeof w2)) {
                if (st == 2) snprintf(w2, sizeof w2, "'%s' is out of the integer range (overflow)", ishown);
                snprintf(why, nwhy, "'%s': entry %d: %s", shown, v->n + 1, w2);
                return 1;
            }
            v->list[v->n++] = (int)x;
            used += (size_t)snprintf(canon + used, DECK_LINE_MAX + 1 - used, "%s%d", used ? "," : "", (int)x);
            if (!p[len]) break;
            p += len + 1;
        }
        return 0;
    }
    }
    return 1;
}

/* Parses s for row index k and stores it into d (replacing the old value) with
 * set flag and file line. where is the message prefix. */
static int value_assign(vl_deck_t *d, int k, const char *s, const char *where, int line)
{
    deck_val_t v;
    char why[768];
    char canon[DECK_LINE_MAX + 1];
    if (value_parse(&rows[k], s, &v, canon, why, sizeof why)) {
        return VL_FAIL_ALL(VL_EINPUT, "%s: %s: %s", where, rows[k].name, why);
    }
    size_t n = strlen(canon);
    v.text = vl_alloc(n + 1, "deck value");
    if (!v.text) return VL_EIO;
    memcpy(v.text, canon, n + 1);
    v.set = 1;
    v.line = line;
    v.where = strdup(where);
    if (!v.where) { free(v.text); return VL_FAIL(VL_EIO, "out of memory in the deck"); }
    free(d->v[k].text);
    free(d->v[k].source);
    free(d->v[k].where);
    d->v[k] = v;
    return VL_OK;
}

/* ------------------------------------------------------------- deck text */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf_t;

static void sb_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf_t *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (m < 0) { b->oom = 1; return; }
        if (b->p && b->n + (size_t)m < b->cap) { b->n += (size_t)m; return; }
        size_t cap = (b->cap ? b->cap * 2 : 4096);
        while (cap < b->n + (size_t)m + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) { b->oom = 1; return; }
        b->p = q;
        b->cap = cap;
    }
}

/* Value text as it must be written in a deck file: quoted when it would
 * otherwise be read differently (empty, outer blanks, '#', ';', leading '"'). */
static void sb_value(sbuf_t *b, const char *s)
{
    size_t n = strlen(s);
    int quote = n == 0 || is_blank((unsigned char)s[0]) || is_blank((unsigned char)s[n - 1]) || s[0] == '"' ||
                strpbrk(s, "#;");
    if (!quote) { sb_printf(b, "%s", s); return; }
    sb_printf(b, "\"");
    for (const char *q = s; *q; q++) sb_printf(b, "%s%c", (*q == '"' || *q == '\\') ? "\\" : "", *q);
    sb_printf(b, "\"");
}

/* 1 if the comma list cmds contains command (or is "*"); every list contains NULL or "". */
static int concerns(const char *cmds, const char *command)
{
    if (!command || !*command || strcmp(cmds, "*") == 0) return 1;
    size_t n = strlen(command);
    for (const char *c = cmds; *c;) {
        size_t len = strcspn(c, ",");
        if (len == n && strncmp(c, command, n) == 0) return 1;
        c += len + (c[len] == ',');
    }
    return 0;
}

/* Key k belongs to the run identity of the deck's command: it concerns the command and
 * changes what it computes. */
static int in_identity(const vl_deck_t *d, int k)
{
    return concerns(rows[k].cmds, d->command) &&
           !(rows[k].operational && *d->command && concerns(rows[k].operational, d->command)) &&
           !(rows[k].operational && !*d->command && strcmp(rows[k].operational, "*") == 0);
}

/* The deck as INI text into *out (owned by the caller): the keys concerning the deck's
 * command, with "# default: X" / "# from FILE" comments (identity = 0), or only the keys
 * of the run's identity, without comments (identity = 1). */
static int text_build_into(const vl_deck_t *d, int identity, char **out)
{
    sbuf_t b = {0};
    const char *names[SEC_MAX];
    size_t lens[SEC_MAX];
    int ns = sections(names, lens);
    char def[DECK_LINE_MAX + 1];
    if (identity)
        sb_printf(&b, "# what `valley %s` computes: the keys that change its results\n",
                  *d->command ? d->command : "(any command)");
    else if (*d->command)
        sb_printf(&b, "# effective deck of `valley %s`: the keys it reads; '# default: X' marks values that differ "
                      "from the default, '# from FILE' values taken from an input file\n", d->command);
    else
        sb_printf(&b, "# effective deck (valley); '# default: X' marks values that differ from the default\n");
    int header_done = 0;
    for (int s = 0; s < ns; s++) {
        int header = 0;
        for (int k = 0; k < NROWS; k++) {
            if (sec_len(rows[k].name) != lens[s] || strncmp(rows[k].name, names[s], lens[s])) continue;
            if (identity ? !in_identity(d, k) : !concerns(rows[k].cmds, d->command)) continue;
            if (!header) {
                sb_printf(&b, "%s[%.*s]\n", header_done ? "\n" : "", (int)lens[s], names[s]);
                header = header_done = 1;
            }
            deck_val_t dv;
            char why[256];
            value_parse(&rows[k], rows[k].def, &dv, def, why, sizeof why); /* checked in deck_load */
            sb_printf(&b, "%s = ", rows[k].name + lens[s] + 1);
            sb_value(&b, d->v[k].text);
            if (!identity && d->v[k].source) {
                sb_printf(&b, "  # from %s", d->v[k].source);
            } else if (!identity && strcmp(def, d->v[k].text) != 0) {
                sb_printf(&b, "  # default: ");
                sb_value(&b, def);
            }
            sb_printf(&b, "\n");
        }
    }
    if (b.oom) {
        free(b.p);
        return VL_FAIL(VL_EIO, "out of memory writing the deck text");
    }
    char *t = vl_alloc(b.n + 1, "deck text");
    if (!t) { free(b.p); return VL_EIO; }
    memcpy(t, b.p, b.n + 1);
    free(b.p);
    *out = t;
    return VL_OK;
}

static int text_build(vl_deck_t *d)
{
    char *t = NULL, *id = NULL;
    CHECK(text_build_into(d, 0, &t));
    int st = text_build_into(d, 1, &id);
    if (st) { free(t); return st; }
    free(d->text);
    free(d->ident);
    d->text = t;
    d->ident = id;
    return VL_OK;
}

/* ------------------------------------------------------------- file parse */

/* Reads the whole file into a NUL-terminated buffer (*len bytes before the NUL). */
static int file_read(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return VL_FAIL_ALL(VL_EINPUT, "cannot read deck '%s': %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) { fclose(f); return VL_FAIL(VL_EIO, "out of memory reading deck '%s'", path); }
    for (;;) {
        if (n == cap) {
            if (cap >= FILE_MAX) {
                free(buf);
                fclose(f);
                return VL_FAIL_ALL(VL_EINPUT, "cannot read deck '%s': larger than %d bytes", path, FILE_MAX);
            }
            cap *= 2;
            char *q = realloc(buf, cap + 1);
            if (!q) { free(buf); fclose(f); return VL_FAIL(VL_EIO, "out of memory reading deck '%s'", path); }
            buf = q;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            int bad = ferror(f), e = errno;
            fclose(f);
            if (bad) {
                free(buf);
                return VL_FAIL_ALL(VL_EINPUT, "cannot read deck '%s': %s", path, strerror(e));
            }
            break;
        }
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return VL_OK;
}

static int valid_name(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-') return 0;
    return 1;
}

/* Unknown key `key` in known section `sec`: the message with a suggestion or
 * the list of the section's keys. */
static int fail_unknown_key(const char *where, const char *sec, const char *key)
{
    char shown[72];
    clip(key, shown, sizeof shown);
    const deck_row_t *s = suggest_key(sec, key);
    if (s) return VL_FAIL_ALL(VL_EINPUT, "%s: %s.%s: unknown key in [%s] (did you mean %s?)", where, sec, shown, sec,
                              s->name);
    char known[512];
    size_t used = 0;
    known[0] = '\0';
    for (int k = 0; k < NROWS && used < sizeof known; k++)
        if (sec_is(&rows[k], sec))
            used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", used ? ", " : "",
                                     strchr(rows[k].name, '.') + 1);
    return VL_FAIL_ALL(VL_EINPUT, "%s: %s.%s: unknown key in [%s] (known: %s)", where, sec, shown, sec, known);
}

static int fail_unknown_section(const char *where, const char *sec)
{
    char known[512], shown[72];
    section_list(known, sizeof known);
    clip(sec, shown, sizeof shown);
    return VL_FAIL_ALL(VL_EINPUT, "%s: [%s]: unknown section (known: %s)", where, shown, known);
}

/* Parses one line (already without its '\n', NUL-terminated, modifiable). */
static int line_parse(vl_deck_t *d, const char *path, int lineno, char *line, char *sec)
{
    char where[DECK_LINE_MAX + 64];
    snprintf(where, sizeof where, "%s:%d", path, lineno);
    char *s = trim(line);
    if (!*s || *s == '#' || *s == ';') return VL_OK;

    if (*s == '[') {
        char *close = strchr(s, ']');
        if (!close) return VL_FAIL_ALL(VL_EINPUT, "%s: syntax error: expected ']' after section name", where);
        char *rest = trim(close + 1);
        if (*rest && *rest != '#' && *rest != ';')
            return VL_FAIL_ALL(VL_EINPUT, "%s: syntax error: text after ']'", where);
        *close = '\0';
        char *name = trim(s + 1);
        if (!*name) return VL_FAIL_ALL(VL_EINPUT, "%s: syntax error: empty section name", where);
        if (!section_known(name)) return fail_unknown_section(where, name);
        snprintf(sec, NAME_MAX_ + 1, "%s", name);
        return VL_OK;
    }

    char *eq = strchr(s, '=');
    if (!eq) return VL_FAIL_ALL(VL_EINPUT, "%s: syntax error: expected 'key = value'", where);
    *eq = '\0';
    char *key = trim(s), *val = eq + 1, kshown[72];
    clip(key, kshown, sizeof kshown);
    if (!*key) return VL_FAIL_ALL(VL_EINPUT, "%s: syntax error: expected 'key = value' (no key before '=')", where);
    if (strchr(key, '.') && valid_name(strchr(key, '.') + 1))
        return VL_FAIL_ALL(VL_EINPUT, "%s: %s: write the key without its section, below a [section] line "
                           "(e.g. '%s = ...')", where, kshown, strrchr(kshown, '.') + 1);
    if (!valid_name(key))
        return VL_FAIL_ALL(VL_EINPUT, "%s: syntax error: '%s' is not a key name (letters, digits, '_')", where,
                           kshown);
    if (!*sec)
        return VL_FAIL_ALL(VL_EINPUT, "%s: %s: key outside a section (put it below a [section] line)", where,
                           kshown);

    /* The value: quoted, or up to a comment that follows a blank. */
    while (is_blank((unsigned char)*val)) val++;
    if (*val == '"') {
        char *r = val + 1, *w = val;
        for (;; r++) {
            if (!*r)
                return VL_FAIL_ALL(VL_EINPUT, "%s: %s.%s: syntax error: unterminated quoted value", where, sec,
                                   kshown);
            if (*r == '"') break;
            if (*r == '\\') {
                if (r[1] != '"' && r[1] != '\\')
                    return VL_FAIL_ALL(VL_EINPUT, "%s: %s.%s: syntax error: unknown escape in quoted value", where,
                                       sec, kshown);
                r++;
            }
            *w++ = *r;
        }
        *w = '\0';
        char *rest = r + 1;
        while (is_blank((unsigned char)*rest)) rest++;
        if (*rest && *rest != '#' && *rest != ';')
            return VL_FAIL_ALL(VL_EINPUT, "%s: %s.%s: syntax error: text after the closing quote", where, sec,
                               kshown);
    } else {
        for (char *q = val; *q; q++)
            if ((*q == '#' || *q == ';') && (q == val || is_blank((unsigned char)q[-1]))) {
                *q = '\0';
                break;
            }
        val = trim(val);
    }

    char full[2 * NAME_MAX_ + 2];
    int k;
    if (strlen(key) > NAME_MAX_ || (snprintf(full, sizeof full, "%s.%s", sec, key), !row_find(full, &k)))
        return fail_unknown_key(where, sec, key);
    if (d->v[k].line)
        return VL_FAIL_ALL(VL_EINPUT, "%s: %s: given twice (first at line %d)", where, rows[k].name, d->v[k].line);
    return value_assign(d, k, val, where, lineno);
}

/* A line of a deck file may be longer than a value: deck_text writes a value of up to
 * DECK_LINE_MAX bytes quoted, with every quote and backslash escaped, after its key and before
 * "  # default: X", and that effective deck must load again (fuzz_deck found a 4,070-byte
 * train.resume whose effective deck did not: "line longer than 4096 bytes"). */
enum { FILE_LINE_MAX = 2 * DECK_LINE_MAX + 256 };

static int file_parse(vl_deck_t *d, const char *path)
{
    char *buf = NULL;
    size_t len = 0;
    CHECK(file_read(path, &buf, &len));
    char sec[NAME_MAX_ + 1] = "";
    int lineno = 1, st = VL_OK;
    size_t start = 0;
    /* Scan for bad bytes first so a binary file is named as such. */
    for (size_t i = 0; i < len && !st; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '\n') { lineno++; start = i + 1; continue; }
        if (i - start >= FILE_LINE_MAX)
            st = VL_FAIL_ALL(VL_EINPUT, "%s:%d: line longer than %d bytes", path, lineno,
                             FILE_LINE_MAX);
        else if (c == 0)
            st = VL_FAIL_ALL(VL_EINPUT, "%s:%d: NUL byte (not a text file?)", path, lineno);
        else if (c == '\r' && (i + 1 == len || buf[i + 1] == '\n'))
            ;
        else if ((c < 0x20 && c != '\t') || c == 0x7f)
            st = VL_FAIL_ALL(VL_EINPUT, "%s:%d: control character 0x%02x (not a text file?)", path, lineno, c);
    }
    lineno = 1;
    char *first = buf;
    if (len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3)) first += 3; /* a UTF-8 byte-order mark (Windows editors) */
    for (char *p = first; !st && p < buf + len; lineno++) {
        char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        char *end = nl ? nl : buf + len;
        *end = '\0';
        if (end > p && end[-1] == '\r') end[-1] = '\0';
        st = line_parse(d, path, lineno, p, sec);
        p = end + 1;
    }
    free(buf);
    CHECK(st);
    return VL_OK;
}

/* "section.key=value" -> validated assignment. `who` is "--set" or "set". */
static int set_parse(vl_deck_t *d, const char *who, const char *arg)
{
    char shown[72], where[128];
    clip(arg, shown, sizeof shown);
    snprintf(where, sizeof where, "%s %s", who, shown);
    size_t n = strlen(arg);
    if (n > DECK_LINE_MAX + 2 * NAME_MAX_)
        return VL_FAIL_ALL(VL_EINPUT, "%s: longer than %d bytes", where, DECK_LINE_MAX);
    char *buf = malloc(n + 1);
    if (!buf) return VL_FAIL(VL_EIO, "out of memory parsing %s", who);
    memcpy(buf, arg, n + 1);
    int st = VL_OK;
    char *eq = strchr(buf, '='), *dot = strchr(buf, '.');
    if (!eq || !dot || dot > eq) {
        st = VL_FAIL_ALL(VL_EINPUT, "%s: expected section.key=value", where);
    } else {
        *eq = '\0';
        *dot = '\0';
        char *sec = trim(buf), *key = trim(dot + 1), *val = trim(eq + 1);
        char full[2 * NAME_MAX_ + 2];
        int k;
        if (!valid_name(sec) || !valid_name(key))
            st = VL_FAIL_ALL(VL_EINPUT, "%s: expected section.key=value", where);
        else if (!section_known(sec))
            st = fail_unknown_section(where, sec);
        else if (strlen(key) > NAME_MAX_ || (snprintf(full, sizeof full, "%s.%s", sec, key), !row_find(full, &k)))
            st = fail_unknown_key(where, sec, key);
        else
            st = value_assign(d, k, val, where, d->v[k].line);
    }
    free(buf);
    return st;
}

/* ------------------------------------------------------------------ API */

void deck_free(vl_deck_t *d)
{
    if (!d) return;
    for (int k = 0; k < NROWS; k++) {
        free(d->v[k].text);
        free(d->v[k].source);
        free(d->v[k].where);
    }
    free(d->text);
    free(d->ident);
    free(d);
}

int deck_load(const char *path, int nset, char *const *sets, vl_deck_t **out)
{
    *out = NULL;
    vl_deck_t *d = vl_calloc(1, sizeof *d, "deck");
    if (!d) return VL_EIO;
    int st = VL_OK;
    for (int k = 0; k < NROWS && !st; k++) {
        char where[128];
        snprintf(where, sizeof where, "internal: default of %s in src/deck.c", rows[k].name);
        st = value_assign(d, k, rows[k].def, where, 0);
        d->v[k].set = 0;
    }
    if (!st && path) st = file_parse(d, path);
    for (int i = 0; i < nset && !st; i++) {
        if (!sets || !sets[i]) st = VL_FAIL_ALL(VL_EINPUT, "--set: missing argument");
        else st = set_parse(d, "--set", sets[i]);
    }
    if (!st) st = text_build(d);
    if (st) {
        deck_free(d);
        vl_trace(__FILE__, __LINE__);
        return st;
    }
    *out = d;
    return VL_OK;
}

/* Row index of key with one of the allowed types, else abort (programming error). */
static int row_get(const char *key, int types, const char *fn)
{
    int k;
    if (!key || !row_find(key, &k)) {
        fprintf(stderr, "valley: internal error: %s(\"%s\"): key not in the deck table (src/deck.c)\n", fn,
                key ? key : "(null)");
        abort();
    }
    if (!(types & (1 << rows[k].type))) {
        fprintf(stderr, "valley: internal error: %s(\"%s\"): the key is %s\n", fn, key, type_word(rows[k].type));
        abort();
    }
    return k;
}

long long deck_int(const vl_deck_t *d, const char *key) { return d->v[row_get(key, 1 << T_INT, "deck_int")].i; }

double deck_double(const vl_deck_t *d, const char *key)
{
    return d->v[row_get(key, 1 << T_DOUBLE, "deck_double")].d;
}

int deck_bool(const vl_deck_t *d, const char *key) { return d->v[row_get(key, 1 << T_BOOL, "deck_bool")].b; }

const char *deck_str(const vl_deck_t *d, const char *key) { return d->v[row_get(key, ~0, "deck_str")].text; }

int deck_intlist(const vl_deck_t *d, const char *key, int *out, int max)
{
    const deck_val_t *v = &d->v[row_get(key, 1 << T_INTLIST, "deck_intlist")];
    for (int i = 0; i < v->n && i < max; i++) out[i] = v->list[i];
    return v->n;
}

int deck_classlist(const vl_deck_t *d, const char *key, int *out, int max)
{
    const char *s = deck_str(d, key); /* canonical: "all" or ascending ids (check_classes) */
    if (!strcmp(s, "all")) return 0;
    int n = 0;
    for (const char *p = s; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (n < max) out[n] = (int)v;
        n++;
        p = *end == ',' ? end + 1 : end;
    }
    return n;
}

int deck_is_set(const vl_deck_t *d, const char *key) { return d->v[row_get(key, ~0, "deck_is_set")].set; }

int deck_set(vl_deck_t *d, const char *key, const char *value)
{
    if (!key || !value) return VL_FAIL_ALL(VL_EINPUT, "set: missing key or value");
    size_t n = strlen(key) + strlen(value) + 2;
    char *arg = malloc(n);
    if (!arg) return VL_FAIL(VL_EIO, "out of memory in deck_set");
    snprintf(arg, n, "%s=%s", key, value);
    /* The key must not smuggle a '=' into the value. */
    int st = strchr(key, '=') ? VL_FAIL_ALL(VL_EINPUT, "set %s: '=' in key", key) : set_parse(d, "set", arg);
    free(arg);
    CHECK(st);
    CHECK(text_build(d));
    return VL_OK;
}

const char *deck_text(const vl_deck_t *d) { return d->text; }

const char *deck_identity(const vl_deck_t *d) { return d->ident; }

const char *deck_command(const vl_deck_t *d) { return d->command; }

int deck_set_command(vl_deck_t *d, const char *command)
{
    snprintf(d->command, sizeof d->command, "%s", command ? command : "");
    return text_build(d);
}

const char *deck_where(const vl_deck_t *d, const char *key)
{
    int k;
    return key && row_find(key, &k) && d->v[k].set ? d->v[k].where : NULL;
}

int deck_adopt(vl_deck_t *d, const char *key, const char *value, const char *source, int *overridden)
{
    int k;
    if (overridden) *overridden = 0;
    if (!key || !row_find(key, &k)) return VL_FAIL(VL_EINPUT, "internal: deck_adopt of unknown key '%s'", key ? key : "");
    const int was_set = d->v[k].set;
    char *old = d->v[k].text ? strdup(d->v[k].text) : NULL;
    char where[256];
    snprintf(where, sizeof where, "%s", source ? source : "input file");
    int st = value_assign(d, k, value, where, d->v[k].line);
    if (!st) {
        if (overridden && was_set && old && strcmp(old, d->v[k].text)) *overridden = 1;
        d->v[k].source = strdup(source ? source : "input file");
        if (!d->v[k].source) st = VL_FAIL(VL_EIO, "out of memory in deck_adopt");
    }
    free(old);
    CHECK(st);
    CHECK(text_build(d));
    return VL_OK;
}

/* The value of `key = value` on one line of deck text (a value as sb_value writes it,
 * optionally followed by a comment); 0 when the line holds no such assignment. */
static int text_value(char *line, char *sec, char **key, char **val)
{
    char *s = trim(line);
    if (!*s || *s == '#' || *s == ';') return 0;
    if (*s == '[') {
        char *close = strchr(s, ']');
        if (close) {
            *close = '\0';
            snprintf(sec, NAME_MAX_ + 1, "%s", trim(s + 1));
        }
        return 0;
    }
    char *eq = strchr(s, '=');
    if (!eq) return 0;
    *eq = '\0';
    *key = trim(s);
    char *v = eq + 1;
    while (is_blank((unsigned char)*v)) v++;
    if (*v == '"') {
        char *r = v + 1, *w = v;
        for (; *r && *r != '"'; r++) {
            if (*r == '\\' && r[1]) r++;
            *w++ = *r;
        }
        *w = '\0';
    } else {
        for (char *q = v; *q; q++)
            if ((*q == '#' || *q == ';') && (q == v || is_blank((unsigned char)q[-1]))) {
                *q = '\0';
                break;
            }
        v = trim(v);
    }
    *val = v;
    return 1;
}

int deck_changes(const vl_deck_t *d, const char *recorded, deck_change_t *out, int max)
{
    int n = 0;
    if (!recorded) return 0;
    char *buf = strdup(recorded);
    if (!buf) return 0;
    char sec[NAME_MAX_ + 1] = "";
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        char *key, *val, full[2 * NAME_MAX_ + 2];
        int k;
        if (!text_value(line, sec, &key, &val) || strlen(key) > NAME_MAX_) continue;
        snprintf(full, sizeof full, "%s.%s", sec, key);
        if (!row_find(full, &k) || !in_identity(d, k)) continue; /* keys of another version are not compared */
        /* the recorded text is canonical when valley wrote it; parse it to be sure */
        deck_val_t v;
        char canon[DECK_LINE_MAX + 1], why[256];
        const char *old = value_parse(&rows[k], val, &v, canon, why, sizeof why) ? val : canon;
        if (!strcmp(old, d->v[k].text)) continue;
        if (n < max) {
            out[n].key = rows[k].name;
            clip(old, out[n].old, sizeof out[n].old);
            clip(d->v[k].text, out[n].now, sizeof out[n].now);
        }
        n++;
    }
    free(buf);
    return n;
}

const char *deck_key(int i) { return i >= 0 && i < NROWS ? rows[i].name : NULL; }

static void describe_type(const deck_row_t *r, char *buf, size_t n)
{
    char range[96];
    format_range(r, range, sizeof range);
    switch (r->type) {
    case T_INT: snprintf(buf, n, "integer in %s", range); break;
    case T_DOUBLE: snprintf(buf, n, "number in %s", range); break;
    case T_BOOL: snprintf(buf, n, "boolean"); break;
    case T_STRING: snprintf(buf, n, "string"); break;
    case T_CHOICE: snprintf(buf, n, "one of %s", r->choices); break;
    case T_INTLIST: snprintf(buf, n, "integer list, each in %s", range); break;
    }
}

void deck_help(FILE *f, const char *command, const vl_deck_t *d)
{
    const char *names[SEC_MAX];
    size_t lens[SEC_MAX];
    int ns = sections(names, lens);
    if (command)
        fprintf(f, "Deck keys used by '%s' (in a deck: [section] then key = value; or --set section.key=value):\n",
                command);
    else
        fprintf(f, "Deck keys (in a deck: [section] then key = value; or --set section.key=value):\n");
    char def[DECK_LINE_MAX + 1];
    for (int s = 0; s < ns; s++) {
        int header = 0;
        for (int k = 0; k < NROWS; k++) {
            const deck_row_t *r = &rows[k];
            if (sec_len(r->name) != lens[s] || strncmp(r->name, names[s], lens[s]) || !concerns(r->cmds, command))
                continue;
            if (!header) {
                fprintf(f, "\n[%.*s]\n", (int)lens[s], names[s]);
                header = 1;
            }
            deck_val_t dv;
            char why[256], type[160];
            value_parse(r, r->def, &dv, def, why, sizeof why);
            describe_type(r, type, sizeof type);
            const char *cur = d ? d->v[k].text : def;
            int quote = !*cur;
            fprintf(f, "  %-24s = %s%s%s", r->name, quote ? "\"" : "", cur, quote ? "\"" : "");
            if (d && strcmp(cur, def) != 0) fprintf(f, "   (default %s%s%s)", *def ? "" : "\"", def, *def ? "" : "\"");
            fprintf(f, "\n      %s; %s\n", type, r->help);
        }
    }
}
