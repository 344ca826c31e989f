"""SMTP connections kept open across messages (notifications/providers/smtp_sessions.py) in a
forked process: the child never uses its parent's kept connection, even when another thread of
the parent held the pool's lock at the fork (only the forking thread goes on in the child, so a
lock it held stays held there), and the parent's connection is left open for the parent."""

import os
import signal
import threading

from notifications.providers import smtp_sessions

from .test_smtp_sessions import Sent, provider, smtp_server  # noqa: F401  (the fixture)


def test_a_child_forked_while_the_pool_is_locked_sends_on_a_connection_of_its_own(smtp_server):  # noqa: F811
    server, port = smtp_server
    sent, smtp = Sent(), provider(port)
    sent.send(smtp, 1)  # connection 1, kept
    held, release = threading.Event(), threading.Event()

    def hold_the_pool() -> None:  # as the reaper's scan or another thread's take does
        with smtp_sessions._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_pool)
    holder.start()
    assert held.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: its first email, then out (a deadlock ends at the alarm)
        code = 1
        try:
            signal.alarm(10)
            sent.send(smtp, 2)
            code = 0
        finally:
            os._exit(code)
    release.set()
    holder.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # -14: SIGALRM, the child hung on the lock
    sent.send(smtp, 3)
    assert server.of("m2") == [2]  # the child's own connection
    assert server.of("m3") == [1]  # the parent's, still open: the child did not QUIT it
    assert 1 not in server.quits
