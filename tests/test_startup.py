"""Start-up: ``credsim run`` imports only what a run needs.

The analysis stack (statsmodels, scikit-learn, linearmodels), the sweep cluster (dask,
distributed), the app (solara) and the figures (matplotlib) cost seconds to import and
no run uses them; the commands that do import them inside their own functions.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "statsmodels",
    "sklearn",
    "linearmodels",
    "dask",
    "distributed",
    "solara",
    "matplotlib",
    "IPython",
)


def _imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_credsim_run_imports_no_analysis_app_or_cluster_packages():
    # What `credsim run` imports: the CLI module, then (in the command) model and store.
    loaded = _imported_after("import sim.cli, sim.model, sim.store")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_cli_module_alone_imports_no_model_or_dataframe_stack():
    # `credsim --help` and argument errors should not pay for numpy, pandas or mesa.
    loaded = _imported_after("import sim.cli")
    assert not loaded & {"numpy", "pandas", "mesa", "scipy", "networkx", *HEAVY}
