/* test_data.c — dataset conversion and sharded reading.
 *
 * Builds tiny IDX files (gzip'd and plain) and CSV tables in a scratch directory and
 * checks: a good set converts, with pixel_mean/std equal to a direct double
 * recomputation; every kind of malformed input fails with VL_EINPUT naming the file
 * and leaves no output (neither final nor tmp); shards of 1..4 ranks partition the
 * rows and hold exactly the rows of a full read; corrupt .nc files fail cleanly;
 * toy1d and diabetes have the documented shapes and statistics (diabetes cross-checked
 * with NumPy when $PYTHON is set); the real Fashion-MNIST converts (~1 s) when
 * installed. */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mpi.h>
#include <netcdf.h>
#include <zlib.h>

#include "valley/data.h"
#include "valley/error.h"
#include "valley/ncio.h"
#include "valley/test.h"

static char root[512];

enum { NTR = 10, NTE = 7, PIX = 784 };
static unsigned char train_px[NTR * PIX], test_px[NTE * PIX], train_lb[NTR], test_lb[NTE];

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* number of directory entries (other than . and ..) in d; 0 if d does not exist */
static int count_entries(const char *d)
{
    DIR *dp = opendir(d);
    if (!dp) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(dp);
    return n;
}

static void write_bytes(const char *path, int gz, const unsigned char *b, size_t n)
{
    if (gz) {
        gzFile g = gzopen(path, "wb");
        if (!g) { perror(path); return; }
        if (n) gzwrite(g, b, (unsigned)n);
        gzclose(g);
    } else {
        FILE *fp = fopen(path, "wb");
        if (!fp) { perror(path); return; }
        fwrite(b, 1, n, fp);
        fclose(fp);
    }
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

typedef struct {
    uint32_t magic;       /* 0 = the right one */
    uint32_t count;       /* header count; 0 = the real one */
    uint32_t h, w;        /* 0 = 28 */
    long cut;             /* >= 0: keep only this many bytes */
    int trailing;         /* extra bytes appended */
} idx_opts_t;

/* Writes an IDX file (images if ndims == 3) from payload, altered by o. */
static void write_idx(const char *path, int gz, int ndims, uint32_t n, const unsigned char *payload,
                      size_t payload_len, idx_opts_t o)
{
    size_t header = 4 + 4 * (size_t)ndims, total = header + payload_len + (size_t)o.trailing;
    unsigned char *b = calloc(total, 1);
    put_be32(b, o.magic ? o.magic : (ndims == 3 ? 0x803u : 0x801u));
    put_be32(b + 4, o.count ? o.count : n);
    if (ndims == 3) {
        put_be32(b + 8, o.h ? o.h : 28);
        put_be32(b + 12, o.w ? o.w : 28);
    }
    memcpy(b + header, payload, payload_len);
    for (int i = 0; i < o.trailing; i++) b[header + payload_len + (size_t)i] = (unsigned char)i;
    if (o.cut >= 0 && (size_t)o.cut < total) total = (size_t)o.cut;
    write_bytes(path, gz, b, total);
    free(b);
}

static const idx_opts_t OK = {0, 0, 0, 0, -1, 0};

/* The four files of a good set in dir ("" or ".gz" names). */
static void write_good_set(const char *dir, int gz)
{
    char p[800];
    const char *ext = gz ? ".gz" : "";
    mkdir(dir, 0777);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte%s", dir, ext);
    write_idx(p, gz, 3, NTR, train_px, sizeof train_px, OK);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte%s", dir, ext);
    write_idx(p, gz, 1, NTR, train_lb, sizeof train_lb, OK);
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte%s", dir, ext);
    write_idx(p, gz, 3, NTE, test_px, sizeof test_px, OK);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte%s", dir, ext);
    write_idx(p, gz, 1, NTE, test_lb, sizeof test_lb, OK);
}

static void make_pixels(void)
{
    uint32_t s = 12345;
    for (size_t i = 0; i < sizeof train_px; i++) {
        s = s * 1664525u + 1013904223u;
        train_px[i] = (unsigned char)(s >> 24);
    }
    train_px[5] = 255; /* make sure the extremes occur */
    train_px[6] = 0;
    for (size_t i = 0; i < sizeof test_px; i++) test_px[i] = (unsigned char)((i * 7 + 3) % 256);
    for (int i = 0; i < NTR; i++) train_lb[i] = (unsigned char)((i * 3) % 10);
    for (int i = 0; i < NTE; i++) test_lb[i] = (unsigned char)((i * 7 + 1) % 10);
}

/* --------------------------------------------------------- good conversion */

static double ref_mean, ref_std;

static void check_converted(const char *out)
{
    int ncid;
    int st = ncio_open(out, &ncid);
    T_CHECK(st == VL_OK, "open %s: %s", out, vl_error_message());
    if (st) return;
    double mean = 0, std = 0, scale = 0, ncls = 0;
    T_CHECK(ncio_get_att_double(ncid, NC_GLOBAL, out, "pixel_mean", 1, &mean) == VL_OK, "mean");
    T_CHECK(ncio_get_att_double(ncid, NC_GLOBAL, out, "pixel_std", 1, &std) == VL_OK, "std");
    T_CHECK(ncio_get_att_double(ncid, NC_GLOBAL, out, "pixel_scale", 1, &scale) == VL_OK, "scale");
    T_CHECK(ncio_get_att_double(ncid, NC_GLOBAL, out, "n_classes", 1, &ncls) == VL_OK && ncls == 10,
            "n_classes");
    T_CLOSE(mean, ref_mean, 1e-13, 0, "pixel_mean");
    T_CLOSE(std, ref_std, 1e-13, 0, "pixel_std");
    T_CLOSE(scale, 1.0 / 255.0, 1e-15, 0, "pixel_scale");
    char *s = NULL;
    T_CHECK(ncio_get_att_text(ncid, NC_GLOBAL, out, "class_names", &s) == VL_OK && s &&
                strcmp(s, "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,"
                          "Ankle boot") == 0, "class_names '%s'", s ? s : "");
    free(s);
    T_CHECK(ncio_get_att_text(ncid, NC_GLOBAL, out, "deck", &s) == VL_OK && s &&
                strcmp(s, "[data]\ndataset = fashion-mnist\n") == 0, "deck");
    free(s);
    T_CHECK(ncio_get_att_text(ncid, NC_GLOBAL, out, "task", &s) == VL_OK && s &&
                strcmp(s, "classification") == 0, "task");
    free(s);
    long long lx[4] = {NTR, 1, 28, 28}, ly[1] = {NTR}, tx[4] = {NTE, 1, 28, 28}, ty[1] = {NTE};
    int v;
    static unsigned char bx[NTR * PIX];
    int by[NTR];
    T_CHECK(ncio_var(ncid, out, "train_x", NC_UBYTE, 4, lx, &v, NULL) == VL_OK &&
                nc_get_var_uchar(ncid, v, bx) == NC_NOERR && memcmp(bx, train_px, sizeof bx) == 0,
            "train_x: %s", vl_error_message());
    T_CHECK(ncio_var(ncid, out, "train_y", NC_INT, 1, ly, &v, NULL) == VL_OK &&
                nc_get_var_int(ncid, v, by) == NC_NOERR, "train_y");
    for (int i = 0; i < NTR; i++) T_CHECK(by[i] == train_lb[i], "train_y[%d]", i);
    T_CHECK(ncio_var(ncid, out, "test_x", NC_UBYTE, 4, tx, &v, NULL) == VL_OK &&
                nc_get_var_uchar(ncid, v, bx) == NC_NOERR && memcmp(bx, test_px, sizeof test_px) == 0,
            "test_x");
    T_CHECK(ncio_var(ncid, out, "test_y", NC_INT, 1, ty, &v, NULL) == VL_OK &&
                nc_get_var_int(ncid, v, by) == NC_NOERR, "test_y");
    for (int i = 0; i < NTE; i++) T_CHECK(by[i] == test_lb[i], "test_y[%d]", i);
    nc_close(ncid);
}

static void test_good(char *out_gz, size_t cap)
{
    /* reference statistics, directly in double */
    double sum = 0, ss = 0;
    for (int i = 0; i < NTR * PIX; i++) sum += train_px[i] / 255.0;
    ref_mean = sum / (NTR * PIX);
    for (int i = 0; i < NTR * PIX; i++) ss += (train_px[i] / 255.0 - ref_mean) * (train_px[i] / 255.0 - ref_mean);
    ref_std = sqrt(ss / (NTR * PIX));

    char src[700], out[800];
    snprintf(src, sizeof src, "%s/good_gz", root);
    write_good_set(src, 1);
    snprintf(out_gz, cap, "%s/out_gz/data/fashion-mnist.nc", root);
    vl_error_clear();
    int st = data_prepare_fashion_mnist(src, out_gz, "[data]\ndataset = fashion-mnist\n");
    T_CHECK(st == VL_OK, "gz set converts: %s", vl_error_message());
    check_converted(out_gz);
    char outdir[800];
    snprintf(outdir, sizeof outdir, "%s/out_gz/data", root);
    T_CHECK(count_entries(outdir) == 1, "only the final file in the output dir");

    snprintf(src, sizeof src, "%s/good_plain", root);
    write_good_set(src, 0);
    snprintf(out, sizeof out, "%s/out_plain.nc", root);
    st = data_prepare_fashion_mnist(src, out, "[data]\ndataset = fashion-mnist\n");
    T_CHECK(st == VL_OK, "plain set converts: %s", vl_error_message());
    check_converted(out);
}

/* --------------------------------------------------------- bad inputs */

typedef struct {
    const char *name;     /* case name */
    const char *file;     /* base name of the file altered (without .gz) */
    int gz;               /* write the altered file gzip'd */
    idx_opts_t o;
    int remove;           /* delete the file instead */
    int labels_n;         /* labels file with this many labels (0: as usual) */
    unsigned char bad_label;
    const char *expect;   /* substring of the message besides the file name */
} bad_case_t;

static void run_bad(const bad_case_t *c)
{
    char dir[700], p[800], out[900], outdir[800];
    snprintf(dir, sizeof dir, "%s/bad_%s", root, c->name);
    write_good_set(dir, 1);
    int is_images = strstr(c->file, "images") != NULL, is_train = strncmp(c->file, "train", 5) == 0;
    snprintf(p, sizeof p, "%s/%s.gz", dir, c->file);
    unlink(p);
    snprintf(p, sizeof p, "%s/%s%s", dir, c->file, c->gz ? ".gz" : "");
    if (!c->remove) {
        if (is_images) {
            write_idx(p, c->gz, 3, is_train ? NTR : NTE, is_train ? train_px : test_px,
                      is_train ? sizeof train_px : sizeof test_px, c->o);
        } else {
            unsigned char lb[NTR];
            int n = is_train ? NTR : NTE;
            memcpy(lb, is_train ? train_lb : test_lb, (size_t)n);
            if (c->bad_label) lb[n / 2] = c->bad_label;
            if (c->labels_n) n = c->labels_n;
            write_idx(p, c->gz, 1, (uint32_t)n, lb, (size_t)n, c->o);
        }
    }
    snprintf(outdir, sizeof outdir, "%s/out", dir);
    snprintf(out, sizeof out, "%s/fashion-mnist.nc", outdir);
    vl_error_clear();
    int st = data_prepare_fashion_mnist(dir, out, NULL);
    printf("  %-16s -> %d %s\n", c->name, st, vl_error_message());
    T_CHECK(st == VL_EINPUT, "%s: status %d", c->name, st);
    T_CHECK(contains(vl_error_message(), c->file), "%s: message names %s: %s", c->name, c->file,
            vl_error_message());
    T_CHECK(contains(vl_error_message(), c->expect), "%s: message has '%s': %s", c->name, c->expect,
            vl_error_message());
    T_CHECK(!exists(out) && count_entries(outdir) == 0, "%s: no output left", c->name);
    vl_error_clear();
}

static void test_bad(void)
{
    const bad_case_t cases[] = {
        {"magic", "train-images-idx3-ubyte", 1, {0x804, 0, 0, 0, -1, 0}, 0, 0, 0, "magic"},
        {"magic_labels", "t10k-labels-idx1-ubyte", 1, {0x803, 0, 0, 0, -1, 0}, 0, 0, 0, "magic"},
        {"truncated", "train-images-idx3-ubyte", 1, {0, 0, 0, 0, 1000, 0}, 0, 0, 0,
         "truncated: expected 7856 bytes, got 1000"},
        {"truncated_plain", "t10k-images-idx3-ubyte", 0, {0, 0, 0, 0, 5000, 0}, 0, 0, 0,
         "truncated: expected 5504 bytes, got 5000"},
        {"truncated_head", "t10k-labels-idx1-ubyte", 1, {0, 0, 0, 0, 6, 0}, 0, 0, 0, "truncated"},
        {"count_lies", "train-images-idx3-ubyte", 1, {0, 1000000, 0, 0, -1, 0}, 0, 0, 0,
         "truncated: expected 784000016 bytes, got 7856"},
        {"trailing", "train-labels-idx1-ubyte", 1, {0, 0, 0, 0, -1, 3}, 0, 0, 0,
         "trailing bytes: expected 18 bytes, got 21"},
        {"trailing_plain", "train-images-idx3-ubyte", 0, {0, 0, 0, 0, -1, 1}, 0, 0, 0,
         "trailing bytes"},
        {"dims", "t10k-images-idx3-ubyte", 1, {0, 0, 28, 27, -1, 0}, 0, 0, 0, "28x27"},
        {"label", "train-labels-idx1-ubyte", 1, {0, 0, 0, 0, -1, 0}, 0, 0, 10, "label 10"},
        {"counts", "t10k-labels-idx1-ubyte", 1, {0, 0, 0, 0, -1, 0}, 0, 6, 0,
         "6 labels, but"},
        {"missing", "train-labels-idx1-ubyte", 1, {0, 0, 0, 0, -1, 0}, 1, 0, 0,
         "No such file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_bad(&cases[i]);

    /* gzip-level damage: the compressed stream cut short, and flipped bytes */
    char dir[700], p[800], out[800];
    for (int k = 0; k < 2; k++) {
        snprintf(dir, sizeof dir, "%s/bad_gzip%d", root, k);
        write_good_set(dir, 1);
        snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
        FILE *fp = fopen(p, "rb");
        unsigned char buf[16384];
        size_t n = fp ? fread(buf, 1, sizeof buf, fp) : 0;
        if (fp) fclose(fp);
        T_CHECK(n > 200, "gz file read");
        if (k == 0) {
            n /= 2;
        } else {
            for (size_t i = n / 2; i < n / 2 + 16; i++) buf[i] ^= 0x5A;
        }
        write_bytes(p, 0, buf, n);
        snprintf(out, sizeof out, "%s/out.nc", dir);
        vl_error_clear();
        int st = data_prepare_fashion_mnist(dir, out, NULL);
        printf("  gzip damage %d   -> %d %s\n", k, st, vl_error_message());
        T_CHECK(st == VL_EINPUT && contains(vl_error_message(), "train-images-idx3-ubyte.gz"),
                "gzip damage %d: %d %s", k, st, vl_error_message());
        T_CHECK(!exists(out), "gzip damage: no output");
        snprintf(p, sizeof p, "%s", dir);
        T_CHECK(count_entries(p) == 4, "gzip damage: no tmp file left (%d entries)", count_entries(p));
    }
    vl_error_clear();
}

/* --------------------------------------------------------- sharded reading */

static void test_shards(const char *nc)
{
    vl_split_t full;
    vl_error_clear();
    int st = data_load(nc, "train", 0, 0, 1, &full);
    T_CHECK(st == VL_OK, "full load: %s", vl_error_message());
    if (st) return;
    T_CHECK(full.classification == 1 && full.n_classes == 10 && full.in_c == 1 && full.in_h == 28 &&
                full.in_w == 28 && full.in_dim == PIX && full.out_dim == 10 && full.n == NTR &&
                full.lo == 0 && full.hi == NTR && full.t == NULL && strcmp(full.dataset, "fashion-mnist") == 0,
            "full split description");
    /* independent normalisation */
    double maxerr = 0;
    for (int i = 0; i < NTR * PIX; i++) {
        double want = (train_px[i] / 255.0 - ref_mean) / ref_std;
        double e = fabs(full.x[i] - want);
        if (e > maxerr) maxerr = e;
    }
    T_CHECK(maxerr < 1e-5, "normalised pixels, max error %g", maxerr);
    for (int i = 0; i < NTR; i++) T_CHECK(full.y[i] == train_lb[i], "y[%d]", i);

    for (int P = 1; P <= 4; P++) {
        int64_t next = 0;
        for (int r = 0; r < P; r++) {
            vl_split_t s;
            st = data_load(nc, "train", 0, r, P, &s);
            T_CHECK(st == VL_OK, "load %d/%d: %s", r, P, vl_error_message());
            if (st) continue;
            T_CHECK(s.lo == (int64_t)NTR * r / P && s.hi == (int64_t)NTR * (r + 1) / P && s.lo == next &&
                        s.n == NTR, "shard %d/%d = [%lld, %lld)", r, P, (long long)s.lo, (long long)s.hi);
            next = s.hi;
            size_t rows = (size_t)(s.hi - s.lo);
            T_CHECK(memcmp(s.x, full.x + s.lo * PIX, rows * PIX * sizeof(float)) == 0,
                    "shard %d/%d rows equal the full read", r, P);
            T_CHECK(memcmp(s.y, full.y + s.lo, rows * sizeof(int32_t)) == 0, "shard %d/%d labels", r, P);
            data_free(&s);
            T_CHECK(s.x == NULL && s.y == NULL, "data_free clears");
        }
        T_CHECK(next == NTR, "shards of %d ranks cover [0, %d)", P, NTR);
    }
    /* subset: first 5 rows, 2 ranks -> [0,2) and [2,5) */
    vl_split_t s;
    st = data_load(nc, "train", 5, 1, 2, &s);
    T_CHECK(st == VL_OK && s.n == 5 && s.lo == 2 && s.hi == 5 &&
                memcmp(s.x, full.x + 2 * PIX, 3 * PIX * sizeof(float)) == 0, "subset shard");
    data_free(&s);
    /* more ranks than rows: empty shards are fine */
    st = data_load(nc, "test", 3, 0, 4, &s);
    T_CHECK(st == VL_OK && s.n == 3 && s.lo == 0 && s.hi == 0 && s.x != NULL, "empty shard");
    data_free(&s);
    st = data_load(nc, "test", 0, 3, 4, &s);
    T_CHECK(st == VL_OK && s.n == NTE && s.lo == 5 && s.hi == NTE && s.y[1] == test_lb[6],
            "test shard");
    data_free(&s);
    vl_error_clear();
    st = data_load(nc, "train", NTR + 1, 0, 1, &s);
    T_CHECK(st == VL_EINPUT && s.x == NULL && contains(vl_error_message(), "subset"),
            "subset too large: %s", vl_error_message());
    vl_error_clear();
    st = data_load(nc, "valid", 0, 0, 1, &s);
    T_CHECK(st == VL_EINPUT, "unknown split");
    vl_error_clear();
    st = data_load(nc, "train", 0, 2, 2, &s);
    T_CHECK(st == VL_EINPUT, "rank out of range");
    vl_error_clear();
    /* shard formula with large n stays exact in 64 bits */
    int64_t lo, hi;
    data_shard(2147483647LL, 3, 7, &lo, &hi);
    T_CHECK(lo == 920350134LL && hi == 1227133512LL, "data_shard large n: %lld %lld",
            (long long)lo, (long long)hi);
    data_free(&full);
}

static void copy_prefix(const char *from, const char *to, long n_keep, int scramble)
{
    FILE *fp = fopen(from, "rb");
    if (!fp) return;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n);
    if (fread(b, 1, (size_t)n, fp) != (size_t)n) n = 0;
    fclose(fp);
    if (n_keep < 0) n_keep = n + n_keep; /* negative: drop from the end */
    if (n_keep > n) n_keep = n;
    if (scramble) {
        uint32_t s = 99;
        for (long i = 0; i < n_keep; i++) {
            s = s * 1664525u + 1013904223u;
            b[i] = (unsigned char)(s >> 24);
        }
    }
    write_bytes(to, 0, b, (size_t)n_keep);
    free(b);
}

static void test_bad_nc(const char *good)
{
    char p[800];
    vl_split_t s;
    /* missing file: the hint names the dataset */
    snprintf(p, sizeof p, "%s/nowhere/fashion-mnist.nc", root);
    vl_error_clear();
    int st = data_load(p, "train", 0, 0, 1, &s);
    char want[1000];
    snprintf(want, sizeof want, "%s: No such file or directory (run `valley prepare fashion-mnist`)", p);
    T_CHECK(st == VL_EINPUT && strcmp(vl_error_message(), want) == 0, "missing: %s",
            vl_error_message());

    struct stat sb;
    long size = stat(good, &sb) == 0 ? (long)sb.st_size : 0;
    long keeps[5] = {0, 16, size / 2, -200, -1};
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "%s/corrupt%d.nc", root, i);
        if (i < 5) copy_prefix(good, p, keeps[i], 0);
        else copy_prefix(good, p, 4096, 1); /* random bytes */
        vl_error_clear();
        st = data_load(p, "train", 0, 0, 1, &s);
        if (st == VL_OK) st = data_load(p, "test", 0, 0, 1, &s);
        printf("  corrupt nc %d     -> %d %s\n", i, st, vl_error_message());
        T_CHECK(st == VL_EINPUT && contains(vl_error_message(), p) && s.x == NULL,
                "corrupt .nc %d: %d %s", i, st, vl_error_message());
        data_free(&s);
    }

    /* right structure, wrong content: float pixels; labels out of range */
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/wrong%d.nc", root, k);
        ncio_file_t f;
        int d[4], vx, vy, n10 = 10;
        double one = 1.0 / 255, mean = 0.5, sd = 0.25;
        st = ncio_create(&f, p, "wrong", NULL);
        if (!st) st = ncio_def_dim(&f, "train", 4, &d[0]);
        if (!st) st = ncio_def_dim(&f, "channel", 1, &d[1]);
        if (!st) st = ncio_def_dim(&f, "height", 2, &d[2]);
        if (!st) st = ncio_def_dim(&f, "width", 2, &d[3]);
        if (!st) st = ncio_def_var(&f, "train_x", k == 0 ? NC_FLOAT : NC_UBYTE, 4, d, "x", "1", &vx);
        if (!st) st = ncio_def_var(&f, "train_y", NC_INT, 1, d, "y", NULL, &vy);
        if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "dataset", "fashion-mnist");
        if (!st) st = ncio_put_att_text(&f, NC_GLOBAL, "task", "classification");
        if (!st) st = ncio_put_att_int(&f, NC_GLOBAL, "n_classes", 1, &n10);
        if (!st) st = ncio_put_att_double(&f, NC_GLOBAL, "pixel_scale", 1, &one);
        if (!st) st = ncio_put_att_double(&f, NC_GLOBAL, "pixel_mean", 1, &mean);
        if (!st) st = ncio_put_att_double(&f, NC_GLOBAL, "pixel_std", 1, &sd);
        if (!st) st = ncio_enddef(&f);
        int lab[4] = {1, 2, 12, 3};
        float fx[16] = {0};
        unsigned char ux[16] = {0};
        if (!st) st = ncio_check(k == 0 ? nc_put_var_float(f.ncid, vx, fx) : nc_put_var_uchar(f.ncid, vx, ux),
                                 VL_EIO, p, "x");
        if (!st) st = ncio_check(nc_put_var_int(f.ncid, vy, lab), VL_EIO, p, "y");
        if (!st) st = ncio_commit(&f);
        else ncio_abandon(&f);
        T_CHECK(st == VL_OK, "writing %s: %s", p, vl_error_message());
        vl_error_clear();
        st = data_load(p, "train", 0, 0, 1, &s);
        printf("  wrong nc %d       -> %d %s\n", k, st, vl_error_message());
        T_CHECK(st == VL_EINPUT && contains(vl_error_message(), p) &&
                    contains(vl_error_message(), k == 0 ? "expected ubyte" : "train_y[2] = 12"),
                "wrong content %d: %s", k, vl_error_message());
        T_CHECK(s.x == NULL && s.y == NULL, "nothing allocated after failure");
        /* a subset that stops before the bad label reads fine */
        if (k == 1) {
            st = data_load(p, "train", 2, 0, 1, &s);
            T_CHECK(st == VL_OK && s.n == 2 && s.in_dim == 4, "subset before bad label: %s",
                    vl_error_message());
            data_free(&s);
        }
        /* the test split does not exist in this file */
        vl_error_clear();
        st = data_load(p, "test", 0, 0, 1, &s);
        T_CHECK(st == VL_EINPUT && contains(vl_error_message(), "'test_x' not found"),
                "missing split: %s", vl_error_message());
    }
    vl_error_clear();
}

