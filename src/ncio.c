/* ncio.c — NetCDF-4 output (tmp + rename, provenance attributes) and checked input. */
/* fallocate(2), FALLOC_FL_KEEP_SIZE (Linux): see "Parallel files on a full disk" */
#define _GNU_SOURCE
#include "gitversion.h"
#include "valley/ncio.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

/* Full disks. netCDF 4.9.0 with HDF5 1.10 cannot survive a failed write: the file's
 * metadata cache is then broken, nc_close/nc_abort crash (reportopenobjects), and a
 * file left open crashes HDF5's own clean-up in MPI_Finalize (H5F__close_cb); freeing
 * disk space afterwards does not help. So a serial file is never written to disk by
 * HDF5: it is created NC_DISKLESS (HDF5's core driver, in memory, the same file layout
 * as on disk), and at commit its image (H5Fget_file_image) is written to tmp by
 * write(2), where a full disk is an ordinary errno. The HDF5 calls are looked up with
 * dlsym: HDF5 is loaded as netCDF's dependency, but its headers are not ours to use.
 * When they cannot be found, files are written by HDF5 directly (the old way). */
#include <dlfcn.h>

typedef int64_t h5_hid_t; /* hid_t of HDF5 1.10 */
static struct {
    int tried, ok;
    ssize_t (*get_obj_count)(h5_hid_t, unsigned);
    ssize_t (*get_obj_ids)(h5_hid_t, unsigned, size_t, h5_hid_t *);
    ssize_t (*get_name)(h5_hid_t, char *, size_t);
    ssize_t (*get_file_image)(h5_hid_t, void *, size_t);
} h5;

static int h5_lookup(void)
{
    if (!h5.tried) {
        h5.tried = 1;
        void *self = dlopen(NULL, RTLD_NOW); /* the program and the libraries it loaded */
        if (!self) return 0;
        *(void **)&h5.get_obj_count = dlsym(self, "H5Fget_obj_count");
        *(void **)&h5.get_obj_ids = dlsym(self, "H5Fget_obj_ids");
        *(void **)&h5.get_name = dlsym(self, "H5Fget_name");
        *(void **)&h5.get_file_image = dlsym(self, "H5Fget_file_image");
        h5.ok = h5.get_obj_count && h5.get_obj_ids && h5.get_name && h5.get_file_image;
    }
    return h5.ok;
}

/* The memory image of the open in-memory file named `name`: *img (malloc'd) and *n.
 * NC_NOERR or a netCDF-style error (NC_EHDFERR, NC_ENOMEM). */
static int h5_image_of(const char *name, unsigned char **img, size_t *n)
{
    enum { OBJ_FILE = 1, OBJ_ALL = 0x1f };
    *img = NULL;
    *n = 0;
    ssize_t count = h5.get_obj_count((h5_hid_t)OBJ_ALL, OBJ_FILE);
    if (count <= 0 || count > 100000) return NC_EHDFERR;
    h5_hid_t *ids = calloc((size_t)count, sizeof *ids);
    if (!ids) return NC_ENOMEM;
    count = h5.get_obj_ids((h5_hid_t)OBJ_ALL, OBJ_FILE, (size_t)count, ids);
    int st = NC_EHDFERR;
    for (ssize_t i = 0; i < count && st == NC_EHDFERR; i++) {
        char buf[4300];
        ssize_t len = h5.get_name(ids[i], buf, sizeof buf);
        if (len <= 0 || (size_t)len >= sizeof buf || strcmp(buf, name) != 0) continue;
        ssize_t size = h5.get_file_image(ids[i], NULL, 0);
        if (size <= 0) break;
        unsigned char *p = malloc((size_t)size);
        if (!p) { st = NC_ENOMEM; break; }
        if (h5.get_file_image(ids[i], p, (size_t)size) != size) { free(p); break; }
        *img = p;
        *n = (size_t)size;
        st = NC_NOERR;
    }
    free(ids);
    return st;
}

