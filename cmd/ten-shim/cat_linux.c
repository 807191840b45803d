//go:build linux && cgo

// The fast path of `ten-shim cat`, run before the Go runtime starts.
//
// `ten-shim cat` runs in front of a directly run app at every wake: it gives
// the app its two journal streams (stdout at info, stderr at err) and execs
// it. In Go that costs the runtime's start, 1.7 ms of CPU or more per wake on
// a small VM, for a few system calls. This constructor runs when the dynamic
// loader (or a static binary's libc) initialises the program, before Go's
// runtime: for exactly the command line that ten writes into a unit,
//
//	ten-shim cat --instance=I --identifier=NAME [--journal=PATH] -- APP [ARGS...]
//
// it opens the two streams and execs APP, found as Go's exec.LookPath finds
// it. Anything else, and any failure on the way, returns here without a
// trace (streams closed, stdout and stderr as they were), and the Go code of
// `ten-shim cat` (shim.Cat) does the same job and reports what went wrong.
// The one exception is an execve that fails after the streams took stdout
// and stderr: the Go code then starts on the streams, and its error goes to
// the journal at priority err, as it would have anyway.

#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

// ten_cat_journal is journald's stream socket, shim.JournalStdout.
static const char ten_cat_journal[] = "/run/systemd/journal/stdout";

// ten_cat_prefix returns what follows prefix in s, or NULL.
static const char *ten_cat_prefix(const char *s, const char *prefix) {
	size_t n = strlen(prefix);
	return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

// ten_cat_write writes all of buf to fd; 0 or -1.
static int ten_cat_write(int fd, const char *buf, size_t len) {
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

// ten_cat_stream opens a stream to the journal at path, logged under
// identifier at priority, as shim.JournalStream does: the same header.
// It returns the descriptor (close-on-exec) or -1.
static int ten_cat_stream(const char *path, const char *identifier, int priority) {
	struct sockaddr_un sa;
	char hdr[512];
	int fd, n;

	if (strlen(path) >= sizeof sa.sun_path)
		return -1;
	// identifier, unit id (empty: from the cgroup), priority, level prefix
	// on, no forwarding to syslog, kmsg or the console.
	n = snprintf(hdr, sizeof hdr, "%s\n\n%d\n1\n0\n0\n0\n", identifier, priority);
	if (n < 0 || (size_t)n >= sizeof hdr)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	strcpy(sa.sun_path, path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    ten_cat_write(fd, hdr, (size_t)n) < 0) {
		close(fd);
		return -1;
	}
	shutdown(fd, SHUT_RD);
	return fd;
}

// ten_cat_executable reports whether path is a file this process may
// execute (not a directory, an execute bit set, execute access), as Go's
// exec.LookPath checks it.
static int ten_cat_executable(const char *path) {
	struct stat st;
	if (stat(path, &st) < 0 || S_ISDIR(st.st_mode) || (st.st_mode & 0111) == 0)
		return 0;
	return access(path, X_OK) == 0;
}

// ten_cat_lookpath finds name as exec.LookPath does: as it is when it has
// a slash, else in the directories of PATH (from envp) in order. It returns 0 with the
// path in out, or -1 where Go should decide: not found, a relative or empty
// directory in PATH before a match (exec.ErrDot), a path too long.
static int ten_cat_lookpath(const char *name, char **envp, char *out, size_t outlen) {
	const char *path, *dir, *end;

	if (name[0] == '\0')
		return -1;
	if (strchr(name, '/') != NULL) {
		if (strlen(name) >= outlen || !ten_cat_executable(name))
			return -1;
		strcpy(out, name);
		return 0;
	}
	path = NULL;
	for (char **e = envp; e != NULL && *e != NULL; e++)
		if (strncmp(*e, "PATH=", 5) == 0) {
			path = *e + 5;
			break;
		}
	if (path == NULL)
		return -1;
	for (dir = path;; dir = end + 1) {
		size_t dlen;
		end = strchr(dir, ':');
		if (end == NULL)
			end = dir + strlen(dir);
		dlen = (size_t)(end - dir);
		if (dlen == 0 || dir[0] != '/')
			return -1;
		if (dlen + 1 + strlen(name) < outlen) {
			memcpy(out, dir, dlen);
			out[dlen] = '/';
			strcpy(out + dlen + 1, name);
			if (ten_cat_executable(out))
				return 0;
		}
		if (*end == '\0')
			return -1;
	}
}

__attribute__((constructor)) static void ten_cat_fast(int argc, char **argv, char **envp) {
	const char *identifier, *journal = ten_cat_journal;
	char app[4096];
	int arg = 4, out, err;

	if (argc < 6 || argv == NULL || strcmp(argv[1], "cat") != 0 ||
	    ten_cat_prefix(argv[2], "--instance=") == NULL)
		return;
	identifier = ten_cat_prefix(argv[3], "--identifier=");
	if (identifier == NULL || identifier[0] == '\0' || strchr(identifier, '\n') != NULL)
		return;
	if (ten_cat_prefix(argv[arg], "--journal=") != NULL) {
		journal = ten_cat_prefix(argv[arg], "--journal=");
		arg++;
	}
	if (arg + 1 >= argc || strcmp(argv[arg], "--") != 0)
		return;
	arg++;
	if (ten_cat_lookpath(argv[arg], envp, app, sizeof app) < 0)
		return;
	out = ten_cat_stream(journal, identifier, 6);
	if (out < 0)
		return;
	err = ten_cat_stream(journal, identifier, 3);
	if (err < 0) {
		close(out);
		return;
	}
	// systemd gives a service a stdout and a stderr, so the streams are 3
	// or above; where one is not, Go's code decides. dup2 clears
	// close-on-exec on the copy.
	if (out <= 2 || err <= 2 || dup2(out, 1) < 0 || dup2(err, 2) < 0) {
		close(out);
		close(err);
		return;
	}
	close(out);
	close(err);
	execve(app, argv + arg, envp);
	// Failed: the Go code of `ten-shim cat` tries again and says why.
}
