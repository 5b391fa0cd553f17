/* ncio.c — NetCDF-4 output (tmp + rename, provenance attributes) and checked input. */
#include "gitversion.h"
#include "valley/ncio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <netcdf_mem.h>
#include <netcdf_par.h>

#ifndef VALLEY_VERSION
#define VALLEY_VERSION "unknown"
#endif
#ifndef VALLEY_GIT_COMMIT
#define VALLEY_GIT_COMMIT "unknown"
#endif

const char *ncio_type_name(nc_type type)
{
    switch (type) {
    case NC_BYTE: return "byte";
    case NC_CHAR: return "char";
    case NC_SHORT: return "short";
    case NC_INT: return "int";
    case NC_FLOAT: return "float";
    case NC_DOUBLE: return "double";
    case NC_UBYTE: return "ubyte";
    case NC_USHORT: return "ushort";
    case NC_UINT: return "uint";
    case NC_INT64: return "int64";
    case NC_UINT64: return "uint64";
    case NC_STRING: return "string";
    default: return "user-defined type";
    }
}

int ncio_check(int ncstatus, int status_code, const char *path, const char *what)
{
    if (ncstatus == NC_NOERR) return VL_OK;
    /* A failed write inside HDF5 only says "HDF error"; the system's reason (no space
     * left, read-only file system, quota) is still in errno. */
    if (status_code == VL_EIO && ncstatus == NC_EHDFERR && errno != 0)
        return VL_FAIL(status_code, "%s: %s: %s (%s)", path, what, nc_strerror(ncstatus), strerror(errno));
    return VL_FAIL(status_code, "%s: %s: %s", path, what, nc_strerror(ncstatus));
}

/* ---------------------------------------------------------------- writing */

static void iso_time_now(char out[32])
{
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "unknown");
}

/* Fills f's names; VL_EIO if the path does not fit. */
static int set_names(ncio_file_t *f, const char *path, long pid)
{
    f->ncid = -1;
    f->parallel = 0;
    f->comm = MPI_COMM_NULL;
    f->path[0] = f->tmp[0] = '\0';
    if (path == NULL || path[0] == '\0') return VL_FAIL(VL_EIO, "ncio: empty output path");
    size_t n = strlen(path);
    if (n >= sizeof f->path) return VL_FAIL(VL_EIO, "%.200s...: output path too long", path);
    memcpy(f->path, path, n + 1);
    snprintf(f->tmp, sizeof f->tmp, "%s.tmp.%ld", path, pid);
    return VL_OK;
}

/* Writes the provenance attributes; the NetCDF status of the first failure or NC_NOERR. */
static int put_globals(int ncid, const char *title, const char *deck, const char *created)
{
    const char *names[5] = {"title", "valley_version", "git_commit", "created", "deck"};
    const char *vals[5] = {title ? title : "", VALLEY_VERSION, VALLEY_GIT_COMMIT, created,
                           deck ? deck : ""};
    for (int i = 0; i < 5; i++) {
        int st = nc_put_att_text(ncid, NC_GLOBAL, names[i], strlen(vals[i]), vals[i]);
        if (st != NC_NOERR) return st;
    }
    return NC_NOERR;
}

int ncio_create(ncio_file_t *f, const char *path, const char *title, const char *deck_text)
{
    CHECK(set_names(f, path, (long)getpid()));
    int ncid;
    /* Built in memory (HDF5's core driver) and written out by ncio_commit with plain
     * write(2): a full disk or an unwritable directory then fails in our own code with
     * errno, never inside HDF5, whose clean-up after a failed flush crashes (netCDF 4.9.0:
     * nc_abort/nc_close after a failed H5Fclose segfaults in reportopenobjects). */
    /* The (empty) tmp file is created now, so that an unwritable directory fails here,
     * before the caller computes what goes in; commit fills it. */
    int fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) {
        int e = errno;
        return VL_FAIL(VL_EIO, "%s: cannot create %s: %s", f->path, f->tmp, strerror(e));
    }
    close(fd);
    int st = nc_create_mem(f->tmp, NC_NETCDF4 | NC_CLOBBER, 1 << 16, &ncid);
    if (st != NC_NOERR) {
        unlink(f->tmp);
        return VL_FAIL(VL_EIO, "%s: cannot create %s in memory: %s", f->path, f->tmp, nc_strerror(st));
    }
    f->ncid = ncid;
    char created[32];
    iso_time_now(created);
    st = put_globals(ncid, title, deck_text, created);
    if (st != NC_NOERR) {
        ncio_abandon(f);
        return VL_FAIL(VL_EIO, "%s: writing global attributes: %s", f->path, nc_strerror(st));
    }
    return VL_OK;
}

