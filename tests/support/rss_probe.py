"""Run one registry-reading verb in this process and report its peak RSS (a subprocess of the tests).

``python tests/support/rss_probe.py SPEC_JSON`` with SPEC::

    {"verb": "inspect", "refs": ["127.0.0.2:P/repo:tag", ...]}
    {"verb": "merge", "digests": DIR, "matrix": PATH, "suffix": S, "images": "h1/r,h2/r"}

Clients use a fast retry policy (the tests' budget); plain HTTP for loopback as usual. Prints one
JSON line: ``{"peak_kib": ..., "exit": 0|1, "text": ...}`` where ``text`` is the verb's outcome
(failures, or the error message). Peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
(KiB on Linux) read after the verb, so it includes everything the verb held at any time.
"""
from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository (a script, run as a file)

from localai_ci.errors import CiError  # noqa: E402
from localai_ci.oci.client import RegistryClient  # noqa: E402
from localai_ci.oci.retry import RetryPolicy  # noqa: E402

POLICY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, deadline=20.0, request_timeout=5.0)


def main(spec: dict[str, object]) -> dict[str, object]:
    from localai_ci.settings import family_config
    from localai_ci.matrix.naming import Family
    from localai_ci.oci.reference import ImageName

    verb = spec["verb"]
    try:
        if verb == "inspect":
            from localai_ci.verify.inspect import expand_targets, inspect_refs

            targets = expand_targets([str(r) for r in spec["refs"]], (), ())  # type: ignore[attr-defined]
            report = inspect_refs(targets, lambda img: RegistryClient(img, plain_http=True, retry=POLICY))
            text = "\n".join(str(f) for f in report.failures)
            code = report.exit_code
        elif verb == "merge":
            from localai_ci.matrix.model import load_matrix
            from localai_ci.merge.model import MergeOptions
            from localai_ci.merge.run import FamilySetup, merge_suffix
            from localai_ci.matrix.tags import TagSource

            setup = FamilySetup(config=family_config(Family.BACKENDS, images=str(spec["images"])),
                                matrix=load_matrix(str(spec["matrix"]), Family.BACKENDS))

            def factory(img: ImageName, plain_http: object) -> RegistryClient:
                return RegistryClient(img, plain_http=True, retry=POLICY)

            result = merge_suffix(str(spec["digests"]), Family.BACKENDS, str(spec["suffix"]), setup,
                                  MergeOptions(tag_source=TagSource(event="push", ref="refs/heads/master",
                                                                    sha="89abcdef0123456789abcdef0123456789abcdef")),
                                  factory=factory)
            text, code = f"{result.outcome}: {result.reason}", 0
        else:
            raise SystemExit(f"unknown verb {verb!r}")
    except CiError as exc:
        text, code = str(exc), exc.exit_code
    return {"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "exit": code, "text": text}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
