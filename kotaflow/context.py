"""What every command receives: the settings, loaded lazily and validated once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import typer

from kotaflow.logs import redact_settings
from kotaflow.settings import Settings, SettingsError, load_settings


@dataclass
class AppContext:
    config_file: Path | None = None
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        """Validated settings; an invalid value ends the command with exit code 2."""
        if self._settings is None:
            try:
                self._settings = load_settings(self.config_file)
            except SettingsError as err:
                from rich.console import Console  # only here: ~50 ms of every command's start

                Console(stderr=True).print(f"[red]error:[/red] {err}", highlight=False)
                raise typer.Exit(2) from None
            redact_settings(self._settings)
        return self._settings


def settings_of(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    if not isinstance(obj, AppContext):  # invoked without the root callback (tests)
        obj = AppContext()
        ctx.find_root().obj = obj
    return obj.settings
