"""The object-store source: raw files as keys of an S3-compatible bucket, read with boto3.

`s3://BUCKET[/PREFIX]` is a folder tree whose folders are the key prefixes up to a '/'. A listing
is one ListObjectsV2 with a delimiter per folder (paginated); a whole read and a ranged read are
one ranged GET each, conditional on the ETag that was listed, so an object replaced since it
was listed is an error and never a mix of two versions. Credentials come from the standard AWS
chain (environment, shared files, instance roles).
"""
from __future__ import annotations

import calendar
import errno
import logging
import os
import re
import threading
from urllib.parse import urlsplit

from .errors import ImageMissing
from .readahead import WINDOW, ReadAhead
from .source import HELD_ONLY, Listing, NotHeld, Source, SourceFile, SourceUnreadable

SCHEME = "s3://"
ATTEMPTS = 4  # per request, the first included: 503 SlowDown and broken connections are retried
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,62}$")


class S3UrlError(ValueError):
    """An s3:// source, endpoint or region that cannot be right; the message says why."""


def is_url(spec: str) -> bool:
    """True when a command line's SOURCE names an object store rather than a folder."""
    return spec.startswith(SCHEME)


def parse_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://BUCKET[/PREFIX]`; the prefix has no leading or trailing '/'."""
    if not is_url(url):
        raise S3UrlError(f"{url}: expected s3://BUCKET[/PREFIX]")
    bucket, _, prefix = url[len(SCHEME):].partition("/")
    if not bucket:
        raise S3UrlError(f"{url}: no bucket name (expected s3://BUCKET[/PREFIX])")
    return bucket, "/".join(part for part in prefix.split("/") if part)


