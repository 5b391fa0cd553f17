/* deck.h — the input deck: INI file + --set overrides, validated against one key table.
 *
 * Format (INTERFACE.md "Files"):
 *   [section]              a section header; keys below it belong to it
 *   key = value            addressed as "section.key"
 *   # comment / ; comment  whole-line comments; also after a value when the '#'
 *                          or ';' is preceded by white space ("lr = 0.1  # fast")
 *   key = "a # b"          optional double quotes keep '#', ';' and outer spaces;
 *                          inside quotes \" and \\ are the only escapes
 * Blank lines are ignored; CR-LF line ends and a UTF-8 byte-order mark are accepted. A deck file is optional:
 * every key has a default (the table in src/deck.c). "--set section.key=value"
 * strings are applied after the file, in order; their value is taken literally
 * (trimmed; no comments, no quotes).
 *
 * Everything is validated at load, before anything is returned: unknown section
 * or key (with a nearest-name suggestion), syntax, a key given twice in the file,
 * a key outside a section, an empty value (allowed for strings only), values that
 * are not integers / finite numbers / booleans / one of the choices, numbers out
 * of range, lines longer than 4096 bytes, NUL or other control bytes (binary
 * files). Every message names where (file:line or the --set string) and the key:
 *   input/demo.ini:12: train.epochs: 'abc' is not an integer
 *   --set train.lr=-1: train.lr: -1 is out of range [0, 1e+06]
 * The status is VL_EINPUT, raised with VL_FAIL_ALL: parsing is deterministic, so
 * every rank given the same inputs reaches the same failure.
 *
 * Value types: INT (long long, decimal), DOUBLE (finite, decimal syntax),
 * BOOL (true/false/yes/no/on/off/1/0, any case), STRING, CHOICE (one of a fixed
 * list, any case, stored in the table's spelling), INTLIST ("512,512", at most
 * DECK_LIST_MAX entries, each range-checked).
 *
 * Adding keys: edit the one table `rows[]` near the top of src/deck.c (a new
 * section appears by using it in a row name). The getters, help and deck_text
 * follow the table automatically.
 *
 * No function here does MPI; none is collective.
 */
#ifndef VALLEY_DECK_H
#define VALLEY_DECK_H
#include <stdio.h>

enum {
    DECK_LINE_MAX = 4096, /* longest accepted value, bytes (a deck file's line may be about
                             twice as long: a value written quoted with escapes, see deck.c) */
    DECK_LIST_MAX = 64    /* most entries of an INTLIST value */
};

typedef struct vl_deck vl_deck_t; /* opaque */

/* Parses the deck file `path` (NULL = no file, defaults only) and then the nset
 * strings sets[0..nset-1], each "section.key=value", validating every key and
 * value against the table. On success returns VL_OK and *out owns a new deck
 * (free with deck_free); on failure returns VL_EINPUT (VL_EIO if out of memory)
 * with the error recorded (see error.h) and *out = NULL. Deterministic; errors are
 * raised with VL_FAIL_ALL. */
int deck_load(const char *path, int nset, char *const *sets, vl_deck_t **out);

/* Frees d and everything it owns (NULL is fine). */
void deck_free(vl_deck_t *d);

/* Getters. `key` is "section.key" and must be in the table with the matching
 * type; anything else is a programming error: the key is printed to stderr and
 * abort() is called (the one abort in the library).
 *   deck_int      INT
 *   deck_double   DOUBLE
 *   deck_bool     BOOL (returns 0 or 1)
 *   deck_str      STRING and CHOICE: the value; other types: the canonical text
 *                 of the value (e.g. "0.05", "true", "512,512"). Owned by d,
 *                 valid until the next deck_set of that key or deck_free.
 *   deck_intlist  INTLIST: copies min(count, max) entries to out (out may be
 *                 NULL when max is 0) and returns count, so a caller can detect
 *                 truncation by comparing with max. */
long long deck_int(const vl_deck_t *d, const char *key);
double deck_double(const vl_deck_t *d, const char *key);
int deck_bool(const vl_deck_t *d, const char *key);
const char *deck_str(const vl_deck_t *d, const char *key);
int deck_intlist(const vl_deck_t *d, const char *key, int *out, int max);
/* A class list (data.classes): "all" returns 0; else copies min(count, max) class ids, in
 * ascending order and distinct (checked at load), to out and returns count. */
int deck_classlist(const vl_deck_t *d, const char *key, int *out, int max);

/* 1 if the key was given in the file, by --set or by deck_set; 0 if it holds its
 * default. Aborts on a key not in the table, like the getters. */
int deck_is_set(const vl_deck_t *d, const char *key);
/* Where the value of key was given, for messages about it: "deck.ini:12", "--set key=value" or
 * the input file it was adopted from; NULL for a default. */
const char *deck_where(const vl_deck_t *d, const char *key);

/* Programmatic override after load (drivers, e.g. the pipeline): validates
 * exactly like --set (unknown key or bad value -> VL_EINPUT via VL_FAIL_ALL, with
 * messages starting "set key=value: ..."). On failure d is unchanged. Marks the
 * key as set and rebuilds deck_text. */
int deck_set(vl_deck_t *d, const char *key, const char *value);

/* The effective deck: every key with its value as INI text grouped by section,
 * with "# default: X" after keys whose value differs from the default. Loading
 * this text gives the same values. Owned by d; valid until the next deck_set or
 * deck_free. */
const char *deck_text(const vl_deck_t *d);

/* The command the deck serves ("" until set). deck_set_command makes deck_text show only
 * the keys that concern that command (the .cmds column of the table): every output
 * records the keys its command read. Rebuilds the texts (VL_EIO if out of memory). */
int deck_set_command(vl_deck_t *d, const char *command);
const char *deck_command(const vl_deck_t *d);

/* The run's identity: the keys of the deck's command that change what it computes (the
 * table's .operational column leaves out threads, logging, checkpoint cadence, resume
 * paths...), as INI text without comments. Two runs of one command with the same identity
 * (and the same inputs) compute the same thing. Owned by d, valid like deck_text. */
const char *deck_identity(const vl_deck_t *d);

/* A value that comes from an input file rather than from the user (the model description
 * of MODEL.nc, the dataset it was trained on): validated like deck_set, marked in
 * deck_text as "# from SOURCE". *overridden (may be NULL) = 1 when the user had set the
 * key to another value, which the file's value replaces (the caller says so). */
int deck_adopt(vl_deck_t *d, const char *key, const char *value, const char *source, int *overridden);

/* The identity keys (see deck_identity) whose value in a recorded deck text (a file's
 * `deck` attribute, deck_text or deck_identity output) differs from d's: writes at most
 * max of them to out and returns how many there are. Keys the recorded text does not
 * hold (another valley version) are not compared. */
typedef struct {
    const char *key;   /* "section.key", static */
    char old[128];     /* the recorded value (clipped) */
    char now[128];     /* d's value (clipped) */
} deck_change_t;
int deck_changes(const vl_deck_t *d, const char *recorded, deck_change_t *out, int max);

/* Prints help to f: the keys concerning `command` (NULL = all keys), grouped by
 * section, each with its type and range, its live default (the table default,
 * or the current value when d != NULL, with the table default shown when they
 * differ) and its one-line meaning. */
void deck_help(FILE *f, const char *command, const vl_deck_t *d);

/* Name ("section.key") of the i-th key of the table, in table order, for
 * 0 <= i < number of keys; NULL past the end (iterate until NULL). */
const char *deck_key(int i);

#endif