/* --------------------------------------------------------- regression */

static double toy_f(double x) { return sin(3.0 * x) + 0.3 * x * x * x; }

/* raw (n, cols) float variable into a malloc'd array */
static float *read_raw(const char *path, const char *name, size_t *n, size_t *cols)
{
    int ncid, v;
    size_t len[2];
    if (ncio_open(path, &ncid)) return NULL;
    float *a = NULL;
    if (ncio_var(ncid, path, name, NC_FLOAT, 2, NULL, &v, len) == VL_OK) {
        a = malloc(len[0] * len[1] * sizeof *a);
        if (nc_get_var_float(ncid, v, a) != NC_NOERR) {
            free(a);
            a = NULL;
        }
        *n = len[0];
        *cols = len[1];
    }
    nc_close(ncid);
    return a;
}

/* mean and population std over the rows of column j */
static void col_stats(const float *a, size_t n, size_t cols, size_t j, double *m, double *s)
{
    double sum = 0, ss = 0;
    for (size_t i = 0; i < n; i++) sum += a[i * cols + j];
    *m = sum / (double)n;
    for (size_t i = 0; i < n; i++) ss += (a[i * cols + j] - *m) * (a[i * cols + j] - *m);
    *s = sqrt(ss / (double)n);
}

static void test_toy1d(void)
{
    char p[800], q[800];
    snprintf(p, sizeof p, "%s/toy/toy1d.nc", root);
    vl_error_clear();
    int st = data_prepare_toy1d(7, p, "deck");
    T_CHECK(st == VL_OK, "toy1d: %s", vl_error_message());
    if (st) return;
    size_t n, c, nt, ct, n2, c2;
    float *xtr = read_raw(p, "train_x", &n, &c), *ytr = read_raw(p, "train_y", &n2, &c2);
    float *xte = read_raw(p, "test_x", &nt, &ct);
    T_CHECK(xtr && ytr && xte && n == 120 && c == 1 && n2 == 120 && c2 == 1 && nt == 100 && ct == 1,
            "toy1d shapes");
    if (!xtr || !ytr || !xte) return;
    int in_gap = 0, outside = 0, test_gap = 0;
    double ss = 0;
    for (size_t i = 0; i < n; i++) {
        double x = xtr[i];
        if (fabs(x) < 0.3 - 1e-6) in_gap++;
        if (fabs(x) > 1 + 1e-6) outside++;
        ss += (ytr[i] - toy_f(x)) * (ytr[i] - toy_f(x));
    }
    for (size_t i = 0; i < nt; i++) {
        if (fabs(xte[i]) < 0.3) test_gap++;
        if (fabs(xte[i]) > 1.2 + 1e-6) outside++;
    }
    double noise = sqrt(ss / (double)n);
    T_CHECK(in_gap == 0 && outside == 0, "train x avoids the gap (%d), all x in range (%d)", in_gap,
            outside);
    T_CHECK(test_gap >= 5, "test points in the gap: %d", test_gap);
    T_CHECK(noise > 0.07 && noise < 0.13, "noise std %g ~ 0.1", noise);

    /* standardisation by the train statistics */
    vl_split_t s;
    st = data_load(p, "train", 0, 0, 1, &s);
    T_CHECK(st == VL_OK && !s.classification && s.in_dim == 1 && s.out_dim == 1 && s.n == 120 &&
                s.y == NULL && s.t != NULL && strcmp(s.dataset, "toy1d") == 0, "toy1d load: %s",
            vl_error_message());
    if (!st) {
        double xm, xs, ym, ys;
        col_stats(xtr, n, 1, 0, &xm, &xs);
        col_stats(ytr, n, 1, 0, &ym, &ys);
        T_CLOSE(s.t_mean, ym, 1e-9, 0, "t_mean");
        T_CLOSE(s.t_std, ys, 1e-9, 0, "t_std");
        double e = 0;
        for (size_t i = 0; i < n; i++) {
            e = fmax(e, fabs(s.x[i] - (xtr[i] - xm) / xs));
            e = fmax(e, fabs(s.t[i] - (ytr[i] - ym) / ys));
        }
        T_CHECK(e < 1e-5, "standardised values, max error %g", e);
        data_free(&s);
    }
    /* shards of the test split equal the full read */
    vl_split_t full;
    st = data_load(p, "test", 0, 0, 1, &full);
    for (int r = 0; r < 3 && !st; r++) {
        st = data_load(p, "test", 0, r, 3, &s);
        T_CHECK(st == VL_OK && s.lo == 100 * r / 3 &&
                    memcmp(s.x, full.x + s.lo, (size_t)(s.hi - s.lo) * sizeof(float)) == 0 &&
                    memcmp(s.t, full.t + s.lo, (size_t)(s.hi - s.lo) * sizeof(float)) == 0,
                "toy1d shard %d/3", r);
        data_free(&s);
    }
    data_free(&full);
    /* same seed, same data; another seed, other data */
    snprintf(q, sizeof q, "%s/toy/again.nc", root);
    T_CHECK(data_prepare_toy1d(7, q, NULL) == VL_OK, "toy1d again");
    size_t m1, m2;
    float *again = read_raw(q, "train_y", &m1, &m2);
    T_CHECK(again && memcmp(again, ytr, 120 * sizeof(float)) == 0, "same seed reproduces");
    free(again);
    T_CHECK(data_prepare_toy1d(8, q, NULL) == VL_OK, "toy1d seed 8");
    again = read_raw(q, "train_y", &m1, &m2);
    T_CHECK(again && memcmp(again, ytr, 120 * sizeof(float)) != 0, "another seed differs");
    free(again);
    free(xtr);
    free(ytr);
    free(xte);
}

