"""SGCD's sibling credit reference: an external LLM contrasts a mixed group's siblings.

The prompt is the paper's Table 5 template; when the siblings do not fit the character
budget, the long-context fallback of App. B picks which ones are shown. Traces reach the
analyst only through the group's :class:`~credit.sanitizer.Sanitizer`, and its reply is
sanitized again before it becomes teacher context.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agents.chat import complete_many
from agents.episode import Episode, EpisodeGroup
from credit.sanitizer import Sanitizer
from envs.users import ChatBackend

# Table 5: Role, Input, Rules and Output blocks (the Use block is sgcd.py's job).
ROLE = (
    "You are a training-time credit analyst. Given one task and several policy-generated "
    "sibling rollouts with verifier outcomes, write a concise stepwise credit reference."
)
INPUT = (
    "Input: the task instruction; the visible tool/API traces and observations of each "
    "sibling; each sibling's success/failure outcome; sanitized metadata needed to align "
    "steps (sibling and step numbers; masked values appear as placeholders such as "
    "[PAYMENT_1], the same placeholder wherever the same value recurs)."
)
RULES = (
    "Rules: Use only information present in the visible traces. Do not quote hidden "
    "labels, evaluator reports, credentials, or final answer literals. Prefer abstract "
    "state checks and action choices over copying task-specific values."
)
OUTPUT = (
    "Output: (1) state checks that successful siblings establish; (2) reusable successful "
    "action branches; (3) failed branches and why they appear wrong; (4) likely deviation "
    "points where failures depart from successful evidence; (5) literals or values that "
    "should remain masked during credit scoring."
)
SYSTEM_PROMPT = "\n\n".join([ROLE, INPUT, RULES, OUTPUT])
TRUNCATION_MARK = "\n[... {omitted} characters omitted ...]\n"


@dataclass
class ReferenceConfig:
    max_prompt_chars: int = 200_000
    """Character budget of the analyst prompt (system + user message); past it the
    long-context fallback of App. B applies. The paper gives no number; 200K characters is
    ~50K tokens, within the context of current API models (toolgym choice)."""
    temperature: float | None = None
    """Analyst sampling temperature; None = the model's default, the only value Anthropic's
    current API accepts (agents/chat.py). The paper does not say."""
    seed: int | None = 0
    """Seed passed to the analyst backend, where it supports one (toolgym choice)."""
    max_concurrent_calls: int = 8
    """Analyst calls in flight at once; 8 = a step's groups in Tables 3-4 (train batch 8).
    A local transformers analyst ignores it: it decodes a step's requests in one batch."""


@dataclass
class SiblingTrace:
    index: int  # position in the group
    success: bool
    text: str  # sanitized

    def block(self, text: str | None = None) -> str:
        outcome = "success" if self.success else "failure"
        body = self.text if text is None else text
        return f"### Sibling {self.index + 1} (outcome: {outcome})\n{body}\n"


@dataclass
class Selection:
    shown: list[int]  # indices into the traces, in sibling order
    fallback: bool  # not every sibling fitted
    chars_per_trace: int | None  # set when even one matched pair had to be truncated


@dataclass
class CreditReference:
    text: str  # the analyst's reply, sanitized
    prompt_chars: int
    selection: Selection


def render_trace(episode: Episode, sanitize: Callable[[str], str]) -> str:
    """Numbered steps of the policy-visible conversation (assistant, tool, user turns).

    Only turn texts are shown: the reward, its components and the termination reason are
    evaluator output and never reach the analyst; the outcome is passed as success/failure.
    """
    return "\n".join(
        f"[step {step}] {turn.role}: {sanitize(turn.text)}"
        for step, turn in enumerate(episode.turns, start=1)
    )


def sibling_traces(group: EpisodeGroup, sanitizer: Sanitizer) -> list[SiblingTrace]:
    return [
        SiblingTrace(index=i, success=e.success, text=render_trace(e, sanitizer))
        for i, e in enumerate(group.episodes)
    ]


