"""Everything one simulator instance knows: apps (by id, key and name), end users and runs."""
from __future__ import annotations

from .apps import App, EndUser, new_api_key, new_id
from .logs_index import AppRunIndex
from .runs import Run


class Store:
    """Every app, end user and run of one simulator instance."""

    def __init__(self) -> None:
        self.apps_by_id: dict[str, App] = {}
        self.apps_by_key: dict[str, App] = {}
        self.apps_by_name: dict[str, App] = {}
        self.end_users: dict[tuple[str, str], EndUser] = {}
        self.runs: dict[str, Run] = {}
        self.runs_by_task: dict[str, Run] = {}
        self.logs: dict[str, AppRunIndex] = {}  # app id -> the runs its /v1/workflows/logs lists

    def register_app(self, name: str, dsl: dict, api_key: str | None = None) -> App:
        """Create an app, or re-publish an existing one of the same name (same id; new key only if asked)."""
        app = self.apps_by_name.get(name)
        if app is None:
            app = App(new_id(), name, api_key or new_api_key())
            self.apps_by_name[name] = app
            self.apps_by_id[app.id] = app
        elif api_key and api_key != app.api_key:
            self.apps_by_key.pop(app.api_key, None)
            app.api_key = api_key
        self.apps_by_key[app.api_key] = app
        app.publish(dsl)
        return app

    def create_console_app(self, name: str, mode: str) -> App:
        """An app made in the console (or by a DSL import): no API key and nothing published yet."""
        app = App(new_id(), name, "", mode=mode)
        self.apps_by_id[app.id] = app
        return app

    def add_api_key(self, app: App) -> str:
        token = new_api_key()
        self.apps_by_key[token] = app
        if not app.api_key:
            app.api_key = token
        return token

    def end_user(self, app: App, session_id: str) -> EndUser:
        key = (app.id, session_id)
        if key not in self.end_users:
            self.end_users[key] = EndUser(new_id(), session_id)
        return self.end_users[key]

    def logs_of(self, app: App) -> AppRunIndex:
        return self.logs.setdefault(app.id, AppRunIndex())

    def add_run(self, run: Run) -> None:
        self.add_runs([run])

    def add_runs(self, runs: list[Run]) -> None:
        """Keep runs; the listed ones go into their app's logs index (one sort for a whole batch)."""
        by_app: dict[str, list[Run]] = {}
        for run in runs:
            self.runs[run.id] = run
            self.runs_by_task[run.task_id] = run
            if run.listed_in_logs:
                run.index = self.logs_of(run.app)
                by_app.setdefault(run.app.id, []).append(run)
        for app_id, batch in by_app.items():
            if len(batch) == 1:
                self.logs[app_id].add(batch[0])
            else:
                self.logs[app_id].add_many(batch)
