"""A child ``vpstudy train`` that dies with the process that started it.

The study runner (a thread here, or a Dask worker) starts each run as a child process and
names itself in ``$VPSTUDY_PARENT_PID``. When that process dies (a Dask worker killed, a node
lost, the runner SIGKILLed) the child is re-parented; :func:`exit_with_parent` sees it within
``POLL_S`` seconds and sends the child SIGTERM, which marks its run ``interrupted`` and
releases the lock, so a rescheduled task can resume the run instead of finding it "in use".
"""

from __future__ import annotations

import os
import signal
import threading
import time

PARENT_ENV = "VPSTUDY_PARENT_PID"
POLL_S = 1.0


def child_env() -> dict[str, str]:
    """The environment entry that ties a child to this process."""
    return {PARENT_ENV: str(os.getpid())}


def exit_with_parent() -> None:
    """If ``$VPSTUDY_PARENT_PID`` names this process's parent, SIGTERM this process once that
    parent is gone (checked every ``POLL_S`` s by a daemon thread); if it is gone already, now."""
    named = os.environ.get(PARENT_ENV)
    if not named or not named.isdigit():
        return
    parent = int(named)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_S)
        os.kill(os.getpid(), signal.SIGTERM)

    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)
        return
    threading.Thread(target=watch, name="exit with parent", daemon=True).start()
