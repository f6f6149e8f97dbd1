"""The run-spec fields that no rule relates to another field or fact, and why.

Every field of the run-spec schema is either part of a rule (``rules=`` on a check: the field it
constrains or one it relates to) or listed here with the reason it needs none. A test holds the two
lists against the schema, so a new field cannot arrive without someone deciding which it is; the
docs page of rules (docs/rules.md) shows both.
"""

from __future__ import annotations

UNRELATED: dict[str, str] = {
    "$schema": "an editor hint; the tool does not read it",
    "version": "the spec format's version; the schema pins it",
    "run.name": "a label; it only names the run directory's default",
    "run.description": "free text",
}
