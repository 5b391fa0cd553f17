/* test_figure.c — figure primitives: each function writes a PNG which is read
 * back with cairo; checks size and signature, then pixels that prove the drawing
 * landed where the data says. The plot area is located independently, by
 * finding the frame lines (long runs of neutral near-black pixels) in the image.
 * Also: nice ticks, the colour map, determinism, error paths. */
#include "valley/error.h"
#include "valley/figure.h"
#include "valley/test.h"

#include <cairo.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[512];

static const char *tmp_path(const char *name)
{
    static char buf[8][700];
    static int k = 0;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

/* PNG signature check, then load. NULL on failure. */
static cairo_surface_t *load_png(const char *p)
{
    unsigned char sig[8] = {0};
    static const unsigned char want[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    FILE *fp = fopen(p, "rb");
    if (!fp) return NULL;
    size_t n = fread(sig, 1, 8, fp);
    fclose(fp);
    T_CHECK(n == 8 && memcmp(sig, want, 8) == 0, "%s: no PNG signature", p);
    if (n != 8 || memcmp(sig, want, 8)) return NULL;
    cairo_surface_t *s = cairo_image_surface_create_from_png(p);
    if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(s);
        return NULL;
    }
    cairo_surface_flush(s);
    return s;
}

static void px(cairo_surface_t *s, int x, int y, double rgb[3])
{
    const unsigned char *d = cairo_image_surface_get_data(s);
    int stride = cairo_image_surface_get_stride(s);
    uint32_t v = *(const uint32_t *)(const void *)(d + (size_t)y * stride + 4 * (size_t)x);
    rgb[0] = ((v >> 16) & 255) / 255.0;
    rgb[1] = ((v >> 8) & 255) / 255.0;
    rgb[2] = (v & 255) / 255.0;
}

static int neutral_dark(const double c[3])
{
    double mx = fmax(c[0], fmax(c[1], c[2])), mn = fmin(c[0], fmin(c[1], c[2]));
    return mx < 0.3 && mx - mn < 0.06;
}

/* Columns (vertical=1) or rows holding a run of neutral-dark pixels at least
 * minrun long; fills out[] (ascending) and returns how many. */
static int dark_runs(cairo_surface_t *s, int vertical, int minrun, int *out, int cap)
{
    int w = cairo_image_surface_get_width(s), h = cairo_image_surface_get_height(s), n = 0;
    int outer = vertical ? w : h, inner = vertical ? h : w;
    for (int a = 0; a < outer; a++) {
        int run = 0, best = 0;
        for (int b = 0; b < inner; b++) {
            double c[3];
            px(s, vertical ? a : b, vertical ? b : a, c);
            run = neutral_dark(c) ? run + 1 : 0;
            if (run > best) best = run;
        }
        if (best >= minrun && n < cap) out[n++] = a;
    }
    return n;
}

/* Plot area [X0, X1) × [Y0, Y1) of the (first) panel from its frame lines,
 * which lie at columns X0-1 and X1 and rows Y0-1 and Y1. */
typedef struct {
    int X0, Y0, X1, Y1;
    int ncols, nrows;
    int cols[64], rows[64];
} found_frame_t;

static int find_frame(cairo_surface_t *s, found_frame_t *f, double frac_w, double frac_h)
{
    int w = cairo_image_surface_get_width(s), h = cairo_image_surface_get_height(s);
    f->ncols = dark_runs(s, 1, (int)(frac_h * h), f->cols, 64);
    f->nrows = dark_runs(s, 0, (int)(frac_w * w), f->rows, 64);
    if (f->ncols < 2 || f->nrows < 2) return 0;
    f->X0 = f->cols[0] + 1;
    f->X1 = f->cols[1];
    f->Y0 = f->rows[0] + 1;
    f->Y1 = f->rows[1];
    return f->X1 - f->X0 > 20 && f->Y1 - f->Y0 > 20;
}

/* Pixel of data point (x, y) for data limits [x0,x1]×[y0,y1] (linear axes). */
static void data_px(const found_frame_t *f, double x0, double x1, double y0, double y1, double x,
                    double y, int *pxo, int *pyo)
{
    *pxo = (int)floor(f->X0 + (x - x0) / (x1 - x0) * (f->X1 - f->X0));
    *pyo = (int)floor(f->Y1 - (y - y0) / (y1 - y0) * (f->Y1 - f->Y0));
}

static int blueish(const double c[3]) { return c[2] - c[0] > 0.3; } /* Okabe-Ito blue */

/* Rows of column x inside the plot area with a blue-ish pixel: first, last, count. */
static int blue_rows(cairo_surface_t *s, const found_frame_t *f, int x, int *first, int *last)
{
    int n = 0;
    *first = -1;
    *last = -1;
    for (int y = f->Y0; y < f->Y1; y++) {
        double c[3];
        px(s, x, y, c);
        if (blueish(c)) {
            if (*first < 0) *first = y;
            *last = y;
            n++;
        }
    }
    return n;
}

/* Nearest colour-map parameter for a colour; distance in *dist. */
static double cmap_inverse(const double c[3], double *dist)
{
    double best = 1e9, bt = 0;
    for (int k = 0; k <= 1000; k++) {
        double r[3];
        fig_colormap(k / 1000.0, r);
        double d = fabs(r[0] - c[0]) + fabs(r[1] - c[1]) + fabs(r[2] - c[2]);
        if (d < best) {
            best = d;
            bt = k / 1000.0;
        }
    }
    *dist = best;
    return bt;
}

static void test_nice_ticks(void)
{
    double t[64];
    int n = fig_nice_ticks(0, 1, 5, t, 64);
    T_CHECK(n == 6, "ticks over [0,1], maxn 5: got %d, want 6", n);
    for (int i = 0; i < n && i < 6; i++) T_CLOSE(t[i], 0.2 * i, 0, 1e-15, "tick of [0,1]");
    T_CHECK(n > 0 && t[0] == 0.0 && !signbit(t[0]), "zero tick must be +0.0");
    n = fig_nice_ticks(0.25, 0.35, 2, t, 64);
    T_CHECK(n == 3 && t[1] == 0.3, "ticks over [0.25,0.35]: n %d, middle %.17g (want exactly 0.3)", n,
            n > 1 ? t[1] : -1.0);
    n = fig_nice_ticks(-0.37, 2.1, 5, t, 64);
    T_CHECK(n == 5 && t[0] == 0.0 && t[4] == 2.0, "ticks over [-0.37,2.1]: n %d", n);
    T_CHECK(fig_nice_ticks(1, 1, 5, t, 64) == 0, "empty range must give no ticks");
    T_CHECK(fig_nice_ticks(0, NAN, 5, t, 64) == 0, "NaN bound must give no ticks");
    /* properties over many ranges: nice step, inside the range, count bounds */
    unsigned seed = 12345;
    int bad = 0;
    for (int trial = 0; trial < 2000; trial++) {
        seed = seed * 1664525u + 1013904223u;
        int e = (int)((seed >> 4) % 13) - 6; /* scale 1e-6 .. 1e6 */
        double lo = ((int)((seed >> 8) % 20001) - 10000) * pow(10.0, e) / 1000.0;
        seed = seed * 1664525u + 1013904223u;
        int e2 = e - (int)((seed >> 4) % 4); /* width down to 1e-3 of the scale */
        double hi = lo + ((int)((seed >> 8) % 10000) + 1) * pow(10.0, e2) / 1000.0;
        int maxn = 5 + (int)((seed >> 16) % 6);
        n = fig_nice_ticks(lo, hi, maxn, t, 64);
        if (n < 2 || n > maxn + 1) { bad++; continue; }
        /* the step, snapped to m·10^e: differences of large ticks are inexact */
        double raw = (t[n - 1] - t[0]) / (n - 1), ex = floor(log10(raw) + 1e-9);
        double m = round(raw / pow(10.0, ex)), step = m * pow(10.0, ex);
        if (!(m == 1 || m == 2 || m == 5) || fabs(raw / step - 1) > 1e-6) bad++;
        for (int i = 0; i < n; i++) {
            double q = t[i] / step;
            if (t[i] < lo - 1e-9 * step || t[i] > hi + 1e-9 * step) bad++;
            if (fabs(q - round(q)) > 1e-6 + 1e-12 * fabs(q)) bad++;
            if (i && fabs((t[i] - t[i - 1]) - step) > 1e-6 * step) bad++;
        }
        if (t[0] - step >= lo + 1e-9 * step || t[n - 1] + step <= hi - 1e-9 * step) bad++; /* all found */
    }
    T_CHECK(bad == 0, "%d nice-tick property violations over 2000 random ranges", bad);
}

static void test_colours(void)
{
    double c[3];
    fig_colormap(0, c);
    T_CLOSE(c[0], 0x44 / 255.0, 0, 1e-12, "viridis(0) r");
    T_CLOSE(c[2], 0x54 / 255.0, 0, 1e-12, "viridis(0) b");
    fig_colormap(1, c);
    T_CLOSE(c[0], 0xFD / 255.0, 0, 1e-12, "viridis(1) r");
    T_CLOSE(c[1], 0xE7 / 255.0, 0, 1e-12, "viridis(1) g");
    double prev = -1;
    int mono = 1;
    for (int k = 0; k <= 100; k++) { /* viridis: lightness increases monotonically */
        fig_colormap(k / 100.0, c);
        double lum = 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
        if (lum <= prev) mono = 0;
        prev = lum;
    }
    T_CHECK(mono, "colour map luminance must increase with t");
    double a[3], b[3];
    fig_color_cycle(0, a);
    T_CLOSE(a[1], 0x72 / 255.0, 0, 1e-12, "cycle(0) is Okabe-Ito blue");
    fig_color_cycle(8, b);
    T_CHECK(a[0] == b[0] && a[1] == b[1] && a[2] == b[2], "cycle wraps after 8");
    fig_color_cycle(-1, a);
    fig_color_cycle(7, b);
    T_CHECK(a[0] == b[0] && a[2] == b[2], "negative index wraps");
}

/* Horizontal line y = 0.5 with y axis [0, 1] (linear) or y = 10 with [1, 100]
 * (log): the line must cross the middle row of the plot area and nowhere else. */
static void test_lines_midline(int logy)
{
    enum { N = 11 };
    double x[N], y[N];
    for (int i = 0; i < N; i++) {
        x[i] = i / (N - 1.0);
        y[i] = logy ? 10.0 : 0.5;
    }
    fig_series_t s = {x, y, N, NULL, FIG_LINE, 0};
    fig_axes_t ax = {"title", "x", "y", logy, 800, 600, logy ? 1.0 : 0.0, logy ? 100.0 : 1.0, 0, 0};
    const char *p = tmp_path(logy ? "midline_log.png" : "midline.png");
    int st = fig_lines(p, &ax, &s, 1);
    T_CHECK(st == VL_OK, "fig_lines: %d %s", st, vl_error_message());
    cairo_surface_t *img = load_png(p);
    T_CHECK(img != NULL, "cannot read %s", p);
    if (!img) return;
    T_CHECK(cairo_image_surface_get_width(img) == 800 && cairo_image_surface_get_height(img) == 600,
            "size %dx%d, want 800x600", cairo_image_surface_get_width(img),
            cairo_image_surface_get_height(img));
    found_frame_t f;
    int ok = find_frame(img, &f, 0.4, 0.4);
    T_CHECK(ok && f.ncols == 2 && f.nrows == 2, "frame: found %d columns and %d rows", f.ncols, f.nrows);
    if (ok) {
        double mid = 0.5 * (f.Y0 + f.Y1);
        for (int q = 1; q <= 3; q++) {
            int col = f.X0 + q * (f.X1 - f.X0) / 4, first, last;
            int n = blue_rows(img, &f, col, &first, &last);
            T_CHECK(n >= 1 && n <= 4 && first >= mid - 2.5 && last <= mid + 2.5,
                    "log %d column %d: %d blue rows in [%d, %d], want around %.1f", logy, col, n, first,
                    last, mid);
        }
    }
    cairo_surface_destroy(img);
}

/* A NaN in y breaks the line: no line pixels above the gap. */
static void test_lines_gap_and_default_size(void)
{
    enum { N = 101 };
    double x[N], y[N], y2[N];
    for (int i = 0; i < N; i++) {
        x[i] = i / (N - 1.0);
        y[i] = (x[i] > 0.4 && x[i] < 0.6) ? NAN : 0.3;
        y2[i] = 0.8 * x[i];
    }
    fig_series_t s[2] = {{x, y, N, "flat with a gap", FIG_LINE, 0}, {x, y2, N, "ramp", FIG_DASHED, 0}};
    fig_axes_t ax = {NULL, "t", "loss", 0, 0, 0, 0.0, 1.0, 0, 0};
    const char *p = tmp_path("gap.png");
    int st = fig_lines(p, &ax, s, 2);
    T_CHECK(st == VL_OK, "fig_lines: %s", vl_error_message());
    cairo_surface_t *img = load_png(p);
    T_CHECK(img != NULL, "cannot read %s", p);
    if (!img) return;
    T_CHECK(cairo_image_surface_get_width(img) == 1000 && cairo_image_surface_get_height(img) == 700,
            "default size %dx%d, want 1000x700", cairo_image_surface_get_width(img),
            cairo_image_surface_get_height(img));
    found_frame_t f;
    if (find_frame(img, &f, 0.4, 0.4)) {
        int cx, cy, first, last;
        data_px(&f, 0, 1, 0, 1, 0.5, 0.3, &cx, &cy);
        int n = blue_rows(img, &f, cx, &first, &last);
        T_CHECK(n == 0, "gap at x=0.5: %d blue rows (first %d)", n, first);
        data_px(&f, 0, 1, 0, 1, 0.25, 0.3, &cx, &cy);
        n = blue_rows(img, &f, cx, &first, &last);
        T_CHECK(n >= 1 && abs(first - cy) <= 2, "line at x=0.25: %d blue rows, first %d, want %d", n,
                first, cy);
        /* the second series is vermillion: present near (0.5, 0.4) */
        data_px(&f, 0, 1, 0, 1, 0.5, 0.4, &cx, &cy);
        int found = 0;
        for (int dy = -3; dy <= 3; dy++)
            for (int dx = -8; dx <= 8; dx++) {
                double c[3];
                px(img, cx + dx, cy + dy, c);
                if (c[0] - c[2] > 0.4 && c[1] < 0.6) found = 1;
            }
        T_CHECK(found, "dashed vermillion ramp not found near (0.5, 0.4)");
    } else {
        T_CHECK(0, "frame not found in gap.png");
    }
    cairo_surface_destroy(img);
}

static void test_panels(void)
{
    enum { N = 5 };
    double x[N] = {0, 1, 2, 3, 4}, y1[N] = {5, 4, 3, 2, 1}, y2[N] = {0.1, 0.2, 0.3, 0.2, 0.1};
    fig_series_t a[1] = {{x, y1, N, "loss", FIG_LINE_MARKERS, 0}};
    fig_series_t b[2] = {{x, y2, N, "error", FIG_MARKERS, 0}, {x, y1, N, NULL, FIG_LINE, 3}};
    const fig_series_t *ser[2] = {a, b};
    int ns[2] = {1, 2};
    fig_axes_t ax[2] = {{"loss", "epoch", "nll", 1, 0, 0, 0, 0, 0, 0}, {"error", "epoch", NULL, 0, 0, 0, 0, 0, 0, 0}};
    const char *p = tmp_path("panels.png");
    int st = fig_lines_panels(p, 2, ax, ser, ns, "two panels");
    T_CHECK(st == VL_OK, "fig_lines_panels: %s", vl_error_message());
    cairo_surface_t *img = load_png(p);
    T_CHECK(img != NULL, "cannot read %s", p);
    if (!img) return;
    int w = cairo_image_surface_get_width(img), h = cairo_image_surface_get_height(img);
    T_CHECK(w == 1280 && h == 640, "panels size %dx%d, want 1280x640", w, h);
    found_frame_t f;
    find_frame(img, &f, 0.3, 0.4);
    T_CHECK(f.ncols == 4, "two panels need 4 frame columns, found %d", f.ncols);
    if (f.ncols == 4)
        T_CHECK(f.cols[1] < w / 2 && f.cols[2] > w / 2, "panels must sit side by side: columns %d %d",
                f.cols[1], f.cols[2]);
    cairo_surface_destroy(img);
}

/* z = x on [0,1]²: band colours along a row follow the colour map's order and
 * match the band of z at each pixel; NaN cells are grey. */
static void test_contour(void)
{
    /* nodes do not sit on the levels (0, 0.1, ..., 1), so the interpolation
     * inside cells matters */
    enum { NX = 8, NY = 10 };
    double x[NX], y[NY], z[NX * NY];
    for (int i = 0; i < NX; i++) x[i] = i / (NX - 1.0);
    for (int j = 0; j < NY; j++) y[j] = j / (NY - 1.0);
    for (int j = 0; j < NY; j++)
        for (int i = 0; i < NX; i++) z[j * NX + i] = 0.8 * x[i] + 0.2 * y[j];
    /* NaN at nodes i >= 6, j >= 7: cells with x >= 5/7, y >= 6/9 are grey */
    double zn[NX * NY];
    memcpy(zn, z, sizeof z);
    for (int j = 7; j < NY; j++)
        for (int i = 6; i < NX; i++) zn[j * NX + i] = NAN;
    double lx[2] = {0.1, 0.9}, ly[2] = {0.3, 0.3};
    fig_polyline_t line = {lx, ly, 2, "curve"};
    fig_point_t pt[2] = {{0.2, 0.2, "w1"}, {0.4, 0.2, NULL}};
    fig_axes_t ax = {"ramp", "x", "y", 0, 0, 0, 0, 0, 0, 0};
    const char *p = tmp_path("contour.png"), *pn = tmp_path("contour_nan.png");
    int st = fig_contour(p, &ax, x, NX, y, NY, z, NULL, 11, 0, NULL, 0, NULL, 0, "z");
    T_CHECK(st == VL_OK, "fig_contour: %s", vl_error_message());
    st = fig_contour(pn, &ax, x, NX, y, NY, zn, NULL, 11, 0, pt, 2, &line, 1, "z");
    T_CHECK(st == VL_OK, "fig_contour with NaN: %s", vl_error_message());

    cairo_surface_t *img = load_png(p);
    T_CHECK(img != NULL, "cannot read %s", p);
    if (img) {
        T_CHECK(cairo_image_surface_get_width(img) == 1000 && cairo_image_surface_get_height(img) == 700,
                "contour size");
        found_frame_t f;
        int ok = find_frame(img, &f, 0.4, 0.4);
        T_CHECK(ok && f.ncols == 4, "contour: frame + colour bar need 4 dark columns, found %d", f.ncols);
        static const double yfrac[3] = {0.25, 0.5, 0.85}; /* v = 0.25, 0.5, 0.65 in their cells */
        for (int q = 0; ok && q < 3; q++) {
            int row = (int)floor(f.Y1 - yfrac[q] * (f.Y1 - f.Y0)), nseen = 0, mono = 1, wrong = 0;
            double yc = (f.Y1 - (row + 0.5)) / (f.Y1 - f.Y0);
            double tprev = -1, tfirst = -1, tlast = -1;
            for (int col = f.X0 + 2; col < f.X1 - 2; col++) {
                /* z at this pixel centre; pixels within ~5 px of a level carry
                 * the contour line: skip them. */
                double xc = (col + 0.5 - f.X0) / (f.X1 - f.X0), zb = (0.8 * xc + 0.2 * yc) * 10;
                if (fabs(zb - round(zb)) < 0.05) continue;
                double c[3], d;
                px(img, col, row, c);
                double t = cmap_inverse(c, &d);
                if (tfirst < 0) tfirst = t;
                tlast = t;
                if (t < tprev - 1e-9) mono = 0;
                tprev = t;
                nseen++;
                int band = (int)floor(zb);
                if (band > 9) band = 9;
                if (d > 0.02 || fabs(t - band / 9.0) > 0.02) wrong++;
            }
            T_CHECK(nseen > (f.X1 - f.X0) * 8 / 10, "row %d: only %d pixels checked", row, nseen);
            T_CHECK(mono, "row %d: colours along the ramp must follow the colour map order", row);
            T_CHECK(tlast - tfirst > 0.6, "row %d: left t %.3f, right t %.3f", row, tfirst, tlast);
            T_CHECK(wrong == 0, "row %d: %d pixels with the wrong band colour", row, wrong);
            /* contour lines: darker pixels where z crosses each interior level */
            int missing = 0;
            for (int k = 1; k <= 9; k++) {
                double xk = (0.1 * k - 0.2 * yc) / 0.8;
                if (xk < 0.02 || xk > 0.98) continue;
                int col = (int)floor(f.X0 + xk * (f.X1 - f.X0));
                double lmin = 1e9, c[3];
                for (int dc = -1; dc <= 1; dc++) {
                    px(img, col + dc, row, c);
                    lmin = fmin(lmin, 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]);
                }
                px(img, col - 8, row, c);
                double la = 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
                px(img, col + 8, row, c);
                double lb = 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
                if (!(lmin < 0.8 * fmin(la, lb))) missing++;
            }
            T_CHECK(missing == 0, "row %d: %d contour lines missing at their levels", row, missing);
        }
        cairo_surface_destroy(img);
    }

    img = load_png(pn);
    T_CHECK(img != NULL, "cannot read %s", pn);
    if (img) {
        found_frame_t f;
        if (find_frame(img, &f, 0.4, 0.4)) {
            int cx, cy;
            double c[3], d;
            data_px(&f, 0, 1, 0, 1, 0.85, 0.75, &cx, &cy);
            px(img, cx, cy, c);
            T_CHECK(fabs(c[0] - FIG_NAN_GREY) < 0.01 && fabs(c[1] - FIG_NAN_GREY) < 0.01 &&
                        fabs(c[2] - FIG_NAN_GREY) < 0.01,
                    "NaN cell at (0.85, 0.75) is (%.3f %.3f %.3f), want grey %.2f", c[0], c[1], c[2],
                    FIG_NAN_GREY);
            data_px(&f, 0, 1, 0, 1, 0.85, 0.45, &cx, &cy);
            px(img, cx, cy, c);
            cmap_inverse(c, &d);
            T_CHECK(d < 0.03, "finite cell at (0.85, 0.45) must have a colour-map colour (dist %.3f)", d);
            data_px(&f, 0, 1, 0, 1, 0.45, 0.85, &cx, &cy);
            px(img, cx, cy, c);
            cmap_inverse(c, &d);
            T_CHECK(d < 0.03, "finite cell at (0.45, 0.85) must have a colour-map colour (dist %.3f)", d);
            /* the polyline (vermillion) at y = 0.3 */
            data_px(&f, 0, 1, 0, 1, 0.52, 0.3, &cx, &cy);
            int found = 0;
            for (int dy = -3; dy <= 3; dy++) {
                px(img, cx, cy + dy, c);
                if (fabs(c[0] - 0xD5 / 255.0) < 0.08 && fabs(c[1] - 0x5E / 255.0) < 0.08 && c[2] < 0.1)
                    found = 1;
            }
            T_CHECK(found, "overlay polyline not found at (0.52, 0.3)");
        } else {
            T_CHECK(0, "frame not found in %s", pn);
        }
        cairo_surface_destroy(img);
    }

    /* explicit levels and log-spaced automatic levels also render */
    double lev[4] = {0.0, 0.2, 0.5, 1.0};
    st = fig_contour(tmp_path("contour_lev.png"), NULL, x, NX, y, NY, z, lev, 4, 0, NULL, 0, NULL, 0, NULL);
    T_CHECK(st == VL_OK, "explicit levels: %s", vl_error_message());
    st = fig_contour(tmp_path("contour_log.png"), NULL, x, NX, y, NY, z, NULL, 0, 1, NULL, 0, NULL, 0, NULL);
    T_CHECK(st == VL_OK, "log levels: %s", vl_error_message());
}

