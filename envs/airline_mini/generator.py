"""Seeded, deterministic task generator of the small airline domain.

Tasks are drawn from tau2's airline DB in the four categories of :mod:`envs.categories`:

* state_changing -- cancel a reservation the policy lets the agent cancel
  (gold: look it up, cancel it).
* information_only -- a question whose answer is a value in the DB (gold: one look-up;
  the value is the task's ``communicate_info``).
* transfer_only -- a request the domain's tools cannot serve (gold: transfer to a human).
* no_action -- cancel a reservation the policy forbids cancelling (gold: nothing).

The DB's users are shuffled and split before any task is drawn, so no user, and no
reservation, serves both splits; within a split a reservation serves one task at most.
Cancellations cycle through every (cabin, insurance) pair on their side of the policy's
rule, so each condition of the rule is taught; questions and transfers cycle through their
kinds. The world the env runs is the part of the DB the tasks touch: their users and all
of those users' reservations. Flights are left out, as no tool of the domain reads them;
building and hashing that world is several times faster than the whole DB, and building
and hashing is most of the cost of scoring an episode.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import cycle, islice
from typing import Any, get_args

from tau2.data_model.tasks import Task
from tau2.domains.airline.data_model import CabinClass, Insurance, Reservation, User
from tau2.environment.environment import Environment

from envs.airline_mini.policy import TODAY, cancellation_allowed
from envs.categories import TRANSFER_TOOL
from envs.config import ConfigError

DOMAIN_NAME = "airline_mini"

Record = dict[str, Any]  # a user or reservation as it appears in the airline db.json


@dataclass(frozen=True)
class CategoryCounts:
    """How many tasks of each category one split gets."""

    state_changing: int
    information_only: int
    transfer_only: int
    no_action: int


@dataclass(frozen=True)
class GeneratorConfig:
    """What the generator draws. The defaults make the task set recorded in
    ``envs.airline_mini.tasks.TASKSET_SHA256``; any change gives another set."""

    seed: int = 0
    """Seeds the one ``random.Random`` that every draw comes from."""
    train: CategoryCounts = CategoryCounts(
        state_changing=96, information_only=72, transfer_only=36, no_action=36
    )
    """240 tasks. Like tau3-airline, a do-nothing agent passes the transfer-only and no-action
    tasks (neither changes the DB nor has anything to communicate): a floor of 0.30."""
    test: CategoryCounts = CategoryCounts(
        state_changing=24, information_only=18, transfer_only=9, no_action=9
    )
    """60 tasks in the same proportions: small enough to replay in the default test suite."""
    test_user_fraction: float = 0.2
    """Share of the DB's 500 users whose reservations serve test tasks; the rest serve train."""
    max_record_chars: int = 700
    """Reservations and users whose tool result is longer are not used. Tool results are
    JSON at ~2.2 characters per SmolLM2 token: a look-up stays under ~330 tokens, and a
    gold episode, system prompt included, at 0.7-1.5K tokens (median 1.1K)."""


