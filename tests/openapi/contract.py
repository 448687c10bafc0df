"""Checking an app against its own OpenAPI document: shared by the guide's and the examples'
contract tests.

* `plain_operations` and `fuzz`: schemathesis against every operation that does not stream,
  with a fixed seed and a bounded number of examples, so a run is quick and the same every
  time (it is synchronous: call `fuzz` from a worker thread while the server runs);
* `ItemChecker`: one event read off the wire, checked against its route's ``itemSchema`` and,
  since ``contentSchema`` is only an annotation to JSON Schema, its data's JSON against the
  declared schema of its event (or the text it may be, for a mixed event such as OpenAI's
  ``[DONE]``).
"""

from __future__ import annotations

import json
from typing import Any

import hypothesis
import jsonschema  # type: ignore[import-untyped]
import schemathesis
from hypothesis import HealthCheck
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from trio_dwex.wire._decoder import MessageEvent

#: Examples schemathesis tries per operation, in each of its two modes (valid and invalid
#: input): enough to cross every field and kind of mistake, small enough for CI.
EXAMPLES = 40


def _streams(raw: dict[str, Any]) -> bool:
    return any(
        "text/event-stream" in response.get("content", {})
        for response in raw["responses"].values()
        if isinstance(response, dict)
    )


def plain_operations(document: dict[str, Any]) -> list[Any]:
    """The document's operations that do not answer with an event stream."""
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    return [op for op in operations if not _streams(op.definition.raw)]


def fuzz(document: dict[str, Any], base_url: str, headers: dict[str, str]) -> list[str]:
    """Run schemathesis against every plain operation; the failures, described."""
    failures: list[str] = []
    for operation in plain_operations(document):
        raw = operation.definition.raw
        takes_input = bool(raw.get("parameters") or raw.get("requestBody"))
        # A valid id of something that expired is answered 410, which schemathesis does not
        # count among the answers to valid input; where the document declares 410, the
        # status check (every answer documented) still applies, and this one is left out.
        excluded = [positive_data_acceptance] if "410" in raw["responses"] else []
        # An operation that takes nothing (a page) has no wrong input to try.
        modes = (
            (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            if takes_input
            else (GenerationMode.POSITIVE,)
        )
        for mode in modes:

            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            )
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                case.call_and_validate(
                    base_url=base_url,
                    headers=dict(headers),
                    excluded_checks=excluded,  # noqa: B023 (run is called in this iteration)
                    timeout=10,
                )

            try:
                run()
            except Exception as error:  # one failure per operation and mode is enough to say
                failures.append(f"{operation.method.upper()} {operation.path} ({mode}): {error}")
    return failures


class ItemChecker:
    """The events of one stream route, as its document describes them."""

    def __init__(self, document: dict[str, Any], path: str, method: str = "get") -> None:
        content = document["paths"][path][method]["responses"]["200"]["content"]
        item_schema = content["text/event-stream"]["itemSchema"]
        self._components = {"components": document["components"]}
        self._item = jsonschema.Draft202012Validator({**item_schema, **self._components})
        #: The data schema of each event name.
        self.branches: dict[str, dict[str, Any]] = {
            branch["title"]: branch["properties"]["data"] for branch in item_schema["oneOf"]
        }

    def check(self, event: MessageEvent) -> None:
        """Raise unless ``event`` (as a client parsed it) is one the route describes."""
        item: dict[str, Any] = {"data": event.data}
        if event.type != "message":
            item["event"] = event.type
        if event.id:
            item["id"] = event.id
        if event.retry is not None:
            item["retry"] = event.retry
        self._item.validate(item)
        data_schema = self.branches[event.type]
        alternatives = data_schema.get("anyOf", [data_schema])
        errors = []
        for alternative in alternatives:
            try:
                self._check_data(alternative, event.data)
                return
            except (jsonschema.ValidationError, ValueError) as error:
                errors.append(str(error).splitlines()[0])
        raise AssertionError(f"event {event.type!r} data {event.data[:80]!r}: {errors}")

    def _check_data(self, schema: dict[str, Any], data: str) -> None:
        if "contentSchema" in schema:
            content = {**schema["contentSchema"], **self._components}
            jsonschema.Draft202012Validator(content).validate(json.loads(data))
        elif schema.get("type") == "string":
            jsonschema.Draft202012Validator(schema).validate(data)
        else:
            jsonschema.Draft202012Validator({**schema, **self._components}).validate(data)
