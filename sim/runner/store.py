"""The result store: one file per finished task, written atomically; resumable.

A result folder (a sweep's, a reproduced study's, a calibration's) looks like::

    <out>/<record files>      what the folder holds, e.g. sweep.toml and base.toml
    <out>/manifest.json       provenance (sim.store.manifest) and one entry per session
    <out>/tasks/<id>.parquet  one file per finished task
    <out>/results.parquet     every task's rows, in task order (when consolidated)
    <out>/.lock               the advisory lock of the process working on the folder

**Records.** The files that say what the folder holds (:class:`Record`: e.g. the sweep
file and the resolved base scenario) are written when the folder is started and compared
with the caller's on every later open: a folder of another sweep, study or calibration is
refused, with the keys that differ. The first record marks the folder as one of its kind.

**Task files.** A task file is one Parquet file: its rows (:func:`sim.runner.tasks.execute`)
are the table; the task's definition (:meth:`sim.runner.tasks.Task.definition`) and its
named tables (the twins' truth, curves, a study dataset), each a Parquet file of its own,
ride in the file's key-value metadata. So one ``os.replace`` of a fully written,
fsync'ed temporary file commits everything a task produced, and a file under its final
name is always complete.

**Resume.** A task is done when its file is readable, was written for the same definition
(same id, overrides, seed and switches) and has status ``ok``; missing, unreadable
(torn) and failed tasks run again, and their new file replaces the old one, so nothing is
duplicated. Files of an older layout without a recorded definition are matched on their
columns (task id, point, replication, seed, the overrides' columns) as before.

**Lock.** One process at a time works on a folder (``fcntl.flock``, released by the OS if
the process dies, so a SIGKILL never leaves a stale lock).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sim.runner.tasks import REQUIRED_ESTIMATE_COLUMNS, Task, TaskOutput, empty_rows
from sim.store import git_info, jsonable

__all__ = [
    "Record",
    "ResultStore",
    "StoreError",
    "open_store",
    "read_tables",
    "read_task_file",
    "scenario_record",
    "task_path",
    "write_atomic",
    "write_parquet",
]

TASKS = "tasks"
RESULTS = "results.parquet"
MANIFEST = "manifest.json"
_DEFINITION = b"credsim.task"
_TABLE = "credsim.table."


class StoreError(Exception):
    """A result folder that cannot be used (another kind, another run, in use); nothing
    was run."""


@dataclass(frozen=True)
class Record:
    """A file that says what a result folder holds: written once, compared on reopening.

    ``parse`` turns the text into comparable data (default: TOML), so formatting and
    comments do not matter; ``source`` names where the caller's version came from.
    """

    name: str
    text: str
    source: str
    parse: Callable[[str], Mapping[str, Any]] = tomllib.loads


def scenario_record(name: str, scenario: Any, source: str) -> Record:
    """A record of a resolved scenario (every key written out), compared as a scenario."""
    from sim.params import Scenario

    return Record(
        name,
        scenario.to_toml(),
        source,
        lambda text: Scenario.from_toml_text(text, source=name).to_dict(),
    )


# ---- atomic files ---------------------------------------------------------------------


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: str | Path, write: Callable[[Any], None] | bytes | str) -> None:
    """Write ``path`` through a temporary file in the same folder, fsync, ``os.replace``.

    ``write`` is the content (text or bytes) or a function writing to a binary file.
    """
    path = Path(path)
    content = write.encode("utf-8") if isinstance(write, str) else write
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            if isinstance(content, bytes):
                fh.write(content)
            else:
                content(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def write_parquet(df: pd.DataFrame, path: str | Path) -> None:
    """``df`` as a Parquet file, atomically."""
    write_atomic(path, lambda fh: df.to_parquet(fh, index=False))


def _json(data: Any) -> str:
    return json.dumps(jsonable(data), indent=2, allow_nan=False, default=str) + "\n"


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def _task_file_writer(task: Task, output: TaskOutput) -> Callable[[Any], None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(output.rows, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[_DEFINITION] = json.dumps(task.definition(), default=str).encode()
    for name, df in output.tables.items():
        meta[(_TABLE + name).encode()] = _parquet_bytes(df)
    table = table.replace_schema_metadata(meta)
    return lambda fh: pq.write_table(table, fh)


# ---- reading task files -----------------------------------------------------------------


def task_path(out: str | Path, task_id: str) -> Path:
    """Where the file of task ``task_id`` lives in the folder ``out``."""
    return Path(out) / TASKS / f"{task_id}.parquet"


def _metadata(path: Path) -> dict[bytes, bytes]:
    import pyarrow.parquet as pq

    return dict(pq.read_schema(path).metadata or {})


def _same_definition(stored: bytes, task: Task) -> bool:
    try:
        return json.loads(stored) == json.loads(json.dumps(task.definition(), default=str))
    except (ValueError, UnicodeDecodeError):
        return False


def read_task_file(path: str | Path, task: Task | None = None) -> pd.DataFrame | None:
    """A task file's rows, or ``None`` if it is missing, unreadable or not ``task``'s."""
    try:
        df = pd.read_parquet(path)
        meta = _metadata(Path(path)) if task is not None else {}
    except Exception:  # truncated, empty, not Parquet: treated as missing
        return None
    need = {
        "task_id",
        "replication",
        "seed_entropy",
        "spawn_key",
        "status",
        *REQUIRED_ESTIMATE_COLUMNS,
    }
    if df.empty or not need <= set(df.columns) or df["task_id"].nunique() != 1:
        return None
    if task is None:
        return df
    if _DEFINITION in meta:
        return df if _same_definition(meta[_DEFINITION], task) else None
    row = df.iloc[0]  # a file of the older layout: its columns say which task it is
    same = (
        row["task_id"] == task.task_id
        and (task.point is None or ("point" in df and int(row["point"]) == task.point))
        and int(row["replication"]) == task.replication
        and int(row["seed_entropy"]) == task.seed_entropy
        and row["spawn_key"] == json.dumps(list(task.spawn_key))
        and all(k in df.columns for k in task.overrides)
    )
    return df if same else None


def read_tables(path: str | Path) -> dict[str, pd.DataFrame]:
    """The named tables stored with a task's rows (none for an older file)."""
    out = {}
    for key, value in _metadata(Path(path)).items():
        name = key.decode("utf-8", "replace")
        if name.startswith(_TABLE):
            out[name.removeprefix(_TABLE)] = pd.read_parquet(io.BytesIO(value))
    return out


