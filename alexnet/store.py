"""Where data and runs live: a local directory or a prefix in an object store.

On one machine (or with NFS) prepared data and checkpoints are directories; on a cluster
they are usually in an object store (S3, GCS, MinIO). Every `--data`, `--out` and
`--storage` is opened here: a local path (or ``file://``) becomes a `pathlib.Path`
(relative ones found as `resolve_path` says), an ``s3://bucket/prefix`` or ``gs://...``
URI an `ObjectPath`, which has the few `Path` methods the jobs use, so the code that
reads a manifest or writes a shard is the same for both.

Endpoints and credentials come from each store's own environment variables
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ... for S3), or from the machine's role
when none is set. A job hands the ones it has to every Ray worker (`worker_env`), and
`check_reachable` turns a missing bucket, refused credentials or a silent endpoint into
one line before Ray starts.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Union

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from alexnet.errors import UserError

# What pyarrow's S3 client reads from the environment, and so what a Ray worker on
# another node needs when the driver has them (an instance role needs none).
STORE_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
             "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION")
STORES = ("s3", "gs", "gcs")  # the object stores pyarrow reads with its own clients
FORWARD_SWITCH = "ALEXNET_STORE_ENV_TO_WORKERS"  # "0": the nodes have the store's variables or a role themselves
SUBMITTED_JOB_CONFIG = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by `ray job submit` in the driver: its runtime env


def is_uri(location: str | os.PathLike) -> bool:
    """An object-store URI; ``file://`` is a local path (`as_location`)."""
    return "://" in str(location) and not str(location).startswith("file://")


def resolve_path(path: str) -> Path:
    """Relative paths are taken from the current directory or, failing that, from the
    project: a job submitted with --working-dir runs in a temporary copy of the project."""
    from alexnet import tracking  # here: the light jobs (prepare, the GPU check) need no MLflow

    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p.resolve()
    return tracking.project_root() / p


