/* test_deck.c — the input deck: values of every type, comments, --set order,
 * deck_text round trip, deck_set, help filtering, and every error class (exact
 * messages naming file:line:key, status VL_EINPUT, collective), plus hostile
 * files (NUL byte, 10 kB line, random bytes, mutated decks) that must give an
 * error and never a crash. Run from the repository root (tests/run.sh does). */
#include "valley/deck.h"
#include "valley/error.h"
#include "valley/test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define DECKS "tests/data/decks/"

static char tmpdir[512];

static void tmp_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/test_deck_%ld_%s", tmpdir, (long)getpid(), name);
}

static void write_file(const char *path, const char *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    T_CHECK(f != NULL, "cannot write %s", path);
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

/* Loads (path, sets) expecting failure with a message containing every
 * non-NULL want string. */
static void expect_fail(const char *path, int nset, char *const *sets, const char *want1, const char *want2)
{
    vl_error_clear();
    vl_deck_t *d = (vl_deck_t *)1;
    int st = deck_load(path, nset, sets, &d);
    const char *msg = vl_error_message();
    const char *what = path ? path : (nset ? sets[nset - 1] : "(none)");
    T_CHECK(st == VL_EINPUT, "%s: status %d, want %d (message: %s)", what, st, VL_EINPUT, msg);
    T_CHECK(vl_error_status() == VL_EINPUT, "%s: recorded status %d", what, vl_error_status());
    T_CHECK(vl_error_collective() == 1, "%s: error not collective", what);
    T_CHECK(d == NULL, "%s: *out not NULL on failure", what);
    if (want1) T_CHECK(strstr(msg, want1) != NULL, "%s: message '%s' lacks '%s'", what, msg, want1);
    if (want2) T_CHECK(strstr(msg, want2) != NULL, "%s: message '%s' lacks '%s'", what, msg, want2);
    if (st == VL_OK) deck_free(d);
    vl_error_clear();
}

static vl_deck_t *load_ok(const char *path, int nset, char *const *sets)
{
    vl_error_clear();
    vl_deck_t *d = NULL;
    int st = deck_load(path, nset, sets, &d);
    T_CHECK(st == VL_OK && d != NULL, "%s: load failed (%d): %s", path ? path : "(no file)", st,
            vl_error_message());
    return st == VL_OK ? d : NULL;
}

static void test_defaults(void)
{
    vl_deck_t *d = load_ok(NULL, 0, NULL);
    if (!d) return;
    /* The contract in INTERFACE.md. */
    T_CHECK(deck_int(d, "run.seed") == 1, "seed %lld", deck_int(d, "run.seed"));
    T_CHECK(strcmp(deck_str(d, "run.name"), "") == 0, "name '%s'", deck_str(d, "run.name"));
    T_CHECK(strcmp(deck_str(d, "data.dataset"), "fashion-mnist") == 0, "dataset %s", deck_str(d, "data.dataset"));
    T_CHECK(deck_int(d, "data.train_subset") == 0 && deck_int(d, "data.test_subset") == 0, "subsets");
    T_CHECK(strcmp(deck_str(d, "data.augment"), "none") == 0, "augment");
    T_CHECK(deck_int(d, "data.validation") == 0, "validation");
    T_CHECK(!strcmp(deck_str(d, "data.classes"), "all") && deck_classlist(d, "data.classes", NULL, 0) == 0, "classes");
    T_CHECK(strcmp(deck_str(d, "model.kind"), "convnet") == 0, "kind %s", deck_str(d, "model.kind"));
    int w[4] = {0};
    T_CHECK(deck_intlist(d, "model.widths", w, 4) == 2 && w[0] == 512 && w[1] == 512, "widths %d %d", w[0], w[1]);
    T_CHECK(deck_int(d, "model.depth") == 0, "depth (0: the family's default)");
    T_CHECK(deck_double(d, "model.width_factor") == 1.0 && deck_int(d, "model.widen") == 10 &&
            deck_bool(d, "model.shortcuts") == 1 && deck_bool(d, "model.bn") == 1, "family keys");
    T_CHECK(strcmp(deck_str(d, "model.noise"), "homoscedastic") == 0, "noise");
    T_CHECK(deck_double(d, "model.noise_std") == 0.0, "noise_std");
    T_CHECK(deck_int(d, "train.epochs") == 20, "epochs");
    T_CHECK(deck_int(d, "train.batch_size") == 128, "batch_size");
    T_CHECK(deck_double(d, "train.lr") == 0.05, "lr %g", deck_double(d, "train.lr"));
    T_CHECK(deck_double(d, "train.momentum") == 0.9, "momentum");
    T_CHECK(deck_double(d, "train.wd") == 5e-4, "wd");
    T_CHECK(deck_bool(d, "train.nesterov") == 0, "nesterov");
    T_CHECK(strcmp(deck_str(d, "train.schedule"), "swa") == 0, "schedule");
    T_CHECK(deck_int(d, "train.checkpoint_every") == 0, "checkpoint_every");
    T_CHECK(strcmp(deck_str(d, "train.resume"), "") == 0, "resume");
    T_CHECK(deck_bool(d, "train.allow_nonfinite") == 0, "allow_nonfinite");
    T_CHECK(deck_int(d, "train.log_every") == 0, "log_every");
    T_CHECK(!strcmp(deck_str(d, "data.source"), ""), "data.source");
    T_CHECK(deck_int(d, "debug.fail_rank") == -1, "debug.fail_rank");
    T_CHECK(deck_double(d, "eval.bn_subset") == 1.0, "bn_subset");
    T_CHECK(deck_int(d, "parallel.group_size") == 0, "group_size");
    T_CHECK(deck_int(d, "parallel.threads") == 1, "threads");
    /* Nothing set, nothing marked as differing from its default. */
    int nkeys = 0;
    for (int i = 0; deck_key(i); i++, nkeys++) {
        T_CHECK(!deck_is_set(d, deck_key(i)), "%s set in a default deck", deck_key(i));
        T_CHECK(strchr(deck_key(i), '.') != NULL, "%s has no section", deck_key(i));
        for (int j = 0; j < i; j++) T_CHECK(strcmp(deck_key(i), deck_key(j)) != 0, "%s twice", deck_key(i));
    }
    T_CHECK(nkeys == 132, "%d keys in the table, want 132", nkeys);
    T_CHECK(strstr(deck_text(d), "  # default:") == NULL, "default deck text marks a difference:\n%s",
            deck_text(d));
    T_CHECK(strstr(deck_text(d), "[train]\nepochs = 20\n") != NULL, "deck text:\n%s", deck_text(d));
    deck_free(d);
}

static void check_good(const vl_deck_t *d, long long epochs, const char *name)
{
    T_CHECK(deck_int(d, "run.seed") == 42, "seed %lld", deck_int(d, "run.seed"));
    T_CHECK(strcmp(deck_str(d, "run.name"), name) == 0, "name '%s', want '%s'", deck_str(d, "run.name"), name);
    T_CHECK(strcmp(deck_str(d, "data.dataset"), "toy1d") == 0, "dataset %s", deck_str(d, "data.dataset"));
    T_CHECK(strcmp(deck_str(d, "data.path"), "input/data/toy1d.nc") == 0, "path '%s'", deck_str(d, "data.path"));
    T_CHECK(deck_int(d, "data.train_subset") == 1000, "train_subset");
    T_CHECK(strcmp(deck_str(d, "data.augment"), "crop-flip") == 0, "augment");
    T_CHECK(strcmp(deck_str(d, "model.kind"), "mlp") == 0, "kind");
    int w[8] = {0};
    int n = deck_intlist(d, "model.widths", w, 8);
    T_CHECK(n == 3 && w[0] == 64 && w[1] == 32 && w[2] == 16, "widths n=%d %d %d %d", n, w[0], w[1], w[2]);
    T_CHECK(deck_intlist(d, "model.widths", w, 1) == 3, "count with small max");
    T_CHECK(strcmp(deck_str(d, "model.widths"), "64,32,16") == 0, "widths text %s", deck_str(d, "model.widths"));
    T_CHECK(deck_int(d, "model.depth") == 20, "depth");
    T_CHECK(deck_double(d, "model.noise_std") == 0.25, "noise_std");
    T_CHECK(deck_int(d, "train.epochs") == epochs, "epochs %lld want %lld", deck_int(d, "train.epochs"), epochs);
    T_CHECK(deck_double(d, "train.lr") == 1e-2, "lr %.17g", deck_double(d, "train.lr"));
    T_CHECK(deck_double(d, "train.momentum") == 0.0, "momentum");
    T_CHECK(deck_bool(d, "train.nesterov") == 1, "nesterov");
    T_CHECK(strcmp(deck_str(d, "train.nesterov"), "true") == 0, "nesterov text");
    T_CHECK(deck_bool(d, "train.allow_nonfinite") == 0, "allow_nonfinite");
    T_CHECK(strcmp(deck_str(d, "train.schedule"), "cosine") == 0, "schedule");
    T_CHECK(deck_double(d, "eval.bn_subset") == 0.5, "bn_subset");
    T_CHECK(deck_int(d, "train.batch_size") == 128, "batch_size keeps its default");
}

static void test_good(void)
{
    vl_deck_t *d = load_ok(DECKS "good.ini", 0, NULL);
    if (d) {
        check_good(d, 5, "demo # one");
        T_CHECK(deck_int(d, "data.test_subset") == 0, "test_subset keeps its default");
        T_CHECK(deck_is_set(d, "train.epochs") && deck_is_set(d, "model.widths"), "is_set of given keys");
        T_CHECK(!deck_is_set(d, "train.batch_size") && !deck_is_set(d, "train.wd"), "is_set of defaults");
        T_CHECK(strstr(deck_text(d), "\nepochs = 5  # default: 20\n") != NULL, "text:\n%s", deck_text(d));
        T_CHECK(strstr(deck_text(d), "\nbatch_size = 128\n") != NULL, "text:\n%s", deck_text(d));
        deck_free(d);
    }
    d = load_ok(DECKS "crlf.ini", 0, NULL);
    if (d) {
        T_CHECK(deck_int(d, "train.epochs") == 7 && deck_double(d, "train.lr") == 0.5, "CRLF deck");
        deck_free(d);
    }
}

/* --set after the file, in order; then deck_text -> file -> load gives the same deck. */
/* deck_where: a file's key names its file:line, a --set its argument, an adopted value its
 * input file, a default nothing. */
static void test_where(void)
{
    char path[700];
    tmp_path(path, sizeof path, "where.ini");
    const char text[] = "[model]\nkind = resnet\n\n# depth below\ndepth = 21\n[train]\nepochs = 3\n";
    write_file(path, text, sizeof text - 1);
    char *sets[] = {"train.epochs=4"};
    vl_deck_t *d = load_ok(path, 1, sets);
    if (!d) return;
    char want[800];
    snprintf(want, sizeof want, "%s:5", path);
    const char *w = deck_where(d, "model.depth");
    T_CHECK(w && !strcmp(w, want), "model.depth given at '%s', want '%s'", w ? w : "(null)", want);
    w = deck_where(d, "train.epochs");
    T_CHECK(w && !strcmp(w, "--set train.epochs=4"), "train.epochs given at '%s'", w ? w : "(null)");
    T_CHECK(deck_where(d, "train.lr") == NULL, "a default has a place: '%s'", deck_where(d, "train.lr"));
    T_CHECK(deck_where(d, "no.such") == NULL, "an unknown key has a place");
    T_CHECK(deck_adopt(d, "model.width_factor", "0.5", "runs/a/model.nc", NULL) == VL_OK, "adopt");
    w = deck_where(d, "model.width_factor");
    T_CHECK(w && !strcmp(w, "runs/a/model.nc"), "adopted value given at '%s'", w ? w : "(null)");
    deck_free(d);
}

static void test_set_and_roundtrip(void)
{
    char *sets[] = {"train.epochs=9", "run.name=  odd # name; with \"quotes\" and \\ backslash  ",
                    "train.epochs = 11", "data.test_subset=77", "parallel.threads=4", "train.resume=ckpt ;1.nc"};
    const char *name = "odd # name; with \"quotes\" and \\ backslash";
    vl_deck_t *d = load_ok(DECKS "good.ini", 6, sets);
    if (!d) return;
    check_good(d, 11, name);
    T_CHECK(deck_int(d, "data.test_subset") == 77, "test_subset from --set");
    T_CHECK(deck_is_set(d, "parallel.threads") && deck_int(d, "parallel.threads") == 4, "threads from --set");
    T_CHECK(strcmp(deck_str(d, "train.resume"), "ckpt ;1.nc") == 0, "--set value taken literally: '%s'",
            deck_str(d, "train.resume"));

    char path[700];
    tmp_path(path, sizeof path, "roundtrip.ini");
    write_file(path, deck_text(d), strlen(deck_text(d)));
    vl_deck_t *e = load_ok(path, 0, NULL);
    if (e) {
        check_good(e, 11, name);
        for (int i = 0; deck_key(i); i++)
            T_CHECK(strcmp(deck_str(d, deck_key(i)), deck_str(e, deck_key(i))) == 0, "round trip %s: '%s' vs '%s'",
                    deck_key(i), deck_str(d, deck_key(i)), deck_str(e, deck_key(i)));
        T_CHECK(strcmp(deck_text(d), deck_text(e)) == 0, "deck text differs after round trip:\n%s\n---\n%s",
                deck_text(d), deck_text(e));
        deck_free(e);
    }
    unlink(path);

    /* deck_set: valid changes value and text; invalid leaves the deck unchanged. */
    vl_error_clear();
    T_CHECK(deck_set(d, "train.lr", "0.125") == VL_OK, "deck_set: %s", vl_error_message());
    T_CHECK(deck_double(d, "train.lr") == 0.125, "lr after deck_set");
    T_CHECK(strstr(deck_text(d), "\nlr = 0.125  # default: 0.05\n") != NULL, "text after deck_set:\n%s",
            deck_text(d));
    T_CHECK(deck_set(d, "train.lr", "abc") == VL_EINPUT, "deck_set bad value accepted");
    T_CHECK(strcmp(vl_error_message(), "set train.lr=abc: train.lr: 'abc' is not a number") == 0, "message '%s'",
            vl_error_message());
    T_CHECK(deck_double(d, "train.lr") == 0.125, "lr changed by a failed deck_set");
    vl_error_clear();
    T_CHECK(deck_set(d, "train.bogus", "1") == VL_EINPUT, "deck_set unknown key accepted");
    T_CHECK(strstr(vl_error_message(), "train.bogus: unknown key in [train]") != NULL, "message '%s'",
            vl_error_message());
    vl_error_clear();
    T_CHECK(deck_set(d, "model.kind", "PreResNet") == VL_OK && strcmp(deck_str(d, "model.kind"), "preresnet") == 0,
            "choice canonical spelling: %s", deck_str(d, "model.kind"));
    deck_free(d);
}

static void test_help(void)
{
    char path[700];
    tmp_path(path, sizeof path, "help.txt");
    char *sets[] = {"train.epochs=5"};
    vl_deck_t *d = load_ok(NULL, 1, sets);
    for (int pass = 0; pass < 3; pass++) {
        FILE *f = fopen(path, "w+");
        T_CHECK(f != NULL, "cannot open %s", path);
        if (!f) return;
        const char *cmd = pass == 0 ? "prepare" : "train";
        deck_help(f, cmd, pass == 2 ? d : NULL);
        long n = ftell(f);
        rewind(f);
        char *buf = calloc((size_t)n + 1, 1);
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) T_CHECK(0, "short read of help");
        fclose(f);
        T_CHECK(strstr(buf, "run.seed") != NULL, "help %s lacks run.seed:\n%s", cmd, buf);
        T_CHECK(strstr(buf, "data.dataset") != NULL, "help %s lacks data.dataset", cmd);
        if (pass == 0) {
            T_CHECK(strstr(buf, "train.epochs") == NULL, "help prepare lists train.epochs:\n%s", buf);
            T_CHECK(strstr(buf, "[train]") == NULL, "help prepare has an empty [train]:\n%s", buf);
        } else {
            T_CHECK(strstr(buf, "[train]") != NULL, "help train lacks [train]");
            T_CHECK(strstr(buf, "number in [0, 1e+06]") != NULL, "help lacks lr range:\n%s", buf);
            T_CHECK(strstr(buf, "one of none|crop-flip") != NULL, "help lacks augment choices");
            T_CHECK(strstr(buf, "train.epochs             = 20\n") != NULL || pass == 2, "live default:\n%s", buf);
            if (pass == 2)
                T_CHECK(strstr(buf, "train.epochs             = 5   (default 20)\n") != NULL, "current value:\n%s",
                        buf);
        }
        free(buf);
    }
    deck_free(d);
    unlink(path);
}

