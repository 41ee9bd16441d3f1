/*
 * pause: the process that holds a pod sandbox's namespaces, like Kubernetes' build/pause/linux/pause.c.
 *
 * It sleeps until SIGINT or SIGTERM (then exits 0) and, as PID 1 of a shared PID namespace,
 * reaps every child that is reparented to it (SIGCHLD). Built with `gcc -static -O2`, so the
 * image needs nothing but this one file.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define VERSION "local"

static void sigdown(int signo) {
  psignal(signo, "Shutting down, got signal");
  exit(0);
}

static void sigreap(int signo) {
  (void)signo;
  int saved = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

static void on(int signo, void (*handler)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = signo == SIGCHLD ? SA_NOCLDSTOP | SA_RESTART : SA_RESTART;
  if (sigaction(signo, &sa, NULL) < 0) {
    fprintf(stderr, "pause: sigaction(%d): %s\n", signo, strerror(errno));
    exit(1);
  }
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-v") == 0) {
      printf("pause.c %s\n", VERSION);
      return 0;
    }
  }

  if (getpid() != 1) {
    /* Not an error: useful for testing, but children are reaped only as PID 1. */
    fprintf(stderr, "Warning: pause should be the first process\n");
  }

  on(SIGINT, sigdown);
  on(SIGTERM, sigdown);
  on(SIGCHLD, sigreap);

  for (;;) {
    pause();
  }
  fprintf(stderr, "Error: infinite loop terminated\n");
  return 42;
}