def select_siblings(traces: list[SiblingTrace], room: int) -> Selection:
    """App. B's long-context fallback, for sibling blocks totalling at most ``room`` chars.

    All siblings when they fit. Otherwise the smaller outcome class is shown, matched by as
    many of the other class, preferring shorter successes and longer failures. Beyond the
    paper: if that is still too long, matched pairs are dropped (least preferred first)
    down to one success and one failure, which are then cut to a common cap that fits.
    """
    sizes = {t.index: len(t.block()) for t in traces}
    if sum(sizes.values()) <= room:
        return Selection(shown=[t.index for t in traces], fallback=False, chars_per_trace=None)
    wins = sorted((t for t in traces if t.success), key=lambda t: sizes[t.index])
    losses = sorted((t for t in traces if not t.success), key=lambda t: -sizes[t.index])
    pairs = min(len(wins), len(losses))
    if pairs == 0:
        raise ValueError("a credit reference needs a mixed group (a success and a failure)")

    def chosen(k: int) -> list[int]:
        return sorted(t.index for t in wins[:k] + losses[:k])

    while pairs > 1 and sum(sizes[i] for i in chosen(pairs)) > room:
        pairs -= 1
    shown = chosen(pairs)
    fits = sum(sizes[i] for i in shown) <= room
    cap = None if fits else _fair_cap([sizes[i] for i in shown], room)
    return Selection(shown=shown, fallback=True, chars_per_trace=cap)


def _fair_cap(sizes: list[int], room: int) -> int:
    """The largest cap with ``sum(min(size, cap)) <= room``: short blocks stay whole."""
    remaining = room
    for done, size in enumerate(sorted(sizes)):
        share = remaining // (len(sizes) - done)
        if size > share:
            return share
        remaining -= size
    return remaining


def truncate_middle(text: str, chars: int) -> str:
    """Keep the head and tail of ``text`` within ``chars``, marking the cut."""
    if len(text) <= chars:
        return text
    mark = TRUNCATION_MARK.format(omitted=len(text))  # an upper bound, fixed below
    keep = max(chars - len(mark), 0)
    mark = TRUNCATION_MARK.format(omitted=len(text) - keep)
    return text[: keep - keep // 2] + mark + text[len(text) - keep // 2 :]


def reference_messages(
    instruction: str, traces: list[SiblingTrace], config: ReferenceConfig
) -> tuple[list[dict[str, str]], Selection]:
    """The analyst's chat messages for a sanitized instruction and sanitized traces."""
    header = f"Task instruction:\n{instruction}\n\n"
    room = config.max_prompt_chars - len(SYSTEM_PROMPT) - len(header) - len(_counts(traces, []))
    if room <= 0:
        raise ValueError(
            f"reference.max_prompt_chars={config.max_prompt_chars} leaves no room for "
            "siblings after the system prompt and task instruction; raise it"
        )
    selection = select_siblings(traces, room)
    by_index = {t.index: t for t in traces}
    blocks = []
    for i in selection.shown:
        trace = by_index[i]
        if selection.chars_per_trace is None:
            blocks.append(trace.block())
        else:
            overhead = len(trace.block(""))
            text = truncate_middle(trace.text, max(selection.chars_per_trace - overhead, 0))
            blocks.append(trace.block(text))
    user = header + _counts(traces, selection.shown) + "".join(blocks)
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
    return messages, selection


def reference_request(
    group: EpisodeGroup, instruction: str, sanitizer: Sanitizer, config: ReferenceConfig
) -> tuple[list[dict[str, str]], Selection]:
    """The analyst's messages for one mixed group: its instruction and traces sanitized."""
    return reference_messages(sanitizer(instruction), sibling_traces(group, sanitizer), config)


def _counts(traces: list[SiblingTrace], shown: list[int]) -> str:
    # Digits are padded to the group size so the budget computed before selection holds.
    width = len(str(len(traces)))
    return f"Sibling rollouts ({len(shown):>{width}} of {len(traces)} shown):\n\n"


def write_references(
    requests: list[tuple[EpisodeGroup, str, Sanitizer]],
    analyst: ChatBackend,
    config: ReferenceConfig,
) -> list[CreditReference | None]:
    """Ask the analyst for the stepwise credit reference of each mixed group
    ``(group, instruction, sanitizer)``, all at once (:func:`agents.chat.complete_many`);
    ``None`` where the analyst failed."""
    prompts = [reference_request(*request, config) for request in requests]
    replies = complete_many(
        analyst,
        [messages for messages, _ in prompts],
        temperature=config.temperature,
        seed=config.seed,
        max_concurrent=config.max_concurrent_calls,
    )
    return [
        None
        if reply is None
        else CreditReference(
            text=sanitizer(reply),
            prompt_chars=sum(len(m["content"]) for m in messages),
            selection=selection,
        )
        for reply, (messages, selection), (_, _, sanitizer) in zip(
            replies, prompts, requests, strict=True
        )
    ]