static void test_bad_decks(void)
{
    expect_fail(DECKS "bad_int.ini", 0, NULL, DECKS "bad_int.ini:3: train.epochs: 'abc' is not an integer", NULL);
    expect_fail(DECKS "bad_section.ini", 0, NULL,
                DECKS "bad_section.ini:3: [trian]: unknown section (known: run, data, model, train, parallel, fge, curve, pca, surface, bma, laplace, hessian, baselines, infer, simplex, shortcuts, debug, export, eval)",
                NULL);
    expect_fail(DECKS "bad_key.ini", 0, NULL,
                DECKS "bad_key.ini:6: train.lerning_rate: unknown key in [train] (did you mean train.lr?)", NULL);
    expect_fail(DECKS "bad_choice.ini", 0, NULL, DECKS "bad_choice.ini:8: data.augment: 'flip' is not one of none|crop-flip",
                NULL);
    expect_fail(DECKS "bad_range.ini", 0, NULL, DECKS "bad_range.ini:2: train.lr: -1 is out of range [0, 1e+06]", NULL);
    expect_fail(DECKS "bad_syntax.ini", 0, NULL, DECKS "bad_syntax.ini:5: syntax error: expected 'key = value'", NULL);
    expect_fail(DECKS "bad_twice.ini", 0, NULL, DECKS "bad_twice.ini:9: model.kind: given twice (first at line 4)",
                NULL);
    expect_fail(DECKS "bad_outside.ini", 0, NULL, DECKS "bad_outside.ini:2: epochs: key outside a section", NULL);
    expect_fail(DECKS "bad_empty.ini", 0, NULL, DECKS "bad_empty.ini:2: train.batch_size: empty value", NULL);
    expect_fail(DECKS "bad_garbage.ini", 0, NULL, DECKS "bad_garbage.ini:2: train.epochs: '12x' is not an integer",
                NULL);
    expect_fail(DECKS "bad_overflow.ini", 0, NULL, DECKS "bad_overflow.ini:2: run.seed: '99999999999999999999999'",
                "overflow");
    expect_fail(DECKS "bad_nan.ini", 0, NULL, DECKS "bad_nan.ini:2: train.lr: 'nan' is not a number", NULL);
    expect_fail(DECKS "bad_inf.ini", 0, NULL, DECKS "bad_inf.ini:3: train.wd: '1e999' is not a finite number", NULL);
    expect_fail(DECKS "bad_bool.ini", 0, NULL, DECKS "bad_bool.ini:2: train.nesterov: 'maybe' is not a boolean",
                NULL);
    expect_fail(DECKS "bad_intlist.ini", 0, NULL,
                DECKS "bad_intlist.ini:2: model.widths: '512,,512': entry 2 '' is not an integer", NULL);
    expect_fail(DECKS "bad_depth.ini", 0, NULL, DECKS "bad_depth.ini:3: model.depth: 1001 is out of range [0, 1000]",
                NULL); /* a family's depth rule (6n+2, ...) is checked where the network is built: families.sh */
    expect_fail(DECKS "bad_open.ini", 0, NULL, DECKS "bad_open.ini:2: eval.bn_subset: 0 is out of range (0, 1]",
                NULL);
    expect_fail(DECKS "bad_quote.ini", 0, NULL, DECKS "bad_quote.ini:2: run.name: syntax error: unterminated", NULL);
    expect_fail(DECKS "missing.ini", 0, NULL, "cannot read deck '" DECKS "missing.ini': No such file or directory",
                NULL);
    expect_fail("tests/data/decks", 0, NULL, "cannot read deck 'tests/data/decks': Is a directory", NULL);
}

