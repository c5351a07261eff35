/* comm/launch.c — the local launcher: starts N ranks of a command, prefixes their output,
 * forwards signals, and tears the job down when one rank fails.
 *
 * A SIGINT or SIGTERM is passed on to every rank, which then stops after its step and saves
 * (`pipetrain train`: they agree on the step among themselves), so the launcher sets no deadline
 * of its own until a rank has ended: from then the rest get STOP_GRACE_MS. A rank that ends with
 * 128 + SIGINT or + SIGTERM (130, 143) has stopped on a signal, not failed: the others are left to
 * finish. A second signal, a second or more after the first (the same one delivered both to the
 * launcher and through it, as SLURM does, counts once), kills the ranks at once.
 *
 * Each rank runs in its own process group (so a terminal's Ctrl-C reaches it once, through
 * the launcher, and signals reach its children too) and dies with the launcher through
 * PR_SET_PDEATHSIG. The launcher waits in poll() on the ranks' pipes and a self-pipe that the
 * signal handlers write to, so it never sleeps through an event. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pipetrain/comm.h"
#include "pipetrain/timeutil.h"

#define GRACE_MS 5000
#define STOP_GRACE_MS 60000 /* after a stop, once one rank has ended, for the others to end too */
#define SECOND_SIGNAL_NS 1000000000LL
#define LINE_MAX_BYTES 65536

typedef struct rank_proc {
    pid_t pid;
    int rank;
    int fd[2];           /* stdout, stderr pipes (read ends); -1 when closed */
    char *line[2];       /* partial line per stream */
    size_t line_len[2];
    int exited, status;
} rank_proc;

static int sig_pipe[2] = { -1, -1 };

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (sig_pipe[1] >= 0) {
        ssize_t k = write(sig_pipe[1], &b, 1);
        (void)k;
    }
    errno = saved;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = { 0 };
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t sl = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &sl) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        p += k;
        n -= (size_t)k;
    }
}

static void emit(rank_proc *r, int s, const char *p, size_t n)
{
    char prefix[32];
    int pl = snprintf(prefix, sizeof prefix, "[rank %d] ", r->rank);
    char *tmp = malloc((size_t)pl + n + 1);
    if (!tmp) {
        write_all(s ? 2 : 1, p, n);
        return;
    }
    memcpy(tmp, prefix, (size_t)pl);
    memcpy(tmp + pl, p, n);
    size_t len = (size_t)pl + n;
    if (len == 0 || tmp[len - 1] != '\n')
        tmp[len++] = '\n';
    write_all(s ? 2 : 1, tmp, len); /* one write per line keeps lines of different ranks whole */
    free(tmp);
}

/* Reads what is there; prints complete lines with the prefix. Returns 0 at EOF. */
static int pump(rank_proc *r, int s)
{
    char buf[8192];
    ssize_t k = read(r->fd[s], buf, sizeof buf);
    if (k < 0 && (errno == EINTR || errno == EAGAIN))
        return 1;
    if (k <= 0) {
        if (r->line_len[s])
            emit(r, s, r->line[s], r->line_len[s]);
        r->line_len[s] = 0;
        close(r->fd[s]);
        r->fd[s] = -1;
        return 0;
    }
    for (ssize_t i = 0; i < k; i++) {
        if (!r->line[s]) {
            r->line[s] = malloc(LINE_MAX_BYTES);
            if (!r->line[s]) {
                write_all(s ? 2 : 1, buf, (size_t)k);
                return 1;
            }
        }
        r->line[s][r->line_len[s]++] = buf[i];
        if (buf[i] == '\n' || r->line_len[s] == LINE_MAX_BYTES) {
            emit(r, s, r->line[s], r->line_len[s]);
            r->line_len[s] = 0;
        }
    }
    return 1;
}

/* 130 or 143: the rank stopped on a SIGINT or SIGTERM of its own (its signal handling) */
static int stop_exit(int status)
{
    return WIFEXITED(status) && (WEXITSTATUS(status) == 128 + SIGINT || WEXITSTATUS(status) == 128 + SIGTERM);
}

static void signal_all(rank_proc *p, int n, int sig)
{
    for (int i = 0; i < n; i++)
        if (p[i].pid > 0 && !p[i].exited)
            kill(-p[i].pid, sig); /* the rank's process group: the rank and what it started */
}

/* A rank that was killed (or ended without closing its communicator) leaves the shm provider's
 * region in /dev/shm, named pipetrain-PID-... after it (comm/fabric.c), and no survivor may be left
 * to remove it; the launcher does, once the rank is reaped and its pid is not in use again. */
