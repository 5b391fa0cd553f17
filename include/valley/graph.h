/* graph.h — building a model's layer graph (graph.c), for the family builders (families.c) and graphdesc.c.
 *
 * Nodes are added in topological order; each returns its id, which later nodes name as their
 * input. Parameter tensors are registered in the order the nodes are added, under
 * "<name>_weight", "<name>_bias" (and "<name>_running_mean", "<name>_running_var" for batch
 * norm): add a family's modules in PyTorch's registration order and the names are its
 * state_dict keys with '.' replaced by '_'. Every function fails with VL_EINPUT on a shape it
 * cannot build (the message names the layer).
 */
#ifndef VALLEY_GRAPH_H
#define VALLEY_GRAPH_H
#include "valley/model.h"

/* The input node (id 0): spatial (C, H, W) or dense (C*H*W features). */
int graph_input(vl_model_t *m, int spatial, int *id);
int graph_conv(vl_model_t *m, const char *name, int in, int cout, int k, int stride, int pad, int bias, int *id);
int graph_linear(vl_model_t *m, const char *name, int in, int fout, int *id);
int graph_bn(vl_model_t *m, const char *name, int in, int *id);
int graph_relu(vl_model_t *m, int in, int *id);
int graph_maxpool(vl_model_t *m, int in, int *id);  /* 2x2, stride 2 (floor) */
int graph_avgpool(vl_model_t *m, int in, int *id);  /* global average pool -> dense */
int graph_flatten(vl_model_t *m, int in, int *id);
int graph_add(vl_model_t *m, int a, int b, int *id);
/* Dropout with probability p (PyTorch's nn.Dropout: zero with probability p, the rest scaled by
 * 1/(1-p)) in training forwards that have keys (model_dropout_key); the identity otherwise. */
int graph_dropout(vl_model_t *m, int in, double p, int *id);
/* Output shape of node id (dense nodes: c features, h = w = 1). */
void graph_shape(const vl_model_t *m, int id, int *c, int *h, int *w);
/* A conv's weights drawn from N(0, std^2) and its bias (if any) zero, instead of PyTorch's default. */
void graph_init_normal(vl_model_t *m, int conv, double std);
/* The model's short name for model_describe ("resnet56"). */
void graph_name(vl_model_t *m, const char *name);
/* Builds cfg's family into m (families.c). */
int families_build(vl_model_t *m, const vl_model_config_t *cfg);
#endif