int ncio_create_par(ncio_file_t *f, const char *path, const char *title, const char *deck_text,
                    MPI_Comm comm)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    /* rank 0's pid and clock, so the tmp name and the attributes agree on every rank */
    struct { long pid; char created[32]; } shared;
    memset(&shared, 0, sizeof shared);
    if (rank == 0) {
        shared.pid = (long)getpid();
        iso_time_now(shared.created);
    }
    MPI_Bcast(&shared, (int)sizeof shared, MPI_BYTE, 0, comm);
    int local = set_names(f, path, shared.pid) != VL_OK, any = 0;
    MPI_Allreduce(&local, &any, 1, MPI_INT, MPI_MAX, comm);
    if (any) return VL_FAIL_ALL(VL_EIO, "%.200s: output path empty or too long", path ? path : "");
    f->parallel = 1;
    f->comm = comm;

    int ncid = -1;
    int st = nc_create_par(f->tmp, NC_NETCDF4 | NC_CLOBBER, comm, MPI_INFO_NULL, &ncid);
    /* nc_create_par is collective and fails alike on every rank; agree on it anyway */
    int err = st != NC_NOERR ? st : 0, worst = 0;
    local = err != 0;
    MPI_Allreduce(&local, &any, 1, MPI_INT, MPI_MAX, comm);
    if (any) {
        MPI_Allreduce(&err, &worst, 1, MPI_INT, MPI_MIN, comm); /* NetCDF errors are < 0 */
        if (!local) nc_abort(ncid);
        MPI_Barrier(comm);
        if (rank == 0) unlink(f->tmp);
        f->ncid = -1;
        return VL_FAIL_ALL(VL_EIO, "%s: cannot create %s in parallel: %s", f->path, f->tmp,
                           nc_strerror(worst ? worst : err));
    }
    f->ncid = ncid;
    st = put_globals(ncid, title, deck_text, shared.created);
    local = st != NC_NOERR;
    MPI_Allreduce(&local, &any, 1, MPI_INT, MPI_MAX, comm);
    if (any) {
        ncio_abandon(f);
        return VL_FAIL_ALL(VL_EIO, "%s: writing global attributes failed", f->path);
    }
    return VL_OK;
}

/* Directory part of path ("." if none) into dir. */
static void dir_of(const char *path, char *dir, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(dir, cap, ".");
    } else if (slash == path) {
        snprintf(dir, cap, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= cap) n = cap - 1;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
}

enum { STAGE_OK = 0, STAGE_CLOSE, STAGE_FSYNC, STAGE_RENAME, STAGE_DIRSYNC, STAGE_CREATE, STAGE_WRITE };

/* Length of the HDF5 file in an in-memory image: HDF5's core driver hands back its
 * whole buffer, grown in 64 KiB steps and zero-filled past the data; the superblock's
 * end-of-file address says where the file ends. Returns n when the superblock is not
 * one we know (then the zero padding is written too, which HDF5 accepts). */
static size_t image_length(const unsigned char *p, size_t n)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (n < 64 || memcmp(p, sig, 8) != 0) return n;
    const int version = p[8];
    size_t at;
    if (version == 0 || version == 1) {
        if (p[13] != 8) return n;          /* size of offsets */
        at = version == 0 ? 24 : 28;       /* base, free-space, end-of-file, driver addresses */
    } else if (version == 2 || version == 3) {
        if (p[9] != 8) return n;
        at = 12;                           /* base, extension, end-of-file, root addresses */
    } else {
        return n;
    }
    uint64_t base = 0, eof = 0;
    for (int i = 7; i >= 0; i--) {
        base = base << 8 | p[at + (size_t)i];
        eof = eof << 8 | p[at + 16 + (size_t)i];
    }
    if (base != 0 || eof < 64 || eof > n) return n;
    return (size_t)eof;
}