static void test_bad_sets(void)
{
    char *s1[] = {"train.epochs=abc"};
    expect_fail(NULL, 1, s1, "--set train.epochs=abc: train.epochs: 'abc' is not an integer", NULL);
    char *s2[] = {"train.epochs=3", "trian.lr=1"};
    expect_fail(NULL, 2, s2, "--set trian.lr=1: [trian]: unknown section (known: run, data, model", NULL);
    char *s3[] = {"train.learning_rate=0.1"};
    expect_fail(NULL, 1, s3, "--set train.learning_rate=0.1: train.learning_rate: unknown key in [train] "
                             "(did you mean train.lr?)", NULL);
    char *s4[] = {"train.weight_decay=1"};
    expect_fail(NULL, 1, s4, "(did you mean train.wd?)", NULL);
    char *s5[] = {"train.seed=3"};
    expect_fail(NULL, 1, s5, "(did you mean run.seed?)", NULL);
    char *s6[] = {"train.epoch=3"};
    expect_fail(NULL, 1, s6, "(did you mean train.epochs?)", NULL);
    char *s7[] = {"train.epochs"};
    expect_fail(NULL, 1, s7, "--set train.epochs: expected section.key=value", NULL);
    char *s8[] = {"model.widths=1,2,0"};
    expect_fail(NULL, 1, s8, "model.widths: '1,2,0': entry 3: 0 is out of range [1, 1000000]", NULL);
    char *s9[] = {"train.wd=5e-4x"};
    expect_fail(NULL, 1, s9, "train.wd: '5e-4x' is not a number", NULL);
    char *s10[] = {"run.seed=4611686018427387905"};
    expect_fail(NULL, 1, s10, "run.seed: 4611686018427387905 is out of range [0, 4611686018427387904]", NULL);
    char *s11[] = {"train.lr=inf"};
    expect_fail(NULL, 1, s11, "train.lr: 'inf' is not a number", NULL);
    char *s12[] = {"model.depth=14x"};
    expect_fail(NULL, 1, s12, "model.depth: '14x' is not an integer", NULL);
    char *s13[] = {"train.momentum=1.5"};
    expect_fail(NULL, 1, s13, "train.momentum: 1.5 is out of range [0, 1]", NULL);
    char *s14[] = {"data.dataset="};
    expect_fail(NULL, 1, s14, "data.dataset: '': a name of 1 to 31 letters", NULL);
    char *s16[] = {"data.dataset=../x"};
    expect_fail(NULL, 1, s16, "data.dataset: '../x': a name has letters, digits", NULL);
    char *s15[] = {"run.name=a\nb"};
    expect_fail(NULL, 1, s15, "run.name: control character 0x0a", NULL);
    /* data.classes: distinct class ids from 0, or all */
    char *c1[] = {"data.classes=0,1,a"};
    expect_fail(NULL, 1, c1, "--set data.classes=0,1,a: data.classes: '0,1,a': entry 3 'a' is not a class id", NULL);
    char *c2[] = {"data.classes=0,-1"};
    expect_fail(NULL, 1, c2, "data.classes: '0,-1': entry 2 '-1' is not a class id (0 to 999999)", NULL);
    char *c3[] = {"data.classes=3,1,3"};
    expect_fail(NULL, 1, c3, "data.classes: '3,1,3': class 3 is given twice", NULL);
    char *c4[] = {"data.classes="};
    expect_fail(NULL, 1, c4, "data.classes: empty value (give class ids such as 0,1,2,3,4, or all)", NULL);
    char *c5[] = {"data.classes=1,,2"};
    expect_fail(NULL, 1, c5, "data.classes: '1,,2': entry 2 is empty", NULL);
    char *c6[] = {"data.classes=1000000"};
    expect_fail(NULL, 1, c6, "data.classes: '1000000': entry 1 '1000000' is not a class id", NULL);
    char *c7[] = {"data.validation=-1"};
    expect_fail(NULL, 1, c7, "--set data.validation=-1: data.validation: -1 is out of range [0, 1000000000]", NULL);
    char *c8[] = {"data.classes= 4, 0 ,2 "};
    vl_deck_t *dc = load_ok(NULL, 1, c8);
    if (dc) {
        int ids[4] = {-1, -1, -1, -1};
        T_CHECK(!strcmp(deck_str(dc, "data.classes"), "0,2,4"), "canonical class list '%s'", deck_str(dc, "data.classes"));
        T_CHECK(deck_classlist(dc, "data.classes", ids, 4) == 3 && ids[0] == 0 && ids[1] == 2 && ids[2] == 4,
                "class list %d %d %d", ids[0], ids[1], ids[2]);
        deck_free(dc);
    }
    char *c9[] = {"data.classes=ALL"};
    dc = load_ok(NULL, 1, c9);
    if (dc) {
        T_CHECK(!strcmp(deck_str(dc, "data.classes"), "all"), "ALL -> all");
        deck_free(dc);
    }

    /* Edge values that are fine. */
    char *ok[] = {"run.seed=4611686018427387904", "model.depth=14", "eval.bn_subset=1e-300", "train.nesterov=ON",
                  "model.widths= 7 ", "run.name="};
    vl_deck_t *d = load_ok(NULL, 6, ok);
    if (d) {
        T_CHECK(deck_int(d, "run.seed") == 4611686018427387904LL, "seed 2^62");
        T_CHECK(deck_bool(d, "train.nesterov") == 1, "ON");
        int w[2];
        T_CHECK(deck_intlist(d, "model.widths", w, 2) == 1 && w[0] == 7, "single-entry list");
        T_CHECK(deck_is_set(d, "run.name") && strcmp(deck_str(d, "run.name"), "") == 0, "empty string set");
        deck_free(d);
    }
}

