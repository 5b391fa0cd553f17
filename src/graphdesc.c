/* graphdesc.c — a network from its text description (graphdesc.h): every line checked before
 * the graph.h call it becomes, so that a file can claim nothing the builder would trust. */
#include "valley/graphdesc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/error.h"
#include "valley/graph.h"

enum { NAME_MAX_LEN = 48, TOK_MAX = 10 };

/* Splits a line (modified in place) into at most TOK_MAX blank-separated tokens. */
static int tokens(char *line, char **tok)
{
    int n = 0;
    for (char *p = strtok(line, " \t\r"); p; p = strtok(NULL, " \t\r")) {
        if (n == TOK_MAX) return TOK_MAX + 1;
        tok[n++] = p;
    }
    return n;
}

/* A decimal integer in [lo, hi], else 0 with *ok cleared. */
static int num(const char *s, int lo, int hi, int *ok)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) {
        *ok = 0;
        return 0;
    }
    return (int)v;
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_')) return 0;
    return 1;
}

typedef struct {
    int *id;       /* line index -> node id */
    char *spatial; /* line index -> 1 for a (C, H, W) plane, 0 for features */
    char **names;  /* names used so far */
    int nlines, nnames;
} desc_t;

static int name_take(desc_t *g, int line, const char *name)
{
    if (!valid_name(name))
        return VL_FAIL(VL_EINPUT, "model_graph line %d: '%.60s' is not a layer name (letters, digits, '_', at most %d)",
                       line, name, NAME_MAX_LEN);
    for (int i = 0; i < g->nnames; i++)
        if (!strcmp(g->names[i], name)) return VL_FAIL(VL_EINPUT, "model_graph line %d: layer name '%s' used twice", line, name);
    g->names[g->nnames++] = (char *)name;
    return VL_OK;
}

