/* train.h — data-parallel training, evaluation passes and the BN refresh.
 *
 * Data layout: every rank of a group holds a contiguous shard of each split
 * (data_load). The sample order of an epoch is a global permutation drawn from
 * (seed, epoch), identical on every rank count; each global batch is computed by
 * the ranks that own its samples, and batch-norm statistics and gradients are
 * summed over the group, so P ranks compute the 1-rank step up to summation order.
 */
#ifndef VALLEY_TRAIN_H
#define VALLEY_TRAIN_H
#include <mpi.h>

#include "valley/comm.h"
#include "valley/data.h"
#include "valley/deck.h"
#include "valley/ckpt.h"
#include "valley/metrics.h"
#include "valley/model.h"
#include "valley/swag.h"

/* Everything a command needs to run a model on a dataset inside one group. */
typedef struct vl_job {
    vl_comm_t *comm;
    MPI_Comm gcomm;           /* the data-parallel group (comm->group) */
    vl_deck_t *deck;            /* the command's deck; job_open adopts the model and dataset of its inputs */
    vl_split_t train, test;   /* the training split without its validation rows; the test split */
    vl_split_t valid;         /* data.validation: the last N rows of the training selection (n = 0: none) */
    vl_split_t ood;           /* data.classes: the test images of the other classes (n = 0: none) */
    vl_model_config_t cfg;
    vl_model_t *model;
    size_t np, ns;
    float *w, *g, *state, *mom;
    int batch;                /* global batch size */
    float *xb, *dout;         /* batch input and output-gradient buffers (local) */
    int64_t *ib;              /* the data-set indices of the local batch's samples (job_gather_batch) */
    float *logits;            /* when set, job_eval copies the network's outputs of the split (local shard) here */
    int mc_dropout;           /* when set, job_eval's forwards drop (MC dropout): sample i of the split draws
                                 its masks from (mc_seed, pass mc_pass, i) (model_dropout_key) */
    uint64_t mc_seed, mc_pass;
    int32_t *yb;
    float *tb;
    int64_t *perm;            /* global permutation of the training set (the epoch's order) */
    int64_t *bn_perm;         /* the BN refresh's fixed order, drawn once in job_open */
    char dataset[32];
    float pad_value[DATA_MAX_CHANNELS]; /* normalised value of a black pixel per channel (crop padding) */
} vl_job_t;

/* Loads the dataset of the deck (or `dataset_override` when non-NULL) sharded over
 * the group: the training selection (data.train_subset, data.classes) without its last
 * data.validation rows as j->train, those rows as j->valid, the test selection as j->test and,
 * with data.classes, the other classes' test images as j->ood; builds the model of the deck (or cfg_override when non-NULL, read from the
 * input file `source`, whose description the deck then adopts: job_adopt_inputs) and the
 * buffers. Collective over the group. */
int job_open(vl_job_t *j, vl_comm_t *c, vl_deck_t *d, const vl_model_config_t *cfg_override,
             const char *dataset_override, const char *source);
/* The model description and dataset read from the input file `source` become the deck's
 * model.* and data.dataset values (deck_adopt: outputs then record what was used, marked
 * "# from SOURCE"); a different value the user gave is reported on rank 0 of comm. */
int job_adopt_inputs(vl_deck_t *d, MPI_Comm comm, const vl_model_config_t *cfg, const char *dataset,
                     const char *source);
void job_close(vl_job_t *j);

typedef struct { double loss_sum, correct, n; } vl_pass_t;
/* Evaluation pass over a split with running BN statistics (no collective inside
 * the model); sums reduced over the group into *out. probs (local n, C) may be NULL.
 * With j->mc_dropout the dropout layers drop (MC dropout, masks keyed by the samples' indices
 * in the split, so independent of the rank count). Collective over the group. */
int job_eval(vl_job_t *j, const float *w, const float *state, const vl_split_t *s, float *probs, vl_pass_t *out);
/* BN refresh (SPEC §0): running statistics of `state` := exact average over one pass
 * of (a fraction `subset` of) the training data in train mode. Collective over the group. */
int job_bn_update(vl_job_t *j, const float *w, float *state, double subset);

/* Gathers this rank's samples among the global indices ids[0..n) of split s into j->xb,
 * j->yb / j->tb (the rank owns rows [s->lo, s->hi)); returns how many (nl). With augment,
 * random crop (pad 2) and horizontal flip drawn from (seed, epoch, sample id). Local. */
int job_gather_batch(vl_job_t *j, const vl_split_t *s, const int64_t *ids, int n, int augment, int64_t epoch,
                     uint64_t seed);
/* Loss of model outputs `out` for the nl local rows in the batch buffers: returns the
 * plain sum of the per-example losses over those rows (softmax cross-entropy for
 * classification, Gaussian NLL for regression with model.noise, model.noise_std, in
 * standardised target units). When dout is non-NULL writes the gradient of (that sum /
 * `total`) with respect to the outputs (n, out_dim): pass the global batch size for the
 * gradient of the mean over the global batch. *correct (may be NULL) gets the number of
 * correct argmax predictions (0 for regression). Local. */
double job_batch_loss(vl_job_t *j, const float *out, int nl, double total, float *dout, int64_t *correct);

/* `valley train`: SGD with the deck's schedule, checkpoints, resume, signals.
 * Writes outdir/model.nc and outdir/history.nc. Collective over the world
 * (one group trains; with several groups each trains its own seed run.seed + group). */
int train_command(vl_comm_t *c, vl_deck_t *d, const char *outdir);
/* `valley evaluate MODEL.nc...`: metrics of the model or of the ensemble → outdir/eval.nc. */
int evaluate_command(vl_comm_t *c, vl_deck_t *d, int nmodels, char **models, const char *outdir);