/* Files that are not decks: errors, never crashes. */
static void test_hostile_files(void)
{
    char path[700];
    tmp_path(path, sizeof path, "hostile.ini");
    static char buf[3 << 20];

    const char nul[] = "[train]\nepochs = 3\nlr = 0.1\0junk\n";
    write_file(path, nul, sizeof nul - 1);
    expect_fail(path, 0, NULL, path, ":3: NUL byte");

    /* A 10 kB line (a comment, which would otherwise be ignored). */
    size_t n = (size_t)snprintf(buf, sizeof buf, "[train]\n# ");
    memset(buf + n, 'x', 10000);
    n += 10000;
    buf[n++] = '\n';
    write_file(path, buf, n);
    expect_fail(path, 0, NULL, path, ":2: line longer than 8448 bytes");

    /* A 10 kB value. */
    n = (size_t)snprintf(buf, sizeof buf, "[run]\nname = ");
    memset(buf + n, 'y', 10000);
    n += 10000;
    write_file(path, buf, n); /* no final newline */
    expect_fail(path, 0, NULL, path, ":2: line longer than 8448 bytes");

    /* A value of exactly 4096 bytes is still fine; 4097 is not. */
    n = (size_t)snprintf(buf, sizeof buf, "[run]\nname = ");
    memset(buf + n, 'z', 4096);
    n += 4096;
    buf[n++] = '\n';
    write_file(path, buf, n);
    vl_deck_t *d = load_ok(path, 0, NULL);
    if (d) {
        T_CHECK(strlen(deck_str(d, "run.name")) == 4096, "long name length %zu",
                strlen(deck_str(d, "run.name")));
        deck_free(d);
    }
    buf[n - 1] = 'z';
    buf[n++] = '\n';
    write_file(path, buf, n);
    expect_fail(path, 0, NULL, path, ":2: run.name: value longer than 4096 bytes");

    /* A line of 8448 bytes (a comment) is fine; 8449 is not. */
    n = (size_t)snprintf(buf, sizeof buf, "[run]\n#");
    memset(buf + n, 'c', 8447);
    n += 8447;
    buf[n++] = '\n';
    write_file(path, buf, n);
    d = load_ok(path, 0, NULL);
    deck_free(d);
    buf[n - 1] = 'c';
    buf[n++] = '\n';
    write_file(path, buf, n);
    expect_fail(path, 0, NULL, path, ":2: line longer than 8448 bytes");

    /* The longest values, written back by deck_text quoted with every character escaped,
     * load again to the same deck (found by fuzz_deck: a 4,070-byte train.resume gave an
     * effective deck that did not load, "line longer than 4096 bytes"). */
    static char sv[3][4200];
    const char *keys[3] = {"run.name", "train.resume", "data.path"};
    for (int k = 0; k < 3; k++) {
        n = (size_t)snprintf(sv[k], sizeof sv[k], "%s=", keys[k]);
        for (int i = 0; i < 4096; i++) sv[k][n + (size_t)i] = k == 1 ? '\\' : '"';
        sv[k][n + 4096] = '\0';
    }
    char *long_sets[3] = {sv[0], sv[1], sv[2]};
    d = load_ok(NULL, 3, long_sets);
    if (d) {
        write_file(path, deck_text(d), strlen(deck_text(d)));
        vl_deck_t *e = load_ok(path, 0, NULL);
        if (e) {
            T_CHECK(strcmp(deck_text(d), deck_text(e)) == 0,
                    "effective deck with 4096-byte escaped values changes when loaded again");
            deck_free(e);
        }
        deck_free(d);
    }

    /* Random bytes, several seeds: all of 0..255, then only high bytes and newlines. */
    uint64_t x = 88172645463325252ULL;
    for (int rep = 0; rep < 8; rep++) {
        for (size_t i = 0; i < 4096; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            unsigned char c = (unsigned char)(x >> 24);
            if (rep >= 4) c = (x >> 40) % 50 == 0 ? '\n' : (unsigned char)(0x80 | c);
            buf[i] = (char)c;
        }
        write_file(path, buf, 4096);
        expect_fail(path, 0, NULL, path, NULL);
    }

    /* A deck larger than the 1 MiB limit. */
    n = 0;
    while (n < (2u << 20)) n += (size_t)snprintf(buf + n, sizeof buf - n, "# comment line\n");
    write_file(path, buf, n);
    expect_fail(path, 0, NULL, "cannot read deck", "larger than");

    /* Mutations of the good deck: each loads or fails with VL_EINPUT naming the
     * file; the sanitizer build checks that nothing reads out of bounds. */
    FILE *f = fopen(DECKS "good.ini", "rb");
    T_CHECK(f != NULL, "cannot open good.ini");
    if (!f) return;
    size_t len = fread(buf, 1, 65536, f);
    fclose(f);
    static char mut[65536];
    int n_ok = 0, n_bad = 0;
    for (int rep = 0; rep < 400; rep++) {
        memcpy(mut, buf, len);
        for (int k = 0; k < 1 + rep % 4; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            mut[(x >> 8) % len] = (char)(x >> 32);
        }
        write_file(path, mut, len);
        vl_error_clear();
        d = NULL;
        int st = deck_load(path, 0, NULL, &d);
        if (st == VL_OK) {
            n_ok++;
            T_CHECK(d != NULL && deck_text(d) != NULL, "mutated deck loaded without text");
            deck_free(d);
        } else {
            n_bad++;
            T_CHECK(st == VL_EINPUT && d == NULL, "mutation %d: status %d", rep, st);
            T_CHECK(strstr(vl_error_message(), path) != NULL, "mutation %d: message '%s' lacks the file", rep,
                    vl_error_message());
        }
    }
    T_CHECK(n_bad > 100, "only %d of 400 mutated decks failed (%d loaded)", n_bad, n_ok);
    vl_error_clear();
    unlink(path);
}