def check_endpoint(url: str) -> str:
    """The endpoint URL of an S3-compatible service (http or https, with a host), or S3UrlError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise S3UrlError(f"endpoint={url!r}: expected a URL like https://s3.example.org or http://127.0.0.1:8333")
    return url


def check_region(name: str) -> str:
    """An AWS-style region name (like us-east-1), or S3UrlError."""
    if not _REGION.match(name):
        raise S3UrlError(f"region={name!r}: expected a region name like us-east-1")
    return name


def _ns(when) -> int:
    """A LastModified datetime as integer nanoseconds since the epoch (no float rounding)."""
    return calendar.timegm(when.utctimetuple()) * 1_000_000_000 + when.microsecond * 1000


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


class S3Source(Source):
    """Raw files under one key prefix of a bucket. Paths given to it are relative to the prefix
    ('' is the prefix itself); the files it returns carry their whole key as `path`, their ETag
    as `ident` and LastModified as their mtime. Thread-safe: one client serves every thread,
    with a connection pool sized to them."""

    remote = True  # reads wait on the network, except for bytes already fetched (see holds)

    def __init__(self, url: str, endpoint: str | None = None, region: str | None = None, threads: int = 16,
                 readahead: int = WINDOW):
        self.bucket, self.prefix = parse_url(url)
        self.ahead = ReadAhead(readahead) if readahead > 0 else None  # for readers that walk a bin in order
        self.reads_ahead = readahead > 0  # readahead=0: no GET that no request asked for
        self.location = f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"
        self.endpoint = check_endpoint(endpoint) if endpoint else (
            os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None)
        self.region = check_region(region) if region else None
        self.threads = max(1, threads)
        self._client = None
        self._lock = threading.Lock()

    def __reduce__(self):
        """Pickled (to another process) as its settings: the copy makes its own client."""
        window = self.ahead.window if self.ahead else 0
        return S3Source, (self.location, self.endpoint, self.region, self.threads, window)

    # --- the client ----------------------------------------------------------------------
    @property
    def client(self):
        """The boto3 S3 client, made on first use (boto3 is imported only for s3:// sources)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self):
        import boto3
        from botocore.config import Config

        for name in ("botocore", "boto3", "urllib3"):  # their INFO lines are not ours to show
            logging.getLogger(name).setLevel(logging.WARNING)
        config = Config(
            max_pool_connections=self.threads + 4,  # the worker threads, the watcher, some slack
            retries={"mode": "standard", "total_max_attempts": ATTEMPTS},
            connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT, tcp_keepalive=True,
            s3={"addressing_style": "path"} if self.endpoint else None,  # MinIO, Ceph, SeaweedFS
        )
        return boto3.session.Session().client("s3", endpoint_url=self.endpoint, region_name=self.region,
                                               config=config)

    def _errors(self) -> tuple[type, ...]:
        """What a request can raise: the service's answer, botocore's own errors, the network's."""
        from botocore.exceptions import BotoCoreError, ClientError
        from urllib3.exceptions import HTTPError

        return ClientError, BotoCoreError, HTTPError, OSError

    # --- keys ----------------------------------------------------------------------------
    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix and rel else (self.prefix or rel)

    def _folder_prefix(self, folder: str) -> str:
        key = self._key(folder)
        return f"{key}/" if key else ""

    def url(self, key: str) -> str:
        """The s3:// URL of a key, for messages."""
        return f"{SCHEME}{self.bucket}/{key}"

    # --- the Source interface --------------------------------------------------------------
    def problem(self) -> str | None:
        try:
            import boto3  # noqa: F401
        except ImportError:
            return f"{self.location}: object storage needs boto3 (pip install 'ifcbfs[s3]')"
        try:
            found = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._folder_prefix(""), MaxKeys=1)
        except Exception as err:  # every failure here is a reason not to mount, told in one line
            return f"{self.location}: {self._why(err)}"
        if self.prefix and not found.get("KeyCount"):
            return f"{self.location}: no objects under this prefix"
        return None

    def _why(self, err: Exception) -> str:
        """One line for the user on why the bucket cannot be read."""
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        where = f"at {self.endpoint}" if self.endpoint else "on AWS"
        if isinstance(err, NoCredentialsError):
            return ("no credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE "
                    "with ~/.aws/credentials, or run with an instance role)")
        if isinstance(err, EndpointConnectionError):
            return f"cannot connect to the object store {where}"
        if isinstance(err, ClientError):
            code = err.response.get("Error", {}).get("Code", "")
            message = err.response.get("Error", {}).get("Message", "") or code
            if code == "NoSuchBucket":
                return f"no such bucket {where}"
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403",
                        "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed"):
                return f"access denied {where} ({code}: {message}); check the credentials and the region"
            return f"{code or 'error'} {where}: {message}"
        return _one_line(err)

    def sibling(self, name: str) -> "S3Source | None":
        if not self.prefix:
            return None  # the bucket itself has no folder beside it
        parent = self.prefix.rpartition("/")[0]
        other = S3Source(f"{SCHEME}{self.bucket}/{parent}/{name}" if parent else f"{SCHEME}{self.bucket}/{name}",
                         self.endpoint, self.region, self.threads, readahead=0)
        other._client = self.client  # one connection pool for both
        try:
            found = self.client.list_objects_v2(Bucket=self.bucket, Prefix=other._folder_prefix(""), MaxKeys=1)
        except self._errors():
            return None
        return other if found.get("KeyCount") else None

    def listdir(self, folder: str) -> Listing:
        base = self._folder_prefix(folder)
        folders: list[str] = []
        files: list[SourceFile] = []
        kwargs = {"Bucket": self.bucket, "Prefix": base, "Delimiter": "/"}
        try:
            while True:
                page = self.client.list_objects_v2(**kwargs)
                for common in page.get("CommonPrefixes", ()):
                    name = common["Prefix"][len(base):-1]
                    if name and "/" not in name:
                        folders.append(name)
                for obj in page.get("Contents", ()):
                    name = obj["Key"][len(base):]
                    if name and "/" not in name:  # not the folder's own marker object
                        files.append(self._file(obj))
                token = page.get("NextContinuationToken")
                if not page.get("IsTruncated") or not token:
                    break
                kwargs["ContinuationToken"] = token
        except self._errors() as err:
            raise self._failure(base or "", err) from None
        files.sort(key=lambda f: f.path)
        return Listing(0, tuple(sorted(folders)), tuple(files))

    @staticmethod
    def _file(obj: dict) -> SourceFile:
        return SourceFile(obj["Key"], obj["Size"], _ns(obj["LastModified"]), obj.get("ETag", ""))

    def stat(self, path: str) -> SourceFile | None:
        """The object at `path`, or None when there is none; SourceUnreadable when the store does
        not answer (an outage must not look like deleted files)."""
        key = self._key(path)
        try:  # a listing, not HEAD: the same LastModified precision and ETag as listdir gives
            found = self.client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        except self._errors() as err:
            raise self._failure(key, err) from None
        first = found.get("Contents", ())[:1]
        return self._file(first[0]) if first and first[0]["Key"] == key else None

    def read(self, f: SourceFile) -> bytes:
        if f.size == 0:
            return b""
        data = self._get(f, 0, f.size)
        if len(data) != f.size:
            raise SourceUnreadable(f"{self.url(f.path)}: {len(data)} bytes read of {f.size} listed", errno.EIO)
        return data

    def holds(self, f: SourceFile, start: int, length: int) -> bool:
        return self.ahead is not None and self.ahead.holds(f, start, length)

    def read_range(self, f: SourceFile, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        if start + length > f.size:
            raise ImageMissing(f"{self.url(f.path)}: bytes {start}..{start + length} pass the end of the object")
        if HELD_ONLY.get() and not self.holds(f, start, length):  # (before the read-ahead counts it)
            raise NotHeld(f"{self.url(f.path)}: bytes {start}..{start + length} are no longer held")
        if self.ahead is None:
            data = self._get(f, start, length)
        else:
            data = self.ahead.read(f, start, length, lambda at, size: self._get(f, at, size))
        if len(data) < length:
            raise ImageMissing(f"{self.url(f.path)}: bytes {start}..{start + length} pass the end of the object")
        return data

    def _get(self, f: SourceFile, start: int, length: int) -> bytes:
        """One GET of bytes start..start+length-1 of the version that was listed."""
        if HELD_ONLY.get():
            raise NotHeld(f"{self.url(f.path)}: bytes {start}..{start + length} are no longer held")
        request = {"Bucket": self.bucket, "Key": f.path, "Range": f"bytes={start}-{start + length - 1}"}
        if f.ident:
            request["IfMatch"] = f.ident
        try:
            response = self.client.get_object(**request)
            data = response["Body"].read()
        except self._errors() as err:
            raise self._failure(f.path, err) from None
        if "ContentRange" not in response:  # a server that ignored Range sent the whole object
            data = data[start:start + length]
        return data[:length]

    def _failure(self, key: str, err: Exception):
        """The error a failed request becomes: ENOENT for a deleted key, EIO for a changed one or
        the network, ImageMissing for a range past the end."""
        from botocore.exceptions import ClientError

        where = self.url(key)
        if isinstance(err, ClientError):
            code = err.response.get("Error", {}).get("Code", "")
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "NotFound") or status == 404 and code != "NoSuchBucket":
                return SourceUnreadable(f"{where}: no such object (deleted since it was listed?)", errno.ENOENT)
            if code == "PreconditionFailed" or status == 412:
                return SourceUnreadable(f"{where}: the object changed since it was listed", errno.EIO)
            if code == "InvalidRange" or status == 416:
                return ImageMissing(f"{where}: the range passes the end of the object")
            if status == 403:
                return SourceUnreadable(f"{where}: access denied ({code})", errno.EACCES)
        return SourceUnreadable(f"{where}: {self._why(err)}", errno.EIO)
