/* fuzz_onnx.c — libFuzzer target: the ONNX importer of `valley import` (onnx_parse: protobuf,
 * the graph mapped onto valley's layers, the tensors) and, for every input it accepts, the
 * network built from the description it produced (graphdesc via model_create) with the
 * imported tensors checked against the built network's, as `valley import` does.
 * Input: the bytes of a .onnx file. */
#include <stdint.h>

#include "fuzz_common.h"
#include "valley/onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vl_error_clear();
    onnx_import_t im;
    int st = onnx_parse(data, size, "fuzz.onnx", &im);
    fz_check_status(st, "onnx_parse");
    if (st) return 0;
    vl_model_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.kind = MODEL_GRAPH;
    cfg.graph = im.desc; /* not interned: a long campaign would keep every description */
    cfg.width_factor = 1.0;
    cfg.in_c = im.in_c, cfg.in_h = im.in_h, cfg.in_w = im.in_w, cfg.out_dim = im.out_dim;
    vl_model_t *m = NULL;
    st = model_create(&cfg, 1, &m);
    fz_check_status(st, "model_create of an imported graph");
    if (!st) {
        int nt;
        const vl_tensor_t *t = model_tensors(m, &nt);
        if (nt != im.ntensors) abort(); /* the importer named every tensor of the layers it described */
        for (int i = 0; i < nt; i++) {
            int found = 0;
            for (int k = 0; k < im.ntensors && !found; k++)
                found = !strcmp(im.tensors[k].name, t[i].name) && im.tensors[k].numel == t[i].numel;
            if (!found) abort();
        }
        model_free(m);
    }
    onnx_import_free(&im);
    return 0;
}
