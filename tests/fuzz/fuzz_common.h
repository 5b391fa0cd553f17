/* fuzz_common.h — shared helpers of the libFuzzer targets (tests/fuzz/fuzz_*.c).
 *
 * Each target writes the fuzzed bytes to files in a scratch directory created once per
 * process (fz_dir), calls a valley reader on them and checks the reader's contract:
 * it returns VL_OK or a recorded failure (VL_EINPUT, or VL_EIO for out-of-memory / the
 * output side) with a non-empty message, never crashes, never reads or writes out of
 * bounds (AddressSanitizer), never hits undefined behaviour (UBSan). A contract breach
 * calls abort(), which libFuzzer reports like a crash, with the input saved.
 *
 * An input holding several files is cut at the 4-byte separator "\n%%\n" (FZ_SEP):
 * part i goes to file i; missing parts get a small valid default, so the mutations
 * of one file meet valid partners and reach the deep checks. */
#ifndef VALLEY_FUZZ_COMMON_H
#define VALLEY_FUZZ_COMMON_H
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "valley/error.h"

#define FZ_SEP "\n%%\n"
#define FZ_SEP_LEN 4

/* The scratch directory of this process (created on first use, never removed while
 * running; run.sh removes it): under $TMPDIR, else /dev/shm, else /tmp. Every input is
 * written to a file and the readers write their outputs (with fsync), so the file system
 * matters: on ext4 the kernel's file creation, truncation, fsync and write-back work took
 * 39 % (fuzz_deck) to 77 % (fuzz_idx) of the CPU samples, plus waiting for the disk
 * (fuzz_deck, 20,000 inputs in one process: 12-22 s on ext4, 5-6 s on tmpfs). run.sh
 * puts TMPDIR on /dev/shm. */
static const char *fz_dir(void)
{
    static char dir[256];
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        if (!t || !*t) t = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(dir, sizeof dir, "%s/valley-fuzz.XXXXXX", t);
        if (!mkdtemp(dir)) { perror("mkdtemp"); abort(); }
    }
    return dir;
}

/* Writes n bytes to dir/name; returns the path (static buffer per slot 0..7). */
static const char *fz_write(int slot, const char *name, const void *p, size_t n)
{
    static char paths[8][512];
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", fz_dir(), name);
    int fd = open(paths[slot], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { perror(paths[slot]); abort(); }
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w <= 0) { perror("write"); abort(); }
        c += w;
        n -= (size_t)w;
    }
    close(fd);
    return paths[slot];
}

__attribute__((unused)) static void fz_remove(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", fz_dir(), name);
    unlink(path);
}

/* Splits data at FZ_SEP into at most max parts: start[i], len[i]; returns the count. */
__attribute__((unused)) static int fz_split(const unsigned char *data, size_t size, int max, const unsigned char **start, size_t *len)
{
    int n = 0;
    size_t from = 0;
    for (size_t i = 0; n < max - 1 && i + FZ_SEP_LEN <= size; i++)
        if (memcmp(data + i, FZ_SEP, FZ_SEP_LEN) == 0) {
            start[n] = data + from;
            len[n++] = i - from;
            from = i + FZ_SEP_LEN;
            i = from - 1;
        }
    start[n] = data + from;
    len[n++] = size - from;
    return n;
}

/* The reader's contract on a returned status. */
static void fz_check_status(int st, const char *what)
{
    if (st == VL_OK) return;
    const char *msg = vl_error_message();
    /* a reader that runs out of memory on a small input allocated from an unchecked size */
    if (st == VL_EIO && (strstr(msg, "out of memory") || strstr(msg, "size overflow"))) {
        fprintf(stderr, "%s: '%s' on a %s input: a size from the file was not checked before allocating\n",
                what, msg, "small");
        abort();
    }
    if ((st != VL_EINPUT && st != VL_EIO && st != VL_ENUM) || !msg[0]) {
        fprintf(stderr, "%s: status %d with message '%s': a reader must fail with VL_EINPUT and a message\n",
                what, st, vl_error_message());
        abort();
    }
}
#endif