static void write_text(const char *path, const char *text)
{
    write_bytes(path, 0, (const unsigned char *)text, strlen(text));
}

/* a 20-row table; row `bad_row` (1-based) replaced by `bad`, target rows n_target */
static void write_table(const char *dir, int comma, int bad_row, const char *bad, int n_target)
{
    char p[800], line[256];
    static char text[65536];
    mkdir(dir, 0777);
    text[0] = '\0';
    for (int r = 1; r <= 20; r++) {
        if (r == bad_row) {
            snprintf(line, sizeof line, "%s\n", bad);
        } else {
            line[0] = '\0';
            for (int j = 0; j < 10; j++) {
                char cell[32];
                snprintf(cell, sizeof cell, "%s%g", j ? (comma ? ", " : " ") : "", r * 1.5 + j * j);
                strcat(line, cell);
            }
            strcat(line, "\n");
        }
        strcat(text, line);
    }
    snprintf(p, sizeof p, "%s/diabetes_data_raw.csv", dir);
    write_text(p, text);
    text[0] = '\0';
    for (int r = 1; r <= n_target; r++) {
        snprintf(line, sizeof line, "%d.0\n", 100 + r);
        strcat(text, line);
    }
    snprintf(p, sizeof p, "%s/diabetes_target.csv", dir);
    write_text(p, text);
}

