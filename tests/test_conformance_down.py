"""The suite for services that are not HTTP (issue 14 item 5): the down-service tests bite, and the
``--memcore-backend`` runner gives each test an empty store, a service that is down and the suite's declarations.

The service here is a key-value store reached through a small client, as a Redis backend would be: ``mem://NAME``
is an in-memory service (one per name), ``tcp://HOST:PORT`` is a real TCP connection attempt (refused at a closed
port). Like redis-py's, the client raises its own connection error, which is not Python's ``ConnectionError``: a
backend must map it to ``memcore.TransientError``. The correct backend does; one logs and swallows it (it passes
every other test, as the Redis backend of the trial did); one lets the client's error through (memcore takes it as
final and gives up at once)."""

from __future__ import annotations

import contextlib
import logging
import socket
import uuid
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from test_conformance_bites import Outcome, UserStore, plugin_args, run_suite

import memcore
import memcore._plugins
from memcore import Message, Note, Recollection, Session
from memcore.testing import closed_port
from memcore.testing._plugin import substitute

pytest_plugins = ["pytester"]
log = logging.getLogger(__name__)

#: The in-memory services by address (what a Redis server holds), created on first connection.
SERVICES: dict[str, UserStore] = {}


class ClientConnectionError(Exception):
    """What the client raises when its service cannot be reached (like ``redis.exceptions.ConnectionError``)."""


def connect(address: str) -> UserStore:
    """The service at ``address``, or :class:`ClientConnectionError`."""
    if address.startswith("mem://"):
        return SERVICES.setdefault(address, UserStore())
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5.0).close()
    except OSError as exc:
        raise ClientConnectionError(f"Error {exc.errno} connecting to {host}:{port}. {exc.strerror}.") from exc
    raise ClientConnectionError(f"{address} answered, but it is no memory service")


class KVBackend:
    """A backend for the key-value service, written as docs/backends.md says: it connects in its hooks (never in
    the constructor) and raises ``TransientError`` when the service cannot be reached."""

    name = "kv"
    separates_users = True

    def __init__(self, address: str) -> None:
        self.address = address

    def _call(self, method: str, *args: Any) -> Any:
        try:
            service = connect(self.address)
        except ClientConnectionError as exc:
            raise memcore.TransientError(str(exc)) from exc
        return getattr(service, method)(*args)

    @memcore.hookimpl
    def memcore_write(self, session: Session, messages: Sequence[Message]) -> None:
        self._call("memcore_write", session, messages)

    @memcore.hookimpl
    def memcore_remember(self, session: Session, note: Note) -> None:
        self._call("memcore_remember", session, note)

    @memcore.hookimpl
    def memcore_commit(self, session: Session) -> None:
        self._call("memcore_commit", session)

    @memcore.hookimpl
    def memcore_recall(
        self, query: str, session: Session | None, limit: int, user_id: str | None
    ) -> Sequence[Recollection]:
        found: Sequence[Recollection] = self._call("memcore_recall", query, session, limit, user_id)
        return found

    @memcore.hookimpl
    def memcore_history(self, session: Session) -> Sequence[Message]:
        stored: Sequence[Message] = self._call("memcore_history", session)
        return stored

    @memcore.hookimpl
    def memcore_forget(self, user_id: str | None, session_id: str | None) -> str | None:
        kept: str | None = self._call("memcore_forget", user_id, session_id)
        return kept


class KVSwallows(KVBackend):
    """Logs a connection error and carries on, as the trial's Redis backend did: a write "succeeds", a recall finds
    nothing, a commit is acknowledged."""

    def _call(self, method: str, *args: Any) -> Any:
        try:
            service = connect(self.address)
        except ClientConnectionError as exc:
            log.warning("kv: %s failed: %s", method, exc)
            return [] if method in ("memcore_recall", "memcore_history") else None
        return getattr(service, method)(*args)


