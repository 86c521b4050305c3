// fork + exec for the restic child, outside Foundation (see tosca_spawn.c).
#ifndef TOSCA_SPAWN_H
#define TOSCA_SPAWN_H
#include <sys/types.h>

/// Starts `path` with `argv` and `envp`: stdin, stdout and stderr from the three
/// descriptors, no other descriptor, `cwd` as its folder (when not NULL), the default
/// SIGPIPE and an empty signal mask, and SIGKILL when the thread that started it dies.
/// Returns the pid, or -1 with errno.
pid_t tosca_spawn(const char *path, char *const argv[], char *const envp[], const char *cwd,
                  int in_fd, int out_fd, int err_fd);
#endif
