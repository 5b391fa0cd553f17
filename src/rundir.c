/* rundir.c — the run directory's lock (valley.lock) and record (valley-run.txt). */
#define _XOPEN_SOURCE 700 /* realpath */
#include "gitversion.h"
#include "valley/rundir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "valley/error.h"
#include "valley/log.h"
#include "valley/ncio.h"

#define IDENTITY_MARK "--- identity ---\n"

static void iso_now(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void host_name(char *buf, size_t n)
{
    if (gethostname(buf, n) != 0) snprintf(buf, n, "?");
    buf[n - 1] = '\0';
}

/* The whole (small) file at path into a new string; NULL when it cannot be read. */
static char *slurp(const char *path, size_t max)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max, f) : 0;
    fclose(f);
    if (buf) buf[n] = '\0';
    return buf;
}

/* The value of "key = value" among the header lines of a lock or record text. */
static void field(const char *text, const char *key, char *out, size_t n)
{
    out[0] = '\0';
    size_t kl = strlen(key);
    for (const char *p = text; p && *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (!strncmp(p, IDENTITY_MARK, strlen(IDENTITY_MARK) - 1)) return;
        if (len > kl + 3 && !strncmp(p, key, kl) && !strncmp(p + kl, " = ", 3)) {
            size_t vl = len - kl - 3;
            snprintf(out, n, "%.*s", (int)(vl < n ? vl : n - 1), p + kl + 3);
            return;
        }
        p = end ? end + 1 : NULL;
    }
}

/* Whether a lock text is a holder's whole record: it is written in one piece, "started"
 * last, but a reader can come between the holder's lock and its write. */
static int record_complete(const char *text)
{
    if (!text) return 0;
    const char *s = strstr(text, "\nstarted = ");
    return s && strchr(s + 1, '\n');
}

/* "valley train (pid 123 on host h, Slurm job 45, since 2026-12-03T06:40:12Z)" */
static void describe_owner(const char *text, char *buf, size_t n)
{
    char cmd[64], pid[32], host[256], job[64], since[64];
    field(text, "command", cmd, sizeof cmd);
    field(text, "pid", pid, sizeof pid);
    field(text, "host", host, sizeof host);
    field(text, "slurm_job", job, sizeof job);
    field(text, "started", since, sizeof since);
    snprintf(buf, n, "valley %.60s (pid %.30s on host %.200s%s%.60s, since %.60s)", *cmd ? cmd : "?", *pid ? pid : "?",
             *host ? host : "?", *job ? ", Slurm job " : "", job, *since ? since : "?");
}

/* Whether the owner written in a lock file is alive, where no fcntl lock can tell: a pid
 * on this host that exists; an owner on another host is taken as alive. */
static int owner_alive(const char *text)
{
    char host[256], me[256], pid[32];
    field(text, "host", host, sizeof host);
    field(text, "pid", pid, sizeof pid);
    host_name(me, sizeof me);
    if (!*host && !*pid) return 0;
    if (strcmp(host, me)) return 1;
    long p = strtol(pid, NULL, 10);
    return p > 0 && (kill((pid_t)p, 0) == 0 || errno == EPERM);
}

/* A live lock on an ancestor of dir (a pipeline writing its stages below it). */
static int ancestor_locked(const char *dir, char *who, size_t nwho, char *where, size_t nwhere)
{
    char path[PATH_MAX];
    if (!realpath(dir, path)) return 0;
    for (char *slash = strrchr(path, '/'); slash; slash = strrchr(path, '/')) {
        if (slash == path) slash[1] = '\0';
        else *slash = '\0';
        char lock[PATH_MAX + 32];
        snprintf(lock, sizeof lock, "%s%s" RUNDIR_LOCK, path, slash == path ? "" : "/");
        int fd = open(lock, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
            int held = fcntl(fd, F_GETLK, &fl) == 0 ? fl.l_type != F_UNLCK : -1;
            close(fd);
            char *text = slurp(lock, 4096);
            if (held < 0) held = text && owner_alive(text);
            if (held) {
                describe_owner(text ? text : "", who, nwho);
                snprintf(where, nwhere, "%s", path);
            }
            free(text);
            if (held) return 1;
        }
        if (slash == path) break;
    }
    return 0;
}

