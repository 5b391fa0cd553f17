/* figure.c — PNG figures with cairo: axes, ticks, legends, line plots, contour
 * maps, reliability diagrams, regression bands (see figure.h).
 *
 * Layout works in pixels of the output image. A panel's plot area is an
 * integer pixel box [X0, X1) × [Y0, Y1); data limits map to its edges, the frame
 * is drawn one pixel outside it, ticks point outwards so they never hide data.
 * Every drawing step is plain cairo on an RGB24 image surface; the PNG is
 * written through our own stream callback so that every write error is seen.
 */
#include "valley/figure.h"

#include "valley/error.h"

#include <cairo.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIG_PI 3.14159265358979323846
#define FIG_W 1000 /* default size (px) */
#define FIG_H 700
#define FIG_MIN_PX 120 /* smallest accepted width/height */
#define FIG_MAX_PX 16000
#define MAXTICKS 48
#define MAXLEG 48
#define MINUS "\xe2\x88\x92" /* U+2212, typographic minus */

/* ---------------------------------------------------------------- colours */

static const double okabe_ito[8][3] = {
    {0x00 / 255.0, 0x72 / 255.0, 0xB2 / 255.0}, /* blue */
    {0xD5 / 255.0, 0x5E / 255.0, 0x00 / 255.0}, /* vermillion */
    {0x00 / 255.0, 0x9E / 255.0, 0x73 / 255.0}, /* bluish green */
    {0xE6 / 255.0, 0x9F / 255.0, 0x00 / 255.0}, /* orange */
    {0xCC / 255.0, 0x79 / 255.0, 0xA7 / 255.0}, /* reddish purple */
    {0x56 / 255.0, 0xB4 / 255.0, 0xE9 / 255.0}, /* sky blue */
    {0.0, 0.0, 0.0},                            /* black */
    {0xF0 / 255.0, 0xE4 / 255.0, 0x42 / 255.0}, /* yellow */
};

/* matplotlib's viridis sampled at t = 0, 0.1, ..., 1. */
static const unsigned char viridis[11][3] = {
    {0x44, 0x01, 0x54}, {0x48, 0x24, 0x75}, {0x41, 0x44, 0x87}, {0x35, 0x5F, 0x8D},
    {0x2A, 0x78, 0x8E}, {0x21, 0x91, 0x8C}, {0x22, 0xA8, 0x84}, {0x44, 0xBF, 0x70},
    {0x7A, 0xD1, 0x51}, {0xBD, 0xDF, 0x26}, {0xFD, 0xE7, 0x25},
};

void fig_color_cycle(int i, double rgb[3])
{
    int k = ((i % 8) + 8) % 8;
    for (int c = 0; c < 3; c++) rgb[c] = okabe_ito[k][c];
}

void fig_colormap(double t, double rgb[3])
{
    if (!(t > 0)) t = 0; /* also NaN */
    if (t > 1) t = 1;
    double s = t * 10.0;
    int k = (int)s;
    if (k > 9) k = 9;
    double f = s - k;
    for (int c = 0; c < 3; c++)
        rgb[c] = ((1.0 - f) * viridis[k][c] + f * viridis[k + 1][c]) / 255.0;
}

static void set_rgb(cairo_t *cr, const double rgb[3], double alpha)
{
    if (alpha >= 1.0) cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
    else cairo_set_source_rgba(cr, rgb[0], rgb[1], rgb[2], alpha);
}

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ------------------------------------------------------------------ canvas */

typedef struct {
    cairo_surface_t *surf;
    cairo_t *cr;
    int w, h;
    double fs;   /* tick-label font size (px) */
    double fl;   /* axis-label font size */
    double ft;   /* title font size */
    double lw;   /* data line width */
    double tick; /* tick length */
    double pad;  /* outer padding */
} canvas_t;

/* Creates a white w×h canvas; s scales text and lines relative to the default size. */
static int canvas_open(canvas_t *c, const char *path, int w, int h, double s)
{
    memset(c, 0, sizeof *c);
    c->w = w;
    c->h = h;
    c->fs = clampd(15.0 * s, 9.0, 40.0);
    c->fl = 1.1 * c->fs;
    c->ft = 1.2 * c->fs;
    c->lw = fmax(1.0, 2.0 * s);
    c->tick = fmax(3.0, round(6.0 * s));
    c->pad = fmax(4.0, round(10.0 * s));
    c->surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    if (cairo_surface_status(c->surf) != CAIRO_STATUS_SUCCESS) {
        int st = VL_FAIL(VL_EIO, "%s: cannot create a %dx%d image: %s", path, w, h,
                         cairo_status_to_string(cairo_surface_status(c->surf)));
        cairo_surface_destroy(c->surf);
        c->surf = NULL;
        return st;
    }
    c->cr = cairo_create(c->surf);
    cairo_font_options_t *fo = cairo_font_options_create();
    cairo_font_options_set_antialias(fo, CAIRO_ANTIALIAS_GRAY);
    cairo_font_options_set_hint_style(fo, CAIRO_HINT_STYLE_SLIGHT);
    cairo_font_options_set_hint_metrics(fo, CAIRO_HINT_METRICS_OFF);
    cairo_set_font_options(c->cr, fo);
    cairo_font_options_destroy(fo);
    cairo_set_source_rgb(c->cr, 1, 1, 1);
    cairo_paint(c->cr);
    return VL_OK;
}

static void canvas_discard(canvas_t *c)
{
    if (c->cr) cairo_destroy(c->cr);
    if (c->surf) cairo_surface_destroy(c->surf);
    c->cr = NULL;
    c->surf = NULL;
}

typedef struct {
    FILE *fp;
    int err;
} png_sink_t;

static cairo_status_t png_write_cb(void *closure, const unsigned char *data, unsigned int len)
{
    png_sink_t *sink = closure;
    if (fwrite(data, 1, len, sink->fp) != len) {
        sink->err = errno ? errno : EIO;
        return CAIRO_STATUS_WRITE_ERROR;
    }
    return CAIRO_STATUS_SUCCESS;
}