static void test_reliability(void)
{
    enum { NB = 10 };
    double acc[NB], conf[NB];
    long long cnt[NB];
    for (int b = 0; b < NB; b++) {
        conf[b] = (b + 0.5) / NB;
        acc[b] = fmax(0, conf[b] - 0.2);
        cnt[b] = b == 0 ? 0 : 50;
    }
    fig_reliability_t m[2] = {{"SGD", NB, NULL, NULL, acc, conf, cnt, 0.2},
                              {"SWAG", NB, NULL, NULL, conf, conf, NULL, 0.0}};
    const char *p = tmp_path("reliability.png");
    int st = fig_reliability(p, m, 2, "reliability");
    T_CHECK(st == VL_OK, "fig_reliability: %s", vl_error_message());
    cairo_surface_t *img = load_png(p);
    T_CHECK(img != NULL, "cannot read %s", p);
    if (!img) return;
    T_CHECK(cairo_image_surface_get_width(img) == 940 && cairo_image_surface_get_height(img) == 536,
            "reliability size %dx%d, want 940x536", cairo_image_surface_get_width(img),
            cairo_image_surface_get_height(img));
    found_frame_t f;
    if (find_frame(img, &f, 0.3, 0.3)) {
        T_CHECK(f.ncols == 4, "two panels: %d frame columns", f.ncols);
        T_CHECK(abs((f.X1 - f.X0) - (f.Y1 - f.Y0)) <= 1, "panel must be square: %dx%d", f.X1 - f.X0,
                f.Y1 - f.Y0);
        int cx, cy;
        double c[3];
        data_px(&f, 0, 1, 0, 1, 0.85, 0.3, &cx, &cy); /* inside the bar of bin 8 (acc 0.65) */
        px(img, cx, cy, c);
        T_CHECK(blueish(c), "bar of bin 8 at (0.85, 0.3) is (%.2f %.2f %.2f), want blue", c[0], c[1], c[2]);
        data_px(&f, 0, 1, 0, 1, 0.85, 0.75, &cx, &cy); /* gap between acc 0.65 and conf 0.85 */
        int tinted = 0;
        for (int dx = -3; dx <= 3; dx++) {
            px(img, cx + dx, cy, c);
            if (c[0] - c[2] > 0.1) tinted = 1;
        }
        T_CHECK(tinted, "gap of bin 8 at (0.85, 0.75) is not shaded vermillion");
        data_px(&f, 0, 1, 0, 1, 0.05, 0.02, &cx, &cy); /* bin 0 is empty: no bar */
        px(img, cx, cy, c);
        T_CHECK(!blueish(c), "empty bin 0 must have no bar");
        data_px(&f, 0, 1, 0, 1, 0.75, 0.95, &cx, &cy); /* above the bars: white or grid */
        px(img, cx, cy, c);
        T_CHECK(c[0] > 0.85 && c[1] > 0.85 && c[2] > 0.85, "above the bars must be background");
    } else {
        T_CHECK(0, "frame not found in %s", p);
    }
    cairo_surface_destroy(img);
}

