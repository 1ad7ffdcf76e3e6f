"""Do the tests bite? Each mutation breaks one piece of the science on purpose, in a copy of
the repository, and at least one of the tests named with it must then fail.

Run with ``make test-slow`` (about 10 minutes on 2 cores); the table of mutations and the
tests that catch them is in docs/TESTING.md.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    edits: tuple[tuple[str, str], ...]  # (text, replacement), each text found exactly once
    tests: tuple[str, ...]


APPENDIX_A = "tests/learners/test_appendix_a.py"
MUTATIONS = [
    Mutation(
        "SGCD trained on unweighted advantages",
        "learners/sgcd.py",
        (('    credit_method = "sgcd"', '    credit_method = "grpo"'),),
        (APPENDIX_A,),
    ),
    Mutation(
        "student logits one position off the teacher's support",
        "credit/reweight.py",
        (
            (
                "student_scores(scored.sides[j], student_logits, chunk)",
                "student_scores(scored.sides[j], student_logits.roll(1, 0), chunk)",
            ),
        ),
        ("tests/credit/test_awaiting_student.py",),
    ),
    Mutation(
        "W unbounded (no cap c)",
        "credit/weights.py",
        (("clamp(min=1.0, max=config.cap)", "clamp(min=1.0)"),),
        # the paper's γ = 1 rarely reaches c = 2 on SmolLM2's saliencies: eq. 4's own values
        ("tests/credit/test_weights.py", APPENDIX_A),
    ),
    Mutation(
        "sign of A flipped by the weighting",
        "credit/reweight.py",
        (
            (
                "return broadcast(self._values[index], self._groups[i].episodes[j])",
                "return -broadcast(self._values[index], self._groups[i].episodes[j])",
            ),
        ),
        (APPENDIX_A,),
    ),
    Mutation(
        "off-by-one between logits and labels",
        "learners/forward.py",
        (
            (
                "out.logits[b, max(start - 1, 0) : len(row) - 1]",
                "out.logits[b, max(start - 1, 0) + 1 : len(row)]",
            ),
        ),
        ("tests/learners/test_forward.py::test_shared_prefix_logprobs_equal_whole_sequences",),
    ),
    Mutation(
        "response mask includes observation tokens",
        "agents/rollout.py",
        (("state.mask += [0] * len(extra)", "state.mask += [1] * len(extra)"),),
        ("tests/agents/test_rollout.py::test_response_mask_is_exactly_the_generated_tokens",),
    ),
    Mutation(
        "SDPO alpha mirrored",
        "learners/sdpo.py",
        (
            (
                "student + torch.log(torch.tensor(1 - alpha))",
                "student + torch.log(torch.tensor(alpha))",
            ),
            (
                "teacher + torch.log(torch.tensor(alpha))]",
                "teacher + torch.log(torch.tensor(1 - alpha))]",
            ),
            (
                "return (1 - alpha) * (p_s * (student - mixture)).sum(-1) + alpha * (",
                "return alpha * (p_s * (student - mixture)).sum(-1) + (1 - alpha) * (",
            ),
        ),
        ("tests/learners/test_sdpo_divergence.py",),
    ),
    Mutation(
        "KL coefficient ignored",
        "learners/grpo_kl.py",
        (("return loss + self.config.kl_coef * kl, metrics", "return loss + kl, metrics"),),
        (
            "tests/learners/test_losses.py::test_grpo_kl_loss_and_gradient_equal_a_from_scratch_recomputation",
        ),
    ),
    Mutation(
        "reference model updated with the policy",
        "learners/training/train.py",
        (("return copy.deepcopy(model).eval().requires_grad_(False)", "return model"),),
        ("tests/learners/test_losses.py::test_the_reference_policy_is_a_frozen_copy",),
    ),
    Mutation(
        "sanitizer skips payment ids",
        "credit/sanitizer.py",
        (('(re.compile(rf"\\b(?:{prefixes})_\\d+\\b", re.IGNORECASE), PAYMENT),', ""),),
        ("tests/credit/test_sanitizer.py",),
    ),
]


def _copy_repository(target: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@pytest.mark.slow
@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_the_mutation_fails_a_test(mutation, tmp_path):
    repo = tmp_path / "repo"
    _copy_repository(repo)
    path = repo / mutation.file
    text = path.read_text()
    for old, new in mutation.edits:
        assert text.count(old) == 1, f"{mutation.file}: the mutated text is not there once"
        text = text.replace(old, new)
    path.write_text(text)
    # The copy's packages, not the editable install of ROOT (whose import finder would
    # win over the path): drop that finder, then run pytest in the copy.
    runner = (
        "import sys; "
        "sys.meta_path[:] = [f for f in sys.meta_path "
        "if not getattr(f, '__module__', '').startswith('__editable__')]; "
        "import pytest; sys.exit(pytest.main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", runner, "-q", "-x", "-p", "no:cacheprovider", *mutation.tests],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, (
        f"mutation {mutation.name!r} survived (pytest exit {result.returncode}):\n"
        + result.stdout[-2000:]
    )