@dataclass(frozen=True)
class TaskSet:
    """The generated tasks, their splits, and the world (a subset of the airline DB) they
    run in."""

    tasks: dict[str, Task]
    splits: dict[str, list[str]]
    db: Record
    lookups: dict[str, tuple[tuple[str, Record], ...]]
    """Per task, the read-only calls its demonstration makes before the gold ones."""

    def sha256(self) -> str:
        """One checksum over the world, the tasks, the splits and the demonstrations."""
        content = {
            "db": self.db,
            "splits": self.splits,
            "tasks": [task.model_dump(mode="json") for task in self.tasks.values()],
            "lookups": self.lookups,
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


# How the simulated customer behaves, in tau2's user instructions (read by LLM users; the
# scripted user's rules already behave this way).
CANCEL_INSTRUCTIONS = (
    "You want the reservation cancelled. If the agent asks you to confirm, say yes. If the "
    "agent says the policy does not allow the cancellation, accept that and end the conversation."
)
QUESTION_INSTRUCTIONS = "You only want the answer. Once the agent gives it, end the conversation."
TRANSFER_INSTRUCTIONS = "If the agent transfers you to a human agent, end the conversation."


@dataclass(frozen=True)
class _Question:
    topic: str
    about: type[User] | type[Reservation]
    text: str  # may name {reservation_id}
    answer: Callable[[Record], list[str]]  # the communicate_info values; empty: not askable


QUESTIONS = (
    _Question(
        "first flight number",
        Reservation,
        "What is the flight number of the first flight on my reservation {reservation_id}?",
        lambda r: [r["flights"][0]["flight_number"]],
    ),
    _Question(
        "first flight date",
        Reservation,
        "On what date is the first flight of my reservation {reservation_id}?",
        lambda r: [r["flights"][0]["date"]],
    ),
    _Question(
        "email",
        User,
        "What email address do you have on file for me?",
        lambda u: [u["email"]],
    ),
    _Question(
        "reservation ids",
        User,
        "What are the ids of all my reservations?",
        lambda u: list(u["reservations"]),
    ),
)

# What the customer asks for that no tool of the domain can do; each names a reservation.
TRANSFER_WISHES = (
    "change the flights on reservation {reservation_id}",
    "add a checked bag to reservation {reservation_id}",
    "change a passenger's name on reservation {reservation_id}",
    "talk to a human agent about reservation {reservation_id}",
)


@dataclass(frozen=True)
class _Draft:
    """A task before it has an id."""

    purpose: str
    user_id: str
    request: str  # tau2's reason_for_call: what the customer opens with
    instructions: str
    actions: tuple[tuple[str, Record], ...] = ()  # gold tool calls: (name, arguments)
    communicate_info: tuple[str, ...] = ()
    # read-only calls the demonstration makes beyond the gold ones (the policy's "look up
    # the reservation first" before a refusal); the evaluator neither needs nor penalises them
    lookups: tuple[tuple[str, Record], ...] = ()


class _Pool:
    """One split's reservations and users, in a seeded order; each is drawn at most once.

    Only records whose tool result fits ``max_chars`` are in the pool."""

    def __init__(
        self, db: Record, user_ids: list[str], max_chars: int, rng: random.Random, split: str
    ):
        self.split = split
        users = [db["users"][u] for u in user_ids]
        reservations = [db["reservations"][r] for u in users for r in u["reservations"]]
        rng.shuffle(reservations)
        self.users = [u for u in users if _tool_result_chars(User, u) <= max_chars]
        self.reservations = [
            r for r in reservations if _tool_result_chars(Reservation, r) <= max_chars
        ]
        self._drawn: set[str] = set()

    def draw(
        self, about: type[User] | type[Reservation], accept: Callable[[Record], bool], wanted: str
    ) -> Record:
        records, key = (
            (self.users, "user_id") if about is User else (self.reservations, "reservation_id")
        )
        for record in records:
            if record[key] not in self._drawn and accept(record):
                self._drawn.add(record[key])
                return record
        raise ConfigError(
            f"{DOMAIN_NAME} generator: the {self.split} split has no {about.__name__.lower()} "
            f"left for {wanted}; lower its task counts or raise max_record_chars"
        )


def _tool_result_chars(about: type[User] | type[Reservation], record: Record) -> int:
    """Length of the tool result that shows ``record`` (tau2 renders it this way)."""
    return len(Environment.to_json_str(about.model_validate(record)))


def _flies_after_today(reservation: Record) -> bool:
    # A cancellation of a trip already under way would raise questions the policy leaves out.
    return all(flight["date"] > TODAY for flight in reservation["flights"])


def _cancellations(pool: _Pool, count: int, allowed: bool) -> Iterator[_Draft]:
    sides = [
        (cabin, insurance)
        for cabin in get_args(CabinClass)
        for insurance in get_args(Insurance)
        if cancellation_allowed({"cabin": cabin, "insurance": insurance}) == allowed
    ]
    verdict = "allowed" if allowed else "forbidden"
    for cabin, insurance in islice(cycle(sides), count):

        def accept(r: Record, cabin: str = cabin, insurance: str = insurance) -> bool:
            return r["cabin"] == cabin and r["insurance"] == insurance and _flies_after_today(r)

        r = pool.draw(Reservation, accept, f"a {verdict} cancellation ({cabin}, {insurance})")
        call = {"reservation_id": r["reservation_id"]}
        yield _Draft(
            purpose=f"Cancellation {verdict}: cabin {cabin}, insurance {insurance}.",
            user_id=r["user_id"],
            request=f"I want to cancel my reservation {r['reservation_id']}.",
            instructions=CANCEL_INSTRUCTIONS,
            actions=(("get_reservation_details", call), ("cancel_reservation", call))
            if allowed
            else (),
            lookups=() if allowed else (("get_reservation_details", call),),
        )


def _questions(pool: _Pool, count: int) -> Iterator[_Draft]:
    for question in islice(cycle(QUESTIONS), count):
        record = pool.draw(
            question.about, lambda rec, q=question: bool(q.answer(rec)), question.topic
        )
        lookup = (
            ("get_user_details", {"user_id": record["user_id"]})
            if question.about is User
            else ("get_reservation_details", {"reservation_id": record["reservation_id"]})
        )
        yield _Draft(
            purpose=f"Question: {question.topic}.",
            user_id=record["user_id"],
            request=question.text.format(reservation_id=record.get("reservation_id")),
            instructions=QUESTION_INSTRUCTIONS,
            actions=(lookup,),
            communicate_info=tuple(question.answer(record)),
        )


def _transfers(pool: _Pool, count: int) -> Iterator[_Draft]:
    for wish in islice(cycle(TRANSFER_WISHES), count):
        r = pool.draw(Reservation, lambda rec: True, "a transfer")
        what = wish.format(reservation_id=r["reservation_id"])
        yield _Draft(
            purpose=f"Transfer: the user wants to {what}.",
            user_id=r["user_id"],
            request=f"I want to {what}.",
            instructions=TRANSFER_INSTRUCTIONS,
            actions=((TRANSFER_TOOL, {"summary": f"User {r['user_id']} wants to {what}."}),),
        )


def _task(task_id: str, draft: _Draft) -> Task:
    actions = [
        {
            "action_id": f"{task_id}_{k}",
            "name": name,
            "arguments": arguments,
            # a transfer summary is free text: tau3 compares no argument of it either
            **({"compare_args": []} if name == TRANSFER_TOOL else {}),
        }
        for k, (name, arguments) in enumerate(draft.actions)
    ]
    return Task.model_validate(
        {
            "id": task_id,
            "description": {"purpose": draft.purpose},
            "user_scenario": {
                "instructions": {
                    "domain": DOMAIN_NAME,
                    "reason_for_call": draft.request,
                    "known_info": f"My user id is {draft.user_id}.",
                    "task_instructions": draft.instructions,
                }
            },
            "evaluation_criteria": {
                "actions": actions,
                "communicate_info": list(draft.communicate_info),
                "reward_basis": ["DB", "COMMUNICATE"],
            },
        }
    )


def _world(db: Record, user_ids: set[str]) -> Record:
    users = {u: record for u, record in db["users"].items() if u in user_ids}
    reservation_ids = {r for record in users.values() for r in record["reservations"]}
    reservations = {r: rec for r, rec in db["reservations"].items() if r in reservation_ids}
    return {"flights": {}, "users": users, "reservations": reservations}


def generate(airline_db: Record, config: GeneratorConfig | None = None) -> TaskSet:
    """The task set ``config`` describes, drawn from ``airline_db`` (the parsed db.json)."""
    config = config or GeneratorConfig()
    rng = random.Random(config.seed)
    user_ids = list(airline_db["users"])
    rng.shuffle(user_ids)
    n_test = round(len(user_ids) * config.test_user_fraction)
    tasks: dict[str, Task] = {}
    splits: dict[str, list[str]] = {}
    touched: set[str] = set()
    lookups: dict[str, tuple[tuple[str, Record], ...]] = {}
    for split, users, counts in (
        ("train", user_ids[n_test:], config.train),
        ("test", user_ids[:n_test], config.test),
    ):
        pool = _Pool(airline_db, users, config.max_record_chars, rng, split)
        drafts = [
            *_cancellations(pool, counts.state_changing, allowed=True),
            *_questions(pool, counts.information_only),
            *_transfers(pool, counts.transfer_only),
            *_cancellations(pool, counts.no_action, allowed=False),
        ]
        rng.shuffle(drafts)
        splits[split] = []
        for draft in drafts:
            task_id = str(len(tasks))
            tasks[task_id] = _task(task_id, draft)
            if draft.lookups:
                lookups[task_id] = draft.lookups
            splits[split].append(task_id)
            touched.add(draft.user_id)
    return TaskSet(tasks=tasks, splits=splits, db=_world(airline_db, touched), lookups=lookups)
