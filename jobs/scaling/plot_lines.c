/* plot_lines.c — line-plot panels from a small text description, drawn with valley's
 * own figure code (include/valley/figure.h): the scaling studies' PNGs, no matplotlib.
 *
 *   plot_lines SPEC.txt OUT.png
 *
 * SPEC.txt, one directive a line ('#' lines are comments):
 *   title SUPTITLE
 *   panel TITLE|XLABEL|YLABEL|LOGY          (LOGY 0 or 1; starts a panel, up to 8)
 *   series LABEL|STYLE|X1 X2 ...|Y1 Y2 ...  (STYLE: line, dashed, markers, linemarkers;
 *                                            belongs to the last panel; nan = gap)
 * Built by jobs/scaling/plot.sh against build/opt/libvalley.a. Exit status 0, 2 on a
 * bad spec, 4 when the PNG cannot be written.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valley/error.h"
#include "valley/figure.h"

#define MAXP 8
#define MAXS 16
#define MAXN 64

typedef struct {
    char title[256], xl[128], yl[128];
    fig_axes_t ax;
    fig_series_t s[MAXS];
    double x[MAXS][MAXN], y[MAXS][MAXN];
    char label[MAXS][128];
    int ns;
} panel_t;

static panel_t P[MAXP];

/* Splits s at '|' into at most n fields (in place). Returns the count. */
static int split(char *s, char **f, int n)
{
    int k = 0;
    f[k++] = s;
    for (char *p = s; *p && k < n; p++)
        if (*p == '|') { *p = 0; f[k++] = p + 1; }
    return k;
}

static int numbers(const char *s, double *v, int max)
{
    int n = 0;
    char *end;
    while (n < max) {
        double d = strtod(s, &end);
        if (end == s) break;
        v[n++] = d;
        s = end;
    }
    return n;
}

int main(int argc, char **argv)
{
    if (argc != 3) { fprintf(stderr, "usage: plot_lines SPEC.txt OUT.png\n"); return 2; }
    FILE *f = fopen(argv[1], "r");
    if (!f) { perror(argv[1]); return 2; }
    char line[8192], suptitle[256] = "";
    int np = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *fld[4];
        if (!strncmp(line, "title ", 6)) {
            snprintf(suptitle, sizeof suptitle, "%.250s", line + 6);
        } else if (!strncmp(line, "panel ", 6)) {
            if (np == MAXP || split(line + 6, fld, 4) != 4) { fprintf(stderr, "bad panel line\n"); return 2; }
            panel_t *p = &P[np++];
            snprintf(p->title, sizeof p->title, "%.250s", fld[0]);
            snprintf(p->xl, sizeof p->xl, "%.120s", fld[1]);
            snprintf(p->yl, sizeof p->yl, "%.120s", fld[2]);
            p->ax = (fig_axes_t){.title = p->title, .xlabel = p->xl, .ylabel = p->yl, .logy = atoi(fld[3])};
        } else if (!strncmp(line, "series ", 7)) {
            if (!np || P[np - 1].ns == MAXS || split(line + 7, fld, 4) != 4) { fprintf(stderr, "bad series line\n"); return 2; }
            panel_t *p = &P[np - 1];
            int i = p->ns;
            int nx = numbers(fld[2], p->x[i], MAXN), ny = numbers(fld[3], p->y[i], MAXN);
            if (nx != ny || nx == 0) { fprintf(stderr, "series %s: %d x values, %d y values\n", fld[0], nx, ny); return 2; }
            snprintf(p->label[i], sizeof p->label[i], "%.120s", fld[0]);
            int style = !strcmp(fld[1], "dashed") ? FIG_DASHED : !strcmp(fld[1], "markers") ? FIG_MARKERS
                      : !strcmp(fld[1], "linemarkers") ? FIG_LINE_MARKERS : FIG_LINE;
            p->s[i] = (fig_series_t){.x = p->x[i], .y = p->y[i], .n = nx, .label = p->label[i], .style = style};
            p->ns++;
        }
    }
    fclose(f);
    if (!np) { fprintf(stderr, "%s: no panel\n", argv[1]); return 2; }
    fig_axes_t ax[MAXP];
    const fig_series_t *ser[MAXP];
    int ns[MAXP];
    for (int i = 0; i < np; i++) { ax[i] = P[i].ax; ser[i] = P[i].s; ns[i] = P[i].ns; }
    int st = np == 1 ? fig_lines(argv[2], &ax[0], ser[0], ns[0])
                     : fig_lines_panels(argv[2], np, ax, ser, ns, *suptitle ? suptitle : NULL);
    if (st) { fprintf(stderr, "plot_lines: %s\n", vl_error_message()); return st; }
    return 0;
}