/* Serial files: writes the finished in-memory image to f->tmp (created or truncated),
 * fsyncs and closes it. Returns the failing stage (STAGE_OK on success) and its errno
 * in *eno; removes tmp on failure. */
static int write_image(const ncio_file_t *f, const unsigned char *p, size_t n, int *eno)
{
    *eno = 0;
    int fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) {
        *eno = errno;
        unlink(f->tmp);
        return STAGE_CREATE;
    }
    int stage = STAGE_OK;
    while (n > 0) {
        ssize_t w = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            *eno = w < 0 ? errno : EIO;
            stage = STAGE_WRITE;
            break;
        }
        p += w;
        n -= (size_t)w;
    }
    if (stage == STAGE_OK && fsync(fd) != 0) {
        *eno = errno;
        stage = STAGE_FSYNC;
    }
    if (close(fd) != 0 && stage == STAGE_OK) { /* NFS reports late write errors here */
        *eno = errno;
        stage = STAGE_WRITE;
    }
    if (stage != STAGE_OK) unlink(f->tmp);
    return stage;
}

/* After the data are in tmp: (fsync tmp unless already done,) rename, fsync the
 * directory. Returns the failing stage (STAGE_OK on success) and its errno in *eno;
 * removes tmp on failure before the rename. */
static int finish_file(const ncio_file_t *f, int synced, int *eno)
{
    *eno = 0;
    int fd = synced ? -1 : open(f->tmp, O_RDONLY);
    if (!synced && (fd < 0 || fsync(fd) != 0)) {
        *eno = errno;
        if (fd >= 0) close(fd);
        unlink(f->tmp);
        return STAGE_FSYNC;
    }
    if (fd >= 0) close(fd);
    if (rename(f->tmp, f->path) != 0) {
        *eno = errno;
        unlink(f->tmp);
        return STAGE_RENAME;
    }
    char dir[4096];
    dir_of(f->path, dir, sizeof dir);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        /* some file systems cannot fsync a directory (EINVAL): not an error */
        if (fsync(dfd) != 0 && errno != EINVAL && errno != ENOTSUP) {
            *eno = errno;
            close(dfd);
            return STAGE_DIRSYNC;
        }
        close(dfd);
    }
    return STAGE_OK;
}

static int commit_fail(const ncio_file_t *f, int stage, int code, int collective)
{
    char why[256];
    switch (stage) {
    case STAGE_CLOSE: snprintf(why, sizeof why, "closing the temporary file: %s", nc_strerror(code)); break;
    case STAGE_CREATE: snprintf(why, sizeof why, "creating the temporary file: %s", strerror(code)); break;
    case STAGE_WRITE: snprintf(why, sizeof why, "writing the temporary file: %s", strerror(code)); break;
    case STAGE_FSYNC: snprintf(why, sizeof why, "fsync of the temporary file: %s", strerror(code)); break;
    case STAGE_RENAME: snprintf(why, sizeof why, "rename of the temporary file: %s", strerror(code)); break;
    default: snprintf(why, sizeof why, "fsync of the directory: %s", strerror(code)); break;
    }
    if (collective) return VL_FAIL_ALL(VL_EIO, "%s: cannot write: %s", f->path, why);
    return VL_FAIL(VL_EIO, "%s: cannot write: %s", f->path, why);
}

int ncio_commit(ncio_file_t *f)
{
    if (f->ncid < 0) return VL_FAIL(VL_EIO, "%s: commit of a file that is not open", f->path);
    if (!f->parallel) {
        NC_memio mem;
        memset(&mem, 0, sizeof mem);
        int st = nc_close_memio(f->ncid, &mem);
        f->ncid = -1;
        if (st != NC_NOERR) {
            free(mem.memory);
            return commit_fail(f, STAGE_CLOSE, st, 0);
        }
        int eno, stage = write_image(f, mem.memory, image_length(mem.memory, mem.size), &eno);
        free(mem.memory);
        if (stage == STAGE_OK) stage = finish_file(f, 1, &eno);
        return stage == STAGE_OK ? VL_OK : commit_fail(f, stage, eno, 0);
    }
    int st = nc_close(f->ncid);
    f->ncid = -1;
    int rank;
    MPI_Comm_rank(f->comm, &rank);
    int outcome[2] = {STAGE_OK, 0}; /* stage, code */
    int cl = st != NC_NOERR ? st : 0, worst = 0;
    MPI_Allreduce(&cl, &worst, 1, MPI_INT, MPI_MIN, f->comm); /* NetCDF errors are < 0 */
    if (worst != 0) {
        outcome[0] = STAGE_CLOSE;
        outcome[1] = worst;
        if (rank == 0) unlink(f->tmp);
    } else if (rank == 0) {
        outcome[0] = finish_file(f, 0, &outcome[1]);
    }
    MPI_Bcast(outcome, 2, MPI_INT, 0, f->comm);
    return outcome[0] == STAGE_OK ? VL_OK : commit_fail(f, outcome[0], outcome[1], 1);
}

