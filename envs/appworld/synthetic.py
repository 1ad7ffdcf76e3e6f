"""Build a small synthetic AppWorld world with AppWorld's own code (run in the AppWorld venv).

    .venv-appworld/bin/python envs/appworld/synthetic.py OUT_DIR

writes ``OUT_DIR/data`` in the layout ``appworld download data`` gives (api_docs, base_dbs,
tasks, datasets), so the real engine loads, runs and scores it. The real data cannot be
downloaded on our machines; this world lets tests and CPU demos go through the real engine.

The world: one supervisor (Maya Ortiz) with SimpleNote and Phone accounts, a second
SimpleNote user whose notes must stay untouched, and six tasks in three scenarios:

* ``5a1ce0a`` -- questions about Maya's notes (answers checked by ``test.answer``);
* ``5a2ce0b`` -- create a note, delete a note (DB changes checked record by record);
* ``5a3ce0c`` -- a two-app task (Phone then SimpleNote) and a Phone question.

Every task's evaluation also checks that nothing else changed (AppWorld's "collateral
damage" tests). Each task ships ``compiled_solution.py`` (a ``solution(apis, requester)``
function, as AppWorld's full-mode ground truth does) and ``required_apps.json``.

Rows are inserted through AppWorld's models (``create_save`` validates fields and foreign
keys); task files are written by ``appworld.task.Task.save``. Ground-truth files are
written here because ``GroundTruth.save`` runs ``ruff``, which the AppWorld venv lacks.
The build goes to a temporary directory that is renamed into place when complete.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from textwrap import dedent
from typing import Any

# AppWorld calls dotenv.load_dotenv() at import, which walks up from its install directory.
os.environ["PYTHON_DOTENV_DISABLED"] = "1"

STAMP = "STAMP"
TASK_DATETIME = datetime(2023, 5, 18, 12, 0, 0)  # AppWorld's default world clock
CANARY = "toolgym-synthetic-world"

SUPERVISOR = {
    "first_name": "Maya",
    "last_name": "Ortiz",
    "email": "maya.ortiz@gmail.com",
    "phone_number": "2125550147",
}
BIRTHDAY = "1990-04-12"
PASSWORDS = {"simple_note": "note-pass-4471", "phone": "phone-pass-9902"}
OTHER_USER = {"first_name": "Ravi", "last_name": "Shah", "email": "ravi.shah@gmail.com"}

MAYA_NOTES = [
    ("Sourdough starter", "Feed daily with rye flour and water.", ["recipe", "baking"]),
    ("Weeknight curry", "Chickpeas, spinach, coconut milk.", ["recipe"]),
    ("Old ideas", "A podcast about maps.", ["ideas"]),
    ("Emergency contacts", "Mom: 2125550100", ["family"]),
    ("Book list", "Middlemarch; The Overstory.", ["reading"]),
]
RAVI_NOTES = [("Ravi's dal", "Lentils, rye flour, cumin.", ["recipe"])]
MAYA_CONTACTS = [
    {
        "first_name": "Rosa",
        "last_name": "Diaz",
        "email": "rosa.diaz@gmail.com",
        "phone_number": "6465550199",
        "relationships": ["friend"],
    },
    {
        "first_name": "Tom",
        "last_name": "Becker",
        "email": "tom.becker@outlook.com",
        "phone_number": "7185550123",
        "relationships": ["coworker"],
    },
]

# Shared snippets of the gold solutions (bodies of ``solution(apis, requester)``).
LOGIN_NOTE = """
passwords = {p["account_name"]: p["password"] for p in apis.supervisor.show_account_passwords()}
profile = apis.supervisor.show_profile()
token = apis.simple_note.login(
    username=profile["email"], password=passwords["simple_note"]
)["access_token"]
notes = []
page = 0
while batch := apis.simple_note.search_notes(access_token=token, page_index=page, page_limit=20):
    notes += batch
    page += 1