/* One node line (its text already split into tok[0..n-1]); the node's id goes to g->id[idx]. */
static int build_line(vl_model_t *m, desc_t *g, int line, int idx, char **tok, int n)
{
    const char *op = tok[0];
    int ok = 1, c, h, w, a = 0, id = -1, sp = 1; /* sp: the node's output is a plane */
#define WANT(k, usage)                                                                                             \
    do {                                                                                                           \
        if (n != (k)) return VL_FAIL(VL_EINPUT, "model_graph line %d: %s takes %s", line, op, usage);              \
    } while (0)
#define REF(s) (ok && (a = num((s), 0, idx - 1, &ok), ok) ? g->id[a] : -1)
    if (idx == 0) {
        if (strcmp(op, "input") || n != 2 || (strcmp(tok[1], "spatial") && strcmp(tok[1], "dense")))
            return VL_FAIL(VL_EINPUT, "model_graph line %d: the first node must be 'input spatial' or 'input dense'", line);
        sp = !strcmp(tok[1], "spatial");
        CHECK(graph_input(m, sp, &id));
    } else if (!strcmp(op, "conv")) {
        WANT(8, "NAME IN COUT K STRIDE PAD BIAS");
        const int in = REF(tok[2]);
        const int cout = num(tok[3], 1, 1 << 16, &ok), k = num(tok[4], 1, 15, &ok), s = num(tok[5], 1, 8, &ok);
        const int pad = num(tok[6], 0, 15, &ok), bias = num(tok[7], 0, 1, &ok);
        if (!ok) return VL_FAIL(VL_EINPUT, "model_graph line %d: conv: a bad number or a reference not before this line", line);
        graph_shape(m, in, &c, &h, &w);
        if (!g->spatial[a]) return VL_FAIL(VL_EINPUT, "model_graph line %d: conv %s reads features, not a plane", line, tok[1]);
        if (h + 2 * pad < k || w + 2 * pad < k)
            return VL_FAIL(VL_EINPUT, "model_graph line %d: conv %s: a %dx%d kernel on a %dx%d plane padded by %d", line,
                           tok[1], k, k, h, w, pad);
        CHECK(name_take(g, line, tok[1]));
        if ((double)cout * c * k * k > 2147483648.0)
            return VL_FAIL(VL_EINPUT, "model_graph line %d: conv %s: more than 2^31 weights", line, tok[1]);
        CHECK(graph_conv(m, tok[1], in, cout, k, s, pad, bias, &id));
    } else if (!strcmp(op, "linear")) {
        WANT(4, "NAME IN FOUT");
        const int in = REF(tok[2]), fout = num(tok[3], 1, 1 << 20, &ok);
        if (!ok) return VL_FAIL(VL_EINPUT, "model_graph line %d: linear: a bad number or a reference not before this line", line);
        graph_shape(m, in, &c, &h, &w);
        if (g->spatial[a])
            return VL_FAIL(VL_EINPUT, "model_graph line %d: linear %s reads a %dx%dx%d plane: flatten it first", line, tok[1], c, h, w);
        if ((double)fout * c > 2147483648.0)
            return VL_FAIL(VL_EINPUT, "model_graph line %d: linear %s: more than 2^31 weights", line, tok[1]);
        CHECK(name_take(g, line, tok[1]));
        sp = 0;
        CHECK(graph_linear(m, tok[1], in, fout, &id));
    } else if (!strcmp(op, "bn")) {
        WANT(3, "NAME IN");
        const int in = REF(tok[2]);
        if (!ok) return VL_FAIL(VL_EINPUT, "model_graph line %d: bn: a reference not before this line", line);
        if (!g->spatial[a]) return VL_FAIL(VL_EINPUT, "model_graph line %d: bn %s: batch norm of features (BatchNorm1d) is not "
                                                      "implemented", line, tok[1]);
        CHECK(name_take(g, line, tok[1]));
        CHECK(graph_bn(m, tok[1], in, &id));
    } else if (!strcmp(op, "relu") || !strcmp(op, "maxpool") || !strcmp(op, "avgpool") || !strcmp(op, "flatten")) {
        WANT(2, "IN");
        const int in = REF(tok[1]);
        if (!ok) return VL_FAIL(VL_EINPUT, "model_graph line %d: %s: a reference not before this line", line, op);
        graph_shape(m, in, &c, &h, &w);
        const int dense = !g->spatial[a];
        sp = 0;
        if (!strcmp(op, "relu")) {
            sp = !dense;
            CHECK(graph_relu(m, in, &id));
        } else if (dense && strcmp(op, "flatten"))
            return VL_FAIL(VL_EINPUT, "model_graph line %d: %s of features, not of a plane", line, op);
        else if (!strcmp(op, "flatten")) {
            if (dense) id = in; /* already (N, features) */
            else CHECK(graph_flatten(m, in, &id));
        } else if (!strcmp(op, "maxpool")) {
            if (h < 2 || w < 2) return VL_FAIL(VL_EINPUT, "model_graph line %d: maxpool of a %dx%d plane", line, h, w);
            sp = 1;
            CHECK(graph_maxpool(m, in, &id));
        } else {
            CHECK(graph_avgpool(m, in, &id));
        }
    } else if (!strcmp(op, "dropout")) {
        WANT(3, "IN P");
        const int in = REF(tok[1]);
        char *end;
        const double pr = strtod(tok[2], &end);
        if (!ok || *end || !(pr >= 0 && pr < 1))
            return VL_FAIL(VL_EINPUT, "model_graph line %d: dropout: a reference not before this line or a probability "
                                      "outside [0, 1)", line);
        sp = g->spatial[a];
        CHECK(graph_dropout(m, in, pr, &id));
    } else if (!strcmp(op, "add")) {
        WANT(3, "A B");
        const int x = REF(tok[1]);
        const int xs = ok ? g->spatial[a] : 0;
        const int y = REF(tok[2]);
        if (!ok) return VL_FAIL(VL_EINPUT, "model_graph line %d: add: a reference not before this line", line);
        if (xs != g->spatial[a]) return VL_FAIL(VL_EINPUT, "model_graph line %d: add of a plane and features", line);
        sp = xs;
        CHECK(graph_add(m, x, y, &id));
    } else {
        return VL_FAIL(VL_EINPUT, "model_graph line %d: unknown node '%.40s' (input, conv, linear, bn, relu, maxpool, "
                                  "avgpool, flatten, add, dropout)", line, op);
    }
#undef WANT
#undef REF
    g->id[idx] = id;
    g->spatial[idx] = (char)sp;
    return VL_OK;
}