class ObjectPath:
    """A file or prefix in an object store, with the `pathlib.Path` methods the jobs use.

    Folders are prefixes: `mkdir` makes nothing, `is_dir` is true once something is
    under it, and one object's write is atomic, so `write_text` needs no rename."""

    def __init__(self, uri: str, fs: pafs.FileSystem | None = None, flag: str = "") -> None:
        scheme, _, rest = uri.partition("://")
        named = f"{flag} {uri}" if flag else uri
        if scheme not in STORES:
            raise UserError(f"{named}: {scheme}:// is not a store this project reads; pass a local path or an "
                            "s3:// or gs:// URI")
        if "@" in rest.split("/", 1)[0]:  # never printed, logged or kept: the whole URI is
            raise UserError(f"{flag or 'the URI'}: credentials in the URI are refused (they would be printed and "
                            "logged with it); set the store's environment variables instead")
        if "?" in rest:
            raise UserError(f"{named}: options in the URI are not supported; set the store's environment variables "
                            "instead (for S3: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
        self.scheme, self.key = scheme, rest.strip("/")
        if not self.key:
            raise UserError(f"{named}: name a bucket (and a prefix in it), e.g. {scheme}://my-bucket/shards")
        self._fs = fs

    @property
    def fs(self) -> pafs.FileSystem:
        """The store's client, made on first use: without a region set, making it asks the
        store for the bucket's, so it can fail the ways `check_reachable` explains."""
        if self._fs is None:
            try:
                self._fs, _ = filesystem(str(self))
            except ValueError as e:  # pyarrow's ArrowInvalid: a store it was built without
                raise UserError(f"{self}: pyarrow cannot open it here ({e}); pass a local path") from e
        return self._fs

    # -- naming ---------------------------------------------------------------------
    def __str__(self) -> str:
        return f"{self.scheme}://{self.key}"

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __truediv__(self, name: str) -> ObjectPath:
        return ObjectPath(f"{self}/{str(name).strip('/')}", self._fs)

    @property
    def name(self) -> str:
        return PurePosixPath(self.key).name

    @property
    def stem(self) -> str:
        return PurePosixPath(self.key).stem

    @property
    def bucket(self) -> str:
        return self.key.split("/", 1)[0]

    def relative_to(self, other: ObjectPath) -> PurePosixPath:
        return PurePosixPath(self.key).relative_to(other.key)

    def resolve(self) -> ObjectPath:
        return self

    # -- questions ------------------------------------------------------------------
    def _type(self) -> pafs.FileType:
        return self.fs.get_file_info(self.key).type

    def exists(self) -> bool:
        return self._type() != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self._type() == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._type() == pafs.FileType.Directory

    def iterdir(self) -> Iterator[ObjectPath]:
        if not self.is_dir():
            return iter(())
        infos = self.fs.get_file_info(pafs.FileSelector(self.key, allow_not_found=True))
        return (ObjectPath(f"{self.scheme}://{i.path}", self.fs) for i in sorted(infos, key=lambda i: i.path))

    def glob(self, pattern: str) -> Iterator[ObjectPath]:
        """One level, as `Path.glob` with a pattern without slashes."""
        return (p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern))

    # -- reading and writing ----------------------------------------------------------
    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.key) as f:
            return f.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_bytes(self, data: bytes) -> None:
        with self.fs.open_output_stream(self.key) as f:
            f.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to make: a prefix exists once an object is under it."""

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.delete_file(self.key)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def remove_tree(self) -> None:
        self.fs.delete_dir(self.key)


Location = Union[Path, ObjectPath]  # noqa: UP007 - a runtime alias, read by isinstance and annotations alike


def open_location(location: str | Location, flag: str = "--data") -> Location:
    """`location` as a local `Path` (resolved, as `resolve_path` says) or an
    `ObjectPath`; one already opened is returned as it is."""
    if not isinstance(location, str):
        return location
    return ObjectPath(location, flag=flag) if is_uri(location) else resolve_path(location.removeprefix("file://"))


def as_location(location: str | Location, flag: str = "--out") -> Location:
    """As `open_location`, but a relative local path stays relative to the current
    directory: where a job writes (``prepare_data.py --out``)."""
    if not isinstance(location, str):
        return location
    return ObjectPath(location, flag=flag) if is_uri(location) else Path(location.removeprefix("file://"))


def remove_tree(location: Location) -> None:
    if isinstance(location, ObjectPath):
        location.remove_tree()
    else:
        import shutil

        shutil.rmtree(location)


def write_atomic(path: Location, text: str) -> None:
    """A reader sees the old text or the new, never half: locally by a rename, in an
    object store by the one write of the object."""
    if isinstance(path, ObjectPath):
        path.write_text(text)
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@functools.lru_cache(maxsize=16)
def _client(bucket_uri: str, env: tuple[str | None, ...]) -> pafs.FileSystem:
    return pafs.FileSystem.from_uri(bucket_uri)[0]


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(the store's client, the path in it) for ``scheme://bucket/key``. A client is made
    once per bucket and process (~15 ms each, as long as reading a digits shard from a
    local server), and again whenever the store's variables change."""
    scheme, _, rest = uri.partition("://")
    env = tuple(os.environ.get(k) for k in (*STORE_ENV, "AWS_PROFILE"))
    return _client(f"{scheme}://{rest.split('/', 1)[0]}", env), rest.rstrip("/")


def parquet_file(path: str) -> pq.ParquetFile:
    """A shard, local or in an object store (``s3://bucket/.../x.parquet``)."""
    if not is_uri(path):
        return pq.ParquetFile(path)
    fs, key = filesystem(path)
    return pq.ParquetFile(key, filesystem=fs)


def read_parquet(paths: list[str], columns: list[str]) -> pa.Table:
    """`pq.read_table` of shards that are all local or all in one object store: pyarrow
    takes a list of URIs only as paths in the file system it is given."""
    if not paths or not is_uri(paths[0]):
        return pq.read_table(paths, columns=columns)
    fs, _ = filesystem(paths[0])
    return pq.read_table([p.partition("://")[2] for p in paths], columns=columns, filesystem=fs)


