/* families.c — the network families, built on the layer graph (graph.h, graph.c).
 *
 * Each family follows the reference code the field uses, module by module, so that its
 * tensor names are that code's state_dict keys ('.' -> '_') and a PyTorch definition of it
 * (tests/py/torch_ref.py) matches valley's parameter for parameter:
 *   mlp, convnet      valley's own (SPEC); linear = mlp without hidden layers
 *   resnet            CIFAR ResNet of the loss-landscape code (cifar10/models/resnet.py,
 *                     ResNet_cifar): conv-BN-ReLU stem of 16 channels, 3 stages of basic
 *                     post-activation blocks (16, 32, 64 channels), projection shortcut
 *                     (1x1 conv + BN) where the shape changes; depth 6n+2. shortcuts = 0 is
 *                     its BasicBlock_noshortcut (the "noshort" networks of the paper)
 *   preresnet         PreResNet of the SWAG and curve codes (models/preresnet.py): basic
 *                     pre-activation blocks for depth 6n+2 < 44, bottleneck blocks
 *                     (expansion 4) for depth 9n+2 >= 44 (PreResNet-164); the 1x1 shortcut
 *                     conv reads the block's input x. Conv weights N(0, 2/(k*k*cout)) as there
 *   vgg               VGG of the SWAG code (models/vgg.py, torchvision's configurations
 *                     11/13/16/19), with or without BN; the CIFAR classifier 512-512-classes.
 *                     Conv weights N(0, 2/(9*cout)), conv biases 0, as there
 *   wideresnet        WideResNet of the SWAG code (models/wide_resnet.py): depth 6n+4,
 *                     widening k, pre-activation blocks with conv biases, the stride on the
 *                     second conv, 1x1 shortcut conv (with bias) of the input x
 * Differences, all stated in doc/design.md: no dropout layers (VGG's classifier dropout and
 * WRN's dropout_rate, 0 there by default, are left out: valley has no dropout layer yet); the
 * final average pool is global (the references' AvgPool2d(8) is global at 32x32 and fails at
 * 28x28); a VGG max-pool on a plane smaller than 2x2 (28x28 inputs) is left out; WRN's last
 * BN uses momentum 0.1 like every other BN (the reference's 0.9).
 * model.width_factor scales every channel count (round to nearest, at least 1).
 */
#include "valley/graph.h"
#include "valley/ckpt.h"
#include "valley/graphdesc.h"

#include <math.h>
#include <stdio.h>

#include "valley/error.h"

static int ch(const vl_model_config_t *c, int n)
{
    double f = c->width_factor > 0 ? c->width_factor : 1.0;
    long v = lround(n * f);
    return v < 1 ? 1 : (int)v;
}

/* He's fan-out normal init of the VGG and PreResNet reference codes. */
static void he_init(vl_model_t *m, int conv, int k, int cout) { graph_init_normal(m, conv, sqrt(2.0 / (k * k * cout))); }

static int build_mlp(vl_model_t *m, const vl_model_config_t *c)
{
    int x, id, prev;
    CHECK(graph_input(m, 0, &x));
    prev = x;
    char nm[16];
    for (int i = 0; i < c->nwidths; i++) {
        if (c->widths[i] <= 0) return VL_FAIL(VL_EINPUT, "model.widths: width %d is not positive", c->widths[i]);
        snprintf(nm, sizeof nm, "fc%d", i + 1);
        CHECK(graph_linear(m, nm, prev, c->widths[i], &id));
        CHECK(graph_relu(m, id, &prev));
        if (c->dropout > 0) CHECK(graph_dropout(m, prev, c->dropout, &prev)); /* after each hidden layer */
    }
    snprintf(nm, sizeof nm, "fc%d", c->nwidths + 1);
    CHECK(graph_linear(m, nm, prev, c->out_dim, &id));
    graph_name(m, "mlp");
    return VL_OK;
}