/* Bob Jenkins' lookup3 hashlittle(), the checksum of HDF5 metadata (H5_checksum_lookup3). */
static uint32_t lookup3(const unsigned char *k, size_t length, uint32_t initval)
{
#define ROT(x, r) (((x) << (r)) | ((x) >> (32 - (r))))
    uint32_t a, b, c;
    a = b = c = 0xdeadbeefu + (uint32_t)length + initval;
    while (length > 12) {
        a += k[0] + ((uint32_t)k[1] << 8) + ((uint32_t)k[2] << 16) + ((uint32_t)k[3] << 24);
        b += k[4] + ((uint32_t)k[5] << 8) + ((uint32_t)k[6] << 16) + ((uint32_t)k[7] << 24);
        c += k[8] + ((uint32_t)k[9] << 8) + ((uint32_t)k[10] << 16) + ((uint32_t)k[11] << 24);
        a -= c; a ^= ROT(c, 4); c += b;
        b -= a; b ^= ROT(a, 6); a += c;
        c -= b; c ^= ROT(b, 8); b += a;
        a -= c; a ^= ROT(c, 16); c += b;
        b -= a; b ^= ROT(a, 19); a += c;
        c -= b; c ^= ROT(b, 4); b += a;
        length -= 12;
        k += 12;
    }
    if (length == 0) return c;
    unsigned char t[12] = {0};
    memcpy(t, k, length);
    a += t[0] + ((uint32_t)t[1] << 8) + ((uint32_t)t[2] << 16) + ((uint32_t)t[3] << 24);
    b += t[4] + ((uint32_t)t[5] << 8) + ((uint32_t)t[6] << 16) + ((uint32_t)t[7] << 24);
    c += t[8] + ((uint32_t)t[9] << 8) + ((uint32_t)t[10] << 16) + ((uint32_t)t[11] << 24);
    c ^= b; c -= ROT(b, 14);
    a ^= c; a -= ROT(c, 11);
    b ^= a; b -= ROT(a, 25);
    c ^= b; c -= ROT(b, 16);
    a ^= c; a -= ROT(c, 4);
    b ^= a; b -= ROT(a, 14);
    c ^= b; c -= ROT(b, 24);
    return c;
#undef ROT
}

/* H5Fget_file_image (HDF5 1.10) patches the end-of-file address into the copy's
 * superblock without updating the superblock's checksum, so HDF5 would refuse the file
 * ("incorrect metadata checksum"): recompute it (superblock version 2 or 3, 8-byte
 * addresses: 12 bytes, four addresses, then the checksum). Returns 0 if the image does
 * not start with such a superblock (left as it is). */
static int fix_superblock_checksum(unsigned char *p, size_t n)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (n < 48 || memcmp(p, sig, 8) != 0 || (p[8] != 2 && p[8] != 3) || p[9] != 8) return 0;
    uint32_t c = lookup3(p, 44, 0);
    for (int i = 0; i < 4; i++) p[44 + i] = (unsigned char)(c >> (8 * i));
    return 1;
}

/* Serial in-memory files: writes the image to f->tmp (created or truncated), fsyncs
 * and closes it. 0 or an errno; removes tmp on failure. */
