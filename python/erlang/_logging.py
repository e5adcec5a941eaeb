"""Python's ``logging`` records reach Erlang's ``logger``.

Installed as ``logging.lastResort``, the handler Python uses when no handler of the program's
own takes a record: code that configures logging (``basicConfig``, its own handlers) keeps
full control, and code that does not still has its warnings seen. Levels map DEBUG->debug,
INFO->info, WARNING->warning, ERROR->error, CRITICAL->critical; the logger's name is in the
metadata (``python_logger``).
"""

import logging

from _py_channel import _log


def _level(levelno: int) -> str:
    if levelno >= logging.CRITICAL:
        return "critical"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


class ErlangHandler(logging.Handler):
    """Sends each record to Erlang's ``logger``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
        except Exception:
            self.handleError(record)
            return
        _log(_level(record.levelno), record.name, message)


def install() -> None:
    """Makes records no handler of the program takes reach Erlang's ``logger``."""
    logging.lastResort = ErlangHandler(logging.NOTSET)
