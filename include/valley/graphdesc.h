/* graphdesc.h — a network as text: the layer graph of a model that is not one of the
 * families (an imported ONNX model, `valley import`), stored in model.nc's `model_graph`
 * attribute so that every command rebuilds it (model.kind = graph).
 *
 * One node per line, in topological order; a node names its inputs by their line index
 * (line 0 is the input, the last line is the output):
 *     input spatial|dense
 *     conv NAME IN COUT K STRIDE PAD BIAS   k x k, square stride and padding, BIAS 0/1
 *     linear NAME IN FOUT                   with bias
 *     bn NAME IN                            batch norm (eps 1e-5)
 *     relu IN
 *     maxpool IN                            2 x 2, stride 2
 *     avgpool IN                            global average pool (-> dense)
 *     flatten IN                            spatial -> dense (no-op on a dense input)
 *     add A B                               elementwise sum of two equal shapes
 *     dropout IN P                          PyTorch's nn.Dropout(P) in training
 * NAME ([A-Za-z0-9_], at most 48 characters, unique) names the node's tensors:
 * NAME_weight, NAME_bias (and NAME_running_mean, NAME_running_var), in line order.
 * Blank lines and lines starting with '#' are ignored (they keep no index).
 */
#ifndef VALLEY_GRAPHDESC_H
#define VALLEY_GRAPHDESC_H
#include "valley/model.h"

enum { GRAPHDESC_MAX_NODES = 100000, GRAPHDESC_MAX_BYTES = 8 << 20 };

/* Builds the description into m (graph.h calls); VL_EINPUT naming the line on anything
 * malformed: unknown op, a reference forward or out of range, a bad number, a duplicate
 * name, a shape the layer cannot take. */
int graphdesc_build(vl_model_t *m, const char *desc);
/* A copy of text that lives until the process ends, the same pointer for equal texts (so
 * configurations holding it compare with memcmp); NULL when out of memory. */
const char *graphdesc_intern(const char *text);
#endif