static void test_csv(void)
{
    struct {
        const char *name;
        int comma, bad_row;
        const char *bad;
        int n_target;
        const char *expect;
    } cases[] = {
        {"nan_text", 0, 17, "1 2 abc 4 5 6 7 8 9 10", 20,
         "diabetes_data_raw.csv: row 17, column 3: 'abc' is not a number"},
        {"columns", 0, 5, "1 2 3 4 5 6 7 8 9", 20, "diabetes_data_raw.csv: row 5: expected 10 columns, found 9"},
        {"rows", 0, 0, "", 19, "diabetes_target.csv: 19 rows, but"},
        {"empty_field", 1, 3, "1,2,,4,5,6,7,8,9,10", 20, "row 3, column 3: empty field"},
        {"inf", 0, 2, "1 2 3 4 5 6 7 inf 9 10", 20, "row 2, column 8: 'inf' is not a number"},
        {"trailing_junk", 0, 9, "1 2 3 4 5x 6 7 8 9 10", 20, "row 9, column 5: '5x' is not a number"},
    };
    char dir[700], out[800];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(dir, sizeof dir, "%s/csv_%s", root, cases[i].name);
        write_table(dir, cases[i].comma, cases[i].bad_row, cases[i].bad, cases[i].n_target);
        snprintf(out, sizeof out, "%s/out/diabetes.nc", dir);
        vl_error_clear();
        int st = data_prepare_diabetes(dir, 1, out, NULL);
        printf("  csv %-13s -> %d %s\n", cases[i].name, st, vl_error_message());
        T_CHECK(st == VL_EINPUT && contains(vl_error_message(), cases[i].expect), "csv %s: %s",
                cases[i].name, vl_error_message());
        T_CHECK(!exists(out), "csv %s: no output", cases[i].name);
    }
    /* a good comma-separated table: 20 rows -> 18 train, 2 test */
    snprintf(dir, sizeof dir, "%s/csv_good", root);
    write_table(dir, 1, 0, "", 20);
    snprintf(out, sizeof out, "%s/out/diabetes.nc", dir);
    vl_error_clear();
    int st = data_prepare_diabetes(dir, 1, out, NULL);
    T_CHECK(st == VL_OK, "comma table: %s", vl_error_message());
    size_t n, c;
    float *x = read_raw(out, "train_x", &n, &c);
    T_CHECK(x && n == 18 && c == 10, "comma table shape");
    free(x);
    vl_error_clear();
}