class KVUnmapped(KVBackend):
    """Lets the client's own connection error through: memcore does not know it, so each failure is final."""

    def _call(self, method: str, *args: Any) -> Any:
        return getattr(connect(self.address), method)(*args)


KV_SUITE = """
import uuid
import pytest
from memcore.testing import BackendSuite, closed_port
import test_conformance_down as down


class TestUnderTest(BackendSuite):
    scoped_recall = False
    index_deadline = 2.0
{attributes}
    @pytest.fixture
    def backend(self):
        yield down.{cls}(f"mem://{{uuid.uuid4().hex}}")

    @pytest.fixture
    def down_backend(self):
        with closed_port() as port:
            yield down.{cls}(f"tcp://127.0.0.1:{{port}}")
"""

DOWN_TESTS = frozenset(
    {
        "test_down_service_writes_are_retried_and_kept",
        "test_down_service_commit_is_never_acknowledged",
        "test_down_service_recall_raises_rather_than_finding_nothing",
    }
)
FAST = ("-k", "not g8")


def test_a_backend_that_maps_connection_errors_passes_the_whole_suite(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "KVBackend", *FAST, template=KV_SUITE)
    assert not outcome.failed, outcome.messages
    assert outcome.passed >= DOWN_TESTS


def test_the_suite_catches_a_backend_that_swallows_connection_errors(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "KVSwallows", *FAST, template=KV_SUITE)
    assert outcome.failed == DOWN_TESTS, outcome.messages  # and it passes every other test
    assert len(outcome.passed) >= 30, sorted(outcome.passed)
    messages = outcome.messages
    assert "reported delivered" in messages["test_down_service_writes_are_retried_and_kept"]
    assert "the backend swallowed the failure" in messages["test_down_service_writes_are_retried_and_kept"]
    assert "returned []" in messages["test_down_service_recall_raises_rather_than_finding_nothing"]
    assert "a write against" in messages["test_down_service_commit_is_never_acknowledged"]


def test_the_suite_catches_a_backend_that_lets_the_clients_error_through(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "KVUnmapped", "-k", "down_service", template=KV_SUITE)
    assert outcome.failed == DOWN_TESTS, outcome.messages
    message = outcome.messages["test_down_service_writes_are_retried_and_kept"]
    assert "failed for good at once" in message and "ClientConnectionError" in message, message
    assert (
        "which memcore does not retry"
        in outcome.messages["test_down_service_recall_raises_rather_than_finding_nothing"]
    )


def test_without_a_down_backend_the_tests_skip_naming_what_to_provide(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "WithoutHistory", "-k", "down_service")
    assert not outcome.failed and not outcome.passed, outcome.messages
    assert set(outcome.skipped) == DOWN_TESTS
    for reason in outcome.skipped.values():
        assert "'down_service'" in reason and "down_backend fixture" in reason and "--memcore-down-settings" in reason


def test_a_commit_against_a_service_that_is_down_is_caught_on_its_own(pytester: pytest.Pytester) -> None:
    """Writes raise as they should, only commits are swallowed: the commit test alone fails."""
    pytester.makepyfile(
        swallowing_commit="""
        import memcore
        import test_conformance_down as down

        class CommitSwallows(down.KVBackend):
            @memcore.hookimpl
            def memcore_commit(self, session):
                try:
                    down.connect(self.address)
                except down.ClientConnectionError:
                    return
                super().memcore_commit(session)
        """
    )
    outcome = _run_commit_swallows(pytester)
    assert outcome.failed == {"test_down_service_commit_is_never_acknowledged"}, outcome.messages
    assert (
        "a commit against a service that is down was reported committed"
        in outcome.messages["test_down_service_commit_is_never_acknowledged"]
    )