static void unlink_regions(pid_t pid)
{
    if (kill(pid, 0) == 0 || errno != ESRCH)
        return;
    char prefix[32];
    snprintf(prefix, sizeof prefix, "pipetrain-%d-", (int)pid);
    DIR *d = opendir("/dev/shm");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            (void)shm_unlink(e->d_name);
    closedir(d);
}

static pid_t spawn(const pt_launch_opts *o, int local, const char *addr, int port, char *const argv[], int out[2],
                   int err_pipe[2], pid_t parent)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* child */
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127); /* the launcher died before we got here */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    dup2(out[1], 1);
    dup2(err_pipe[1], 2);
    close(out[0]);
    close(out[1]);
    close(err_pipe[0]);
    close(err_pipe[1]);
    int nodes = o->nodes > 0 ? o->nodes : 1;
    char v[64];
    snprintf(v, sizeof v, "%d", o->node_rank * o->nproc + local);
    setenv("RANK", v, 1);
    snprintf(v, sizeof v, "%d", nodes * o->nproc);
    setenv("WORLD_SIZE", v, 1);
    snprintf(v, sizeof v, "%d", local);
    setenv("LOCAL_RANK", v, 1);
    snprintf(v, sizeof v, "%d", o->nproc);
    setenv("LOCAL_WORLD_SIZE", v, 1);
    setenv("MASTER_ADDR", addr, 1);
    snprintf(v, sizeof v, "%d", port);
    setenv("MASTER_PORT", v, 1);
    setenv("IPATH_NO_BACKTRACE", "1", 1);
    execvp(argv[0], argv);
    char msg[512];
    int n = snprintf(msg, sizeof msg, "cannot run %s: %s\n", argv[0], strerror(errno));
    write_all(2, msg, (size_t)n);
    _exit(127);
}

