"""Get a competition's files onto disk, unpacked, once.

Sources, in order: `--from PATH` (a local zip or folder), the data already present
(a no-op), Kaggle's notebook mount (/kaggle/input/SLUG, used in place), a mirror folder
of SLUG.zip bundles named by AUTOML_MIRROR (air-gapped machines, our tests), and last
the Kaggle API through the `kaggle` package, imported lazily because importing it
authenticates. Bundles are unpacked into a temporary folder and renamed into place, so
an interrupted fetch never looks finished; per-file archives inside the bundle
(train.csv.zip, train.csv.gz: how Kaggle serves some older competitions) are unpacked too.

A marker file records where the files came from, and for `--from` the source's size and
modification time, so a source that changed is unpacked again. A download through the
Kaggle API also asks for the competition's record (title, metric, daily submission limit)
and keeps it beside the data as .competition.json; that request never fails the fetch.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

from automl.errors import AutomlError

MARKER = ".automl-fetched"
RECORD = ".competition.json"  # what Kaggle says of the competition: title, metric, daily limit
POLL_SECONDS = 5.0  # between two questions to Kaggle about a dataset being processed
log = logging.getLogger("automl")
CREDENTIALS_HELP = (
    "put kaggle.json (kaggle.com > Settings > API > Create New Token) in ~/.kaggle/ "
    "(or the folder named by KAGGLE_CONFIG_DIR), or set KAGGLE_USERNAME and KAGGLE_KEY"
)


def fetch(slug: str, data_dir: str | os.PathLike = "data", source: str | os.PathLike | None = None) -> Path:
    """Return the folder holding `slug`'s unpacked files, fetching them if needed."""
    with _fetch_lock(Path(data_dir), slug):  # workers started together fetch once, not over each other
        return _fetch(slug, Path(data_dir), source)


@contextlib.contextmanager
def _fetch_lock(data_dir: Path, slug: str):
    """Lock the data folder itself (no lock file left behind) while one process fetches."""
    descriptor = os.open(_mkdir(data_dir), os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)


def _fetch(slug: str, data_dir: Path, source) -> Path:
    target = data_dir / slug
    if source is not None:
        source = Path(source).expanduser().resolve()
        marker = _marker(target)
        if marker.get("source") == str(source):
            if not source.exists() or marker.get("stamp") == _stamp(source):
                return target  # unpacked from this very source (since deleted, maybe)
            log.warning("--from %s: changed since it was unpacked; unpacking it again", source)
        if not source.exists():
            raise AutomlError(f"--from {source}: no such file or folder")
        return _install(target, source, source)
    if _fetched_from(target) is not None:
        return target
    mounted = Path(os.environ.get("AUTOML_KAGGLE_INPUT", "/kaggle/input")) / slug
    if mounted.is_dir():
        return mounted  # a Kaggle notebook: the data is mounted, read-only and unpacked
    mirror = os.environ.get("AUTOML_MIRROR")
    if mirror and (Path(mirror) / f"{slug}.zip").is_file():
        bundle = Path(mirror) / f"{slug}.zip"
        return _install(target, bundle, bundle)
    with tempfile.TemporaryDirectory(prefix=f".{slug}-download-", dir=_mkdir(data_dir)) as tmp:
        bundle = download(slug, Path(tmp))
        return _install(target, bundle, f"kaggle:{slug}", record=competition_record(slug))


def _mkdir(path: str | os.PathLike) -> Path:
    Path(path).mkdir(parents=True, exist_ok=True)
    return Path(path)


def _marker(target: Path) -> dict:
    """What the marker of a finished fetch says ({} when there is none)."""
    marker = target / MARKER
    return json.loads(marker.read_text()) if marker.is_file() else {}


def _fetched_from(target: Path) -> str | None:
    return _marker(target).get("source")


def _stamp(source: Path) -> str:
    """Size and modification time of a file, or of every file under a folder, as one digest."""
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
    facts = [(str(p.relative_to(source)) if source.is_dir() else p.name, p.stat().st_size, p.stat().st_mtime_ns)
             for p in files]
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()