def _run_commit_swallows(pytester: pytest.Pytester) -> Outcome:
    pytester.makepyfile(
        test_suite="""
        import uuid
        import pytest
        from memcore.testing import BackendSuite, closed_port
        import swallowing_commit

        class TestUnderTest(BackendSuite):
            scoped_recall = False
            index_deadline = 2.0

            @pytest.fixture
            def backend(self):
                yield swallowing_commit.CommitSwallows(f"mem://{uuid.uuid4().hex}")

            @pytest.fixture
            def down_backend(self):
                with closed_port() as port:
                    yield swallowing_commit.CommitSwallows(f"tcp://127.0.0.1:{port}")
        """
    )
    recorder = pytester.inline_run("-p", "no:cacheprovider", "-p", "no:randomly", "-k", "down_service")
    assert not recorder.getfailedcollections(), recorder.getfailedcollections()
    return Outcome.of(recorder)


# -- the --memcore-backend runner --------------------------------------------------------------------------------------


@pytest.fixture
def kv_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """``kv`` (and its broken variants) as installed backends, as an entry point would make them."""
    for name, cls in (("kv", "KVBackend"), ("kv-swallows", "KVSwallows")):
        monkeypatch.setitem(memcore._plugins._BUILTIN, name, f"test_conformance_down:{cls}")


def run_installed(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess(*plugin_args(), "-p", "no:cacheprovider", "-rs", *args)


MEM = '{"address": "mem://{namespace}"}'
DOWN = '{"address": "tcp://127.0.0.1:{closed_port}"}'


@pytest.mark.usefixtures("kv_installed")
def test_the_runner_gives_each_test_an_empty_store_and_a_down_service(pytester: pytest.Pytester) -> None:
    before = set(SERVICES)
    result = run_installed(
        pytester,
        "--memcore-backend=kv",
        f"--memcore-settings={MEM}",
        f"--memcore-down-settings={DOWN}",
        "--memcore-suite",
        '{"scoped_recall": false, "index_deadline": 2}',
        "-k",
        "not g8",
        "-v",
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes["passed"] >= 40, result.stdout.str()
    for test in sorted(DOWN_TESTS):
        result.stdout.fnmatch_lines([f"*TestInstalledBackend::{test} PASSED*"])
    made = set(SERVICES) - before
    assert len(made) >= 40 and all(address.startswith("mem://mc") for address in made), sorted(made)[:3]
    assert "has no '{namespace}'" not in result.stdout.str()


@pytest.mark.usefixtures("kv_installed")
def test_the_runner_catches_a_swallowing_backend_and_skips_without_down_settings(pytester: pytest.Pytester) -> None:
    result = run_installed(
        pytester,
        "--memcore-backend=kv-swallows",
        f"--memcore-settings={MEM}",
        f"--memcore-down-settings={DOWN}",
        "-k",
        "down_service",
    )
    result.assert_outcomes(failed=3)
    result = run_installed(pytester, "--memcore-backend=kv-swallows", f"--memcore-settings={MEM}", "-k", "down_service")
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["*lacks the capability 'down_service'*--memcore-down-settings*"])


@pytest.mark.usefixtures("kv_installed")
def test_the_runner_applies_what_memcore_suite_declares(pytester: pytest.Pytester) -> None:
    scoped = "test_scoped_recall_keeps_sessions_apart"
    result = run_installed(pytester, "--memcore-backend=kv", f"--memcore-settings={MEM}", "-k", scoped)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*lacks the capability 'scoped_recall'*"])
    # Declared: the test runs, and fails, since this store's recall spans the user's sessions.
    result = run_installed(
        pytester,
        "--memcore-backend=kv",
        f"--memcore-settings={MEM}",
        "--memcore-suite",
        '{"scoped_recall": true, "index_deadline": 1}',
        "-k",
        scoped,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*returned what session*"])


@pytest.mark.usefixtures("kv_installed")
def test_settings_without_a_namespace_are_warned_about(pytester: pytest.Pytester) -> None:
    shared = f'{{"address": "mem://shared-{uuid.uuid4().hex}"}}'
    result = run_installed(pytester, "--memcore-backend=kv", f"--memcore-settings={shared}", "-k", "g2")
    result.stdout.fnmatch_lines(["*--memcore-settings has no '{namespace}': every test of the suite uses the same*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--memcore-suite", '{"users": true}'), "*'users' cannot be declared here*separates_users = True*"),
        (("--memcore-suite", '{"down_service": true}'), "*give --memcore-down-settings*"),
        (("--memcore-suite", '{"colour": 1}'), "*unknown 'colour'; known: scoped_recall*"),
        (("--memcore-suite", '{"scoped_recall": "yes"}'), "*scoped_recall must be true, false or null*"),
        (("--memcore-suite", '{"index_deadline": true}'), "*index_deadline must be seconds*"),
        (("--memcore-down-settings", "[1]"), "*--memcore-down-settings must be a JSON object*"),
    ],
)
def test_bad_runner_options_are_usage_errors(pytester: pytest.Pytester, args: tuple[str, ...], message: str) -> None:
    result = pytester.runpytest(*plugin_args(), "-p", "no:cacheprovider", "--memcore-backend", "sqlite", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    result = pytester.runpytest(*plugin_args(), "-p", "no:cacheprovider", "--memcore-down-settings", "{}")
    result.stderr.fnmatch_lines(["*--memcore-down-settings needs --memcore-backend NAME*"])


def test_placeholders_are_replaced_in_every_string() -> None:
    settings = {"url": "redis://127.0.0.1:{closed_port}/0", "port": "{closed_port}", "prefix": "{namespace}:", "n": 3}
    nested = {"{namespace}": ["a-{namespace}", {"deep": "{closed_port}"}]}
    assert substitute(settings, namespace="mcx", closed_port=6390) == {
        "url": "redis://127.0.0.1:6390/0",
        "port": 6390,
        "prefix": "mcx:",
        "n": 3,
    }
    assert substitute(nested, namespace="mcx", closed_port=1) == {"mcx": ["a-mcx", {"deep": 1}]}
    assert substitute(settings, namespace="mcy")["port"] == "{closed_port}"  # only the down settings get a port


def test_a_closed_port_refuses_connections_at_once() -> None:
    with closed_port() as port:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5.0)
        with pytest.raises(ClientConnectionError, match="Connection refused"):
            connect(f"tcp://127.0.0.1:{port}")