static void test_band(void)
{
    enum { NG = 101 };
    double xg[NG], mu[NG], sd[NG], xd[1] = {-0.5}, yd[1] = {0.7};
    for (int i = 0; i < NG; i++) {
        xg[i] = -1 + 2.0 * i / (NG - 1);
        mu[i] = 0;
        sd[i] = 0.2;
    }
    fig_axes_t ax = {"band", "x", "y", 0, 900, 600, -1, 1, -1, 1};
    const char *p = tmp_path("band.png");
    int st = fig_band(p, &ax, xg, mu, sd, NG, xd, yd, 1);
    T_CHECK(st == VL_OK, "fig_band: %s", vl_error_message());
    cairo_surface_t *img = load_png(p);
    T_CHECK(img != NULL, "cannot read %s", p);
    if (!img) return;
    T_CHECK(cairo_image_surface_get_width(img) == 900 && cairo_image_surface_get_height(img) == 600,
            "band size");
    found_frame_t f;
    if (find_frame(img, &f, 0.4, 0.4)) {
        int cx, cy;
        double c0[3], c1[3], c2[3], c3[3], cd[3];
        data_px(&f, -1, 1, -1, 1, 0.5, 0.0, &cx, &cy);
        int first, last;
        int n = blue_rows(img, &f, cx, &first, &last); /* everything within ±2 std is bluish-ish */
        (void)n;
        px(img, cx, cy, c0);
        data_px(&f, -1, 1, -1, 1, 0.5, 0.1, &cx, &cy);
        px(img, cx, cy, c1);
        data_px(&f, -1, 1, -1, 1, 0.5, -0.3, &cx, &cy);
        px(img, cx, cy, c2);
        data_px(&f, -1, 1, -1, 1, 0.5, 0.6, &cx, &cy);
        px(img, cx, cy, c3);
        T_CHECK(blueish(c0), "mean line at (0.5, 0): (%.2f %.2f %.2f)", c0[0], c0[1], c0[2]);
        double s1 = c1[2] - c1[0], s2 = c2[2] - c2[0], s3 = c3[2] - c3[0];
        T_CHECK(s1 > s2 + 0.05 && s2 > s3 + 0.05 && s3 < 0.03,
                "shades must darken towards the mean: 1 std %.3f, 2 std %.3f, outside %.3f", s1, s2, s3);
        data_px(&f, -1, 1, -1, 1, -0.5, 0.7, &cx, &cy);
        px(img, cx, cy, cd);
        T_CHECK(cd[0] < 0.4 && cd[1] < 0.4 && cd[2] < 0.4, "data point at (-0.5, 0.7) not drawn");
    } else {
        T_CHECK(0, "frame not found in %s", p);
    }
    cairo_surface_destroy(img);
}