void ncio_abandon(ncio_file_t *f)
{
    if (f->ncid >= 0) nc_abort(f->ncid);
    f->ncid = -1;
    if (f->tmp[0] == '\0') return;
    if (f->parallel) {
        int rank;
        MPI_Comm_rank(f->comm, &rank);
        MPI_Barrier(f->comm);
        if (rank == 0) unlink(f->tmp);
        MPI_Barrier(f->comm);
    } else {
        unlink(f->tmp);
    }
}

int ncio_def_dim(ncio_file_t *f, const char *name, size_t len, int *dimid)
{
    int st = nc_def_dim(f->ncid, name, len, dimid);
    if (st != NC_NOERR)
        return VL_FAIL(VL_EIO, "%s: defining dimension '%s' (%zu): %s", f->path, name, len,
                       nc_strerror(st));
    return VL_OK;
}

int ncio_def_var(ncio_file_t *f, const char *name, nc_type type, int ndims, const int *dimids,
                 const char *long_name, const char *units, int *varid)
{
    int st = nc_def_var(f->ncid, name, type, ndims, dimids, varid);
    if (st == NC_NOERR && long_name)
        st = nc_put_att_text(f->ncid, *varid, "long_name", strlen(long_name), long_name);
    if (st == NC_NOERR && units)
        st = nc_put_att_text(f->ncid, *varid, "units", strlen(units), units);
    if (st != NC_NOERR)
        return VL_FAIL(VL_EIO, "%s: defining variable '%s': %s", f->path, name, nc_strerror(st));
    return VL_OK;
}

int ncio_put_att_text(ncio_file_t *f, int varid, const char *name, const char *text)
{
    if (text == NULL) text = "";
    int st = nc_put_att_text(f->ncid, varid, name, strlen(text), text);
    if (st != NC_NOERR)
        return VL_FAIL(VL_EIO, "%s: writing attribute '%s': %s", f->path, name, nc_strerror(st));
    return VL_OK;
}

int ncio_put_att_double(ncio_file_t *f, int varid, const char *name, size_t n, const double *v)
{
    int st = nc_put_att_double(f->ncid, varid, name, NC_DOUBLE, n, v);
    if (st != NC_NOERR)
        return VL_FAIL(VL_EIO, "%s: writing attribute '%s': %s", f->path, name, nc_strerror(st));
    return VL_OK;
}

int ncio_put_att_int(ncio_file_t *f, int varid, const char *name, size_t n, const int *v)
{
    int st = nc_put_att_int(f->ncid, varid, name, NC_INT, n, v);
    if (st != NC_NOERR)
        return VL_FAIL(VL_EIO, "%s: writing attribute '%s': %s", f->path, name, nc_strerror(st));
    return VL_OK;
}

int ncio_enddef(ncio_file_t *f)
{
    int st = nc_enddef(f->ncid);
    if (st != NC_NOERR) return VL_FAIL(VL_EIO, "%s: nc_enddef: %s", f->path, nc_strerror(st));
    return VL_OK;
}

/* ---------------------------------------------------------------- reading */

