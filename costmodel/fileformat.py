"""The cost-model file: one zip archive, a JSON header and checksummed native payloads.

Layout of a model file (any name; ``.twcm`` by convention)::

    header.json         {"format": "tilewise-costmodel", "schema_version": 1, "model": "xgb",
                         "features": "analytic", "feature_names": [...], "params": {...},
                         "payloads": {"booster.ubj": {"size": 1234, "sha256": "..."}, ...}, ...}
    booster.ubj         native payloads: XGBoost UBJSON, skops (scikit-learn), safetensors (torch
    ...                 weights, numpy arrays): nothing here is a pickle

Every payload's size and sha256 are checked against the header *before* a native loader sees it:
XGBoost's loader, given a truncated UBJ buffer, allocates until the machine runs out of memory,
so a damaged file must be refused here, with a one-line :class:`ModelFileError`, never parsed.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from typing import Any, Mapping

FORMAT = "tilewise-costmodel"
SCHEMA_VERSION = 1
HEADER = "header.json"
_MAX_HEADER_BYTES = 64 << 20
#: what zipfile raises for a damaged archive or member (bad CRC, bad deflate stream, bad offsets)
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError)


class ModelFileError(ValueError):
    """A cost-model file this tilewise cannot load: one line, meant for the user."""


def write_model_file(path: str | os.PathLike, header: Mapping[str, Any], payloads: Mapping[str, bytes]) -> None:
    """Write ``header`` (``format``, ``schema_version`` and ``payloads`` are filled in) and the
    payloads atomically: a crash mid-write leaves the old file, never half a new one."""
    path = os.fspath(path)
    head = dict(header, format=FORMAT, schema_version=SCHEMA_VERSION,
                payloads={name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                          for name, data in payloads.items()})
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(HEADER, json.dumps(head, indent=1, sort_keys=True))
            for name, data in payloads.items():
                zf.writestr(name, data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The header of a model file, checked for format and schema version (payloads unread)."""
    with _open(path) as zf:
        return _header(zf, path)


def read_model_file(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, bytes]]:
    """``(header, payloads)``; every payload's size and sha256 verified against the header."""
    with _open(path) as zf:
        header = _header(zf, path)
        listed = header.get("payloads")
        if not isinstance(listed, dict):
            raise ModelFileError(f"{path}: the model header lists no payloads: the file is damaged")
        payloads = {}
        for name, meta in listed.items():
            try:
                data = zf.read(name)
            except KeyError:
                raise ModelFileError(f"{path}: payload {name!r} is missing: the file is damaged") from None
            except _READ_ERRORS as e:  # CRC or deflate error
                raise ModelFileError(f"{path}: payload {name!r} is damaged ({e})") from None
            if not isinstance(meta, dict) or len(data) != meta.get("size") or \
                    hashlib.sha256(data).hexdigest() != meta.get("sha256"):
                raise ModelFileError(f"{path}: payload {name!r} does not match its checksum: the file is damaged")
            payloads[name] = data
    return header, payloads


def _open(path) -> zipfile.ZipFile:
    if os.path.isdir(path):
        raise ModelFileError(f"{path} is a directory, not a tilewise cost-model file")
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ModelFileError(f"no cost-model file at {path}") from None
    except _READ_ERRORS as e:
        raise ModelFileError(f"{path} is not a tilewise cost-model file, or it is damaged "
                             f"(not a readable model archive: {e})") from None


def _header(zf: zipfile.ZipFile, path) -> dict[str, Any]:
    try:
        info = zf.getinfo(HEADER)
    except KeyError:
        raise ModelFileError(f"{path} is not a tilewise cost-model file (the archive has no {HEADER})") from None
    if info.file_size > _MAX_HEADER_BYTES:
        raise ModelFileError(f"{path}: the model header is implausibly large: the file is damaged")
    try:
        header = json.loads(zf.read(HEADER).decode("utf-8"))
    except _READ_ERRORS as e:
        raise ModelFileError(f"{path}: the model header is damaged ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a tilewise cost-model file (its header names no {FORMAT!r} format)")
    version = header.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ModelFileError(f"{path}: cost-model schema version {version!r} is not supported: this tilewise "
                             f"reads version {SCHEMA_VERSION} (retrain the model with this tilewise)")
    return header


def npz_bytes(arrays: Mapping[str, Any]) -> bytes:
    """numpy arrays as safetensors bytes (no pickle; dtypes and shapes kept)."""
    from safetensors.numpy import save
    import numpy as np
    return save({k: np.ascontiguousarray(v) for k, v in arrays.items()})


def npz_load(data: bytes, what: str = "arrays") -> dict[str, Any]:
    from safetensors.numpy import load
    try:
        return load(bytes(data))
    except Exception as e:  # safetensors raises its own error types; any of them means damaged
        raise ModelFileError(f"{what}: safetensors payload is damaged ({str(e).splitlines()[0]})") from None