/* Writes the canvas to "<path>.tmp", renames it to path, frees the canvas. */
static int canvas_save(canvas_t *c, const char *path)
{
    int st = VL_OK;
    cairo_status_t cs = cairo_status(c->cr);
    if (cs != CAIRO_STATUS_SUCCESS) {
        st = VL_FAIL(VL_EIO, "%s: drawing failed: %s", path, cairo_status_to_string(cs));
        canvas_discard(c);
        return st;
    }
    cairo_surface_flush(c->surf);
    size_t n = strlen(path);
    char *tmp = vl_alloc(n + 5, "figure temporary path");
    if (!tmp) {
        canvas_discard(c);
        return VL_EIO;
    }
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    errno = 0;
    png_sink_t sink = {fopen(tmp, "wb"), 0};
    if (!sink.fp) {
        st = VL_FAIL(VL_EIO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
    } else {
        errno = 0;
        cs = cairo_surface_write_to_png_stream(c->surf, png_write_cb, &sink);
        int close_err = fclose(sink.fp) != 0 ? (errno ? errno : EIO) : 0;
        if (cs != CAIRO_STATUS_SUCCESS || sink.err || close_err) {
            int e = sink.err ? sink.err : close_err;
            st = VL_FAIL(VL_EIO, "%s: cannot write PNG %s: %s", path, tmp,
                         e ? strerror(e) : cairo_status_to_string(cs));
            remove(tmp);
        } else if (rename(tmp, path) != 0) {
            st = VL_FAIL(VL_EIO, "%s: cannot rename %s to it: %s", path, tmp, strerror(errno));
            remove(tmp);
        }
    }
    free(tmp);
    canvas_discard(c);
    return st;
}

/* -------------------------------------------------------------------- text */

static void set_font(cairo_t *cr, double size, int bold)
{
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

/* Height of digits and capitals of DejaVu Sans / most sans-serif faces. */
static double cap_height(double size) { return 0.73 * size; }

static double text_width(cairo_t *cr, const char *s, double size, int bold)
{
    cairo_text_extents_t e;
    set_font(cr, size, bold);
    cairo_text_extents(cr, s, &e);
    return e.x_advance;
}

/* Draws s anchored at (x, y): ha 0 left, 0.5 centre, 1 right; va 0 = y is the
 * top of the capitals, 0.5 = their middle, 1 = the baseline. */
static void text_at(cairo_t *cr, double x, double y, const char *s, double size, int bold,
                    double ha, double va)
{
    double w = text_width(cr, s, size, bold);
    cairo_move_to(cr, x - ha * w, y + (1.0 - va) * cap_height(size));
    cairo_show_text(cr, s);
}

/* Same, rotated 90° counter-clockwise (reads bottom to top), centred on (x, y). */
static void text_vertical(cairo_t *cr, double x, double y, const char *s, double size)
{
    cairo_save(cr);
    cairo_translate(cr, x, y);
    cairo_rotate(cr, -FIG_PI / 2);
    text_at(cr, 0, 0, s, size, 0, 0.5, 0.5);
    cairo_restore(cr);
}

/* A tick label: base text and an optional superscript (for 10^k). */
typedef struct {
    char base[32];
    char sup[12];
} tlabel_t;

static double label_width(cairo_t *cr, const tlabel_t *l, double fs)
{
    double w = text_width(cr, l->base, fs, 0);
    if (l->sup[0]) w += text_width(cr, l->sup, 0.72 * fs, 0);
    return w;
}

static void label_at(cairo_t *cr, double x, double y, const tlabel_t *l, double fs, double ha,
                     double va)
{
    double wb = text_width(cr, l->base, fs, 0);
    double w = label_width(cr, l, fs);
    double x0 = x - ha * w, by = y + (1.0 - va) * cap_height(fs);
    set_font(cr, fs, 0);
    cairo_move_to(cr, x0, by);
    cairo_show_text(cr, l->base);
    if (l->sup[0]) {
        set_font(cr, 0.72 * fs, 0);
        cairo_move_to(cr, x0 + wb, by - 0.42 * fs);
        cairo_show_text(cr, l->sup);
    }
}

/* Replaces a leading '-' with the typographic minus (buffer of size cap). */
static void pretty_minus(char *s, size_t cap)
{
    if (s[0] != '-') return;
    size_t n = strlen(s);
    if (n + 2 >= cap) return;
    memmove(s + 3, s + 1, n); /* includes the terminating NUL */
    memcpy(s, MINUS, 3);
}

/* "%.*e" without the exponent's '+' and leading zeros: 2.5e-05 -> 2.5e-5.
 * cap must be at least 16. */
static void format_sci(char *buf, size_t cap, int prec, double v)
{
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.*e", prec > 15 ? 15 : prec, v);
    char *e = strchr(tmp, 'e');
    size_t n = e ? (size_t)(e - tmp) : strlen(tmp);
    if (n > cap - 8) n = cap - 8;
    memcpy(buf, tmp, n);
    buf[n] = '\0';
    if (e) snprintf(buf + n, cap - n, "e%d", atoi(e + 1));
}

/* ------------------------------------------------------------------- ticks */

typedef struct {
    int n;
    double v[MAXTICKS];
    tlabel_t lab[MAXTICKS];
    int nminor;
    double minor[4 * MAXTICKS];
} ticks_t;

/* Step m·10^e (m ∈ {1, 2, 5}) giving at most maxn intervals over range. */
static void nice_step(double range, int maxn, int *m, int *e)
{
    double raw = range / maxn;
    int ex = (int)floor(log10(raw));
    double f = raw / pow(10.0, ex);
    int mm;
    if (f <= 1.0 + 1e-9) mm = 1;
    else if (f <= 2.0 + 1e-9) mm = 2;
    else if (f <= 5.0 + 1e-9) mm = 5;
    else {
        mm = 1;
        ex++;
    }
    *m = mm;
    *e = ex;
}

/* i·m·10^e computed so that e.g. 3·0.1 gives exactly the double nearest 0.3. */
static double step_value(long long i, int m, int e)
{
    if (e >= 0) return (double)(i * m) * pow(10.0, e);
    return (double)(i * m) / pow(10.0, -e);
}

int fig_nice_ticks(double lo, double hi, int maxn, double *ticks, int cap)
{
    if (!isfinite(lo) || !isfinite(hi) || !(hi > lo) || maxn < 1 || !isfinite(hi - lo)) return 0;
    int m, e;
    nice_step(hi - lo, maxn, &m, &e);
    double step = step_value(1, m, e);
    if (!(step > 0) || fabs(lo) / step > 1e15 || fabs(hi) / step > 1e15) return 0;
    long long i0 = (long long)ceil(lo / step - 1e-9), i1 = (long long)floor(hi / step + 1e-9);
    int n = 0;
    for (long long i = i0; i <= i1; i++, n++)
        if (n < cap && ticks) ticks[n] = step_value(i, m, e);
    return n;
}

/* Labels for linear ticks with spacing step: fixed-point unless the numbers are
 * very large or small, then scientific; more digits until labels are distinct. */
static void format_linear(ticks_t *t, double step)
{
    double amax = 0;
    for (int i = 0; i < t->n; i++) amax = fmax(amax, fabs(t->v[i]));
    int sci = amax >= 1e6 || (amax > 0 && amax < 1e-3);
    int dec = (int)fmax(0, -floor(log10(step) + 1e-9));
    int prec = amax > 0 ? (int)fmax(0, floor(log10(amax) + 1e-9) - floor(log10(step) + 1e-9)) : 0;
    for (int extra = 0; extra < 8; extra++) {
        for (int i = 0; i < t->n; i++) {
            tlabel_t *l = &t->lab[i];
            l->sup[0] = '\0';
            double v = t->v[i];
            if (fabs(v) < 1e-9 * step) v = 0.0;
            if (sci && v != 0.0) format_sci(l->base, sizeof l->base, prec + extra, v);
            else if (sci) snprintf(l->base, sizeof l->base, "0");
            else snprintf(l->base, sizeof l->base, "%.*f", dec + extra, v);
            pretty_minus(l->base, sizeof l->base);
        }
        int distinct = 1;
        for (int i = 1; i < t->n; i++)
            if (!strcmp(t->lab[i].base, t->lab[i - 1].base)) distinct = 0;
        if (distinct) break;
    }
}

/* Widest label of t (px). */
static double ticks_maxw(cairo_t *cr, const ticks_t *t, double fs)
{
    double w = 0;
    for (int i = 0; i < t->n; i++) w = fmax(w, label_width(cr, &t->lab[i], fs));
    return w;
}

/* Do the labels fit along an axis of pixlen px showing [a, b] (positions in
 * axis units pos[i])? Horizontal: labels must not touch; vertical: one line of
 * text each with some air. */
static int ticks_fit(const canvas_t *c, const ticks_t *t, const double *pos, double a, double b,
                     double pixlen, int horizontal)
{
    for (int i = 1; i < t->n; i++) {
        double gap = (pos[i] - pos[i - 1]) / (b - a) * pixlen;
        if (horizontal) {
            double need = 0.5 * (label_width(c->cr, &t->lab[i], c->fs) +
                                 label_width(c->cr, &t->lab[i - 1], c->fs)) + 0.9 * c->fs;
            if (gap < need) return 0;
        } else if (gap < 1.7 * c->fs) {
            return 0;
        }
    }
    return 1;
}

/* Linear axis over [lo, hi], pixlen pixels long. */
static void ticks_linear(canvas_t *c, double lo, double hi, double pixlen, int horizontal, ticks_t *t)
{
    memset(t, 0, sizeof *t);
    int start = (int)(pixlen / (horizontal ? 6.0 * c->fs : 3.0 * c->fs));
    start = start < 5 ? 5 : start > 10 ? 10 : start;
    for (int maxn = start; maxn >= 1; maxn--) {
        int n = fig_nice_ticks(lo, hi, maxn, t->v, MAXTICKS);
        t->n = n < MAXTICKS ? n : MAXTICKS;
        if (t->n == 0) break;
        int m, e;
        nice_step(hi - lo, maxn, &m, &e);
        format_linear(t, step_value(1, m, e));
        if (t->n <= 1 || ticks_fit(c, t, t->v, lo, hi, pixlen, horizontal)) return;
    }
    if (t->n == 0) { /* degenerate (range below double precision): label the ends */
        t->n = 2;
        t->v[0] = lo;
        t->v[1] = hi;
        for (int i = 0; i < 2; i++) {
            snprintf(t->lab[i].base, sizeof t->lab[i].base, "%.6g", t->v[i]);
            pretty_minus(t->lab[i].base, sizeof t->lab[i].base);
            t->lab[i].sup[0] = '\0';
        }
    }
}

/* Label for 10^k on a log axis. plain: write the number (0.001 ... 10000). */
static void decade_label(tlabel_t *l, int k, int plain)
{
    if (plain) {
        if (k >= 0) snprintf(l->base, sizeof l->base, "%.0f", pow(10.0, k));
        else snprintf(l->base, sizeof l->base, "%.*f", -k, pow(10.0, k));
        l->sup[0] = '\0';
    } else {
        snprintf(l->base, sizeof l->base, "10");
        snprintf(l->sup, sizeof l->sup, "%d", k);
        pretty_minus(l->sup, sizeof l->sup);
    }
}

/* Log axis ticks at m·10^k for mantissas from a set: {1, 2, 5}, then (for
 * ranges under a decade) {1..9}, {1, 3}, {1}; the first set giving >= 2 ticks
 * whose labels fit wins (only_125: try {1, 2, 5} alone). Returns 1 when found. */
static int log_mantissa_ticks(canvas_t *c, double lo, double hi, double pixlen, int horizontal,
                              ticks_t *t, int only_125)
{
    static const int sets[4][10] = {{1, 2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 3}, {1}};
    static const int set_n[4] = {3, 9, 2, 1};
    double a = log10(lo), b = log10(hi), pos[MAXTICKS];
    for (int s = 0; s < (only_125 ? 1 : 4); s++) {
        t->n = 0;
        t->nminor = 0;
        for (int k = (int)floor(a) - 1; k <= (int)ceil(b); k++)
            for (int j = 0; j < set_n[s]; j++) {
                double v = sets[s][j] * pow(10.0, k);
                if (v < lo * (1 - 1e-12) || v > hi * (1 + 1e-12) || t->n >= MAXTICKS) continue;
                t->v[t->n] = v;
                pos[t->n] = log10(v);
                snprintf(t->lab[t->n].base, sizeof t->lab[t->n].base, "%.4g", v);
                t->lab[t->n].sup[0] = '\0';
                t->n++;
            }
        if (t->n >= 2 && ticks_fit(c, t, pos, a, b, pixlen, horizontal)) {
            for (int k = (int)floor(a); k <= (int)ceil(b); k++)
                for (int mm = 1; mm <= 9; mm++) {
                    double v = mm * pow(10.0, k);
                    if (v >= lo && v <= hi && t->nminor < 4 * MAXTICKS) t->minor[t->nminor++] = v;
                }
            return 1;
        }
    }
    t->n = t->nminor = 0;
    return 0;
}

/* Log10 axis over [lo, hi] (lo > 0). Positions are compared in log10 units. */
static void ticks_log(canvas_t *c, double lo, double hi, double pixlen, int horizontal, ticks_t *t)
{
    memset(t, 0, sizeof *t);
    double a = log10(lo), b = log10(hi);
    double pos[MAXTICKS];
    int k0 = (int)ceil(a - 1e-9), k1 = (int)floor(b + 1e-9);
    int ndec = k1 - k0 + 1;
    /* Under two decade ticks, or up to three decades of plain numbers: label
     * m·10^k (1, 2, 5 × 10^k when they fit). */
    if (ndec < 2 || (b - a <= 3.0 && a >= -3.5 && b <= 4.5))
        if (log_mantissa_ticks(c, lo, hi, pixlen, horizontal, t, ndec >= 2)) return;
    if (ndec >= 2) { /* decades, every stride-th */
        int plain = k0 >= -3 && k1 <= 4;
        for (int stride = 1; stride <= ndec; stride++) {
            t->n = 0;
            for (int k = k0; k <= k1 && t->n < MAXTICKS; k++) {
                if (((k % stride) + stride) % stride) continue;
                t->v[t->n] = pow(10.0, k);
                pos[t->n] = k;
                decade_label(&t->lab[t->n], k, plain);
                t->n++;
            }
            if (ticks_fit(c, t, pos, a, b, pixlen, horizontal) || t->n <= 2) {
                if (stride == 1 && b - a <= 8) /* minor ticks at 2..9 × 10^k */
                    for (int k = (int)floor(a); k <= k1; k++)
                        for (int mm = 2; mm <= 9; mm++) {
                            double v = mm * pow(10.0, k);
                            if (v >= lo && v <= hi && t->nminor < 4 * MAXTICKS) t->minor[t->nminor++] = v;
                        }
                return;
            }
        }
        return;
    }
    /* Very narrow range: linear ticks (on a log axis they are nearly evenly spaced). */
    ticks_linear(c, lo, hi, pixlen, horizontal, t);
}

/* ------------------------------------------------------------ frame/panel */

typedef struct {
    int X0, Y0, X1, Y1;            /* plot area, pixels [X0, X1) × [Y0, Y1) */
    double xmin, xmax, ymin, ymax; /* data limits (ymin > 0 when logy) */
    int logy;
    ticks_t xt, yt;
    double ytick_w; /* widest y tick label */
} frame_t;

static double map_x(const frame_t *f, double x)
{
    return f->X0 + (x - f->xmin) / (f->xmax - f->xmin) * (f->X1 - f->X0);
}

/* NaN when y cannot be shown (y <= 0 on a log axis, non-finite). */
static double map_y(const frame_t *f, double y)
{
    double t;
    if (f->logy) {
        if (!(y > 0)) return NAN;
        t = (log10(y) - log10(f->ymin)) / (log10(f->ymax) - log10(f->ymin));
    } else {
        t = (y - f->ymin) / (f->ymax - f->ymin);
    }
    return f->Y1 - t * (f->Y1 - f->Y0);
}

typedef struct {
    const char *title, *xlabel, *ylabel;
    int has_title, has_xlabel; /* reserve room even when this panel has none */
    double right_extra;        /* pixels reserved right of the plot area */
    int square;                /* square plot area */
} panel_t;

static int nonempty(const char *s) { return s && s[0]; }

static void frame_yticks(canvas_t *c, frame_t *f)
{
    if (f->logy) ticks_log(c, f->ymin, f->ymax, f->Y1 - f->Y0, 0, &f->yt);
    else ticks_linear(c, f->ymin, f->ymax, f->Y1 - f->Y0, 0, &f->yt);
    f->ytick_w = ticks_maxw(c->cr, &f->yt, c->fs);
}

/* Places the plot area of a panel inside the rectangle (rx, ry, rw, rh) and
 * chooses its ticks; the data limits of f must be set. */
static void panel_layout(canvas_t *c, frame_t *f, const panel_t *p, double rx, double ry, double rw,
                         double rh)
{
    double top = ry + c->pad + (p->has_title ? 1.9 * c->ft : 0.7 * c->fs);
    double bottom = ry + rh - c->pad - c->tick - 1.35 * c->fs -
                    (p->has_xlabel ? 1.75 * c->fl : 0.0);
    f->Y0 = (int)ceil(top);
    f->Y1 = (int)floor(bottom);
    if (f->Y1 < f->Y0 + 20) f->Y1 = f->Y0 + 20;
    frame_yticks(c, f);
    double left = rx + c->pad + (nonempty(p->ylabel) ? 1.6 * c->fl : 0.0) + f->ytick_w +
                  0.5 * c->fs + c->tick;
    double right = rx + rw - c->pad - p->right_extra - 1.2 * c->fs;
    f->X0 = (int)ceil(left);
    f->X1 = (int)floor(right);
    if (f->X1 < f->X0 + 20) f->X1 = f->X0 + 20;
    if (p->square) {
        int w = f->X1 - f->X0, h = f->Y1 - f->Y0;
        if (w > h) {
            f->X0 += (w - h) / 2;
            f->X1 = f->X0 + h;
        } else if (h > w) {
            f->Y0 += (h - w) / 2;
            f->Y1 = f->Y0 + w;
            frame_yticks(c, f);
        }
    }
    ticks_linear(c, f->xmin, f->xmax, f->X1 - f->X0, 1, &f->xt);
}

/* Light grid lines at the major ticks (drawn before the data). */
static void draw_grid(canvas_t *c, const frame_t *f)
{
    cairo_t *cr = c->cr;
    cairo_save(cr);
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_set_line_width(cr, 1.0);
    for (int i = 0; i < f->xt.n; i++) {
        double px = floor(map_x(f, f->xt.v[i])) + 0.5;
        if (px <= f->X0 + 1 || px >= f->X1 - 1) continue;
        cairo_move_to(cr, px, f->Y0);
        cairo_line_to(cr, px, f->Y1);
    }
    for (int i = 0; i < f->yt.n; i++) {
        double py = floor(map_y(f, f->yt.v[i])) + 0.5;
        if (!(py > f->Y0 + 1 && py < f->Y1 - 1)) continue;
        cairo_move_to(cr, f->X0, py);
        cairo_line_to(cr, f->X1, py);
    }
    cairo_stroke(cr);
    cairo_restore(cr);
}

/* Frame, ticks, tick labels, axis labels, title (drawn after the data). */
static void draw_frame(canvas_t *c, const frame_t *f, const panel_t *p)
{
    cairo_t *cr = c->cr;
    cairo_save(cr);
    cairo_set_source_rgb(cr, 0.13, 0.13, 0.13);
    cairo_set_line_width(cr, 1.0);
    cairo_rectangle(cr, f->X0 - 0.5, f->Y0 - 0.5, f->X1 - f->X0 + 1, f->Y1 - f->Y0 + 1);
    cairo_stroke(cr);
    for (int i = 0; i < f->xt.n; i++) {
        double px = floor(map_x(f, f->xt.v[i])) + 0.5;
        if (px > f->X1) px = f->X1 + 0.5;
        cairo_move_to(cr, px, f->Y1 + 0.5);
        cairo_line_to(cr, px, f->Y1 + 0.5 + c->tick);
    }
    for (int i = 0; i < f->yt.n; i++) {
        double py = floor(map_y(f, f->yt.v[i])) + 0.5;
        if (py > f->Y1) py = f->Y1 + 0.5;
        cairo_move_to(cr, f->X0 - 0.5, py);
        cairo_line_to(cr, f->X0 - 0.5 - c->tick, py);
    }
    for (int i = 0; i < f->yt.nminor; i++) {
        double py = floor(map_y(f, f->yt.minor[i])) + 0.5;
        if (!(py >= f->Y0 && py <= f->Y1)) continue;
        cairo_move_to(cr, f->X0 - 0.5, py);
        cairo_line_to(cr, f->X0 - 0.5 - 0.5 * c->tick, py);
    }
    cairo_stroke(cr);

    double ylab_x = f->X0 - c->tick - 0.5 * c->fs;
    for (int i = 0; i < f->xt.n; i++)
        label_at(cr, map_x(f, f->xt.v[i]), f->Y1 + c->tick + 0.45 * c->fs, &f->xt.lab[i], c->fs,
                 0.5, 0.0);
    for (int i = 0; i < f->yt.n; i++)
        label_at(cr, ylab_x, map_y(f, f->yt.v[i]), &f->yt.lab[i], c->fs, 1.0, 0.5);
    cairo_set_source_rgb(cr, 0, 0, 0);
    if (nonempty(p->xlabel))
        text_at(cr, 0.5 * (f->X0 + f->X1), f->Y1 + c->tick + 1.35 * c->fs + 0.55 * c->fl, p->xlabel,
                c->fl, 0, 0.5, 0.0);
    if (nonempty(p->ylabel))
        text_vertical(cr, ylab_x - f->ytick_w - 0.9 * c->fl, 0.5 * (f->Y0 + f->Y1), p->ylabel, c->fl);
    if (nonempty(p->title))
        text_at(cr, 0.5 * (f->X0 + f->X1), f->Y0 - 0.75 * c->ft, p->title, c->ft, 1, 0.5, 1.0);
    cairo_restore(cr);
}

static void clip_frame(cairo_t *cr, const frame_t *f)
{
    cairo_save(cr);
    cairo_rectangle(cr, f->X0, f->Y0, f->X1 - f->X0, f->Y1 - f->Y0);
    cairo_clip(cr);
}

/* ----------------------------------------------------------- primitives */

/* Liang–Barsky: clips the segment (x0,y0)-(x1,y1) to the box; 0 when outside. */
static int clip_segment(double bx0, double by0, double bx1, double by1, double *x0, double *y0,
                        double *x1, double *y1)
{
    double dx = *x1 - *x0, dy = *y1 - *y0, t0 = 0.0, t1 = 1.0;
    double pp[4] = {-dx, dx, -dy, dy}, qq[4] = {*x0 - bx0, bx1 - *x0, *y0 - by0, by1 - *y0};
    for (int k = 0; k < 4; k++) {
        if (pp[k] == 0.0) {
            if (qq[k] < 0) return 0;
            continue;
        }
        double r = qq[k] / pp[k];
        if (pp[k] < 0) {
            if (r > t1) return 0;
            if (r > t0) t0 = r;
        } else {
            if (r < t0) return 0;
            if (r < t1) t1 = r;
        }
    }
    double ax = *x0 + t0 * dx, ay = *y0 + t0 * dy, cx = *x0 + t1 * dx, cy = *y0 + t1 * dy;
    if (t0 > 0) { *x0 = ax; *y0 = ay; }
    if (t1 < 1) { *x1 = cx; *y1 = cy; }
    return 1;
}

/* Adds a polyline to the path, clipped to a box around the frame (cairo's
 * fixed-point coordinates must stay small); non-finite points break it. */
static void path_polyline(cairo_t *cr, const frame_t *f, const double *x, const double *y, int n)
{
    double bx0 = f->X0 - 50, bx1 = f->X1 + 50, by0 = f->Y0 - 50, by1 = f->Y1 + 50;
    int have = 0, pen = 0;
    double px = 0, py = 0;
    for (int i = 0; i < n; i++) {
        double qx = isfinite(x[i]) ? map_x(f, x[i]) : NAN, qy = isfinite(y[i]) ? map_y(f, y[i]) : NAN;
        if (!isfinite(qx) || !isfinite(qy)) {
            have = pen = 0;
            continue;
        }
        if (have) {
            double ax = px, ay = py, cx = qx, cy = qy;
            if (clip_segment(bx0, by0, bx1, by1, &ax, &ay, &cx, &cy)) {
                if (!pen || ax != px || ay != py) cairo_move_to(cr, ax, ay);
                cairo_line_to(cr, cx, cy);
                pen = cx == qx && cy == qy;
            } else {
                pen = 0;
            }
        }
        px = qx;
        py = qy;
        have = 1;
    }
}

/* Marker shapes: 0 circle, 1 square, 2 triangle up, 3 diamond, 4 triangle down. */
static void path_marker(cairo_t *cr, int shape, double x, double y, double r)
{
    switch (((shape % 5) + 5) % 5) {
    case 0:
        cairo_new_sub_path(cr);
        cairo_arc(cr, x, y, r, 0, 2 * FIG_PI);
        break;
    case 1:
        cairo_rectangle(cr, x - 0.88 * r, y - 0.88 * r, 1.76 * r, 1.76 * r);
        break;
    case 2:
        cairo_move_to(cr, x, y - 1.2 * r);
        cairo_line_to(cr, x + 1.05 * r, y + 0.7 * r);
        cairo_line_to(cr, x - 1.05 * r, y + 0.7 * r);
        cairo_close_path(cr);
        break;
    case 3:
        cairo_move_to(cr, x, y - 1.25 * r);
        cairo_line_to(cr, x + r, y);
        cairo_line_to(cr, x, y + 1.25 * r);
        cairo_line_to(cr, x - r, y);
        cairo_close_path(cr);
        break;
    default:
        cairo_move_to(cr, x, y + 1.2 * r);
        cairo_line_to(cr, x + 1.05 * r, y - 0.7 * r);
        cairo_line_to(cr, x - 1.05 * r, y - 0.7 * r);
        cairo_close_path(cr);
        break;
    }
}

/* Pixel position of a data point if it is inside the frame (with margin). */
static int point_px(const frame_t *f, double x, double y, double margin, double *px, double *py)
{
    if (!isfinite(x) || !isfinite(y)) return 0;
    *px = map_x(f, x);
    *py = map_y(f, y);
    return isfinite(*px) && isfinite(*py) && *px >= f->X0 - margin && *px <= f->X1 + margin &&
           *py >= f->Y0 - margin && *py <= f->Y1 + margin;
}

/* ----------------------------------------------------------------- legend */

enum { LEG_LINE, LEG_DASHED, LEG_MARKER, LEG_LINE_MARKER, LEG_PATCH, LEG_CASED, LEG_HATCH };

/* Rectangle with a light fill, diagonal hatching and an edge, all in rgb. */
static void hatch_rect(cairo_t *cr, double x, double y, double w, double h, const double rgb[3],
                       double spacing)
{
    if (!(w > 0) || !(h > 0)) return;
    cairo_save(cr);
    cairo_rectangle(cr, x, y, w, h);
    set_rgb(cr, rgb, 0.22);
    cairo_fill_preserve(cr);
    cairo_clip(cr);
    set_rgb(cr, rgb, 0.9);
    cairo_set_line_width(cr, 1.0);
    for (double d = -h; d < w; d += spacing) {
        cairo_move_to(cr, x + d, y + h);
        cairo_line_to(cr, x + d + h, y);
    }
    cairo_stroke(cr);
    cairo_restore(cr);
    cairo_save(cr);
    cairo_rectangle(cr, x, y, w, h);
    set_rgb(cr, rgb, 1.0);
    cairo_set_line_width(cr, 1.0);
    cairo_stroke(cr);
    cairo_restore(cr);
}

typedef struct {
    const char *label;
    int kind, shape;
    double rgb[3], alpha;
    int edge; /* markers/patches: dark edge */
} leg_entry_t;

typedef struct {
    int n;
    leg_entry_t e[MAXLEG];
    int cnt[4]; /* occupancy of the candidate corners: TR, TL, BR, BL */
    double w, h;
    double cx[4], cy[4]; /* top-left of the box at each corner */
} legend_t;

static void legend_add(legend_t *L, const char *label, int kind, const double rgb[3], double alpha,
                       int shape, int edge)
{
    if (!nonempty(label) || L->n >= MAXLEG) return;
    leg_entry_t *e = &L->e[L->n++];
    e->label = label;
    e->kind = kind;
    e->shape = shape;
    e->alpha = alpha;
    e->edge = edge;
    for (int k = 0; k < 3; k++) e->rgb[k] = rgb[k];
}

/* Box size and the four candidate positions (needs the entries). */
static void legend_place(canvas_t *c, legend_t *L, const frame_t *f)
{
    double wmax = 0;
    for (int i = 0; i < L->n; i++) wmax = fmax(wmax, text_width(c->cr, L->e[i].label, c->fs, 0));
    double pad = 0.6 * c->fs, inset = 0.7 * c->fs;
    L->w = 2 * pad + 2.4 * c->fs + 0.6 * c->fs + wmax;
    L->h = 2 * pad + L->n * 1.5 * c->fs - 0.5 * c->fs;
    double xl = f->X0 + inset, xr = f->X1 - inset - L->w, yt = f->Y0 + inset, yb = f->Y1 - inset - L->h;
    L->cx[0] = xr; L->cy[0] = yt;
    L->cx[1] = xl; L->cy[1] = yt;
    L->cx[2] = xr; L->cy[2] = yb;
    L->cx[3] = xl; L->cy[3] = yb;
    memset(L->cnt, 0, sizeof L->cnt);
}

static void legend_occupy_px(legend_t *L, double px, double py, int weight)
{
    for (int k = 0; k < 4; k++)
        if (px >= L->cx[k] - 4 && px <= L->cx[k] + L->w + 4 && py >= L->cy[k] - 4 &&
            py <= L->cy[k] + L->h + 4)
            L->cnt[k] += weight;
}

/* Counts how much of a polyline (sampled every ~3 px) or of its points falls
 * into each candidate box. */
static void legend_occupy(legend_t *L, const frame_t *f, const double *x, const double *y, int n,
                          int as_lines)
{
    double px0 = 0, py0 = 0;
    int have = 0;
    for (int i = 0; i < n; i++) {
        double px, py;
        if (!point_px(f, x[i], y[i], 1e4, &px, &py)) {
            have = 0;
            continue;
        }
        legend_occupy_px(L, px, py, 3);
        if (as_lines && have) {
            double len = hypot(px - px0, py - py0);
            int steps = (int)fmin(2000.0, len / 3.0);
            for (int s = 1; s < steps; s++) {
                double t = (double)s / steps;
                legend_occupy_px(L, px0 + t * (px - px0), py0 + t * (py - py0), 1);
            }
        }
        px0 = px;
        py0 = py;
        have = 1;
    }
}

/* Draws the legend at the least occupied corner (ties: TR, TL, BR, BL). */
static void legend_draw(canvas_t *c, const legend_t *L)
{
    if (L->n == 0) return;
    int best = 0;
    for (int k = 1; k < 4; k++)
        if (L->cnt[k] < L->cnt[best]) best = k;
    cairo_t *cr = c->cr;
    double x = round(L->cx[best]) + 0.5, y = round(L->cy[best]) + 0.5, pad = 0.6 * c->fs;
    cairo_save(cr);
    cairo_rectangle(cr, x, y, round(L->w), round(L->h));
    cairo_set_source_rgba(cr, 1, 1, 1, 0.88);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.75, 0.75, 0.75);
    cairo_set_line_width(cr, 1.0);
    cairo_stroke(cr);
    double sw = 2.4 * c->fs;
    for (int i = 0; i < L->n; i++) {
        const leg_entry_t *e = &L->e[i];
        double yc = y + pad + 0.5 * c->fs + i * 1.5 * c->fs, xs = x + pad;
        cairo_set_dash(cr, NULL, 0, 0);
        switch (e->kind) {
        case LEG_CASED:
            cairo_set_source_rgb(cr, 1, 1, 1);
            cairo_set_line_width(cr, c->lw * 2.3);
            cairo_move_to(cr, xs, yc);
            cairo_line_to(cr, xs + sw, yc);
            cairo_stroke(cr);
            /* fallthrough */
        case LEG_LINE:
        case LEG_DASHED:
        case LEG_LINE_MARKER:
            set_rgb(cr, e->rgb, e->alpha);
            cairo_set_line_width(cr, e->kind == LEG_CASED ? 1.3 * c->lw : c->lw);
            if (e->kind == LEG_DASHED) {
                double d[2] = {3.5 * c->lw, 2.5 * c->lw};
                cairo_set_dash(cr, d, 2, 0);
            }
            cairo_move_to(cr, xs, yc);
            cairo_line_to(cr, xs + sw, yc);
            cairo_stroke(cr);
            cairo_set_dash(cr, NULL, 0, 0);
            if (e->kind == LEG_LINE_MARKER) {
                path_marker(cr, e->shape, xs + 0.5 * sw, yc, 0.3 * c->fs);
                cairo_fill(cr);
            }
            break;
        case LEG_MARKER:
            path_marker(cr, e->shape, xs + 0.5 * sw, yc, e->edge ? 0.4 * c->fs : 0.3 * c->fs);
            set_rgb(cr, e->rgb, e->alpha);
            if (e->edge) {
                cairo_fill_preserve(cr);
                cairo_set_source_rgb(cr, 0, 0, 0);
                cairo_set_line_width(cr, 1.0);
                cairo_stroke(cr);
            } else {
                cairo_fill(cr);
            }
            break;
        case LEG_HATCH:
            hatch_rect(cr, xs, yc - 0.4 * c->fs, sw, 0.8 * c->fs, e->rgb, 5.0);
            break;
        default: /* LEG_PATCH */
            cairo_rectangle(cr, xs, yc - 0.4 * c->fs, sw, 0.8 * c->fs);
            set_rgb(cr, e->rgb, e->alpha);
            if (e->edge) {
                cairo_fill_preserve(cr);
                set_rgb(cr, e->rgb, 1.0);
                cairo_set_line_width(cr, 1.0);
                cairo_stroke(cr);
            } else {
                cairo_fill(cr);
            }
            break;
        }
        cairo_set_source_rgb(cr, 0, 0, 0);
        text_at(cr, xs + sw + 0.6 * c->fs, yc, e->label, c->fs, 0, 0.0, 0.5);
    }
    cairo_restore(cr);
}

/* ------------------------------------------------------------ validation */

static int check_size(const char *path, const char *fn, int w, int h)
{
    if (w < FIG_MIN_PX || w > FIG_MAX_PX || h < FIG_MIN_PX || h > FIG_MAX_PX)
        return VL_FAIL(VL_EINPUT, "%s: %s: figure size %dx%d outside [%d, %d] pixels", path, fn, w, h,
                       FIG_MIN_PX, FIG_MAX_PX);
    return VL_OK;
}

/* Checks ax (may be NULL) for what every figure uses. */
static int check_axes(const char *path, const char *fn, const fig_axes_t *ax)
{
    if (!ax) return VL_OK;
    if (ax->width < 0 || ax->height < 0)
        return VL_FAIL(VL_EINPUT, "%s: %s: negative figure size %dx%d", path, fn, ax->width, ax->height);
    if (ax->ymin != 0 || ax->ymax != 0) {
        if (!isfinite(ax->ymin) || !isfinite(ax->ymax) || !(ax->ymin < ax->ymax))
            return VL_FAIL(VL_EINPUT, "%s: %s: y range [%g, %g] is not an increasing finite range",
                           path, fn, ax->ymin, ax->ymax);
        if (ax->logy && !(ax->ymin > 0))
            return VL_FAIL(VL_EINPUT, "%s: %s: log y axis needs ymin > 0, got %g", path, fn, ax->ymin);
    }
    if (ax->xmin != 0 || ax->xmax != 0) {
        if (!isfinite(ax->xmin) || !isfinite(ax->xmax) || !(ax->xmin < ax->xmax))
            return VL_FAIL(VL_EINPUT, "%s: %s: x range [%g, %g] is not an increasing finite range",
                           path, fn, ax->xmin, ax->xmax);
    }
    return VL_OK;
}

static int check_path(const char *path, const char *fn)
{
    if (!path || !path[0]) return VL_FAIL(VL_EINPUT, "%s: empty output path", fn);
    return VL_OK;
}

/* ------------------------------------------------------------ data limits */

typedef struct {
    double lo, hi;
    int any;
} range_t;

static void range_add(range_t *r, double v)
{
    if (!isfinite(v)) return;
    if (!r->any) {
        r->lo = r->hi = v;
        r->any = 1;
    } else {
        r->lo = fmin(r->lo, v);
        r->hi = fmax(r->hi, v);
    }
}

/* Final x limits from the data range r (no padding). */
static void limits_x(frame_t *f, const fig_axes_t *ax, range_t r)
{
    if (ax && (ax->xmin != 0 || ax->xmax != 0)) {
        f->xmin = ax->xmin;
        f->xmax = ax->xmax;
        return;
    }
    if (!r.any) {
        r.lo = 0;
        r.hi = 1;
    } else if (!(r.hi > r.lo)) {
        double d = r.lo == 0 ? 1.0 : 0.1 * fabs(r.lo);
        r.lo -= d;
        r.hi += d;
    }
    f->xmin = r.lo;
    f->xmax = r.hi;
}

/* Final y limits from the data range r (values > 0 only when logy): 4 %
 * padding, in log10 units on a log axis. */
static void limits_y(frame_t *f, const fig_axes_t *ax, range_t r)
{
    f->logy = ax && ax->logy;
    if (ax && (ax->ymin != 0 || ax->ymax != 0)) {
        f->ymin = ax->ymin;
        f->ymax = ax->ymax;
        return;
    }
    if (f->logy) {
        double a = r.any ? log10(r.lo) : 0.0, b = r.any ? log10(r.hi) : 1.0;
        if (!(b > a)) {
            a -= 0.5;
            b += 0.5;
        }
        double d = 0.04 * (b - a);
        f->ymin = pow(10.0, a - d);
        f->ymax = pow(10.0, b + d);
        return;
    }
    if (!r.any) {
        r.lo = 0;
        r.hi = 1;
    } else if (!(r.hi > r.lo)) {
        double d = r.lo == 0 ? 1.0 : 0.1 * fabs(r.lo);
        r.lo -= d;
        r.hi += d;
    }
    double d = 0.04 * (r.hi - r.lo);
    f->ymin = r.lo - d;
    f->ymax = r.hi + d;
    if (!isfinite(f->ymin) || !isfinite(f->ymax)) { /* range near DBL_MAX */
        f->ymin = r.lo;
        f->ymax = r.hi;
    }
}

/* Is x inside the x limits the caller fixed (or are they automatic)? */
static int in_xrange(const fig_axes_t *ax, double x)
{
    if (!ax || (ax->xmin == 0 && ax->xmax == 0)) return 1;
    return x >= ax->xmin && x <= ax->xmax;
}

/* ------------------------------------------------------------- line plots */

static int check_series(const char *path, const char *fn, int panel, const fig_series_t *s, int ns)
{
    if (ns < 0) return VL_FAIL(VL_EINPUT, "%s: %s: panel %d: negative series count %d", path, fn, panel, ns);
    if (ns > 0 && !s) return VL_FAIL(VL_EINPUT, "%s: %s: panel %d: series is NULL", path, fn, panel);
    for (int i = 0; i < ns; i++) {
        if (s[i].n < 0)
            return VL_FAIL(VL_EINPUT, "%s: %s: panel %d series %d: negative length %d", path, fn, panel,
                           i, s[i].n);
        if (s[i].n > 0 && (!s[i].x || !s[i].y))
            return VL_FAIL(VL_EINPUT, "%s: %s: panel %d series %d: x or y is NULL", path, fn, panel, i);
        if (s[i].style < FIG_LINE || s[i].style > FIG_LINE_MARKERS)
            return VL_FAIL(VL_EINPUT, "%s: %s: panel %d series %d: unknown style %d", path, fn, panel,
                           i, s[i].style);
        if (s[i].color < 0)
            return VL_FAIL(VL_EINPUT, "%s: %s: panel %d series %d: negative colour %d", path, fn,
                           panel, i, s[i].color);
    }
    return VL_OK;
}

static void series_limits(frame_t *f, const fig_axes_t *ax, const fig_series_t *s, int ns)
{
    range_t rx = {0, 0, 0}, ry = {0, 0, 0};
    int logy = ax && ax->logy;
    for (int i = 0; i < ns; i++)
        for (int k = 0; k < s[i].n; k++) {
            double x = s[i].x[k], y = s[i].y[k];
            if (!isfinite(x) || !isfinite(y) || (logy && !(y > 0))) continue;
            range_add(&rx, x);
            if (in_xrange(ax, x)) range_add(&ry, y);
        }
    limits_x(f, ax, rx);
    limits_y(f, ax, ry);
}

static void series_color(const fig_series_t *s, int i, double rgb[3])
{
    fig_color_cycle(s->color > 0 ? s->color - 1 : i, rgb);
}

/* Draws the series of one panel inside its frame, then the legend. */
static void series_draw(canvas_t *c, const frame_t *f, const fig_series_t *s, int ns)
{
    cairo_t *cr = c->cr;
    double r = fmax(2.5, 0.27 * c->fs);
    clip_frame(cr, f);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
    for (int i = 0; i < ns; i++) {
        double rgb[3];
        series_color(&s[i], i, rgb);
        set_rgb(cr, rgb, 1.0);
        if (s[i].style != FIG_MARKERS) {
            cairo_set_line_width(cr, c->lw);
            if (s[i].style == FIG_DASHED) {
                double d[2] = {3.5 * c->lw, 2.5 * c->lw};
                cairo_set_dash(cr, d, 2, 0);
            }
            path_polyline(cr, f, s[i].x, s[i].y, s[i].n);
            cairo_stroke(cr);
            cairo_set_dash(cr, NULL, 0, 0);
        }
        if (s[i].style == FIG_MARKERS || s[i].style == FIG_LINE_MARKERS) {
            for (int k = 0; k < s[i].n; k++) {
                double px, py;
                if (point_px(f, s[i].x[k], s[i].y[k], 2 * r, &px, &py)) path_marker(cr, i, px, py, r);
            }
            cairo_fill(cr);
        }
    }
    cairo_restore(cr); /* clip */

    legend_t *L = &(legend_t){0};
    for (int i = 0; i < ns; i++) {
        static const int kind[4] = {LEG_LINE, LEG_DASHED, LEG_MARKER, LEG_LINE_MARKER};
        double rgb[3];
        series_color(&s[i], i, rgb);
        legend_add(L, s[i].label, kind[s[i].style], rgb, 1.0, i, 0);
    }
    if (L->n == 0) return;
    legend_place(c, L, f);
    for (int i = 0; i < ns; i++)
        legend_occupy(L, f, s[i].x, s[i].y, s[i].n, s[i].style != FIG_MARKERS);
    legend_draw(c, L);
}

int fig_lines_panels(const char *path, int npanels, const fig_axes_t *ax,
                     const fig_series_t *const *series, const int *ns, const char *suptitle)
{
    const char *fn = "fig_lines_panels";
    CHECK(check_path(path, fn));
    if (npanels < 1 || npanels > 8)
        return VL_FAIL(VL_EINPUT, "%s: %s: %d panels, need 1 to 8", path, fn, npanels);
    if (!series || !ns) return VL_FAIL(VL_EINPUT, "%s: %s: series or ns is NULL", path, fn);
    for (int p = 0; p < npanels; p++) {
        CHECK(check_axes(path, fn, ax ? &ax[p] : NULL));
        CHECK(check_series(path, fn, p, series[p], ns[p]));
    }
    int w = ax && ax[0].width ? ax[0].width : npanels == 1 ? FIG_W : 640 * npanels;
    int h = ax && ax[0].height ? ax[0].height : npanels == 1 ? FIG_H : 640;
    CHECK(check_size(path, fn, w, h));
    double sc = npanels == 1 ? fmin(w / (double)FIG_W, h / (double)FIG_H)
                             : fmin(w / (640.0 * npanels), h / 640.0);
    canvas_t c;
    CHECK(canvas_open(&c, path, w, h, sc));

    int any_title = 0, any_xlabel = 0;
    for (int p = 0; ax && p < npanels; p++) {
        any_title |= nonempty(ax[p].title);
        any_xlabel |= nonempty(ax[p].xlabel);
    }
    double top = 0;
    if (nonempty(suptitle)) {
        top = c.pad + 1.6 * c.ft;
        cairo_set_source_rgb(c.cr, 0, 0, 0);
        text_at(c.cr, 0.5 * w, c.pad + 0.2 * c.ft, suptitle, 1.15 * c.ft, 1, 0.5, 0.0);
    }
    double pw = (double)w / npanels;
    for (int p = 0; p < npanels; p++) {
        const fig_axes_t *a = ax ? &ax[p] : NULL;
        frame_t f;
        memset(&f, 0, sizeof f);
        series_limits(&f, a, series[p], ns[p]);
        panel_t pn = {a ? a->title : NULL, a ? a->xlabel : NULL, a ? a->ylabel : NULL,
                      any_title, any_xlabel, 0.0, 0};
        panel_layout(&c, &f, &pn, p * pw, top, pw, h - top);
        draw_grid(&c, &f);
        series_draw(&c, &f, series[p], ns[p]);
        draw_frame(&c, &f, &pn);
    }
    CHECK(canvas_save(&c, path));
    return VL_OK;
}

int fig_lines(const char *path, const fig_axes_t *ax, const fig_series_t *s, int ns)
{
    CHECK(fig_lines_panels(path, 1, ax, &s, &ns, NULL));
    return VL_OK;
}

/* ------------------------------------------------------------------ contour */

/* The level index band for z: largest k with lev[k] <= z, clamped to [0, nb-1]. */
static int band_of(const double *lev, int nlev, double z)
{
    int lo = 0, hi = nlev - 1; /* invariant: answer in [lo, hi] when lev[lo] <= z */
    if (!(z >= lev[0])) return 0;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (lev[mid] <= z) lo = mid;
        else hi = mid - 1;
    }
    return lo > nlev - 2 ? nlev - 2 : lo;
}

