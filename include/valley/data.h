/* data.h — datasets: conversion to NetCDF (`valley prepare`) and sharded reading.
 *
 * Every dataset is converted once into one NetCDF-4 file (SPEC §7) with two splits,
 * "train" and "test", and read from there; each rank reads only its own contiguous
 * shard of rows.
 *
 * File layout, classification (fashion-mnist):
 *   dims  train, test, channel, height, width, class
 *   vars  train_x, test_x  ubyte (n, channel, height, width)   raw pixels 0..255
 *         train_y, test_y  int   (n)                            labels 0..n_classes-1
 *   global attrs dataset, task = "classification", n_classes (int), pixel_scale,
 *         pixel_mean, pixel_std (double; mean/std over all training pixels after
 *         scaling by pixel_scale, population std), class_names, source.
 * File layout, regression (toy1d, diabetes):
 *   dims  train, test, feature, target (= 1)
 *   vars  train_x, test_x  float (n, feature)   raw (unstandardised) inputs
 *         train_y, test_y  float (n, target)    raw targets
 *   global attrs dataset, task = "regression", x_mean, x_std (double[feature]),
 *         y_mean, y_std (double[target]), all over the training split (population
 *         std), feature_names, generator/source description.
 *
 * The prepare functions are serial: call them on one rank. They validate every
 * input completely before writing, and write through ncio (tmp + rename), so a
 * failure leaves no output file (neither final nor tmp). Missing parent directories
 * of out_path are created.
 */
#ifndef VALLEY_DATA_H
#define VALLEY_DATA_H
#include <stdint.h>

/* Where Debian installs the sources (packages dataset-fashion-mnist, python3-sklearn). */
#define DATA_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#define DATA_SKLEARN_DIR "/usr/lib/python3/dist-packages/sklearn/datasets/data"

/* Converts {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] from src_dir (the
 * .gz name is tried first, then the uncompressed name) into out_path. Checks magic
 * numbers (0x803 images, 0x801 labels), 28x28 images, equal image/label counts,
 * exact file length (truncated/trailing bytes), labels 0..9. Errors are VL_EINPUT
 * naming the offending file, e.g. "train-images-idx3-ubyte.gz: truncated: expected
 * 47040016 bytes, got 1000"; write errors VL_EIO. deck_text may be NULL. */
int data_prepare_fashion_mnist(const char *src_dir, const char *out_path, const char *deck_text);
/* CIFAR-10 (classes 10: data_batch_1..5.bin, test_batch.bin) or CIFAR-100 (100: train.bin,
 * test.bin, fine labels) from the official binary files in src_dir or its archive
 * subdirectory (cifar-10-batches-bin/, cifar-100-binary/): 3x32x32 images, per-channel
 * pixel_mean / pixel_std over the training pixels. Bad files: VL_EINPUT naming the file. */
int data_prepare_cifar(int classes, const char *src_dir, const char *out_path, const char *deck_text);
/* Per-channel normalisation of an image dataset file: pixel_mean and pixel_std hold one value
 * or one per channel; fills DATA_MAX_CHANNELS values (one value repeated). */
#define DATA_MAX_CHANNELS 16
int data_channel_stats(int ncid, const char *path, int channels, double *mean, double *std);

/* Generates the 1-D regression toy with a gap: train 120 points, x uniform on
 * [-1,-0.3] ∪ [0.3,1]; test 100 points, x uniform on [-1.2,1.2] (gap included);
 * y = sin(3x) + 0.3 x^3 + eps, eps ~ N(0, 0.1^2). One RNG stream
 * rng_init(&r, seed, rng_stream(RNG_DATA, 0, 0)) is drawn in this order: for each
 * train point u, eps; then for each test point u, eps (u = rng_uniform, eps =
 * 0.1*rng_normal). The generator is recorded in the file's attributes. */
int data_prepare_toy1d(uint64_t seed, const char *out_path, const char *deck_text);
enum { DATA_TOY1D_TRAIN = 120, DATA_TOY1D_TEST = 100 };

/* Converts scikit-learn's diabetes table (csv_dir/diabetes_data_raw.csv[.gz], 442
 * rows x 10 whitespace/comma separated numbers, and csv_dir/diabetes_target.csv[.gz],
 * 442 x 1) into out_path. Split: a permutation perm = rng_permutation over 442 rows
 * from rng_init(&r, seed, rng_stream(RNG_DATA, 1, 0)); train = rows perm[0..396]
 * (n_train = 442*9/10 = 397, integer division), test = rows perm[397..441] (45).
 * The original row numbers are stored in train_row/test_row (int). CSV errors are
 * VL_EINPUT naming file, row (1-based line) and column (1-based):
 * "diabetes_data_raw.csv.gz: row 17, column 3: 'abc' is not a number". */
