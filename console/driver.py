"""A Linux driver that survives the terminal going away (SSH hang-up, end of input).

Textual 8.2.8's input thread spins on a closed stdin (an empty read just `break`s and the
select loop starts again), and its writer thread dies on the first EIO, after which the
bounded write queue fills and the app blocks forever on `put()`. Both are fatal for a console
used over SSH, so: the input thread asks the app to exit on EOF/EIO, and the writer thread
discards output once the terminal is gone instead of dying.
"""

from __future__ import annotations

import contextlib
import os
import selectors
from codecs import getincrementaldecoder
from typing import Any

from textual.drivers import linux_driver
from textual.drivers._writer_thread import WriterThread
from textual.drivers.linux_driver import LinuxDriver


class SafeWriterThread(WriterThread):
    """Writes to the terminal; after an OSError (terminal gone) drains and drops output."""

    def run(self) -> None:
        get = self._queue.get
        qsize = self._queue.qsize
        file = self._file
        broken = False
        while True:
            text = get()
            if text is None:
                break
            if broken:
                continue
            try:
                file.write(text)
                if qsize() == 0:
                    file.flush()
            except (OSError, ValueError):
                broken = True
        if not broken:
            with contextlib.suppress(OSError, ValueError):
                file.flush()


# The driver builds its writer by module-level name; point it at the safe one.
# the ignore below: a module attribute rebound: Textual's driver builds its writer by this name, and
# mypy forbids assigning to a class
linux_driver.WriterThread = SafeWriterThread  # type: ignore[misc]


class ConsoleDriver(LinuxDriver):
    """LinuxDriver whose input thread ends the app on end of input or a hung-up terminal."""

    def run_input_thread(self) -> None:
        from textual._parser import ParseError
        from textual._xterm_parser import XTermParser

        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        fileno = self.fileno
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")(errors="replace").decode
        app: Any = self._app
        try:
            while not self.exit_event.is_set():
                for _key, mask in selector.select(0.1):
                    if not mask & selectors.EVENT_READ:
                        continue
                    try:
                        data = os.read(fileno, 4096)
                    except OSError:
                        data = b""
                    if not data:  # EOF or EIO: the terminal is gone
                        # Never call_from_thread here: it waits for the loop, which may be
                        # in disable_input() joining this thread (SIGHUP came first): deadlock.
                        app._loop.call_soon_threadsafe(app.hangup)
                        return
                    for event in parser.feed(decode(data)):
                        self.process_message(event)
                for event in parser.tick():
                    self.process_message(event)
        except RuntimeError:  # app already closing (call_from_thread after exit)
            return
        finally:
            selector.close()
            try:
                for _event in parser.feed(""):
                    pass
            except (EOFError, ParseError):
                pass