/* Checks that path names a readable regular file; VL_EINPUT otherwise. */
static int check_input_file(const char *path)
{
    struct stat sb;
    if (path == NULL || path[0] == '\0') return VL_FAIL(VL_EINPUT, "empty input file name");
    if (stat(path, &sb) != 0) return VL_FAIL(VL_EINPUT, "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return VL_FAIL(VL_EINPUT, "%s: is a directory", path);
    if (access(path, R_OK) != 0) return VL_FAIL(VL_EINPUT, "%s: %s", path, strerror(errno));
    return VL_OK;
}

static int open_fail(const char *path, int st, int collective)
{
    /* a truncated or corrupt file shows up as NC_ENOTNC or as an HDF5 error */
    char why[256];
    if (st == NC_ENOTNC)
        snprintf(why, sizeof why, "not a NetCDF file");
    else if (st == NC_EHDFERR || st == NC_ETRUNC || st == NC_EINVAL)
        snprintf(why, sizeof why, "not a valid NetCDF file (truncated or corrupt?): %s",
                 nc_strerror(st));
    else
        snprintf(why, sizeof why, "cannot open: %s", nc_strerror(st));
    if (collective) return VL_FAIL_ALL(VL_EINPUT, "%s: %s", path, why);
    return VL_FAIL(VL_EINPUT, "%s: %s", path, why);
}

int ncio_open(const char *path, int *ncid)
{
    CHECK(check_input_file(path));
    int st = nc_open(path, NC_NOWRITE, ncid);
    if (st != NC_NOERR) return open_fail(path, st, 0);
    return VL_OK;
}

int ncio_open_par(const char *path, MPI_Comm comm, int *ncid)
{
    /* agree on the existence check first so that nobody enters nc_open_par alone */
    int local = check_input_file(path) != VL_OK, any = 0;
    MPI_Allreduce(&local, &any, 1, MPI_INT, MPI_MAX, comm);
    if (any) {
        if (!local) VL_FAIL(VL_EINPUT, "%s: cannot be read on every rank", path);
        return VL_EINPUT;
    }
    int st = nc_open_par(path, NC_NOWRITE, comm, MPI_INFO_NULL, ncid);
    int err = st != NC_NOERR ? st : 0, worst = 0;
    MPI_Allreduce(&err, &worst, 1, MPI_INT, MPI_MIN, comm);
    if (worst != 0) {
        if (st == NC_NOERR) nc_close(*ncid);
        return open_fail(path, worst, 1);
    }
    return VL_OK;
}

/* "(60000, 1, 28, 28)" or "(*, 784)" into buf. */
static void shape_str(char *buf, size_t cap, int ndims, const long long *len)
{
    size_t pos = 0;
    pos += (size_t)snprintf(buf + pos, cap - pos, "(");
    for (int i = 0; i < ndims && pos < cap; i++) {
        if (len && len[i] >= 0)
            pos += (size_t)snprintf(buf + pos, cap - pos, "%s%lld", i ? ", " : "", len[i]);
        else
            pos += (size_t)snprintf(buf + pos, cap - pos, "%s*", i ? ", " : "");
    }
    if (pos < cap) snprintf(buf + pos, cap - pos, ")");
}

int ncio_var(int ncid, const char *path, const char *name, nc_type type, int ndims,
             const long long *expect_len, int *varid, size_t *len_out)
{
    int st = nc_inq_varid(ncid, name, varid);
    if (st == NC_ENOTVAR) return VL_FAIL(VL_EINPUT, "%s: variable '%s' not found", path, name);
    CHECK(ncio_check(st, VL_EINPUT, path, name));
    nc_type t;
    int nd;
    CHECK(ncio_check(nc_inq_var(ncid, *varid, NULL, &t, &nd, NULL, NULL), VL_EINPUT, path, name));
    int dimids[NC_MAX_VAR_DIMS];
    long long found[NC_MAX_VAR_DIMS];
    CHECK(ncio_check(nc_inq_vardimid(ncid, *varid, dimids), VL_EINPUT, path, name));
    int ok = t == type && nd == ndims;
    for (int i = 0; i < nd; i++) {
        size_t l;
        CHECK(ncio_check(nc_inq_dimlen(ncid, dimids[i], &l), VL_EINPUT, path, name));
        found[i] = (long long)l;
        if (ok && expect_len && expect_len[i] >= 0 && expect_len[i] != found[i]) ok = 0;
    }
    if (!ok) {
        char want[256], got[256];
        shape_str(want, sizeof want, ndims, expect_len);
        shape_str(got, sizeof got, nd > 16 ? 16 : nd, found);
        return VL_FAIL(VL_EINPUT, "%s: variable '%s': expected %s %s, found %s %s", path, name,
                       ncio_type_name(type), want, ncio_type_name(t), got);
    }
    if (len_out)
        for (int i = 0; i < nd; i++) len_out[i] = (size_t)found[i];
    return VL_OK;
}

/* "x.nc: attribute 'a'" or "x.nc: variable 'v': attribute 'a'" into buf. */
static void att_label(int ncid, int varid, const char *path, const char *name, char *buf,
                      size_t cap)
{
    char vname[NC_MAX_NAME + 1] = "";
    if (varid != NC_GLOBAL && nc_inq_varname(ncid, varid, vname) == NC_NOERR)
        snprintf(buf, cap, "%s: variable '%s': attribute '%s'", path, vname, name);
    else
        snprintf(buf, cap, "%s: attribute '%s'", path, name);
}

int ncio_get_att_text(int ncid, int varid, const char *path, const char *name, char **out)
{
    *out = NULL;
    char label[512];
    att_label(ncid, varid, path, name, label, sizeof label);
    nc_type t;
    size_t len;
    int st = nc_inq_att(ncid, varid, name, &t, &len);
    if (st == NC_ENOTATT) return VL_FAIL(VL_EINPUT, "%s not found", label);
    if (st != NC_NOERR) return VL_FAIL(VL_EINPUT, "%s: %s", label, nc_strerror(st));
    if (t == NC_STRING && len == 1) {
        char *s = NULL;
        st = nc_get_att_string(ncid, varid, name, &s);
        if (st != NC_NOERR) return VL_FAIL(VL_EINPUT, "%s: %s", label, nc_strerror(st));
        size_t n = s ? strlen(s) : 0;
        char *copy = vl_alloc(n + 1, label);
        if (copy) {
            if (n) memcpy(copy, s, n);
            copy[n] = '\0';
        }
        nc_free_string(1, &s);
        if (!copy) return VL_EIO;
        *out = copy;
        return VL_OK;
    }
    if (t != NC_CHAR)
        return VL_FAIL(VL_EINPUT, "%s: expected text, found %s", label, ncio_type_name(t));
    if (len == (size_t)-1) return VL_FAIL(VL_EINPUT, "%s: too long", label);
    char *s = vl_alloc(len + 1, label);
    if (!s) return VL_EIO;
    st = nc_get_att_text(ncid, varid, name, s);
    if (st != NC_NOERR) {
        free(s);
        return VL_FAIL(VL_EINPUT, "%s: %s", label, nc_strerror(st));
    }
    s[len] = '\0';
    *out = s;
    return VL_OK;
}

int ncio_get_att_double(int ncid, int varid, const char *path, const char *name, size_t n,
                        double *out)
{
    char label[512];
    att_label(ncid, varid, path, name, label, sizeof label);
    nc_type t;
    size_t len;
    int st = nc_inq_att(ncid, varid, name, &t, &len);
    if (st == NC_ENOTATT) return VL_FAIL(VL_EINPUT, "%s not found", label);
    if (st != NC_NOERR) return VL_FAIL(VL_EINPUT, "%s: %s", label, nc_strerror(st));
    if (t == NC_CHAR || t == NC_STRING || t > NC_STRING)
        return VL_FAIL(VL_EINPUT, "%s: expected a number, found %s", label, ncio_type_name(t));
    if (len != n)
        return VL_FAIL(VL_EINPUT, "%s: expected %zu value%s, found %zu", label, n,
                       n == 1 ? "" : "s", len);
    st = nc_get_att_double(ncid, varid, name, out);
    if (st != NC_NOERR) return VL_FAIL(VL_EINPUT, "%s: %s", label, nc_strerror(st));
    return VL_OK;
}

int ncio_mkdirs(const char *dir)
{
    char buf[4096];
    size_t n = dir ? strlen(dir) : 0;
    if (n == 0) return VL_OK;
    if (n >= sizeof buf) return VL_FAIL(VL_EIO, "%.200s...: directory name too long", dir);
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            return VL_FAIL(VL_EIO, "%s: cannot create directory %s: %s", dir, buf, strerror(e));
        }
        buf[i] = c;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0) return VL_FAIL(VL_EIO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return VL_FAIL(VL_EIO, "%s: exists and is not a directory", dir);
    return VL_OK;
}
