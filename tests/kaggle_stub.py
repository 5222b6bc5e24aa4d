"""A stand-in Kaggle API server for the test-suite.

The real ``kaggle`` client (``kaggle==2.2.5`` over ``kagglesdk``) sends its RPCs to
``http://localhost/api/v1/...`` (port 80, no way to change it) when
``KAGGLE_API_ENVIRONMENT=LOCALHOST`` is set *before* ``kaggle`` is first imported:
``KaggleApi`` reads that variable once, at import time.  This module answers the
few RPCs ``automl`` uses, in the wire format that client expects, so the tests run
the real client end to end without ever reaching kaggle.com:

* ``competitions.CompetitionApiService/DownloadDataFiles`` answers ``302`` to
  ``/storage/competitions/SLUG.zip``, which serves ``SLUG.zip`` from ``bundles_dir``
  byte for byte.  The client names its output file after the extension of the
  final URL, so that path must end in ``.zip``.
* ``StartSubmissionUpload`` -> ``PUT /storage/uploads/TOKEN`` -> ``CreateSubmission``,
  and ``ListSubmissions``, back ``competition_submit`` / ``competition_submissions``.
* ``GetCompetition`` answers kagglesdk's ``ApiCompetition``: the title, the metric's
  display name (``evaluationMetric``, as kaggle.com shows it) and the daily limit.
* ``security.OAuthService/IntrospectToken`` accepts any non-empty token, so the
  ``KAGGLE_API_TOKEN`` login path can be exercised too.
* ``blobs.BlobApiService/StartBlobUpload`` -> ``PUT /storage/uploads/TOKEN`` -> ``CreateDataset``
  or ``CreateDatasetVersion``, with ``GetDatasetStatus`` (404 for a dataset that does not
  exist, ``READY`` once created) and ``GetDataset`` (its current version number), back
  ``dataset_create_new`` / ``dataset_create_version``;
  ``kernels.KernelsApiService/SaveKernel`` backs ``kernels_push``.

Errors go out the way kaggle.com sends them: the HTTP status plus a JSON body
``{"code": N, "message": "..."}``.  The client turns that into
``requests.exceptions.HTTPError(message, response=...)``.

Only the standard library is used, so the stub adds no dependencies.
"""

from __future__ import annotations

import email.utils
import itertools
import json
import os
import secrets
import shutil
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit

# The bundles beside the checkout (../shared), unless AUTOML_MIRROR names another folder.
DEFAULT_BUNDLES_DIR = Path(
    os.environ.get("AUTOML_MIRROR", Path(__file__).resolve().parents[2] / "shared" / "kaggle" / "competitions")
)

API_PREFIX = "/api/v1/"
BUNDLE_PREFIX = "/storage/competitions/"
UPLOAD_PREFIX = "/storage/uploads/"

COMPETITIONS = "competitions.CompetitionApiService/"
DOWNLOAD_DATA_FILES = COMPETITIONS + "DownloadDataFiles"
START_SUBMISSION_UPLOAD = COMPETITIONS + "StartSubmissionUpload"
CREATE_SUBMISSION = COMPETITIONS + "CreateSubmission"
LIST_SUBMISSIONS = COMPETITIONS + "ListSubmissions"
GET_COMPETITION = COMPETITIONS + "GetCompetition"
INTROSPECT_TOKEN = "security.OAuthService/IntrospectToken"
START_BLOB_UPLOAD = "blobs.BlobApiService/StartBlobUpload"
DATASETS = "datasets.DatasetApiService/"
GET_DATASET_STATUS = DATASETS + "GetDatasetStatus"
GET_DATASET = DATASETS + "GetDataset"
CREATE_DATASET = DATASETS + "CreateDataset"
CREATE_DATASET_VERSION = DATASETS + "CreateDatasetVersion"
SAVE_KERNEL = "kernels.KernelsApiService/SaveKernel"

# Messages modelled on those kaggle.com puts in its JSON error bodies.
ERROR_MESSAGES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Permission 'competitions.participate' was denied",
    404: "NotFound",
}