"""
LOGIN_PHONE = """
passwords = {p["account_name"]: p["password"] for p in apis.supervisor.show_account_passwords()}
profile = apis.supervisor.show_profile()
phone_token = apis.phone.login(
    username=profile["phone_number"], password=passwords["phone"]
)["access_token"]
"""
NOTHING_ELSE_CHANGED = '''
    with test(
        """
        Nothing else changed in the world (logins aside).
        """
    ):
        test.case(models.changed_model_names(ignore=IGNORED), "==", set())
'''
ANSWER_TEST = '''
    with test(
        """
        The answer given to the supervisor is correct.
        """
    ):
        predicted = json.loads(models.end.supervisor.Task.all()[0].answer)
        test.answer(predicted, ground_truth_answer)
'''


@dataclass(frozen=True)
class SyntheticTask:
    """One task: what the supervisor asks, how it is scored, and a solution that passes."""

    task_id: str
    instruction: str
    difficulty: int
    required_apps: tuple[str, ...]
    solution: str
    evaluation: str
    """Body of ``evaluate(test, public_data, private_data, main_user, models, ...)``."""
    ignored_changes: tuple[str, ...]
    """Models whose changes the "nothing else changed" test tolerates (logins)."""
    answer: Any = None
    private_data: dict[str, Any] = field(default_factory=dict)


def answer_task(task_id, instruction, difficulty, apps, answer, solution, ignored):
    return SyntheticTask(
        task_id=task_id,
        instruction=instruction,
        difficulty=difficulty,
        required_apps=apps,
        solution=solution,
        evaluation=ANSWER_TEST + NOTHING_ELSE_CHANGED,
        ignored_changes=ignored,
        answer=answer,
    )


TASKS = [
    answer_task(
        "5a1ce0a_1",
        "How many of my SimpleNote notes are tagged 'recipe'?",
        1,
        ("simple_note",),
        2,
        LOGIN_NOTE
        + """
count = sum("recipe" in note["tags"] for note in notes)
apis.supervisor.complete_task(answer=count)
""",
        ("simple_note.User",),
    ),
    answer_task(
        "5a1ce0a_2",
        "What is the title of my SimpleNote note whose content mentions rye flour?",
        2,
        ("simple_note",),
        "Sourdough starter",
        LOGIN_NOTE
        + """
for note in notes:
    detail = apis.simple_note.show_note(access_token=token, note_id=note["note_id"])
    if "rye flour" in detail["content"]:
        apis.supervisor.complete_task(answer=detail["title"])
""",
        ("simple_note.User",),
    ),
    SyntheticTask(
        task_id="5a2ce0b_1",
        instruction=(
            "Create a SimpleNote note titled 'Packing list' with the content "
            "'passport, charger, socks'."
        ),
        difficulty=1,
        required_apps=("simple_note",),
        solution=LOGIN_NOTE
        + """
apis.simple_note.create_note(
    access_token=token, title="Packing list", content="passport, charger, socks"
)
apis.supervisor.complete_task()
""",
        evaluation='''
    with test(
        """
        Exactly one note is added, owned by the supervisor, with the asked title and content.
        """
    ):
        added, updated, removed = models.changed_records("simple_note.Note")
        test.case(len(added), "==", 1)
        test.case(len(updated) + len(removed), "==", 0)
        owner = models.end.simple_note.User.by_id(added[0].user_id)
        test.case(owner.email, "==", main_user.email)
        test.case(added[0].title, "==", private_data.title, normalize_text=True)
        test.case(added[0].content, "==", private_data.content, normalize_text=True)
'''
        + NOTHING_ELSE_CHANGED,
        ignored_changes=("simple_note.User", "simple_note.Note"),
        private_data={"title": "Packing list", "content": "passport, charger, socks"},
    ),
    SyntheticTask(
        task_id="5a2ce0b_2",
        instruction="Delete my SimpleNote note titled 'Old ideas'.",
        difficulty=2,
        required_apps=("simple_note",),
        solution=LOGIN_NOTE
        + """
old = next(note for note in notes if note["title"] == "Old ideas")
apis.simple_note.delete_note(access_token=token, note_id=old["note_id"])
apis.supervisor.complete_task()
""",
        evaluation='''
    with test(
        """
        Exactly the supervisor's note titled 'Old ideas' is removed, and no note is added
        or edited.
        """
    ):
        added, updated, removed = models.changed_records("simple_note.Note")
        test.case(len(added) + len(updated), "==", 0)
        test.case([note.title for note in removed], "==", [private_data.title])
'''
        + NOTHING_ELSE_CHANGED,
        ignored_changes=("simple_note.User", "simple_note.Note"),
        private_data={"title": "Old ideas"},
    ),
    SyntheticTask(
        task_id="5a3ce0c_1",
        instruction=(
            "Add a line 'Rosa Diaz: <her phone number>' to the end of my SimpleNote note "
            "'Emergency contacts', taking her number from my Phone contacts."
        ),
        difficulty=3,
        required_apps=("phone", "simple_note"),
        solution=LOGIN_PHONE
        + LOGIN_NOTE
        + """