static void test_diabetes(void)
{
    char csv[600], p[800];
    snprintf(csv, sizeof csv, "%s/diabetes_data_raw.csv.gz", DATA_SKLEARN_DIR);
    T_CHECK(exists(csv), "%s present (Debian package python3-sklearn)", csv);
    if (!exists(csv)) return;
    snprintf(p, sizeof p, "%s/dia/diabetes.nc", root);
    vl_error_clear();
    int st = data_prepare_diabetes(DATA_SKLEARN_DIR, 3, p, NULL);
    T_CHECK(st == VL_OK, "diabetes: %s", vl_error_message());
    if (st) return;
    size_t n, c, nt, ct, ny, cy;
    float *xtr = read_raw(p, "train_x", &n, &c), *xte = read_raw(p, "test_x", &nt, &ct);
    float *ytr = read_raw(p, "train_y", &ny, &cy);
    T_CHECK(xtr && xte && ytr && n == 397 && nt == 45 && c == 10 && ct == 10 && ny == 397 && cy == 1,
            "diabetes shapes: 442*9/10 = 397 train, 45 test");
    /* rows are a permutation, and row 0 of the table is where train/test_row say */
    int ncid, v1, v2, rtr[397], rte[45], seen[442] = {0};
    if (xtr && xte && ytr && ncio_open(p, &ncid) == VL_OK) {
        T_CHECK(nc_inq_varid(ncid, "train_row", &v1) == NC_NOERR &&
                    nc_get_var_int(ncid, v1, rtr) == NC_NOERR &&
                    nc_inq_varid(ncid, "test_row", &v2) == NC_NOERR &&
                    nc_get_var_int(ncid, v2, rte) == NC_NOERR, "row variables");
        nc_close(ncid);
        int bad = 0;
        const float *row0 = NULL;
        float y0 = 0;
        for (int i = 0; i < 397; i++) {
            if (rtr[i] < 0 || rtr[i] >= 442 || seen[rtr[i]]++) bad++;
            else if (rtr[i] == 0) row0 = xtr + i * 10, y0 = ytr[i];
        }
        for (int i = 0; i < 45; i++) {
            if (rte[i] < 0 || rte[i] >= 442 || seen[rte[i]]++) bad++;
            else if (rte[i] == 0) row0 = xte + i * 10;
        }
        T_CHECK(bad == 0, "train_row/test_row form a permutation of 0..441 (%d bad)", bad);
        /* first line of diabetes_data_raw: 59 2 32.1 101.0 157 93.2 38.0 4.0 4.8598 87, target 151 */
        const float want[10] = {59, 2, 32.1f, 101, 157, 93.2f, 38, 4, 4.8598f, 87};
        T_CHECK(row0 && memcmp(row0, want, sizeof want) == 0, "row 0 values");
        if (row0 && row0 >= xtr && row0 < xtr + 3970) T_CHECK(y0 == 151.0f, "row 0 target %g", y0);
    }
    /* standardised train features: mean 0, population std 1 */
    vl_split_t s;
    st = data_load(p, "train", 0, 0, 1, &s);
    T_CHECK(st == VL_OK && s.in_dim == 10 && s.in_c == 10 && s.out_dim == 1 && s.n == 397,
            "diabetes load: %s", vl_error_message());
    if (!st) {
        for (size_t j = 0; j < 10; j++) {
            double m, sd;
            col_stats(s.x, 397, 10, j, &m, &sd);
            T_CHECK(fabs(m) < 1e-5 && fabs(sd - 1) < 1e-5, "feature %zu: mean %g std %g", j, m, sd);
        }
        double m, sd;
        col_stats(s.t, 397, 1, 0, &m, &sd);
        T_CHECK(fabs(m) < 1e-5 && fabs(sd - 1) < 1e-5, "target: mean %g std %g", m, sd);
        data_free(&s);
    }
    /* independent cross-check with NumPy */
    const char *py = getenv("PYTHON");
    if (py && *py) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd,
                 "%s -c 'import sys,numpy as np,netCDF4; d=netCDF4.Dataset(sys.argv[1]); "
                 "X=np.loadtxt(sys.argv[2]+\"/diabetes_data_raw.csv.gz\"); "
                 "y=np.loadtxt(sys.argv[2]+\"/diabetes_target.csv.gz\"); "
                 "r=d[\"train_row\"][:]; t=d[\"test_row\"][:]; "
                 "assert X.shape==(442,10) and len(r)==397 and len(t)==45; "
                 "assert np.allclose(d[\"train_x\"][:], X[r], rtol=1e-6); "
                 "assert np.allclose(d[\"test_y\"][:,0], y[t], rtol=1e-6); "
                 "assert np.allclose(d.x_mean, X[r].mean(0), rtol=1e-6), (d.x_mean, X[r].mean(0)); "
                 "assert np.allclose(d.x_std, X[r].std(0), rtol=1e-6); "
                 "assert np.isclose(d.y_mean, y[r].mean(), rtol=1e-9) and np.isclose(d.y_std, y[r].std(), rtol=1e-9)' "
                 "'%s' '%s'",
                 py, p, DATA_SKLEARN_DIR);
        int rc = system(cmd);
        T_CHECK(rc == 0, "numpy cross-check of diabetes (rc %d)", rc);
    }
    /* the split depends on the seed */
    char q[800];
    snprintf(q, sizeof q, "%s/dia/seed4.nc", root);
    T_CHECK(data_prepare_diabetes(DATA_SKLEARN_DIR, 4, q, NULL) == VL_OK, "seed 4");
    size_t n4, c4;
    float *x4 = read_raw(q, "train_x", &n4, &c4);
    T_CHECK(x4 && xtr && memcmp(x4, xtr, 397 * 10 * sizeof(float)) != 0, "another seed, another split");
    free(x4);
    free(xtr);
    free(xte);
    free(ytr);
}

