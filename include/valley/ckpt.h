/* ckpt.h — model.nc and checkpoints (INTERFACE.md "Files").
 *
 * One NetCDF variable per tensor, named as in the model's tensor table, in
 * PyTorch's layout; the global attribute `valley.params` lists the parameter
 * tensors in the order of the flat vector. Optimiser state (momentum buffer,
 * flat), the position in training (epoch, batch) and the seed are stored for
 * resuming; the model configuration as attributes, so that `evaluate`,
 * `curve`, `bma`... can rebuild the network from the file alone.
 */
#ifndef VALLEY_CKPT_H
#define VALLEY_CKPT_H
#include <stdint.h>

#include "valley/model.h"
#include "valley/swag.h"

typedef struct vl_train_pos {
    int64_t epoch;        /* epoch in progress (or epochs done when batch == 0) */
    int64_t batch;        /* next batch within the epoch */
    int64_t step;         /* SGD steps taken */
    uint64_t seed;
    double loss_sum, correct, seen; /* running sums of the epoch in progress (this rank's) */
    /* Every group rank's (loss_sum, correct, seen), 3*nranks values: written when set;
     * ckpt_read sets them (malloc'd, the caller frees rank_sums). */
    double *rank_sums;
    int nranks;
} vl_train_pos_t;

/* Title (global attribute `title`) of the swag.nc written by train: tells `bma` a SWAG
 * posterior from a checkpoint (which also carries the moments, for resuming). */
#define CKPT_TITLE_SWAG "valley SWA/SWAG posterior"

/* What goes into a model file. NULL pointers are left out. */
typedef struct {
    const vl_model_t *m;
    const vl_model_config_t *cfg;
    const char *dataset;
    const float *w, *state;     /* the tensors (for swag.nc: the SWA mean and its refreshed BN) */
    const float *momentum;      /* SGD momentum buffer (resume) */
    const vl_train_pos_t *pos;  /* training position (resume) */
    const vl_swag_t *swag;      /* SWA/SWAG moments: mean, variance, swag_m2, deviations (rank, param), n_models */
    const char *title;          /* NULL = "valley model" */
    const char *deck_text;
} vl_ckpt_t;

/* The model description attributes (valley.params, model_kind, shapes, dataset) that
 * ckpt_read_config reads back; for any file that describes a model (curve.nc, ...). */
#include "valley/ncio.h"
int ckpt_put_model_attrs(ncio_file_t *f, const vl_model_t *m, const vl_model_config_t *cfg, const char *dataset);

/* Writes path (tmp name + rename). Serial: call on one rank. */
int ckpt_write(const char *path, const vl_ckpt_t *c);
/* Reads the model configuration and dataset name (dataset may be NULL, else 32 chars). */
int ckpt_read_config(const char *path, vl_model_config_t *cfg, char *dataset);
/* ckpt_read_config of paths[0], and a check that paths[1..n-1] describe the same model
 * and dataset (VL_EINPUT naming the file that differs). Collective over comm: every rank
 * reads, failures are agreed (comm_agree_failure). */
#include <mpi.h>
int ckpt_read_configs(MPI_Comm comm, int n, char **paths, vl_model_config_t *cfg, char *dataset);
/* Whether path holds an SGD momentum buffer (a training checkpoint or model.nc of `train`; not an
 * imported model). 0 also when it cannot be read (ckpt_read then says why). */
int ckpt_has_momentum(const char *path);
/* Reads tensors into w and state (each variable checked against the model's table),
 * and momentum / pos when non-NULL (VL_EINPUT if the file has no optimiser state). */
int ckpt_read(const char *path, const vl_model_t *m, float *w, float *state, float *momentum, vl_train_pos_t *pos);
/* Reads the SWA/SWAG moments of a checkpoint or swag.nc into s, which must have been
 * initialised with the model's parameter count and the deck's K (the stored
 * deviations must fit). VL_EINPUT if the file has none. */
int ckpt_read_swag(const char *path, vl_swag_t *s);
/* The number of SWAG deviations a file stores (0: none), for swag_init before
 * ckpt_read_swag: the file, not the deck, says how many there are. */
int ckpt_swag_rank(const char *path, int *K);

/* The SGD steps a checkpoint had taken (train_position); VL_EINPUT when it has none. */
int ckpt_read_step(const char *path, long long *step);

/* After reading a checkpoint on the group: each rank takes its own running sums when the
 * rank count is the same (exact resume), otherwise rank 0 takes their total and the
 * others zero. Frees pos->rank_sums. */
void ckpt_take_rank_sums(vl_train_pos_t *pos, int grank, int gsize);

const char *model_kind_name(int kind);
int model_kind_parse(const char *name); /* -1 if unknown */
#endif
