"""`load_app`, shared by ``trio-dwex run`` and the pytest plugin: every bad string explained."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from trio_dwex.serving._load import AppLoadError, load_app

MODULE = """
async def app(scope, receive, send):
    pass

class Holder:
    app = app

NUMBER = 3
"""


@pytest.fixture(autouse=True)
def loadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "appmod.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "appmod", raising=False)


def test_it_finds_a_module_attribute_and_a_dotted_one() -> None:
    app = load_app("appmod:app")
    assert app.__name__ == "app"
    assert load_app("appmod:Holder.app") is app


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("appmod", "'appmod' must look like \"package.module:app\""),
        (":app", "':app' must look like \"package.module:app\""),
        ("appmod:", "'appmod:' must look like \"package.module:app\""),
        ("no_such_module:app", "cannot import 'no_such_module': No module named 'no_such_module'"),
        ("appmod:nothing", "'appmod:nothing': module 'appmod' has no 'nothing'"),
        ("appmod:Holder.nope", "'appmod:Holder.nope': appmod:Holder has no 'nope'"),
        ("appmod:NUMBER", "'appmod:NUMBER' is not an ASGI app: 3 is not callable"),
    ],
)
def test_a_bad_string_is_explained(spec: str, message: str) -> None:
    with pytest.raises(AppLoadError) as caught:
        load_app(spec)
    assert str(caught.value).startswith(message)
