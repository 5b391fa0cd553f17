/* figure.h — PNG figures drawn with cairo: line plots (one or several panels),
 * filled contour maps with overlays, reliability diagrams, regression bands.
 *
 * Our own plotting code, no plotting library: axes with ticks at "nice" numbers
 * (1, 2, 5 × 10^k), tick labels, axis labels, titles, legends placed in the
 * emptiest corner of the plot, the Okabe–Ito colour cycle (colour-blind safe),
 * lines ~2 px wide, white background, text with cairo's toy API ("sans-serif").
 * Default size 1000×700 px; text and line widths scale with the figure size.
 *
 * Every figure is rendered in memory, written to "<path>.tmp" and renamed to
 * <path>, so a final file name never holds a half-written PNG. Output is
 * deterministic: the same call on the same machine gives the same bytes.
 *
 * Return values: VL_OK, VL_EINPUT for bad arguments (message names the path and
 * the argument), VL_EIO when the file cannot be written (message names the path;
 * no file is left behind, not even the .tmp). Not collective: call on one rank.
 * No pointer passed in is kept after the call returns.
 */
#ifndef VALLEY_FIGURE_H
#define VALLEY_FIGURE_H

/* Series styles. */
enum { FIG_LINE = 0, FIG_DASHED = 1, FIG_MARKERS = 2, FIG_LINE_MARKERS = 3 };

/* Colour of NaN / non-finite cells in contour maps ("not computed"): grey with
 * r = g = b = FIG_NAN_GREY. */
#define FIG_NAN_GREY 0.78

typedef struct {
    const double *x, *y; int n;     /* n points; a non-finite x or y breaks the line (gap) */
    const char *label;              /* legend text or NULL (no legend entry) */
    int style;                      /* FIG_LINE, FIG_DASHED, FIG_MARKERS, FIG_LINE_MARKERS */
    int color;                      /* 0: colour i of the cycle for series i;
                                       k > 0: colour k-1 of the cycle (to keep a method's
                                       colour fixed across figures) */
} fig_series_t;

typedef struct {
    const char *title, *xlabel, *ylabel;   /* each may be NULL */
    int logy;                       /* log10 y axis (values <= 0 are gaps) */
    int width, height;              /* pixels, 0 = default (per field) */
    double ymin, ymax;              /* both 0 = auto (data range + 4 % padding) */
    double xmin, xmax;              /* both 0 = auto (data range, no padding) */
} fig_axes_t;
/* Any fig_axes_t pointer argument may be NULL: defaults, no labels. */

/* One panel of line series → PNG at path. ns >= 0 series (s may be NULL when
 * ns == 0). Axis ranges: ax->xmin/xmax, ax->ymin/ymax when set, else from the
 * finite data. Returns VL_OK, VL_EINPUT, VL_EIO. */
int fig_lines(const char *path, const fig_axes_t *ax, const fig_series_t *s, int ns);

/* Several panels side by side (e.g. loss and error vs t): panel p uses ax[p] and
 * series[p][0 .. ns[p]-1]. suptitle (may be NULL) is drawn above all panels.
 * Figure size: ax[0].width/height if set, else 640·npanels × 640 (1000×700 for
 * one panel). Colours restart at the cycle's first colour in every panel, so
 * series i has the same colour in each panel. 1 <= npanels <= 8. */
int fig_lines_panels(const char *path, int npanels, const fig_axes_t *ax,
                     const fig_series_t *const *series, const int *ns, const char *suptitle);

/* Overlays for fig_contour. Points with a label get a distinct marker shape and
 * colour and a legend entry; points without a label are drawn as small white
 * dots with a black edge (e.g. a trajectory). Polylines (e.g. a curve projected
 * onto the plane) are drawn on top in the colour cycle starting at its second
 * colour (vermillion), with a white casing; non-finite vertices break them. */
typedef struct { double x, y; const char *label; } fig_point_t;
typedef struct { const double *x, *y; int n; const char *label; } fig_polyline_t;

