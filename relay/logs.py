"""JSON log lines (one object per line), the shape log pipelines in clusters expect.

Hand-written rather than a dependency: it is a dozen lines. Fields passed with
``extra=`` are included; nothing here ever formats a secret (callers pass none).
"""

from __future__ import annotations

import json
import logging
import sys
import time

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Access logs would repeat every webhook; our own lines carry what matters.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # The relay's own client (aiohttp) logs no requests; httpx, which the simulators of
    # `igbridge-relay sandbox` use in the same process, logs each one at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
