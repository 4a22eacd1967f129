"""What the shared manifests (``pgvector.py``, ``milvus.py``) share about runs and their leases.

A run is named ``host:pid:random`` (:func:`new_owner`). Its leases are live while its heartbeat is
fresh (each backend stores and renews that its own way) and, on the same host, while its pid
exists (:func:`alive`): a run killed with SIGKILL frees its files at once on its own host.
:class:`LeaseHolder` stops the renewer thread when a manifest closes.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading

OPEN: set[str] = set()  # owners of the manifests open in this process


def new_owner() -> str:
    """A fresh run name, registered as open in this process until :meth:`LeaseHolder.end_leases`."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    OPEN.add(owner)
    return owner


def alive(owner: str | None) -> bool:
    """Whether the run named ``owner`` may still hold its lease (only a pid on this host can be checked)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    if host != socket.gethostname():
        return True
    pid = rest.split(":")[0]
    if pid == str(os.getpid()):
        return owner in OPEN  # an earlier run in this process that ended without releasing (an outage)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


class LeaseHolder:
    """The owner name and the heartbeat thread's stop signal of one open shared manifest."""

    def _init_leases(self) -> None:
        self.owner = new_owner()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def end_leases(self) -> None:
        """Mark this run closed here and stop its heartbeat (its leases then lapse or are released)."""
        OPEN.discard(self.owner)
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