/* Same input, same bytes. */
static int same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

static void test_determinism(void)
{
    enum { N = 50 };
    double x[N], y[N];
    for (int i = 0; i < N; i++) {
        x[i] = i;
        y[i] = exp(-i / 10.0);
    }
    fig_series_t s = {x, y, N, "decay", FIG_LINE_MARKERS, 0};
    fig_axes_t ax = {"t", "x", "y", 1, 0, 0, 0, 0, 0, 0};
    const char *a = tmp_path("det_a.png"), *b = tmp_path("det_b.png");
    T_CHECK(fig_lines(a, &ax, &s, 1) == VL_OK && fig_lines(b, &ax, &s, 1) == VL_OK, "det: %s",
            vl_error_message());
    T_CHECK(same_file(a, b), "two renderings of the same figure differ");
}

static void test_errors(void)
{
    double x[3] = {0, 1, 2}, y[3] = {1, 2, 3}, z[9] = {0};
    fig_series_t s = {x, y, 3, NULL, FIG_LINE, 0};
    char bad[700], badtmp[710];
    snprintf(bad, sizeof bad, "%s/no_such_dir/fig.png", dir);
    snprintf(badtmp, sizeof badtmp, "%s.tmp", bad);
    vl_error_clear();
    int st = fig_lines(bad, NULL, &s, 1);
    T_CHECK(st == VL_EIO, "missing directory: status %d, want VL_EIO", st);
    T_CHECK(strstr(vl_error_message(), bad) != NULL, "message must name the path: '%s'", vl_error_message());
    T_CHECK(!file_exists(bad) && !file_exists(badtmp), "no file may be left behind");
    vl_error_clear();
    st = fig_contour(bad, NULL, x, 3, y, 3, z, NULL, 5, 0, NULL, 0, NULL, 0, NULL);
    T_CHECK(st == VL_EIO && !file_exists(bad) && !file_exists(badtmp), "contour to missing dir: %d", st);
    vl_error_clear();
    fig_reliability_t m = {"a", 3, NULL, NULL, y, y, NULL, 0.1};
    st = fig_reliability(bad, &m, 1, NULL);
    T_CHECK(st == VL_EIO, "reliability to missing dir: %d", st);
    vl_error_clear();
    st = fig_band(bad, NULL, x, y, y, 3, NULL, NULL, 0);
    T_CHECK(st == VL_EIO, "band to missing dir: %d", st);

    /* the final name is a directory: rename fails, the .tmp must go */
    const char *isdir = tmp_path("isdir.png");
    char isdirtmp[720];
    snprintf(isdirtmp, sizeof isdirtmp, "%s.tmp", isdir);
    T_CHECK(mkdir(isdir, 0755) == 0, "mkdir %s", isdir);
    vl_error_clear();
    st = fig_lines(isdir, NULL, &s, 1);
    T_CHECK(st == VL_EIO, "rename onto a directory: status %d, want VL_EIO", st);
    T_CHECK(!file_exists(isdirtmp), "%s left behind", isdirtmp);

    /* bad input */
    const char *p = tmp_path("bad.png");
    double xd[3] = {0, 2, 1};
    vl_error_clear();
    st = fig_contour(p, NULL, xd, 3, y, 3, z, NULL, 5, 0, NULL, 0, NULL, 0, NULL);
    T_CHECK(st == VL_EINPUT, "descending x: %d", st);
    double lev[3] = {0, 2, 1};
    vl_error_clear();
    st = fig_contour(p, NULL, x, 3, y, 3, z, lev, 3, 0, NULL, 0, NULL, 0, NULL);
    T_CHECK(st == VL_EINPUT, "unsorted levels: %d", st);
    vl_error_clear();
    st = fig_lines(p, NULL, &s, -1);
    T_CHECK(st == VL_EINPUT, "negative series count: %d", st);
    fig_axes_t ax = {NULL, NULL, NULL, 1, 0, 0, -1, 1, 0, 0};
    vl_error_clear();
    st = fig_lines(p, &ax, &s, 1);
    T_CHECK(st == VL_EINPUT, "log axis with ymin < 0: %d", st);
    fig_reliability_t m7[FIG_RELIABILITY_MAX + 1];
    for (int k = 0; k <= FIG_RELIABILITY_MAX; k++) m7[k] = m;
    vl_error_clear();
    st = fig_reliability(p, m7, FIG_RELIABILITY_MAX + 1, NULL);
    T_CHECK(st == VL_EINPUT, "%d reliability panels: %d", FIG_RELIABILITY_MAX + 1, st);
    T_CHECK(!file_exists(p), "bad input must not write a file");
    vl_error_clear();
}

int main(void)
{
    const char *base = getenv("VALLEY_TEST_TMP");
    if (base && base[0]) {
        snprintf(dir, sizeof dir, "%s/figure.XXXXXX", base);
    } else {
        snprintf(dir, sizeof dir, "/tmp/test_figure.XXXXXX");
    }
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_nice_ticks();
    test_colours();
    test_lines_midline(0);
    test_lines_midline(1);
    test_lines_gap_and_default_size();
    test_panels();
    test_contour();
    test_reliability();
    test_band();
    test_determinism();
    test_errors();
    printf("figures in %s\n", dir);
    T_DONE();
}
