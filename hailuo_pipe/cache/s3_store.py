"""The S3 backend of the result cache (boto3): any S3-protocol service (AWS, R2, MinIO, moto).

Conditional writes are S3's own: ``If-None-Match: *`` to create, ``If-Match: ETAG`` to replace
or delete. Files go through boto3's transfer manager (multipart above 16 MB, parallel parts);
each object carries its sha256 as user metadata so an entry can be checked with HEADs alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hailuo_pipe.cache.store import PreconditionFailed
from hailuo_pipe.errors import CacheError, ConfigError, SettingError

try:
    import boto3
    import botocore.exceptions as bexc
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config
except ImportError:  # pragma: no cover - depends on the install
    boto3 = None

MB = 1024 * 1024
MAX_ATTEMPTS = 20  # more only hides an outage for many minutes per request
_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "AllAccessDisabled",
    "403",
}
_PRECONDITION = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_MISSING = {"NoSuchKey", "404", "NotFound"}


def open_s3_store(bucket: str, prefix: str, env: Mapping[str, str]) -> S3Store:
    """Build the store from AWS_* settings in `env`; ConfigError names what is missing."""
    if boto3 is None:
        raise ConfigError("an s3:// cache needs boto3: pip install 'hailuo-pipe[s3]'")
    if not bucket:
        raise ConfigError("the cache URL names no bucket: expected s3://BUCKET[/PREFIX]")
    key_id = env.get("AWS_ACCESS_KEY_ID", "")
    secret = env.get("AWS_SECRET_ACCESS_KEY", "")
    profile = env.get("AWS_PROFILE", "")
    if not profile and not (key_id and secret):
        missing = [
            name
            for name, value in (("AWS_ACCESS_KEY_ID", key_id), ("AWS_SECRET_ACCESS_KEY", secret))
            if not value
        ]
        raise ConfigError(
            f"the s3:// cache needs credentials: set {' and '.join(missing)} (or AWS_PROFILE)"
        )
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    region = env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1"
    style = env.get("AWS_S3_ADDRESSING_STYLE") or ("path" if endpoint else "auto")
    raw = (env.get("AWS_MAX_ATTEMPTS") or "5").strip()
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_ATTEMPTS):
        raise SettingError(
            f"AWS_MAX_ATTEMPTS must be a whole number from 1 to {MAX_ATTEMPTS}, not {raw[:40]!r}"
        )
    attempts = int(raw)
    try:
        session = boto3.session.Session(
            aws_access_key_id=key_id or None,
            aws_secret_access_key=secret or None,
            aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
            profile_name=profile or None,
            region_name=region,
        )
        client = session.client(
            "s3",
            endpoint_url=endpoint,
            config=Config(
                retries={"max_attempts": attempts, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
                max_pool_connections=64,
                s3={"addressing_style": style},
                # our settings come from `env` only, never from the process's environment
                ignore_configured_endpoint_urls=True,
                # S3-compatible services (older MinIO, R2, …) reject the CRC trailers newer
                # botocore adds by default; we verify every file's sha256 ourselves anyway
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
    except bexc.ProfileNotFound:
        raise ConfigError(f"AWS_PROFILE {profile!r} is not in the AWS config files") from None
    except ValueError as err:  # a malformed endpoint URL
        raise ConfigError(f"AWS_ENDPOINT_URL is not usable: {err}") from None
    return S3Store(client, bucket, prefix, endpoint or f"s3.{region}.amazonaws.com")


def _code(err: Any) -> str:
    return str(err.response.get("Error", {}).get("Code", "")) or str(
        err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
    )


class S3Store:
    def __init__(self, client: Any, bucket: str, prefix: str, endpoint: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self.url = f"s3://{bucket}/{prefix}".rstrip("/")
        self.transfer = TransferConfig(
            multipart_threshold=16 * MB, multipart_chunksize=16 * MB, max_concurrency=8
        )

    def _k(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        try:
            yield
        except bexc.ClientError as err:
            code = _code(err)
            if code in _PRECONDITION:
                raise PreconditionFailed(key) from None
            if code in _DENIED:
                raise CacheError(
                    f"{self.url}: permission denied while {action} {key} ({code}); check "
                    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket's policy"
                ) from None
            if code == "NoSuchBucket":
                raise CacheError(
                    f"{self.url}: the bucket {self.bucket!r} does not exist at {self.endpoint}"
                ) from None
            message = err.response.get("Error", {}).get("Message", "")
            raise CacheError(
                f"{self.url}: S3 refused to {action} {key}: {code} {message}".rstrip()
            ) from None
        except bexc.NoCredentialsError:
            raise ConfigError(
                "the s3:// cache needs credentials: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
            ) from None
        except (bexc.BotoCoreError, OSError) as err:
            # botocore's messages name the endpoint and the error, never a credential
            raise CacheError(
                f"{self.url}: cannot {action} {key}: the S3 endpoint {self.endpoint} "
                f"is unreachable or failed ({err})"
            ) from None

    def get(self, key: str) -> tuple[bytes, str] | None:
        with self._errors("read", key):
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=self._k(key))
            except bexc.ClientError as err:
                if _code(err) in _MISSING:
                    return None
                raise
            return answer["Body"].read(), str(answer["ETag"])

    def put(
        self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        extra: dict[str, str] = {}
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        if if_match is not None:
            extra["IfMatch"] = if_match
        with self._errors("write", key):
            try:
                answer = self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._k(key),
                    Body=data,
                    ContentType="application/json",
                    **extra,
                )
            except bexc.ClientError as err:
                if if_match is not None and _code(err) in _MISSING:
                    raise PreconditionFailed(key) from None  # If-Match on a key now gone
                raise
        return str(answer["ETag"])

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        extra = {"IfMatch": if_match} if if_match is not None else {}
        with self._errors("delete", key):
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self._k(key), **extra)
            except bexc.ClientError as err:
                if _code(err) not in _MISSING:
                    raise

    def upload(self, key: str, path: Path, sha256: str) -> None:
        content_type = "video/mp4" if key.endswith(".mp4") else "image/png"
        with self._errors("upload", key):
            self.client.upload_file(
                str(path),
                self.bucket,
                self._k(key),
                ExtraArgs={"Metadata": {"sha256": sha256}, "ContentType": content_type},
                Config=self.transfer,
            )

    def download(self, key: str, dest: Path, size: int | None = None) -> None:
        """One streamed GET for a small object (its size known from meta.json); the transfer
        manager's parallel ranged GETs for a big one."""
        with self._errors("download", key):
            try:
                if size is not None and size < self.transfer.multipart_threshold:
                    answer = self.client.get_object(Bucket=self.bucket, Key=self._k(key))
                    with dest.open("wb") as f:
                        for block in answer["Body"].iter_chunks(1 << 20):
                            f.write(block)
                else:
                    self.client.download_file(
                        self.bucket, self._k(key), str(dest), Config=self.transfer
                    )
            except bexc.ClientError as err:
                if _code(err) in _MISSING:
                    raise CacheError(f"{self.url}: {key} is missing from the cache") from None
                raise

    def head(self, key: str) -> tuple[int, str | None] | None:
        with self._errors("inspect", key):
            try:
                answer = self.client.head_object(Bucket=self.bucket, Key=self._k(key))
            except bexc.ClientError as err:
                if _code(err) in _MISSING:
                    return None
                raise
        return int(answer["ContentLength"]), answer.get("Metadata", {}).get("sha256")

    def list(self, prefix: str) -> Iterator[tuple[str, float]]:
        strip = len(self._k(""))
        with self._errors("list", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._k(prefix)
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    yield obj["Key"][strip:], obj["LastModified"].timestamp()

    def check(self) -> None:
        with self._errors("open", "the bucket"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except bexc.ClientError as err:
                if _code(err) in _MISSING:
                    raise CacheError(
                        f"{self.url}: the bucket {self.bucket!r} does not exist at {self.endpoint}"
                    ) from None
                raise
