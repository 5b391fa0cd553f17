/* test_ncio.c — NetCDF output helpers: tmp + rename, provenance attributes,
 * failure paths (unwritable directory, failing rename), checked readers.
 * Cross-checked with Python's netCDF4 ($PYTHON) when available.
 * Runs on any number of ranks (the parallel part is collective over MPI_COMM_WORLD). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mpi.h>
#include <netcdf.h>

#include "gitversion.h"
#include "valley/error.h"
#include "valley/ncio.h"
#include "valley/test.h"

static char dir[512];

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* number of entries of d whose name contains ".tmp." */
static int count_tmp(const char *d)
{
    DIR *dp = opendir(d);
    int n = 0;
    if (!dp) return -1;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL)
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(dp);
    return n;
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

static void write_file(const char *p, const void *data, size_t n)
{
    FILE *fp = fopen(p, "wb");
    if (fp) {
        fwrite(data, 1, n, fp);
        fclose(fp);
    }
}

/* A complete file through the helpers: a (3, 4) float variable with attributes. */
static int write_sample(ncio_file_t *f)
{
    int d_row, d_col, v;
    CHECK(ncio_def_dim(f, "row", 3, &d_row));
    CHECK(ncio_def_dim(f, "col", 4, &d_col));
    int dims[2] = {d_row, d_col};
    CHECK(ncio_def_var(f, "v", NC_FLOAT, 2, dims, "sample values", "m s-1", &v));
    double two[2] = {0.5, -1.25};
    CHECK(ncio_put_att_double(f, NC_GLOBAL, "pair", 2, two));
    int k = 7;
    CHECK(ncio_put_att_int(f, NC_GLOBAL, "seven", 1, &k));
    CHECK(ncio_enddef(f));
    float vals[12];
    for (int i = 0; i < 12; i++) vals[i] = (float)i * 0.5f;
    NC_CHECK_W(f, nc_put_var_float(f->ncid, v, vals), "writing v");
    return VL_OK;
}

