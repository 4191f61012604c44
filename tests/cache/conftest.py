"""The cache's fixtures: both backends (a real moto S3 server on loopback, and a folder)."""

from support.caches import backend, opener, scene  # noqa: F401  (fixtures)
from support.s3_fixture import s3_server  # noqa: F401  (a fixture)