rosa = apis.phone.search_contacts(access_token=phone_token, query="Rosa Diaz")[0]
target = next(note for note in notes if note["title"] == "Emergency contacts")
apis.simple_note.add_content_to_note(
    access_token=token,
    note_id=target["note_id"],
    append_or_prepend="append",
    added_content=f"Rosa Diaz: {rosa['phone_number']}",
)
apis.supervisor.complete_task()
""",
        evaluation='''
    with test(
        """
        The 'Emergency contacts' note now ends with Rosa Diaz's phone number, and no
        other note is touched.
        """
    ):
        added, updated, removed = models.changed_records("simple_note.Note")
        test.case(len(added) + len(removed), "==", 0)
        test.case([note.title for note in updated], "==", ["Emergency contacts"])
        test.case(updated[0].content, "==", private_data.content, normalize_text=True)
'''
        + NOTHING_ELSE_CHANGED,
        ignored_changes=("simple_note.User", "simple_note.Note", "phone.User"),
        private_data={"content": "Mom: 2125550100\nRosa Diaz: 6465550199"},
    ),
    answer_task(
        "5a3ce0c_2",
        "What is the email address of my Phone contact Tom Becker?",
        2,
        ("phone",),
        "tom.becker@outlook.com",
        LOGIN_PHONE
        + """
