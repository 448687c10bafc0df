"""`load_app`: find the app that ``"package.module:attribute"`` names.

One loader, so that the ``trio-dwex run`` command and the pytest plugin's ``trio_dwex_app``
option accept the same strings and explain a bad one in the same words.
"""

from __future__ import annotations

import importlib
import reprlib
from typing import Any

from ..asgi._types import ASGIApp

__all__ = ["AppLoadError", "load_app"]


class AppLoadError(ValueError):
    """A ``"package.module:attribute"`` string that names no ASGI app; the message says why."""


def load_app(spec: str) -> ASGIApp:
    """Import ``"package.module:attribute"`` and return the ASGI app it names.

    The attribute may be dotted (``"myproject.main:container.app"``). The module is imported
    from ``sys.path`` as it stands; an error raised while it runs (other than a missing module)
    propagates unchanged, traceback and all, since it is a bug in the app.

    Raises:
        AppLoadError: ``spec`` is malformed, its module cannot be found, an attribute is
            missing, or what it names is not callable.
    """
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise AppLoadError(
            f'{spec!r} must look like "package.module:app" (such as examples.guide:app)'
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise AppLoadError(f"cannot import {module_name!r}: {error}") from None
    names = attribute.split(".")
    for depth, name in enumerate(names):
        try:
            target = getattr(target, name)
        except AttributeError:
            owner = f"module {module_name!r}"
            if depth:
                owner = f"{module_name}:{'.'.join(names[:depth])}"
            raise AppLoadError(f"{spec!r}: {owner} has no {name!r}") from None
    if not callable(target):
        raise AppLoadError(f"{spec!r} is not an ASGI app: {reprlib.repr(target)} is not callable")
    return target  # type: ignore[no-any-return]
