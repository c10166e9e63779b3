"""Additive-only .proto edits (ci/proto.py)."""
from __future__ import annotations

import pytest

from localai_ci.changes.proto import compare_proto

BASE = """syntax = "proto3";
option go_package = "github.com/mudler/LocalAI/pkg/grpc/proto";  // a "//" in a string
service Backend { rpc Health(HealthMessage) returns (Reply) {} }
enum Kind { A = 0; B = 1; }
message Reply { bytes message = 1; reserved 4; }
"""


@pytest.mark.parametrize("edit, additive", [
    (("B = 1;", "B = 1; C = 2;"), True),  # a new enum value
    (("reserved 4;", "reserved 4; reserved 5;"), True),
    (("bytes message = 1;", "bytes message = 1;\n  // why\n  string extra = 2;"), True),
    (("}\nenum", "  rpc Score(Reply) returns (Reply) {}\n}\nenum"), True),
    (("pkg/grpc/proto", "pkg/grpc/pb"), False),  # a changed option
    (("reserved 4;", ""), False),
    (("bytes message = 1;", "string message = 1;"), False),
])
def test_additive_or_not(edit: tuple[str, str], additive: bool) -> None:
    change = compare_proto(BASE, BASE.replace(*edit))
    assert change.additive is additive, change


def test_unreadable_revisions_are_never_additive_and_the_description_names_symbols() -> None:
    assert not compare_proto(None, BASE).additive
    assert compare_proto(BASE, BASE.replace("B = 1;", "B = 1; C = 2;")).describe() == "additive only (adds C)"
    assert compare_proto(BASE, BASE.replace("B = 1;", "B = 3;")).describe() == "not additive (B removed or changed)"