/* `valley fge MODEL.nc...`: cyclic-LR chains from trained checkpoints (one chain per
 * group, chain g starting from input g mod n, data order seed run.seed + g), snapshots
 * at mid-cycle (outdir/[chain_g/]snapshots/), ensemble metrics over all chains → fge.nc. */
int fge_command(vl_comm_t *c, vl_deck_t *d, int ninputs, char **inputs, const char *outdir);

/* What the SGD loop trains: a parameterisation of the network's weights. NULL (the
 * default) is the flat weights j->w with momentum j->mom (train, fge); a method plugs its
 * own in from above: a curve's control points (curve.c), a simplex's moving vertex
 * (simplex.c). Per global batch the loop asks `point` for the network's weights of each of
 * the `samples` points, runs a forward and a backward pass at each, hands the local
 * gradients to `gather` (when samples > 1), sums over the group and calls `update` with
 * the sum. Every rank of the group calls each hook with the same arguments. */
typedef struct vl_param vl_param_t;
struct vl_param {
    int samples; /* points per batch, >= 1 */
    /* The weights of point s of global batch b of epoch ep (0-based SGD step `step`) into w. */
    void (*point)(vl_param_t *p, int64_t ep, int64_t b, long long step, int s, float *w);
    /* Point s's local gradient g (np floats) into the batch's sum (zeroed by the loop); NULL: with one
     * point, its gradient is the sum. */
    void (*gather)(vl_param_t *p, int s, const float *g, float *sum);
    /* The group's summed gradient (np floats: per point, the gradient of the batch-mean loss) and the
     * step's learning rate: the update. w holds the last point's weights. */
    int (*update)(vl_param_t *p, float *g, const float *w, double lr);
    /* The name of the part of its state holding a NaN or an infinity, or NULL (before a checkpoint). */
    const char *(*nonfinite)(vl_param_t *p);
    /* Writes a checkpoint with the loop's position (group rank 0 only); NULL: the method keeps none
     * and a signal ends the run with the message no_checkpoint. */
    int (*write)(vl_param_t *p, const char *path, const vl_train_pos_t *pos);
    const char *no_checkpoint;
    /* Text for the progress lines ("volume 0.31"); may be NULL. */
    int (*note)(vl_param_t *p, char *buf, size_t n);
    /* After each epoch: the group's training sums (loss, correct, seen) and its seconds; may be NULL. */
    int (*epoch_done)(vl_param_t *p, int64_t ep, const double sums[3], double seconds);
    void *ctx;
};

/* One SGD run over a job's training data: `train` (optionally collecting SWA/SWAG),
 * `fge` (cyclic LR, snapshots at mid-cycle), or a method's own parameterisation
 * (SGD_PLUGIN: the caller sets epochs, lr0, wd, sched and param after sgd_setup). */
enum { SGD_TRAIN = 0, SGD_FGE = 1, SGD_PLUGIN = 2 };
typedef struct {
    vl_job_t *j;
    const char *outdir;
    int fge;
    vl_param_t *param;        /* NULL: the flat weights */
    const char *method;       /* names the method in failures ("simplex"); NULL: none */
    char label[96];           /* leads the progress lines ("component 0 vertex 3 "); may be empty */
    uint64_t epoch_key;       /* ORed into the epoch of the data-order and augmentation streams */
    int per_epoch;            /* test pass and history.nc row after every epoch (default 1) */
    double samples_after;     /* samples of later runs of the same command, for the ETA */
    int mode;
    long long stop_step;      /* debug.stop_at_step: act as if signalled after this SGD step */
    int epochs;
    double lr0, momentum, wd, swa_lr;
    int nesterov, augment, allow_nonfinite, ck_every;
    double ck_seconds, last_ck; /* train.checkpoint_minutes: interval and the last checkpoint's time */
    char *resumes;            /* history.nc's record of the resumes of this run (owned) */
    char *resume_line;        /* this resume's line, joined to resumes by sgd_run (owned) */
    const char *sched;
    int swa, swa_start, swa_freq, swag_rank;
    vl_swag_t sw;
    int fge_cycle;
    double fge_a1, fge_a2;
    uint64_t seed;
    vl_train_pos_t pos;
    double *hist;
    float *acc;               /* param->gather: the batch's summed gradient and flags (np + 3) */
    /* FGE ensemble: sum of the snapshots' test probabilities (local shard) */
    double *ens;
    float *probs;
    int nsnap;
    vl_class_metrics_t *snap;
    int *snap_epoch;
} vl_sgd_t;
/* Reads the deck's settings for the mode; the caller then sets the weights (init or
 * resume) and r->pos, and for SGD_PLUGIN its settings and param. */
int sgd_setup(vl_sgd_t *r, vl_job_t *j, const char *outdir, int mode);
/* Epochs r->pos.epoch .. r->epochs-1; checkpoints, signals (exit 143), history.nc. Collective over the group.
 * A resumed run (r->pos.epoch > 0) takes the rows of the finished epochs from outdir/history.nc. */
int sgd_run(vl_sgd_t *r);
void sgd_free(vl_sgd_t *r);
/* After reading the checkpoint `path` into r->pos: every key of the run's identity whose
 * value differs from the deck recorded in the checkpoint is printed and added, with the
 * resume position, to r->resumes (history.nc's `resumes` attribute); a change of what the
 * run computes (dataset, subsets, batch size, seed, model) is refused (VL_EINPUT) unless
 * train.resume_force. Every rank of the group reads the file: collective over the group. */
int sgd_resume_check(vl_sgd_t *r, const char *path);
#endif
