"""Get a competition's files onto disk, unpacked, once.

Sources, in order: `--from PATH` (a local zip or folder), the data already present
(a no-op), Kaggle's notebook mount (/kaggle/input/SLUG, used in place), a mirror folder
of SLUG.zip bundles named by AUTOML_MIRROR (air-gapped machines, our tests), and last
the Kaggle API through the `kaggle` package, imported lazily because importing it
authenticates. Bundles are unpacked into a temporary folder and renamed into place, so
an interrupted fetch never looks finished; per-file archives inside the bundle
(train.csv.zip, train.csv.gz: how Kaggle serves some older competitions) are unpacked too.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import io
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

from automl.errors import AutomlError

MARKER = ".automl-fetched"
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
        if _fetched_from(target) == str(source):
            return target
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
        return _install(target, bundle, f"kaggle:{slug}")


def _mkdir(path: str | os.PathLike) -> Path:
    Path(path).mkdir(parents=True, exist_ok=True)
    return Path(path)


def _fetched_from(target: Path) -> str | None:
    marker = target / MARKER
    if not marker.is_file():
        return None
    return json.loads(marker.read_text())["source"]


def _install(target: Path, source: Path, label: str | Path) -> Path:
    """Unpack or copy `source` into a fresh folder, then rename it to `target`."""
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=_mkdir(target.parent)))
    try:
        if source.is_dir():
            shutil.copytree(source, partial, dirs_exist_ok=True)
        else:
            _unzip(source, partial)
        _unpack_nested(partial)
        if not any(p.name.lower().startswith("train") and p.suffix == ".csv" for p in partial.iterdir()):
            found = ", ".join(sorted(p.name for p in partial.iterdir())) or "nothing"
            raise AutomlError(f"{source}: the bundle has no train.csv (it holds {found})")
        (partial / MARKER).write_text(json.dumps({"source": str(label)}))
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
    if not _has_credentials():
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


def _has_credentials() -> bool:
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
