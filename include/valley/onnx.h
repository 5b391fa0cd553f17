/* onnx.h — networks in from ONNX (`valley import`) and out again (`valley export`).
 *
 * Import maps an ONNX graph onto valley's layers (graphdesc.h): Conv (square kernel, equal
 * strides and pads, no dilation, one group), BatchNormalization (eps 1e-5), Relu, MaxPool
 * (2x2, stride 2), AveragePool over the whole plane, GlobalAveragePool, Add, Flatten and
 * Reshape to (N, features) (the shape constant or computed by Shape/Gather/Unsqueeze/Concat
 * from the batch size), Gemm and MatMul (+ Add of a bias), Dropout and Identity (no-ops at
 * inference), Constant. Tensors come from the initializers (float, raw or typed data). What
 * valley cannot run is refused with VL_EINPUT naming the node and its op.
 */
#ifndef VALLEY_ONNX_H
#define VALLEY_ONNX_H
#include <stddef.h>
#include <stdint.h>

#include "valley/comm.h"
#include "valley/deck.h"
#include "valley/model.h"

/* One tensor of an imported network, under valley's name (NAME_weight, ...). */
typedef struct {
    char name[64];
    int ndim;
    int64_t shape[4];
    size_t numel;
    float *data; /* owned */
} onnx_tensor_t;

typedef struct {
    char *desc;           /* the network as text (graphdesc.h), owned */
    int in_c, in_h, in_w; /* the input's shape (a dense input: in_c features, 1 x 1) */
    int spatial;
    int out_dim;
    int ntensors;
    onnx_tensor_t *tensors;
    char producer[64];
} onnx_import_t;

/* Parses an ONNX model (the bytes of a .onnx file; path names it in messages) into im.
 * No MPI, no file access: the fuzz target calls it directly. */
int onnx_parse(const uint8_t *buf, size_t len, const char *path, onnx_import_t *im);
void onnx_import_free(onnx_import_t *im);

/* `valley import MODEL.onnx`: outdir/model.nc of model.kind graph for data.dataset. */
int onnx_import_command(vl_comm_t *c, vl_deck_t *d, int ninputs, char **inputs, const char *outdir);

/* `valley export MODEL.nc`: outdir/model.onnx (opset 13) of a model file (model.nc, a checkpoint,
 * swag.nc's SWA mean, an FGE snapshot) or of the point curve.t of a curve.nc (BN statistics
 * refreshed on the training data). Collective over the world; rank 0 writes. */
int onnx_export_command(vl_comm_t *c, vl_deck_t *d, int ninputs, char **inputs, const char *outdir);
#endif
