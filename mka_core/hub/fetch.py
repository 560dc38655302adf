"""One file of a weight set, from the Hugging Face Hub or a plain https address, into a download cache.

Hub files go through ``huggingface_hub.hf_hub_download`` into its own cache (``HF_HUB_CACHE``,
else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``), so ``HF_ENDPOINT``, ``HF_TOKEN``, its
progress bars and its transfer retries apply: a connection cut mid-file is resumed from the
byte it stopped at with a ``Range`` request. Files already complete in the cache are never
fetched again, so a pull that was stopped resumes with the files still missing. huggingface_hub
writes each transfer to a temporary file and renames it only when complete: a half-written file
never appears under its real name.

Address files (``url_files``, e.g. the PANNs weights on Zenodo) are streamed with
huggingface_hub's ``http_get`` into ``<download cache>/mka-downloads/ENTRY/FILE.incomplete``
and renamed when complete; a later pull continues that file from where it stopped.

Every failure is one sentence (:class:`~mka_core.errors.WeightsError`) naming the file and the
next step; the caller decides whether the network may be used at all.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from mka_core.errors import WeightsError

NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's own error classes (httpx2 for huggingface_hub 2.x, httpx or requests before)."""
    found: list[type[BaseException]] = [ConnectionError]
    for module, attr in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            found.append(getattr(__import__(module), attr))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def hub_cache() -> Path:
    """huggingface_hub's cache folder, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def url_cache() -> Path:
    """Where address (non-hub) downloads are staged: beside the hub cache, outside ``$MKA_HOME``."""
    return hub_cache().parent / "mka-downloads"


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def no_room_sentence(exc: OSError, where: Path | str) -> str:
    return (f"There is no room left to write {where} ({os.strerror(exc.errno or errno.ENOSPC)}); free disk space "
            "(or point HF_HOME / MKA_HOME at a larger disk) and run the pull again.")


def _repo_words(entry) -> str:
    kind = "Space" if entry.hub_type == "space" else ("dataset" if entry.hub_type == "dataset" else "model")
    return f"the Hugging Face {kind} {entry.hub_repo}"


def cached_hub_file(entry, repo_path: str) -> Path | None:
    """The cached copy of ``repo_path`` (at the entry's revision), or None; never uses the network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(entry.hub_repo, repo_path, cache_dir=str(hub_cache()),
                                   revision=entry.hub_revision, repo_type=entry.hub_type)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def download_hub_file(entry, repo_path: str) -> Path:
    """``repo_path`` of the entry's repo, downloaded (or found) in the hub cache."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{_repo_words(entry)} (at {endpoint()})"
    try:
        return Path(hf_hub_download(entry.hub_repo, repo_path, repo_type=entry.hub_type, revision=entry.hub_revision,
                                    cache_dir=str(hub_cache()), endpoint=endpoint()))
    except GatedRepoError:
        raise WeightsError(f"{where} is gated: accept its terms on the Hub and set HF_TOKEN to a token of that "
                           "account, then run the pull again.") from None
    except RepositoryNotFoundError:
        raise WeightsError(f"{where} does not exist or is private (set HF_TOKEN if it is yours); the catalogue entry "
                           f"'{entry.name}' cannot be pulled from there.") from None
    except RevisionNotFoundError:
        raise WeightsError(f"{where} has no revision '{entry.hub_revision}'; the catalogue entry '{entry.name}' "
                           "names a revision the repository does not have.") from None
    except RemoteEntryNotFoundError:
        raise WeightsError(f"{where} has no file '{repo_path}' at revision '{entry.hub_revision}'; the catalogue entry "
                           f"'{entry.name}' does not match the repository.") from None
    except OfflineModeIsEnabled:
        raise WeightsError(f"HF_HUB_OFFLINE is set, so {repo_path} cannot be fetched from {where}; unset "
                           "HF_HUB_OFFLINE and run the pull again.") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "an"
        raise WeightsError(f"{where} answered HTTP {status} for {repo_path}; the transfer stopped (files already "
                           f"complete are kept) - run `{entry.pull_command()}` again later.") from None
    except OSError as exc:
        if exc.errno in NO_ROOM:
            raise WeightsError(no_room_sentence(exc, hub_cache())) from None
        if isinstance(exc, LocalEntryNotFoundError):  # huggingface_hub's wrapper of a failed connection
            raise WeightsError(f"Could not reach {where} to fetch {repo_path}; check the connection (or HF_ENDPOINT) "
                               f"and run `{entry.pull_command()}` again.") from None
        raise WeightsError(f"Fetching {repo_path} from {where} failed ({_short(exc)}); run "
                           f"`{entry.pull_command()}` again - files already complete are kept.") from None
    except _transport_errors() as exc:
        raise WeightsError(f"The connection to {where} broke while fetching {repo_path} ({_short(exc)}); run "
                           f"`{entry.pull_command()}` again - files already complete are kept.") from None


def cached_url_file(entry, name: str) -> Path | None:
    path = url_cache() / entry.name / name
    return path if path.is_file() else None


def download_url_file(entry, name: str, url: str) -> Path:
    """``url`` into ``<url cache>/ENTRY/NAME``, continuing a partial ``.incomplete`` file from an earlier pull."""
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.file_download import http_get

    folder = url_cache() / entry.name
    final = folder / name
    if final.is_file():
        return final
    partial = folder / f"{name}.incomplete"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(partial, "ab") as handle:
            http_get(url, handle, resume_size=handle.tell(), displayed_filename=name)
        os.replace(partial, final)
    except HfHubHTTPError as exc:
        partial.unlink(missing_ok=True)  # an error page is not a start to resume from
        status = exc.response.status_code if exc.response is not None else "an"
        raise WeightsError(f"{url} answered HTTP {status}; {name} of '{entry.name}' cannot be fetched from there "
                           "(the address in the catalogue may be out of date).") from None
    except OSError as exc:
        if exc.errno in NO_ROOM:
            partial.unlink(missing_ok=True)
            raise WeightsError(no_room_sentence(exc, folder)) from None
        raise WeightsError(f"Fetching {name} from {url} failed ({_short(exc)}); run `{entry.pull_command()}` again "
                           "to continue where it stopped.") from None
    except _transport_errors() as exc:
        raise WeightsError(f"The connection to {url} broke while fetching {name} ({_short(exc)}); run "
                           f"`{entry.pull_command()}` again to continue where it stopped.") from None
    return final


def forget(path: Path) -> None:
    """Delete a downloaded file whose checksum failed: the cache entry and, for hub files, the blob it points to."""
    path = Path(path)
    target = path.resolve() if path.is_symlink() else None
    path.unlink(missing_ok=True)
    if target is not None:
        target.unlink(missing_ok=True)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    first = text.split(". ")[0] if text else exc.__class__.__name__
    return first[:160].rstrip(".")
