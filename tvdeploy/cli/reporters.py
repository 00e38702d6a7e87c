"""Reporter implementations (see tvdeploy.reporting.Reporter)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any


class PlainReporter:
    """Plain lines on stderr: for pipes, CI logs and --quiet (which keeps only warnings)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._tasks: dict[str, tuple[str, int | None, int]] = {}

    def info(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        print(f"warning: {message}", file=sys.stderr, flush=True)

    def event(self, kind: str, **fields: Any) -> None:
        pass

    def task(self, key: str, description: str, total: int | None = None, unit: str = "items") -> None:
        self._tasks[key] = (description, total, 0)
        self.info(f"{description} ...")

    def advance(self, key: str, amount: int = 1, description: str | None = None) -> None:
        desc, total, done = self._tasks.get(key, (key, None, 0))
        self._tasks[key] = (description or desc, total, done + amount)

    def done(self, key: str, description: str | None = None) -> None:
        desc, _total, _done = self._tasks.pop(key, (key, None, 0))
        self.info(f"{description or desc}: done")


class JsonLinesReporter:
    """One JSON object per line on stdout: the event stream of --json."""

    def _emit(self, doc: dict[str, Any]) -> None:
        doc = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **doc}
        sys.stdout.write(json.dumps(doc, default=str) + "\n")
        sys.stdout.flush()

    def info(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        print(f"warning: {message}", file=sys.stderr, flush=True)

    def event(self, kind: str, **fields: Any) -> None:
        self._emit({"event": kind, **fields})

    def task(self, key: str, description: str, total: int | None = None, unit: str = "items") -> None:
        self._emit({"event": "task.start", "task": key, "description": description, "total": total, "unit": unit})

    def advance(self, key: str, amount: int = 1, description: str | None = None) -> None:
        pass

    def done(self, key: str, description: str | None = None) -> None:
        self._emit({"event": "task.done", "task": key, "description": description})


class RichReporter:
    """Progress bars on a terminal; lines printed above them."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        class AmountColumn(ProgressColumn):
            """Sizes for byte tasks, "done/total" for counted ones."""

            def __init__(self) -> None:
                super().__init__()
                self._bytes = DownloadColumn()
                self._count = MofNCompleteColumn()

            def render(self, task: Any) -> Any:
                column = self._bytes if task.fields.get("unit") == "bytes" else self._count
                return column.render(task)

        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            AmountColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._ids: dict[str, Any] = {}
        self._started = False

    def _ensure(self) -> None:
        if not self._started:
            self.progress.start()
            self._started = True

    def info(self, message: str) -> None:
        self.console.print(message, markup=False)

    def warn(self, message: str) -> None:
        self.console.print(f"warning: {message}", markup=False, style="yellow")

    def event(self, kind: str, **fields: Any) -> None:
        pass

    def task(self, key: str, description: str, total: int | None = None, unit: str = "items") -> None:
        self._ensure()
        self._ids[key] = self.progress.add_task(description, total=total, unit=unit)

    def advance(self, key: str, amount: int = 1, description: str | None = None) -> None:
        if key in self._ids:
            kwargs: dict[str, Any] = {"advance": amount}
            if description:
                kwargs["description"] = description
            self.progress.update(self._ids[key], **kwargs)

    def done(self, key: str, description: str | None = None) -> None:
        task_id = self._ids.pop(key, None)
        if task_id is not None:
            task = self.progress.tasks[task_id] if task_id < len(self.progress.tasks) else None
            total = task.total if task is not None else None
            self.progress.update(task_id, completed=total or 1, total=total or 1,
                                 description=description or (task.description if task else key))
        if not self._ids and self._started:
            self.progress.stop()
            self._started = False