static int build_convnet(vl_model_t *m, const vl_model_config_t *c)
{
    int a;
    CHECK(graph_input(m, 1, &a));
    CHECK(graph_conv(m, "conv1", a, ch(c, 32), 3, 1, 1, 1, &a));
    CHECK(graph_bn(m, "bn1", a, &a));
    CHECK(graph_relu(m, a, &a));
    CHECK(graph_maxpool(m, a, &a));
    CHECK(graph_conv(m, "conv2", a, ch(c, 64), 3, 1, 1, 1, &a));
    CHECK(graph_bn(m, "bn2", a, &a));
    CHECK(graph_relu(m, a, &a));
    CHECK(graph_maxpool(m, a, &a));
    CHECK(graph_flatten(m, a, &a));
    CHECK(graph_linear(m, "fc1", a, ch(c, 128), &a));
    CHECK(graph_relu(m, a, &a));
    CHECK(graph_linear(m, "fc2", a, c->out_dim, &a));
    graph_name(m, "convnet");
    return VL_OK;
}

/* Global average pool and the classifier. */
static int head(vl_model_t *m, int a, const char *fc, int out)
{
    CHECK(graph_avgpool(m, a, &a));
    return graph_linear(m, fc, a, out, &a);
}

/* ------------------------------------------------------------- resnet */

static int resnet_block(vl_model_t *m, const char *name, int in, int planes, int stride, int shortcuts, int *out)
{
    char nm[64];
    int a, cin, h, w;
    graph_shape(m, in, &cin, &h, &w);
    snprintf(nm, sizeof nm, "%s_conv1", name);
    CHECK(graph_conv(m, nm, in, planes, 3, stride, 1, 0, &a));
    snprintf(nm, sizeof nm, "%s_bn1", name);
    CHECK(graph_bn(m, nm, a, &a));
    CHECK(graph_relu(m, a, &a));
    snprintf(nm, sizeof nm, "%s_conv2", name);
    CHECK(graph_conv(m, nm, a, planes, 3, 1, 1, 0, &a));
    snprintf(nm, sizeof nm, "%s_bn2", name);
    CHECK(graph_bn(m, nm, a, &a));
    if (shortcuts) {
        int sc = in;
        if (stride != 1 || cin != planes) {
            snprintf(nm, sizeof nm, "%s_shortcut_0", name);
            CHECK(graph_conv(m, nm, in, planes, 1, stride, 0, 0, &sc));
            snprintf(nm, sizeof nm, "%s_shortcut_1", name);
            CHECK(graph_bn(m, nm, sc, &sc));
        }
        CHECK(graph_add(m, a, sc, &a));
    }
    return graph_relu(m, a, out);
}

static int build_resnet(vl_model_t *m, const vl_model_config_t *c)
{
    const char *rule = model_depth_rule(c->kind, c->depth, 0);
    if (rule) return VL_FAIL(VL_EINPUT, "model.depth: %s, got %d", rule, c->depth);
    int n = (c->depth - 2) / 6, a;
    CHECK(graph_input(m, 1, &a));
    CHECK(graph_conv(m, "conv1", a, ch(c, 16), 3, 1, 1, 0, &a));
    CHECK(graph_bn(m, "bn1", a, &a));
    CHECK(graph_relu(m, a, &a));
    char nm[32];
    for (int s = 0; s < 3; s++)
        for (int b = 0; b < n; b++) {
            snprintf(nm, sizeof nm, "layer%d_%d", s + 1, b);
            CHECK(resnet_block(m, nm, a, ch(c, 16 << s), (s > 0 && b == 0) ? 2 : 1, c->shortcuts, &a));
        }
    CHECK(head(m, a, "linear", c->out_dim));
    char desc[48];
    snprintf(desc, sizeof desc, "resnet%d%s", c->depth, c->shortcuts ? "" : "-noshort");
    graph_name(m, desc);
    return VL_OK;
}

/* ---------------------------------------------------------- preresnet */

/* Files written before families.c: the 1x1 shortcut conv reads relu(bn1(x)), named
 * layerS_B_downsample, default init (kept so that those model files still load). */