static void test_create_commit(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/good.nc", dir);
    ncio_file_t f;
    const char *deck = "[run]\nseed = 3\n";
    int st = ncio_create(&f, path, "a test file", deck);
    T_CHECK(st == VL_OK, "create: %s", vl_error_message());
    if (st) return;
    T_CHECK(contains(f.tmp, ".tmp.") && strncmp(f.tmp, path, strlen(path)) == 0, "tmp name %s", f.tmp);
    T_CHECK(exists(f.tmp) && !exists(path), "only the tmp file exists before commit");
    st = write_sample(&f);
    T_CHECK(st == VL_OK, "write: %s", vl_error_message());
    st = ncio_commit(&f);
    T_CHECK(st == VL_OK, "commit: %s", vl_error_message());
    T_CHECK(exists(path), "final file exists");
    T_CHECK(count_tmp(dir) == 0, "no tmp file left (%d)", count_tmp(dir));

    int ncid;
    st = ncio_open(path, &ncid);
    T_CHECK(st == VL_OK, "open: %s", vl_error_message());
    if (st) return;
    char *s = NULL;
    T_CHECK(ncio_get_att_text(ncid, NC_GLOBAL, path, "valley_version", &s) == VL_OK && s &&
                strcmp(s, VALLEY_VERSION) == 0, "valley_version '%s'", s ? s : "");
    free(s);
    /* the library may have been compiled at another commit than this test (make does
     * not rebuild ncio.o when HEAD moves): accept any commit id or "unknown" */
    T_CHECK(ncio_get_att_text(ncid, NC_GLOBAL, path, "git_commit", &s) == VL_OK && s &&
                (strcmp(s, VALLEY_GIT_COMMIT) == 0 || strcmp(s, "unknown") == 0 ||
                 (strlen(s) >= 7 && strspn(s, "0123456789abcdef") == strlen(s))),
            "git_commit '%s'", s ? s : "");
    free(s);
    T_CHECK(ncio_get_att_text(ncid, NC_GLOBAL, path, "deck", &s) == VL_OK && s &&
                strcmp(s, deck) == 0, "deck '%s'", s ? s : "");
    free(s);
    T_CHECK(ncio_get_att_text(ncid, NC_GLOBAL, path, "title", &s) == VL_OK && s &&
                strcmp(s, "a test file") == 0, "title '%s'", s ? s : "");
    free(s);
    /* created: "YYYY-MM-DDTHH:MM:SSZ" */
    T_CHECK(ncio_get_att_text(ncid, NC_GLOBAL, path, "created", &s) == VL_OK && s &&
                strlen(s) == 20 && s[4] == '-' && s[10] == 'T' && s[19] == 'Z', "created '%s'",
            s ? s : "");
    free(s);

    long long want[2] = {3, 4};
    size_t len[2] = {0, 0};
    int v;
    st = ncio_var(ncid, path, "v", NC_FLOAT, 2, want, &v, len);
    T_CHECK(st == VL_OK && len[0] == 3 && len[1] == 4, "ncio_var ok: %s", vl_error_message());
    T_CHECK(ncio_get_att_text(ncid, v, path, "units", &s) == VL_OK && s && strcmp(s, "m s-1") == 0,
            "units");
    free(s);
    T_CHECK(ncio_get_att_text(ncid, v, path, "long_name", &s) == VL_OK && s &&
                strcmp(s, "sample values") == 0, "long_name");
    free(s);
    float back[12];
    T_CHECK(nc_get_var_float(ncid, v, back) == NC_NOERR && back[11] == 5.5f, "data back");
    double pair[2];
    T_CHECK(ncio_get_att_double(ncid, NC_GLOBAL, path, "pair", 2, pair) == VL_OK &&
                pair[0] == 0.5 && pair[1] == -1.25, "double attribute");
    double seven;
    T_CHECK(ncio_get_att_double(ncid, NC_GLOBAL, path, "seven", 1, &seven) == VL_OK && seven == 7,
            "int attribute read as double");

    /* reader failures name the file and the variable */
    vl_error_clear();
    long long want_bad[2] = {-1, 784};
    st = ncio_var(ncid, path, "v", NC_FLOAT, 2, want_bad, &v, NULL);
    T_CHECK(st == VL_EINPUT && contains(vl_error_message(), path) &&
                contains(vl_error_message(), "variable 'v': expected float (*, 784), found float (3, 4)"),
            "wrong length: %s", vl_error_message());
    vl_error_clear();
    st = ncio_var(ncid, path, "v", NC_UBYTE, 2, NULL, &v, NULL);
    T_CHECK(st == VL_EINPUT && contains(vl_error_message(), "expected ubyte (*, *), found float"),
            "wrong type: %s", vl_error_message());
    vl_error_clear();
    st = ncio_var(ncid, path, "v", NC_FLOAT, 1, NULL, &v, NULL);
    T_CHECK(st == VL_EINPUT && contains(vl_error_message(), "expected float (*), found float (3, 4)"),
            "wrong rank: %s", vl_error_message());
    vl_error_clear();
    st = ncio_var(ncid, path, "w", NC_FLOAT, 2, NULL, &v, NULL);
    T_CHECK(st == VL_EINPUT && contains(vl_error_message(), "variable 'w' not found"),
            "missing var: %s", vl_error_message());
    vl_error_clear();
    st = ncio_get_att_double(ncid, NC_GLOBAL, path, "pair", 3, pair);
    T_CHECK(st == VL_EINPUT && contains(vl_error_message(), "'pair'"), "att length: %s",
            vl_error_message());
    vl_error_clear();
    st = ncio_get_att_double(ncid, NC_GLOBAL, path, "title", 1, pair);
    T_CHECK(st == VL_EINPUT, "text attribute read as number: %s", vl_error_message());
    vl_error_clear();
    s = NULL;
    st = ncio_get_att_text(ncid, NC_GLOBAL, path, "nothere", &s);
    T_CHECK(st == VL_EINPUT && s == NULL && contains(vl_error_message(), "'nothere' not found"),
            "missing att: %s", vl_error_message());
    vl_error_clear();
    st = ncio_get_att_text(ncid, NC_GLOBAL, path, "seven", &s);
    T_CHECK(st == VL_EINPUT, "numeric attribute read as text");
    vl_error_clear();
    nc_close(ncid);

    /* independent reader: Python's netCDF4 */
    const char *py = getenv("PYTHON");
    if (py && *py) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd,
                 "%s -c 'import netCDF4,sys; d=netCDF4.Dataset(sys.argv[1]); "
                 "assert d.valley_version==sys.argv[2], d.valley_version; "
                 "assert d.deck==\"[run]\\nseed = 3\\n\", repr(d.deck); "
                 "assert d.data_model==\"NETCDF4\", d.data_model; "
                 "v=d[\"v\"]; assert v.units==\"m s-1\" and v.shape==(3,4); "
                 "assert float(v[2,3])==5.5' '%s' '%s'",
                 py, path, VALLEY_VERSION);
        int rc = system(cmd);
        T_CHECK(rc == 0, "python netCDF4 cross-check failed (rc %d)", rc);
    }

    /* deck NULL -> "" */
    snprintf(path, sizeof path, "%s/nodeck.nc", dir);
    st = ncio_create(&f, path, NULL, NULL);
    T_CHECK(st == VL_OK, "create without deck");
    if (!st) {
        T_CHECK(ncio_enddef(&f) == VL_OK && ncio_commit(&f) == VL_OK, "commit");
        if (ncio_open(path, &ncid) == VL_OK) {
            T_CHECK(ncio_get_att_text(ncid, NC_GLOBAL, path, "deck", &s) == VL_OK && s &&
                        s[0] == '\0', "empty deck");
            free(s);
            nc_close(ncid);
        }
    }
}

