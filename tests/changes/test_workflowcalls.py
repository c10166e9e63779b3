"""What caller workflows pass to the build workflow (ci/workflowcalls.py)."""
from __future__ import annotations

from localai_ci.changes.workflowcalls import build_calls, compare_calls

WF = """name: backend
on: push
jobs:
  build:
    uses: ./.github/workflows/backend_build.yml
    with:
      backend: ${{ matrix.backend }}
      amdgpu-targets: ${{ matrix.amdgpu-targets || 'gfx908,gfx90a' }}
      cuda: "${{ fromJSON(inputs.leg)['cuda-major-version'] || \\"12\\" }}"
  merge:
    uses: ./.github/workflows/backend_merge.yml
"""
BUILD = ".github/workflows/backend_build.yml"


def test_defaults_and_inputs_of_the_calls() -> None:
    calls = build_calls(WF, BUILD)
    assert calls is not None and [c.job for c in calls] == ["build"]
    assert dict(calls[0].defaults) == {"amdgpu-targets": "gfx908,gfx90a", "cuda-major-version": "12"}
    assert dict(calls[0].inputs) == {"backend": "${{ matrix.backend }}"}
    assert build_calls("jobs: [unclosed", BUILD) is None


def test_what_changed() -> None:
    before = build_calls(WF, BUILD)
    new_default = compare_calls(before, build_calls(WF.replace("gfx908,gfx90a'", "gfx908,gfx90a,gfx942'"), BUILD))
    assert new_default.defaults == (("amdgpu-targets", "gfx908,gfx90a", "gfx908,gfx90a,gfx942"),)
    assert not new_default.other
    assert not compare_calls(before, build_calls(WF.replace("on: push", "on: [push, pull_request]"), BUILD)).changed
    more = compare_calls(before, build_calls(WF.replace("      backend:", "      apt-mirror: x\n      backend:"), BUILD))
    assert more.other == ("job build passes different apt-mirror",)
    assert compare_calls(None, before).unreadable