/* Level labels with %.Ng, more digits until adjacent labels differ. */
static void format_levels(const double *lev, int nlev, tlabel_t *lab)
{
    for (int prec = 3; prec <= 10; prec++) {
        for (int k = 0; k < nlev; k++) {
            double v = lev[k];
            if (fabs(v) < 1e-12 * (fabs(lev[0]) + fabs(lev[nlev - 1]))) v = 0.0;
            snprintf(lab[k].base, sizeof lab[k].base, "%.*g", prec, v);
            pretty_minus(lab[k].base, sizeof lab[k].base);
            lab[k].sup[0] = '\0';
        }
        int distinct = 1;
        for (int k = 1; k < nlev; k++)
            if (!strcmp(lab[k].base, lab[k - 1].base)) distinct = 0;
        if (distinct) return;
    }
}

/* Value of the cell interpolant at (u, v) ∈ [0,1]²: four triangles around the
 * centre, whose value zc is the mean of the corners. */
static double cell_value(double z00, double z10, double z01, double z11, double u, double v)
{
    double zc = 0.25 * (z00 + z10 + z01 + z11);
    if (v <= u) {
        if (u + v <= 1) return (1 - u - v) * z00 + (u - v) * z10 + 2 * v * zc; /* bottom */
        return (u - v) * z10 + (u + v - 1) * z11 + 2 * (1 - u) * zc;            /* right */
    }
    if (u + v > 1) return (u + v - 1) * z11 + (v - u) * z01 + 2 * (1 - v) * zc; /* top */
    return (v - u) * z01 + (1 - u - v) * z00 + 2 * u * zc;                      /* left */
}

