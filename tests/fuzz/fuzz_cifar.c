/* fuzz_cifar.c — libFuzzer target: the CIFAR binary reader of `valley prepare cifar10|cifar100`
 * (data_prepare_cifar on a scratch directory).
 * Input: byte 0 = flags (bit 0: CIFAR-100, else CIFAR-10; bit 1: the files in the archive's
 * subdirectory); then parts cut at FZ_SEP: the files in order (CIFAR-10: data_batch_1..5.bin,
 * test_batch.bin; CIFAR-100: train.bin, test.bin). Missing parts are valid 2-record files.
 * On success the output file is removed again. */
#include <stdint.h>
#include <sys/stat.h>

#include "fuzz_common.h"
#include "valley/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *n10[6] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                                 "data_batch_5.bin", "test_batch.bin"};
    static const char *n100[2] = {"train.bin", "test.bin"};
    static unsigned char r10[2 * 3073], r100[2 * 3074];
    for (int i = 0; i < 2; i++) {
        r10[i * 3073] = (unsigned char)(i * 7);
        r100[i * 3074] = (unsigned char)(i * 19);
        r100[i * 3074 + 1] = (unsigned char)(i * 99);
        for (int k = 0; k < 3072; k++) r10[i * 3073 + 1 + k] = r100[i * 3074 + 2 + k] = (unsigned char)(k * 13 + i);
    }
    vl_error_clear();
    const unsigned flags = size > 0 ? data[0] : 0;
    const int c100 = flags & 1, nfiles = c100 ? 2 : 6;
    const unsigned char *part[6];
    size_t len[6];
    int n = size > 0 ? fz_split(data + 1, size - 1, nfiles, part, len) : 0;
    char sub[64];
    snprintf(sub, sizeof sub, "%s", c100 ? "cifar-100-binary" : "cifar-10-batches-bin");
    for (int k = 0; k < 6; k++) { /* both layouts' files removed: an earlier input may have left either */
        char p[128];
        snprintf(p, sizeof p, "%s", n10[k]); fz_remove(p);
        snprintf(p, sizeof p, "cifar-10-batches-bin/%s", n10[k]); fz_remove(p);
        if (k < 2) {
            snprintf(p, sizeof p, "%s", n100[k]); fz_remove(p);
            snprintf(p, sizeof p, "cifar-100-binary/%s", n100[k]); fz_remove(p);
        }
    }
    if (flags & 2) {
        char d[600];
        snprintf(d, sizeof d, "%s/%s", fz_dir(), sub);
        mkdir(d, 0700);
    }
    for (int k = 0; k < nfiles; k++) {
        char name[128];
        snprintf(name, sizeof name, "%s%s%s", flags & 2 ? sub : "", flags & 2 ? "/" : "", c100 ? n100[k] : n10[k]);
        const void *p = k < n ? (const void *)part[k] : (c100 ? (const void *)r100 : (const void *)r10);
        size_t l = k < n ? len[k] : (c100 ? sizeof r100 : sizeof r10);
        fz_write(k, name, p, l);
    }
    char out[512];
    snprintf(out, sizeof out, "%s/out/cifar.nc", fz_dir());
    int st = data_prepare_cifar(c100 ? 100 : 10, fz_dir(), out, NULL);
    fz_check_status(st, "data_prepare_cifar");
    unlink(out);
    return 0;
}