/* Filled contour map of z (ny, nx), row-major z[j*nx + i] at (x[i], y[j]);
 * x and y strictly ascending and finite, nx, ny >= 2. The axes span the grid.
 * Cells with a non-finite corner are grey (FIG_NAN_GREY, "n/a" swatch under the
 * colour bar). Each cell is split into four triangles at its centre (centre
 * value = mean of the corners, which resolves marching-squares saddles); z is
 * linear on each triangle, the filled bands are rasterised per pixel from that
 * interpolant and the contour lines (marching squares/triangles) are traced on
 * the same triangles, so lines and band edges coincide.
 * Levels: levels[0..nlev-1] strictly ascending and finite (nlev >= 2), or
 * levels == NULL: nlev levels (nlev <= 0: 12) from the finite min to max of z,
 * evenly spaced, or when logz is set denser near the minimum like the seed's
 * train-loss plots: L_0 = zmin, L_k = zmin + (zmax - zmin)·10^(-3·(1 - k/(nlev-1))).
 * Band k (between L_k and L_k+1) gets viridis at k/(nlev-2); values below L_0 or
 * above L_{nlev-1} take the end colours. Contour lines at every level (for
 * automatic levels, not at the two end levels, which only touch the extremes).
 * The colour bar has equal-height bands labelled at the levels, zlabel beside it
 * (may be NULL). ax->logy, ymin/ymax, xmin/xmax are ignored. pts/lines may be
 * NULL when npts/nlines is 0. Default size 1000×700. */
int fig_contour(const char *path, const fig_axes_t *ax, const double *x, int nx,
                const double *y, int ny, const double *z, const double *levels, int nlev,
                int logz, const fig_point_t *pts, int npts, const fig_polyline_t *lines, int nlines,
                const char *zlabel);

/* Reliability diagram of one method: nbins bins [bin_lo[b], bin_hi[b]) of the
 * confidence axis (bin_lo/bin_hi NULL: nbins equal bins over [0, 1]), accuracy
 * acc[b] and mean confidence conf[b] per bin (fractions in [0, 1]), sample
 * counts count[b] (NULL: every bin with finite acc is drawn; bins with count 0 or
 * non-finite acc/conf are skipped), ece as a fraction (shown as a percentage). */
typedef struct { const char *name; int nbins; const double *bin_lo, *bin_hi, *acc, *conf;
                 const long long *count; double ece; } fig_reliability_t;

/* Reliability diagrams, one square panel per method (1 <= nm <= FIG_RELIABILITY_MAX; up to 3 per
 * row): bars of accuracy per bin (blue), the gap between accuracy and
 * confidence shaded (vermillion), the diagonal (dashed), panel title
 * "<name>   ECE x.xx%". title (may be NULL) above all panels. Size: 470 px per
 * panel column × 480 px per row (+56 px for the title). */
#define FIG_RELIABILITY_MAX 12 /* bma's methods: sgd ... laplace-swa (11) */
int fig_reliability(const char *path, const fig_reliability_t *m, int nm, const char *title);

/* Band plot for 1-D regression: predictive mean over the grid xg[0..ng-1]
 * (ascending) as a line, ±1 std and ±2 std bands as two shades, data points
 * (xd[i], yd[i]) for i < nd (xd/yd may be NULL when nd == 0) as black dots.
 * Non-finite mean/std break the line and bands. Legend "data", "predictive mean",
 * "±1 std", "±2 std". Axis ranges as in fig_lines. */
int fig_band(const char *path, const fig_axes_t *ax, const double *xg, const double *mean,
             const double *std, int ng, const double *xd, const double *yd, int nd);

/* --- helpers, exposed for the plot driver and the tests ------------------- */

/* Ticks at nice numbers m·10^k (m ∈ {1, 2, 5}) inside [lo, hi] with at most
 * maxn intervals of the chosen step (so at most maxn + 1 ticks). Writes at most
 * cap ticks in ascending order into ticks and returns how many there are (0 when
 * lo >= hi, a bound is not finite or maxn < 1). Zero is exactly 0.0. */
int fig_nice_ticks(double lo, double hi, int maxn, double *ticks, int cap);

/* The sequential colour map (viridis, 11 anchors, linear interpolation):
 * t in [0, 1] (clamped; NaN gives t = 0) → rgb in [0, 1]. */
void fig_colormap(double t, double rgb[3]);

/* Colour i (any int; taken modulo 8) of the Okabe–Ito cycle, in the order
 * blue, vermillion, bluish green, orange, reddish purple, sky blue, black, yellow. */
void fig_color_cycle(int i, double rgb[3]);

#endif