# The metric display names kaggle.com shows for the bundled competitions (where known).
METRIC_NAMES = {
    "titanic": "Categorization Accuracy",
    "digit-recognizer": "Categorization Accuracy",
    "bike-sharing-demand": "Root Mean Squared Logarithmic Error",
    "playground-series-s3e5": "Cohen Kappa Score",
    "mercedes-benz-greener-manufacturing": "R2 score (coefficient of determination)",
    "nlp-getting-started": "Custom Metric",
}


class RecordedRequest(NamedTuple):
    """One request as the stub received it, kept for assertions in tests."""

    method: str
    path: str
    body: Any  # the parsed JSON body; None when absent or not JSON (e.g. uploads)
    headers: dict[str, str]


@dataclass
class Submission:
    """A submission the stub accepted; ``content`` is the uploaded file."""

    ref: int
    competition: str
    file_name: str
    description: str
    content: bytes
    public_score: str | None
    date: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_api(self) -> dict[str, Any]:
        """Serialise as kagglesdk's ``ApiSubmission`` (camelCase JSON keys)."""
        # kagglesdk parses naive ISO-8601 with milliseconds and a trailing "Z".
        date = self.date.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
        return {
            "ref": self.ref,
            "totalBytes": len(self.content),
            "date": date,
            "description": self.description,
            "fileName": self.file_name,
            "publicScore": self.public_score,
            "status": "PENDING" if self.public_score is None else "COMPLETE",
        }


