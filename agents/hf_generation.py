"""The ``hf`` generation backend: a transformers model decoding on CPU or GPU, with each
episode's keys and values kept across its turns.

A rollout asks for one assistant message per live episode per env step, and each context
is the previous one plus a few hundred new tokens (the last message, the observation, the
next turn's header). Re-encoding it whole every turn repeats the shared prompt (~70% of a
τ³-airline episode) for every sibling and every turn. So the generator keeps, per episode
slot, the keys/values of the tokens it has already encoded, encodes only the new suffix,
and encodes a prompt shared by several new episodes once (its keys/values shared until
each episode writes its own; the part shared with the previous call's prompt, such as the
system prompt across tasks, is not encoded again). On CPU the rows' suffixes are encoded
packed one after another, each attending to its own cache where it lies (no padding, no
cache copied for the forward: a 20-task airline_mini evaluation ran 0.91x the time and
0.83x the peak memory of the right-padded layout, which a GPU keeps); then all rows of a
call decode together in one padded batch:

    row i of the batch cache: [pad .. | cached_i suffix_i] + one column per step

with the attention mask zero on pads and explicit positions, so each row computes what it
would alone. A slot's cache is dropped when :meth:`HFGenerator.release` says its episode
ended, when its stored tokens are not a prefix of its next context, and when the weights
change (:meth:`HFGenerator.sync_weights`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from agents.cpu_attention import RowPrefixes, packs_rows
from agents.episode import common_prefix, forward_batches
from agents.generation import Generated, SamplingConfig
from agents.packed_linear import pack_linear_weights

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values, each (H, L, D)

# Unwritten columns a batch cache keeps for the next decode steps. More: attention reads
# more masked columns each step; fewer: the cache is copied (the cost of one concatenating
# step) more often, once per this many steps.
SPARE_COLUMNS = 64

# Most tokens one prefill forward lays out: new tokens where rows run packed (CPU); cached
# + new where they are right-padded, their caches copied into one padded buffer: there
# 32K tokens hold a tau3-airline group of 8 at ~3.3K tokens in one forward and cost ~0.75
# GB for SmolLM2 in bf16, and unbounded, 60 evaluation rows near a 4K context copied every
# cache at once (~4 GB) beside the caches and the decode batch.
PREFILL_TOKENS = 32_768


@dataclass
class _Cached:
    ids: list[int]  # the tokens whose keys/values ``kv`` holds, in order
    kv: KV


@dataclass
class _Row:
    slot: int
    cached: _Cached
    suffix: list[int]  # context tokens not yet encoded (never empty)
    generator: torch.Generator
    out_ids: list[int]
    out_logprobs: list[float]


# a prefill forward of some rows: their (B, V) next-token logits and, per row, its keys and
# values as consecutive segments (each per layer (H, L, D); [] for an empty one)
_Encode = Callable[[list[_Row]], tuple[torch.Tensor, list[list[KV]]]]


def _sample(
    logits: torch.Tensor, rows: list[_Row], sampling: SamplingConfig
) -> tuple[list[int], list[float]]:
    """One token per row from ``(B, V)`` fp32 logits, and its sampling log-prob."""
    greedy = sampling.temperature <= 0
    logprobs = torch.log_softmax(logits if greedy else logits / sampling.temperature, dim=-1)
    if greedy:
        tokens = logprobs.argmax(-1)  # (B,)
    else:
        probs = logprobs.exp()  # (B, V)
        if sampling.top_p < 1.0:
            sorted_probs, order = probs.sort(-1, descending=True)
            # keep the smallest head whose mass reaches top_p (the first token always)
            outside = sorted_probs.cumsum(-1) - sorted_probs >= sampling.top_p
            probs = probs.scatter(-1, order, sorted_probs.masked_fill(outside, 0.0))
        tokens = torch.stack(
            [torch.multinomial(probs[b], 1, generator=r.generator)[0] for b, r in enumerate(rows)]
        )
    chosen = logprobs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return tokens.tolist(), chosen.tolist()


class HFGenerator:
    """Batched decoding with per-episode KV caches (``kv_cache=False``: every call encodes
    every context whole, as ``model.generate`` would; the baseline of ``make bench``)."""

    def __init__(self, model: torch.nn.Module, end_id: int, pad_id: int, kv_cache: bool = True):
        self.model = model
        pack_linear_weights(model)  # bf16 on CPU: decode steps' few rows run faster
        self.end_id = end_id
        self.pad_id = pad_id
        self.kv_cache = kv_cache
        self._caches: dict[int, _Cached] = {}
        self._prompt = _Cached([], [])  # the last shared prompt encoded

    @torch.no_grad()
    def sync_weights(self, learner: torch.nn.Module) -> None:
        """Copy the learner's weights into the sampling model (dtype converted): what a
        vLLM sampler gets through ``collective_rpc`` on a GPU cluster."""
        for target, source in zip(self.model.parameters(), learner.parameters(), strict=True):
            target.copy_(source)
        self._caches.clear()  # keys/values of the old weights
        self._prompt = _Cached([], [])

    def cached_prefix(self, ids: list[int]) -> tuple[int, DynamicCache | None]:
        """How many leading tokens of ``ids`` the last shared prompt's keys/values cover, and
        those keys/values as a batch-of-one cache (views: extend it, never write into it);
        ``(0, None)`` when none. Teacher scoring starts a group's prompt from it rather than
        encoding it again (credit/teacher.py); valid until the weights change."""
        n = common_prefix([self._prompt.ids, list(ids)])
        if n == 0:
            return 0, None
        layers = [(k[None, :, :n], v[None, :, :n]) for k, v in self._prompt.kv]
        return n, DynamicCache(ddp_cache_data=layers)

    def release(self, slots: list[int]) -> None:
        for slot in slots:
            self._caches.pop(slot, None)

    @torch.no_grad()
    def generate(
        self, contexts: list[list[int]], slots: list[int], sampling: SamplingConfig, seed: int
    ) -> list[Generated]:
        rows = self._rows(contexts, slots, seed)
        logits = self._prefill(rows)
        active = list(range(len(rows)))  # rows still decoding, in batch order
        for step in range(sampling.max_new_tokens):
            tokens, logprobs = _sample(logits, [rows[b] for b in active], sampling)
            for b, token, logprob in zip(active, tokens, logprobs, strict=True):
                rows[b].out_ids.append(token)
                rows[b].out_logprobs.append(logprob)
            last = step == sampling.max_new_tokens - 1
            keep = [k for k, t in enumerate(tokens) if t != self.end_id and not last]
            ended = sorted(set(range(len(active))) - set(keep))
            self._store([rows[active[k]] for k in ended], ended, consume=not keep)
            if not keep:
                break
            self._select(keep)
            active = [active[k] for k in keep]
            logits = self._decode([tokens[k] for k in keep])
        self._cache = None
        return [
            Generated(r.out_ids, r.out_logprobs, finished=r.out_ids[-1] == self.end_id)
            for r in rows
        ]

    # -- batch layout ----------------------------------------------------------------
    def _rows(self, contexts: list[list[int]], slots: list[int], seed: int) -> list[_Row]:
        """Each context as (what its slot's cache holds, the suffix still to encode)."""
        cached: dict[int, _Cached] = {}
        for slot, context in zip(slots, contexts, strict=True):
            # taken out of the store: the row owns it now, and stores its slot's anew
            hit = self._caches.pop(slot, None) if self.kv_cache else None
            if (
                hit is not None
                and len(hit.ids) < len(context)
                and context[: len(hit.ids)] == hit.ids
            ):
                cached[slot] = hit
        fresh = [c for s, c in zip(slots, contexts, strict=True) if s not in cached]
        shared = self._encode_shared(fresh) if self.kv_cache and fresh else _Cached([], [])
        rows = []
        for slot, context in zip(slots, contexts, strict=True):
            start = cached.get(slot, shared)
            generator = torch.Generator().manual_seed((seed * 1_000_003 + slot) % 2**63)
            rows.append(_Row(slot, start, context[len(start.ids) :], generator, [], []))
        return rows

    def _encode_shared(self, contexts: list[list[int]]) -> _Cached:
        """Keys/values of the prompt all ``contexts`` share (one token left to each). The
        part it has in common with the previous call's prompt (the system prompt and tools,
        across tasks and steps) is reused, not encoded again, until the weights change."""
        n = min(common_prefix(contexts), min(len(c) for c in contexts) - 1)
        if n <= 0:
            return _Cached([], [])
        ids = contexts[0][:n]
        reused = min(common_prefix([self._prompt.ids, ids]), n)
        kv = [(k[:, :reused], v[:, :reused]) for k, v in self._prompt.kv] if reused else []
        if reused < n:
            device = self._device()
            cache = DynamicCache(ddp_cache_data=[(k[None], v[None]) for k, v in kv] or None)
            self.model(
                input_ids=torch.tensor([ids[reused:]], device=device),
                position_ids=torch.arange(reused, n, device=device)[None],
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            kv = [(k[0], v[0]) for k, v in _layers(cache)]
        self._prompt = _Cached(ids, kv)
        return self._prompt

    def _prefill(self, rows: list[_Row]) -> torch.Tensor:
        """Encode every row's suffix against its cache, in forwards within the token budget,
        each row's keys/values written straight into one decode batch and its own cache let
        go once there: the batch is then the only copy of the keys/values (at 60 rows near
        a 4K context, keeping the rows' caches and an intermediate copy too tripled the
        memory, ~12 GB here). Returns ``(B, V)`` logits of each row's next token; leaves
        the batch cache and mask in ``self``."""
        device = self._device()
        lengths = [len(r.cached.ids) + len(r.suffix) for r in rows]
        width = max(lengths)
        logits: list[torch.Tensor] = [torch.empty(0)] * len(rows)
        layers: KV = []  # per layer: (B, H, width + SPARE_COLUMNS, D) keys, values
        encode, batches = self._prefill_layout(rows)
        for batch in batches:
            out, segments = encode([rows[i] for i in batch])
            if not layers:
                (k0, v0) = segments[0][-1][0]  # a row's own keys/values, first layer (H, S, D)
                shape = (len(rows), k0.shape[0], width + SPARE_COLUMNS, k0.shape[-1])
                layers = [(k0.new_zeros(shape), v0.new_zeros(shape)) for _ in segments[0][-1]]
            for k, i in enumerate(batch):
                logits[i] = out[k]
                column = width - lengths[i]  # rows right-aligned
                for segment in segments[k]:
                    if not segment:  # no cache
                        continue
                    n = segment[0][0].shape[-2]
                    for (keys, values), (k_row, v_row) in zip(layers, segment, strict=True):
                        keys[i, :, column : column + n] = k_row
                        values[i, :, column : column + n] = v_row
                    column += n
                rows[i].cached = _Cached(rows[i].cached.ids, [])
        mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, L): rows right-aligned
        for b, n in enumerate(lengths):
            mask[b, width - n :] = 1
        self._cache = DynamicCache()
        self._cache.layers = [_BufferedLayer(keys, values, width) for keys, values in layers]
        self._mask = mask.to(device)
        self._positions = torch.tensor(lengths, device=device) - 1  # (B,) each last position
        return torch.stack(logits)

    def _prefill_layout(self, rows: list[_Row]) -> tuple[_Encode, list[list[int]]]:
        """How the prefill's forwards run, and their rows: packed one after another where
        the model runs them so (CPU, agents.cpu_attention), batches filled by real tokens;
        else right-padded, rows of similar suffix lengths together (a turn's suffixes range
        from a short user reply to a long tool result: one padded batch computed ~2x the
        tokens there are)."""
        suffixes = [len(r.suffix) for r in rows]
        if packs_rows(self.model):
            return self._encode_packed, forward_batches(suffixes, PREFILL_TOKENS, packed=True)
        return self._encode_padded, _within_budget(forward_batches(suffixes), rows)

    def _encode_packed(self, rows: list[_Row]) -> tuple[torch.Tensor, list[list[KV]]]:
        """One forward of the rows' suffixes one after another, each attending to its own
        cache (agents.cpu_attention.RowPrefixes): no padding, no cache copied. Returns
        ``(B, V)`` next-token logits and per row its keys/values as segments (its cache,
        its suffix's), per layer ``(H, L, D)``."""
        lengths = [len(r.suffix) for r in rows]
        ends = list(accumulate(lengths))
        tokens = torch.tensor([[t for r in rows for t in r.suffix]])  # (1, N)
        positions = torch.cat(
            [torch.arange(len(r.cached.ids), len(r.cached.ids) + len(r.suffix)) for r in rows]
        )[None]  # (1, N)
        cache = DynamicCache()  # receives the packed tokens' keys/values
        out = self.model(
            input_ids=tokens,
            position_ids=positions,
            attention_mask=torch.ones_like(tokens),  # no padding: transformers builds no mask
            cache=cache,
            use_cache=True,
            logits_to_keep=torch.tensor(ends) - 1,
            row_prefixes=RowPrefixes(
                [[(k[None], v[None]) for k, v in r.cached.kv] for r in rows], lengths
            ),
        )
        new = _layers(cache)  # per layer (1, H, N, D)
        segments = [
            [r.cached.kv, [(k[0, :, end - n : end], v[0, :, end - n : end]) for k, v in new]]
            for r, end, n in zip(rows, ends, lengths, strict=True)
        ]
        return out.logits[0].float(), segments

    def _encode_padded(self, rows: list[_Row]) -> tuple[torch.Tensor, list[list[KV]]]:
        """One forward of the rows' suffixes after their caches, laid out as
        ``[pad .. | cached_i | pad .. | suffix_i]`` (what runs on a GPU). Returns as
        :meth:`_encode_packed` does."""
        device = self._device()
        width_c = max(len(r.cached.ids) for r in rows)
        width_s = max(len(r.suffix) for r in rows)
        batch = len(rows)
        input_ids = torch.full((batch, width_s), self.pad_id, dtype=torch.long)  # (B, S)
        mask = torch.zeros((batch, width_c + width_s), dtype=torch.long)  # (B, C+S)
        positions = torch.zeros((batch, width_s), dtype=torch.long)  # (B, S)
        for b, r in enumerate(rows):
            c, s = len(r.cached.ids), len(r.suffix)
            input_ids[b, width_s - s :] = torch.tensor(r.suffix)
            mask[b, width_c - c : width_c] = 1
            mask[b, width_c + width_s - s :] = 1
            positions[b, width_s - s :] = torch.arange(c, c + s)
        cache = DynamicCache()
        cache.layers = [
            _BufferedLayer(keys, values, width_c)
            for keys, values in _right_aligned(
                [r.cached.kv for r in rows], width_c, width_c + width_s
            )
        ] or [_BufferedLayer() for _ in range(self.model.config.num_hidden_layers)]
        out = self.model(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        kv = _layers(cache)  # per layer (B, H, C+S, D)
        segments = []
        for b, r in enumerate(rows):
            cached = slice(width_c - len(r.cached.ids), width_c)
            own = slice(width_c + width_s - len(r.suffix), width_c + width_s)
            segments.append(
                [
                    [(k[b, :, cached], v[b, :, cached]) for k, v in kv] if r.cached.ids else [],
                    [(k[b, :, own], v[b, :, own]) for k, v in kv],
                ]
            )
        return out.logits[:, -1].float(), segments

    def _decode(self, tokens: list[int]) -> torch.Tensor:
        device = self._device()
        self._mask = torch.cat([self._mask, self._mask.new_ones(len(tokens), 1)], dim=1)
        self._positions = self._positions + 1
        out = self.model(
            input_ids=torch.tensor(tokens, device=device).unsqueeze(1),
            attention_mask=self._mask,
            position_ids=self._positions.unsqueeze(1),
            cache=self._cache,
            use_cache=True,
        )
        return out.logits[:, -1].float()

    def _select(self, keep: list[int]) -> None:
        """Drop finished rows from the batch."""
        if len(keep) == self._mask.shape[0]:
            return
        index = torch.tensor(keep, device=self._mask.device)
        self._cache.batch_select_indices(index)
        self._mask = self._mask[index]
        self._positions = self._positions[index]

    def _store(self, rows: list[_Row], batch_rows: list[int], consume: bool) -> None:
        """Keep each row's keys/values (batch row ``batch_rows[i]``) for its slot's next
        turn: every token it encoded, i.e. its context and all it generated but the last
        token. ``consume``: the batch ends here, so each layer's buffer is let go once
        copied out (peak: the batch and one layer, not two batches)."""
        if not self.kv_cache:
            return
        valid = [self._mask[b].bool() for b in batch_rows]
        kv: list[KV] = [[] for _ in rows]
        layers = self._cache.layers
        for index, layer in enumerate(layers):
            for row_kv, b, columns in zip(kv, batch_rows, valid, strict=True):
                row_kv.append((layer.keys[b][:, columns], layer.values[b][:, columns]))
            if consume:
                layers[index] = None
        for row, row_kv in zip(rows, kv, strict=True):
            ids = row.cached.ids + row.suffix + row.out_ids[:-1]
            self._caches[row.slot] = _Cached(ids, row_kv)

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device


class _BufferedLayer(DynamicLayer):
    """One layer's batch keys/values in a buffer with spare columns, so a step writes its
    columns in place, and attention reads the whole buffer, the columns not yet written
    masked (transformers pads the 2D mask with zeros up to :meth:`get_mask_sizes`).
    transformers' ``DynamicLayer`` concatenates instead, copying the whole cache every
    decode step, and a view of just the written part would be copied by every matmul: at
    batch 16 x 2,600 tokens either copy took over half of a 0.5 s decode step here.
    ``keys`` and ``values`` are the written columns."""

    def __init__(self, keys: torch.Tensor | None = None, values=None, length: int = 0):
        super().__init__()
        self._length = length
        if keys is not None:  # buffers already holding ``length`` columns
            self._keys, self._values = keys, values
            self.device = keys.device
            self.is_initialized = True
            self._view()

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self._keys = key_states[:, :, :0]
        self._values = value_states[:, :, :0]
        self.is_initialized = True

    def _view(self) -> None:
        self.keys = self._keys[:, :, : self._length]
        self.values = self._values[:, :, : self._length]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self._length + key_states.shape[-2]
        width = self._width_after(key_states.shape[-2])
        if width > self._keys.shape[-2]:  # full: one copy into a buffer with spare columns
            pad = (0, 0, 0, width - self._keys.shape[-2])
            self._keys = torch.nn.functional.pad(self._keys, pad)
            self._values = torch.nn.functional.pad(self._values, pad)
        self._keys[:, :, self._length : end] = key_states
        self._values[:, :, self._length : end] = value_states
        self._length = end
        self._view()
        return self._keys, self._values

    def _width_after(self, new: int) -> int:
        """The buffer's width once ``new`` more columns are written."""
        width = self._keys.shape[-2] if self.is_initialized else 0
        end = self._length + new
        return width if end <= width else end + SPARE_COLUMNS

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self._width_after(query_length), 0

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._keys = self._keys[indices]
        self._values = self._values[indices]
        self._view()


def _within_budget(batches: list[list[int]], rows: list[_Row]) -> list[list[int]]:
    """``batches`` split so that each lays out at most ``PREFILL_TOKENS`` (rows x (longest
    cache + longest suffix)); one row at least."""
    out = []
    for batch in batches:
        width = max(len(rows[i].cached.ids) for i in batch) + max(
            len(rows[i].suffix) for i in batch
        )
        size = max(1, PREFILL_TOKENS // width)
        out.extend(batch[k : k + size] for k in range(0, len(batch), size))
    return out


def _right_aligned(rows: list[KV], width: int, capacity: int) -> KV:
    """Per layer, ``(B, H, capacity, D)`` buffers whose first ``width`` columns hold each
    row's keys/values right-aligned (a row without any: zeros, masked); [] if none has."""
    template = next((kv for kv in rows if kv), None)
    if template is None:
        return []
    out = []
    for layer, (k0, v0) in enumerate(template):
        keys = k0.new_zeros(len(rows), k0.shape[0], capacity, k0.shape[-1])
        values = v0.new_zeros(len(rows), v0.shape[0], capacity, v0.shape[-1])
        for b, kv in enumerate(rows):
            if kv:
                n = kv[layer][0].shape[-2]
                keys[b, :, width - n : width] = kv[layer][0]
                values[b, :, width - n : width] = kv[layer][1]
        out.append((keys, values))
    return out


def _layers(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]
