"""The files of a run directory, writing them atomically, and the lock of the process training it.

A run lives in ``runs/<name>/``::

    config.json          the resolved configuration (algorithm, environment, seeds, steps, sweep, versions):
                         :mod:`scg.algorithms.run_config`
    metrics.jsonl        one JSON line per iteration per seed (per sweep point too), appended and flushed after
                         every chunk: :mod:`scg.algorithms.metrics_log`
    checkpoint.npz       the whole training state (all seeds) at the last chunk boundary:
                         :mod:`scg.algorithms.checkpoint`
    params.npz           the final parameters, one array per leaf path, leading seed axis
    learning_curve.png   mean return vs environment steps, mean ± s.e. over seeds: :mod:`scg.algorithms.plots`
    train.lock           while a process trains the run: its process id, host and start time (:class:`RunLock`)

Every file but ``metrics.jsonl`` is replaced whole by :func:`atomic_write`, so a crash
leaves either the old or the new version, never a torn one; the temporary file a
killed process leaves behind is removed by the next process that trains the run
(:func:`remove_stale_temporaries`).
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # no flock (Windows): runs are not locked
    fcntl = None

CONFIG, METRICS, CHECKPOINT = "config.json", "metrics.jsonl", "checkpoint.npz"
PARAMS, CURVE, LOCK = "params.npz", "learning_curve.png", "train.lock"
RUN_FILES = (CONFIG, METRICS, CHECKPOINT, PARAMS, CURVE)


class RunError(ValueError):
    """A run directory that cannot be used as asked; the message is one line naming the file or process."""


def _temporary(path: Path) -> tuple[int, Path]:
    """Create ``.<name>.<pid>.<random>.tmp`` beside ``path`` with mode 0o666, which the kernel narrows by the umask."""
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue


def atomic_write(path: Path, write) -> None:
    """Write through ``write(file)`` to a temporary file in the same folder, then ``os.replace`` it into place.

    The file gets the mode of any new file (0o666 less the umask). An ``OSError`` (a full disk, a read-only
    folder) is raised with ``filename`` set to ``path``, and the temporary file is removed.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = _temporary(path)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        if isinstance(err, OSError) and err.errno is not None:
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise


def write_json(path: Path, obj) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


_RECORDED = {"algo": str, "env": str, "seeds": int, "steps": int, "seed": int, "chunk": int, "algorithm_config": dict}


def read_config(run_dir) -> dict:
    """A run's ``config.json``, checked to be a JSON object with the keys and value types a run records.

    Raises :class:`RunError` naming the file and what is wrong with it (the values themselves are checked by
    :func:`scg.algorithms.run_config.load`).
    """
    path = Path(run_dir) / CONFIG
    fix = "restore it from a copy of the run, or train a new run"
    if not path.is_file():
        raise RunError(f"{run_dir} is not a run directory (no {CONFIG})")
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as err:
        raise RunError(f"cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise RunError(f"{path} is not text (not UTF-8); {fix}") from None
    except json.JSONDecodeError as err:
        where = f"line {err.lineno}, column {err.colno}"
        raise RunError(f"{path} is not valid JSON ({err.msg} at {where}); {fix}") from None
    if not isinstance(config, dict):
        raise RunError(f"{path} holds a JSON {type(config).__name__}, not an object; {fix}")
    missing = [k for k in _RECORDED if k not in config]
    if missing:
        raise RunError(f"{path} lacks {', '.join(missing)}; {fix}")
    for key, kind in _RECORDED.items():
        value = config[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            kind_name = {str: "a string", int: "an integer", dict: "an object"}[kind]
            raise RunError(f"{path}: {key} must be {kind_name}, got {value!r}; {fix}")
    return config


def remove_stale_temporaries(run_dir) -> list[Path]:
    """Remove what interrupted :func:`atomic_write` calls left of the run files; call it holding the run's lock."""
    removed = []
    for name in RUN_FILES:
        for tmp in Path(run_dir).glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _read_holder(fd: int) -> dict:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode())
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def describe_holder(info: dict) -> str:
    """``process 1234 on host h (since 2024-...)`` from a lock's contents."""
    pid, host, since = info.get("pid", "?"), info.get("host"), info.get("started")
    return f"process {pid}" + (f" on {host}" if host else "") + (f" (since {since})" if since else "")


def lock_holder(run_dir) -> dict | None:
    """The contents of ``run_dir``'s lock if a live process holds it, else ``None`` (no lock, or a stale one)."""
    path = Path(run_dir) / LOCK
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_holder(fd)
    except OSError:  # a file system without locks
        return None
    finally:
        os.close(fd)  # closing releases a shared lock just taken
    return None


class RunLock:
    """``train.lock`` in a run directory while a process trains it: ``with RunLock(run_dir): ...``.

    The lock is an ``flock`` on the file, which the operating system drops when the process dies however it dies
    (SIGKILL included); a lock file that no live process holds is stale and is taken over. The file records the
    holder's process id, host and start time for the message of :class:`RunError` that a second process gets, and
    is removed on exit (normally, by an exception or by Ctrl-C). Without ``flock`` (Windows) nothing is locked.
    """

    def __init__(self, run_dir):
        self.path, self.fd = Path(run_dir) / LOCK, None

    def acquire(self) -> "RunLock":
        if fcntl is None:
            return self
        for attempt in range(20):  # another process may be creating, probing or removing the file
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as err:
                raise RunError(f"cannot create {self.path}: {err.strerror}; training needs a writable run folder")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                info = _read_holder(fd)
                os.close(fd)
                if info.get("pid") is not None or attempt == 19:
                    raise RunError(f"{self.path.parent} is being trained by {describe_holder(info)}; "
                                   "wait for it to finish or stop that process") from None
                time.sleep(0.05)
                continue
            except OSError:  # a file system without locks: train unlocked
                os.close(fd)
                return self
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the file was removed (its holder finished) between our open and flock: try again
                os.close(fd)
                continue
            info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
            self.fd = fd
            return self
        raise RunError(f"could not lock {self.path}; try again")

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # while still holding it: a new holder creates a new file
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False