def _import_what_a_refused_connection_imports() -> None:
    """httpx (httpcore) imports modules on its first failed connection. Done inside a pytester run, they leave
    ``sys.modules`` with it, and the next run imports them again: new exception classes that httpx no longer maps,
    so a refused connection escapes as httpcore's error. Imported here, once, they stay."""
    with closed_port() as port, httpx.Client() as client, contextlib.suppress(httpx.TransportError):
        client.get(f"http://127.0.0.1:{port}/")


_import_what_a_refused_connection_imports()

HTTP_DOWN_SUITE = """
import pytest
from memcore.testing import BackendSuite, closed_port
import test_conformance_bites as bites


class TestUnderTest(BackendSuite):
    @pytest.fixture
    def backend(self):
        return bites.{cls}("http://127.0.0.1:9")

    @pytest.fixture
    def down_backend(self):
        with closed_port() as port:
            yield bites.{cls}(f"http://127.0.0.1:{{port}}")
"""


def test_an_http_backend_that_gives_up_on_connection_errors_fails_without_a_fault_transport(
    pytester: pytest.Pytester,
) -> None:
    """The down-service tests need no httpx transport: an HTTP backend that turns a refused connection into a final
    error is caught by them as well."""
    outcome = run_suite(pytester, "GivesUpBackend", "-k", "down_service", template=HTTP_DOWN_SUITE)
    assert outcome.failed == DOWN_TESTS, outcome.messages
    assert "failed for good at once" in outcome.messages["test_down_service_writes_are_retried_and_kept"]


def test_an_http_backend_written_as_http_md_says_passes_them(pytester: pytest.Pytester) -> None:
    outcome = run_suite(pytester, "LoopbackBackend", "-k", "down_service", template=HTTP_DOWN_SUITE)
    assert outcome.passed == DOWN_TESTS, outcome.messages