/* Rasterises the filled bands into an image of the plot area and paints it. */
static int contour_fill(canvas_t *c, const frame_t *f, const char *path, const double *x, int nx,
                        const double *y, int ny, const double *z, const double *lev, int nlev,
                        int *any_nan)
{
    int pw = f->X1 - f->X0, ph = f->Y1 - f->Y0, nb = nlev - 1;
    cairo_surface_t *img = cairo_image_surface_create(CAIRO_FORMAT_RGB24, pw, ph);
    if (cairo_surface_status(img) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(img);
        return VL_FAIL(VL_EIO, "%s: cannot create the %dx%d contour raster", path, pw, ph);
    }
    int *ci = vl_alloc(sizeof(int) * (size_t)(pw + ph), "contour raster index");
    double *cu = vl_alloc(sizeof(double) * (size_t)(pw + ph), "contour raster weights");
    uint32_t *col = vl_alloc(sizeof(uint32_t) * (size_t)nb, "contour band colours");
    if (!ci || !cu || !col) {
        free(ci);
        free(cu);
        free(col);
        cairo_surface_destroy(img);
        return VL_EIO;
    }
    for (int k = 0; k < nb; k++) {
        double rgb[3];
        fig_colormap(nb == 1 ? 0.5 : (double)k / (nb - 1), rgb);
        col[k] = (uint32_t)lround(rgb[0] * 255) << 16 | (uint32_t)lround(rgb[1] * 255) << 8 |
                 (uint32_t)lround(rgb[2] * 255);
    }
    uint32_t grey = (uint32_t)lround(FIG_NAN_GREY * 255);
    grey = grey << 16 | grey << 8 | grey;
    /* column c → cell i and fraction u; row r (top to bottom) → cell j and v */
    int i = 0;
    for (int cc = 0; cc < pw; cc++) {
        double xc = f->xmin + (cc + 0.5) / pw * (f->xmax - f->xmin);
        while (i < nx - 2 && x[i + 1] <= xc) i++;
        ci[cc] = i;
        cu[cc] = clampd((xc - x[i]) / (x[i + 1] - x[i]), 0.0, 1.0);
    }
    int j = ny - 2;
    for (int r = 0; r < ph; r++) {
        double yc = f->ymax - (r + 0.5) / ph * (f->ymax - f->ymin);
        while (j > 0 && y[j] > yc) j--;
        ci[pw + r] = j;
        cu[pw + r] = clampd((yc - y[j]) / (y[j + 1] - y[j]), 0.0, 1.0);
    }
    cairo_surface_flush(img);
    unsigned char *data = cairo_image_surface_get_data(img);
    int stride = cairo_image_surface_get_stride(img);
    for (int r = 0; r < ph; r++) {
        uint32_t *row = (uint32_t *)(void *)(data + (size_t)r * stride);
        int jj = ci[pw + r];
        double v = cu[pw + r];
        for (int cc = 0; cc < pw; cc++) {
            int ii = ci[cc];
            const double *z0 = z + (size_t)jj * nx + ii, *z1 = z0 + nx;
            if (!isfinite(z0[0]) || !isfinite(z0[1]) || !isfinite(z1[0]) || !isfinite(z1[1])) {
                row[cc] = grey;
                *any_nan = 1;
                continue;
            }
            double zz = cell_value(z0[0], z0[1], z1[0], z1[1], cu[cc], v);
            row[cc] = col[band_of(lev, nlev, zz)];
        }
    }
    cairo_surface_mark_dirty(img);
    cairo_save(c->cr);
    cairo_set_source_surface(c->cr, img, f->X0, f->Y0);
    cairo_pattern_set_filter(cairo_get_source(c->cr), CAIRO_FILTER_NEAREST);
    cairo_rectangle(c->cr, f->X0, f->Y0, pw, ph);
    cairo_fill(c->cr);
    cairo_restore(c->cr);
    cairo_surface_destroy(img);
    free(ci);
    free(cu);
    free(col);
    /* any NaN cell at all (also those too small to own a pixel) */
    for (int jj = 0; jj < ny - 1 && !*any_nan; jj++)
        for (int ii = 0; ii < nx - 1; ii++) {
            const double *z0 = z + (size_t)jj * nx + ii, *z1 = z0 + nx;
            if (!isfinite(z0[0]) || !isfinite(z0[1]) || !isfinite(z1[0]) || !isfinite(z1[1])) {
                *any_nan = 1;
                break;
            }
        }
    return VL_OK;
}

