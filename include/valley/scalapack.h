/* scalapack.h — our own prototypes for the BLACS and ScaLAPACK routines valley calls.
 *
 * Debian ships libscalapack-openmpi (BLACS inside it) without any C header, so the
 * few entry points we use are declared here, once. Conventions of the library:
 *  - Cblacs_* are C functions (arguments by value).
 *  - numroc_, descinit_, pd*_ are Fortran: every argument by address, matrices
 *    column-major, indices 1-based. The Fortran routines that take CHARACTER
 *    arguments also take their hidden lengths (gfortran: size_t, by value) after
 *    the last regular argument; they are declared explicitly below and callers
 *    pass 1 for each, since leaving them out is undefined behaviour that bites
 *    with gfortran >= 8's tail-call optimisation.
 *  - pdgemr2d_ is written in C in ScaLAPACK's REDIST and takes no hidden lengths.
 *  - A descriptor is 9 ints: DTYPE=1, CTXT, M, N, MB, NB, RSRC, CSRC, LLD.
 *  - info < 0 means argument -info was illegal (for array arguments -(100*i+j):
 *    entry j of argument i); the routines print a PXERBLA line and return without
 *    computing anything, so every caller must check info.
 */
#ifndef VALLEY_SCALAPACK_H
#define VALLEY_SCALAPACK_H
#include <mpi.h>
#include <stddef.h>

enum { SL_DLEN = 9, SL_CTXT = 1, SL_M = 2, SL_N = 3, SL_MB = 4, SL_NB = 5, SL_RSRC = 6, SL_CSRC = 7, SL_LLD = 8 };

/* ---- BLACS (C interface) ---- */
/* This process's BLACS id and the number of processes (initialises BLACS on first call). */
void Cblacs_pinfo(int *mypnum, int *nprocs);
/* what = 0: default system context; what = 10: the system context of grid icontxt. */
void Cblacs_get(int icontxt, int what, int *val);
/* BLACS system handle for an MPI communicator; release with Cfree_blacs_system_handle. */
int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
/* In: *icontxt a system handle; out: a grid context over its processes, nprow x npcol,
 * order "R" (row-major) or "C". Collective over the processes of the handle. */
void Cblacs_gridinit(int *icontxt, const char *order, int nprow, int npcol);
/* Grid shape and this process's coordinates; nprow = -1 when not in the grid. */
void Cblacs_gridinfo(int icontxt, int *nprow, int *npcol, int *myrow, int *mycol);
/* Releases a grid context (not MPI). */
void Cblacs_gridexit(int icontxt);

/* ---- ScaLAPACK tools (Fortran) ---- */
/* Number of rows (or columns) of an n-long dimension, blocked by nb, owned by iproc. */
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
/* Fills desc[9]; info < 0 for an illegal argument. */
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb, const int *irsrc,
               const int *icsrc, const int *ictxt, const int *lld, int *info);

/* ---- ScaLAPACK drivers and computational routines (Fortran) ---- */
/* SVD of sub(A) (m x n): S, the first min(m,n) columns of U, rows of VT. Requires
 * MB_A == NB_A and matching offsets (inherited from PDGEBRD). lwork = -1: query. */
void pdgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a, const int *ia,
              const int *ja, const int *desca, double *s, double *u, const int *iu, const int *ju,
              const int *descu, double *vt, const int *ivt, const int *jvt, const int *descvt, double *work,
              const int *lwork, int *info, size_t len_jobu, size_t len_jobvt);
/* Householder QR of sub(A): R in the upper triangle, reflectors below, tau (LOCc(n)). */
void pdgeqrf_(const int *m, const int *n, double *a, const int *ia, const int *ja, const int *desca, double *tau,
              double *work, const int *lwork, int *info);
/* C := op(Q) C or C op(Q) with Q from pdgeqrf_. SIDE = 'L' requires MB_A == MB_C and
 * aligned row offsets/owners. */
void pdormqr_(const char *side, const char *trans, const int *m, const int *n, const int *k, double *a,
              const int *ia, const int *ja, const int *desca, const double *tau, double *c, const int *ic,
              const int *jc, const int *descc, double *work, const int *lwork, int *info, size_t len_side,
              size_t len_trans);
/* Copies sub(A) (m x n, descriptor desca) into sub(B) (descb) whatever the two
 * block-cyclic layouts; ictxt: a context containing every process of both grids. */
void pdgemr2d_(const int *m, const int *n, const double *a, const int *ia, const int *ja, const int *desca,
               double *b, const int *ib, const int *jb, const int *descb, const int *ictxt);

#endif
