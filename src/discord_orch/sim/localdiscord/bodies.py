"""Request bodies as Discord reads them: JSON, or multipart with ``payload_json`` and ``files[n]``."""

from __future__ import annotations

import json
import re
from email.message import Message as _EmailMessage
from email.utils import collapse_rfc2231_value
from typing import Any, Dict, List, Optional, Tuple

from .apierror import ApiError, invalid_form


def _header_params(value: str, header: str) -> Tuple[str, Dict[str, str]]:
    msg = _EmailMessage()
    msg[header] = value
    params: Dict[str, str] = {}
    for key, val in (msg.get_params(header=header) or [])[1:]:
        if isinstance(val, tuple):
            val = collapse_rfc2231_value(val)
        params[key.lower()] = str(val)
    main = value.split(";", 1)[0].strip().lower()
    return main, params


def _parse_multipart(body: bytes, boundary: str) -> List[Tuple[Dict[str, str], bytes]]:
    """Parts as (headers lower-cased, data). Raises ValueError on a malformed body."""
    delim = b"--" + boundary.encode("latin-1")
    chunks = body.split(delim)
    if len(chunks) < 2:
        raise ValueError("no multipart boundary in body")
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        elif chunk.startswith(b"\n"):
            chunk = chunk[1:]
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            head, sep, data = chunk.partition(b"\n\n")
            if not sep:
                raise ValueError("multipart part without headers")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
        headers: Dict[str, str] = {}
        for line in head.decode("utf-8", "surrogateescape").splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        parts.append((headers, data))
    return parts


def parse_body(headers: Any, body: bytes) -> Tuple[Dict[str, Any], List[Tuple[str, bytes, Optional[int]]]]:
    """JSON or multipart body -> (payload dict, [(filename, data, index)])."""
    ctype, cparams = _header_params(headers.get("Content-Type") or "application/json", "content-type")
    files: List[Tuple[str, bytes, Optional[int]]] = []
    if ctype == "multipart/form-data":
        boundary = cparams.get("boundary")
        if not boundary:
            raise ApiError(400, 50109, "The request body contains invalid JSON.")
        try:
            parts = _parse_multipart(body, boundary)
        except ValueError:
            raise ApiError(400, 50109, "The request body contains invalid JSON.") from None
        payload: Any = {}
        for phead, data in parts:
            _disp, dparams = _header_params(phead.get("content-disposition", "form-data"), "content-disposition")
            name = dparams.get("name", "")
            filename = dparams.get("filename")
            if name == "payload_json":
                payload = loads(data)
            elif filename is not None or name.startswith("files[") or name == "file":
                m = re.match(r"^files\[(\d+)\]$", name)
                files.append((filename or name, data, int(m.group(1)) if m else None))
            else:
                payload = payload if isinstance(payload, dict) else {}
                payload.setdefault(name, data.decode("utf-8", "replace"))
    else:
        payload = loads(body) if body.strip() else {}
    if not isinstance(payload, dict):
        raise invalid_form({"_errors": [{"code": "DICT_TYPE_CONVERT",
                                         "message": "Only dictionaries may be used in a DictType"}]})
    return payload, files


def loads(data: bytes) -> Any:
    """JSON from a request body, or Discord's 50109."""
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, 50109, "The request body contains invalid JSON.") from None