/* Contour line segment through one triangle (pixel corners p, values w) at L. */
static void tri_segment(cairo_t *cr, const double px[3], const double py[3], const double w[3], double L)
{
    int above[3], na = 0;
    for (int k = 0; k < 3; k++) na += above[k] = w[k] >= L;
    if (na == 0 || na == 3) return;
    int lone = 0; /* the vertex on its own side */
    for (int k = 0; k < 3; k++)
        if (above[k] == (na == 1)) lone = k;
    double sx[2], sy[2];
    for (int e = 0; e < 2; e++) {
        int o = (lone + 1 + e) % 3;
        double t = (L - w[lone]) / (w[o] - w[lone]);
        sx[e] = px[lone] + t * (px[o] - px[lone]);
        sy[e] = py[lone] + t * (py[o] - py[lone]);
    }
    cairo_move_to(cr, sx[0], sy[0]);
    cairo_line_to(cr, sx[1], sy[1]);
}

/* Contour lines at level L over all cells with finite corners. */
static void contour_lines(cairo_t *cr, const frame_t *f, const double *x, int nx, const double *y,
                          int ny, const double *z, double L)
{
    for (int j = 0; j < ny - 1; j++) {
        double y0 = map_y(f, y[j]), y1 = map_y(f, y[j + 1]);
        for (int i = 0; i < nx - 1; i++) {
            const double *z0 = z + (size_t)j * nx + i, *z1 = z0 + nx;
            double a = z0[0], b = z0[1], cc = z1[0], d = z1[1];
            if (!isfinite(a) || !isfinite(b) || !isfinite(cc) || !isfinite(d)) continue;
            double lo = fmin(fmin(a, b), fmin(cc, d)), hi = fmax(fmax(a, b), fmax(cc, d));
            if (lo >= L || hi < L) continue;
            double x0 = map_x(f, x[i]), x1 = map_x(f, x[i + 1]);
            double xm = 0.5 * (x0 + x1), ym = 0.5 * (y0 + y1), zc = 0.25 * (a + b + cc + d);
            /* corners counter-clockwise in (u, v): 00, 10, 11, 01 */
            double qx[4] = {x0, x1, x1, x0}, qy[4] = {y0, y0, y1, y1}, qz[4] = {a, b, d, cc};
            for (int t = 0; t < 4; t++) {
                int s = (t + 1) % 4;
                double px[3] = {qx[t], qx[s], xm}, py[3] = {qy[t], qy[s], ym}, w[3] = {qz[t], qz[s], zc};
                tri_segment(cr, px, py, w, L);
            }
        }
    }
}

