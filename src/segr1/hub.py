"""Where a checkpoint comes from (a local folder or a Hugging Face hub id), checked before it is loaded.

Loading a model by a hub id that is misspelt, private, or not downloaded on an offline machine fails deep
inside transformers with a long chained traceback whose last message can mislead (SAM2's mentions "a local
directory with the same name"). :func:`check_model_source` catches the common cases in milliseconds, before
anything heavy is imported; :func:`load_error` turns what a loader still raises into one
:class:`ModelSourceError` that names the model and the fix. Only ``huggingface_hub`` (a light import) is used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

_TRUE = ("1", "true", "yes", "on")


class ModelSourceError(OSError):
    """A model spec that names no loadable checkpoint; the message says which one and what to do."""


def hub_offline() -> bool:
    """True when hub requests are switched off (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` set to 1)."""
    return any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def looks_like_path(source: str) -> bool:
    """True for a spec written as a path (``/x``, ``./x``, ``../x``, ``~/x``, ``C:\\x``), never a hub id."""
    return source.startswith(("/", "./", "../", "~", "\\", ".\\")) or (len(source) > 1 and source[1] == ":")


def _fix(what: str, example: str) -> str:
    return f"give a local {what} folder, or a hub id reachable from this machine (e.g. {example})"


def check_model_source(
    source: str, what: str, example: str, required_file: str = "config.json"
) -> tuple[str, bool]:
    """``(folder or hub id to load, local_files_only)`` for ``source``, or :class:`ModelSourceError`.

    Args:
        source: a local folder or a hub id (``owner/name``).
        what: what is being loaded, for messages ("policy", "SAM2").
        example: a spec to show in the fix (``geshang/Seg-R1-7B``).
        required_file: a file every checkpoint of this kind has (checked in local folders and the hub cache).

    A local folder must exist and hold ``required_file`` (and is loaded with ``local_files_only``: no hub
    request). A hub id must be well formed. Offline (``HF_HUB_OFFLINE=1``) it must be in the local hub
    cache. Online, one quick request (:data:`PROBE_TIMEOUT_S`) asks the hub whether the repository exists,
    so a typo or an unreachable hub is reported in a second rather than after minutes of retries; when the
    hub cannot be reached but the id is cached, the cached copy is used (``local_files_only`` True).
    """
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / required_file).is_file():
            raise ModelSourceError(
                f"{what} folder {source!r} holds no {required_file}, so it is not a saved checkpoint; "
                f"{_fix(what, example)}"
            )
        return str(path), True
    if path.exists() or looks_like_path(source):
        raise ModelSourceError(f"{what} folder {source!r} does not exist; {_fix(what, example)}")
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(source)
    except HFValidationError:
        raise ModelSourceError(
            f"{what} {source!r} is neither an existing folder nor a valid hub id (owner/name); "
            f"{_fix(what, example)}"
        ) from None
    cached = _in_hub_cache(source, required_file)
    if hub_offline():
        if not cached:
            raise ModelSourceError(
                f"{what} {source!r} is not a local folder and is not in the hub cache, and the hub is offline "
                f"(HF_HUB_OFFLINE=1). Download it where the hub is reachable (`hf download {source}`), "
                "or pass a local folder"
            )
        return source, True
    problem = _probe_hub(source)
    if problem is None:
        return source, False
    if isinstance(problem, ModelSourceError):
        raise problem
    if cached:
        logger.warning("the hub cannot be reached (%s); using the cached copy of %s", problem, source)
        return source, True
    raise ModelSourceError(
        f"cannot load {what} {source!r}: the hub cannot be reached ({problem}) and it is not in the local "
        f"hub cache. Connect to the network, or download it elsewhere (`hf download {source}`) and pass "
        "the folder"
    )


PROBE_TIMEOUT_S = 10.0


def _probe_hub(repo_id: str) -> ModelSourceError | str | None:
    """Ask the hub about ``repo_id`` once: None if it exists, a :class:`ModelSourceError` if the hub says it
    does not (or is private), else a one-line network problem."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        HfApi().model_info(repo_id, timeout=PROBE_TIMEOUT_S)
    except GatedRepoError:
        return None  # the download reports what to accept
    except RepositoryNotFoundError:
        return ModelSourceError(
            f"the hub has no repository {repo_id!r} (check the spelling; a private one needs `hf auth login`)"
        )
    except HfHubHTTPError as exc:  # e.g. 5xx: let the download try and report
        logger.debug("hub probe of %s: %s", repo_id, exc)
        return None
    except Exception as exc:  # DNS, connection refused, timeout, proxy: the hub is unreachable
        return f"{type(exc).__name__}: {first_line(exc, limit=120)}"
    return None


def _in_hub_cache(repo_id: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename)
    except Exception:  # an unreadable cache: let the loader decide
        logger.debug("could not look up %s in the hub cache", repo_id, exc_info=True)
        return True
    return isinstance(found, str)


def load_error(exc: BaseException, what: str, source: str, example: str) -> ModelSourceError:
    """One :class:`ModelSourceError` for a failed ``from_pretrained(source)``: the hub's own error when the
    exception chain holds one (unknown or private repo, offline, missing file), else ``exc``'s first line."""
    from huggingface_hub import errors

    reason = None
    for err in _chain(exc):
        if isinstance(err, errors.GatedRepoError):
            reason = "it is a gated repository: accept its terms on the hub and log in (`hf auth login`)"
        elif isinstance(err, errors.RepositoryNotFoundError):
            reason = "the hub has no such repository (check the spelling; private ones need `hf auth login`)"
        elif isinstance(err, errors.RevisionNotFoundError):
            reason = "the hub repository has no such revision"
        elif isinstance(err, errors.OfflineModeIsEnabled | errors.LocalEntryNotFoundError):
            reason = (
                "it is not in the local hub cache and the hub cannot be reached (offline or no network); "
                f"download it first (`hf download {source}`)"
            )
        elif isinstance(err, errors.EntryNotFoundError):
            reason = "the repository lacks a file this loader needs (is it a checkpoint of this kind?)"
        elif isinstance(err, errors.HFValidationError):
            reason = "it is not a valid hub id (owner/name)"
        if reason:
            break
    if reason is None:
        reason = first_line(exc)
    return ModelSourceError(f"could not load {what} {source!r}: {reason}; {_fix(what, example)}")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes / contexts, outermost first (cycles cut)."""
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and all(cur is not s for s in seen) and len(seen) < 20:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def first_line(exc: BaseException, limit: int = 300) -> str:
    """``exc``'s message cut to its first line and at most ``limit`` characters (the type name if empty)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def progress_only_on_a_terminal() -> Iterator[None]:
    """Switch transformers' progress bars ("Loading weights") off inside the block when stderr is not a
    terminal (logs, CI, pipes), where they are noise; restore the previous setting after."""
    from transformers.utils import logging as hf_logging

    quiet = not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
    was_on = hf_logging.is_progress_bar_enabled()
    if quiet and was_on:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and was_on:
            hf_logging.enable_progress_bar()