static void test_abandon(void)
{
    char sub[600], path[700];
    snprintf(sub, sizeof sub, "%s/abandon", dir);
    T_CHECK(ncio_mkdirs(sub) == VL_OK, "mkdirs");
    snprintf(path, sizeof path, "%s/x.nc", sub);
    ncio_file_t f;
    T_CHECK(ncio_create(&f, path, "t", "d") == VL_OK, "create");
    T_CHECK(exists(f.tmp), "tmp exists");
    ncio_abandon(&f);
    ncio_abandon(&f); /* twice is harmless */
    T_CHECK(!exists(path) && count_tmp(sub) == 0, "nothing left after abandon");
    /* abandon after data mode too */
    T_CHECK(ncio_create(&f, path, "t", "d") == VL_OK && write_sample(&f) == VL_OK, "create 2");
    ncio_abandon(&f);
    T_CHECK(!exists(path) && count_tmp(sub) == 0, "nothing left after abandon in data mode");
}

static void test_unwritable(void)
{
    ncio_file_t f;
    const char *p1 = "/proc/valley_nonexistent/x.nc";
    vl_error_clear();
    int st = ncio_create(&f, p1, "t", "d");
    T_CHECK(st == VL_EIO && contains(vl_error_message(), p1), "create under /proc: %d %s", st,
            vl_error_message());
    T_CHECK(!exists(p1), "no final file under /proc");

    /* a path under a regular file */
    char regular[600], p2[700];
    snprintf(regular, sizeof regular, "%s/regular.txt", dir);
    write_file(regular, "x", 1);
    snprintf(p2, sizeof p2, "%s/x.nc", regular);
    vl_error_clear();
    st = ncio_create(&f, p2, "t", "d");
    T_CHECK(st == VL_EIO && contains(vl_error_message(), p2), "create under a file: %d %s", st,
            vl_error_message());
    T_CHECK(!exists(p2), "no file under a regular file");

    /* rename fails at commit: the final name is a non-empty directory */
    char sub[600], p3[700], inner[800];
    snprintf(sub, sizeof sub, "%s/commitfail", dir);
    snprintf(p3, sizeof p3, "%s/out.nc", sub);
    snprintf(inner, sizeof inner, "%s/keep", p3);
    T_CHECK(ncio_mkdirs(inner) == VL_OK, "mkdirs %s", inner);
    vl_error_clear();
    st = ncio_create(&f, p3, "t", "d");
    T_CHECK(st == VL_OK, "create: %s", vl_error_message());
    if (!st) {
        T_CHECK(write_sample(&f) == VL_OK, "write");
        st = ncio_commit(&f);
        T_CHECK(st == VL_EIO && contains(vl_error_message(), p3) &&
                    contains(vl_error_message(), "rename"),
                "commit onto a directory: %d %s", st, vl_error_message());
        struct stat sb;
        T_CHECK(stat(p3, &sb) == 0 && S_ISDIR(sb.st_mode), "the directory is untouched");
        T_CHECK(count_tmp(sub) == 0, "tmp removed after failed commit");
    }
    vl_error_clear();

    /* mkdirs: nested creation, and failure under a regular file */
    char deep[700];
    snprintf(deep, sizeof deep, "%s/a/b/c/", dir);
    T_CHECK(ncio_mkdirs(deep) == VL_OK && exists(deep), "mkdirs nested");
    T_CHECK(ncio_mkdirs(deep) == VL_OK, "mkdirs existing");
    snprintf(deep, sizeof deep, "%s/sub", regular);
    st = ncio_mkdirs(deep);
    T_CHECK(st == VL_EIO && contains(vl_error_message(), deep), "mkdirs under a file: %s",
            vl_error_message());
    vl_error_clear();
}