# ---- the store ------------------------------------------------------------------------


class ResultStore:
    """An open result folder (see the module docstring); made by :func:`open_store`."""

    def __init__(self, out: Path, kind: str):
        self.out, self.kind = Path(out), kind

    def path(self, task_id: str) -> Path:
        """The file of task ``task_id``."""
        return task_path(self.out, task_id)

    def read(self, task: Task) -> pd.DataFrame | None:
        """The task's rows if its file is valid for it (finished or failed), else None."""
        return read_task_file(self.path(task.task_id), task)

    def done(self, task: Task) -> bool:
        """The task finished without error (its file is valid and its status ``ok``)."""
        df = self.read(task)
        return df is not None and bool((df["status"] == "ok").all())

    def tables(self, task: Task) -> dict[str, pd.DataFrame]:
        """The named tables the task stored with its rows."""
        return read_tables(self.path(task.task_id))

    def write(self, task: Task, output: TaskOutput) -> None:
        """Commit a task's rows and tables: one file, written atomically."""
        write_atomic(self.path(task.task_id), _task_file_writer(task, output))

    def gather(self, tasks: Sequence[Task]) -> pd.DataFrame:
        """The rows of every task with a valid file, in task order."""
        frames = [df for t in tasks if (df := self.read(t)) is not None]
        if frames:
            return pd.concat(frames, ignore_index=True)
        return empty_rows(tasks[0]) if tasks else pd.DataFrame()

    def consolidate(self, tasks: Sequence[Task]) -> pd.DataFrame:
        """:meth:`gather`, also written to ``results.parquet``."""
        results = self.gather(tasks)
        write_parquet(results, self.out / RESULTS)
        return results

    def write_text(self, name: str, text: str) -> None:
        """A text file in the folder, atomically."""
        write_atomic(self.out / name, text)

    def record_session(self, session: Mapping[str, Any]) -> None:
        """Append one session (who ran what, where, how long) to ``manifest.json``."""
        path = self.out / MANIFEST
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            meta = {}
        meta.setdefault("sessions", []).append({**session, "git": git_info()})
        write_atomic(path, _json(meta))


@contextlib.contextmanager
def open_store(
    out: str | Path, kind: str, records: Sequence[Record], manifest: Mapping[str, Any] | None = None
) -> Iterator[ResultStore]:
    """Start the result folder ``out``, or reopen it for the same ``records``; hold its lock.

    ``kind`` names what the folder holds in messages ("sweep", "reproduce", ...); the
    first record marks the folder as one of this kind. ``manifest`` is written once,
    when the folder is started.

    Raises
    ------
    StoreError
        ``out`` exists and is not a folder of this kind, holds another run (a record
        differs), or another process is working on it.
    """
    out = Path(out)
    marker = records[0].name
    if out.exists() and not (out / marker).exists():
        if not out.is_dir() or any(p.name != ".lock" for p in out.iterdir()):
            raise StoreError(
                f"{out}: exists and is not a {kind} folder (no {marker}); choose another --out"
            )
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out, kind):
        _check(out, kind, records)
        for rec in records:  # the marker first; no task runs before all of them exist
            if not (out / rec.name).exists():
                write_atomic(out / rec.name, rec.text)
        if not (out / MANIFEST).exists():
            write_atomic(out / MANIFEST, _json(manifest or {}))
        (out / TASKS).mkdir(exist_ok=True)
        for leftover in (out / TASKS).glob(".*.tmp-*"):  # writes cut short by a kill
            leftover.unlink(missing_ok=True)
        yield ResultStore(out, kind)


def _check(out: Path, kind: str, records: Iterable[Record]) -> None:
    for rec in records:
        path = out / rec.name
        if not path.exists():
            continue
        try:
            old = rec.parse(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as err:
            raise StoreError(
                f"{out}: its {rec.name} is unreadable ({err}); use another --out"
            ) from None
        new = rec.parse(rec.text)
        if old != new:
            diff = ", ".join(_differences(old, new)[:6])
            raise StoreError(
                f"{out}: holds results of a different {kind} ({rec.source} "
                f"differs from {path} in: {diff}); use another --out, or "
                "delete the folder to start over"
            )


def _differences(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "<missing>"), b.get(k, "<missing>")
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += _differences(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out


@contextlib.contextmanager
def _locked(out: Path, kind: str) -> Iterator[None]:
    """Hold an advisory lock on ``out`` (released by the OS if the process dies)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(out / ".lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"{out}: another {kind} is running on this folder") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