def worker_env() -> dict[str, str]:
    """The object store's variables that this process has, for the job's runtime
    environment: a Ray worker on another node (or in a cluster started before them)
    has only what the job hands it. Those a submitted job's runtime environment carries
    already are left out (Ray refuses the same variable from both), and none at all
    with ALEXNET_STORE_ENV_TO_WORKERS=0, where every node has them or a role itself:
    a job's runtime environment is visible to everyone who may submit jobs."""
    if os.environ.get(FORWARD_SWITCH, "1") == "0":
        return {}
    submitted = json.loads(os.environ.get(SUBMITTED_JOB_CONFIG, "{}"))
    carried = (submitted.get("runtime_env") or {}).get("env_vars") or {}
    return {k: os.environ[k] for k in STORE_ENV if k in os.environ and k not in carried}


def s3_credentials_set() -> bool:
    """Whether this process names S3 credentials itself; without them the client asks
    the machine's role (an instance profile, a pod's service account)."""
    named = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_SHARED_CREDENTIALS_FILE",
             "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")
    return any(k in os.environ for k in named) or (Path.home() / ".aws" / "credentials").exists()


def check_reachable(location: ObjectPath, flag: str, write: bool = False) -> None:
    """Ask the store for the prefix once (and, with `write`, write and delete a probe
    object under it), so that a wrong bucket, refused credentials or an endpoint that
    does not answer is one line before Ray starts, not a traceback from a worker after
    retries. Only the prefix is asked for: a policy may grant it and not the bucket."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    where = f" at {endpoint}" if endpoint and location.scheme == "s3" else ""
    missing = UserError(f"{flag} {location}: bucket '{location.bucket}' does not exist{where}; create it "
                        "or correct the name")
    try:
        if location.fs.get_file_info(location.key).type == pafs.FileType.NotFound:
            try:  # nothing there yet (a new --out or --storage), or no bucket at all?
                bucket = location.fs.get_file_info(location.bucket).type
            except OSError:
                bucket = None  # a policy scoped to the prefix may not see the bucket itself
            if bucket == pafs.FileType.NotFound:
                raise missing
        if write:
            probe = location / f".write-test-{os.getpid()}"
            probe.write_bytes(b"ok")
            probe.unlink()
    except OSError as e:
        text = str(e)
        if any(s in text for s in ("NO_SUCH_BUCKET", "NoSuchBucket", "HTTP status 404")):
            raise missing from e
        raise UserError(f"{flag} {location}: {store_problem(text, location.scheme, where, write)}") from e


def store_problem(text: str, scheme: str, where: str, write: bool) -> str:
    """What a store's error means for the user, and what to do."""
    unnamed = scheme == "s3" and not s3_credentials_set()
    if any(s in text for s in ("NETWORK_CONNECTION", "Could not connect", "curlCode", "Couldn't resolve")):
        return (f"the endpoint{where or ' (the default for ' + scheme + ')'} does not answer; "
                "check AWS_ENDPOINT_URL (for S3) and that the store is running")
    if any(s in text for s in ("ACCESS_DENIED", "AccessDenied", "403", "InvalidAccessKeyId",
                               "SignatureDoesNotMatch", "credentials")):
        may = "read and write" if write else "read"
        if unnamed:
            return ("the store refused the request: no credentials are set (AWS_ACCESS_KEY_ID, AWS_PROFILE, "
                    "~/.aws/credentials), so the machine's role was used, if it has one; set the keys, or let "
                    f"the role {may} the prefix")
        return (f"the store refused the credentials (wrong, or not allowed to {may} it): check AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY (for S3), or use a role that may")
    first = text.splitlines()[0] if text else "no message"
    hint = "; no credentials are set (AWS_ACCESS_KEY_ID, AWS_PROFILE, ~/.aws/credentials)" if unnamed else ""
    return f"the store did not answer as expected ({first}){hint}; check the endpoint and the credentials"