/* A getter on a key not in the table (or of another type) is a programming
 * error: it must abort, which we observe in a child process. */
/* Issue 20: a UTF-8 byte-order mark; per-command deck text; the run identity without the
 * operational keys; values adopted from input files; the changes against a recorded deck. */
static void test_command_views(void)
{
    char path[600];
    tmp_path(path, sizeof path, "bom.ini");
    const char bom[] = "\xEF\xBB\xBF# saved by an editor that writes a BOM\n[train]\nepochs = 3\n";
    write_file(path, bom, sizeof bom - 1);
    vl_deck_t *d = load_ok(path, 0, NULL);
    if (!d) return;
    T_CHECK(deck_int(d, "train.epochs") == 3, "BOM deck: epochs %lld", deck_int(d, "train.epochs"));
    /* the keys of one command */
    T_CHECK(deck_set_command(d, "bma") == VL_OK, "deck_set_command");
    T_CHECK(!strcmp(deck_command(d), "bma"), "deck_command '%s'", deck_command(d));
    const char *t = deck_text(d);
    T_CHECK(strstr(t, "`valley bma`") && strstr(t, "[bma]\nmethods = ") && strstr(t, "\nbatch_size = 128\n"),
            "bma deck text lacks its keys:\n%s", t);
    T_CHECK(!strstr(t, "epochs = ") && !strstr(t, "[surface]") && !strstr(t, "[curve]") && !strstr(t, "\nlr = "),
            "bma deck text holds keys bma does not read:\n%s", t);
    /* the identity: what the command computes, not how it is run */
    T_CHECK(deck_set_command(d, "train") == VL_OK, "deck_set_command train");
    const char *id = deck_identity(d);
    T_CHECK(strstr(id, "\nepochs = 3\n") && strstr(id, "\nlr = 0.05\n") && strstr(id, "\ngroup_size = 0\n"),
            "train identity lacks keys:\n%s", id);
    T_CHECK(!strstr(id, "threads") && !strstr(id, "log_every") && !strstr(id, "resume") &&
            !strstr(id, "checkpoint_every") && !strstr(id, "checkpoint_minutes") && !strstr(id, "overwrite") &&
            !strstr(id, "  # "), "train identity holds operational keys or comments:\n%s", id);
    T_CHECK(deck_set_command(d, "surface") == VL_OK, "deck_set_command surface");
    T_CHECK(!strstr(deck_identity(d), "group_size") && !strstr(deck_identity(d), "chunk") &&
            strstr(deck_identity(d), "\nnx = 21\n"), "surface identity:\n%s", deck_identity(d));
    /* changes against a recorded text: the identity keys only, in the recorded spelling */
    T_CHECK(deck_set_command(d, "train") == VL_OK, "deck_set_command train");
    deck_change_t ch[8];
    T_CHECK(deck_changes(d, deck_text(d), ch, 8) == 0, "a deck differs from its own text");
    const char *rec = "# recorded\n[run]\nseed = 1\n[train]\nepochs = 2  # default: 20\nlr = 0.1\n"
                      "log_every = 7\nno_such_key = 1\n[parallel]\nthreads = 8\n";
    int n = deck_changes(d, rec, ch, 8);
    T_CHECK(n == 2, "%d changes, want 2 (epochs, lr)", n);
    if (n == 2) {
        T_CHECK(!strcmp(ch[0].key, "train.epochs") && !strcmp(ch[0].old, "2") && !strcmp(ch[0].now, "3"),
                "change 0: %s %s -> %s", ch[0].key, ch[0].old, ch[0].now);
        T_CHECK(!strcmp(ch[1].key, "train.lr") && !strcmp(ch[1].old, "0.1") && !strcmp(ch[1].now, "0.05"),
                "change 1: %s %s -> %s", ch[1].key, ch[1].old, ch[1].now);
    }
    /* a value from an input file, marked as such; the user's other value is reported */
    int over = -1;
    T_CHECK(deck_adopt(d, "model.kind", "mlp", "runs/a/model.nc", &over) == VL_OK, "deck_adopt");
    T_CHECK(over == 0, "default model.kind reported as overridden");
    T_CHECK(!strcmp(deck_str(d, "model.kind"), "mlp"), "adopted kind %s", deck_str(d, "model.kind"));
    T_CHECK(strstr(deck_text(d), "\nkind = mlp  # from runs/a/model.nc\n") != NULL, "adopted value not marked:\n%s",
            deck_text(d));
    T_CHECK(deck_set(d, "model.depth", "14") == VL_OK, "set depth");
    T_CHECK(deck_adopt(d, "model.depth", "20", "b.nc", &over) == VL_OK && over == 1, "user's depth not reported");
    vl_error_clear();
    T_CHECK(deck_adopt(d, "model.depth", "1001", "c.nc", &over) == VL_EINPUT, "a bad adopted value is not refused");
    vl_error_clear();
    deck_free(d);
}

static void test_getter_abort(void)
{
    vl_deck_t *d = load_ok(NULL, 0, NULL);
    if (!d) return;
    for (int which = 0; which < 3; which++) {
        fflush(NULL);
        pid_t pid = fork();
        T_CHECK(pid >= 0, "fork failed");
        if (pid == 0) {
            freopen("/dev/null", "w", stderr);
            if (which == 0) deck_int(d, "train.no_such_key");
            if (which == 1) deck_int(d, "train.lr"); /* a DOUBLE key */
            if (which == 2) deck_double(d, "train.lr"); /* fine: must not abort */
            _exit(0);
        }
        int ws = 0;
        waitpid(pid, &ws, 0);
        if (which < 2)
            T_CHECK(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGABRT, "getter case %d did not abort (status %d)", which, ws);
        else
            T_CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "valid getter aborted (status %d)", ws);
    }
    deck_free(d);
}

int main(void)
{
    const char *t = getenv("VALLEY_TEST_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s", t && *t ? t : "/tmp");
    test_defaults();
    test_good();
    test_set_and_roundtrip();
    test_where();
    test_help();
    test_bad_decks();
    test_bad_sets();
    test_hostile_files();
    test_command_views();
    test_getter_abort();
    T_DONE();
}