static int preresnet_block_v1(vl_model_t *m, const char *name, int in, int planes, int stride, int *id)
{
    char nm[64];
    int bn1, r1, c1, bn2, r2, c2, sc = in, cin, h, w;
    graph_shape(m, in, &cin, &h, &w);
    snprintf(nm, sizeof nm, "%s_bn1", name);
    CHECK(graph_bn(m, nm, in, &bn1));
    CHECK(graph_relu(m, bn1, &r1));
    snprintf(nm, sizeof nm, "%s_conv1", name);
    CHECK(graph_conv(m, nm, r1, planes, 3, stride, 1, 0, &c1));
    snprintf(nm, sizeof nm, "%s_bn2", name);
    CHECK(graph_bn(m, nm, c1, &bn2));
    CHECK(graph_relu(m, bn2, &r2));
    snprintf(nm, sizeof nm, "%s_conv2", name);
    CHECK(graph_conv(m, nm, r2, planes, 3, 1, 1, 0, &c2));
    if (stride != 1 || cin != planes) {
        snprintf(nm, sizeof nm, "%s_downsample", name);
        CHECK(graph_conv(m, nm, r1, planes, 1, stride, 0, 0, &sc));
    }
    return graph_add(m, c2, sc, id);
}

/* BN-ReLU-conv (pre-activation unit), the conv He-initialised. */
static int bn_relu_conv(vl_model_t *m, const char *name, int bn_no, int conv_no, int in, int cout, int k, int stride,
                        int bias, int he, int *out)
{
    char nm[64];
    int a;
    snprintf(nm, sizeof nm, "%s_bn%d", name, bn_no);
    CHECK(graph_bn(m, nm, in, &a));
    CHECK(graph_relu(m, a, &a));
    snprintf(nm, sizeof nm, "%s_conv%d", name, conv_no);
    CHECK(graph_conv(m, nm, a, cout, k, stride, k / 2, bias, out));
    if (he) he_init(m, *out, k, cout);
    return VL_OK;
}

static int preresnet_block(vl_model_t *m, const char *name, int in, int planes, int stride, int bottleneck, int *id)
{
    char nm[64];
    int a, sc = in, cin, h, w;
    const int exp = bottleneck ? 4 : 1;
    graph_shape(m, in, &cin, &h, &w);
    if (bottleneck) {
        CHECK(bn_relu_conv(m, name, 1, 1, in, planes, 1, 1, 0, 1, &a));
        CHECK(bn_relu_conv(m, name, 2, 2, a, planes, 3, stride, 0, 1, &a));
        CHECK(bn_relu_conv(m, name, 3, 3, a, planes * 4, 1, 1, 0, 1, &a));
    } else {
        CHECK(bn_relu_conv(m, name, 1, 1, in, planes, 3, stride, 0, 1, &a));
        CHECK(bn_relu_conv(m, name, 2, 2, a, planes, 3, 1, 0, 1, &a));
    }
    if (stride != 1 || cin != planes * exp) {
        snprintf(nm, sizeof nm, "%s_downsample_0", name);
        CHECK(graph_conv(m, nm, in, planes * exp, 1, stride, 0, 0, &sc));
        he_init(m, sc, 1, planes * exp);
    }
    return graph_add(m, a, sc, id);
}

static int build_preresnet(vl_model_t *m, const vl_model_config_t *c)
{
    const int bottleneck = c->depth >= 44 && !c->preact_shortcut;
    const char *rule = model_depth_rule(c->kind, c->depth, c->preact_shortcut);
    if (rule) return VL_FAIL(VL_EINPUT, "model.depth: %s, got %d", rule, c->depth);
    int n = (c->depth - 2) / (bottleneck ? 9 : 6), a;
    CHECK(graph_input(m, 1, &a));
    CHECK(graph_conv(m, "conv1", a, ch(c, 16), 3, 1, 1, 0, &a));
    if (!c->preact_shortcut) he_init(m, a, 3, ch(c, 16));
    char nm[32];
    for (int s = 0; s < 3; s++)
        for (int b = 0; b < n; b++) {
            snprintf(nm, sizeof nm, "layer%d_%d", s + 1, b);
            int stride = (s > 0 && b == 0) ? 2 : 1;
            if (c->preact_shortcut) CHECK(preresnet_block_v1(m, nm, a, ch(c, 16 << s), stride, &a));
            else CHECK(preresnet_block(m, nm, a, ch(c, 16 << s), stride, bottleneck, &a));
        }
    CHECK(graph_bn(m, "bn", a, &a));
    CHECK(graph_relu(m, a, &a));
    CHECK(head(m, a, "fc", c->out_dim));
    char desc[48];
    snprintf(desc, sizeof desc, "preresnet%d", c->depth);
    graph_name(m, desc);
    return VL_OK;
}