def read_record(folder: Path) -> dict | None:
    """Kaggle's record of the competition saved beside its data, or None."""
    path = Path(folder) / RECORD
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _install(target: Path, source: Path, label: str | Path, record: dict | None = None) -> Path:
    """Unpack or copy `source` into a fresh folder, then rename it to `target`."""
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=_mkdir(target.parent)))
    try:
        if source.is_dir():
            shutil.copytree(source, partial, dirs_exist_ok=True)
        else:
            _unzip(source, partial)
        _unpack_nested(partial)
        tables = [p for p in partial.iterdir() if p.suffix.lower() == ".csv"]
        combined = len(tables) == 2 and any(re.search("sample|submission", p.name, re.IGNORECASE) for p in tables)
        if not combined and not any(p.name.lower().startswith("train") for p in tables):  # data.csv + sample: one table
            found = ", ".join(sorted(p.name for p in partial.iterdir())) or "nothing"
            raise AutomlError(f"{source}: the bundle has no train.csv (it holds {found})")
        stamp = _stamp(source) if str(label) == str(source) else None  # only --from sources can change
        (partial / MARKER).write_text(json.dumps({"source": str(label), "stamp": stamp}))
        if record:
            (partial / RECORD).write_text(json.dumps(record, indent=1))
        if target.exists():
            shutil.rmtree(target)
        os.replace(partial, target)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return target


def _unzip(bundle: Path, into: Path) -> None:
    try:
        with zipfile.ZipFile(bundle) as archive:
            for member in archive.infolist():
                if member.filename.startswith("/") or ".." in Path(member.filename).parts:
                    raise AutomlError(f"{bundle}: unsafe path {member.filename!r} in the zip; not unpacking it")
            archive.extractall(into)
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, zipfile.BadZipFile) and exc.errno is not None:
            raise
        raise AutomlError(f"{bundle}: corrupt or truncated zip ({exc}); delete it and fetch again") from exc