/* The real dataset, when installed (~1 s). */
static void test_real_fashion_mnist(void)
{
    char img[600], p[800];
    snprintf(img, sizeof img, "%s/train-images-idx3-ubyte.gz", DATA_FASHION_MNIST_DIR);
    if (!exists(img)) {
        printf("  (real Fashion-MNIST not installed: skipped)\n");
        return;
    }
    snprintf(p, sizeof p, "%s/fm/fashion-mnist.nc", root);
    double t0 = MPI_Wtime();
    vl_error_clear();
    int st = data_prepare("fashion-mnist", NULL, 1, p, NULL);
    printf("  real Fashion-MNIST converted in %.2f s\n", MPI_Wtime() - t0);
    T_CHECK(st == VL_OK, "real conversion: %s", vl_error_message());
    if (st) return;
    int ncid;
    double mean = 0, sd = 0;
    if (ncio_open(p, &ncid) == VL_OK) {
        ncio_get_att_double(ncid, NC_GLOBAL, p, "pixel_mean", 1, &mean);
        ncio_get_att_double(ncid, NC_GLOBAL, p, "pixel_std", 1, &sd);
        nc_close(ncid);
    }
    /* the published figures: mean 0.2860, std 0.3530 */
    T_CLOSE(mean, 0.2860, 0, 5e-5, "Fashion-MNIST pixel mean");
    T_CLOSE(sd, 0.3530, 0, 5e-5, "Fashion-MNIST pixel std");
    vl_split_t s;
    st = data_load(p, "test", 0, 1, 2, &s);
    T_CHECK(st == VL_OK && s.n == 10000 && s.lo == 5000 && s.hi == 10000 && s.in_dim == 784,
            "real test shard: %s", vl_error_message());
    if (!st) {
        int hist[10] = {0}, ok = 1;
        for (int i = 0; i < 5000; i++) hist[s.y[i]]++;
        for (int k = 0; k < 10; k++) ok &= hist[k] > 350 && hist[k] < 650;
        T_CHECK(ok, "labels of the test shard are spread over the 10 classes");
        data_free(&s);
    }
}

