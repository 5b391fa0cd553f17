/* ncio.h — NetCDF-4 output and input helpers shared by every valley file.
 *
 * Writing (INTERFACE.md "Files"): every output is NetCDF-4, carries the global
 * attributes valley_version, git_commit, deck (the effective deck text), created
 * (ISO 8601 UTC) and title, and is written under "<path>.tmp.<pid>" then renamed
 * to <path> only when complete, so nothing half-written ever has a final name.
 * Usage pattern of a writer:
 *
 *     ncio_file_t f;
 *     CHECK(ncio_create(&f, path, "SWAG moments", deck_text));
 *     int st = write_body(&f);            // defines, nc_enddef, puts
 *     if (st) { ncio_abandon(&f); return st; }
 *     CHECK(ncio_commit(&f));
 *
 * Reading: ncio_open/ncio_var/ncio_get_att_* turn every NetCDF problem into a
 * VL_EINPUT failure whose message names the file ("x.nc: variable 'v': expected
 * float (*, 784), found ubyte (60000, 1, 28, 28)").
 *
 * All functions return VL_OK or a status recorded with VL_FAIL (error.h).
 */
#ifndef VALLEY_NCIO_H
#define VALLEY_NCIO_H
#include <stddef.h>

#include <mpi.h>
#include <netcdf.h>
#include <netcdf_par.h> /* nc_var_par_access, NC_COLLECTIVE for parallel writers */

#include "valley/error.h"

/* netCDF-C exports internal functions of its classic-format layer named ncio_open,
 * ncio_create, ncio_close, ... (libsrc/ncio.c). A global function of ours with one of
 * those names interposes on them: NC3_open then called our ncio_open, which called
 * nc_open again, until the stack overflowed (any CDF-1/2/5 file crashed valley, found
 * by tests/fuzz/fuzz_netcdf). Our functions therefore get link names with a vl_
 * prefix; the source keeps the ncio_* names. */
#define ncio_open vl_ncio_open
#define ncio_create vl_ncio_create
#define ncio_close vl_ncio_close
#define ncio_filesize vl_ncio_filesize
#define ncio_get vl_ncio_get
#define ncio_move vl_ncio_move
#define ncio_pad_length vl_ncio_pad_length
#define ncio_rel vl_ncio_rel
#define ncio_sync vl_ncio_sync

typedef struct {
    int ncid;          /* open NetCDF id, -1 when closed */
    char path[4096];   /* final name */
    char tmp[4200];    /* "<path>.tmp.<pid>", the name written until commit */
    int parallel;      /* 1: created with ncio_create_par */
    int inmem;         /* serial: built in memory, written to tmp at commit (see ncio_create) */
    MPI_Comm comm;     /* parallel: the communicator (not duplicated; caller keeps it alive) */
} ncio_file_t;

/* Creates f->tmp = "<path>.tmp.<pid>" (empty) on the calling rank only, and the
 * NetCDF-4 file in memory (NC_DISKLESS, HDF5's core driver) in define mode, and writes
 * the global attributes valley_version, git_commit, deck (deck_text; NULL -> ""),
 * created and title (NULL -> ""). ncio_commit writes the file's image to tmp with
 * write(2): a full or failing disk is then an ordinary errno, never a write failure
 * inside HDF5, which netCDF 4.9.0 / HDF5 1.10 cannot close without crashing (see
 * "Full disks" in ncio.c). The parent directory must exist (see ncio_mkdirs).
 * Failure: VL_EIO naming path, nothing left on disk. */
int ncio_create(ncio_file_t *f, const char *path, const char *title, const char *deck_text);

/* As ncio_create, but nc_create_par over comm (MPI_INFO_NULL); collective over comm.
 * Every rank must pass the same path; the tmp name uses rank 0's pid (broadcast).
 * The file is written on disk by HDF5, so its blocks are reserved before HDF5 writes
 * (here 64 KiB, in ncio_enddef the whole file; "Parallel files on a full disk" in ncio.c):
 * a full disk is then a VL_EIO naming the file, never a failed write inside HDF5.
 * Failure on any rank is reported on every rank (VL_EIO, collective). */
int ncio_create_par(ncio_file_t *f, const char *path, const char *title, const char *deck_text,
                    MPI_Comm comm);

/* Closes the file (serial: flushes it first with nc_sync; see "Full disks" in
 * ncio.c), fsyncs it, renames tmp to the final name and fsyncs the directory. Collective over f->comm when parallel (every rank closes, rank 0
 * fsyncs and renames, the outcome is broadcast). On any failure the tmp file is
 * removed and VL_EIO is returned with a message naming the path. */
