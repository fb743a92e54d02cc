"""Headless Chromium for the tests, driven over the DevTools protocol on a pipe.

``--remote-debugging-pipe`` makes Chromium read protocol commands from its fd 3 and write answers
and events to its fd 4, each message JSON ended by a NUL byte: no websocket library, no port.
Every request the page makes is logged (``Network.requestWillBeSent``), host names do not
resolve (``--host-resolver-rules``), so a page that reaches for the network fails visibly and the
test can say which URL it asked for. Screenshots are PNG files; ``Shot.ink`` counts the pixels of an
element that are not the background.

Chromium is Debian's package at /usr/bin/chromium (``CHROMIUM`` overrides); ``.ci/run`` installs
it. When it is missing the tests fail with that message: they never skip.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
FLAGS = (
    "--headless",
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # network off: nothing resolves but 127.0.0.1
    "--window-size=1400,1000",
    "--remote-debugging-pipe",
)
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome:", "devtools:")


class BrowserError(AssertionError):
    pass


def chromium() -> Path:
    """The Chromium binary; a test failure (not a skip) naming the fix when it is missing."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run installs it when missing)")
    return CHROMIUM


class Browser:
    """One Chromium process with a fresh, empty profile; pages are opened with ``page()``."""

    def __init__(self, shots: Path, timeout: float = 60.0) -> None:
        self.shots, self.timeout = shots, timeout
        shots.mkdir(parents=True, exist_ok=True)
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
        to_chrome, self._write = os.pipe()
        self._read, from_chrome = os.pipe()
        # Chromium wants the pipes as its fds 3 and 4: a small trampoline puts them there and
        # execs it. Ours sit above 9 first, so moving one cannot overwrite the other.
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_chrome, from_chrome)]
        for fd in (to_chrome, from_chrome):
            os.close(fd)
        trampoline = (
            f"import os, sys; os.dup2({ends[0]}, 3); os.dup2({ends[1]}, 4); "
            f"os.close({ends[0]}); os.close({ends[1]}); os.execv(sys.argv[1], sys.argv[1:])"
        )
        argv = [str(chromium()), *FLAGS, f"--user-data-dir={self.profile}", "about:blank"]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", trampoline, *argv],
            pass_fds=ends,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # dbus complaints of a headless machine
            start_new_session=True,
        )
        for fd in ends:
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    # --- the protocol ---------------------------------------------------------------------------

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive(f"the answer to {method}")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, session: str | None = None, since: int = 0) -> dict[str, Any]:
        """The first event ``method`` (of ``session``) at or after index ``since`` of the event log."""
        while True:
            for event in self.events[since:]:
                if event.get("method") == method and (session is None or event.get("sessionId") == session):
                    return event
            since = len(self.events)
            self.events.append(self._receive(f"event {method}"))

    def _receive(self, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise BrowserError(f"Chromium: no {what} within {self.timeout:.0f} s")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium exited (code {self.proc.poll()}) while waiting for {what}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def page(self) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        return Page(self, session)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(BrowserError):
                self.send("Browser.close")
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page:
    """One tab: navigate, evaluate JavaScript, wait for the DOM, screenshot, list its requests."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser, self.session = browser, session
        for domain in ("Page", "Network", "Runtime"):
            self.send(f"{domain}.enable")

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, self.session)

    def open(self, url: str) -> None:
        """Navigate and wait for the load event (the page's scripts have run once)."""
        since = len(self.browser.events)
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"{url}: {result['errorText']}")
        self.browser.wait_event("Page.loadEventFired", self.session, since)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited); a page exception fails the test."""
        reply = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in reply:
            raise BrowserError(f"in the page: {reply['exceptionDetails'].get('exception', reply['exceptionDetails'])}")
        return reply["result"].get("value")

    def wait_for(self, condition: str, timeout_ms: int = 30000) -> Any:
        """Wait, inside the page, until the JavaScript ``condition`` is truthy; return its value.

        The page re-checks it on every DOM change (a MutationObserver) rather than on a timer. An
        element counts as true (it cannot be returned by value).
        """
        js = f"""new Promise((resolve, reject) => {{
            const check = () => {{
                try {{ const v = ({condition}); return v instanceof Node ? true : v; }} catch (e) {{ return null; }}
            }};
            const first = check();
            if (first) {{ resolve(first); return; }}
            const observer = new MutationObserver(() => {{
                const value = check();
                if (value) {{ observer.disconnect(); clearTimeout(timer); resolve(value); }}
            }});
            observer.observe(document, {{subtree: true, childList: true, attributes: true, characterData: true}});
            const timer = setTimeout(() => {{ observer.disconnect(); reject(new Error(
                "not true after {timeout_ms} ms: " + {json.dumps(condition)})); }}, {timeout_ms});
        }})"""
        return self.evaluate(js)

    def screenshot(self, name: str) -> Shot:
        """The whole page, saved as ``<name>.png`` in the screenshots folder."""
        size = self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        clip = {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}
        data = self.send("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True})
        path = self.browser.shots / f"{name}.png"
        path.write_bytes(base64.b64decode(data["data"]))
        return Shot(path)

    def boxes(self, selector: str) -> list[dict[str, float]]:
        """Page coordinates of every element matching ``selector``."""
        return self.evaluate(
            f"""Array.from(document.querySelectorAll({json.dumps(selector)})).map(e => {{
                const r = e.getBoundingClientRect();
                return {{x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}};
            }})"""
        )

    def requests(self) -> list[str]:
        """Every URL this page asked for so far (documents, scripts, images, fetches)."""
        return [
            e["params"]["request"]["url"]
            for e in self.browser.events
            if e.get("method") == "Network.requestWillBeSent" and e.get("sessionId") == self.session
        ]

    def requests_leaving(self, allowed: Iterable[str] = ()) -> list[str]:
        """Requests that would leave the machine: not a local scheme and not one of the ``allowed`` prefixes."""
        allowed = tuple(allowed)
        return [u for u in self.requests() if not u.startswith(LOCAL_SCHEMES) and not u.startswith(allowed)]


class Shot:
    """A screenshot: its PNG file and its pixels, to measure what a region of the page shows."""

    def __init__(self, path: Path) -> None:
        import numpy as np
        from PIL import Image

        self.path = path
        with Image.open(io.BytesIO(path.read_bytes())) as image:
            self.pixels = np.asarray(image.convert("RGB"), dtype=np.int16)

    def ink(self, box: dict[str, float], background: tuple[int, int, int] = (255, 255, 255)) -> tuple[int, int]:
        """(pixels unlike the background, distinct colours) inside ``box`` (page coordinates)."""
        import numpy as np

        left, top = max(int(box["x"]), 0), max(int(box["y"]), 0)
        region = self.pixels[top : top + int(box["height"]), left : left + int(box["width"])].reshape(-1, 3)
        far = int(np.count_nonzero(np.abs(region - np.array(background)).max(axis=1) > 24))
        packed = (region[:, 0].astype(np.int32) << 16) | (region[:, 1] << 8) | region[:, 2]
        return far, int(np.unique(packed).size)
