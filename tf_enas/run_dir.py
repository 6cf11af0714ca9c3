"""A run directory belongs to one configuration and one process.

`RunDirectory` holds a file lock on `<dir>/.lock` for the run's life (a second run on the
same directory is refused; the lock of a killed run is taken over), and keeps the run's
configuration in `<dir>/config.json`: a rerun resumes only with the same configuration,
or one whose growable fields (e.g. epochs, time budget) grew. Files derived from the
search state (derived child, result, model) are written with a stamp of that state and
read back only while the stamp still matches (`write_stamped`, `read_json_if_current`).
"""
from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
from typing import Any, Callable, Iterable

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"
STAMP_SUFFIX = ".stamp.json"
_TRASH_PREFIX = ".trash-"
FRESH_HINT = ("To start fresh, pass --overwrite (deletes the previous run's files in that "
              "directory) or choose a new --output_dir.")


def _write_json(path: str, obj) -> None:
    # tf_enas.files imports keras: imported on first write, so that taking a lock is cheap
    from tf_enas import files
    files.write_json(path, obj)


class RunDirectoryBusy(RuntimeError):
    """Another live process holds the run directory's lock."""


class ConfigMismatch(ValueError):
    """The run directory holds a run made with another configuration."""


def _normalize(obj):
    """`obj` as it reads back from JSON (tuples become lists, numpy scalars numbers)."""
    return json.loads(json.dumps(
        obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict with dotted keys: {"a": {"b": 1}} → {"a.b": 1}."""
    out = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_hash(config: dict) -> str:
    """sha256 (hex) of the configuration's canonical JSON."""
    text = json.dumps(_normalize(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


_ABSENT = object()


def _fmt(v) -> str:
    return "(absent)" if v is _ABSENT else json.dumps(v)


def _grew(old, new) -> bool:
    """True when growable value `new` is larger than `old` (None means unlimited)."""
    def num(v):
        if v is None:
            return math.inf
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError
        return v
    try:
        return num(new) > num(old)
    except TypeError:
        return False


@dataclasses.dataclass(frozen=True)
class ConfigDiff:
    """Field-by-field comparison of a stored and a new configuration (flattened keys)."""

    grown: dict[str, tuple]     # growable fields that grew: key → (old, new)
    changed: dict[str, tuple]   # every other differing field: key → (old, new)


def compare_configs(old: dict, new: dict, growable: Iterable[str] = ()) -> ConfigDiff:
    """Compares two configurations; `growable` names (dotted) fields that may grow."""
    old_f, new_f = flatten(_normalize(old)), flatten(_normalize(new))
    growable = set(growable)
    grown, changed = {}, {}
    for key in sorted(set(old_f) | set(new_f)):
        a, b = old_f.get(key, _ABSENT), new_f.get(key, _ABSENT)
        if a == b:
            continue
        if key in growable and a is not _ABSENT and b is not _ABSENT and _grew(a, b):
            grown[key] = (a, b)
        else:
            changed[key] = (a, b)
    return ConfigDiff(grown, changed)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunDirectory:
    """The output directory of one run: locked for the run's life, one configuration.

    Usage (the lock is held inside the `with`):

        with RunDirectory(output_dir, config.to_json(), growable=("epochs",
                          "time_budget_s"), overwrite=flag) as run:
            run.status   # "new", "resumed" or "overwritten"
            run.grown    # {"epochs": (3, 6)} when growable fields grew (else {})

    Args:
      path: the directory (created when missing).
      config: the run's full configuration, JSON-serializable (nested dicts allowed).
      growable: dotted names of fields that may grow between runs (None = unlimited).
      overwrite: delete the previous run's files first (only in a directory that holds a
        run, i.e. has config.json, or is empty), then start as a new run.
    """

    def __init__(self, path: str, config: dict, growable: Iterable[str] = (),
                 overwrite: bool = False):
        self.path = os.fspath(path)
        self.config = _normalize(config)
        self.growable = tuple(growable)
        self.overwrite = overwrite
        self.status: str | None = None
        self.grown: dict[str, tuple] = {}
        self._fd: int | None = None

    # --- lifetime ------------------------------------------------------------------------
    def __enter__(self) -> "RunDirectory":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> "RunDirectory":
        """Takes the lock, then checks (or writes) the configuration; raises
        RunDirectoryBusy or ConfigMismatch (the lock is released again on error)."""
        self.lock()
        try:
            self._check_config()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Releases the lock (clearing the pid in the lock file)."""
        if getattr(self, "_fd", None) is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        self.close()  # a dropped RunDirectory releases its lock

    @property
    def locked(self) -> bool:
        return self._fd is not None

    # --- lock ----------------------------------------------------------------------------
    def lock(self) -> None:
        """flock on <dir>/.lock, holding this process's pid; RunDirectoryBusy if held."""
        if self._fd is not None:
            return
        os.makedirs(self.path, exist_ok=True)
        lock_path = os.path.join(self.path, LOCK_FILE)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = self._read_pid(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OSError(e.errno, f"cannot lock {lock_path}: {e.strerror} (the "
                              "output dir's filesystem may not support file locks)") from e
            if holder is None:
                who = "another process"
            elif holder == os.getpid():
                who = f"pid {holder} (this process)"
            elif _pid_alive(holder):
                who = f"pid {holder}"
            else:
                who = f"pid {holder}, which has exited but left a child process holding it"
            raise RunDirectoryBusy(
                f"output dir {self.path} is in use by another run ({who} holds "
                f"{lock_path}); two runs cannot share an output dir: wait for that run to "
                "finish, or choose another --output_dir") from None
        previous = self._read_pid(fd)
        if previous is not None and previous != os.getpid():
            state = ("is running but no longer holds it" if _pid_alive(previous)
                     else "is no longer running")
            log.warning("taking over the stale lock %s of pid %d, which %s (its run was "
                        "killed)", lock_path, previous, state)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        self._fd = fd

    @staticmethod
    def _read_pid(fd: int) -> int | None:
        try:
            return int(os.pread(fd, 64, 0).decode().strip())
        except (ValueError, OSError):
            return None

    # --- configuration -------------------------------------------------------------------
    @property
    def config_path(self) -> str:
        return os.path.join(self.path, CONFIG_FILE)

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)

    def _entries(self) -> list[str]:
        return sorted(e for e in os.listdir(self.path) if e != LOCK_FILE)

    def _check_config(self) -> None:
        if self.overwrite:
            self._clear()
            _write_json(self.config_path, self.config)
            self.status = "overwritten"
            return
        if not os.path.exists(self.config_path):
            entries = self._entries()
            if entries:
                shown = ", ".join(entries[:5]) + (", …" if len(entries) > 5 else "")
                raise ConfigMismatch(
                    f"output dir {self.path} holds files ({shown}) but no {CONFIG_FILE}, so "
                    f"the run they belong to is unknown and cannot be resumed. {FRESH_HINT}")
            _write_json(self.config_path, self.config)
            self.status = "new"
            return
        try:
            with open(self.config_path) as f:
                old = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigMismatch(f"cannot read {self.config_path} ({e}). {FRESH_HINT}") from e
        diff = compare_configs(old, self.config, self.growable)
        if diff.changed:
            lines = "\n".join(f"  {k}: {_fmt(a)} (in {CONFIG_FILE}) → {_fmt(b)} (now)"
                              for k, (a, b) in diff.changed.items())
            may_grow = (f" (only {', '.join(self.growable)} may grow)"
                        if self.growable else "")
            raise ConfigMismatch(
                f"output dir {self.path} holds a run with another configuration; a rerun "
                f"resumes only with the same one{may_grow}. Differing fields:\n{lines}\n"
                f"{FRESH_HINT}")
        self.grown = diff.grown
        if diff.grown:
            log.info("resuming %s with grown %s", self.path,
                     ", ".join(f"{k}: {_fmt(a)} → {_fmt(b)}" for k, (a, b) in diff.grown.items()))
            _write_json(self.config_path, self.config)
        self.status = "resumed"

    def _clear(self) -> None:
        """Deletes the previous run's files: first renamed into one trash folder (so that a
        kill midway leaves a directory that --overwrite recognizes and finishes), then
        removed."""
        entries = self._entries()
        trash = [e for e in entries if e.startswith(_TRASH_PREFIX)]
        if entries and CONFIG_FILE not in entries and not trash:
            shown = ", ".join(entries[:5]) + (", …" if len(entries) > 5 else "")
            raise ConfigMismatch(
                f"--overwrite refused: output dir {self.path} holds files ({shown}) but no "
                f"{CONFIG_FILE}, so it is not a tf_enas run directory; delete them yourself "
                "or choose a new --output_dir")
        target = os.path.join(self.path, f"{_TRASH_PREFIX}{os.getpid()}")
        os.makedirs(target, exist_ok=True)
        # config.json first: from then on the directory reads as a run being cleared
        for name in sorted(entries, key=lambda e: e != CONFIG_FILE):
            if not name.startswith(_TRASH_PREFIX):
                os.replace(os.path.join(self.path, name), os.path.join(target, name))
        for name in os.listdir(self.path):
            if name.startswith(_TRASH_PREFIX):
                shutil.rmtree(os.path.join(self.path, name))

    # --- stamps --------------------------------------------------------------------------
    def stamp(self, **state) -> dict:
        """A stamp of the search state a file is derived from: the config hash plus
        `state` (e.g. epoch=6)."""
        return _normalize({"config_sha256": self.config_hash, **state})

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)


# --- stamped files ---------------------------------------------------------------------
def stamp_path(path: str) -> str:
    """The stamp file that goes with `path`."""
    return os.fspath(path) + STAMP_SUFFIX


def read_stamp(path: str) -> dict | None:
    """The stamp written with `path`, or None when either file is missing or unreadable."""
    if not os.path.exists(path):
        return None
    try:
        with open(stamp_path(path)) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def is_current(path: str, stamp: dict) -> bool:
    """Whether `path` exists and was written from the state `stamp` describes."""
    found = read_stamp(path)
    return found is not None and found == _normalize(stamp)


def write_stamped(path: str, write: Callable[[str], None], stamp: dict) -> None:
    """Calls `write(path)` (which must write atomically, e.g. files.write_json or
    files.save_model), with `stamp` in `<path>.stamp.json`. The old stamp is removed
    first, so a kill in between leaves the file unstamped (absent), never wrongly current."""
    try:
        os.remove(stamp_path(path))
    except FileNotFoundError:
        pass
    write(path)
    _write_json(stamp_path(path), _normalize(stamp))


def write_json_stamped(path: str, obj, stamp: dict) -> None:
    """`obj` as JSON into `path`, stamped."""
    write_stamped(path, lambda p: _write_json(p, obj), stamp)


def read_json_if_current(path: str, stamp: dict):
    """The JSON in `path` if it was written from the state `stamp` describes, else None
    (a stale or unstamped file counts as absent)."""
    if not is_current(path, stamp):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
