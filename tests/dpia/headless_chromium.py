"""Open a page in headless Chromium over the DevTools protocol: console errors, DOM checks, PDF.

A small CDP client (``websockets``): start ``chromium --headless --remote-debugging-port=0``,
read the port from ``DevToolsActivePort`` in the throw-away profile, open a tab, enable the
Runtime, Log and Page domains, load the file, collect every console message, uncaught
exception and log entry, evaluate a checking script, emulate A4 print media for a layout
check, and print the page to PDF.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-port=0",
)
A4_CONTENT_WIDTH_PX = 703  # (210 mm - 2 x 12 mm margins) at 96 dpi


def chromium_path() -> str | None:
    """The Chromium binary (Debian's ``chromium`` package), if installed."""
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


@dataclass
class PageReport:
    """What the browser saw."""

    console: list[dict[str, Any]] = field(default_factory=list)  # every console/log/exception
    checks: Any = None  # the checking script's JSON result (screen media)
    print_checks: Any = None  # the same script under A4 print emulation
    pdf: bytes = b""

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Console errors, uncaught exceptions and error-level log entries."""
        return [m for m in self.console if m["level"] in ("error", "exception")]


class _Session:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0
        self.pending: dict[int, asyncio.Future] = {}
        self.events: list[dict[str, Any]] = []
        self.loaded = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg and msg["id"] in self.pending:
                self.pending.pop(msg["id"]).set_result(msg)
            elif "method" in msg:
                self.events.append(msg)
                if msg["method"] == "Page.loadEventFired":
                    self.loaded.set()

    async def send(
        self,
        method: str,
        params: dict | None = None,
        session: str | None = None,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        future = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        await self.ws.send(json.dumps(message))
        reply = await asyncio.wait_for(future, timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})


def _console_entries(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for e in events:
        p = e.get("params", {})
        if e["method"] == "Runtime.consoleAPICalled":
            text = " ".join(
                str(a.get("value", a.get("description", ""))) for a in p.get("args", [])
            )
            out.append(
                {
                    "level": "error" if p.get("type") in ("error", "assert") else p.get("type"),
                    "text": text,
                    "source": "console",
                }
            )
        elif e["method"] == "Runtime.exceptionThrown":
            details = p.get("exceptionDetails", {})
            out.append(
                {
                    "level": "exception",
                    "source": "runtime",
                    "text": details.get("exception", {}).get(
                        "description", details.get("text", "")
                    ),
                }
            )
        elif e["method"] == "Log.entryAdded":
            entry = p.get("entry", {})
            out.append(
                {
                    "level": entry.get("level"),
                    "text": entry.get("text", ""),
                    "source": entry.get("source", "log"),
                    "url": entry.get("url", ""),
                }
            )
    return out


async def _inspect(url: str, script: str, port: int) -> PageReport:
    async with websockets.connect(f"ws://127.0.0.1:{port}{_BROWSER_PATH[0]}", max_size=None) as ws:
        s = _Session(ws)
        target = (await s.send("Target.createTarget", {"url": "about:blank"}))["targetId"]
        sid = (await s.send("Target.attachToTarget", {"targetId": target, "flatten": True}))[
            "sessionId"
        ]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            await s.send(domain, session=sid)
        await s.send("Page.navigate", {"url": url}, session=sid)
        await asyncio.wait_for(s.loaded.wait(), 60)
        await asyncio.sleep(0.3)  # let late console messages arrive

        async def evaluate() -> Any:
            result = await s.send(
                "Runtime.evaluate",
                {"expression": script, "returnByValue": True, "awaitPromise": True},
                session=sid,
            )
            if "exceptionDetails" in result:
                raise RuntimeError(f"check script failed: {result['exceptionDetails']}")
            return json.loads(result["result"]["value"])

        report = PageReport(checks=await evaluate())
        await s.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": A4_CONTENT_WIDTH_PX, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
            session=sid,
        )
        await s.send("Emulation.setEmulatedMedia", {"media": "print"}, session=sid)
        report.print_checks = await evaluate()
        await s.send("Emulation.setEmulatedMedia", {"media": ""}, session=sid)
        await s.send("Emulation.clearDeviceMetricsOverride", session=sid)
        pdf = await s.send(
            "Page.printToPDF",
            {"printBackground": True, "preferCSSPageSize": True},
            session=sid,
            timeout=120,
        )
        report.pdf = base64.b64decode(pdf["data"])
        await asyncio.sleep(0.2)
        report.console = _console_entries(s.events)
        with contextlib.suppress(RuntimeError, TimeoutError, websockets.ConnectionClosed):
            await s.send("Browser.close", timeout=10)
        s.reader.cancel()
        return report


_BROWSER_PATH = [""]


def inspect_page(html: Path, script: str, timeout: float = 90.0) -> PageReport:
    """Load ``html`` in headless Chromium and return console output, checks and the PDF."""
    binary = chromium_path()
    if binary is None:
        raise RuntimeError("Chromium is not installed (apt-get install chromium; .ci/run does)")
    with tempfile.TemporaryDirectory(prefix="anprfed-chromium-") as profile:
        proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + timeout
            while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
                if proc.poll() is not None:
                    raise RuntimeError(f"chromium exited with code {proc.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError("chromium did not open its DevTools port")
                time.sleep(0.1)
            port_text, path = port_file.read_text().splitlines()[:2]
            _BROWSER_PATH[0] = path
            return asyncio.run(_inspect(html.resolve().as_uri(), script, int(port_text)))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
