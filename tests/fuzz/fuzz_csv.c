/* fuzz_csv.c — libFuzzer target: the CSV reader of `valley prepare diabetes`
 * (data_prepare_diabetes on a scratch directory).
 * Input: byte 0 = flags (bit 0: the table is named .csv.gz, bit 1: the target), then
 * up to two parts cut at FZ_SEP: diabetes_data_raw.csv and diabetes_target.csv.
 * Missing parts: a valid 12-row table / target. On success the output is removed. */
#include <stdint.h>

#include "fuzz_common.h"
#include "valley/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char table[4096], target[1024];
    if (!table[0]) {
        size_t a = 0, b = 0;
        for (int r = 0; r < 12; r++) {
            for (int c = 0; c < 10; c++) a += (size_t)snprintf(table + a, sizeof table - a, "%s%d.5", c ? " " : "", r * 10 + c);
            a += (size_t)snprintf(table + a, sizeof table - a, "\n");
            b += (size_t)snprintf(target + b, sizeof target - b, "%d\n", 100 + r);
        }
    }
    static const char *names[2] = {"diabetes_data_raw.csv", "diabetes_target.csv"};
    vl_error_clear();
    unsigned flags = size > 0 ? data[0] : 0;
    const unsigned char *part[2];
    size_t len[2];
    int n = size > 0 ? fz_split(data + 1, size - 1, 2, part, len) : 0;
    for (int k = 0; k < 2; k++) {
        char gz[64];
        snprintf(gz, sizeof gz, "%s.gz", names[k]);
        fz_remove(gz);
        fz_remove(names[k]);
        const void *p = k < n ? (const void *)part[k] : (k ? (const void *)target : (const void *)table);
        size_t l = k < n ? len[k] : strlen(k ? target : table);
        fz_write(k, (flags >> k) & 1 ? gz : names[k], p, l);
    }
    char out[512];
    snprintf(out, sizeof out, "%s/out/diabetes.nc", fz_dir());
    int st = data_prepare_diabetes(fz_dir(), 7, out, NULL);
    fz_check_status(st, "data_prepare_diabetes");
    unlink(out);
    return 0;
}