int ncio_commit(ncio_file_t *f);

/* Error path: closes the file (if open; serial: after giving back the disk space
 * reserve, so that a full disk cannot crash the close) and removes the tmp file;
 * records nothing.
 * Collective over f->comm when parallel. Safe to call twice. */
void ncio_abandon(ncio_file_t *f);

/* Returns VL_OK for NC_NOERR; otherwise records
 * VL_FAIL(status_code, "<path>: <what>: <nc_strerror(ncstatus)>") and returns status_code. */
int ncio_check(int ncstatus, int status_code, const char *path, const char *what);

/* Writer convenience: propagate (return from the calling function) a failing
 * NetCDF call as VL_EIO naming f's final path. Callers abandon f on failure. */
#define NC_CHECK_W(f, call, what) CHECK(ncio_check((call), VL_EIO, (f)->path, (what)))
/* Reader convenience: a failing NetCDF call on file `path` is VL_EINPUT. */
#define NC_CHECK_R(path, call, what) CHECK(ncio_check((call), VL_EINPUT, (path), (what)))

/* Define mode helpers (VL_EIO on failure, naming the file and the object).
 * ncio_def_var also writes the long_name and units attributes (skipped when NULL). */
int ncio_def_dim(ncio_file_t *f, const char *name, size_t len, int *dimid);
int ncio_def_var(ncio_file_t *f, const char *name, nc_type type, int ndims, const int *dimids,
                 const char *long_name, const char *units, int *varid);
/* Attribute writers; varid NC_GLOBAL for global attributes. */
int ncio_put_att_text(ncio_file_t *f, int varid, const char *name, const char *text);
int ncio_put_att_double(ncio_file_t *f, int varid, const char *name, size_t n, const double *v);
int ncio_put_att_int(ncio_file_t *f, int varid, const char *name, size_t n, const int *v);
/* nc_enddef with the error naming the file. Parallel files (collective over f->comm):
 * first reserves the blocks of the whole file, whose size follows from its definitions
 * (fixed-size dimensions only); VL_EIO (collective) naming the file when the disk cannot
 * hold it, and the caller abandons the file. */
int ncio_enddef(ncio_file_t *f);

/* Opens path read-only (serially / nc_open_par over comm, collective). Only NetCDF-4
 * (HDF5) files are accepted: classic-format files (CDF-1/2/5) are refused before netCDF
 * parses them (its classic header reader crashes on malformed headers; see ncio.c), and
 * the first open of each path is tried in a forked child, so that a file on which HDF5
 * crashes is refused ("corrupt NetCDF-4 file: the HDF5 library crashed reading it")
 * instead of crashing valley.
 * Failure: VL_EINPUT "x.nc: No such file or directory", "x.nc: not a NetCDF file",
 * "x.nc: a NetCDF classic-format file (CDF-2); valley reads NetCDF-4 files only ...". */
int ncio_open(const char *path, int *ncid);
int ncio_open_par(const char *path, MPI_Comm comm, int *ncid);

/* Looks up variable `name` and checks its type and rank, and each dimension length
 * against expect_len[i] (-1 = any; expect_len may be NULL = all any). On success sets
 * *varid and, if len_out != NULL, len_out[0..ndims-1]. Failure: VL_EINPUT
 * "x.nc: variable 'v': expected float (*, 784), found ubyte (60000, 1, 28, 28)"
 * or "x.nc: variable 'v' not found". */
int ncio_var(int ncid, const char *path, const char *name, nc_type type, int ndims,
             const long long *expect_len, int *varid, size_t *len_out);

/* Reads text attribute `name` of varid (NC_GLOBAL for global) into *out, a
 * NUL-terminated string the caller frees with free(). VL_EINPUT if missing or
 * not text. */
int ncio_get_att_text(int ncid, int varid, const char *path, const char *name, char **out);
/* Reads numeric attribute `name` (any numeric type, converted) which must have
 * exactly n values, into out[0..n-1]. VL_EINPUT if missing, of text type or of
 * another length. */
int ncio_get_att_double(int ncid, int varid, const char *path, const char *name, size_t n,
                        double *out);

/* mkdir -p: creates dir and its missing parents (mode 0777 & umask). VL_EIO naming
 * the directory on failure; an existing directory is fine. */
int ncio_mkdirs(const char *dir);

/* Name of an nc_type for messages ("float", "ubyte", ...). Static string. */
const char *ncio_type_name(nc_type type);

#endif
