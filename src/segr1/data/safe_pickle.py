"""Loading the pickles of the `refer` toolkit without running code.

RefCOCO, RefCOCO+ and RefCOCOg ship their referring expressions as ``refs(unc).p`` / ``refs(umd).p``:
pickles (written by Python 2) of a list of plain dicts. Unpickling an untrusted file with :mod:`pickle`
can run any code (a ``__reduce__`` returning ``os.system``), so segr1 reads them with
:func:`safe_load`, whose unpickler refuses every opcode that imports a class or calls a function
(``GLOBAL``, ``STACK_GLOBAL``, ``INST``, ``OBJ``, ``REDUCE`` after an import, extension codes,
persistent ids): all of them go through ``find_class`` / ``persistent_load``, which raise here. What is
left builds only builtin containers and scalars; the result is then walked and anything but ``dict``,
``list``, ``tuple``, ``str``, ``int``, ``float``, ``bool`` and ``None`` is refused as well.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ALLOWED_TYPES: tuple[type, ...] = (dict, list, tuple, str, int, float, bool, type(None))
"""The Python types a refer pickle is made of; :func:`safe_loads` accepts nothing else."""


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that imports a class or function, uses persistent ids, or holds a non-plain type."""


class _PlainUnpickler(pickle.Unpickler):
    """An unpickler that cannot import anything (hence cannot call anything)."""

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickleError(
            f"refused to load {module}.{name}: this pickle imports a class or function, which can run "
            "arbitrary code; segr1 only reads pickles of plain dicts/lists/strings/numbers "
            "(like the refer toolkit's refs(unc).p). If the file is yours and trusted, convert it to JSON."
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"refused persistent id {pid!r}: not a plain-data pickle")


def _check_plain(obj: Any) -> None:
    """Raise :class:`UnsafePickleError` if ``obj`` holds anything outside :data:`ALLOWED_TYPES`."""
    stack = [obj]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind not in ALLOWED_TYPES:
            raise UnsafePickleError(
                f"refused a {kind.__name__} in the pickle: only {', '.join(t.__name__ for t in ALLOWED_TYPES)} "
                "are allowed"
            )
        if kind in (dict, list, tuple):
            if id(item) in seen:  # shared or self-referencing container: checked once
                continue
            seen.add(id(item))
            if kind is dict:
                stack.extend(item.keys())
                stack.extend(item.values())
            else:
                stack.extend(item)


def safe_loads(data: bytes, *, encoding: str = "utf-8") -> Any:
    """Unpickle ``data`` allowing only plain builtin data (see the module docstring).

    Python 2 ``str`` objects are decoded with ``encoding`` (UTF-8 by default); if that fails the load
    is retried with Latin-1, which never fails. No code in the pickle is ever run.

    Raises:
        UnsafePickleError: the pickle imports something or holds a non-plain type.
        pickle.UnpicklingError: the data is not a valid pickle (also when a length field asks for more
            memory than can be had: MemoryError / OverflowError are wrapped).
    """
    try:
        obj = _PlainUnpickler(io.BytesIO(data), encoding=encoding).load()
    except UnicodeDecodeError:
        if encoding.lower().replace("-", "") in ("latin1", "iso88591"):
            raise
        logger.info("pickle strings are not %s; retrying with latin-1", encoding)
        obj = _PlainUnpickler(io.BytesIO(data), encoding="latin-1").load()
    except (EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise pickle.UnpicklingError(f"not a valid pickle: {type(exc).__name__}: {exc}") from exc
    except (MemoryError, OverflowError) as exc:  # a hostile length field (e.g. BYTEARRAY8 of 2**60 bytes)
        raise pickle.UnpicklingError(
            f"not a valid pickle: it declares an object too large to build ({type(exc).__name__})"
        ) from None
    _check_plain(obj)
    return obj


def safe_load(path: str | os.PathLike[str], *, encoding: str = "utf-8") -> Any:
    """Read the file at ``path`` and unpickle it with :func:`safe_loads`.

    Raises:
        FileNotFoundError: no such file.
        UnsafePickleError / pickle.UnpicklingError: as :func:`safe_loads`; the message names the file.
    """
    p = Path(path)
    data = p.read_bytes()
    try:
        return safe_loads(data, encoding=encoding)
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{str(p)!r}: {exc}") from None
    except pickle.UnpicklingError as exc:
        raise pickle.UnpicklingError(f"{str(p)!r}: {exc}") from None