/* Takes dir/valley.lock into r->fd or fails naming its live owner. */
static int lock_take(vl_rundir_t *r, const char *command)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/" RUNDIR_LOCK, r->dir);
    for (int attempt = 0; attempt < 8; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return VL_FAIL(VL_EIO, "%s: cannot create the run directory's lock: %s", path, strerror(errno));
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        char *old = slurp(path, 4096);
        int got = fcntl(fd, F_SETLK, &fl) == 0;
        const int e = errno;
        if (!got && e != EACCES && e != EAGAIN) /* no lock support here: the owner written decides */
            got = !(old && owner_alive(old));
        if (!got && (e == EACCES || e == EAGAIN)) {
            /* The holder writes who it is just after taking the lock, but a loaded node can
             * hold it back between the two for seconds: wait for its whole record (the
             * "started" line ends it) while it still holds the lock, up to 30 s; if it lets
             * go meanwhile (it died, or finished), start again. A record naming a dead owner
             * under a held lock is a takeover not yet written: wait for it too. */
            int released = 0;
            for (int wait = 0; wait < 1200 && !(record_complete(old) && owner_alive(old)); wait++) {
                free(old);
                nanosleep(&(struct timespec){.tv_nsec = 25000000}, NULL);
                struct flock probe = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
                if (fcntl(fd, F_GETLK, &probe) == 0 && probe.l_type == F_UNLCK) { released = 1; old = NULL; break; }
                old = slurp(path, 4096);
            }
            if (released) {
                close(fd);
                continue;
            }
        }
        if (!got) {
            char who[1024];
            describe_owner(old ? old : "", who, sizeof who);
            free(old);
            close(fd);
            return VL_FAIL(VL_EINPUT, "%s is in use by %s: two jobs must not write into one directory; choose "
                                      "another --out%s", r->dir, who,
                           e == EACCES || e == EAGAIN ? "" : " (this file system has no locks: if that job "
                                                             "is gone, remove " RUNDIR_LOCK ")");
        }
        /* The holder we waited on may have removed the file between our open and our lock:
         * then we hold a lock on a file nobody else will see; start again. */
        struct stat a, b;
        if (fstat(fd, &a) != 0 || stat(path, &b) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
            free(old);
            close(fd);
            continue;
        }
        if (old && *old) {
            char who[1024];
            describe_owner(old, who, sizeof who);
            vl_log(MPI_COMM_SELF, "%s: taking over the lock left by %s, which is no longer running", r->dir, who);
        }
        free(old);
        char host[256], job[64] = "", text[1024];
        host_name(host, sizeof host);
        const char *sj = getenv("SLURM_JOB_ID");
        if (sj) snprintf(job, sizeof job, "%.60s", sj);
        int len = snprintf(text, sizeof text, "# valley.lock: a valley command is writing into this directory\n"
                                              "command = %s\npid = %ld\nhost = %s\nslurm_job = %s\nstarted = %s\n",
                           command, (long)getpid(), host, job, r->started);
        if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)len, 0) != len) {
            const int we = errno;
            close(fd);
            unlink(path);
            return VL_FAIL(VL_EIO, "%s: cannot write: %s", path, strerror(we));
        }
        r->fd = fd;
        return VL_OK;
    }
    return VL_FAIL(VL_EINPUT, "%s: the lock keeps changing hands; is another job starting there?", path);
}

/* A file name of the form NAME.tmp.DIGITS: what a writer leaves when killed mid-write. */
static int is_tmp(const char *name)
{
    const char *t = strstr(name, ".tmp.");
    if (!t || !t[5]) return 0;
    for (const char *q = t + 5; *q; q++)
        if (*q < '0' || *q > '9') return 0;
    return 1;
}

/* Removes the temporary files killed writers left under dir (we hold its lock, so no writer
 * of ours is alive there); a subdirectory held by another live command is left alone.
 * Returns how many were removed. */
static int clean_tmp(const char *dir, int depth)
{
    DIR *dp = opendir(dir);
    if (!dp) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(dp));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode) && depth > 0) {
            char lock[PATH_MAX + 16];
            snprintf(lock, sizeof lock, "%s/" RUNDIR_LOCK, p);
            int fd = open(lock, O_RDONLY | O_CLOEXEC), held = 0;
            if (fd >= 0) {
                struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
                held = fcntl(fd, F_GETLK, &fl) != 0 || fl.l_type != F_UNLCK;
                close(fd);
            }
            if (!held) n += clean_tmp(p, depth - 1);
        } else if (S_ISREG(sb.st_mode) && is_tmp(e->d_name) && unlink(p) == 0) {
            n++;
        }
    }
    closedir(dp);
    return n;
}

/* The inputs as they identify a run: absolute paths where they exist. */
static void input_lines(char *buf, size_t n, int ninputs, char **inputs)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < ninputs && used < n; i++) {
        char abs[PATH_MAX];
        const char *p = realpath(inputs[i], abs) ? abs : inputs[i];
        used += (size_t)snprintf(buf + used, n - used, "input = %s\n", p);
    }
}

/* Collects the "input = " lines of a record text. */
static void recorded_inputs(const char *text, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (const char *p = text; p && *p && used < n;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) + 1 : strlen(p);
        if (!strncmp(p, IDENTITY_MARK, strlen(IDENTITY_MARK) - 1)) break;
        if (!strncmp(p, "input = ", 8)) used += (size_t)snprintf(buf + used, n - used, "%.*s", (int)len, p);
        p = end ? end + 1 : NULL;
    }
}