int data_prepare_diabetes(const char *csv_dir, uint64_t seed, const char *out_path,
                          const char *deck_text);
enum { DATA_DIABETES_ROWS = 442, DATA_DIABETES_FEATURES = 10 };

/* Dispatch on the deck's data.dataset name ("fashion-mnist", "toy1d", "diabetes")
 * with the Debian source directories above. VL_EINPUT for an unknown name. */
int data_prepare(const char *dataset, const char *source_dir, uint64_t seed, const char *out_path,
                 const char *deck_text); /* source_dir NULL or "" = Debian's location */

typedef struct {
    char dataset[32];
    int classification;        /* 1: labels y, 0: regression targets t */
    int n_classes;             /* classification */
    int in_c, in_h, in_w;      /* input shape (regression: in_c = features, in_h = in_w = 1) */
    int in_dim;                /* in_c*in_h*in_w */
    int out_dim;               /* n_classes or target dim */
    int64_t n;                 /* samples in this split after subset */
    int64_t lo, hi;            /* this rank's shard [lo, hi) of [0, n) */
    float *x;                  /* (hi-lo, in_dim), normalised: (pix*scale - mean)/std, or
                                  standardised features for regression */
    int32_t *y;                /* (hi-lo) labels, or NULL */
    float *t;                  /* (hi-lo, out_dim) standardised targets, or NULL */
    double t_mean, t_std;      /* regression: to undo target standardisation */
    int64_t *row;              /* (hi-lo) the file row of each local row (its index in the file's split) */
} vl_split_t;

/* The contiguous shard of rank `rank` of `nranks` over n rows:
 * lo = n*rank/nranks, hi = n*(rank+1)/nranks (64-bit integer arithmetic). */
void data_shard(int64_t n, int rank, int nranks, int64_t *lo, int64_t *hi);

/* Reads the rows [lo, hi) of split "train" or "test" of the first `subset` samples
 * (0 = all; more than the split holds is VL_EINPUT) of the dataset file, with
 * lo/hi = data_shard(n, rank, nranks). Only those rows are read from the file
 * (nc_get_vara). Validates dims, types, attributes and label range; a missing file
 * gives VL_EINPUT "input/data/fashion-mnist.nc: No such file or directory (run
 * `valley prepare fashion-mnist`)". Not collective (each rank opens the file
 * serially). On success *out owns x and y/t (free with data_free); on failure *out
 * holds no memory. Regression files must have target dimension 1. */
int data_load(const char *path, const char *split, int64_t subset, int rank, int nranks,
              vl_split_t *out);

/* Row selections (data.train_subset / test_subset, data.classes, data.validation). The
 * selection of a split is the first `subset` rows of the file's split (0 = all; more than it
 * holds is VL_EINPUT), and of those, when nclasses > 0, the rows whose label is one of
 * classes[0..nclasses) (complement = 1: the rows whose label is none of them; ids outside
 * 0..n_classes-1 select nothing), in file order. A class selection on a regression file is
 * VL_EINPUT. */
typedef struct {
    int64_t subset;
    const int *classes;
    int nclasses;
    int complement;
} vl_rows_t;
/* The file rows of the selection (ascending) into *rows (malloc'd, caller frees; may be empty)
 * and their count *n. Every rank computes the same list (it reads the labels of the first
 * `subset` rows). Not collective. */
int data_select(const char *path, const char *split, const vl_rows_t *sel, int64_t **rows, int64_t *n);
/* Like data_load for the n file rows rows[0..n) (ascending, inside the split): the split has
 * n samples, sample k being file row rows[k]; this rank holds samples [lo, hi) =
 * data_shard(n, rank, nranks) and reads only their rows (in spans of consecutive rows). A
 * part of a selection (its head without the last V rows, or those V rows) is such a list. */
int data_load_list(const char *path, const char *split, const int64_t *rows, int64_t n, int rank, int nranks,
                   vl_split_t *out);
/* The task of a dataset file (*classification = 1 and its n_classes, or 0 and 0 for a
 * regression file), validating its header like data_load. Not collective. */
int data_classes(const char *path, int *classification, int *n_classes);

/* Like data_load for a classification file, its pixels normalised with the pixel statistics of
 * the dataset file norm_path (an out-of-distribution set as the network trained on norm_path's
 * images sees it). */
int data_load_as(const char *path, const char *split, int64_t subset, const char *norm_path, int rank, int nranks,
                 vl_split_t *out);
/* MNIST digits from the user's directory of IDX files (the names of Fashion-MNIST's; Debian has no
 * MNIST): checks as data_prepare_fashion_mnist. src_dir NULL or "" is VL_EINPUT naming data.source. */
int data_prepare_mnist(const char *src_dir, const char *out_path, const char *deck_text);

/* Frees x, y, t, row and zeroes *s. Safe on a zeroed or already freed split. */
void data_free(vl_split_t *s);

#endif
