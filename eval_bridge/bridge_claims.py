"""Claims on the eval bridge's queue: which worker is evaluating which checkpoint, and whether it still is.

A claim is `trust_eval/claims/<key>`: a JSON record of the claiming worker (pid, host, the process's start time,
when it claimed), created whole and exclusively: the record is written to a temporary file which is then
hard-linked onto the claim's name, so creating fails if the claim exists (like `O_EXCL`) and a reader never sees
half a record. A claim is held while its worker lives:

- same host, the pid not running (or a zombie, or running but started at another time: a reused pid): the worker
  is dead, and the next worker takes the claim back and evaluates the checkpoint again;
- another host: liveness cannot be checked from here, so the claim is left alone unless it is older than
  `stale_after_s` (None: never);
- no readable record (an older version's empty claim): likewise, by the claim file's age.

Taking back is exclusive too: the taker first creates `retakes/<key>-<id of the claim it judged dead>`, so two
workers that both saw the same dead claim never both evaluate the checkpoint.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from eval_bridge.files import write_atomically

log = logging.getLogger(__name__)

HELD, DEAD, FOREIGN, UNKNOWN = "held", "dead", "foreign", "unknown"


def process_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (Linux /proc), None where unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the fields after the command name start at 3


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return False


def alive(pid: int, started: str | None = None) -> bool:
    """Whether process `pid` of this host runs (and, when `started` is given, is the process started then)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    if _zombie(pid):  # killed, not yet reaped: its parent died too, or has not waited yet
        return False
    now = process_start(pid)
    return started is None or now is None or now == started


def owner_record() -> dict:
    """The claim record of this process."""
    pid = os.getpid()
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "started": process_start(pid),
        "claimed_at": time.time(),
        "token": uuid.uuid4().hex,
    }


@dataclass(frozen=True)
class Claim:
    """A claim file as read, and what it says about its worker.

    Attributes:
        path: the claim file.
        owner: its record (pid, host, started, claimed_at), None when it has no readable record.
        state: HELD (its worker runs), DEAD (its worker is gone), FOREIGN (another host's), UNKNOWN (no record).
        age_s: seconds since it was claimed (the file's age when there is no record).
        identity: what distinguishes this claim from a later claim on the same checkpoint.
    """

    path: Path
    owner: dict | None
    state: str
    age_s: float
    identity: str

    def takeable(self, stale_after_s: float | None) -> bool:
        """Whether a worker may take the claim back: its worker is dead, or it cannot be checked and is stale."""
        if self.state == DEAD:
            return True
        if self.state in (FOREIGN, UNKNOWN):
            return stale_after_s is not None and self.age_s > stale_after_s
        return False

    def describe(self) -> str:
        """Who holds the claim, and since when, in words."""
        if self.owner is None:
            return f"claimed {self.age_s:.0f} s ago (the claim file {self.path} names no worker)"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.owner.get("claimed_at", 0)))
        who = f"worker pid {self.owner.get('pid')} on {self.owner.get('host')} since {since}"
        return {
            HELD: f"being evaluated by {who}",
            DEAD: f"its {who} died before finishing it",
            FOREIGN: f"claimed by {who}, another host: cannot check from here whether it still runs",
        }[self.state]


def inspect(path: Path) -> Claim | None:
    """The claim at `path`, None if there is none."""
    try:
        raw = path.read_bytes()
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        owner = json.loads(raw)
        if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
            owner = None
    except (ValueError, UnicodeDecodeError):
        owner = None
    identity = hashlib.sha1(raw + str(mtime).encode()).hexdigest()[:16]
    if owner is None:
        return Claim(path, None, UNKNOWN, time.time() - mtime, identity)
    age = time.time() - float(owner.get("claimed_at", mtime))
    if owner.get("host") != socket.gethostname():
        state = FOREIGN
    else:
        state = HELD if alive(owner["pid"], owner.get("started")) else DEAD
    return Claim(path, owner, state, age, identity)


def create_exclusively(path: Path, text: str) -> bool:
    """Create `path` holding `text`, whole, unless it exists (then False): a hard link of a finished temporary
    file, so no reader sees half of it; on file systems without hard links, `O_EXCL` creation then a write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS):
            raise
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def take_back(root: Path, key: str, claim: Claim, record: str) -> bool:
    """Replace the dead or stale `claim` on `key` with `record`, unless another worker took it back first."""
    if not create_exclusively(root / "retakes" / f"{key}-{claim.identity}", record):
        return False
    log.warning("taking back the claim on %s: %s", key, claim.describe())
    write_atomically(claim.path, lambda tmp: tmp.write_text(record))
    return True


def claim(root: Path, key: str, *, stale_after_s: float | None = None) -> bool:
    """Claim the queue entry `key` for this process (under the bridge directory `root`); True if it is now ours.

    An existing claim is taken back when its worker is dead, or when it cannot be checked and is older than
    `stale_after_s` seconds."""
    path = root / "claims" / key
    record = json.dumps(owner_record())
    if create_exclusively(path, record):
        return True
    current = inspect(path)
    if current is None:  # removed by hand since: claim afresh
        return create_exclusively(path, record)
    return current.takeable(stale_after_s) and take_back(root, key, current, record)