int fig_contour(const char *path, const fig_axes_t *ax, const double *x, int nx, const double *y,
                int ny, const double *z, const double *levels, int nlev, int logz,
                const fig_point_t *pts, int npts, const fig_polyline_t *lines, int nlines,
                const char *zlabel)
{
    const char *fn = "fig_contour";
    CHECK(check_path(path, fn));
    CHECK(check_axes(path, fn, ax));
    if (!x || !y || !z) return VL_FAIL(VL_EINPUT, "%s: %s: x, y or z is NULL", path, fn);
    if (nx < 2 || ny < 2) return VL_FAIL(VL_EINPUT, "%s: %s: grid %d x %d, need at least 2 x 2", path, fn, nx, ny);
    for (int i = 0; i < nx; i++)
        if (!isfinite(x[i]) || (i > 0 && !(x[i] > x[i - 1])))
            return VL_FAIL(VL_EINPUT, "%s: %s: x must be finite and strictly ascending (x[%d] = %g)",
                           path, fn, i, x[i]);
    for (int j = 0; j < ny; j++)
        if (!isfinite(y[j]) || (j > 0 && !(y[j] > y[j - 1])))
            return VL_FAIL(VL_EINPUT, "%s: %s: y must be finite and strictly ascending (y[%d] = %g)",
                           path, fn, j, y[j]);
    if (!levels && nlev <= 0) nlev = 12;
    if (nlev < 2 || nlev > 1024)
        return VL_FAIL(VL_EINPUT, "%s: %s: %d levels, need 2 to 1024", path, fn, nlev);
    if (levels)
        for (int k = 0; k < nlev; k++)
            if (!isfinite(levels[k]) || (k > 0 && !(levels[k] > levels[k - 1])))
                return VL_FAIL(VL_EINPUT,
                               "%s: %s: levels must be finite and strictly ascending (levels[%d] = %g)",
                               path, fn, k, levels[k]);
    if (npts < 0 || (npts > 0 && !pts))
        return VL_FAIL(VL_EINPUT, "%s: %s: bad points (npts %d)", path, fn, npts);
    if (nlines < 0 || (nlines > 0 && !lines))
        return VL_FAIL(VL_EINPUT, "%s: %s: bad polylines (nlines %d)", path, fn, nlines);
    for (int l = 0; l < nlines; l++)
        if (lines[l].n < 0 || (lines[l].n > 0 && (!lines[l].x || !lines[l].y)))
            return VL_FAIL(VL_EINPUT, "%s: %s: polyline %d: bad points", path, fn, l);
    int w = ax && ax->width ? ax->width : FIG_W, h = ax && ax->height ? ax->height : FIG_H;
    CHECK(check_size(path, fn, w, h));

    double *lev = vl_alloc(sizeof(double) * (size_t)nlev, "contour levels");
    tlabel_t *lab = vl_alloc(sizeof(tlabel_t) * (size_t)nlev, "contour level labels");
    if (!lev || !lab) {
        free(lev);
        free(lab);
        return VL_EIO;
    }
    if (levels) {
        memcpy(lev, levels, sizeof(double) * (size_t)nlev);
    } else {
        range_t r = {0, 0, 0};
        for (size_t k = 0; k < (size_t)nx * (size_t)ny; k++) range_add(&r, z[k]);
        double lo = r.any ? r.lo : 0.0, hi = r.any ? r.hi : 1.0;
        if (!(hi > lo)) {
            double d = lo == 0 ? 0.5 : 0.05 * fabs(lo);
            lo -= d;
            hi += d;
        }
        for (int k = 0; k < nlev; k++) {
            double t = (double)k / (nlev - 1);
            lev[k] = logz ? lo + (hi - lo) * pow(10.0, -3.0 * (1.0 - t)) : lo + t * (hi - lo);
        }
        lev[0] = lo;
        lev[nlev - 1] = hi;
    }
    format_levels(lev, nlev, lab);

    canvas_t c;
    int st = canvas_open(&c, path, w, h, fmin(w / (double)FIG_W, h / (double)FIG_H));
    if (st) {
        free(lev);
        free(lab);
        CHECK(st);
    }
    cairo_t *cr = c.cr;
    double lab_w = 0;
    for (int k = 0; k < nlev; k++) lab_w = fmax(lab_w, label_width(cr, &lab[k], c.fs));
    lab_w = fmax(lab_w, text_width(cr, "n/a", c.fs, 0));
    double cb_gap = 2.0 * c.fs, cb_w = 1.4 * c.fs;
    double right_extra = cb_gap + cb_w + c.tick + 0.4 * c.fs + lab_w + (nonempty(zlabel) ? 1.7 * c.fl : 0);

    frame_t f;
    memset(&f, 0, sizeof f);
    f.xmin = x[0];
    f.xmax = x[nx - 1];
    f.ymin = y[0];
    f.ymax = y[ny - 1];
    panel_t pn = {ax ? ax->title : NULL, ax ? ax->xlabel : NULL, ax ? ax->ylabel : NULL,
                  ax && nonempty(ax->title), ax && nonempty(ax->xlabel), right_extra, 0};
    panel_layout(&c, &f, &pn, 0, 0, w, h);

    int any_nan = 0;
    st = contour_fill(&c, &f, path, x, nx, y, ny, z, lev, nlev, &any_nan);
    if (st) {
        free(lev);
        free(lab);
        canvas_discard(&c);
        CHECK(st);
    }
    /* contour lines (automatic levels: not at the extremes themselves) */
    clip_frame(cr, &f);
    cairo_set_source_rgba(cr, 0, 0, 0, 0.55);
    cairo_set_line_width(cr, fmax(1.0, 0.55 * c.lw));
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    for (int k = levels ? 0 : 1; k < (levels ? nlev : nlev - 1); k++) {
        contour_lines(cr, &f, x, nx, y, ny, z, lev[k]);
        cairo_stroke(cr);
    }
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
    /* overlays: polylines with a white casing, then points */
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    for (int l = 0; l < nlines; l++) {
        double rgb[3];
        fig_color_cycle(l + 1, rgb);
        cairo_set_source_rgb(cr, 1, 1, 1);
        cairo_set_line_width(cr, 2.3 * c.lw);
        path_polyline(cr, &f, lines[l].x, lines[l].y, lines[l].n);
        cairo_stroke(cr);
        set_rgb(cr, rgb, 1.0);
        cairo_set_line_width(cr, 1.3 * c.lw);
        path_polyline(cr, &f, lines[l].x, lines[l].y, lines[l].n);
        cairo_stroke(cr);
    }
    int nlab = 0;
    for (int p = 0; p < npts; p++) {
        double px, py;
        int labelled = nonempty(pts[p].label);
        double rr = labelled ? 0.45 * c.fs : 0.22 * c.fs;
        if (labelled) nlab++;
        if (!point_px(&f, pts[p].x, pts[p].y, 2 * rr, &px, &py)) continue;
        double rgb[3] = {1, 1, 1};
        if (labelled) fig_color_cycle(nlab - 1, rgb);
        path_marker(cr, labelled ? nlab - 1 : 0, px, py, rr);
        set_rgb(cr, rgb, 1.0);
        cairo_fill_preserve(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_set_line_width(cr, 1.0);
        cairo_stroke(cr);
    }
    cairo_restore(cr); /* clip */

    draw_frame(&c, &f, &pn);

    /* colour bar: equal-height bands, labels at the levels */
    int nb = nlev - 1;
    double bx = f.X1 + cb_gap, by0 = f.Y0, bh = f.Y1 - f.Y0;
    for (int k = 0; k < nb; k++) {
        double rgb[3];
        fig_colormap(nb == 1 ? 0.5 : (double)k / (nb - 1), rgb);
        set_rgb(cr, rgb, 1.0);
        double ya = by0 + bh - (double)(k + 1) * bh / nb, yb = by0 + bh - (double)k * bh / nb;
        cairo_rectangle(cr, bx, floor(ya), cb_w, ceil(yb) - floor(ya));
        cairo_fill(cr);
    }
    cairo_set_source_rgb(cr, 0.13, 0.13, 0.13);
    cairo_set_line_width(cr, 1.0);
    cairo_rectangle(cr, bx - 0.5, by0 - 0.5, cb_w + 1, bh + 1);
    cairo_stroke(cr);
    int stride = (int)ceil(1.5 * c.fs / (bh / nb));
    if (stride < 1) stride = 1;
    for (int k = 0; k < nlev; k += stride) {
        double yk = floor(by0 + bh - (double)k * bh / nb) + 0.5;
        cairo_move_to(cr, bx + cb_w + 0.5, yk);
        cairo_line_to(cr, bx + cb_w + 0.5 + c.tick, yk);
        cairo_stroke(cr);
        label_at(cr, bx + cb_w + c.tick + 0.4 * c.fs, yk, &lab[k], c.fs, 0.0, 0.5);
    }
    if (any_nan) {
        double yg = f.Y1 + c.tick + 0.45 * c.fs;
        cairo_rectangle(cr, bx, yg, cb_w, 0.8 * c.fs);
        cairo_set_source_rgb(cr, FIG_NAN_GREY, FIG_NAN_GREY, FIG_NAN_GREY);
        cairo_fill_preserve(cr);
        cairo_set_source_rgb(cr, 0.13, 0.13, 0.13);
        cairo_stroke(cr);
        text_at(cr, bx + cb_w + c.tick + 0.4 * c.fs, yg + 0.4 * c.fs, "n/a", c.fs, 0, 0.0, 0.5);
    }
    if (nonempty(zlabel))
        text_vertical(cr, bx + cb_w + c.tick + 0.4 * c.fs + lab_w + 0.95 * c.fl, by0 + 0.5 * bh, zlabel,
                      c.fl);

    /* legend of labelled overlays */
    legend_t *L = &(legend_t){0};
    for (int l = 0; l < nlines; l++) {
        double rgb[3];
        fig_color_cycle(l + 1, rgb);
        legend_add(L, lines[l].label, LEG_CASED, rgb, 1.0, 0, 0);
    }
    nlab = 0;
    for (int p = 0; p < npts; p++)
        if (nonempty(pts[p].label)) {
            double rgb[3];
            fig_color_cycle(nlab, rgb);
            legend_add(L, pts[p].label, LEG_MARKER, rgb, 1.0, nlab, 1);
            nlab++;
        }
    if (L->n) {
        legend_place(&c, L, &f);
        for (int l = 0; l < nlines; l++) legend_occupy(L, &f, lines[l].x, lines[l].y, lines[l].n, 1);
        for (int p = 0; p < npts; p++) legend_occupy(L, &f, &pts[p].x, &pts[p].y, 1, 0);
        for (int j = 0; j < ny - 1; j++) /* grey cells should stay visible too */
            for (int i = 0; i < nx - 1; i++) {
                const double *z0 = z + (size_t)j * nx + i, *z1 = z0 + nx;
                if (isfinite(z0[0]) && isfinite(z0[1]) && isfinite(z1[0]) && isfinite(z1[1])) continue;
                for (int q = 0; q < 9; q++) {
                    double xq = x[i] + 0.5 * (q % 3) * (x[i + 1] - x[i]);
                    double yq = y[j] + 0.5 * (q / 3) * (y[j + 1] - y[j]);
                    legend_occupy(L, &f, &xq, &yq, 1, 0);
                }
            }
        legend_draw(&c, L);
    }
    free(lev);
    free(lab);
    CHECK(canvas_save(&c, path));
    return VL_OK;
}

/* ------------------------------------------------------------- reliability */

int fig_reliability(const char *path, const fig_reliability_t *m, int nm, const char *title)
{
    const char *fn = "fig_reliability";
    CHECK(check_path(path, fn));
    if (nm < 1 || nm > FIG_RELIABILITY_MAX || !m)
        return VL_FAIL(VL_EINPUT, "%s: %s: %d methods, need 1 to %d", path, fn, nm, FIG_RELIABILITY_MAX);
    for (int k = 0; k < nm; k++) {
        if (m[k].nbins < 1 || m[k].nbins > 100000)
            return VL_FAIL(VL_EINPUT, "%s: %s: method %d: %d bins", path, fn, k, m[k].nbins);
        if (!m[k].acc || !m[k].conf)
            return VL_FAIL(VL_EINPUT, "%s: %s: method %d: acc or conf is NULL", path, fn, k);
        if (!m[k].bin_lo != !m[k].bin_hi)
            return VL_FAIL(VL_EINPUT, "%s: %s: method %d: give both bin_lo and bin_hi or neither",
                           path, fn, k);
    }
    int ncol = nm < 3 ? nm : 3, nrow = (nm + 2) / 3;
    double top_h = nonempty(title) ? 56.0 : 0.0;
    int w = 470 * ncol, h = (int)(480 * nrow + top_h);
    canvas_t c;
    CHECK(canvas_open(&c, path, w, h, 1.0));
    cairo_t *cr = c.cr;
    if (nonempty(title)) {
        cairo_set_source_rgb(cr, 0, 0, 0);
        text_at(cr, 0.5 * w, c.pad + 0.2 * c.ft, title, 1.15 * c.ft, 1, 0.5, 0.0);
    }
    double blue[3], verm[3];
    fig_color_cycle(0, blue);
    fig_color_cycle(1, verm);
    for (int k = 0; k < nm; k++) {
        const fig_reliability_t *r = &m[k];
        char ptitle[160];
        snprintf(ptitle, sizeof ptitle, "%s%sECE %.2f%%", r->name ? r->name : "",
                 nonempty(r->name) ? "   " : "", 100.0 * r->ece);
        frame_t f;
        memset(&f, 0, sizeof f);
        f.xmin = 0;
        f.xmax = 1;
        f.ymin = 0;
        f.ymax = 1;
        panel_t pn = {ptitle, "confidence", "accuracy", 1, 1, 0.0, 1};
        panel_layout(&c, &f, &pn, (k % 3) * 470.0, top_h + (k / 3) * 480.0, 470.0, 480.0);
        draw_grid(&c, &f);
        clip_frame(cr, &f);
        cairo_set_line_width(cr, 1.0);
        for (int pass = 0; pass < 2; pass++)
            for (int b = 0; b < r->nbins; b++) {
                double lo = r->bin_lo ? r->bin_lo[b] : (double)b / r->nbins;
                double hi = r->bin_hi ? r->bin_hi[b] : (double)(b + 1) / r->nbins;
                double acc = r->acc[b], conf = r->conf[b];
                if ((r->count && r->count[b] <= 0) || !isfinite(acc) || !isfinite(conf) ||
                    !isfinite(lo) || !isfinite(hi))
                    continue;
                double xa = map_x(&f, lo), xb = map_x(&f, hi);
                if (pass == 0) { /* accuracy bar */
                    double ya = map_y(&f, clampd(acc, 0, 1.5));
                    cairo_rectangle(cr, xa, ya, xb - xa, f.Y1 - ya);
                    set_rgb(cr, blue, 0.85);
                    cairo_fill_preserve(cr);
                    cairo_set_source_rgb(cr, 0.0, 0.25, 0.45);
                    cairo_stroke(cr);
                } else { /* gap between accuracy and confidence, hatched */
                    double ya = map_y(&f, clampd(acc, 0, 1.5)), yc = map_y(&f, clampd(conf, 0, 1.5));
                    hatch_rect(cr, xa, fmin(ya, yc), xb - xa, fabs(yc - ya), verm, 5.0);
                }
            }
        double d[2] = {6, 4};
        cairo_set_dash(cr, d, 2, 0);
        cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
        cairo_set_line_width(cr, 1.5);
        cairo_move_to(cr, f.X0, f.Y1);
        cairo_line_to(cr, f.X1, f.Y0);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        cairo_restore(cr); /* clip */
        draw_frame(&c, &f, &pn);
        legend_t *L = &(legend_t){0};
        double grey[3] = {0.25, 0.25, 0.25};
        legend_add(L, "accuracy", LEG_PATCH, blue, 0.85, 0, 0);
        legend_add(L, "gap to confidence", LEG_HATCH, verm, 1.0, 0, 0);
        legend_add(L, "perfect calibration", LEG_DASHED, grey, 1.0, 0, 0);
        legend_place(&c, L, &f);
        L->cnt[0] = L->cnt[2] = L->cnt[3] = 1; /* top left: above the bars, left of the diagonal */
        legend_draw(&c, L);
    }
    CHECK(canvas_save(&c, path));
    return VL_OK;
}

/* -------------------------------------------------------------------- band */

/* Fills the band mean ± k·std over runs of finite grid points. */
static void band_fill(cairo_t *cr, const frame_t *f, const double *xg, const double *mean,
                      const double *sd, int ng, double k)
{
    double lim = 1e6;
    int i = 0;
    while (i < ng) {
        while (i < ng && !(isfinite(xg[i]) && isfinite(mean[i]) && isfinite(sd[i]))) i++;
        int a = i;
        while (i < ng && isfinite(xg[i]) && isfinite(mean[i]) && isfinite(sd[i])) i++;
        int b = i; /* run [a, b) */
        if (b - a < 2) continue;
        for (int q = a; q < b; q++) {
            double py = map_y(f, mean[q] + k * sd[q]);
            if (!isfinite(py)) py = f->Y1 + 10;
            cairo_line_to(cr, clampd(map_x(f, xg[q]), -lim, lim), clampd(py, -lim, lim));
        }
        for (int q = b - 1; q >= a; q--) {
            double py = map_y(f, mean[q] - k * sd[q]);
            if (!isfinite(py)) py = f->Y1 + 10;
            cairo_line_to(cr, clampd(map_x(f, xg[q]), -lim, lim), clampd(py, -lim, lim));
        }
        cairo_close_path(cr);
    }
}

int fig_band(const char *path, const fig_axes_t *ax, const double *xg, const double *mean,
             const double *std, int ng, const double *xd, const double *yd, int nd)
{
    const char *fn = "fig_band";
    CHECK(check_path(path, fn));
    CHECK(check_axes(path, fn, ax));
    if (ng < 2 || !xg || !mean || !std)
        return VL_FAIL(VL_EINPUT, "%s: %s: need a grid of at least 2 points with mean and std (ng %d)",
                       path, fn, ng);
    if (nd < 0 || (nd > 0 && (!xd || !yd)))
        return VL_FAIL(VL_EINPUT, "%s: %s: bad data points (nd %d)", path, fn, nd);
    for (int i = 0; i < ng; i++)
        if (std[i] < 0) return VL_FAIL(VL_EINPUT, "%s: %s: std[%d] = %g < 0", path, fn, i, std[i]);
    int w = ax && ax->width ? ax->width : FIG_W, h = ax && ax->height ? ax->height : FIG_H;
    CHECK(check_size(path, fn, w, h));

    frame_t f;
    memset(&f, 0, sizeof f);
    range_t rx = {0, 0, 0}, ry = {0, 0, 0};
    int logy = ax && ax->logy;
    for (int i = 0; i < ng; i++) {
        if (!isfinite(xg[i]) || !isfinite(mean[i]) || !isfinite(std[i])) continue;
        range_add(&rx, xg[i]);
        if (!in_xrange(ax, xg[i])) continue;
        double lo = mean[i] - 2 * std[i], hi = mean[i] + 2 * std[i];
        if (!logy || lo > 0) range_add(&ry, lo);
        if (!logy || hi > 0) range_add(&ry, hi);
    }
    for (int i = 0; i < nd; i++) {
        if (!isfinite(xd[i]) || !isfinite(yd[i]) || (logy && !(yd[i] > 0))) continue;
        range_add(&rx, xd[i]);
        if (in_xrange(ax, xd[i])) range_add(&ry, yd[i]);
    }
    limits_x(&f, ax, rx);
    limits_y(&f, ax, ry);
    canvas_t c;
    CHECK(canvas_open(&c, path, w, h, fmin(w / (double)FIG_W, h / (double)FIG_H)));
    cairo_t *cr = c.cr;
    panel_t pn = {ax ? ax->title : NULL, ax ? ax->xlabel : NULL, ax ? ax->ylabel : NULL,
                  ax && nonempty(ax->title), ax && nonempty(ax->xlabel), 0.0, 0};
    panel_layout(&c, &f, &pn, 0, 0, w, h);
    draw_grid(&c, &f);
    double blue[3], black[3] = {0, 0, 0};
    fig_color_cycle(0, blue);
    clip_frame(cr, &f);
    band_fill(cr, &f, xg, mean, std, ng, 2.0);
    set_rgb(cr, blue, 0.15);
    cairo_fill(cr);
    band_fill(cr, &f, xg, mean, std, ng, 1.0);
    set_rgb(cr, blue, 0.30);
    cairo_fill(cr);
    double r = fmax(2.0, 0.22 * c.fs);
    for (int i = 0; i < nd; i++) {
        double px, py;
        if (point_px(&f, xd[i], yd[i], 2 * r, &px, &py)) path_marker(cr, 0, px, py, r);
    }
    cairo_set_source_rgba(cr, 0, 0, 0, 0.75);
    cairo_fill(cr);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    set_rgb(cr, blue, 1.0);
    cairo_set_line_width(cr, c.lw);
    double *sdx = NULL; /* the mean line breaks where std is non-finite, like the bands */
    sdx = vl_alloc(sizeof(double) * (size_t)ng, "band mean line");
    if (!sdx) {
        cairo_restore(cr);
        canvas_discard(&c);
        return VL_EIO;
    }
    for (int i = 0; i < ng; i++) sdx[i] = isfinite(std[i]) ? mean[i] : NAN;
    path_polyline(cr, &f, xg, sdx, ng);
    cairo_stroke(cr);
    cairo_restore(cr); /* clip */
    draw_frame(&c, &f, &pn);

    legend_t *L = &(legend_t){0};
    legend_add(L, "data", LEG_MARKER, black, 0.75, 0, 0);
    legend_add(L, "predictive mean", LEG_LINE, blue, 1.0, 0, 0);
    legend_add(L, "\xc2\xb1" "1 std", LEG_PATCH, blue, 1.0 - 0.85 * 0.70, 0, 0);
    legend_add(L, "\xc2\xb1" "2 std", LEG_PATCH, blue, 0.15, 0, 0);
    legend_place(&c, L, &f);
    legend_occupy(L, &f, xg, sdx, ng, 1);
    for (int i = 0; i < ng; i++) /* the bands count as occupied too */
        for (int q = -4; q <= 4; q++) {
            double yq = isfinite(std[i]) ? mean[i] + 0.5 * q * std[i] : NAN;
            legend_occupy(L, &f, &xg[i], &yq, 1, 0);
        }
    legend_occupy(L, &f, xd, yd, nd, 0);
    legend_draw(&c, L);
    free(sdx);
    CHECK(canvas_save(&c, path));
    return VL_OK;
}