pt_status pt_launch(const pt_launch_opts *o, char *const argv[], int *exit_code)
{
    if (exit_code)
        *exit_code = 1;
    if (o && o->failure)
        *o->failure = (pt_launch_failure){ .rank = -1, .exit_status = -1 };
    if (!o || !argv || !argv[0])
        return pt_fail(PT_EINVAL, "launch: no command given; put it after --");
    int nodes = o->nodes > 0 ? o->nodes : 1;
    if (o->nproc < 1 || (long)o->nproc * nodes > PT_COMM_MAX_RANKS)
        return pt_fail(PT_EINVAL, "launch: --nproc %d: need 1..%d ranks in all", o->nproc, PT_COMM_MAX_RANKS);
    if (o->node_rank < 0 || o->node_rank >= nodes)
        return pt_fail(PT_EINVAL, "launch: --node-rank %d is not in 0..%d", o->node_rank, nodes - 1);
    char addr[256];
    int port;
    if (o->master) {
        const char *colon = strrchr(o->master, ':');
        char *end = NULL;
        long pv = colon ? strtol(colon + 1, &end, 10) : 0;
        if (!colon || colon == o->master || !end || *end || pv < 1 || pv > 65535 ||
            (size_t)(colon - o->master) >= sizeof addr)
            return pt_fail(PT_EINVAL, "launch: --master %s: expected ADDR:PORT", o->master);
        memcpy(addr, o->master, (size_t)(colon - o->master));
        addr[colon - o->master] = 0;
        if (addr[0] == '[' && addr[strlen(addr) - 1] == ']') { /* [v6]:port */
            memmove(addr, addr + 1, strlen(addr));
            addr[strlen(addr) - 1] = 0;
        }
        port = (int)pv;
    } else {
        if (nodes > 1)
            return pt_fail(PT_EINVAL, "launch: --nodes %d needs --master ADDR:PORT (rank 0's node, the same on every "
                                      "node)", nodes);
        snprintf(addr, sizeof addr, "127.0.0.1");
        port = free_port();
        if (port < 0)
            return pt_fail(PT_EIO, "launch: cannot find a free TCP port: %s; pass --master 127.0.0.1:PORT",
                           strerror(errno));
    }
    int n = o->nproc;
    rank_proc *p = calloc((size_t)n, sizeof *p);
    if (!p)
        return pt_fail(PT_ENOMEM, "launch: out of memory for %d ranks", n);
    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        free(p);
        return pt_fail(PT_EIO, "launch: pipe: %s", strerror(errno));
    }
    struct sigaction sa, old_int, old_term, old_chld;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGCHLD, &sa, &old_chld);

    pt_status st = PT_OK;
    pid_t me = getpid();
    int started = 0;
    for (int i = 0; i < n; i++) {
        int out[2], err[2];
        p[i].rank = o->node_rank * n + i;
        p[i].fd[0] = p[i].fd[1] = -1;
        if (pipe2(out, O_CLOEXEC) < 0)
            goto spawn_fail;
        if (pipe2(err, O_CLOEXEC) < 0) {
            close(out[0]);
            close(out[1]);
            goto spawn_fail;
        }
        p[i].pid = spawn(o, i, addr, port, argv, out, err, me);
        close(out[1]);
        close(err[1]);
        p[i].fd[0] = out[0];
        p[i].fd[1] = err[0];
        if (p[i].pid < 0)
            goto spawn_fail;
        started++;
        continue;
    spawn_fail:
        st = pt_fail(PT_EIO, "launch: cannot start rank %d: %s", p[i].rank, strerror(errno));
        break;
    }

    int n_alive = started, first_bad = -1, forwarded_sig = 0, killed_on = 0, first_stop = -1;
    int64_t forwarded_ns = 0;
    int64_t kill_at = st != PT_OK ? pt_now_ns() + GRACE_MS * 1000000LL : INT64_MAX;
    if (st != PT_OK)
        signal_all(p, started, SIGTERM);
    int n_watch = o->on_watch && o->watch_fds ? o->n_watch : 0, watch_killed = 0;
    struct pollfd *pfds = calloc((size_t)(2 * n + 1 + n_watch), sizeof *pfds);
    unsigned char *watching = calloc((size_t)n_watch + 1, 1);
    for (int w = 0; watching && w < n_watch; w++)
        watching[w] = o->watch_fds[w] >= 0;
    if (!pfds || !watching) {
        free(pfds);
        pfds = NULL;
        signal_all(p, started, SIGKILL);
        st = pt_fail(PT_ENOMEM, "launch: out of memory");
    }
    int64_t drain_until = INT64_MAX;
    while (pfds) {
        int open_fds = 0;
        for (int i = 0; i < started; i++)
            for (int s = 0; s < 2; s++)
                open_fds += p[i].fd[s] >= 0;
        if (n_alive == 0) {
            if (drain_until == INT64_MAX)
                drain_until = pt_now_ns() + 1000000000LL; /* a rank's children may hold its pipes */
            if (open_fds == 0 || pt_now_ns() >= drain_until)
                break;
        }
        int k = 0;
        pfds[k++] = (struct pollfd){ sig_pipe[0], POLLIN, 0 };
        for (int i = 0; i < started; i++)
            for (int s = 0; s < 2; s++)
                if (p[i].fd[s] >= 0)
                    pfds[k++] = (struct pollfd){ p[i].fd[s], POLLIN, 0 };
        int k_ranks = k;
        for (int w = 0; w < n_watch && n_alive > 0; w++)
            if (watching[w])
                pfds[k++] = (struct pollfd){ o->watch_fds[w], POLLIN, 0 };
        int timeout = 200;
        if (kill_at != INT64_MAX) {
            int64_t left = (kill_at - pt_now_ns()) / 1000000;
            timeout = left < 0 ? 0 : (left < timeout ? (int)left : timeout);
        }
        int pr = poll(pfds, (nfds_t)k, timeout);
        if (pr < 0 && errno != EINTR)
            break;
        if (pr > 0) {
            if (pfds[0].revents & POLLIN) {
                unsigned char sigs[64];
                ssize_t got = read(sig_pipe[0], sigs, sizeof sigs);
                for (ssize_t j = 0; j < got; j++) {
                    if (sigs[j] != SIGINT && sigs[j] != SIGTERM)
                        continue;
                    int64_t now = pt_now_ns();
                    if (!forwarded_sig) {
                        forwarded_sig = sigs[j];
                        forwarded_ns = now;
                        signal_all(p, started, sigs[j]);
                        char msg[192];
                        int ml = snprintf(msg, sizeof msg,
                                          "launch: %s passed on to the ranks: they stop after the step in "
                                          "progress; a second signal ends them at once\n",
                                          sigs[j] == SIGINT ? "SIGINT" : "SIGTERM");
                        write_all(2, msg, (size_t)ml);
                    } else if (!killed_on && now - forwarded_ns >= SECOND_SIGNAL_NS) {
                        killed_on = sigs[j];
                        signal_all(p, started, SIGKILL);
                        kill_at = now + 3600 * 1000000000LL; /* KILL once; reaping follows */
                    }
                }
            }
            for (int j = k_ranks; j < k; j++) {
                if (!(pfds[j].revents & (POLLIN | POLLHUP | POLLERR)))
                    continue;
                int r = o->on_watch(o->watch_ctx, pfds[j].fd);
                for (int w = 0; w < n_watch && (r & 2); w++)
                    if (o->watch_fds[w] == pfds[j].fd)
                        watching[w] = 0;
                if ((r & 1) && !watch_killed && first_bad < 0) {
                    watch_killed = 1;
                    signal_all(p, started, SIGKILL);
                    kill_at = pt_now_ns() + 3600 * 1000000000LL;
                }
            }
            for (int j = 1; j < k_ranks; j++) {
                if (!(pfds[j].revents & (POLLIN | POLLHUP | POLLERR)))
                    continue;
                for (int i = 0; i < started; i++)
                    for (int s = 0; s < 2; s++)
                        if (p[i].fd[s] == pfds[j].fd)
                            pump(&p[i], s);
            }
        }
        /* reap */
        for (int i = 0; i < started; i++) {
            if (p[i].exited)
                continue;
            int status;
            pid_t w = waitpid(p[i].pid, &status, WNOHANG);
            if (w != p[i].pid)
                continue;
            p[i].exited = 1;
            p[i].status = status;
            n_alive--;
            int stopped = stop_exit(status);
            if (stopped && first_stop < 0)
                first_stop = i;
            if ((stopped || forwarded_sig) && kill_at == INT64_MAX)
                kill_at = pt_now_ns() + STOP_GRACE_MS * 1000000LL; /* the others are ending too */
            int bad = !(WIFEXITED(status) && WEXITSTATUS(status) == 0) && !stopped;
            if (bad && first_bad < 0 && !killed_on && !watch_killed) {
                first_bad = i;
                if (o->failure)
                    *o->failure = (pt_launch_failure){
                        .rank = p[i].rank, .exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                        .signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0, .at_ns = pt_now_ns(),
                        .after_signal = forwarded_sig != 0 };
                if (o->kill_on_failure)
                    signal_all(p, started, SIGKILL);
                else
                    signal_all(p, started, SIGTERM);
                if (kill_at > pt_now_ns() + GRACE_MS * 1000000LL) /* also when a stop's 60 s were running */
                    kill_at = pt_now_ns() + GRACE_MS * 1000000LL;
            }
        }
        if (kill_at != INT64_MAX && pt_now_ns() >= kill_at && n_alive > 0) {
            signal_all(p, started, SIGKILL);
            kill_at = pt_now_ns() + 3600 * 1000000000LL; /* KILL once; reaping follows */
        }
    }
    free(pfds);
    free(watching);
    /* a rank still not reaped (poll failed): make sure nothing outlives us */
    for (int i = 0; i < started; i++)
        if (!p[i].exited) {
            kill(-p[i].pid, SIGKILL);
            waitpid(p[i].pid, &p[i].status, 0);
            p[i].exited = 1;
        }
    for (int i = 0; i < started; i++)
        unlink_regions(p[i].pid);
    if (st == PT_OK && watch_killed && first_bad < 0) {
        if (exit_code)
            *exit_code = 128 + SIGKILL;
        if (o->failure)
            o->failure->stopped = 1;
        st = pt_fail(PT_ECOMM, "the ranks were stopped: the job failed on another node");
    } else if (st == PT_OK && killed_on) {
        int sig = forwarded_sig ? forwarded_sig : killed_on;
        if (exit_code)
            *exit_code = 128 + sig;
        st = pt_fail(PT_ECOMM, "a second %s: the ranks were killed at once, without saving; a checkpoint written "
                               "before stays usable with --resume",
                     killed_on == SIGINT ? "SIGINT" : "SIGTERM");
    } else if (st == PT_OK && first_bad >= 0) {
        int s = p[first_bad].status;
        int code = WIFEXITED(s) ? WEXITSTATUS(s) : 128 + WTERMSIG(s);
        if (exit_code)
            *exit_code = code;
        if (WIFEXITED(s))
            st = pt_fail(PT_ECOMM, "rank %d exited with status %d%s; the other ranks were stopped", p[first_bad].rank,
                         code, forwarded_sig ? " after the launcher forwarded a signal" : "");
        else
            st = pt_fail(PT_ECOMM, "rank %d was killed by signal %d (%s)%s; the other ranks were stopped",
                         p[first_bad].rank, WTERMSIG(s), strsignal(WTERMSIG(s)),
                         forwarded_sig ? ", forwarded by the launcher" : "");
    } else if (st == PT_OK && first_stop >= 0 && exit_code) {
        *exit_code = WEXITSTATUS(p[first_stop].status); /* 130 or 143: the ranks stopped on a signal */
    } else if (st == PT_OK && exit_code) {
        *exit_code = 0;
    }
    for (int i = 0; i < n; i++) {
        for (int s = 0; s < 2; s++) {
            if (p[i].fd[s] >= 0)
                close(p[i].fd[s]);
            free(p[i].line[s]);
        }
    }
    free(p);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGCHLD, &old_chld, NULL);
    close(sig_pipe[0]);
    close(sig_pipe[1]);
    sig_pipe[0] = sig_pipe[1] = -1;
    return st;
}
