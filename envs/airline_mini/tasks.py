"""airline-mini, the small domain: tau2's airline world with four tools, a short policy and a
generated task set (train 240 / test 60).

It is what CartPole is to RL libraries: a real tau2 domain, scored by tau2's own evaluator,
small enough that a 135M model learns on it in minutes on a CPU. It does not replace
tau3-airline. The airline DB comes from the tau3 data package (checksummed there); the
tasks are generated in memory at load time (:mod:`envs.airline_mini.generator`) and
checked against :data:`TASKSET_SHA256`, so results stay comparable across machines and
commits.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from tau2.domains.airline.data_model import FlightDB
from tau2.environment.environment import Environment

from envs.airline_mini.generator import DOMAIN_NAME, TaskSet, generate
from envs.airline_mini.policy import POLICY
from envs.airline_mini.tools import MiniAirlineTools
from envs.tau2_engine import DataIntegrityError, TauDomain, verify_sha256
from envs.tau3_airline.tasks import DATA_PACKAGE, data_dir

# sha256 of the default task set: its world, tasks and splits (generator.TaskSet.sha256).
TASKSET_SHA256 = "e329a5fd318857cca38f2c17ef53933d6c9d8e4f5186e0112a4179bbbcc1ee30"


def airline_db() -> dict[str, Any]:
    """tau2's airline db.json as shipped with the tau3 data package, verified."""
    root = data_dir()
    db_path = root / "tau2" / "domains" / "airline" / "db.json"
    source = json.loads((root / "SOURCE.json").read_text())
    verify_sha256(
        {db_path: source["sha256"]["tau2/domains/airline/db.json"]}, f"{DATA_PACKAGE} ({root})"
    )
    return json.loads(db_path.read_text())


@cache
def airline_mini_taskset() -> TaskSet:
    """The generated task set, verified against its recorded checksum."""
    taskset = generate(airline_db())
    checksum = taskset.sha256()
    if checksum != TASKSET_SHA256:
        raise DataIntegrityError(
            f"{DOMAIN_NAME}: the generated task set has sha256 {checksum}, but "
            f"envs/airline_mini/tasks.py records {TASKSET_SHA256}. The generator (or the tau2 "
            "version that models its tasks) changed its output, and results on the new set are "
            "not comparable with results on the old one. If the change is intended, record the "
            "new checksum in TASKSET_SHA256."
        )

    return taskset


@cache
def airline_mini_domain() -> TauDomain:
    """The generated, verified and registered airline-mini domain (built once per process)."""
    taskset = airline_mini_taskset()
    # A fresh DB per episode (three per scored episode): pydantic's own JSON parser builds
    # it ~35% faster than validating the parsed dict.
    world_json = json.dumps(taskset.db)

    def build_environment() -> Environment:
        return Environment(
            domain_name=DOMAIN_NAME,
            policy=POLICY,
            tools=MiniAirlineTools(FlightDB.model_validate_json(world_json)),
        )

    return TauDomain(
        name=DOMAIN_NAME,
        tasks=taskset.tasks,
        splits=taskset.splits,
        build_environment=build_environment,
    )
