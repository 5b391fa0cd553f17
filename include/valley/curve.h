/* curve.h — mode-connecting curves (SPEC §1): Bezier and polygonal chains through
 * fixed checkpoints, trained with one t ~ U(0,1) per minibatch.
 *
 * Control points θ_0..θ_{n-1} (n × d floats). With nfixed checkpoints and B bends
 * per segment, n = (nfixed − 1)(B − 1) + 1 and the checkpoints sit at indices
 * 0, B−1, 2(B−1), ... (fixed); the others are trained. A Bezier curve takes exactly
 * two checkpoints (n = B).
 *   Bezier:    w(t) = Σ_j C(n−1, j) t^j (1−t)^(n−1−j) θ_j
 *   polychain: w(t) = Σ_j max(0, 1 − |t(n−1) − j|) θ_j
 */
#ifndef VALLEY_CURVE_H
#define VALLEY_CURVE_H
#include <stddef.h>

#include "valley/comm.h"
#include "valley/deck.h"

enum { CURVE_BEZIER = 0, CURVE_POLYCHAIN = 1 };

typedef struct {
    int kind;
    int n;                 /* control points */
    int bends;             /* B: points per segment including its ends */
    size_t d;
    float *theta;          /* (n, d) */
    unsigned char *fixed;  /* (n) */
    float *mom;            /* (n, d) SGD momentum of the trained points */
} vl_curve_t;

int curve_init(vl_curve_t *cv, int kind, int nfixed, int bends, size_t d);
void curve_free(vl_curve_t *cv);
/* Coefficients c_j(t), j < n. */
void curve_coeffs(const vl_curve_t *cv, double t, double *c);
/* w = Σ c_j θ_j (accumulated in double per element). */
void curve_point(const vl_curve_t *cv, const double *c, float *w);
/* Interior points on the straight line between their neighbouring fixed points. */
void curve_init_line(vl_curve_t *cv);
/* SGD with momentum on the trained points: the gradient of θ_j is c_j g (g = dL/dw(t)
 * including the regulariser's wd·w(t)); fixed points never move. */
void curve_sgd(vl_curve_t *cv, const double *c, const float *g, double lr, double momentum, int nesterov);

struct vl_job;
/* curve.nc: control points (point, param), fixed flags, the model description, and, when
 * pos is given, the momentum and training position for resuming. Serial (group rank 0). */
struct vl_train_pos;
int curve_write(const char *path, const vl_curve_t *cv, const struct vl_job *j, const struct vl_train_pos *pos);
/* Reads a curve.nc into cv (initialised by this call) and pos (may be NULL). */
int curve_read(const char *path, size_t d, vl_curve_t *cv, struct vl_train_pos *pos);
/* Whether path is a curve.nc (its title), 0 for anything else or what cannot be read. */
int curve_file(const char *path);

/* `valley curve A.nc B.nc [more.nc]` (train, then evaluate) or `valley curve CURVE.nc`
 * (evaluate an existing curve, or resume it with train.resume). Writes curve.nc and
 * curve_eval.nc. Collective over the world. */
int curve_command(vl_comm_t *c, vl_deck_t *d, int ninputs, char **inputs, const char *outdir);
#endif