int graphdesc_build(vl_model_t *m, const char *desc)
{
    if (!desc) return VL_FAIL(VL_EINPUT, "model_graph: no description");
    const size_t len = strlen(desc);
    if (len > GRAPHDESC_MAX_BYTES) return VL_FAIL(VL_EINPUT, "model_graph: %zu bytes, more than %d", len, GRAPHDESC_MAX_BYTES);
    char *text = malloc(len + 1);
    desc_t g = {0};
    g.id = calloc(GRAPHDESC_MAX_NODES, sizeof(int));
    g.names = calloc(GRAPHDESC_MAX_NODES, sizeof(char *));
    g.spatial = calloc(GRAPHDESC_MAX_NODES, 1);
    if (!text || !g.id || !g.names || !g.spatial) {
        free(text), free(g.id), free(g.names), free(g.spatial);
        return VL_FAIL(VL_EIO, "out of memory for the model graph");
    }
    memcpy(text, desc, len + 1);
    int st = VL_OK, idx = 0, line = 0;
    for (char *p = text; p && !st;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        line++;
        char *tok[TOK_MAX];
        const int n = p[0] == '#' ? 0 : tokens(p, tok);
        if (n > TOK_MAX) st = VL_FAIL(VL_EINPUT, "model_graph line %d: too many fields", line);
        else if (n > 0 && idx == GRAPHDESC_MAX_NODES)
            st = VL_FAIL(VL_EINPUT, "model_graph: more than %d nodes", GRAPHDESC_MAX_NODES);
        else if (n > 0) st = build_line(m, &g, line, idx++, tok, n);
        p = nl ? nl + 1 : NULL;
    }
    if (!st && idx < 2) st = VL_FAIL(VL_EINPUT, "model_graph: no layer after the input");
    if (!st) {
        int c, h, w;
        graph_shape(m, g.id[idx - 1], &c, &h, &w);
        if (h != 1 || w != 1 || c != model_out_dim(m))
            st = VL_FAIL(VL_EINPUT, "model_graph: the last node gives %dx%dx%d values per sample, the model has %d outputs "
                                    "(end with a linear layer or a flatten)", c, h, w, model_out_dim(m));
    }
    if (!st) {
        char name[48];
        snprintf(name, sizeof name, "graph of %d nodes", idx);
        graph_name(m, name);
    }
    if (!st && g.spatial[idx - 1]) st = VL_FAIL(VL_EINPUT, "model_graph: the last node is a plane: end with a linear layer, "
                                                           "an avgpool or a flatten");
    free(text);
    free(g.id);
    free(g.names);
    free(g.spatial);
    CHECK(st);
    return VL_OK;
}

typedef struct interned {
    struct interned *next;
    char text[];
} interned_t;
static interned_t *interned_head;

static void intern_free(void)
{
    while (interned_head) {
        interned_t *n = interned_head->next;
        free(interned_head);
        interned_head = n;
    }
}

const char *graphdesc_intern(const char *text)
{
    for (interned_t *n = interned_head; n; n = n->next)
        if (!strcmp(n->text, text)) return n->text;
    const size_t len = strlen(text);
    interned_t *n = malloc(sizeof *n + len + 1);
    if (!n) return NULL;
    memcpy(n->text, text, len + 1);
    if (!interned_head) atexit(intern_free);
    n->next = interned_head;
    interned_head = n;
    return n->text;
}
