"""A schema change must stay fully compatible with the newest released version: the new schema
reads old data, and the old schema reads new data (producers and consumers upgrade one at a
time). Checked with the Avro reference implementation's compatibility checker."""
import json

import avro.schema
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from schemas import RELEASED_DIR, SCHEMA_DIR, current_schemas, released_schemas


def _avro(path) -> avro.schema.Schema:
    return avro.schema.parse(path.read_text())


def incompatibilities(new: avro.schema.Schema, old: avro.schema.Schema) -> list[str]:
    checker = ReaderWriterCompatibilityChecker()
    problems = []
    for reader, writer, direction in ((new, old, "new reads old"), (old, new, "old reads new")):
        result = checker.get_compatibility(reader, writer)
        if result.compatibility is not SchemaCompatibilityType.compatible:
            problems.append(f"{direction}: {sorted(result.messages)} at {result.locations}")
    return problems


def test_every_current_schema_has_a_released_version():
    assert current_schemas(), "no schemas found"
    missing = sorted(set(current_schemas()) - set(released_schemas()))
    assert not missing, f"release these schemas into {RELEASED_DIR}: {missing}"


@pytest.mark.parametrize("name", sorted(current_schemas()))
def test_current_schema_is_fully_compatible_with_newest_release(name):
    newest = released_schemas()[name][-1]
    problems = incompatibilities(
        _avro(SCHEMA_DIR / f"{name}.avsc"), _avro(RELEASED_DIR / f"{newest.file}.avsc")
    )
    assert not problems, f"{name}.avsc breaks compatibility with {newest.file}: {problems}"


def test_the_check_catches_a_field_added_without_default():
    released = json.loads((SCHEMA_DIR / "event.avsc").read_text())
    changed = json.loads(json.dumps(released))
    changed["fields"].append({"name": "channel", "type": "string"})
    problems = incompatibilities(avro.schema.parse(json.dumps(changed)),
                                 avro.schema.parse(json.dumps(released)))
    assert problems and problems[0].startswith("new reads old")


def test_the_check_catches_a_changed_field_type():
    released = json.loads((SCHEMA_DIR / "segment_change.avsc").read_text())
    changed = json.loads(json.dumps(released))
    for field in changed["fields"]:
        if field["name"] == "time":
            field["type"] = "string"
    problems = incompatibilities(avro.schema.parse(json.dumps(changed)),
                                 avro.schema.parse(json.dumps(released)))
    assert len(problems) == 2


@pytest.mark.parametrize("name", sorted(released_schemas()))
def test_each_released_version_is_fully_compatible_with_the_one_before(name):
    """A topic holds records of every released version: each release read its predecessor's
    records and was read by it (a chain of full compatibility, not only the newest step)."""
    versions = released_schemas()[name]
    for old, new in zip(versions, versions[1:]):
        problems = incompatibilities(_avro(RELEASED_DIR / f"{new.file}.avsc"),
                                     _avro(RELEASED_DIR / f"{old.file}.avsc"))
        assert not problems, f"{new.file} breaks compatibility with {old.file}: {problems}"
