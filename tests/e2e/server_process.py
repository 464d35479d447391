"""Run the real `accord` command in a child process, configured by its own generate-config."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

_LISTEN = re.compile(r"listening on (https?)://([\d.]+):(\d+) \(([^)]*)\)")


class ServerProcess:
    def __init__(self, data_dir: Path, server_name: str = "localhost", **overrides: Any) -> None:
        self.data_dir = data_dir
        self.config_path = data_dir / "homeserver.yaml"
        self.proc: asyncio.subprocess.Process | None = None
        self.client_url = ""
        self.urls: dict[str, str] = {}  # resource -> base URL of the listener serving it
        self.output: list[str] = []
        if not self.config_path.exists():
            subprocess.run(
                [sys.executable, "-m", "homeserver", "generate-config", "--server-name", server_name,
                 "--data-dir", str(data_dir), "--output", str(self.config_path),
                 "--client-port", "0", "--federation-port", "0"],
                check=True, capture_output=True,
            )
            config = yaml.safe_load(self.config_path.read_text())
            config["registration"]["policy"] = "open"
            config["rate_limits"]["enabled"] = False
            for key, value in overrides.items():
                if isinstance(value, dict):
                    config.setdefault(key, {}).update(value)
                else:
                    config[key] = value
            self.config_path.write_text(yaml.safe_dump(config))

    async def start(self, ready_within: float = 30) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "homeserver", "run", "--config", str(self.config_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None

        async def wait_ready() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            while True:
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    raise RuntimeError("server exited:\n" + "".join(self.output))
                self.output.append(line)
                m = _LISTEN.search(line)
                if m:
                    for resource in m.group(4).split(", "):
                        self.urls.setdefault(resource, f"{m.group(1)}://{m.group(2)}:{m.group(3)}")
                if m and "client" in m.group(4).split(", "):
                    self.client_url = f"{m.group(1)}://{m.group(2)}:{m.group(3)}"
                if "register the first admin" in line:
                    return

        await asyncio.wait_for(wait_ready(), ready_within)
        self._drain = asyncio.ensure_future(self._drain_output())

    async def _drain_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.output.append(line.decode())

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 30)
        await self._drain
        self.proc = None
        return code