static int write_image(const ncio_file_t *f, const unsigned char *p, size_t n)
{
    int fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) { int e = errno; unlink(f->tmp); return e; }
    int e = 0;
    while (n > 0 && !e) {
        ssize_t w = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { e = w < 0 ? errno : EIO; break; }
        p += w;
        n -= (size_t)w;
    }
    if (!e && fsync(fd) != 0) e = errno;
    if (close(fd) != 0 && !e) e = errno; /* NFS reports late write errors here */
    if (e) unlink(f->tmp);
    return e;
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
    f->inmem = 0;
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
    /* the tmp file itself now (empty), so that an unwritable directory fails here */
    int fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) {
        int e = errno;
        return VL_FAIL(VL_EIO, "%s: cannot create %s: %s", f->path, f->tmp, strerror(e));
    }
    close(fd);
    int ncid;
    f->inmem = h5_lookup();
    int st = nc_create(f->tmp, NC_NETCDF4 | NC_CLOBBER | (f->inmem ? NC_DISKLESS : 0), &ncid);
    if (st != NC_NOERR) {
        unlink(f->tmp);
        return VL_FAIL(VL_EIO, "%s: cannot create %s: %s", f->path, f->tmp, nc_strerror(st));
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

/* Parallel files on a full disk. A parallel file (ncio_create_par: subspace.nc, whose basis is
 * distributed over the ranks) cannot be built in memory like a serial one: HDF5 writes it on
 * disk through MPI-IO, and a write that fails inside HDF5 leaves it unable to close the file
 * (measured before this fix on a small tmpfs: 1 rank, nc_enddef fails and HDF5's clean-up
 * in MPI_Finalize segfaults in H5F__close_cb; 2 ranks, the job hangs in the close). So HDF5
 * must never meet a full disk: the blocks the file will occupy are reserved before it writes
 * anything, and if they cannot be, the file is closed while nothing of it has been written.
 *   - ncio_create_par: rank 0 creates the empty tmp file and reserves PAR_RESERVE_BASE bytes
 *     of it before HDF5 opens it, and again after (in case HDF5 truncated it: HDF5 1.10.8
 *     truncates only a non-empty file). netCDF writes nothing in define mode (traced with
 *     strace: the first write is nc_enddef's), so aborting the file then only flushes the
 *     superblock and the root group, a few hundred bytes inside the reserved base.
 *   - ncio_enddef: the file's size follows from its definitions (par_file_bytes); rank 0
 *     reserves [0, size) before nc_enddef, which writes the fill values of every variable,
 *     then the data and the metadata land in reserved blocks. A failure is the same on
 *     every rank (VL_EIO naming the file, collective) and the caller abandons the file.
 *   - ncio_commit: after the close, rank 0 gives back what was reserved past the end.
 * The reservation is fallocate(FALLOC_FL_KEEP_SIZE): it allocates blocks without changing
 * the file's size, so HDF5 sees the empty file it created. Where fallocate is not supported
 * (EOPNOTSUPP: NFS, some Lustre) the free space is checked instead (statvfs): that catches a
 * disk already too full, not one that fills up during the write. */
enum { PAR_RESERVE_BASE = 64 << 10 };

/* Reserves the first `bytes` of path's blocks without changing its size (created when
 * missing; emptied first when `truncate`). 0, or the errno of the failure (ENOSPC, ...). */
static int reserve_blocks(const char *path, long long bytes, int truncate)
{
    int fd = open(path, O_WRONLY | O_CREAT | (truncate ? O_TRUNC : 0), 0666);
    if (fd < 0) return errno;
    int e = EOPNOTSUPP;
#ifdef FALLOC_FL_KEEP_SIZE
    while ((e = fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)bytes) != 0 ? errno : 0) == EINTR) {}
#endif
    if (e == EOPNOTSUPP || e == ENOSYS) { /* no fallocate here: is there room at least now? */
        struct stat sb;
        struct statvfs vs;
        e = 0;
        if (fstat(fd, &sb) != 0 || fstatvfs(fd, &vs) != 0) {
            e = errno;
        } else {
            double need = (double)bytes - 512.0 * (double)sb.st_blocks;
            if (need > (double)vs.f_bavail * (double)vs.f_frsize) e = ENOSPC;
        }
    }
    close(fd);
    return e;
}

/* Rank 0 reserves `bytes` of f->tmp; the outcome is shared. Collective over f->comm.
 * VL_EIO (collective) naming the file on failure; the caller abandons the file. */
static int par_reserve(ncio_file_t *f, long long bytes, int truncate)
{
    int rank, e = 0;
    MPI_Comm_rank(f->comm, &rank);
    if (rank == 0) e = reserve_blocks(f->tmp, bytes, truncate);
    MPI_Bcast(&e, 1, MPI_INT, 0, f->comm);
    if (e == 0) return VL_OK;
    return VL_FAIL_ALL(VL_EIO, "%s: cannot write: reserving %lld bytes for %s: %s", f->path, bytes,
                       f->tmp, strerror(e));
}

/* The bytes a parallel file in define mode will occupy (see "Parallel files on a full disk"):
 * every variable's data; a 4-byte dimension-scale dataset per dimension without a variable
 * of its name (parallel HDF5 allocates every dataset when it is created, these too, though
 * nothing is written to them); and a margin for HDF5's metadata (superblock, object headers,
 * attribute storage). Measured on subspace.nc files of 94 KB to 3.3 MB (mlp widths 8 to 256
 * and 6 x 64, k = 1 and 3, 1, 2 and 4 ranks; file size minus data and dimension scales):
 * 17.1-17.3 KB of metadata with the usual 2.0 KB of attributes (the deck), 22.4 KB with 6.0 KB
 * and 46.5 KB with 18.1 KB (long deck values), i.e. about 15 KB plus up to 1.6 times the
 * attribute bytes, whatever the data size and the rank count. The margin taken, 64 KiB +
 * 4 x the attribute bytes + 4 KiB per variable and dimension, is 104 KiB for those files,
 * 2.7 to 6 times the measured metadata. Fixed-size dimensions only: the size of a file with
 * an unlimited dimension is not known at nc_enddef (no parallel writer has one). */