/* ------------------------------------------------- row selections (issue 18) */

/* data_select / data_load_list on the real training split (subset 30 000: two read spans of
 * ~21 000 rows, gaps between the selected rows): the class selection and its complement partition
 * the subset by label; the head (all but the last V rows) and the validation tail, each sharded
 * over P = 1..4 ranks, hold exactly the listed rows with the pixels and labels of a plain read,
 * the same tail for every P; the selection's bad uses fail. */
static void test_selection(void)
{
    char p[800], q[800];
    snprintf(p, sizeof p, "%s/fm/fashion-mnist.nc", root);
    T_CHECK(exists(p), "%s missing: the selections are tested on the real Fashion-MNIST (Debian's "
                       "dataset-fashion-mnist, installed by make deps)", p);
    if (!exists(p)) return;
    enum { SUB = 30000, V = 777 };
    vl_split_t full;
    vl_error_clear();
    int st = data_load(p, "train", SUB, 0, 1, &full);
    T_CHECK(st == VL_OK, "plain read: %s", vl_error_message());
    if (st) return;
    const int64_t n_all = full.n;
    int cls = -1, ncls = -1;
    T_CHECK(data_classes(p, &cls, &ncls) == VL_OK && cls == 1 && ncls == 10, "data_classes: %d %d", cls, ncls);
    const int keep[3] = {1, 4, 7};
    vl_rows_t sel = {.subset = SUB, .classes = keep, .nclasses = 3};
    int64_t *rows = NULL, *comp = NULL, n = 0, nc = 0;
    T_CHECK(data_select(p, "train", &sel, &rows, &n) == VL_OK, "select: %s", vl_error_message());
    sel.complement = 1;
    T_CHECK(data_select(p, "train", &sel, &comp, &nc) == VL_OK, "select the complement: %s", vl_error_message());
    /* a partition of the subset by label */
    int64_t a = 0, b = 0, bad = 0;
    for (int64_t i = 0; i < n_all; i++) {
        const int in = full.y[i] == 1 || full.y[i] == 4 || full.y[i] == 7;
        if (in) bad += a >= n || rows[a++] != i;
        else bad += b >= nc || comp[b++] != i;
    }
    T_CHECK(bad == 0 && a == n && b == nc && n + nc == n_all && n > V, "selection: %lld + %lld rows of %lld, %lld wrong",
            (long long)n, (long long)nc, (long long)n_all, (long long)bad);
    printf("  classes 1,4,7 of the first %d rows: %lld rows, the others %lld\n", SUB, (long long)n, (long long)nc);
    /* the head and the validation tail over P ranks */
    for (int P = 1; P <= 4; P++) {
        int64_t next_h = 0, next_v = 0;
        for (int r = 0; r < P; r++) {
            vl_split_t h, v;
            st = data_load_list(p, "train", rows, n - V, r, P, &h);
            if (!st) st = data_load_list(p, "train", rows + n - V, V, r, P, &v);
            T_CHECK(st == VL_OK, "load %d/%d: %s", r, P, vl_error_message());
            if (st) continue;
            T_CHECK(h.n == n - V && v.n == V && h.lo == next_h && v.lo == next_v, "P %d rank %d: n %lld %lld lo %lld %lld",
                    P, r, (long long)h.n, (long long)v.n, (long long)h.lo, (long long)v.lo);
            next_h = h.hi;
            next_v = v.hi;
            int64_t wrong = 0;
            for (int64_t i = 0; i < h.hi - h.lo; i++) {
                const int64_t f = rows[h.lo + i];
                wrong += h.row[i] != f || h.y[i] != full.y[f] ||
                         memcmp(h.x + i * h.in_dim, full.x + f * full.in_dim, sizeof(float) * (size_t)h.in_dim) != 0;
            }
            for (int64_t i = 0; i < v.hi - v.lo; i++) {
                const int64_t f = rows[n - V + v.lo + i];
                wrong += v.row[i] != f || v.y[i] != full.y[f] ||
                         memcmp(v.x + i * v.in_dim, full.x + f * full.in_dim, sizeof(float) * (size_t)v.in_dim) != 0;
                for (int64_t k = 0; k < h.hi - h.lo; k++) wrong += h.row[k] == f; /* never in this rank's head */
            }
            T_CHECK(wrong == 0, "P %d rank %d: %lld rows differ from the plain read or the list", P, r, (long long)wrong);
            data_free(&h);
            data_free(&v);
        }
        T_CHECK(next_h == n - V && next_v == V, "P %d: the shards cover %lld and %lld rows", P, (long long)next_h,
                (long long)next_v);
    }
    /* bad uses */
    vl_split_t s;
    int64_t back[3] = {5, 4, 9};
    vl_error_clear();
    st = data_load_list(p, "train", back, 3, 0, 1, &s);
    T_CHECK(st == VL_EINPUT && contains(vl_error_message(), "not ascending"), "unsorted list: %s", vl_error_message());
    vl_error_clear();
    int64_t past = n_all + 100000;
    st = data_load_list(p, "train", &past, 1, 0, 1, &s);
    T_CHECK(st == VL_EINPUT && contains(vl_error_message(), "not ascending inside"), "row past the end: %s",
            vl_error_message());
    vl_error_clear();
    snprintf(q, sizeof q, "%s/toy/toy1d.nc", root);
    int64_t *tr = NULL, tn = 0;
    sel.complement = 0;
    sel.subset = 0;
    st = data_select(q, "train", &sel, &tr, &tn);
    T_CHECK(st == VL_EINPUT && contains(vl_error_message(), "without classes"), "classes of a regression set: %s",
            vl_error_message());
    vl_error_clear();
    T_CHECK(data_classes(q, &cls, &ncls) == VL_OK && cls == 0 && ncls == 0, "data_classes of toy1d: %d %d", cls, ncls);
    sel.nclasses = 0;
    st = data_select(q, "train", &sel, &tr, &tn); /* no classes: every row of a regression set */
    T_CHECK(st == VL_OK && tn == DATA_TOY1D_TRAIN && tr[tn - 1] == tn - 1, "toy1d selection: %s", vl_error_message());
    if (!st) {
        st = data_load_list(q, "train", tr + 100, 20, 1, 2, &s);
        T_CHECK(st == VL_OK && s.n == 20 && s.lo == 10 && s.hi == 20 && s.row[0] == 110 && s.t != NULL,
                "toy1d tail shard: %s", vl_error_message());
        data_free(&s);
    }
    free(tr);
    vl_error_clear();
    free(rows);
    free(comp);
    data_free(&full);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    const char *base = getenv("VALLEY_TEST_TMP");
    snprintf(root, sizeof root, "%s/data.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    make_pixels();
    char good[800];
    printf("good sets\n");
    test_good(good, sizeof good);
    printf("malformed IDX files\n");
    test_bad();
    printf("shards\n");
    test_shards(good);
    printf("corrupt NetCDF\n");
    test_bad_nc(good);
    printf("toy1d\n");
    test_toy1d();
    printf("CSV\n");
    test_csv();
    printf("diabetes\n");
    test_diabetes();
    printf("real Fashion-MNIST\n");
    test_real_fashion_mnist();
    printf("row selections\n");
    test_selection();
    if (!base) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    }
    MPI_Finalize();
    T_DONE();
}