/* ---------------------------------------------------------------- vgg */

static int build_vgg(vl_model_t *m, const vl_model_config_t *c)
{
    /* torchvision's configurations A, B, D, E: channels, 0 = 2x2 max-pool */
    static const int cfg11[] = {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0, -1};
    static const int cfg13[] = {64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0, -1};
    static const int cfg16[] = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0, -1};
    static const int cfg19[] = {64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0,
                                512, 512, 512, 512, 0, -1};
    const int *cf = c->depth == 11 ? cfg11 : c->depth == 13 ? cfg13 : c->depth == 16 ? cfg16 : c->depth == 19 ? cfg19 : NULL;
    if (!cf) return VL_FAIL(VL_EINPUT, "model.depth: %s, got %d", model_depth_rule(c->kind, c->depth, 0), c->depth);
    int a, idx = 0, cc, h, w;
    char nm[32];
    CHECK(graph_input(m, 1, &a));
    for (int i = 0; cf[i] >= 0; i++) {
        if (cf[i] == 0) {
            graph_shape(m, a, &cc, &h, &w);
            if (h >= 2 && w >= 2) CHECK(graph_maxpool(m, a, &a));
            idx++;
            continue;
        }
        snprintf(nm, sizeof nm, "features_%d", idx);
        CHECK(graph_conv(m, nm, a, ch(c, cf[i]), 3, 1, 1, 1, &a));
        he_init(m, a, 3, ch(c, cf[i]));
        idx++;
        if (c->bn) {
            snprintf(nm, sizeof nm, "features_%d", idx++);
            CHECK(graph_bn(m, nm, a, &a));
        }
        CHECK(graph_relu(m, a, &a));
        idx++;
    }
    CHECK(graph_flatten(m, a, &a));
    /* the reference classifier: Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear */
    if (c->dropout > 0) CHECK(graph_dropout(m, a, c->dropout, &a));
    CHECK(graph_linear(m, "classifier_1", a, ch(c, 512), &a));
    CHECK(graph_relu(m, a, &a));
    if (c->dropout > 0) CHECK(graph_dropout(m, a, c->dropout, &a));
    CHECK(graph_linear(m, "classifier_4", a, ch(c, 512), &a));
    CHECK(graph_relu(m, a, &a));
    CHECK(graph_linear(m, "classifier_6", a, c->out_dim, &a));
    char desc[48];
    snprintf(desc, sizeof desc, "vgg%d%s", c->depth, c->bn ? "bn" : "");
    graph_name(m, desc);
    return VL_OK;
}

/* --------------------------------------------------------- wideresnet */