class KaggleStub:
    """A Kaggle API look-alike served from a background thread.

    Change its behaviour by setting attributes, before or while it runs:

    * ``status_for[slug] = 401 | 403 | 404 | ...``: every competition RPC naming
      that slug (download, submit, list submissions) fails with that status.
    * ``rpc_status[name] = 500 | ...``: every call of that RPC (short name, such as
      ``"GetCompetition"``) fails with that status.
    * ``metric_for[slug]``: the ``evaluationMetric`` GetCompetition reports (default:
      ``METRIC_NAMES``, else empty); ``daily_limit``: its ``maxDailySubmissions``.
    * ``public_score``: score given to new submissions; ``None`` leaves them
      ``PENDING`` without a score.
    * ``require_auth``: when true (the default) API calls that carry no
      ``Authorization`` header get 401, as on kaggle.com.

    A slug without ``SLUG.zip`` in ``bundles_dir`` is unknown and answers 404.
    ``requests`` records every request; ``submissions`` (per slug, oldest first)
    and ``uploads`` (per upload token) hold what the submission RPCs stored;
    ``datasets`` (per "owner/slug", one {file name: bytes} per version, oldest first)
    and ``kernels`` (per "owner/slug", the SaveKernel requests) what was pushed.
    """

    def __init__(
        self,
        bundles_dir: str | os.PathLike[str] = DEFAULT_BUNDLES_DIR,
        port: int = 80,
        host: str = "127.0.0.1",
    ) -> None:
        self.bundles_dir = Path(bundles_dir)
        self.host = host
        self.port = port
        self.status_for: dict[str, int] = {}
        self.rpc_status: dict[str, int] = {}
        self.metric_for: dict[str, str] = dict(METRIC_NAMES)
        self.daily_limit = 5
        self.public_score: str | None = "0.77511"
        self.require_auth = True
        self.username = "stub-user"
        self.requests: list[RecordedRequest] = []
        self.submissions: dict[str, list[Submission]] = {}
        self.uploads: dict[str, bytes] = {}
        self.datasets: dict[str, list[dict[str, bytes]]] = {}
        self.dataset_pending = 0  # status questions answered "not ready yet" after each new dataset version
        self._pending: dict[str, int] = {}
        self.kernels: dict[str, list[dict[str, Any]]] = {}
        self._upload_names: dict[str, str] = {}
        self._refs = itertools.count(1)
        self._lock = threading.Lock()
        self._server: _StubServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> KaggleStub:
        """Bind ``host:port`` and serve from a daemon thread (port 0: any free port)."""
        if self._server is not None:
            raise RuntimeError("KaggleStub is already running")
        self._server = _StubServer((self.host, self.port), self)
        self.port = self._server.server_address[1]
        # A short poll interval keeps stop() (which waits for one poll) fast in tests.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="kaggle-stub",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; calling it twice is harmless."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> KaggleStub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- helpers for tests ---------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the running stub, as a client would address it."""
        return f"http://localhost:{self.port}"

    def calls(self, rpc: str) -> list[RecordedRequest]:
        """Recorded requests to one RPC by short name, e.g. ``"DownloadDataFiles"``."""
        return [r for r in self.requests if urlsplit(r.path).path.endswith("/" + rpc)]

    def bundle_path(self, slug: str) -> Path:
        """The zip served for ``slug``."""
        return self.bundles_dir / f"{slug}.zip"

    def has_bundle(self, slug: str) -> bool:
        """Whether ``slug`` is a competition the stub knows: a plain name with a zip."""
        if not slug or slug in (".", "..") or "/" in slug or "\\" in slug:
            return False  # never serve anything outside bundles_dir
        return self.bundle_path(slug).is_file()

    # -- state changes, called from handler threads --------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _open_upload(self, file_name: str) -> str:
        """Reserve an upload token, remembering the announced file name."""
        token = secrets.token_hex(8)
        with self._lock:
            self.uploads[token] = b""
            self._upload_names[token] = file_name
        return token

    def _store_upload(self, token: str, data: bytes) -> bool:
        with self._lock:
            if token not in self.uploads:
                return False
            self.uploads[token] = data
            return True

    def _add_version(self, ref: str, files: list[dict[str, Any]], new: bool) -> str | None:
        """Store a dataset version from uploaded blobs; an error message when it cannot be."""
        with self._lock:
            if new == (ref in self.datasets):
                return f"dataset {ref} {'already exists' if new else 'does not exist'}"
            tokens = [f.get("token", "") for f in files]
            if not tokens or any(t not in self.uploads for t in tokens):
                return "Invalid blob file token"
            version = {self._upload_names[t]: self.uploads[t] for t in tokens}
            self.datasets.setdefault(ref, []).append(version)
            self._pending[ref] = self.dataset_pending
            return None

    def _submit(self, slug: str, token: str, description: str) -> Submission | None:
        """Turn an uploaded blob into a scored submission; None for an unknown token."""
        with self._lock:
            if token not in self.uploads:
                return None
            submission = Submission(
                ref=next(self._refs),
                competition=slug,
                file_name=self._upload_names.get(token, ""),
                description=description,
                content=self.uploads[token],
                public_score=self.public_score,
            )
            self.submissions.setdefault(slug, []).append(submission)
            return submission


