"""The pytest plugin, exercised the way users meet it: in a pytest run of its own (pytester)."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

# Here and not in tests/testing/conftest.py: pytest refuses `pytest_plugins` in a conftest
# below the root one, and a test module may still declare it.
pytest_plugins = ["pytester"]

PLUGIN = "trio_dwex.testing.plugin"
INSTALLED = any(entry.value == PLUGIN for entry in entry_points(group="pytest11"))

APP_MODULE = """
from collections.abc import AsyncIterator

from trio_dwex import Controller, Module, Sse, SseEvent, create_app


@Controller("events")
class EventsController:
    @Sse("count")
    async def count(self) -> AsyncIterator[SseEvent]:
        for n in range(3):
            yield SseEvent(data={"n": n}, event="count", id=str(n))


@Module(controllers=[EventsController])
class AppModule:
    pass


app = create_app(AppModule)
other = create_app(AppModule)  # one server at a time may serve an app
"""

CLIENT_TEST = """
from trio_dwex.testing import EventSource, StopReason


async def test_stream(app_url, sse_client):
    assert app_url.startswith("http://127.0.0.1:")
    assert str(sse_client.base_url).rstrip("/") == app_url
    async with EventSource("/events/count", client=sse_client, reconnect=False) as source:
        events = [event async for event in source]
    assert [event.json()["n"] for event in events] == [0, 1, 2]
    assert source.stop_reason is StopReason.ENDED
    assert (await sse_client.get("/nowhere")).status_code == 404
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytest on pytester's folder, with the plugin loaded as an installed one would be."""
    pytester.syspathinsert()
    # Loading it by hand as well would register it twice, which pytest refuses.
    plugin_args = [] if INSTALLED else ["-p", PLUGIN]
    return pytester.runpytest_inprocess(*plugin_args, "-p", "no:cacheprovider", *args)


def test_the_plugin_is_an_installed_pytest11_entry_point() -> None:
    assert INSTALLED, (
        f"no pytest11 entry point names {PLUGIN}: add it to [project.entry-points.pytest11] in "
        "pyproject.toml and reinstall the package (pip install -e .)"
    )


def test_the_ini_option_names_the_app(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(myapp=APP_MODULE, test_it=CLIENT_TEST)
    pytester.makeini("[pytest]\ntrio_mode = true\ntrio_dwex_app = myapp:app\n")
    run(pytester).assert_outcomes(passed=1)


def test_an_overridden_sse_app_fixture_names_the_app(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(myapp=APP_MODULE, test_it=CLIENT_TEST)
    pytester.makeconftest(
        "import pytest, myapp\n\n@pytest.fixture\ndef sse_app():\n    return myapp.app\n"
    )
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    run(pytester).assert_outcomes(passed=1)


def test_without_an_app_the_failure_says_what_to_do(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_it="async def test_it(app_url):\n    pass\n")
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*set trio_dwex_app = *package.module:app*sse_app*"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("myapp", '*must look like "package.module:app"*'),
        ("myapp:nothing", "*has no 'nothing'*"),
        ("myapp:NUMBER", "*is not an ASGI app*"),
    ],
)
def test_a_bad_ini_option_is_explained(pytester: pytest.Pytester, spec: str, message: str) -> None:
    pytester.makepyfile(myapp="NUMBER = 3\n", test_it="async def test_it(app_url):\n    pass\n")
    pytester.makeini(f"[pytest]\ntrio_mode = true\ntrio_dwex_app = {spec}\n")
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([message])


def test_sse_server_serves_several_apps_until_the_test_ends(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        myapp=APP_MODULE,
        test_it="""
import pytest
import trio

import myapp
from trio_dwex.testing import EventSource

OPEN = []


async def start_two(sse_server):
    return await sse_server(myapp.app), await sse_server(myapp.other, write_timeout=1.0)


async def test_servers(sse_server):
    first, second = await start_two(sse_server)  # they outlive the call that started them
    assert first != second
    for url in (first, second):
        async with EventSource(url + "/events/count", max_events=1, timeout=5) as source:
            assert [event.id async for event in source] == ["0"]
    OPEN.append(first)
    with pytest.raises(TypeError, match="nonsense"):
        await sse_server(myapp.other, nonsense=True)


async def test_they_stopped_after_the_test():
    # A bare connect: nothing listens there any more. (Through httpx this once failed with
    # httpcore's ConnectError inside an exception group, which httpx did not map.)
    host, port = OPEN[0].removeprefix("http://").rsplit(":", 1)
    with pytest.raises(OSError):
        await trio.open_tcp_stream(host, int(port))
""",
    )
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    run(pytester).assert_outcomes(passed=2)


def test_fixtures_work_with_the_trio_marker_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        myapp=APP_MODULE,
        test_it="""
import pytest
from trio_dwex.testing import EventSource


@pytest.mark.trio
async def test_marked(app_url):
    async with EventSource(app_url + "/events/count", max_events=3, timeout=5) as source:
        assert len([event async for event in source]) == 3
""",
    )
    pytester.makeini("[pytest]\ntrio_dwex_app = myapp:app\n")
    run(pytester).assert_outcomes(passed=1)
