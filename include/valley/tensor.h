/* tensor.h — the table that names the pieces of a flat vector.
 *
 * A model's trainable parameters live in one contiguous float vector and its
 * batch-norm running statistics in another (the "state"). Each named tensor is
 * a view (offset, shape) into one of them, in PyTorch's layout: linear weight
 * (out, in), conv weight (out, in, kh, kw), bias/BN vectors (C). The checkpoint
 * writer stores one NetCDF variable per tensor under its name.
 */
#ifndef VALLEY_TENSOR_H
#define VALLEY_TENSOR_H
#include <stddef.h>
#include <stdint.h>

enum { TENSOR_PARAM = 0, TENSOR_STATE = 1 };
enum { /* role, used by initialisation and filter normalisation */
    ROLE_WEIGHT = 0, ROLE_BIAS = 1, ROLE_BN_WEIGHT = 2, ROLE_BN_BIAS = 3,
    ROLE_BN_MEAN = 4, ROLE_BN_VAR = 5, ROLE_BN_COUNT = 6
};

enum { /* initialisation laws of parameters (BN weights 1 and biases 0 whatever this says) */
    INIT_DEFAULT = 0, /* PyTorch's default for conv and linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
    INIT_NORMAL = 1,  /* N(0, init_std^2) (He's fan-out normal of the VGG and PreResNet reference codes) */
    INIT_ZERO = 2     /* zeros (their conv biases) */
};

typedef struct {
    char name[64];      /* "conv1_weight", "bn1_running_mean" */
    int kind;           /* TENSOR_PARAM or TENSOR_STATE */
    int role;           /* ROLE_* */
    int ndim;
    int64_t shape[4];
    size_t offset;      /* into the param or state vector, in floats */
    size_t numel;
    int fan_in;         /* for initialisation (weights and their biases) */
    int init;           /* INIT_*: the law model_init draws the tensor from */
    float init_std;     /* INIT_NORMAL: its standard deviation */
} vl_tensor_t;

#endif