/* Writes the record with its state (tmp + rename, as every valley file). 0, or -1 with
 * the reason in why (no error is recorded: the close path must not replace the command's). */
static int record_write(const vl_rundir_t *r, const char *state, char *why, size_t nwhy)
{
    char path[4200], tmp[4300], ended[32] = "";
    snprintf(path, sizeof path, "%s/" RUNDIR_RECORD, r->dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (strcmp(state, "running")) iso_now(ended, sizeof ended);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(why, nwhy, "%s: cannot write: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "%sstate = %s\nended = %s\n%s%s", r->record, state, ended, IDENTITY_MARK, r->identity);
    int bad = ferror(f);
    errno = 0;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) bad = 1;
    int e = errno;
    if (fclose(f) != 0) bad = 1;
    if (!bad && rename(tmp, path) != 0) bad = 1;
    if (bad) {
        if (!e) e = errno;
        unlink(tmp);
        snprintf(why, nwhy, "%s: cannot write: %s", path, strerror(e ? e : EIO));
        return -1;
    }
    return 0;
}

/* Whether dir holds something train.resume = auto would continue from. */
static int has_checkpoint(const char *dir)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/model.nc", dir);
    if (access(p, R_OK) == 0) return 1;
    snprintf(p, sizeof p, "%s/checkpoints", dir);
    DIR *dp = opendir(p);
    int found = 0;
    for (struct dirent *e; dp && !found && (e = readdir(dp));) {
        const size_t n = strlen(e->d_name);
        found = n > 3 && !strcmp(e->d_name + n - 3, ".nc");
    }
    if (dp) closedir(dp);
    return found;
}

/* Rank 0: the recorded run against this one; VL_EINPUT naming the difference when it
 * would be overwritten. */
static int record_check(vl_rundir_t *r, const vl_deck_t *d, const char *inputs)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/" RUNDIR_RECORD, r->dir);
    char *old = slurp(path, 1 << 20);
    if (!old) return VL_OK; /* a new directory, or one of an older valley */
    r->previous = strdup(old);
    char cmd[64], state[32], ended[64], started[64], oldin[8192];
    field(old, "command", cmd, sizeof cmd);
    field(old, "state", state, sizeof state);
    field(old, "ended", ended, sizeof ended);
    field(old, "started", started, sizeof started);
    recorded_inputs(old, oldin, sizeof oldin);
    const char *id = strstr(old, IDENTITY_MARK);
    deck_change_t ch[4];
    const int nch = id ? deck_changes(d, id + strlen(IDENTITY_MARK), ch, 4) : 0;
    const char *command = deck_command(d);
    const int same_cmd = !strcmp(cmd, command), same_in = !strcmp(oldin, inputs);
    int st = VL_OK;
    if (!same_cmd || !same_in || nch) {
        char what[1024], when[160];
        if (!strcmp(state, "finished")) snprintf(when, sizeof when, "a finished run (%s)", ended);
        else if (!strcmp(state, "stopped")) snprintf(when, sizeof when, "an interrupted run (stopped %s)", ended);
        else if (!strcmp(state, "failed")) snprintf(when, sizeof when, "a failed run (%s)", ended);
        else snprintf(when, sizeof when, "an unfinished run (started %s, killed)", started);
        if (!same_cmd) {
            snprintf(what, sizeof what, "of `valley %s`", cmd);
        } else if (!same_in) {
            snprintf(what, sizeof what, "of `valley %s` with other input files (%s)", cmd,
                     *oldin ? "see " RUNDIR_RECORD : "none");
        } else {
            size_t u = (size_t)snprintf(what, sizeof what, "of `valley %s` with another deck (", cmd);
            for (int i = 0; i < nch && i < 4 && u < sizeof what; i++)
                u += (size_t)snprintf(what + u, sizeof what - u, "%s%s: %s -> %s", i ? ", " : "", ch[i].key,
                                      ch[i].old, ch[i].now);
            if (u < sizeof what)
                snprintf(what + u, sizeof what - u, "%s)", nch > 4 ? ", ..." : "");
        }
        const char *resume = deck_str(d, "train.resume");
        const int resuming = same_cmd && *resume && (strcmp(resume, "auto") || has_checkpoint(r->dir));
        if (deck_bool(d, "run.overwrite")) {
            vl_log(MPI_COMM_SELF, "%s holds %s %s: replacing it (run.overwrite = true)", r->dir, when, what);
        } else if (!strcmp(state, "failed")) {
            vl_log(MPI_COMM_SELF, "%s holds %s %s: replacing it", r->dir, when, what);
        } else if (resuming) {
            vl_log(MPI_COMM_SELF, "%s holds %s %s: resuming it", r->dir, when, what);
        } else {
            st = VL_FAIL(VL_EINPUT, "%s holds %s %s; `valley %s` would write over it: choose another --out, "
                                    "resume that run (--set train.resume=...), or replace it with "
                                    "--set run.overwrite=true", r->dir, when, what, command);
        }
    }
    free(old);
    return st;
}

