/* fuzz_idx.c — libFuzzer target: the IDX reader of `valley prepare fashion-mnist`
 * (data_prepare_fashion_mnist on a scratch directory).
 * Input: byte 0 = flags (bit k set: file k is named *.gz, which zlib reads
 * transparently when it is not gzip data); then up to four parts cut at FZ_SEP:
 * train-images, train-labels, t10k-images, t10k-labels. Missing parts are valid
 * 3-image / 3-label files. On success the output file is removed again. */
#include <stdint.h>

#include "fuzz_common.h"
#include "valley/data.h"

static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16); p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                                   "t10k-labels-idx1-ubyte"};
    static unsigned char images[16 + 3 * 784], labels[8 + 3];
    be32(images, 0x803); be32(images + 4, 3); be32(images + 8, 28); be32(images + 12, 28);
    for (int i = 0; i < 3 * 784; i++) images[16 + i] = (unsigned char)(i * 7);
    be32(labels, 0x801); be32(labels + 4, 3); labels[8] = 1; labels[9] = 9; labels[10] = 0;
    vl_error_clear();
    unsigned flags = size > 0 ? data[0] : 0;
    const unsigned char *part[4];
    size_t len[4];
    int n = size > 0 ? fz_split(data + 1, size - 1, 4, part, len) : 0;
    for (int k = 0; k < 4; k++) {
        char gz[64], plain[64];
        snprintf(plain, sizeof plain, "%s", names[k]);
        snprintf(gz, sizeof gz, "%s.gz", names[k]);
        fz_remove(gz);
        fz_remove(plain);
        const void *p = k < n ? (const void *)part[k] : (k % 2 ? (const void *)labels : (const void *)images);
        size_t l = k < n ? len[k] : (k % 2 ? sizeof labels : sizeof images);
        fz_write(k, (flags >> k) & 1 ? gz : plain, p, l);
    }
    char out[512];
    snprintf(out, sizeof out, "%s/out/fashion-mnist.nc", fz_dir());
    int st = data_prepare_fashion_mnist(fz_dir(), out, NULL);
    fz_check_status(st, "data_prepare_fashion_mnist");
    unlink(out);
    return 0;
}
