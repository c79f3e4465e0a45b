"""The root of every error Coppice raises on purpose.

Contract: each error class's docstring is its message template; the message
says what is wrong and what to do about it. ``exit_code`` is what the CLI
exits with, ``http_status`` what the REST API answers, ``errno`` what the NBD
target sends when the error reaches a client. Anything that is not a
CoppiceError reaching the top is a bug.
"""

from __future__ import annotations

import errno as _errno


class CoppiceError(Exception):
    """Coppice failed: {detail}"""

    exit_code = 1
    http_status = 400
    errno = _errno.EINVAL

    def __init__(self, *args, **kwargs):
        self.kwargs = kwargs
        self.args_ = args
        template = (self.__doc__ or "{detail}").strip().split("\n\n")[0]
        template = " ".join(template.split())
        try:
            message = template.format(*args, **kwargs)
        except (IndexError, KeyError):
            message = template + (" " + " ".join(map(str, args)) if args else "")
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self)


class NotFound(CoppiceError):
    """{what} not found: {detail}"""

    exit_code = 2
    http_status = 404
    errno = _errno.ENOENT


class AlreadyExists(CoppiceError):
    """{what} already exists: {detail}"""

    exit_code = 3
    http_status = 409
    errno = _errno.EEXIST


class InvalidArgument(CoppiceError):
    """{detail}"""

    exit_code = 4
    http_status = 400
    errno = _errno.EINVAL


class Busy(CoppiceError):
    """{detail}"""

    exit_code = 5
    http_status = 409
    errno = _errno.EBUSY


class NoSpace(CoppiceError):
    """{detail}"""

    exit_code = 6
    http_status = 507
    errno = _errno.ENOSPC


class ReadOnly(CoppiceError):
    """{detail}"""

    exit_code = 7
    http_status = 409
    errno = _errno.EPERM


class Corruption(CoppiceError):
    """{detail}"""

    exit_code = 8
    http_status = 500
    errno = _errno.EIO