static int build_wideresnet(vl_model_t *m, const vl_model_config_t *c)
{
    const char *rule = model_depth_rule(c->kind, c->depth, 0);
    if (rule) return VL_FAIL(VL_EINPUT, "model.depth: %s, got %d", rule, c->depth);
    if (c->widen < 1) return VL_FAIL(VL_EINPUT, "model.widen: a wideresnet's widening factor is >= 1, got %d", c->widen);
    int n = (c->depth - 4) / 6, a;
    CHECK(graph_input(m, 1, &a));
    CHECK(graph_conv(m, "conv1", a, ch(c, 16), 3, 1, 1, 1, &a));
    char nm[64];
    for (int s = 0; s < 3; s++)
        for (int b = 0; b < n; b++) {
            int planes = ch(c, (16 << s) * c->widen), stride = (s > 0 && b == 0) ? 2 : 1, in = a, cin, h, w, sc = a;
            graph_shape(m, in, &cin, &h, &w);
            char name[32];
            snprintf(name, sizeof name, "layer%d_%d", s + 1, b);
            CHECK(bn_relu_conv(m, name, 1, 1, in, planes, 3, 1, 1, 0, &a));
            CHECK(bn_relu_conv(m, name, 2, 2, a, planes, 3, stride, 1, 0, &a));
            if (stride != 1 || cin != planes) {
                snprintf(nm, sizeof nm, "%s_shortcut_0", name);
                CHECK(graph_conv(m, nm, in, planes, 1, stride, 0, 1, &sc));
            }
            CHECK(graph_add(m, a, sc, &a));
        }
    CHECK(graph_bn(m, "bn1", a, &a));
    CHECK(graph_relu(m, a, &a));
    CHECK(head(m, a, "linear", c->out_dim));
    char desc[48];
    snprintf(desc, sizeof desc, "wideresnet%d-%d", c->depth, c->widen);
    graph_name(m, desc);
    return VL_OK;
}

const char *model_depth_rule(int kind, int depth, int preact_shortcut)
{
    switch (kind) {
    case MODEL_RESNET:
        return depth < 8 || (depth - 2) % 6 ? "a resnet's depth is 6n+2 >= 8 (20, 32, 44, 56, 110)" : NULL;
    case MODEL_PRERESNET:
        if (depth >= 44 && !preact_shortcut ? (depth - 2) % 9 == 0 : depth >= 8 && (depth - 2) % 6 == 0) return NULL;
        return "a preresnet's depth is 6n+2 below 44 (8, 14, 20, 26, 32, 38: basic blocks) or 9n+2 from 44 (47, 56, "
               "110, 164: bottleneck blocks)";
    case MODEL_VGG:
        return depth == 11 || depth == 13 || depth == 16 || depth == 19 ? NULL : "a vgg's depth is 11, 13, 16 or 19";
    case MODEL_WIDERESNET:
        return depth < 10 || (depth - 4) % 6 ? "a wideresnet's depth is 6n+4 >= 10 (16, 22, 28, 40)" : NULL;
    default: return NULL;
    }
}

int model_default_depth(int kind)
{
    switch (kind) {
    case MODEL_RESNET: return 20;
    case MODEL_PRERESNET: return 8;
    case MODEL_VGG: return 16;
    case MODEL_WIDERESNET: return 28;
    default: return 0;
    }
}

int families_build(vl_model_t *m, const vl_model_config_t *c)
{
    if (!(c->dropout >= 0 && c->dropout < 1)) return VL_FAIL(VL_EINPUT, "model.dropout: %g is not in [0, 1)", c->dropout);
    if (c->dropout > 0 && c->kind != MODEL_MLP && c->kind != MODEL_VGG)
        return VL_FAIL(VL_EINPUT, "model.dropout: the %s family has no dropout layers (mlp: after each hidden layer; vgg: "
                                  "before the classifier's hidden layers)", model_kind_name(c->kind));
    if (c->width_factor < 0 || c->width_factor > 64)
        return VL_FAIL(VL_EINPUT, "model.width_factor: %g is not in (0, 64]", c->width_factor);
    switch (c->kind) {
    case MODEL_MLP: return build_mlp(m, c);
    case MODEL_CONVNET: return build_convnet(m, c);
    case MODEL_PRERESNET: return build_preresnet(m, c);
    case MODEL_RESNET: return build_resnet(m, c);
    case MODEL_VGG: return build_vgg(m, c);
    case MODEL_WIDERESNET: return build_wideresnet(m, c);
    case MODEL_GRAPH: return graphdesc_build(m, c->graph);
    default: return VL_FAIL(VL_EINPUT, "model: unknown kind %d", c->kind);
    }
}