def _unpack_nested(folder: Path) -> None:
    """Unpack per-file archives (train.csv.zip, train.csv.gz) where they lie."""
    for path in sorted(folder.rglob("*")):
        name = path.name.lower()
        if name.endswith(".zip"):
            _unzip(path, path.parent)
            path.unlink()
        elif name.endswith(".gz") and not name.endswith(".tar.gz"):
            try:
                with gzip.open(path, "rb") as src, open(path.with_suffix(""), "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except (OSError, EOFError, zlib.error) as exc:
                raise AutomlError(f"{path.name}: corrupt or truncated gzip ({exc}); delete the bundle and fetch again") from exc
            path.unlink()


def kaggle_api():
    """An authenticated KaggleApi, or one clear error naming where credentials go.

    Importing `kaggle` authenticates and prints its own help when it finds nothing, so
    the import is lazy, quiet, and preceded by our own check.
    """
    if not has_credentials():
        raise AutomlError(f"no Kaggle credentials found: {CREDENTIALS_HELP}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except SystemExit as exc:
        raise AutomlError(f"Kaggle rejected the credentials it found: {CREDENTIALS_HELP}") from exc
    except OSError as exc:  # requests' errors are OSErrors; a token check can fail this way
        raise _request_error(exc, "authenticate", "") from exc
    return api


def has_credentials() -> bool:
    env = os.environ
    if (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY")) or env.get("KAGGLE_API_TOKEN"):
        return True
    home = Path.home()
    folders = [Path(env["KAGGLE_CONFIG_DIR"])] if env.get("KAGGLE_CONFIG_DIR") else []
    folders += [home / ".kaggle", Path(env.get("XDG_CONFIG_HOME", home / ".config")) / "kaggle"]
    files = [f / "kaggle.json" for f in folders] + [home / ".kaggle" / n for n in ("access_token", "access_token.txt", "credentials.json")]
    return any(f.is_file() for f in files)


def _request_error(exc: OSError, action: str, slug: str) -> AutomlError:
    """Map a kaggle client failure to one line; never echo credentials."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status == 401:
        return AutomlError(f"Kaggle answered 401 Unauthorized: the username or key is wrong or expired; {CREDENTIALS_HELP}")
    if status == 403:
        return AutomlError(
            f"Kaggle answered 403 Forbidden for {slug!r}: accept the competition's rules at "
            f"https://www.kaggle.com/competitions/{slug}/rules, then run the command again"
        )
    if status == 404:
        return AutomlError(f"Kaggle has no competition {slug!r} (404); check the slug in the competition's URL")
    if status is not None:
        return AutomlError(f"Kaggle answered HTTP {status} while trying to {action} {slug!r}; try again later")
    return AutomlError(
        f"cannot reach Kaggle to {action} {slug!r} ({exc.__class__.__name__}); check the network, "
        f"or use --from PATH / AUTOML_MIRROR with a downloaded SLUG.zip"
    )


def download(slug: str, folder: Path) -> Path:
    """Download `slug`'s bundle with the kaggle client into `folder`; return the zip."""
    api = kaggle_api()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            api.competition_download_files(slug, path=str(folder), quiet=True)
    except OSError as exc:
        raise _request_error(exc, "download", slug) from exc
    except ValueError as exc:  # the client's size check on a cut-off download
        raise AutomlError(f"the download of {slug!r} was cut off ({exc}); run the command again") from exc
    bundles = sorted(folder.glob("*.zip"))
    if not bundles:
        raise AutomlError(f"Kaggle sent no zip for {slug!r}; run the command again")
    return bundles[0]


def competition_record(slug: str) -> dict | None:
    """Kaggle's record of `slug` (title, metric name, daily submission limit), or None.

    Asked for after a download; any failure is one warning line, never a failed fetch.
    """
    try:
        from kagglesdk.competitions.types.competition_api_service import ApiGetCompetitionRequest

        api = kaggle_api()
        request = ApiGetCompetitionRequest()
        request.competition_name = slug
        with contextlib.redirect_stdout(io.StringIO()), api.build_kaggle_client() as kaggle:
            found = kaggle.competitions.competition_api_client.get_competition(request)
    except Exception as exc:  # noqa: BLE001 - the data is here already; the record is a bonus
        detail = str(exc).splitlines()[0] if str(exc) else ""
        log.warning("Kaggle's record of %r could not be read (%s%s); its metric is not known",
                    slug, exc.__class__.__name__, f": {detail}" if detail else "")
        return None
    return {"slug": slug, "title": found.title or "", "evaluation_metric": found.evaluation_metric or "",
            "max_daily_submissions": found.max_daily_submissions or None}


def submit(slug: str, file: Path, message: str) -> str:
    """Upload a submission file with the kaggle client; return Kaggle's reply."""
    api = kaggle_api()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            reply = api.competition_submit(str(file), message, slug, quiet=True)
    except OSError as exc:
        raise _request_error(exc, "submit to", slug) from exc
    text = str(getattr(reply, "message", "") or reply)
    if not getattr(reply, "ref", 0):  # the client reports a failed upload this way, without raising
        raise AutomlError(f"Kaggle did not accept the submission to {slug!r}: {text}; try again later")
    return text


def submissions(slug: str) -> list[dict]:
    """Past submissions to `slug`, newest first, as plain dicts."""
    api = kaggle_api()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            found = api.competition_submissions(slug)
    except OSError as exc:
        raise _request_error(exc, "list submissions of", slug) from exc
    return [{"date": str(s.date), "file": s.file_name, "description": s.description,
             "status": getattr(s.status, "name", str(s.status)), "public": s.public_score, "private": s.private_score}
            for s in found or []]


def kaggle_username() -> str:
    """The Kaggle user the credentials belong to (the owner of pushed notebooks and datasets)."""
    api = kaggle_api()
    user = api.get_config_value(api.CONFIG_NAME_USER) or os.environ.get("KAGGLE_USERNAME")
    if not user:
        raise AutomlError(f"the Kaggle credentials found name no user; {CREDENTIALS_HELP}")
    return user


def push_dataset(folder: Path, notes: str, wait: float = 600.0) -> str:
    """Upload `folder` (with its dataset-metadata.json) as a private dataset, or as a new version of it
    when it exists, and wait until Kaggle has processed it (a notebook cannot mount it before)."""
    import time

    api = kaggle_api()
    ref = json.loads((folder / "dataset-metadata.json").read_text())["id"]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exists = _dataset_exists(api, ref)
            before = _dataset_version(api, ref)[1] if exists else 0
            if exists:
                reply = api.dataset_create_version(str(folder), notes, quiet=True)
            else:
                reply = api.dataset_create_new(str(folder), public=False, quiet=True)
        if getattr(reply, "error", None):
            raise AutomlError(f"Kaggle refused the dataset {ref}: {reply.error}")
        deadline = time.monotonic() + wait
        # ready, and the new version (the one just uploaded, not the one before it) is the current one
        while (found := _dataset_version(api, ref)) and not (found[0] == "ready" and (found[1] or 0) > (before or -1)):
            status = found[0]
            if status == "failed" or time.monotonic() > deadline:
                raise AutomlError(f"Kaggle's processing of the dataset {ref} is {status} after {wait:.0f}s; "
                                  f"see https://www.kaggle.com/datasets/{ref} and push again when it is ready")
            time.sleep(POLL_SECONDS)
    except OSError as exc:
        raise _push_error(exc, f"the dataset {ref}") from exc
    except ValueError as exc:  # the client's own checks of the metadata
        raise AutomlError(f"{folder / 'dataset-metadata.json'}: {exc}") from exc
    return f"{'new version of' if exists else 'created'} https://www.kaggle.com/datasets/{ref}"


def push_kernel(folder: Path) -> str:
    """Save and run the notebook in `folder` (kernel-metadata.json) with the client's kernels push;
    returns the notebook's URL."""
    api = kaggle_api()
    ref = json.loads((folder / "kernel-metadata.json").read_text())["id"]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            reply = api.kernels_push(str(folder))
    except OSError as exc:
        raise _push_error(exc, f"the notebook {ref}") from exc
    except ValueError as exc:
        raise AutomlError(f"{folder / 'kernel-metadata.json'}: {exc}") from exc
    if getattr(reply, "error", None):
        raise AutomlError(f"Kaggle refused the notebook {ref}: {reply.error}")
    version = f" (version {reply.version_number})" if getattr(reply, "version_number", None) else ""
    return f"{reply.url or 'https://www.kaggle.com/code/' + ref}{version}"


def _dataset_exists(api, ref: str) -> bool:
    try:
        _dataset_status(api, ref)
    except OSError as exc:
        if getattr(getattr(exc, "response", None), "status_code", None) == 404:
            return False
        raise
    return True


def _dataset_status(api, ref: str) -> str:
    with contextlib.redirect_stdout(io.StringIO()):
        return str(api.dataset_status(ref)).lower()


def _dataset_version(api, ref: str) -> tuple[str, int | None]:
    """The dataset's processing status and current version number (None where the client cannot say)."""
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            found = json.loads(api.dataset_status(ref, format="json(status,current_version_number)"))
        except TypeError:  # an older client: the status alone
            return _dataset_status(api, ref), None
    return str(found.get("status", "")).lower(), found.get("current_version_number")


def _push_error(exc: OSError, what: str) -> AutomlError:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status == 401:
        return AutomlError(f"Kaggle answered 401 Unauthorized: the username or key is wrong or expired; {CREDENTIALS_HELP}")
    if status is not None:
        return AutomlError(f"Kaggle answered HTTP {status} while pushing {what}; the folder is kept: push it again later")
    return AutomlError(f"cannot reach Kaggle to push {what} ({exc.__class__.__name__}); check the network, then push again")
