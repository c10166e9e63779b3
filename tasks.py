"""invoke tasks of this repository: the collection localai-ci ships (``ci/tasks.py``).

`invoke --list` shows every task; `invoke --help <task>` explains every option. A repository that
adopts localai-ci writes the same one line (README: "Adopting it").
"""
from localai_ci.tasks import ns  # noqa: F401  (invoke looks for `ns`)
