/* data.c — dataset conversion (IDX, CSV, generated toy) to NetCDF and sharded reading. */
#include "valley/data.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#include "valley/error.h"
#include "valley/ncio.h"
#include "valley/rng.h"

/* ------------------------------------------------------------ source files */

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && !S_ISDIR(sb.st_mode);
}

/* Finds dir/base.gz, else dir/base, into path. VL_EINPUT naming both if neither exists. */
static int find_source(const char *dir, const char *base, char *path, size_t cap)
{
    int n = snprintf(path, cap, "%s/%s.gz", dir, base);
    if (n < 0 || (size_t)n >= cap) return VL_FAIL(VL_EINPUT, "%s/%s: path too long", dir, base);
    if (file_exists(path)) return VL_OK;
    snprintf(path, cap, "%s/%s", dir, base);
    if (file_exists(path)) return VL_OK;
    return VL_FAIL(VL_EINPUT, "%s/%s.gz: No such file or directory (nor %s)", dir, base, base);
}

/* Reads up to len bytes (any size) from g into buf; returns bytes read. On a
 * stream error sets *zerr to the zlib error code (Z_BUF_ERROR: truncated gzip). */
static size_t gz_read_full(gzFile g, unsigned char *buf, size_t len, int *zerr)
{
    size_t got = 0;
    *zerr = Z_OK;
    while (got < len) {
        size_t want = len - got;
        if (want > (1u << 30)) want = 1u << 30;
        int r = gzread(g, buf + got, (unsigned)want);
        if (r < 0) {
            gzerror(g, zerr);
            break;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    return got;
}

/* zlib's error message of g without the "<path>: " prefix zlib puts in front */
static const char *gz_message(gzFile g, const char *path, int *zerr)
{
    const char *msg = gzerror(g, zerr);
    size_t n = strlen(path);
    if (strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ') msg += n + 2;
    return msg;
}

static int gz_fail(const char *path, gzFile g, int zerr, size_t expected, size_t got)
{
    if (zerr == Z_OK || zerr == Z_BUF_ERROR) /* plain EOF or gzip stream cut short */
        return VL_FAIL(VL_EINPUT, "%s: truncated: expected %zu bytes, got %zu", path, expected, got);
    int e;
    return VL_FAIL(VL_EINPUT, "%s: corrupt gzip data: %s", path, gz_message(g, path, &e));
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Reads an IDX file (gzip'd or plain) whose magic must be `magic` (0x803: 3-D
 * unsigned byte, 0x801: 1-D). Images must be (n, 28, 28). The file must hold exactly
 * header + payload bytes. On success *data (vl_alloc'd, caller frees) holds the
 * payload and *count the first dimension. */
static int idx_read(const char *path, uint32_t magic, unsigned char **data, int64_t *count)
{
    *data = NULL;
    *count = 0;
    const int ndims = (int)(magic & 0xFF);
    const size_t header = 4 + 4 * (size_t)ndims;
    gzFile g = gzopen(path, "rb");
    if (g == NULL)
        return VL_FAIL(VL_EINPUT, "%s: %s", path, errno ? strerror(errno) : "cannot open");
    gzbuffer(g, 1u << 17);
    unsigned char head[16];
    int zerr;
    size_t got = gz_read_full(g, head, header, &zerr);
    int st = VL_OK;
    unsigned char *buf = NULL;
    if (got < 4) {
        st = gz_fail(path, g, zerr, header, got);
        goto done;
    }
    if (be32(head) != magic) {
        st = VL_FAIL(VL_EINPUT, "%s: bad magic number 0x%08x, expected 0x%08x (IDX %s)", path,
                     be32(head), magic, ndims == 3 ? "images" : "labels");
        goto done;
    }
    if (got < header) {
        st = gz_fail(path, g, zerr, header, got);
        goto done;
    }
    uint32_t n = be32(head + 4);
    if (n > (uint32_t)INT32_MAX) {
        st = VL_FAIL(VL_EINPUT, "%s: implausible count %u", path, n);
        goto done;
    }
    size_t payload = n;
    if (ndims == 3) {
        uint32_t h = be32(head + 8), w = be32(head + 12);
        if (h != 28 || w != 28) {
            st = VL_FAIL(VL_EINPUT, "%s: images are %ux%u, expected 28x28", path, h, w);
            goto done;
        }
        if (vl_mul_size(payload, 28 * 28, &payload)) {
            st = VL_FAIL(VL_EINPUT, "%s: size overflow", path);
            goto done;
        }
    }
    const size_t expected = header + payload;
    /* grow the buffer with the data actually present, so a lying header cannot
     * make us allocate more than the file holds */
    size_t cap = payload < ((size_t)1 << 24) ? payload : ((size_t)1 << 24), have = 0;
    buf = vl_alloc(cap, path);
    if (!buf) {
        st = VL_EIO;
        goto done;
    }
    for (;;) {
        have += gz_read_full(g, buf + have, cap - have, &zerr);
        if (have < cap || cap == payload) break;
        size_t ncap = cap * 2 < payload ? cap * 2 : payload;
        unsigned char *nb = vl_alloc(ncap, path);
        if (!nb) {
            st = VL_EIO;
            goto done;
        }
        memcpy(nb, buf, have);
        free(buf);
        buf = nb;
        cap = ncap;
    }
    if (have < payload) {
        st = gz_fail(path, g, zerr, expected, header + have);
        goto done;
    }
    /* nothing may follow the payload */
    unsigned char extra[65536];
    size_t trailing = 0, r;
    while ((r = gz_read_full(g, extra, sizeof extra, &zerr)) > 0) trailing += r;
    if (trailing > 0) {
        st = VL_FAIL(VL_EINPUT, "%s: trailing bytes: expected %zu bytes, got %zu", path, expected,
                     expected + trailing);
        goto done;
    }
    if (zerr != Z_OK) {
        st = gz_fail(path, g, zerr, expected, expected);
        goto done;
    }
    *data = buf;
    buf = NULL;
    *count = n;
done:
    free(buf);
    gzclose_r(g);
    return st;
}

/* ------------------------------------------------------------ fashion-mnist */

static const char *const FMNIST_CLASSES =
    "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot";

typedef struct {
    unsigned char *x;  /* (n, 28, 28) */
    unsigned char *y;  /* (n) */
    int64_t n;
} idx_split_t;

static int fmnist_read_split(const char *dir, const char *prefix, idx_split_t *s)
{
    char ipath[4200], lpath[4200], base[64];
    int64_t nl;
    snprintf(base, sizeof base, "%s-images-idx3-ubyte", prefix);
    CHECK(find_source(dir, base, ipath, sizeof ipath));
    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", prefix);
    CHECK(find_source(dir, base, lpath, sizeof lpath));
    CHECK(idx_read(ipath, 0x00000803u, &s->x, &s->n));
    CHECK(idx_read(lpath, 0x00000801u, &s->y, &nl));
    if (s->n == 0) return VL_FAIL(VL_EINPUT, "%s: holds no images", ipath);
    if (nl != s->n)
        return VL_FAIL(VL_EINPUT, "%s: %lld labels, but %s holds %lld images", lpath, (long long)nl,
                       ipath, (long long)s->n);
    for (int64_t i = 0; i < nl; i++)
        if (s->y[i] > 9)
            return VL_FAIL(VL_EINPUT, "%s: label %d of item %lld is outside 0..9", lpath, s->y[i],
                           (long long)i);
    return VL_OK;
}

/* Directory part of a path into dir ("" if none). */
static void parent_dir(const char *path, char *dir, size_t cap)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (slash == path) n = 1;
    if (n >= cap) n = cap - 1;
    memcpy(dir, path, n);
    dir[n] = '\0';
}

static int mkdirs_for(const char *out_path)
{
    char dir[4096];
    parent_dir(out_path, dir, sizeof dir);
    return ncio_mkdirs(dir);
}

/* An image classification set: uint8 images (n, C, H, W) and labels, both splits. */
typedef struct {
    const char *dataset, *class_names, *source;
    int c, h, w, n_classes;
    const unsigned char *xtr, *ytr, *xte, *yte;
    int64_t ntr, nte;
} image_set_t;

static int image_write(ncio_file_t *f, const image_set_t *im)
{
    /* per-channel pixel statistics over all training pixels after scaling by 1/255, from
     * histograms: exact counts, double arithmetic, population std (torchvision's Normalize
     * convention: x = (pixel/255 - mean_c) / std_c) */
    const double scale = 1.0 / 255.0;
    const size_t plane = (size_t)im->h * im->w;
    double mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
    for (int c = 0; c < im->c; c++) {
        uint64_t hist[256] = {0};
        for (int64_t i = 0; i < im->ntr; i++) {
            const unsigned char *p = im->xtr + ((size_t)i * im->c + c) * plane;
            for (size_t k = 0; k < plane; k++) hist[p[k]]++;
        }
        const double npix = (double)im->ntr * (double)plane;
        double m = 0, v = 0;
        if (npix > 0) {
            for (int q = 0; q < 256; q++) m += (double)hist[q] * (q * scale);
            m /= npix;
            for (int q = 0; q < 256; q++) v += (double)hist[q] * (q * scale - m) * (q * scale - m);
            v /= npix;
        }
        mean[c] = m;
        std[c] = v > 0 ? sqrt(v) : 1.0;
    }
    int d_train, d_test, d_c, d_h, d_w, d_class, v_trx, v_try, v_tex, v_tey;
    CHECK(ncio_def_dim(f, "train", (size_t)im->ntr, &d_train));
    CHECK(ncio_def_dim(f, "test", (size_t)im->nte, &d_test));
    CHECK(ncio_def_dim(f, "channel", (size_t)im->c, &d_c));
    CHECK(ncio_def_dim(f, "height", (size_t)im->h, &d_h));
    CHECK(ncio_def_dim(f, "width", (size_t)im->w, &d_w));
    CHECK(ncio_def_dim(f, "class", (size_t)im->n_classes, &d_class));
    int dx_tr[4] = {d_train, d_c, d_h, d_w}, dx_te[4] = {d_test, d_c, d_h, d_w};
    CHECK(ncio_def_var(f, "train_x", NC_UBYTE, 4, dx_tr, "training images, raw pixel values 0..255",
                       "1", &v_trx));
    CHECK(ncio_def_var(f, "train_y", NC_INT, 1, &d_train, "training labels (class index)", NULL,
                       &v_try));
    CHECK(ncio_def_var(f, "test_x", NC_UBYTE, 4, dx_te, "test images, raw pixel values 0..255", "1",
                       &v_tex));
    CHECK(ncio_def_var(f, "test_y", NC_INT, 1, &d_test, "test labels (class index)", NULL, &v_tey));
    /* contiguous storage: a rank's shard is one contiguous read. No fill: every value
     * is written, and 255 (the default ubyte fill value) is a valid pixel that
     * readers such as Python's netCDF4 would otherwise mask. */
    int vars[4] = {v_trx, v_try, v_tex, v_tey};
    for (int i = 0; i < 4; i++) {
        NC_CHECK_W(f, nc_def_var_chunking(f->ncid, vars[i], NC_CONTIGUOUS, NULL), "storage layout");
        NC_CHECK_W(f, nc_def_var_fill(f->ncid, vars[i], NC_NOFILL, NULL), "fill mode");
    }
    CHECK(ncio_put_att_text(f, NC_GLOBAL, "dataset", im->dataset));
    CHECK(ncio_put_att_text(f, NC_GLOBAL, "task", "classification"));
    CHECK(ncio_put_att_int(f, NC_GLOBAL, "n_classes", 1, &im->n_classes));
    CHECK(ncio_put_att_double(f, NC_GLOBAL, "pixel_scale", 1, &scale));
    CHECK(ncio_put_att_double(f, NC_GLOBAL, "pixel_mean", (size_t)im->c, mean));
    CHECK(ncio_put_att_double(f, NC_GLOBAL, "pixel_std", (size_t)im->c, std));
    CHECK(ncio_put_att_text(f, NC_GLOBAL, "normalisation",
                            "x = (pixel*pixel_scale - pixel_mean[c])/pixel_std[c]; pixel_mean and pixel_std "
                            "per channel c over all training pixels scaled to [0,1] (population std)"));
    CHECK(ncio_put_att_text(f, NC_GLOBAL, "class_names", im->class_names));
    CHECK(ncio_put_att_text(f, NC_GLOBAL, "source", im->source));
    CHECK(ncio_enddef(f));

    NC_CHECK_W(f, nc_put_var_uchar(f->ncid, v_trx, im->xtr), "writing train_x");
    NC_CHECK_W(f, nc_put_var_uchar(f->ncid, v_tex, im->xte), "writing test_x");
    const unsigned char *ys[2] = {im->ytr, im->yte};
    int64_t ns[2] = {im->ntr, im->nte};
    int vy[2] = {v_try, v_tey};
    for (int k = 0; k < 2; k++) {
        int32_t *lab = vl_alloc((size_t)ns[k] * sizeof *lab + 1, "labels");
        if (!lab) return VL_EIO;
        for (int64_t i = 0; i < ns[k]; i++) lab[i] = ys[k][i];
        int st = nc_put_var_int(f->ncid, vy[k], lab);
        free(lab);
        NC_CHECK_W(f, st, k ? "writing test_y" : "writing train_y");
    }
    return VL_OK;
}

/* ------------------------------------------------------------ CIFAR */

#define CIFAR_PIXELS 3072
static const char CIFAR10_CLASSES[] = "airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck";

/* Reads the records of one CIFAR binary file and appends them: each record is `nlab` label
 * bytes (CIFAR-10: the label; CIFAR-100: coarse, fine) and 3072 pixels (1024 R, G, B,
 * row-major 32x32). The label kept is the last one (CIFAR-100's fine label). */
static int cifar_read_file(const char *path, int nlab, int nclass, unsigned char **x, unsigned char **y, int64_t *n)
{
    const size_t rec = (size_t)nlab + CIFAR_PIXELS;
    FILE *fp = fopen(path, "rb");
    if (!fp) return VL_FAIL(VL_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(fp);
        return VL_FAIL(VL_EINPUT, "%s: not a regular file", path);
    }
    const size_t size = (size_t)sb.st_size;
    if (size == 0 || size % rec != 0 || size > ((size_t)1 << 34)) {
        fclose(fp);
        return VL_FAIL(VL_EINPUT, "%s: %zu bytes is not a whole number of %zu-byte CIFAR records "
                                  "(%d label byte%s + 3072 pixels)", path, size, rec, nlab, nlab > 1 ? "s" : "");
    }
    const int64_t m = (int64_t)(size / rec);
    unsigned char *buf = vl_alloc(size, "CIFAR file");
    unsigned char *nx = buf ? realloc(*x, (size_t)(*n + m) * CIFAR_PIXELS) : NULL;
    if (nx) *x = nx;
    unsigned char *ny = nx ? realloc(*y, (size_t)(*n + m) + 1) : NULL;
    if (ny) *y = ny;
    if (!buf || !nx || !ny) {
        free(buf);
        fclose(fp);
        return VL_FAIL(VL_EIO, "out of memory reading %s", path);
    }
    size_t got = fread(buf, 1, size, fp);
    fclose(fp);
    if (got != size) {
        free(buf);
        return VL_FAIL(VL_EINPUT, "%s: read %zu of %zu bytes", path, got, size);
    }
    for (int64_t i = 0; i < m; i++) {
        const unsigned char *r = buf + (size_t)i * rec;
        for (int k = 0; k < nlab; k++) {
            const int lim = (nlab == 2 && k == 0) ? 20 : nclass; /* CIFAR-100's 20 coarse classes */
            if (r[k] >= lim) {
                int bad = r[k];
                free(buf);
                return VL_FAIL(VL_EINPUT, "%s: record %lld: %slabel %d is outside 0..%d", path, (long long)i,
                               nlab == 2 ? (k ? "fine " : "coarse ") : "", bad, lim - 1);
            }
        }
        (*y)[*n + i] = r[nlab - 1];
        memcpy(*x + (size_t)(*n + i) * CIFAR_PIXELS, r + nlab, CIFAR_PIXELS);
    }
    *n += m;
    free(buf);
    return VL_OK;
}

/* The file `base` in dir or in its archive subdirectory (as the archives unpack). */
static int cifar_find(const char *dir, const char *sub, const char *base, char *path, size_t cap)
{
    struct stat sb; /* anything of that name (a directory there is refused by the reader, by name) */
    snprintf(path, cap, "%s/%s", dir, base);
    if (stat(path, &sb) == 0) return VL_OK;
    snprintf(path, cap, "%s/%s/%s", dir, sub, base);
    if (stat(path, &sb) == 0) return VL_OK;
    return VL_FAIL(VL_EINPUT, "%s/%s: not found (nor in %s/%s/): give the directory of the CIFAR binary files "
                              "(--set data.source=DIR)", dir, base, dir, sub);
}

int data_prepare_cifar(int classes, const char *src_dir, const char *out_path, const char *deck_text)
{
    if (!src_dir || !*src_dir)
        return VL_FAIL(VL_EINPUT, "prepare cifar%d: give the directory of the official binary files with "
                                  "--set data.source=DIR (they cannot be downloaded here)", classes);
    const int c100 = classes == 100, nlab = c100 ? 2 : 1;
    const char *sub = c100 ? "cifar-100-binary" : "cifar-10-batches-bin";
    unsigned char *xtr = NULL, *ytr = NULL, *xte = NULL, *yte = NULL;
    int64_t ntr = 0, nte = 0;
    char path[4400];
    int st = VL_OK;
    if (c100) {
        st = cifar_find(src_dir, sub, "train.bin", path, sizeof path);
        if (!st) st = cifar_read_file(path, nlab, 100, &xtr, &ytr, &ntr);
    } else {
        for (int b = 1; b <= 5 && !st; b++) {
            char base[32];
            snprintf(base, sizeof base, "data_batch_%d.bin", b);
            st = cifar_find(src_dir, sub, base, path, sizeof path);
            if (!st) st = cifar_read_file(path, nlab, 10, &xtr, &ytr, &ntr);
        }
    }
    if (!st) st = cifar_find(src_dir, sub, c100 ? "test.bin" : "test_batch.bin", path, sizeof path);
    if (!st) st = cifar_read_file(path, nlab, classes, &xte, &yte, &nte);
    char names[1200] = "";
    if (c100)
        for (int k = 0; k < 100; k++) snprintf(names + strlen(names), sizeof names - strlen(names), "%s%d", k ? "," : "", k);
    char source[4500];
    snprintf(source, sizeof source, "CIFAR-%d (Krizhevsky 2009), binary version, from %s", classes, src_dir);
    const image_set_t im = {.dataset = c100 ? "cifar100" : "cifar10", .class_names = c100 ? names : CIFAR10_CLASSES,
                            .source = source, .c = 3, .h = 32, .w = 32, .n_classes = classes, .xtr = xtr,
                            .ytr = ytr, .xte = xte, .yte = yte, .ntr = ntr, .nte = nte};
    if (!st) st = mkdirs_for(out_path);
    ncio_file_t f;
    if (!st) st = ncio_create(&f, out_path, c100 ? "CIFAR-100, prepared by valley" : "CIFAR-10, prepared by valley",
                              deck_text);
    if (!st) {
        st = image_write(&f, &im);
        if (st) ncio_abandon(&f);
        else st = ncio_commit(&f);
    }
    free(xtr); free(ytr); free(xte); free(yte);
    if (st) vl_trace(__FILE__, __LINE__);
    return st;
}

/* The IDX train / t10k files of src_dir (Fashion-MNIST's names, which MNIST shares) -> out_path:
 * dataset name, class names, title and the source's wording per set. */
static int idx_prepare(const char *src_dir, const char *out_path, const char *deck_text, const char *dataset,
                       const char *class_names, const char *title, const char *source_fmt)
{
    idx_split_t tr = {0}, te = {0};
    int st = fmnist_read_split(src_dir, "train", &tr);
    if (!st) st = fmnist_read_split(src_dir, "t10k", &te);
    if (!st) st = mkdirs_for(out_path);
    ncio_file_t f;
    if (!st) st = ncio_create(&f, out_path, title, deck_text);
    if (!st) {
        char source[4400];
        snprintf(source, sizeof source, source_fmt, src_dir);
        const image_set_t im = {.dataset = dataset, .class_names = class_names, .source = source, .c = 1, .h = 28,
                                .w = 28, .n_classes = 10, .xtr = tr.x, .ytr = tr.y, .xte = te.x, .yte = te.y,
                                .ntr = tr.n, .nte = te.n};
        st = image_write(&f, &im);
        if (st) ncio_abandon(&f);
        else st = ncio_commit(&f);
    }
    free(tr.x);
    free(tr.y);
    free(te.x);
    free(te.y);
    if (st) vl_trace(__FILE__, __LINE__);
    return st;
}

int data_prepare_fashion_mnist(const char *src_dir, const char *out_path, const char *deck_text)
{
    return idx_prepare(src_dir, out_path, deck_text, "fashion-mnist", FMNIST_CLASSES, "Fashion-MNIST, prepared by valley",
                       "Fashion-MNIST (Xiao, Rasul, Vollgraf 2017, Zalando Research), IDX files from %s "
                       "(Debian package dataset-fashion-mnist)");
}

/* MNIST digits (LeCun et al. 1998): the same IDX files and names as Fashion-MNIST; not in
 * Debian, so the directory is the user's (data.source). */
int data_prepare_mnist(const char *src_dir, const char *out_path, const char *deck_text)
{
    if (!src_dir || !*src_dir)
        return VL_FAIL(VL_EINPUT, "mnist: give the directory of its IDX files (train-images-idx3-ubyte[.gz], "
                                  "train-labels-idx1-ubyte[.gz], t10k-...) with --set data.source=DIR: they are not in "
                                  "Debian and cannot be downloaded here");
    return idx_prepare(src_dir, out_path, deck_text, "mnist", "0,1,2,3,4,5,6,7,8,9", "MNIST, prepared by valley",
                       "MNIST handwritten digits (LeCun, Cortes, Burges), IDX files from %s");
}

/* ------------------------------------------------------------ regression */

typedef struct {
    const char *dataset, *title, *feature_names, *source;
    int64_t n_train, n_test;
    int n_feat;
    const float *xtr, *ytr, *xte, *yte;    /* (n, n_feat), (n, 1) */
    const int *row_tr, *row_te;            /* original row numbers, or NULL */
} regression_t;

/* mean and population std of column j of a (n, stride) table; std 0 -> 1 */
static void column_stats(const float *a, int64_t n, int stride, int j, double *mean, double *std)
{
    double m = 0, v = 0;
    for (int64_t i = 0; i < n; i++) m += a[i * stride + j];
    m = n ? m / (double)n : 0;
    for (int64_t i = 0; i < n; i++) {
        double d = a[i * stride + j] - m;
        v += d * d;
    }
    v = n ? v / (double)n : 0;
    *mean = m;
    *std = v > 0 ? sqrt(v) : 1.0;
}

static int regression_body(ncio_file_t *f, const regression_t *r)
{
    double xm[64], xs[64], ym, ys;
    if (r->n_feat > 64) return VL_FAIL(VL_EINPUT, "%s: too many features", r->dataset);
    for (int j = 0; j < r->n_feat; j++) column_stats(r->xtr, r->n_train, r->n_feat, j, &xm[j], &xs[j]);
    column_stats(r->ytr, r->n_train, 1, 0, &ym, &ys);

    int d_train, d_test, d_feat, d_target, v[6];
    CHECK(ncio_def_dim(f, "train", (size_t)r->n_train, &d_train));
    CHECK(ncio_def_dim(f, "test", (size_t)r->n_test, &d_test));
    CHECK(ncio_def_dim(f, "feature", (size_t)r->n_feat, &d_feat));
    CHECK(ncio_def_dim(f, "target", 1, &d_target));
    int a[2] = {d_train, d_feat}, b[2] = {d_train, d_target};
    int c[2] = {d_test, d_feat}, d[2] = {d_test, d_target};
    CHECK(ncio_def_var(f, "train_x", NC_FLOAT, 2, a, "training inputs (raw)", "1", &v[0]));
    CHECK(ncio_def_var(f, "train_y", NC_FLOAT, 2, b, "training targets (raw)", "1", &v[1]));
    CHECK(ncio_def_var(f, "test_x", NC_FLOAT, 2, c, "test inputs (raw)", "1", &v[2]));
    CHECK(ncio_def_var(f, "test_y", NC_FLOAT, 2, d, "test targets (raw)", "1", &v[3]));
    if (r->row_tr) {
        CHECK(ncio_def_var(f, "train_row", NC_INT, 1, &d_train,
                           "row of the source table (0-based)", NULL, &v[4]));
        CHECK(ncio_def_var(f, "test_row", NC_INT, 1, &d_test, "row of the source table (0-based)",
                           NULL, &v[5]));
    }
    CHECK(ncio_put_att_text(f, NC_GLOBAL, "dataset", r->dataset));
    CHECK(ncio_put_att_text(f, NC_GLOBAL, "task", "regression"));
    CHECK(ncio_put_att_double(f, NC_GLOBAL, "x_mean", (size_t)r->n_feat, xm));
    CHECK(ncio_put_att_double(f, NC_GLOBAL, "x_std", (size_t)r->n_feat, xs));
    CHECK(ncio_put_att_double(f, NC_GLOBAL, "y_mean", 1, &ym));
    CHECK(ncio_put_att_double(f, NC_GLOBAL, "y_std", 1, &ys));
    CHECK(ncio_put_att_text(f, NC_GLOBAL, "normalisation",
                            "x = (raw - x_mean)/x_std per feature, t = (raw - y_mean)/y_std; means "
                            "and population stds over the training split (std 1 for a constant "
                            "column)"));
    CHECK(ncio_put_att_text(f, NC_GLOBAL, "feature_names", r->feature_names));
    CHECK(ncio_put_att_text(f, NC_GLOBAL, "source", r->source));
    CHECK(ncio_enddef(f));
    NC_CHECK_W(f, nc_put_var_float(f->ncid, v[0], r->xtr), "writing train_x");
    NC_CHECK_W(f, nc_put_var_float(f->ncid, v[1], r->ytr), "writing train_y");
    NC_CHECK_W(f, nc_put_var_float(f->ncid, v[2], r->xte), "writing test_x");
    NC_CHECK_W(f, nc_put_var_float(f->ncid, v[3], r->yte), "writing test_y");
    if (r->row_tr) {
        NC_CHECK_W(f, nc_put_var_int(f->ncid, v[4], r->row_tr), "writing train_row");
        NC_CHECK_W(f, nc_put_var_int(f->ncid, v[5], r->row_te), "writing test_row");
    }
    return VL_OK;
}

static int regression_write(const char *out_path, const char *deck_text, const regression_t *r)
{
    CHECK(mkdirs_for(out_path));
    ncio_file_t f;
    CHECK(ncio_create(&f, out_path, r->title, deck_text));
    int st = regression_body(&f, r);
    if (st) {
        ncio_abandon(&f);
        return st;
    }
    CHECK(ncio_commit(&f));
    return VL_OK;
}

static double toy1d_f(double x) { return sin(3.0 * x) + 0.3 * x * x * x; }

int data_prepare_toy1d(uint64_t seed, const char *out_path, const char *deck_text)
{
    enum { NTR = DATA_TOY1D_TRAIN, NTE = DATA_TOY1D_TEST };
    float xtr[NTR], ytr[NTR], xte[NTE], yte[NTE];
    vl_rng_t r;
    rng_init(&r, seed, rng_stream(RNG_DATA, 0, 0));
    for (int i = 0; i < NTR; i++) {
        /* u in [0,1.4) maps onto [-1,-0.3) ∪ [0.3,1) */
        double u = 1.4 * rng_uniform(&r);
        double x = u < 0.7 ? -1.0 + u : 0.3 + (u - 0.7);
        xtr[i] = (float)x;
        ytr[i] = (float)(toy1d_f(x) + 0.1 * rng_normal(&r));
    }
    for (int i = 0; i < NTE; i++) {
        double x = -1.2 + 2.4 * rng_uniform(&r);
        xte[i] = (float)x;
        yte[i] = (float)(toy1d_f(x) + 0.1 * rng_normal(&r));
    }
    char source[512];
    snprintf(source, sizeof source,
             "generated by valley: y = sin(3x) + 0.3x^3 + eps, eps ~ N(0, 0.1^2); train x "
             "uniform on [-1,-0.3] U [0.3,1] (gap), test x uniform on [-1.2,1.2]; Philox stream "
             "rng_stream(RNG_DATA,0,0), seed %llu; draws per point: u, eps (train points first)",
             (unsigned long long)seed);
    regression_t reg = {
        .dataset = "toy1d", .title = "1-D regression toy with a gap, generated by valley",
        .feature_names = "x", .source = source, .n_train = NTR, .n_test = NTE, .n_feat = 1,
        .xtr = xtr, .ytr = ytr, .xte = xte, .yte = yte, .row_tr = NULL, .row_te = NULL};
    CHECK(regression_write(out_path, deck_text, &reg));
    return VL_OK;
}

/* ------------------------------------------------------------ CSV */

/* Reads a table of numbers (whitespace- or comma-separated; blank lines skipped;
 * "row" in messages = 1-based line number) into *vals (row-major, vl_alloc'd),
 * *nrows, *ncols. Every row must have the same number of columns (ncols_expect > 0
 * fixes it). */
static int csv_read(const char *path, int ncols_expect, double **vals, int64_t *nrows, int *ncols)
{
    *vals = NULL;
    *nrows = 0;
    *ncols = 0;
    gzFile g = gzopen(path, "rb");
    if (g == NULL)
        return VL_FAIL(VL_EINPUT, "%s: %s", path, errno ? strerror(errno) : "cannot open");
    size_t cap = 1024, used = 0;
    double *v = vl_alloc(cap * sizeof *v, path);
    char *line = vl_alloc(65536, path);
    int st = (v && line) ? VL_OK : VL_EIO;
    int nc = ncols_expect > 0 ? ncols_expect : -1;
    int64_t rows = 0;
    for (long lineno = 1; !st; lineno++) {
        if (gzgets(g, line, 65536) == NULL) {
            int e;
            const char *msg = gz_message(g, path, &e);
            if (e != Z_OK && e != Z_BUF_ERROR)
                st = VL_FAIL(VL_EINPUT, "%s: corrupt gzip data: %s", path, msg);
            else if (e == Z_BUF_ERROR)
                st = VL_FAIL(VL_EINPUT, "%s: truncated gzip data", path);
            break;
        }
        size_t len = strlen(line);
        if (len == 65535 && line[len - 1] != '\n') {
            st = VL_FAIL(VL_EINPUT, "%s: row %ld: line too long", path, lineno);
            break;
        }
        int comma = strchr(line, ',') != NULL;
        int col = 0;
        char *p = line;
        for (;;) {
            while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
            if (*p == '\0') {
                if (comma && col > 0) { /* "1,2," : empty last field */
                    char *q = p;
                    while (q > line && (q[-1] == ' ' || q[-1] == '\t' || q[-1] == '\r' || q[-1] == '\n')) q--;
                    if (q > line && q[-1] == ',') {
                        st = VL_FAIL(VL_EINPUT, "%s: row %ld, column %d: empty field", path, lineno,
                                     col + 1);
                    }
                }
                break;
            }
            /* one field: up to the separator */
            char *start = p;
            while (*p && *p != ',' && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') p++;
            char *end = p;
            /* with commas, only spaces may stand between the field and the comma */
            if (comma) {
                while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
                if (*p != ',' && *p != '\0') {
                    st = VL_FAIL(VL_EINPUT, "%s: row %ld, column %d: missing comma", path, lineno,
                                 col + 1);
                    break;
                }
            }
            char saved = *end;
            *end = '\0';
            col++;
            if (start == end) {
                st = VL_FAIL(VL_EINPUT, "%s: row %ld, column %d: empty field", path, lineno, col);
                break;
            }
            errno = 0;
            char *stop;
            double x = strtod(start, &stop);
            if (stop != end || !isfinite(x)) {
                st = VL_FAIL(VL_EINPUT, "%s: row %ld, column %d: '%.40s' is not a number", path,
                             lineno, col, start);
                break;
            }
            *end = saved;
            if (comma && *p == ',') p++;
            if (used == cap) {
                double *nv = vl_alloc(2 * cap * sizeof *nv, path);
                if (!nv) {
                    st = VL_EIO;
                    break;
                }
                memcpy(nv, v, used * sizeof *v);
                free(v);
                v = nv;
                cap *= 2;
            }
            v[used++] = x;
        }
        if (st) break;
        if (col == 0) continue; /* blank line */
        if (nc < 0) nc = col;
        if (col != nc) {
            st = VL_FAIL(VL_EINPUT, "%s: row %ld: expected %d columns, found %d", path, lineno, nc,
                         col);
            break;
        }
        rows++;
    }
    gzclose_r(g);
    free(line);
    if (!st && rows == 0) st = VL_FAIL(VL_EINPUT, "%s: no data rows", path);
    if (st) {
        free(v);
        return st;
    }
    *vals = v;
    *nrows = rows;
    *ncols = nc;
    return VL_OK;
}

int data_prepare_diabetes(const char *csv_dir, uint64_t seed, const char *out_path,
                          const char *deck_text)
{
    char xpath[4200], ypath[4200];
    CHECK(find_source(csv_dir, "diabetes_data_raw.csv", xpath, sizeof xpath));
    CHECK(find_source(csv_dir, "diabetes_target.csv", ypath, sizeof ypath));
    double *xv = NULL, *yv = NULL;
    int64_t nx, ny;
    int cx, cy;
    CHECK(csv_read(xpath, DATA_DIABETES_FEATURES, &xv, &nx, &cx));
    int st = csv_read(ypath, 1, &yv, &ny, &cy);
    if (!st && ny != nx)
        st = VL_FAIL(VL_EINPUT, "%s: %lld rows, but %s has %lld rows", ypath, (long long)ny, xpath,
                     (long long)nx);
    if (!st && nx < 10) st = VL_FAIL(VL_EINPUT, "%s: only %lld rows", xpath, (long long)nx);
    const int F = DATA_DIABETES_FEATURES;
    const int64_t n_train = nx * 9 / 10, n_test = nx - n_train;
    int64_t *perm = NULL;
    float *xtr = NULL, *ytr = NULL, *xte = NULL, *yte = NULL;
    int *rtr = NULL, *rte = NULL;
    if (!st) {
        perm = vl_alloc((size_t)nx * sizeof *perm, "permutation");
        xtr = vl_alloc((size_t)nx * F * sizeof *xtr, "diabetes");
        xte = vl_alloc((size_t)nx * F * sizeof *xte, "diabetes");
        ytr = vl_alloc((size_t)nx * sizeof *ytr, "diabetes");
        yte = vl_alloc((size_t)nx * sizeof *yte, "diabetes");
        rtr = vl_alloc((size_t)nx * sizeof *rtr, "diabetes");
        rte = vl_alloc((size_t)nx * sizeof *rte, "diabetes");
        if (!perm || !xtr || !xte || !ytr || !yte || !rtr || !rte) st = VL_EIO;
    }
    if (!st) {
        vl_rng_t r;
        rng_init(&r, seed, rng_stream(RNG_DATA, 1, 0));
        rng_permutation(&r, nx, perm);
        for (int64_t i = 0; i < nx; i++) {
            int64_t src = perm[i], k = i < n_train ? i : i - n_train;
            float *xd = i < n_train ? xtr : xte, *yd = i < n_train ? ytr : yte;
            int *rd = i < n_train ? rtr : rte;
            for (int j = 0; j < F; j++) xd[k * F + j] = (float)xv[src * F + j];
            yd[k] = (float)yv[src];
            rd[k] = (int)src;
        }
        char source[9000];
        snprintf(source, sizeof source,
                 "scikit-learn diabetes data (Efron et al. 2004), unscaled table %s and target %s "
                 "(Debian package python3-sklearn); split: rng_permutation of the %lld rows from "
                 "Philox stream rng_stream(RNG_DATA,1,0), seed %llu; the first %lld rows of the "
                 "permutation are train, the other %lld test",
                 xpath, ypath, (long long)nx, (unsigned long long)seed, (long long)n_train,
                 (long long)n_test);
        regression_t reg = {
            .dataset = "diabetes", .title = "Diabetes regression table, prepared by valley",
            .feature_names = "age,sex,bmi,bp,s1,s2,s3,s4,s5,s6", .source = source,
            .n_train = n_train, .n_test = n_test, .n_feat = F,
            .xtr = xtr, .ytr = ytr, .xte = xte, .yte = yte, .row_tr = rtr, .row_te = rte};
        st = regression_write(out_path, deck_text, &reg);
    }
    free(xv);
    free(yv);
    free(perm);
    free(xtr);
    free(xte);
    free(ytr);
    free(yte);
    free(rtr);
    free(rte);
    if (st) vl_trace(__FILE__, __LINE__);
    return st;
}

int data_prepare(const char *dataset, const char *source_dir, uint64_t seed, const char *out_path,
                 const char *deck_text)
{
    const int own = source_dir && *source_dir;
    if (dataset && strcmp(dataset, "fashion-mnist") == 0)
        CHECK(data_prepare_fashion_mnist(own ? source_dir : DATA_FASHION_MNIST_DIR, out_path, deck_text));
    else if (dataset && strcmp(dataset, "mnist") == 0)
        CHECK(data_prepare_mnist(own ? source_dir : NULL, out_path, deck_text));
    else if (dataset && strcmp(dataset, "toy1d") == 0)
        CHECK(data_prepare_toy1d(seed, out_path, deck_text));
    else if (dataset && strcmp(dataset, "diabetes") == 0)
        CHECK(data_prepare_diabetes(own ? source_dir : DATA_SKLEARN_DIR, seed, out_path, deck_text));
    else if (dataset && (strcmp(dataset, "cifar10") == 0 || strcmp(dataset, "cifar100") == 0))
        CHECK(data_prepare_cifar(strcmp(dataset, "cifar10") ? 100 : 10, own ? source_dir : NULL, out_path, deck_text));
    else
        return VL_FAIL(VL_EINPUT, "unknown dataset '%s' (fashion-mnist, mnist, cifar10, cifar100, toy1d, diabetes)",
                       dataset ? dataset : "");
    return VL_OK;
}

/* ------------------------------------------------------------ reading */

void data_shard(int64_t n, int rank, int nranks, int64_t *lo, int64_t *hi)
{
    *lo = n * rank / nranks;
    *hi = n * (rank + 1) / nranks;
}

void data_free(vl_split_t *s)
{
    if (!s) return;
    free(s->x);
    free(s->y);
    free(s->t);
    free(s->row);
    memset(s, 0, sizeof *s);
}

static int check_positive(const char *path, const char *name, double v)
{
    if (!isfinite(v) || v <= 0)
        return VL_FAIL(VL_EINPUT, "%s: attribute '%s' = %g must be finite and positive", path, name, v);
    return VL_OK;
}

static int check_finite(const char *path, const char *name, double v)
{
    if (!isfinite(v)) return VL_FAIL(VL_EINPUT, "%s: attribute '%s' is not finite", path, name);
    return VL_OK;
}

/* What a read asks for: the rows selected by `sel` (subset, classes) or exactly the file rows
 * list[0..nlist); with select_only nothing is read, the selection is handed back. */
typedef struct {
    const vl_rows_t *sel;
    const int64_t *list;
    int64_t nlist;
    int select_only;
    int64_t *rows; /* the selection (select_only: handed to the caller) */
    int64_t n;
    const char *norm_path; /* images: normalise with this dataset file's pixel statistics (data_load_as) */
} request_t;

/* The selection of a split of N rows: the first `subset` (0 = all), then, for a classification
 * split whose labels are the variable vy, the rows whose label is (complement: is not) one of
 * sel->classes. Or, with a given list, a check that it is ascending and inside [0, N). */
static int select_rows(int ncid, const char *path, const char *split, int64_t N, int vy, int n_classes,
                       request_t *q)
{
    if (q->list) {
        for (int64_t i = 0; i < q->nlist; i++)
            if (q->list[i] < 0 || q->list[i] >= N || (i > 0 && q->list[i] <= q->list[i - 1]))
                return VL_FAIL(VL_EINPUT, "%s: row list entry %lld = %lld: not ascending inside split '%s' (%lld rows)",
                               path, (long long)i, (long long)q->list[i], split, (long long)N);
        q->n = q->nlist;
        return VL_OK;
    }
    const vl_rows_t *sel = q->sel;
    if (sel->subset < 0) return VL_FAIL(VL_EINPUT, "%s: negative subset %lld", path, (long long)sel->subset);
    if (sel->subset > N)
        return VL_FAIL(VL_EINPUT, "%s: subset of %lld samples requested, but split '%s' holds %lld",
                       path, (long long)sel->subset, split, (long long)N);
    const int64_t m = sel->subset > 0 ? sel->subset : N;
    q->rows = vl_alloc(((size_t)m + 1) * sizeof *q->rows, "row selection");
    if (!q->rows) return VL_EIO;
    if (sel->nclasses <= 0) {
        for (int64_t i = 0; i < m; i++) q->rows[i] = i;
        q->n = m;
        return VL_OK;
    }
    if (vy < 0) return VL_FAIL(VL_EINPUT, "%s: a class selection on a dataset without classes", path);
    unsigned char *keep = calloc((size_t)n_classes + 1, 1);
    int32_t *y = vl_alloc(((size_t)m + 1) * sizeof *y, "labels");
    if (!keep || !y) {
        free(keep);
        free(y);
        return VL_FAIL(VL_EIO, "out of memory selecting rows of %s", path);
    }
    for (int k = 0; k < sel->nclasses; k++)
        if (sel->classes[k] >= 0 && sel->classes[k] < n_classes) keep[sel->classes[k]] = 1;
    size_t start = 0, count = (size_t)m;
    int st = m > 0 ? nc_get_vara_int(ncid, vy, &start, &count, y) : NC_NOERR;
    int rc = VL_OK;
    if (st != NC_NOERR)
        rc = VL_FAIL(VL_EINPUT, "%s: reading the labels of split '%s': %s", path, split, nc_strerror(st));
    int64_t n = 0;
    for (int64_t i = 0; i < m && !rc; i++) {
        if (y[i] < 0 || y[i] >= n_classes)
            rc = VL_FAIL(VL_EINPUT, "%s: %s_y[%lld] = %d is outside 0..%d", path, split, (long long)i, y[i],
                         n_classes - 1);
        else if (keep[y[i]] != (sel->complement != 0))
            q->rows[n++] = i;
    }
    free(keep);
    free(y);
    q->n = n;
    return rc;
}

/* Reads the file rows rows[0..n) (ascending) of variable v (ndims dimensions; a row holds the
 * `rowbytes` bytes of the trailing dimensions shape[1..]) into dst, n rows one after another, in
 * the variable's own type. A run of consecutive rows is read straight into dst; rows with gaps
 * between them are read in spans of at most ~16 MB and the selected ones copied out. Returns
 * the NetCDF status. */
static int read_rows(int ncid, int v, int ndims, const size_t *shape, const int64_t *rows, int64_t n,
                     size_t rowbytes, unsigned char *dst)
{
    size_t cap = rowbytes ? ((size_t)16 << 20) / rowbytes : 1;
    if (cap < 1) cap = 1;
    if (cap > 65536) cap = 65536;
    unsigned char *buf = NULL;
    for (int64_t i = 0; i < n;) {
        int64_t j = i + 1;
        while (j < n && (size_t)(rows[j] - rows[i]) < cap) j++;
        const size_t span = (size_t)(rows[j - 1] - rows[i] + 1);
        size_t start[4] = {(size_t)rows[i], 0, 0, 0}, count[4] = {span, 1, 1, 1};
        for (int d = 1; d < ndims && d < 4; d++) count[d] = shape[d];
        unsigned char *to = dst + (size_t)i * rowbytes;
        if (span != (size_t)(j - i) && !buf && !(buf = vl_alloc(cap * rowbytes + 1, "row buffer")))
            return NC_ENOMEM;
        int st = nc_get_vara(ncid, v, start, count, span == (size_t)(j - i) ? to : buf);
        if (st != NC_NOERR) {
            free(buf);
            return st;
        }
        if (span != (size_t)(j - i))
            for (int64_t k = i; k < j; k++)
                memcpy(dst + (size_t)k * rowbytes, buf + (size_t)(rows[k] - rows[i]) * rowbytes, rowbytes);
        i = j;
    }
    free(buf);
    return NC_NOERR;
}

/* This rank's shard of the q->n selected rows (data_shard over positions in the selection) and
 * their file rows in out->row. */
static int shard_rows(const request_t *q, int rank, int nranks, vl_split_t *out)
{
    out->n = q->n;
    data_shard(q->n, rank, nranks, &out->lo, &out->hi);
    const int64_t *all = q->list ? q->list : q->rows;
    const size_t rows = (size_t)(out->hi - out->lo);
    out->row = vl_alloc((rows + 1) * sizeof *out->row, "row numbers");
    if (!out->row) return VL_EIO;
    if (rows) memcpy(out->row, all + out->lo, rows * sizeof *out->row);
    return VL_OK;
}

int data_channel_stats(int ncid, const char *path, int channels, double *mean, double *std)
{
    /* pixel_mean / pixel_std: one value per channel (CIFAR) or one for all (Fashion-MNIST) */
    size_t n1 = 0, n2 = 0;
    if (nc_inq_attlen(ncid, NC_GLOBAL, "pixel_mean", &n1) != NC_NOERR || nc_inq_attlen(ncid, NC_GLOBAL, "pixel_std", &n2) != NC_NOERR)
        return VL_FAIL(VL_EINPUT, "%s: attributes 'pixel_mean' and 'pixel_std' are required (see doc/data.md)", path);
    const size_t want = channels <= DATA_MAX_CHANNELS ? (size_t)channels : 1;
    if (n1 != n2 || (n1 != 1 && n1 != want))
        return VL_FAIL(VL_EINPUT, "%s: 'pixel_mean' has %zu values and 'pixel_std' %zu: give 1 or one per channel (%d)",
                       path, n1, n2, channels);
    CHECK(ncio_get_att_double(ncid, NC_GLOBAL, path, "pixel_mean", n1, mean));
    CHECK(ncio_get_att_double(ncid, NC_GLOBAL, path, "pixel_std", n1, std));
    for (size_t c = 0; c < n1; c++) {
        CHECK(check_finite(path, "pixel_mean", mean[c]));
        CHECK(check_positive(path, "pixel_std", std[c]));
    }
    for (size_t c = n1; c < DATA_MAX_CHANNELS; c++) { mean[c] = mean[0]; std[c] = std[0]; }
    return VL_OK;
}

static int load_classification(int ncid, const char *path, const char *split, request_t *q,
                               int rank, int nranks, vl_split_t *out)
{
    char xname[32], yname[32];
    snprintf(xname, sizeof xname, "%s_x", split);
    snprintf(yname, sizeof yname, "%s_y", split);
    long long any4[4] = {-1, -1, -1, -1};
    size_t len[4];
    int vx, vy;
    CHECK(ncio_var(ncid, path, xname, NC_UBYTE, 4, any4, &vx, len));
    long long ny[1] = {(long long)len[0]};
    CHECK(ncio_var(ncid, path, yname, NC_INT, 1, ny, &vy, NULL));
    if (len[0] > (size_t)INT32_MAX)
        return VL_FAIL(VL_EINPUT, "%s: %s has %zu rows (more than 2^31-1)", path, xname, len[0]);
    for (int i = 1; i < 4; i++)
        if (len[i] == 0 || len[i] > 65536)
            return VL_FAIL(VL_EINPUT, "%s: %s: implausible image shape (%zu, %zu, %zu)", path, xname,
                           len[1], len[2], len[3]);
    size_t in_dim;
    if (vl_mul_size(len[1] * len[2], len[3], &in_dim) || in_dim > (size_t)INT_MAX)
        return VL_FAIL(VL_EINPUT, "%s: %s: image too large", path, xname);
    double nc, scale, mean[DATA_MAX_CHANNELS], std[DATA_MAX_CHANNELS];
    CHECK(ncio_get_att_double(ncid, NC_GLOBAL, path, "n_classes", 1, &nc));
    if (!(nc >= 1 && nc <= 1e6) || nc != floor(nc))
        return VL_FAIL(VL_EINPUT, "%s: attribute 'n_classes' = %g is not a positive integer", path, nc);
    CHECK(ncio_get_att_double(ncid, NC_GLOBAL, path, "pixel_scale", 1, &scale));
    CHECK(check_positive(path, "pixel_scale", scale));
    CHECK(data_channel_stats(ncid, path, (int)len[1], mean, std));
    if (q->norm_path) { /* as the images of another dataset file are normalised */
        int nid;
        CHECK(ncio_open(q->norm_path, &nid));
        int st = ncio_get_att_double(nid, NC_GLOBAL, q->norm_path, "pixel_scale", 1, &scale);
        if (!st) st = check_positive(q->norm_path, "pixel_scale", scale);
        if (!st) st = data_channel_stats(nid, q->norm_path, (int)len[1], mean, std);
        nc_close(nid);
        CHECK(st);
    }

    out->classification = 1;
    out->n_classes = (int)nc;
    out->in_c = (int)len[1];
    out->in_h = (int)len[2];
    out->in_w = (int)len[3];
    out->in_dim = (int)in_dim;
    out->out_dim = out->n_classes;
    CHECK(select_rows(ncid, path, split, (int64_t)len[0], vy, out->n_classes, q));
    if (q->select_only) return VL_OK;
    CHECK(shard_rows(q, rank, nranks, out));
    size_t rows = (size_t)(out->hi - out->lo), nval;
    if (vl_mul_size(rows, in_dim, &nval)) return VL_FAIL(VL_EINPUT, "%s: shard too large", path);
    unsigned char *raw = vl_alloc(nval + 1, "pixels");
    if (!raw) return VL_EIO;
    out->x = vl_alloc(nval * sizeof(float) + 1, "dataset inputs");
    out->y = vl_alloc(rows * sizeof(int32_t) + 1, "dataset labels");
    if (!out->x || !out->y) {
        free(raw);
        return VL_EIO;
    }
    int st = read_rows(ncid, vx, 4, len, out->row, (int64_t)rows, in_dim, raw);
    if (st == NC_NOERR) st = read_rows(ncid, vy, 1, len, out->row, (int64_t)rows, sizeof(int32_t), (unsigned char *)out->y);
    if (st != NC_NOERR) {
        free(raw);
        return VL_FAIL(VL_EINPUT, "%s: reading rows %lld..%lld of split '%s': %s", path,
                       (long long)(rows ? out->row[0] : 0), (long long)(rows ? out->row[rows - 1] + 1 : 0), split,
                       nc_strerror(st));
    }
    const int C = (int)len[1];
    const size_t plane = len[2] * len[3];
    float lut[256];
    for (int c = 0; c < C; c++) {
        const int k = c < DATA_MAX_CHANNELS ? c : 0; /* one value for every channel beyond them */
        for (int p = 0; p < 256; p++) lut[p] = (float)((p * scale - mean[k]) / std[k]);
        for (size_t r = 0; r < rows; r++) {
            const unsigned char *src = raw + (r * C + (size_t)c) * plane;
            float *dst = out->x + (r * C + (size_t)c) * plane;
            for (size_t i = 0; i < plane; i++) dst[i] = lut[src[i]];
        }
    }
    free(raw);
    for (size_t i = 0; i < rows; i++)
        if (out->y[i] < 0 || out->y[i] >= out->n_classes)
            return VL_FAIL(VL_EINPUT, "%s: %s[%lld] = %d is outside 0..%d", path, yname,
                           (long long)out->row[i], out->y[i], out->n_classes - 1);
    return VL_OK;
}

static int load_regression(int ncid, const char *path, const char *split, request_t *q, int rank,
                           int nranks, vl_split_t *out)
{
    char xname[32], yname[32];
    snprintf(xname, sizeof xname, "%s_x", split);
    snprintf(yname, sizeof yname, "%s_y", split);
    long long any2[2] = {-1, -1};
    size_t len[2], tlen[2];
    int vx, vy;
    CHECK(ncio_var(ncid, path, xname, NC_FLOAT, 2, any2, &vx, len));
    long long ylen[2] = {(long long)len[0], 1};
    CHECK(ncio_var(ncid, path, yname, NC_FLOAT, 2, ylen, &vy, tlen));
    if (len[0] > (size_t)INT32_MAX)
        return VL_FAIL(VL_EINPUT, "%s: %s has %zu rows (more than 2^31-1)", path, xname, len[0]);
    if (len[1] == 0 || len[1] > 1000000)
        return VL_FAIL(VL_EINPUT, "%s: %s: implausible feature count %zu", path, xname, len[1]);
    const int F = (int)len[1];
    double *xm = vl_alloc((size_t)F * sizeof *xm, "feature means");
    double *xs = vl_alloc((size_t)F * sizeof *xs, "feature stds");
    if (!xm || !xs) {
        free(xm);
        free(xs);
        return VL_EIO;
    }
    double ym, ys;
    int st = ncio_get_att_double(ncid, NC_GLOBAL, path, "x_mean", (size_t)F, xm);
    if (!st) st = ncio_get_att_double(ncid, NC_GLOBAL, path, "x_std", (size_t)F, xs);
    if (!st) st = ncio_get_att_double(ncid, NC_GLOBAL, path, "y_mean", 1, &ym);
    if (!st) st = ncio_get_att_double(ncid, NC_GLOBAL, path, "y_std", 1, &ys);
    for (int j = 0; j < F && !st; j++) {
        st = check_finite(path, "x_mean", xm[j]);
        if (!st) st = check_positive(path, "x_std", xs[j]);
    }
    if (!st) st = check_finite(path, "y_mean", ym);
    if (!st) st = check_positive(path, "y_std", ys);

    out->classification = 0;
    out->n_classes = 0;
    out->in_c = F;
    out->in_h = out->in_w = 1;
    out->in_dim = F;
    out->out_dim = 1;
    out->t_mean = ym;
    out->t_std = ys;
    if (!st) st = select_rows(ncid, path, split, (int64_t)len[0], -1, 0, q);
    if (!st && q->select_only) {
        free(xm);
        free(xs);
        return VL_OK;
    }
    if (!st) st = shard_rows(q, rank, nranks, out);
    size_t rows = (size_t)(out->hi - out->lo);
    if (!st) {
        out->x = vl_alloc(rows * (size_t)F * sizeof(float) + 1, "dataset inputs");
        out->t = vl_alloc(rows * sizeof(float) + 1, "dataset targets");
        if (!out->x || !out->t) st = VL_EIO;
    }
    if (!st && rows > 0) {
        int nst = read_rows(ncid, vx, 2, len, out->row, (int64_t)rows, (size_t)F * sizeof(float),
                            (unsigned char *)out->x);
        if (nst == NC_NOERR)
            nst = read_rows(ncid, vy, 2, tlen, out->row, (int64_t)rows, sizeof(float), (unsigned char *)out->t);
        if (nst != NC_NOERR)
            st = VL_FAIL(VL_EINPUT, "%s: reading rows %lld..%lld of split '%s': %s", path,
                         (long long)out->row[0], (long long)out->row[rows - 1] + 1, split, nc_strerror(nst));
    }
    for (size_t i = 0; i < rows && !st; i++) {
        for (int j = 0; j < F && !st; j++) {
            float *v = &out->x[i * (size_t)F + (size_t)j];
            if (!isfinite(*v))
                st = VL_FAIL(VL_EINPUT, "%s: %s[%lld][%d] is not finite", path, xname, (long long)out->row[i], j);
            *v = (float)((*v - xm[j]) / xs[j]);
        }
        if (!st && !isfinite(out->t[i]))
            st = VL_FAIL(VL_EINPUT, "%s: %s[%lld] is not finite", path, yname, (long long)out->row[i]);
        if (!st) out->t[i] = (float)((out->t[i] - ym) / ys);
    }
    free(xm);
    free(xs);
    return st;
}

static int load_body(int ncid, const char *path, const char *split, request_t *q, int rank,
                     int nranks, vl_split_t *out)
{
    char *dataset = NULL, *task = NULL;
    int st = ncio_get_att_text(ncid, NC_GLOBAL, path, "dataset", &dataset);
    if (!st) st = ncio_get_att_text(ncid, NC_GLOBAL, path, "task", &task);
    if (!st && (dataset[0] == '\0' || strlen(dataset) >= sizeof out->dataset))
        st = VL_FAIL(VL_EINPUT, "%s: attribute 'dataset' = '%.64s' is empty or too long", path,
                     dataset);
    if (!st) {
        snprintf(out->dataset, sizeof out->dataset, "%s", dataset);
        if (strcmp(task, "classification") == 0)
            st = load_classification(ncid, path, split, q, rank, nranks, out);
        else if (strcmp(task, "regression") == 0)
            st = load_regression(ncid, path, split, q, rank, nranks, out);
        else
            st = VL_FAIL(VL_EINPUT, "%s: attribute 'task' = '%.64s', expected classification or "
                         "regression", path, task);
    }
    free(dataset);
    free(task);
    if (st) vl_trace(__FILE__, __LINE__);
    return st;
}

/* Checks the arguments, opens the file and runs the request. */
static int load_request(const char *path, const char *split, request_t *q, int rank, int nranks, vl_split_t *out)
{
    memset(out, 0, sizeof *out);
    if (!split || (strcmp(split, "train") != 0 && strcmp(split, "test") != 0))
        return VL_FAIL(VL_EINPUT, "%s: unknown split '%s' (train or test)", path,
                       split ? split : "");
    if (nranks < 1 || rank < 0 || rank >= nranks)
        return VL_FAIL(VL_EINPUT, "data_load: rank %d of %d", rank, nranks);
    if (q->sel && q->sel->subset < 0)
        return VL_FAIL(VL_EINPUT, "%s: negative subset %lld", path, (long long)q->sel->subset);
    struct stat sb;
    if (stat(path, &sb) != 0 && errno == ENOENT) {
        /* the name of the dataset is the file's base name without ".nc" */
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        size_t n = strlen(base);
        if (n > 3 && strcmp(base + n - 3, ".nc") == 0) n -= 3;
        return VL_FAIL(VL_EINPUT, "%s: No such file or directory (run `valley prepare %.*s`)",
                       path, (int)n, base);
    }
    int ncid;
    CHECK(ncio_open(path, &ncid));
    int st = load_body(ncid, path, split, q, rank, nranks, out);
    nc_close(ncid);
    if (st) {
        data_free(out);
        vl_trace(__FILE__, __LINE__);
    }
    return st;
}

int data_load(const char *path, const char *split, int64_t subset, int rank, int nranks,
              vl_split_t *out)
{
    const vl_rows_t sel = {.subset = subset};
    request_t q = {.sel = &sel};
    int st = load_request(path, split, &q, rank, nranks, out);
    free(q.rows);
    return st;
}

int data_load_as(const char *path, const char *split, int64_t subset, const char *norm_path, int rank, int nranks,
                 vl_split_t *out)
{
    const vl_rows_t sel = {.subset = subset};
    request_t q = {.sel = &sel, .norm_path = norm_path};
    int st = load_request(path, split, &q, rank, nranks, out);
    free(q.rows);
    return st;
}

int data_select(const char *path, const char *split, const vl_rows_t *sel, int64_t **rows, int64_t *n)
{
    *rows = NULL;
    *n = 0;
    request_t q = {.sel = sel, .select_only = 1};
    vl_split_t info;
    int st = load_request(path, split, &q, 0, 1, &info);
    data_free(&info);
    if (st) {
        free(q.rows);
        return st;
    }
    *rows = q.rows;
    *n = q.n;
    return VL_OK;
}

int data_load_list(const char *path, const char *split, const int64_t *rows, int64_t n, int rank, int nranks,
                   vl_split_t *out)
{
    request_t q = {.list = rows, .nlist = n};
    return load_request(path, split, &q, rank, nranks, out);
}

int data_classes(const char *path, int *classification, int *n_classes)
{
    const vl_rows_t sel = {0};
    request_t q = {.sel = &sel, .select_only = 1};
    vl_split_t info;
    int st = load_request(path, "train", &q, 0, 1, &info);
    free(q.rows);
    *classification = info.classification;
    *n_classes = info.n_classes;
    data_free(&info);
    return st;
}