static void test_open_errors(void)
{
    char path[700];
    int ncid;
    snprintf(path, sizeof path, "%s/missing.nc", dir);
    vl_error_clear();
    int st = ncio_open(path, &ncid);
    T_CHECK(st == VL_EINPUT && contains(vl_error_message(), path) &&
                contains(vl_error_message(), "No such file"), "missing: %s", vl_error_message());
    snprintf(path, sizeof path, "%s/text.nc", dir);
    const char *txt = "this is not a netcdf file, just some text that is long enough\n";
    write_file(path, txt, strlen(txt));
    vl_error_clear();
    st = ncio_open(path, &ncid);
    T_CHECK(st == VL_EINPUT && contains(vl_error_message(), path) &&
                contains(vl_error_message(), "not a NetCDF file"), "text: %s", vl_error_message());
    /* truncated copy of a good file */
    char good[700];
    snprintf(good, sizeof good, "%s/good.nc", dir);
    FILE *fp = fopen(good, "rb");
    T_CHECK(fp != NULL, "good.nc readable");
    if (fp) {
        static unsigned char buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf, fp);
        fclose(fp);
        size_t cuts[3] = {n / 2, 600, 8};
        for (int i = 0; i < 3; i++) {
            snprintf(path, sizeof path, "%s/cut%d.nc", dir, i);
            write_file(path, buf, cuts[i]);
            vl_error_clear();
            st = ncio_open(path, &ncid);
            if (st == VL_OK) { /* HDF5 may open it lazily; reading must then fail cleanly */
                int v;
                float back[12];
                st = ncio_var(ncid, path, "v", NC_FLOAT, 2, NULL, &v, NULL);
                if (!st) st = ncio_check(nc_get_var_float(ncid, v, back), VL_EINPUT, path, "v");
                nc_close(ncid);
            }
            T_CHECK(st == VL_EINPUT && contains(vl_error_message(), path),
                    "truncated to %zu of %zu bytes: %d %s", cuts[i], n, st, vl_error_message());
        }
        /* a classic magic number in front of the HDF5 file, which then starts at byte 512
         * as after a user block: netCDF picks its classic reader by the first bytes, so
         * the file must be refused as classic (the HDF5 signature at 512 let it through) */
        static unsigned char cl[512 + (1 << 16)];
        memcpy(cl, "CDF\001", 4);
        memcpy(cl + 512, buf, n);
        snprintf(path, sizeof path, "%s/classic_then_hdf5.nc", dir);
        write_file(path, cl, 512 + n);
        vl_error_clear();
        st = ncio_open(path, &ncid);
        if (st == VL_OK) nc_close(ncid);
        T_CHECK(st == VL_EINPUT && contains(vl_error_message(), path) &&
                    contains(vl_error_message(), "classic-format file (CDF-1)"),
                "classic magic before an HDF5 signature: %d %s", st, vl_error_message());
    }
    vl_error_clear();
}

