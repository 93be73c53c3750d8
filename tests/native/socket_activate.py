#!/usr/bin/env python3
"""A minimal socket-activating supervisor for the tests (what systemd's
ListenStream= or s6-fdholder does): makes a listening TCP socket on
127.0.0.1, prints its port, and runs PROGRAM... with the socket as
descriptor 3 and LISTEN_FDS=1, LISTEN_PID=<the program's pid>,
LISTEN_FDNAMES=test set (sd_listen_fds(3)).

Keeps its own copy of the socket, so the program can be restarted without
the port ever refusing a connection: each line "restart" on stdin sends the
program SIGTERM, waits for it and starts it again; "started PID" is
printed on stdout for every start. At EOF on stdin the program is sent
SIGTERM; the exit status is the last program's (128+N for a signal).

--other-pid: set LISTEN_PID to a pid that is not the program's (the
program must then ignore the activation). --once: run the program once,
wait for it to exit on its own (at most 10 s: then it is killed and the
status is 124), exit with its status (stdin unread)."""
import os, signal, socket, sys

args = sys.argv[1:]
other = once = False
while args and args[0] in ("--other-pid", "--once"):
    if args[0] == "--other-pid":
        other = True
    else:
        once = True
    args = args[1:]

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
s.listen(128)
print(s.getsockname()[1], flush=True)


def start():
    pid = os.fork()
    if pid == 0:
        if s.fileno() != 3:
            os.dup2(s.fileno(), 3)  # dup2 makes the copy inheritable
        else:
            os.set_inheritable(3, True)
        os.environ["LISTEN_FDS"] = "1"
        os.environ["LISTEN_PID"] = str(os.getppid() if other else os.getpid())
        os.environ["LISTEN_FDNAMES"] = "test"
        try:
            os.execvp(args[0], args)
        finally:
            os._exit(127)
    print("started", pid, flush=True)
    return pid


def status(pid):
    _, st = os.waitpid(pid, 0)
    return os.WEXITSTATUS(st) if os.WIFEXITED(st) else 128 + os.WTERMSIG(st)


child = start()
if once:
    def expire(*_):
        os.kill(child, signal.SIGKILL)
        status(child)
        sys.exit(124)
    signal.signal(signal.SIGALRM, expire)
    signal.alarm(10)
    sys.exit(status(child))
for line in sys.stdin:
    if line.strip() != "restart":
        continue
    try:
        os.kill(child, signal.SIGTERM)
    except ProcessLookupError:
        pass
    status(child)
    child = start()
try:
    os.kill(child, signal.SIGTERM)
except ProcessLookupError:
    pass
sys.exit(status(child))