static int par_file_bytes(const ncio_file_t *f, long long *bytes)
{
    int ndims = 0, nvars = 0, ngatts = 0, nunlim = 0;
    int st = nc_inq(f->ncid, &ndims, &nvars, &ngatts, NULL);
    if (st == NC_NOERR) st = nc_inq_unlimdims(f->ncid, &nunlim, NULL);
    if (st != NC_NOERR) return ncio_check(st, VL_EIO, f->path, "sizing the parallel file");
    if (nunlim > 0 || ndims > NC_MAX_DIMS)
        return VL_FAIL_ALL(VL_EIO, "%s: a parallel file needs fixed-size dimensions", f->path);
    double data = 0, atts = 0; /* double: no overflow; exact far beyond any disk */
    size_t len, size;
    char name[NC_MAX_NAME + 1];
    int dimids[NC_MAX_DIMS], nd = 0, varid;
    if (st == NC_NOERR) st = nc_inq_dimids(f->ncid, &nd, dimids, 0);
    for (int i = 0; i < nd && st == NC_NOERR; i++) {
        st = nc_inq_dim(f->ncid, dimids[i], name, &len);
        if (st == NC_NOERR && nc_inq_varid(f->ncid, name, &varid) != NC_NOERR) data += 4.0 * len;
    }
    for (int v = NC_GLOBAL; v < nvars && st == NC_NOERR; v++) {
        int natts = ngatts, vnd = 0;
        nc_type type;
        if (v != NC_GLOBAL) {
            st = nc_inq_var(f->ncid, v, NULL, &type, &vnd, dimids, &natts);
            if (st == NC_NOERR) st = nc_inq_type(f->ncid, type, NULL, &size);
            double n = (double)size;
            for (int i = 0; i < vnd && st == NC_NOERR; i++) {
                st = nc_inq_dimlen(f->ncid, dimids[i], &len);
                n *= (double)len;
            }
            data += n;
        }
        for (int a = 0; a < natts && st == NC_NOERR; a++) {
            st = nc_inq_attname(f->ncid, v, a, name);
            if (st == NC_NOERR) st = nc_inq_att(f->ncid, v, name, &type, &len);
            if (st == NC_NOERR) st = nc_inq_type(f->ncid, type, NULL, &size);
            if (st == NC_NOERR) atts += (double)len * (double)size;
        }
    }
    if (st != NC_NOERR) return ncio_check(st, VL_EIO, f->path, "sizing the parallel file");
    double total = data + PAR_RESERVE_BASE + 4 * atts + 4096.0 * (nvars + nd);
    if (total > 9e18) return VL_FAIL_ALL(VL_EIO, "%s: file too large (%.3g bytes)", f->path, total);
    *bytes = (long long)total;
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
    /* the tmp file, empty, with its first blocks reserved (see "Parallel files on a full disk") */
    if (par_reserve(f, PAR_RESERVE_BASE, 1) != VL_OK) {
        if (rank == 0) unlink(f->tmp);
        return VL_EIO;
    }

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
    if (par_reserve(f, PAR_RESERVE_BASE, 0) != VL_OK) { /* again, should HDF5 have truncated it */
        ncio_abandon(f);
        return VL_EIO;
    }
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

enum { STAGE_OK = 0, STAGE_CLOSE, STAGE_FSYNC, STAGE_RENAME, STAGE_DIRSYNC };

/* After a successful close: fsync tmp, rename, fsync the directory. Returns the
 * failing stage (STAGE_OK on success) and its errno in *eno; removes tmp on failure
 * before the rename. */
static int finish_file(const ncio_file_t *f, int *eno)
{
    *eno = 0;
    int fd = open(f->tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        *eno = errno;
        if (fd >= 0) close(fd);
        unlink(f->tmp);
        return STAGE_FSYNC;
    }
    close(fd);
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
    if (f->inmem) { /* see "Full disks" */
        unsigned char *img = NULL;
        size_t n = 0;
        int st = nc_sync(f->ncid);
        if (st == NC_NOERR) st = h5_image_of(f->tmp, &img, &n);
        if (st == NC_NOERR && !fix_superblock_checksum(img, n)) st = NC_EHDFERR; /* unknown layout */
        nc_close(f->ncid); /* in memory: nothing reaches the disk here */
        f->ncid = -1;
        if (st != NC_NOERR) {
            free(img);
            unlink(f->tmp);
            return commit_fail(f, STAGE_CLOSE, st, 0);
        }
        int e = write_image(f, img, n);
        free(img);
        if (e) return VL_FAIL(VL_EIO, "%s: cannot write: writing %s: %s", f->path, f->tmp, strerror(e));
        int stage = finish_file(f, &e);
        return stage == STAGE_OK ? VL_OK : commit_fail(f, stage, e, 0);
    }
    int st = nc_close(f->ncid);
    f->ncid = -1;
    if (!f->parallel) {
        if (st != NC_NOERR) {
            unlink(f->tmp);
            return commit_fail(f, STAGE_CLOSE, st, 0);
        }
        int eno, stage = finish_file(f, &eno);
        return stage == STAGE_OK ? VL_OK : commit_fail(f, stage, eno, 0);
    }
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
        /* give back the blocks reserved past the end (ncio_enddef): truncating a file to its
         * own size frees them (ext4, XFS, tmpfs); a failure only leaves them allocated */
        int fd = open(f->tmp, O_WRONLY);
        if (fd >= 0) {
            struct stat sb;
            if (fstat(fd, &sb) == 0) (void)!ftruncate(fd, sb.st_size);
            close(fd);
        }
        outcome[0] = finish_file(f, &outcome[1]);
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
    if (f->parallel) { /* reserve the whole file before HDF5 writes any of it */
        long long bytes = 0;
        CHECK(par_file_bytes(f, &bytes));
        CHECK(par_reserve(f, bytes, 0));
    }
    int st = nc_enddef(f->ncid);
    if (st != NC_NOERR) return VL_FAIL(VL_EIO, "%s: nc_enddef: %s", f->path, nc_strerror(st));
    return VL_OK;
}

/* ---------------------------------------------------------------- reading */

/* valley reads NetCDF-4 (HDF5) files only, the format it writes. The classic formats
 * (CDF-1, CDF-2, CDF-5) are refused before netCDF parses them: netCDF-C 4.9.0's classic
 * header reader crashes or allocates gigabytes on malformed headers (found by
 * tests/fuzz: SEGV in NC_hashmapadd from NC3_open; multi-GiB mallocs in new_x_NC_attr /
 * new_NC_string), and nothing valley makes is classic. An HDF5 file starts with its
 * signature at byte 0, 512, 1024, 2048, ... (after a user block). */
static int check_format(const char *path, long long size)
{
    static const unsigned char hdf5[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    FILE *fp = fopen(path, "rb");
    if (!fp) return VL_FAIL(VL_EINPUT, "%s: %s", path, strerror(errno));
    unsigned char first[8] = {0}, head[8];
    size_t got = fread(first, 1, 8, fp);
    /* netCDF picks the format by the first bytes: a classic magic number there sends the
     * file to the classic reader even when an HDF5 signature follows at 512, 1024, ... So
     * it is refused first (a profile of fuzz_dataset showed NC3_open reached that way). */
    const int classic = got >= 4 && first[0] == 'C' && first[1] == 'D' && first[2] == 'F' &&
                        (first[3] == 1 || first[3] == 2 || first[3] == 5);
    int found = !classic && got == 8 && memcmp(first, hdf5, 8) == 0;
    for (long long at = 512; !classic && !found && at + 8 <= size && at <= ((long long)1 << 40); at *= 2)
        found = fseek(fp, (long)at, SEEK_SET) == 0 && fread(head, 1, 8, fp) == 8 && memcmp(head, hdf5, 8) == 0;
    fclose(fp);
    if (found) return VL_OK;
    if (classic)
        return VL_FAIL(VL_EINPUT, "%s: a NetCDF classic-format file (CDF-%d); valley reads NetCDF-4 files only "
                       "(convert it with: nccopy -k netCDF-4 IN OUT)", path, first[3]);
    return VL_FAIL(VL_EINPUT, "%s: not a NetCDF file (valley reads NetCDF-4 files)", path);
}

static int open_fail(const char *path, int st, int collective);

/* The probe child's walk over what netCDF-4 reads lazily, at the first inquiry rather than
 * at nc_open: each variable's metadata (dimension scales, fill value, filters) and the
 * attributes. Errors are ignored here (the readers report them); only a crash or a hang
 * matters. */
static void probe_metadata(int ncid)
{
    int nvars = 0, natts = 0;
    char name[NC_MAX_NAME + 1];
    if (nc_inq(ncid, NULL, &nvars, &natts, NULL) != NC_NOERR) return;
    for (int v = NC_GLOBAL; v < nvars; v++) {
        if (v != NC_GLOBAL && nc_inq_var(ncid, v, NULL, NULL, NULL, NULL, &natts) != NC_NOERR)
            continue;
        for (int a = 0; a < natts; a++)
            if (nc_inq_attname(ncid, v, a, name) == NC_NOERR)
                (void)nc_inq_att(ncid, v, name, NULL, NULL);
    }
}

enum { PROBE_SECONDS = 20 }; /* longest metadata read of the probe before the file is refused */

/* HDF5 1.10.8 (Debian 12) crashes on some corrupted NetCDF-4 files, in nc_open while it
 * reads their metadata or later, when the library cleans up after the failed open (a
 * double free in H5G__link_release_table, found by tests/fuzz; where it strikes depends
 * on the heap's layout, so on the machine). A crash cannot be caught in the process, so
 * the first open of a file is tried in a child process (fork; the child only opens, walks
 * the metadata netCDF reads lazily (probe_metadata), closes and _exits, no MPI, its stderr
 * discarded) which reports nc_open's status through a pipe. A child killed by a signal (or
 * exiting without a report: a sanitizer's report) means the file is refused; so does a
 * child still reading after PROBE_SECONDS (SIGALRM: fuzz_dataset found a 15 KB file on
 * which HDF5 loops forever in H5HG_read / H5C_protect while netCDF reads a dimension
 * scale's reference list at the first nc_inq_var; valley hung, deaf to SIGTERM); so does
 * a failed open in the child, and then valley itself never hands the file to HDF5, so no
 * clean-up of that failure can crash it. Each path
 * that opened is probed once per process. Returns VL_OK when the child opened the file or
 * could not be started (then the open is left to the caller). */
static int probe_open(const char *path)
{
    static char done[8][4096];
    static int ndone;
    for (int i = 0; i < ndone && i < 8; i++)
        if (strcmp(done[i], path) == 0) return VL_OK;
    int fd[2];
    if (pipe(fd) != 0) return VL_OK;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return VL_OK;
    }
    if (pid == 0) {
        close(fd[0]);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) { dup2(null, 2); dup2(null, 1); }
        alarm(PROBE_SECONDS); /* a hang inside HDF5 ends the child (SIGALRM) */
        int ncid, st = nc_open(path, NC_NOWRITE, &ncid);
        if (st == NC_NOERR) probe_metadata(ncid);
        if (st == NC_NOERR) st = nc_close(ncid);
        ssize_t put = write(fd[1], &st, sizeof st);
        _exit(put == (ssize_t)sizeof st ? 0 : 1);
    }
    close(fd[1]);
    int st = 0;
    ssize_t got;
    while ((got = read(fd[0], &st, sizeof st)) < 0 && errno == EINTR) {}
    close(fd[0]);
    int wst = 0;
    while (waitpid(pid, &wst, 0) < 0)
        if (errno != EINTR) return VL_OK;
    if (WIFSIGNALED(wst) && WTERMSIG(wst) == SIGALRM)
        return VL_FAIL(VL_EINPUT, "%s: corrupt NetCDF-4 file: the HDF5 library was still reading its "
                       "metadata after %d s", path, PROBE_SECONDS);
    if (WIFSIGNALED(wst))
        return VL_FAIL(VL_EINPUT, "%s: corrupt NetCDF-4 file: the HDF5 library crashed reading it (signal %d)", path,
                       WTERMSIG(wst));
    if (got != (ssize_t)sizeof st || !WIFEXITED(wst) || WEXITSTATUS(wst) != 0) /* e.g. a sanitizer's report */
        return VL_FAIL(VL_EINPUT, "%s: corrupt NetCDF-4 file: the HDF5 library crashed reading it", path);
    if (st != NC_NOERR) return open_fail(path, st, 0);
    snprintf(done[ndone % 8], sizeof done[0], "%s", path);
    ndone++;
    return VL_OK;
}

/* Checks that path names a readable regular file in NetCDF-4 format; VL_EINPUT otherwise. */
static int check_input_file(const char *path)
{
    struct stat sb;
    if (path == NULL || path[0] == '\0') return VL_FAIL(VL_EINPUT, "empty input file name");
    if (stat(path, &sb) != 0) return VL_FAIL(VL_EINPUT, "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return VL_FAIL(VL_EINPUT, "%s: is a directory", path);
    if (access(path, R_OK) != 0) return VL_FAIL(VL_EINPUT, "%s: %s", path, strerror(errno));
    CHECK(check_format(path, (long long)sb.st_size));
    return probe_open(path);
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