class _StubServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that carries the stub its handlers read and update."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], stub: KaggleStub) -> None:
        self.stub = stub
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up is routine in tests; report only real faults."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Routes one HTTP request to the matching fake endpoint."""

    # HTTP/1.0: one request per connection.  Nothing stays kept alive past stop(),
    # so a stub started for the next test never inherits an old connection.
    protocol_version = "HTTP/1.0"
    server: _StubServer

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: pytest output should not fill with access logs."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    @property
    def stub(self) -> KaggleStub:
        return self.server.stub

    def _dispatch(self) -> None:
        """Record the request, then route it by method and path prefix."""
        raw = self._read_body()
        body = _parse_json(raw, self.headers.get("Content-Type", ""))
        headers = dict(self.headers.items())
        self.stub._record(RecordedRequest(self.command, self.path, body, headers))
        path = unquote(urlsplit(self.path).path)
        if self.command == "POST" and path.startswith(API_PREFIX):
            self._rpc(path[len(API_PREFIX) :], body if isinstance(body, dict) else {})
        elif self.command == "GET" and path.startswith(BUNDLE_PREFIX):
            self._serve_bundle(path[len(BUNDLE_PREFIX) :])
        elif self.command == "PUT" and path.startswith(UPLOAD_PREFIX):
            self._receive_upload(path[len(UPLOAD_PREFIX) :], raw)
        else:
            self._send_error(404)

    # -- RPCs ----------------------------------------------------------------------

    def _rpc(self, name: str, body: dict[str, Any]) -> None:
        """Apply the checks kaggle.com makes before any RPC, then run it."""
        handler = _RPCS.get(name)
        if handler is None:
            self._send_error(404)
            return
        status = self.stub.rpc_status.get(name.rsplit("/", 1)[-1])
        if status:
            self._send_error(status)
            return
        anonymous = "Authorization" not in self.headers
        if self.stub.require_auth and anonymous and name != INTROSPECT_TOKEN:
            self._send_error(401)
            return
        slug = body.get("competitionName")
        if slug is not None:
            status = self.stub.status_for.get(slug)
            if status:
                self._send_error(status)
                return
            if not self.stub.has_bundle(slug):
                self._send_error(404)
                return
        handler(self, body)

    def _download_data_files(self, body: dict[str, Any]) -> None:
        """Redirect to the bundle, as Kaggle redirects to a signed storage URL."""
        location = BUNDLE_PREFIX + quote(body["competitionName"]) + ".zip"
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _start_submission_upload(self, body: dict[str, Any]) -> None:
        """Hand out a token and an absolute URL the client will PUT the file to."""
        token = self.stub._open_upload(body.get("fileName", ""))
        host = self.headers.get("Host") or f"localhost:{self.stub.port}"
        self._send_json(
            {"token": token, "createUrl": f"http://{host}{UPLOAD_PREFIX}{token}"}
        )

    def _create_submission(self, body: dict[str, Any]) -> None:
        slug = body["competitionName"]
        description = body.get("submissionDescription") or ""
        token = body.get("blobFileTokens", "")
        submission = self.stub._submit(slug, token, description)
        if submission is None:
            self._send_error(400, "Invalid blob file token")
            return
        message = f"Successfully submitted to {slug}"
        self._send_json({"message": message, "ref": submission.ref})

    def _list_submissions(self, body: dict[str, Any]) -> None:
        """Newest first, one page of ``pageSize`` (1-based ``page``), like Kaggle."""
        stored = self.stub.submissions.get(body["competitionName"], [])
        newest_first = list(reversed(stored))
        size = int(body.get("pageSize") or 20)
        start = (int(body.get("page") or 1) - 1) * size
        page = [s.to_api() for s in newest_first[start : start + size]]
        self._send_json({"submissions": page, "nextPageToken": ""})

    def _get_competition(self, body: dict[str, Any]) -> None:
        """kagglesdk's ``ApiCompetition``: the fields automl reads, and a few beside them."""
        slug = body["competitionName"]
        self._send_json({
            "id": 1,
            "ref": f"https://www.kaggle.com/competitions/{slug}",
            "title": slug.replace("-", " ").title(),
            "url": f"https://www.kaggle.com/competitions/{slug}",
            "category": "Playground",
            "evaluationMetric": self.stub.metric_for.get(slug, ""),
            "maxDailySubmissions": self.stub.daily_limit,
            "maxTeamSize": 5,
        })

    def _introspect_token(self, body: dict[str, Any]) -> None:
        """Any non-empty token is a valid login for ``stub.username``."""
        if body.get("token"):
            self._send_json({"active": True, "username": self.stub.username})
        else:
            self._send_json({"active": False})

    def _start_blob_upload(self, body: dict[str, Any]) -> None:
        token = self.stub._open_upload(body.get("name", ""))
        host = self.headers.get("Host") or f"localhost:{self.stub.port}"
        self._send_json({"token": token, "createUrl": f"http://{host}{UPLOAD_PREFIX}{token}"})

    def _get_dataset_status(self, body: dict[str, Any]) -> None:
        ref = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
        if ref not in self.stub.datasets:
            self._send_error(404)
            return
        with self.stub._lock:
            waiting = self.stub._pending.get(ref, 0)
            self.stub._pending[ref] = max(0, waiting - 1)
        self._send_json({"status": "BLOBS_RECEIVED" if waiting else "READY"})

    def _get_dataset(self, body: dict[str, Any]) -> None:
        ref = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
        if ref not in self.stub.datasets:
            self._send_error(404)
            return
        self._send_json({"ref": ref, "currentVersionNumber": len(self.stub.datasets[ref])})

    def _create_dataset(self, body: dict[str, Any]) -> None:
        ref = f"{body.get('ownerSlug')}/{body.get('slug')}"
        error = self.stub._add_version(ref, body.get("files") or [], new=True)
        self._send_json({"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "ok",
                         "error": error or ""})

    def _create_dataset_version(self, body: dict[str, Any]) -> None:
        ref = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
        error = self.stub._add_version(ref, (body.get("body") or {}).get("files") or [], new=False)
        self._send_json({"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "ok",
                         "error": error or ""})

    def _save_kernel(self, body: dict[str, Any]) -> None:
        """Keep the request; a dataset source that was never pushed is refused, as on kaggle.com."""
        ref = body.get("slug") or ""
        missing = [d for d in body.get("datasetDataSources") or [] if d not in self.stub.datasets]
        if missing:
            self._send_json({"error": f"invalid dataset sources: {missing}", "invalidDatasetSources": missing})
            return
        with self.stub._lock:
            versions = self.stub.kernels.setdefault(ref, [])
            versions.append(body)
        self._send_json({"ref": ref, "url": f"https://www.kaggle.com/code/{ref}", "versionNumber": len(versions)})

    # -- storage -------------------------------------------------------------------

    def _serve_bundle(self, name: str) -> None:
        """Send SLUG.zip byte for byte, with the headers the client checks.

        Content-Length makes the client verify the size; Last-Modified lets a
        second non-forced download be skipped, as against real storage.
        """
        slug = name.removesuffix(".zip")
        if not name.endswith(".zip") or not self.stub.has_bundle(slug):
            self._send_error(404)
            return
        path = self.stub.bundle_path(slug)
        stat = path.stat()
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(stat.st_size))
        modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
        self.send_header("Last-Modified", modified)
        self.end_headers()
        with path.open("rb") as source:
            shutil.copyfileobj(source, self.wfile)

    def _receive_upload(self, token: str, data: bytes) -> None:
        if self.stub._store_upload(token, data):
            self._send_json({})
        else:
            self._send_error(404)

    # -- plumbing ------------------------------------------------------------------

    def _read_body(self) -> bytes:
        """Read the whole body, plain or chunked, before answering."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # skip trailers
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()  # CRLF after each chunk

    def _send_json(self, payload: Any, status: int = 200) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, message: str | None = None) -> None:
        """Kaggle's error shape: HTTP status plus JSON ``{"code", "message"}``."""
        text = message or ERROR_MESSAGES.get(status, "Error")
        self._send_json({"code": status, "message": text}, status)


_RPCS = {
    DOWNLOAD_DATA_FILES: _Handler._download_data_files,
    START_SUBMISSION_UPLOAD: _Handler._start_submission_upload,
    CREATE_SUBMISSION: _Handler._create_submission,
    LIST_SUBMISSIONS: _Handler._list_submissions,
    GET_COMPETITION: _Handler._get_competition,
    INTROSPECT_TOKEN: _Handler._introspect_token,
    START_BLOB_UPLOAD: _Handler._start_blob_upload,
    GET_DATASET_STATUS: _Handler._get_dataset_status,
    GET_DATASET: _Handler._get_dataset,
    CREATE_DATASET: _Handler._create_dataset,
    CREATE_DATASET_VERSION: _Handler._create_dataset_version,
    SAVE_KERNEL: _Handler._save_kernel,
}


def _parse_json(raw: bytes, content_type: str) -> Any:
    """The body as JSON, or None when it is empty or not sent as JSON.

    Only bodies labelled as JSON are parsed: an uploaded CSV holding just ``1``
    must not turn into the JSON number 1.
    """
    if not raw or "json" not in content_type.lower():
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None