static int open_rank0(vl_comm_t *c, vl_rundir_t *r, const vl_deck_t *d, int ninputs, char **inputs)
{
    char who[1024], where[4200];
    struct stat sb;
    r->created = stat(r->dir, &sb) != 0;
    CHECK(ncio_mkdirs(r->dir));
    if (ancestor_locked(r->dir, who, sizeof who, where, sizeof where))
        return VL_FAIL(VL_EINPUT, "%s is inside %s, which is in use by %s: choose another --out", r->dir, where,
                       who);
    CHECK(lock_take(r, deck_command(d)));
    const int ntmp = clean_tmp(r->dir, 8);
    if (ntmp) vl_log(MPI_COMM_SELF, "%s: removed %d temporary file(s) left by a job killed while writing", r->dir, ntmp);
    char in[8192], host[256], head[16384];
    input_lines(in, sizeof in, ninputs, inputs);
    CHECK(record_check(r, d, in));
    host_name(host, sizeof host);
    const char *sj = getenv("SLURM_JOB_ID");
    snprintf(head, sizeof head,
             "# valley-run.txt: what ran in this directory; valley reads it before another command writes here\n"
             "command = %s\n%sranks = %d\nhost = %s\nslurm_job = %.60s\nvalley = %s (git %s)\nstarted = %s\n",
             deck_command(d), in, c->size, host, sj ? sj : "", VALLEY_VERSION, VALLEY_GIT_COMMIT, r->started);
    r->record = strdup(head);
    r->identity = strdup(deck_identity(d));
    if (!r->record || !r->identity) return VL_FAIL(VL_EIO, "out of memory");
    char why[4400];
    if (record_write(r, "running", why, sizeof why)) return VL_FAIL(VL_EIO, "%s", why);
    return VL_OK;
}

int rundir_open(vl_comm_t *c, vl_rundir_t *r, const char *dir, const vl_deck_t *d, int ninputs, char **inputs)
{
    memset(r, 0, sizeof *r);
    r->fd = -1;
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    iso_now(r->started, sizeof r->started);
    r->t0 = time(NULL);
    int st = c->rank == 0 ? open_rank0(c, r, d, ninputs, inputs) : VL_OK;
    return comm_agree_first(c->world, st, 1);
}

/* Whether the tree under dir holds a regular file modified at or after `since`, other than
 * the lock, the record and temporary files (depth-limited). */
static int new_files(const char *dir, time_t since, int depth)
{
    DIR *dp = opendir(dir);
    if (!dp) return 0;
    int found = 0;
    for (struct dirent *e; !found && (e = readdir(dp));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, RUNDIR_LOCK) ||
            !strcmp(e->d_name, RUNDIR_RECORD) || strstr(e->d_name, ".tmp."))
            continue;
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) found = depth > 0 && new_files(p, since, depth - 1);
        else found = sb.st_mtime >= since;
    }
    closedir(dp);
    return found;
}

void rundir_close(vl_rundir_t *r, int status)
{
    if (r->fd < 0) {
        if (r->created) rmdir(r->dir); /* made for a command that could not take it */
        free(r->record);
        free(r->identity);
        free(r->previous);
        r->record = r->identity = r->previous = NULL;
        return;
    }
    char rec[4200];
    snprintf(rec, sizeof rec, "%s/" RUNDIR_RECORD, r->dir);
    if (r->record && r->identity && status && status != VL_ESIGNAL && !new_files(r->dir, r->t0, 8)) {
        /* failed before writing anything (bad input, say): leave the directory as it was */
        FILE *f = r->previous ? fopen(rec, "w") : NULL;
        if (f) {
            fputs(r->previous, f);
            fclose(f);
        } else if (!r->previous) {
            unlink(rec);
        }
    } else if (r->record && r->identity) {
        const char *state = status == 0 ? "finished" : status == VL_ESIGNAL ? "stopped" : "failed";
        char why[4400];
        if (record_write(r, state, why, sizeof why)) fprintf(stderr, "valley: warning: %s\n", why);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/" RUNDIR_LOCK, r->dir);
    unlink(path); /* before the lock goes: a waiting job then re-checks the inode and retries */
    close(r->fd);
    r->fd = -1;
    if (r->created) rmdir(r->dir); /* only when empty: the directory this command made for nothing */
    free(r->record);
    free(r->identity);
    free(r->previous);
    r->record = r->identity = r->previous = NULL;
}
