"""Fetching a competition: the real kaggle client against the stand-in server, mirrors, local files, errors."""

from __future__ import annotations

import base64
import importlib
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
import requests
from conftest import MIRROR, bundle
from typer.testing import CliRunner

from automl.cli import app
from automl.errors import AutomlError
from automl.fetch import MARKER, RECORD, fetch

# `automl.fetch` is also the package's fetch() function, so reach the module through importlib.
fetch_module = importlib.import_module("automl.fetch")

SECRET = "0123456789abcdef-secret"
TITANIC_FILES = ["gender_submission.csv", "test.csv", "train.csv"]


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def assert_fails(result, message: str) -> None:
    """Exit 1, one line naming the problem, no traceback and never the secret key."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert message in result.output
    assert result.output.startswith("error: ")
    assert result.output.count("\n") == 1
    assert "Traceback" not in result.output
    assert SECRET not in result.output


# ---------------------------------------------------------------- through the kaggle client

def test_fetch_downloads_through_the_kaggle_client(kaggle, no_mirror, tmp_path):
    bundle("titanic")
    result = invoke("fetch", "titanic", "--data-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert files(tmp_path / "titanic") == TITANIC_FILES
    with zipfile.ZipFile(MIRROR / "titanic.zip") as archive:
        assert (tmp_path / "titanic" / "train.csv").read_bytes() == archive.read("train.csv")
    downloads = kaggle.calls("DownloadDataFiles")
    assert [(r.method, r.body) for r in downloads] == [("POST", {"competitionName": "titanic"})]
    auth = downloads[0].headers["Authorization"]
    assert base64.b64decode(auth.removeprefix("Basic ")).decode() == f"competitor:{SECRET}"
    assert [r.path for r in kaggle.requests if r.method == "GET"] == ["/storage/competitions/titanic.zip"]
    assert SECRET not in result.output
    # Nothing but the unpacked folder is left behind: no zip, no temporary download folder.
    assert [p.name for p in tmp_path.iterdir()] == ["titanic"]

    kaggle.requests.clear()
    again = invoke("fetch", "titanic", "--data-dir", tmp_path)
    assert again.exit_code == 0, again.output
    assert kaggle.requests == []
    assert files(tmp_path / "titanic") == TITANIC_FILES


def test_fetch_from_the_mirror_makes_no_request(kaggle, tmp_path):
    bundle("titanic")
    result = invoke("fetch", "titanic", "--data-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert files(tmp_path / "titanic") == TITANIC_FILES
    assert kaggle.requests == []
    assert fetch("titanic", tmp_path) == tmp_path / "titanic"
    assert kaggle.requests == []


def test_fetch_with_an_access_token_only(kaggle, no_mirror, tmp_path, monkeypatch):
    bundle("titanic")
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.setenv("KAGGLE_API_TOKEN", "token-" + SECRET)
    result = invoke("fetch", "titanic", "--data-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert files(tmp_path / "titanic") == TITANIC_FILES
    download = kaggle.calls("DownloadDataFiles")[0]
    assert download.headers["Authorization"] == f"Bearer token-{SECRET}"
    assert SECRET not in result.output


# ------------------------------------------------------------------------ errors

def test_no_credentials(kaggle, no_mirror, tmp_path, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    result = invoke("fetch", "titanic", "--data-dir", tmp_path)
    assert_fails(result, "no Kaggle credentials found: put kaggle.json (kaggle.com > Settings > API > Create New "
                         "Token) in ~/.kaggle/")
    assert "or set KAGGLE_USERNAME and KAGGLE_KEY" in result.output
    assert kaggle.requests == []
    assert not (tmp_path / "titanic").exists()


def test_a_kaggle_json_counts_as_credentials(kaggle, no_mirror, tmp_path, monkeypatch):
    bundle("titanic")
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    # The client reads KAGGLE_CONFIG_DIR once, when first imported: use the folder conftest named.
    config = Path(os.environ["KAGGLE_CONFIG_DIR"])
    config.mkdir(parents=True, exist_ok=True)
    (config / "kaggle.json").write_text(f'{{"username": "competitor", "key": "{SECRET}"}}')
    try:
        result = invoke("fetch", "titanic", "--data-dir", tmp_path)
    finally:
        (config / "kaggle.json").unlink()
    assert result.exit_code == 0, result.output
    assert files(tmp_path / "titanic") == TITANIC_FILES
    auth = kaggle.calls("DownloadDataFiles")[0].headers["Authorization"]
    assert base64.b64decode(auth.removeprefix("Basic ")).decode() == f"competitor:{SECRET}"


@pytest.mark.parametrize(("status", "message"), [
    (401, "error: Kaggle answered 401 Unauthorized: the username or key is wrong or expired; put kaggle.json"),
    (403, "error: Kaggle answered 403 Forbidden for 'titanic': accept the competition's rules at "
          "https://www.kaggle.com/competitions/titanic/rules, then run the command again"),
    (404, "error: Kaggle has no competition 'titanic' (404); check the slug in the competition's URL"),
    (500, "error: Kaggle answered HTTP 500 while trying to download 'titanic'; try again later"),
])
def test_kaggle_refuses(kaggle, no_mirror, tmp_path, status, message):
    bundle("titanic")
    kaggle.status_for["titanic"] = status
    result = invoke("fetch", "titanic", "--data-dir", tmp_path)
    assert_fails(result, message)
    assert len(kaggle.calls("DownloadDataFiles")) == 1
    assert not (tmp_path / "titanic").exists()
    assert list(tmp_path.iterdir()) == []  # the temporary download folder is gone too


def test_unknown_slug_suggests_checking_it(kaggle, no_mirror, tmp_path):
    result = invoke("fetch", "titanik", "--data-dir", tmp_path)
    assert_fails(result, "error: Kaggle has no competition 'titanik' (404); check the slug in the competition's URL")


class _Offline:
    def competition_download_files(self, *args, **kwargs):
        raise requests.exceptions.ConnectionError("Failed to establish a new connection: [Errno 111] refused")


def test_no_network(kaggle, no_mirror, tmp_path, monkeypatch):
    monkeypatch.setattr(fetch_module, "kaggle_api", lambda: _Offline())
    result = invoke("fetch", "titanic", "--data-dir", tmp_path)
    assert_fails(result, "error: cannot reach Kaggle to download 'titanic' (ConnectionError); check the network, "
                         "or use --from PATH / AUTOML_MIRROR with a downloaded SLUG.zip")
    assert not (tmp_path / "titanic").exists()


def test_a_cut_off_download(kaggle, no_mirror, tmp_path, monkeypatch):
    class CutOff:
        def competition_download_files(self, *args, **kwargs):
            raise ValueError("Downloaded file size (100) does not match expected size (33701)")

    monkeypatch.setattr(fetch_module, "kaggle_api", lambda: CutOff())
    with pytest.raises(AutomlError, match=r"^the download of 'titanic' was cut off \(Downloaded file size .*\); "
                                          r"run the command again$"):
        fetch("titanic", tmp_path)


# ------------------------------------------------------------------ local sources

def test_from_a_zip(kaggle, no_mirror, tmp_path):
    source = bundle("titanic")
    result = invoke("fetch", "titanic", "--from", source, "--data-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert files(tmp_path / "titanic") == TITANIC_FILES
    assert kaggle.requests == []
    stamp = (tmp_path / "titanic" / MARKER).stat().st_mtime_ns
    assert fetch("titanic", tmp_path, source) == tmp_path / "titanic"  # the same source again: a no-op
    assert (tmp_path / "titanic" / MARKER).stat().st_mtime_ns == stamp


def test_from_a_folder(tmp_path):
    source = tmp_path / "downloaded"
    with zipfile.ZipFile(bundle("titanic")) as archive:
        archive.extractall(source)
    result = invoke("fetch", "titanic", "--from", source, "--data-dir", tmp_path / "data")
    assert result.exit_code == 0, result.output
    assert files(tmp_path / "data" / "titanic") == TITANIC_FILES
    assert files(source) == TITANIC_FILES  # the source folder is copied, not moved


def test_from_another_source_replaces_the_files(tmp_path):
    first = fetch("titanic", tmp_path / "data", bundle("titanic"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "train.csv").write_text("id,y\n1,0\n2,1\n")
    (other / "test.csv").write_text("id\n3\n")
    assert fetch("titanic", tmp_path / "data", other) == first
    assert files(first) == ["test.csv", "train.csv"]


def test_from_a_folder_whose_files_changed_is_copied_again(tmp_path, caplog):
    source = tmp_path / "downloaded"
    source.mkdir()
    (source / "train.csv").write_text("id,y\n1,0\n2,1\n")
    (source / "test.csv").write_text("id\n3\n")
    folder = fetch("mine", tmp_path / "data", source)
    stamp = (folder / MARKER).stat().st_mtime_ns
    assert fetch("mine", tmp_path / "data", source) == folder  # unchanged: a no-op
    assert (folder / MARKER).stat().st_mtime_ns == stamp
    assert caplog.records == []
    (source / "train.csv").write_text("id,y\n1,0\n2,1\n4,1\n")
    assert fetch("mine", tmp_path / "data", source) == folder
    assert (folder / "train.csv").read_text() == "id,y\n1,0\n2,1\n4,1\n"
    assert [r.getMessage() for r in caplog.records] == [f"--from {source}: changed since it was unpacked; "
                                                        "unpacking it again"]


def test_from_a_zip_replaced_by_another_is_unpacked_again(tmp_path):
    source = tmp_path / "mine.zip"
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("train.csv", "id,y\n1,0\n")
        archive.writestr("test.csv", "id\n2\n")
    folder = fetch("mine", tmp_path / "data", source)
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("train.csv", "id,y\n1,0\n5,1\n")
        archive.writestr("test.csv", "id\n2\n")
        archive.writestr("sample_submission.csv", "id,y\n2,0\n")
    os.utime(source, ns=(1, 1))  # a new size and modification time
    result = invoke("fetch", "mine", "--from", source, "--data-dir", tmp_path / "data")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"warning: --from {source}: changed since it was unpacked; unpacking it again\n")
    assert files(folder) == ["sample_submission.csv", "test.csv", "train.csv"]
    assert (folder / "train.csv").read_text() == "id,y\n1,0\n5,1\n"


def test_a_folder_unpacked_before_sources_were_stamped_is_unpacked_again(tmp_path):
    source = bundle("titanic")
    folder = fetch("titanic", tmp_path, source)
    (folder / MARKER).write_text(json.dumps({"source": str(source.resolve())}))  # as older versions wrote it
    (folder / "train.csv").write_text("stale")
    fetch("titanic", tmp_path, source)
    assert (folder / "train.csv").read_text().startswith("PassengerId,")


def test_from_a_source_since_deleted_keeps_the_unpacked_files(tmp_path):
    source = tmp_path / "copy.zip"
    shutil.copyfile(bundle("titanic"), source)
    folder = fetch("titanic", tmp_path / "data", source)
    source.unlink()
    assert fetch("titanic", tmp_path / "data", source) == folder
    assert files(folder) == TITANIC_FILES


def test_the_kaggle_record_is_kept_beside_the_data(kaggle, no_mirror, tmp_path):
    bundle("titanic")
    folder = fetch("titanic", tmp_path)
    assert [r.body for r in kaggle.calls("GetCompetition")] == [{"competitionName": "titanic"}]
    assert json.loads((folder / RECORD).read_text()) == {
        "slug": "titanic", "title": "Titanic", "evaluation_metric": "Categorization Accuracy",
        "max_daily_submissions": 5}
    assert files(folder) == TITANIC_FILES  # hidden, as the marker is
    kaggle.requests.clear()
    fetch("titanic", tmp_path)
    assert kaggle.requests == []  # data already here: no download and no record request


def test_no_record_from_a_mirror_or_a_local_source(kaggle, tmp_path):
    assert not (fetch("titanic", tmp_path / "a") / RECORD).exists()
    assert not (fetch("titanic", tmp_path / "b", bundle("titanic")) / RECORD).exists()
    assert kaggle.requests == []


def test_from_a_missing_path(tmp_path):
    result = invoke("fetch", "titanic", "--from", tmp_path / "nowhere.zip", "--data-dir", tmp_path)
    assert_fails(result, f"error: --from {tmp_path / 'nowhere.zip'}: no such file or folder")


@pytest.mark.parametrize("slug", ["ghouls-goblins-and-ghosts-boo", "mercedes-benz-greener-manufacturing"])
def test_nested_archives_unpack_to_plain_csvs(slug, tmp_path):
    with zipfile.ZipFile(bundle(slug)) as archive:
        assert all(name.endswith(".csv.zip") for name in archive.namelist())
    folder = fetch(slug, tmp_path)
    assert files(folder) == ["sample_submission.csv", "test.csv", "train.csv"]
    assert (folder / "train.csv").read_bytes().startswith(b"id," if slug.startswith("ghouls") else b"ID,")


def test_nested_gzip_is_unpacked(tmp_path):
    import gzip

    source = tmp_path / "bundle.zip"
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("train.csv.gz", gzip.compress(b"id,y\n1,0\n"))
        archive.writestr("test.csv", "id\n2\n")
    folder = fetch("mine", tmp_path / "data", source)
    assert files(folder) == ["test.csv", "train.csv"]
    assert (folder / "train.csv").read_text() == "id,y\n1,0\n"


def test_corrupt_or_truncated_zip(tmp_path):
    whole = bundle("titanic").read_bytes()
    half = tmp_path / "titanic.zip"
    half.write_bytes(whole[: len(whole) // 2])
    result = invoke("fetch", "titanic", "--from", half, "--data-dir", tmp_path / "data")
    assert_fails(result, f"error: {half}: corrupt or truncated zip (")
    assert "delete it and fetch again" in result.output
    assert not (tmp_path / "data" / "titanic").exists()


def test_zip_with_damaged_data(tmp_path):
    # The directory at the end is intact but the compressed bytes of a member are not:
    # zlib fails while unpacking. That is the same corrupt zip to the user.
    data = bytearray(bundle("titanic").read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        start = archive.infolist()[0].header_offset + 100
    for i in range(start, start + 200):
        data[i] ^= 0x5A
    damaged = tmp_path / "titanic.zip"
    damaged.write_bytes(bytes(data))
    result = invoke("fetch", "titanic", "--from", damaged, "--data-dir", tmp_path / "data")
    assert_fails(result, f"error: {damaged}: corrupt or truncated zip (")
    assert not (tmp_path / "data" / "titanic").exists()


def test_bundle_without_train_csv(tmp_path):
    source = tmp_path / "only-test.zip"
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("test.csv", "id\n1\n")
    result = invoke("fetch", "mine", "--from", source, "--data-dir", tmp_path / "data")
    assert_fails(result, f"error: {source}: the bundle has no train.csv (it holds test.csv)")
    assert list((tmp_path / "data").iterdir()) == []


def test_zip_with_an_unsafe_path(tmp_path):
    source = tmp_path / "evil.zip"
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("../train.csv", "id,y\n1,0\n")
    with pytest.raises(AutomlError, match=r"unsafe path '\.\./train\.csv' in the zip; not unpacking it$"):
        fetch("mine", tmp_path / "data", source)
    assert not (tmp_path / "data" / "train.csv").exists()


# ------------------------------------------------------------------- interruptions

def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_an_interrupted_fetch_leaves_nothing_that_looks_finished(tmp_path, monkeypatch):
    bundle("titanic")
    monkeypatch.setattr(fetch_module, "_unpack_nested", _interrupt)  # after the zip is half unpacked
    with pytest.raises(KeyboardInterrupt):
        fetch("titanic", tmp_path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert files(fetch("titanic", tmp_path)) == TITANIC_FILES


def test_an_interrupted_download_leaves_nothing(kaggle, no_mirror, tmp_path, monkeypatch):
    monkeypatch.setattr(fetch_module, "_install", _interrupt)  # the zip is downloaded, not yet unpacked
    with pytest.raises(KeyboardInterrupt):
        fetch("titanic", tmp_path)
    assert len(kaggle.calls("DownloadDataFiles")) == 1
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_refetch_keeps_the_finished_folder(tmp_path, monkeypatch):
    folder = fetch("titanic", tmp_path, bundle("titanic"))
    monkeypatch.setattr(fetch_module, "_unpack_nested", _interrupt)
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    with pytest.raises(KeyboardInterrupt):
        fetch("titanic", tmp_path, other)
    assert files(folder) == TITANIC_FILES
    assert fetch_module._fetched_from(folder) == str(bundle("titanic").resolve())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "titanic"]


# -------------------------------------------------------------- Kaggle notebook mount

def test_a_kaggle_notebook_mount_is_used_in_place(kaggle, tmp_path, monkeypatch):
    mounted = tmp_path / "input" / "titanic"
    mounted.mkdir(parents=True)
    for name in TITANIC_FILES:
        (mounted / name).write_text("id\n1\n")
    monkeypatch.setenv("AUTOML_KAGGLE_INPUT", str(tmp_path / "input"))
    assert fetch("titanic", tmp_path / "data") == mounted
    assert not (tmp_path / "data" / "titanic").exists()
    assert not (mounted / MARKER).exists()
    assert kaggle.requests == []
