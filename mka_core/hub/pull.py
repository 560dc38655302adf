"""``mka weights pull NAME``: fetch a catalogue entry (and what it needs), check it, and put it in place.

For every entry, dependencies first:

1. already in place (``$MKA_HOME/models/NAME`` for models, ``$MKA_HOME/weights/NAME`` for other
   weights, the pip package for packaged ones): nothing to do;
2. the files come from the download cache when complete there, else from the hub or address -
   only when the network is allowed; offline, one sentence names every missing file, where it
   comes from, where it goes and the command that fetches it;
3. each file is checked: against the catalogue's sha256, else the digest recorded by an earlier
   pull, else (hub files) the hub's own content hash (an LFS file's sha256, a small file's git
   blob id). A file that fails is deleted from the cache and reported;
4. models are converted on arrival (:func:`mka_core.convert.common.run_conversion`: staging
   folder, then rename) into ``$MKA_HOME/models/NAME``; other weights are linked (or copied)
   into a hidden temporary folder renamed to ``$MKA_HOME/weights/NAME``. Only then are the
   digests of files the catalogue had none for recorded (:mod:`.checksums`).

Family A (Google Drive) cannot be downloaded by a program: the error gives the manual step,
and ``--from FILE_OR_DIR`` takes the downloaded files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from mka_core.errors import InputError, WeightsError
from mka_core.hub import checksums, fetch
from mka_core.hub.catalogue import WeightEntry, get_entry, with_needs

ALLOW_HINT = "add --allow-network or set MKA_ALLOW_NETWORK=1"
MANUAL_STEPS = {
    "maa1": "download the useful_ckpts/ folder (maa1_full.ckpt and bigvgan/) from the Google Drive link in the README "
            "of github.com/Text-to-Audio/Make-An-Audio, then run `mka weights pull maa1 --from useful_ckpts/`",
    "maa1-bigvgan": "download useful_ckpts/bigvgan/ (args.yml, best_netG.pt) from the Google Drive link in the README "
                    "of github.com/Text-to-Audio/Make-An-Audio, then run `mka weights pull maa1-bigvgan --from useful_ckpts/bigvgan/`",
}


def weights_home() -> Path:
    from mka_core.weights import mka_home

    return mka_home() / "weights"


def destination(entry: WeightEntry) -> Path:
    """Where a pulled entry lives: the model folder, or the weights folder."""
    from mka_core.model_lookup import models_home

    return models_home() / entry.name if entry.is_model else weights_home() / (entry.folder or entry.name)


def in_place(entry: WeightEntry) -> bool:
    folder = destination(entry)
    if entry.is_model:
        return (folder / "model_index.json").is_file()
    return folder.is_dir() and all((folder / f).is_file() for f in entry.files)


def package_installed(entry: WeightEntry) -> bool:
    from importlib import metadata

    try:
        metadata.version(entry.package or "")
        return True
    except metadata.PackageNotFoundError:
        return False


@dataclass
class Pulled:
    """What one entry's pull did (for the command's report)."""

    name: str
    location: Path
    action: str
    fetched: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)


# -- the plan ----------------------------------------------------------------------------------------


def cached_file(entry: WeightEntry, name: str, remote: str) -> Path | None:
    return fetch.cached_hub_file(entry, remote) if entry.hub_repo else fetch.cached_url_file(entry, name)


def missing_downloads(plan: list[WeightEntry]) -> list[tuple[WeightEntry, str, str]]:
    """(entry, file, hub path or address) of every file the plan would have to download."""
    out = []
    for entry in plan:
        if not entry.downloadable:
            continue
        out += [(entry, name, remote) for name, remote in entry.remote_files() if cached_file(entry, name, remote) is None]
    return out


def offline_sentence(names: list[str], missing: list[tuple[WeightEntry, str, str]]) -> str:
    parts = []
    for entry, name, remote in missing:
        origin = (f"the Hugging Face {'Space' if entry.hub_type == 'space' else 'model'} {entry.hub_repo}" if entry.hub_repo
                  else remote)
        parts.append(f"{name} of '{entry.name}' (from {origin}, {entry.size})")
    targets = ", ".join(str(destination(get_entry(n))) for n in names)
    command = "mka weights pull " + " ".join(names) + " --allow-network"
    return (f"The network is not allowed, and {len(parts)} file(s) are not in the download cache {fetch.hub_cache()}: "
            f"{'; '.join(parts)}; they would be fetched there and put in {targets} - run `{command}` "
            "(or set MKA_ALLOW_NETWORK=1).")


# -- checks --------------------------------------------------------------------------------------------


def _git_blob_id(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify(entry: WeightEntry, name: str, path: Path) -> tuple[str, bool]:
    """(sha256, whether the catalogue / record already knew it); a mismatch deletes the file and raises."""
    digest = checksums.sha256_file(path)
    known, origin = checksums.expected(entry, name)
    reference, what = known, f"the {origin}"
    if known is None and path.is_symlink():
        # The hub cache names each blob by its content hash: sha256 for LFS files, the git blob id otherwise.
        blob = path.resolve().name
        if re.fullmatch(r"[0-9a-f]{64}", blob):
            reference, what = blob, "the hub's LFS sha256"
        elif re.fullmatch(r"[0-9a-f]{40}", blob) and _git_blob_id(path) != blob:
            fetch.forget(path)
            raise WeightsError(f"{name} of '{entry.name}' does not match the hub's git blob id {blob[:12]}...; the "
                               f"damaged download was deleted - run `{entry.pull_command()}` again.")
    if reference is not None and digest != reference:
        fetch.forget(path)
        raise WeightsError(f"{name} of '{entry.name}' failed its checksum (sha256 {digest[:12]}..., expected "
                           f"{reference[:12]}... from {what}); the damaged download was deleted - run "
                           f"`{entry.pull_command()}` again.")
    return digest, known is not None


# -- putting things in place ---------------------------------------------------------------------------


def _clear_stale(parent: Path, name: str) -> None:
    """Remove hidden staging folders a killed pull of ``name`` left (never used; one pull per name at a time)."""
    for pattern in (f".{name}.partial-*", f".{name}.convert-*", f".{name}.old-*"):
        for stale in parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


def place_files(entry: WeightEntry, files: dict[str, Path], *, overwrite: bool) -> Path:
    """``files`` (name -> cached path) into ``$MKA_HOME/weights/NAME`` at once: temporary folder, then rename."""
    final = destination(entry)
    final.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale(final.parent, final.name)
    staging = final.parent / f".{final.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir()
        for name, source in files.items():
            target = staging / name
            real = Path(source).resolve()
            try:
                os.link(real, target)  # no second copy on the same disk
            except OSError:
                shutil.copyfile(real, target)
        if final.exists():
            if not overwrite and all((final / f).is_file() for f in entry.files):
                return final
            # Swap by renames, so the folder is always either the old set or the new one.
            old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, final)
    except OSError as exc:
        if exc.errno in fetch.NO_ROOM:
            raise WeightsError(fetch.no_room_sentence(exc, final)) from None
        raise WeightsError(f"Could not write {final} ({exc.strerror or exc}); check the folder's permissions.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def convert_entry(entry: WeightEntry, checkpoint: Path, *, overwrite: bool, vocoder: Path | None = None) -> Path:
    """Convert ``checkpoint`` of a model entry into ``$MKA_HOME/models/NAME`` (staged; nothing left on failure)."""
    from mka_core.convert.common import run_conversion

    kind = entry.convert_kind or ""
    tokenizer = destination(get_entry("bert-base-uncased"))
    if kind == "maa1":
        from mka_core.convert.maa1 import convert_maa1

        voc = vocoder or destination(get_entry("maa1-bigvgan"))

        def build(staging: Path):
            return convert_maa1(checkpoint, voc, staging=staging, tokenizer=tokenizer)
    elif kind.startswith("maa-b:"):
        from mka_core.convert.maa_b import convert_maa_b

        b_kind = kind.split(":", 1)[1]
        clip = destination(get_entry("openclip-vit-h-14-laion2b"))

        def build(staging: Path):
            return convert_maa_b(checkpoint, b_kind, staging=staging, vocoder=vocoder or destination(get_entry("maa-b-bigvgan")),
                                 tokenizer=tokenizer if b_kind == "t2a" else None,
                                 clip=clip if b_kind == "i2a" and clip.is_dir() else None)
    else:
        raise InputError(f"The catalogue entry '{entry.name}' names an unknown conversion '{kind}'.")
    out = destination(entry)
    out.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale(out.parent, entry.name)
    if out.exists() and not overwrite and not (out / "model_index.json").is_file():
        raise InputError(f"{out} exists but holds no model; remove it, or pull with --force to replace it.")
    try:
        folder, _ = run_conversion(build, out, overwrite=overwrite)
    except OSError as exc:
        if exc.errno in fetch.NO_ROOM:
            raise WeightsError(fetch.no_room_sentence(exc, out)) from None
        raise
    return folder


# -- --from -------------------------------------------------------------------------------------------------


def from_local(entry: WeightEntry, source: Path) -> tuple[dict[str, Path], Path | None]:
    """(files by name, vocoder folder or None) from a user-downloaded file or folder."""
    source = source.expanduser()
    if not source.exists():
        raise InputError(f"--from {source}: no such file or folder.")
    if entry.is_model:
        ckpt_name = entry.files[0]
        if source.is_file():
            ckpt, folder = source, source.parent
        else:
            folder = source
            ckpt = source / ckpt_name
            if not ckpt.is_file():
                found = sorted(source.glob("*.ckpt"))
                if len(found) != 1:
                    raise InputError(f"--from {source}: the folder holds no {ckpt_name} (nor exactly one .ckpt file); "
                                     "pass the checkpoint file itself.")
                ckpt = found[0]
        vocoder = folder / "bigvgan" if (folder / "bigvgan" / "best_netG.pt").is_file() else None
        if entry.convert_kind == "maa1" and vocoder is None and not in_place(get_entry("maa1-bigvgan")):
            raise InputError(f"--from {source}: maa1 needs its BigVGAN folder: put bigvgan/ (args.yml, best_netG.pt) "
                             f"beside {ckpt.name}, or first run `mka weights pull maa1-bigvgan --from BIGVGAN_DIR`.")
        return {ckpt_name: ckpt}, vocoder
    folder = source if source.is_dir() else source.parent
    missing = [f for f in entry.files if not (folder / f).is_file()]
    if missing:
        raise InputError(f"--from {source}: {', '.join(missing)} missing; '{entry.name}' needs {', '.join(entry.files)}.")
    return {f: folder / f for f in entry.files}, None


# -- the command ----------------------------------------------------------------------------------------------


def pull(names: list[str], *, allow_network: bool, source: str | Path | None = None, overwrite: bool = False,
         report=print) -> list[Pulled]:
    """Pull ``names`` and what they need; see the module docstring."""
    if not names:
        raise InputError("Name at least one catalogue entry to pull (see `mka weights`).")
    if source is not None and len(names) != 1:
        raise InputError("--from takes the files of one entry; pull one name at a time with it.")
    plan = with_needs(names)
    given = {names[0]} if source is not None else set()
    redo = set(names) if overwrite else set()
    todo = [e for e in plan if e.name in given or e.name in redo or not in_place(e)]
    for entry in todo:
        if entry.name in given:
            continue
        if entry.package is not None:
            if not package_installed(entry):
                raise InputError(f"'{entry.name}' ships inside the pip package {entry.package}: run "
                                 f"`mka install {entry.package}`.")
            continue
        if entry.manual:
            step = MANUAL_STEPS.get(entry.name, f"get {', '.join(entry.files)} from {entry.source}, then run "
                                                f"`mka weights pull {entry.name} --from DIR`")
            raise InputError(f"'{entry.name}' cannot be downloaded by mka ({entry.source}): {step}.")
    missing = missing_downloads([e for e in todo if e.name not in given])
    if missing and not allow_network:
        raise WeightsError(offline_sentence(names, missing))
    done = []
    for entry in plan:
        if entry not in todo:
            done.append(Pulled(entry.name, destination(entry), "already in place"))
        elif entry.package is not None:
            from mka_core.hub.status import package_files

            found = package_files(entry)
            done.append(Pulled(entry.name, found[0].parent if found else Path(entry.package), "installed package"))
        else:
            done.append(_pull_one(entry, Path(source) if entry.name in given else None,
                                  overwrite=entry.name in given or entry.name in redo))
            report(_describe(done[-1]))
    return done


def _pull_one(entry: WeightEntry, source: Path | None, *, overwrite: bool) -> Pulled:
    fetched: list[str] = []
    vocoder = None
    if source is not None:
        files, vocoder = from_local(entry, source)
        trusted = {}
        for name, path in files.items():
            known, origin = checksums.expected(entry, name)
            if known is not None and checksums.sha256_file(path) != known:
                raise WeightsError(f"--from {path}: its sha256 differs from the {origin}'s for {name}; it is not the "
                                   f"released file of '{entry.name}'.")
    else:
        files, trusted = {}, {}
        for name, remote in entry.remote_files():
            path = cached_file(entry, name, remote)
            if path is None:
                path = fetch.download_hub_file(entry, remote) if entry.hub_repo else fetch.download_url_file(entry, name, remote)
                fetched.append(name)
            digest, known = verify(entry, name, path)
            if not known:
                trusted[name] = digest
            files[name] = path
    if entry.is_model:
        location = convert_entry(entry, files[entry.files[0]], overwrite=overwrite, vocoder=vocoder)
        action = "converted"
    else:
        location = place_files(entry, files, overwrite=overwrite)
        action = "placed"
    with contextlib.suppress(OSError):  # the record is a convenience; the weights are in place
        checksums.record(entry.name, trusted)
    return Pulled(entry.name, location, action, fetched, sorted(trusted))


def _describe(done: Pulled) -> str:
    got = f"fetched {', '.join(done.fetched)}; " if done.fetched else ""
    rec = f"; sha256 of {', '.join(done.recorded)} recorded in {checksums.record_path()}" if done.recorded else ""
    return f"{done.name}: {got}{done.action} in {done.location}{rec}"