tom = apis.phone.search_contacts(access_token=phone_token, query="Tom Becker")[0]
apis.supervisor.complete_task(answer=tom["email"])
""",
        ("phone.User",),
    ),
]

# The synthetic splits overlap; they exist so that every AppWorld split name resolves.
DATASETS = {
    "train": ["5a1ce0a", "5a2ce0b"],
    "dev": ["5a3ce0c"],
    "test_normal": ["5a1ce0a", "5a2ce0b", "5a3ce0c"],
    "test_challenge": ["5a3ce0c"],
}


def build(out_dir: Path) -> None:
    """Build the world into ``out_dir/data``, replacing any previous build; ``out_dir/STAMP``
    records the sha256 of this script, so a world built by an older builder can be told."""
    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=out_dir.parent))
    try:
        os.environ["APPWORLD_ROOT"] = str(staging)
        _build_data(staging / "data")
        (staging / STAMP).write_text(builder_digest())
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def builder_digest() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def _build_data(data: Path) -> None:
    from appworld.apps import get_all_apps
    from appworld.collections.api_docs import ApiDocCollection
    from appworld.collections.models import ModelCollection

    apps = get_all_apps()  # admin first, then the 11 apps every task loads
    docs = ApiDocCollection.build(load_apps=tuple(apps[1:]), include_response_schemas=True)
    _write_api_docs(docs, data / "api_docs" / "standard")

    base = ModelCollection.load(
        to_db_home_path=":memory:synthetic-base", load_apps=apps, create_db=True
    )
    _fill_base(base, docs)
    base.save(db_home_path=str(data / "base_dbs"), format="full", app_names=list(apps))
    for task in TASKS:
        _save_task(task, data, apps)
    datasets = data / "datasets"
    datasets.mkdir()
    for name, scenarios in DATASETS.items():
        ids = [t.task_id for s in scenarios for t in TASKS if t.task_id.startswith(s + "_")]
        (datasets / f"{name}.txt").write_text("\n".join(ids) + "\n")


def _write_api_docs(docs, directory: Path) -> None:
    directory.mkdir(parents=True)
    for app_name, api_name_to_doc in docs.items():
        # The loader pops ``canary_string`` from every entry without a default.
        entries = {name: {**doc, "canary_string": CANARY} for name, doc in api_name_to_doc.items()}
        (directory / f"{app_name}.json").write_text(json.dumps(entries, indent=1))


def _fill_base(models, docs) -> None:
    for app_name, api_name_to_doc in docs.items():
        for doc in api_name_to_doc.values():
            models.api_docs.ApiDoc.create_save(
                app_name_=app_name,
                api_name=doc["api_name"],
                path=doc["path"],
                method=doc["method"],
                description=doc["description"],
                parameters=doc["parameters"],
                response_schemas=doc["response_schemas"],
            )
    models.admin.MainUser.create_save(**SUPERVISOR, birthday=BIRTHDAY)
    supervisor = models.supervisor.Supervisor.create_save(**SUPERVISOR, birthday=BIRTHDAY)
    for app_name, password in PASSWORDS.items():
        models.supervisor.AccountPassword.create_save(
            supervisor_id=supervisor.id, account_name=app_name, password=password
        )
    maya = models.simple_note.User.create_save(
        first_name=SUPERVISOR["first_name"],
        last_name=SUPERVISOR["last_name"],
        email=SUPERVISOR["email"],
        password=PASSWORDS["simple_note"],
        verified=True,
    )
    ravi = models.simple_note.User.create_save(
        **OTHER_USER, password="ravi-pass-1234", verified=True
    )
    for owner, notes in ((maya, MAYA_NOTES), (ravi, RAVI_NOTES)):
        for title, content, tags in notes:
            models.simple_note.Note.create_save(
                user_id=owner.id, title=title, content=content, tags=tags
            )
    phone_user = models.phone.User.create_save(
        first_name=SUPERVISOR["first_name"],
        last_name=SUPERVISOR["last_name"],
        phone_number=SUPERVISOR["phone_number"],
        password=PASSWORDS["phone"],
    )
    for contact in MAYA_CONTACTS:
        models.phone.Contact.create_save(user_id=phone_user.id, **contact)


def _save_task(task: SyntheticTask, data: Path, apps: list[str]) -> None:
    from appworld.apps.admin.models import MainUserMunch
    from appworld.collections.models import ModelCollection
    from appworld.common.constants import DB_VERSION
    from appworld.task import Task

    models = ModelCollection.load(
        to_db_home_path=f":memory:synthetic-{task.task_id}",
        from_db_home_path=str(data / "base_dbs"),
        load_apps=apps,
    )
    # Exactly one supervisor.Task row per task: show_active_task returns the first.
    models.supervisor.Task.create_save(supervisor_id=1, instruction=task.instruction)
    Task(
        id=task.task_id,
        instruction=task.instruction,
        supervisor=MainUserMunch(**SUPERVISOR),
        datetime=TASK_DATETIME,
        allowed_apps=apps[1:],
        db_version=DB_VERSION,
        model_collection=models,
    ).save(save_ground_truth=False, model_collection_format="changes")
    models.close()
    _write_ground_truth(task, data / "tasks" / task.task_id / "ground_truth")


def _write_ground_truth(task: SyntheticTask, directory: Path) -> None:
    directory.mkdir(parents=True)
    requirements = _requirements(task.evaluation)
    # Collateral-damage tests pass when the agent does nothing; goal tests fail then.
    test_data = [
        {"requirement": r, "label": "no_op_pass" if r.startswith("Nothing else") else "no_op_fail"}
        for r in requirements
    ]
    files = {
        "metadata.json": json.dumps(
            {
                "mode": "minimal",
                "difficulty": task.difficulty,
                "num_apps": len(task.required_apps),
                "num_solution_code_lines": len(task.solution.strip().splitlines()),
            }
        ),
        "required_apps.json": json.dumps(list(task.required_apps)),
        "answer.json": json.dumps(task.answer),
        "public_data.json": "{}",
        "private_data.json": json.dumps(task.private_data),
        "test_data.json": json.dumps(test_data, indent=1),
        "evaluation.py": _evaluation_module(task),
        "compiled_solution.py": "def solution(apis, requester):\n"
        + _indent(task.solution.strip())
        + "\n",
    }
    for name, text in files.items():
        (directory / name).write_text(text)


def _evaluation_module(task: SyntheticTask) -> str:
    return (
        "import json\n\n"
        f"IGNORED = {list(task.ignored_changes)!r}\n\n\n"
        "def evaluate(test, public_data, private_data, main_user, models, ground_truth_answer):"
        + task.evaluation.rstrip()
        + "\n"
    )


def _requirements(evaluation: str) -> list[str]:
    """The text of each ``with test(\"\"\"...\"\"\")`` block, as AppWorld normalises it."""
    parts = evaluation.split('"""')[1::2]
    return [dedent(p).strip() for p in parts]


def _indent(code: str) -> str:
    return "\n".join(("    " + line) if line else "" for line in code.splitlines())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="the world's root (APPWORLD_ROOT)")
    args = parser.parse_args(argv)
    build(args.out_dir)
    print(f"synthetic AppWorld world: {len(TASKS)} tasks in {args.out_dir / 'data'}")


if __name__ == "__main__":
    sys.exit(main())