static void test_parallel(void)
{
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char path[700];
    snprintf(path, sizeof path, "%s/par.nc", dir);
    ncio_file_t f;
    int st = ncio_create_par(&f, path, "parallel", "deck p", MPI_COMM_WORLD);
    T_CHECK(st == VL_OK, "create_par: %s", vl_error_message());
    if (st) return;
    int d, v;
    st = ncio_def_dim(&f, "rank", (size_t)size, &d);
    if (!st) st = ncio_def_var(&f, "r", NC_INT, 1, &d, "rank id", "1", &v);
    if (!st) st = ncio_enddef(&f);
    if (!st) {
        size_t start = (size_t)rank, count = 1;
        int val = 10 + rank;
        st = ncio_check(nc_var_par_access(f.ncid, v, NC_COLLECTIVE), VL_EIO, path, "access");
        if (!st) st = ncio_check(nc_put_vara_int(f.ncid, v, &start, &count, &val), VL_EIO, path, "r");
    }
    T_CHECK(st == VL_OK, "parallel write: %s", vl_error_message());
    st = ncio_commit(&f);
    T_CHECK(st == VL_OK, "commit_par: %s", vl_error_message());
    MPI_Barrier(MPI_COMM_WORLD);
    int ncid;
    T_CHECK(exists(path) && count_tmp(dir) == 0, "parallel file committed, no tmp");
    if (ncio_open(path, &ncid) == VL_OK) {
        int back[64] = {0}, vv;
        long long want[1] = {size};
        T_CHECK(ncio_var(ncid, path, "r", NC_INT, 1, want, &vv, NULL) == VL_OK, "var r");
        T_CHECK(nc_get_var_int(ncid, vv, back) == NC_NOERR, "read r");
        for (int i = 0; i < size && i < 64; i++) T_CHECK(back[i] == 10 + i, "r[%d] = %d", i, back[i]);
        char *s = NULL;
        T_CHECK(ncio_get_att_text(ncid, NC_GLOBAL, path, "deck", &s) == VL_OK && s &&
                    strcmp(s, "deck p") == 0, "deck attr");
        free(s);
        nc_close(ncid);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    /* parallel open */
    st = ncio_open_par(path, MPI_COMM_WORLD, &ncid);
    T_CHECK(st == VL_OK, "open_par: %s", vl_error_message());
    if (!st) nc_close(ncid);

    /* parallel abandon */
    snprintf(path, sizeof path, "%s/par_abandon.nc", dir);
    st = ncio_create_par(&f, path, "parallel", "deck p", MPI_COMM_WORLD);
    T_CHECK(st == VL_OK, "create_par 2");
    if (!st) ncio_abandon(&f);
    MPI_Barrier(MPI_COMM_WORLD);
    T_CHECK(!exists(path) && count_tmp(dir) == 0, "parallel abandon leaves nothing");
    /* parallel create in an impossible place: every rank gets VL_EIO */
    vl_error_clear();
    st = ncio_create_par(&f, "/proc/valley_nonexistent/p.nc", "t", "d", MPI_COMM_WORLD);
    T_CHECK(st == VL_EIO && contains(vl_error_message(), "/proc/valley_nonexistent/p.nc"),
            "create_par under /proc: %d %s", st, vl_error_message());
    vl_error_clear();
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const char *base = getenv("VALLEY_TEST_TMP");
    if (rank == 0) {
        snprintf(dir, sizeof dir, "%s/ncio.XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
    MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (rank == 0) { /* serial parts: one rank only */
        test_create_commit();
        test_abandon();
        test_unwritable();
        test_open_errors();
    }
    MPI_Barrier(MPI_COMM_WORLD);
    test_parallel();
    int fails = test_failures, all = 0;
    MPI_Allreduce(&fails, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0 && size > 1) printf("failures on all ranks: %d\n", all);
    test_failures = all;
    if (rank == 0 && !base) { /* own scratch dir: clean up */
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    }
    MPI_Finalize();
    T_DONE();
}
