"""An in-process teacher on llama.cpp: graded p(yes) from the logits, with the shared parts of the prompt
evaluated once.

A pointwise prompt is cut in three (`PromptTemplate.pointwise_parts` rendered through the model's chat
template): the *head* before the document is the same for every pair, the *document* part (up to the label)
for every label of a document, the *suffix* (the label and the end of the turn) is the only per-pair part.

- Batched scoring: the head is evaluated once and kept in KV-cache sequence 0. Documents are
  packed a few at a time: each gets its own sequence (a metadata-only copy of sequence 0) and all their
  document parts go through one ``llama_decode``; then every label gets a sequence copied from its document's,
  and all the suffixes of the pack go through one more decode, reading each suffix's last logits. Every token
  is evaluated once where it is shared, and the per-pair work runs as large batches.
- Document memory: after a document part is evaluated, its KV cells (28 KB a token for the
  default model) are copied out and kept in RAM, up to ``memory_mb``. When the same document comes
  back with new labels (the next round's shortlist, the stop rule's dev judging) the state is copied back in
  and only the new suffixes are evaluated. In a curriculum almost every document returns every round with a
  few new labels, so the document part, most of a later round's tokens, is paid once a run. With
  ``memory_dir`` the states are also written to disk, so a run resumed in another process (after a crash, or
  in a later session) does not pay its documents again.

The verdict is the most likely next token (yes, no, or anything else: unparseable) and the score is
``P(yes) / (P(yes) + P(no))`` over the case and leading-space variants of both words, with no sampling.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from st_lmtx.errors import TeacherConfigError
from st_lmtx.files import atomic_path
from st_lmtx.teacher.base import Answered, Emit, Judgment, PendingDocument, Teacher, TeacherError, TeacherUsage
from st_lmtx.teacher.model_files import find_default_model
from st_lmtx.teacher.prompts import PromptTemplate, as_prompt

logger = logging.getLogger(__name__)

_YES = ("Yes", "yes", " Yes", " yes", "YES", " YES")
_NO = ("No", "no", " No", " no", "NO", " NO")
_ROOT = 0  # the KV-cache sequence that holds the head for the whole run


def default_memory_mb() -> float:
    """A quarter of the machine's physical RAM, at most 6 GB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError, AttributeError):  # not POSIX: a conservative default
        return 1024.0
    return min(6144.0, total / 4)


@dataclass
class _Doc:
    """A pending document cut into tokens: its document part and one suffix per label to judge."""

    item: PendingDocument
    doc_tokens: list[int]
    suffixes: list[list[int]]  # aligned with item.positions
    restored: bool = False  # its state came from the document memory

    @property
    def key(self) -> bytes:
        """What identifies the document's evaluated state (the head is fixed for the teacher's life)."""
        return hashlib.blake2b(np.asarray(self.doc_tokens, dtype=np.int32).tobytes(), digest_size=16).digest()

    @property
    def cells(self) -> int:
        return len(self.doc_tokens) + sum(len(s) for s in self.suffixes)


def _folder_bytes(folder: Path, pattern: str) -> int:
    """The size of ``folder``'s files matching ``pattern``. Other processes may share the folder (``memory_dir``):
    a file one of them removes while this one counts is not counted, rather than failing the round."""
    total = 0
    for file in folder.glob(pattern):
        try:
            total += file.stat().st_size
        except FileNotFoundError:
            pass
    return total


class LlamaCppTeacher(Teacher):
    """Judge pairs with a GGUF model loaded in this process (``pip install st-lmtx[local]``).

    Args:
        model_path: a GGUF file; default: the fetched default model (``st-lmtx fetch-model``).
        prompt: a `PromptTemplate` or a layout name (``compact``, ``reference``); default ``compact``.
        docs_per_batch: documents packed into one decode. On 2 CPU cores 1 is fastest (BENCHMARKS.md): a packed
            suffix attends over every packed document.
        memory_mb: RAM for evaluated documents' KV state, reused when a document comes back with new labels
            (0: off; default: a quarter of the machine's RAM, at most 6144). Documents are kept
            in the order they are first evaluated until the budget is spent (``usage.restored_docs`` counts the
            reuses). A 156-token document takes 4.4 MB with the default model.
        memory_dir: a folder that also keeps the remembered states on disk (one file a document, under a
            subfolder named by the model file and the prompt's head, so other models and layouts never mix),
            read back when a document is not in RAM: another process, or a later session, reuses them. At most
            ``memory_disk_mb`` are written (first come, first kept); None (default): RAM only.
        memory_disk_mb: the disk budget of ``memory_dir`` (default 16384).
        n_ctx: KV-cache cells shared by the packed documents; a pack is cut to fit.
        n_batch: tokens per ``llama_decode`` call at most.
        n_threads: CPU threads (default: all cores).
        flash_attn: llama.cpp's flash attention.
        cache, budget, show_progress_bar: see `Teacher`.

    The model is loaded on the first pair the cache cannot answer, so a run served from the cache (or from
    imported judgments) never loads it.

    Example::

        with LlamaCppTeacher(cache="teacher.sqlite") as teacher:
            result = teacher.judge(["Wheat exports rose ..."], [["Wheat", "Gold"]])
            result.judgments[0][0].score  # p(yes) for "Wheat"
    """

    backend = "llama-cpp"

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        prompt: PromptTemplate | str | None = None,
        docs_per_batch: int = 1,
        memory_mb: float | None = None,
        memory_dir: str | os.PathLike | None = None,
        memory_disk_mb: float = 16384.0,
        n_ctx: int = 4096,
        n_batch: int = 2048,
        n_threads: int | None = None,
        flash_attn: bool = False,
        **teacher_kwargs: Any,
    ) -> None:
        super().__init__(**teacher_kwargs)
        try:
            import llama_cpp  # noqa: F401
        except ImportError as e:
            raise TeacherConfigError("LlamaCppTeacher needs llama-cpp-python: pip install 'st-lmtx[local]'") from e
        path = model_path or find_default_model()
        if path is None:
            raise TeacherConfigError("no GGUF model given and the default is not fetched: run `st-lmtx fetch-model`")
        self.model_path = Path(path)
        if not self.model_path.is_file():
            raise TeacherConfigError(f"GGUF model not found: {self.model_path}")
        if docs_per_batch < 1:
            raise ValueError("docs_per_batch must be >= 1")
        if memory_mb is None:
            memory_mb = default_memory_mb()
        if not memory_mb >= 0:
            raise ValueError("memory_mb must be >= 0")
        self.prompt = as_prompt(prompt)
        if self.prompt.kind != "chat":
            raise ValueError("LlamaCppTeacher renders the model's chat template; use a chat PromptTemplate")
        self.docs_per_batch = docs_per_batch
        self.memory_bytes = int(memory_mb * 2**20)
        self._memory: dict[bytes, ctypes.Array] = {}  # document key -> its document cells' KV state
        self._memory_used = 0
        self._memory_full = False
        if not memory_disk_mb >= 0:
            raise ValueError("memory_disk_mb must be >= 0")
        self.memory_dir = Path(memory_dir) if memory_dir is not None else None
        self.memory_disk_bytes = int(memory_disk_mb * 2**20)
        self._disk_folder: Path | None = None  # memory_dir's subfolder for this model and head, once loaded
        self._disk_used: int | None = None  # bytes in it, counted on first write
        self.n_ctx = n_ctx
        self.n_batch = min(n_batch, n_ctx)
        self.n_threads = n_threads or os.cpu_count() or 1
        self.flash_attn = flash_attn
        self._model = None  # llama_cpp internals, loaded on first use
        self._ctx = None
        self._batch = None

    @property
    def model_name(self) -> str:
        return self.model_path.name

    @property
    def graded(self) -> bool:
        return True

    def config(self) -> dict[str, Any]:
        # How the work is scheduled (packing, memory) does not change the answers: not part of the namespace.
        return {**super().config(), "prompt": self.prompt.to_dict()}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "prompt": self.prompt.name}

    # ------------------------------------------------------------------ the model

    def _load(self) -> None:
        if self._model is not None:
            return
        import llama_cpp
        from llama_cpp._internals import LlamaBatch, LlamaContext

        self._load_vocabulary()
        self._yes_ids = self._first_token_ids(_YES)
        self._no_ids = self._first_token_ids(_NO)
        self._scratch = self._n_seq - 1
        ctx_params = llama_cpp.llama_context_default_params()
        ctx_params.n_ctx = self.n_ctx
        ctx_params.n_batch = self.n_batch
        ctx_params.n_ubatch = min(512, self.n_batch)
        ctx_params.n_threads = ctx_params.n_threads_batch = self.n_threads
        ctx_params.n_seq_max = self._n_seq
        ctx_params.kv_unified = True  # one cell pool, so copying a shared prefix to a sequence copies no data
        ctx_params.no_perf = True
        ctx_params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if self.flash_attn else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        self._ctx = LlamaContext(model=self._model, params=ctx_params, verbose=False)
        self._batch = LlamaBatch(n_tokens=self.n_batch, embd=0, n_seq_max=1, verbose=False)
        if self.memory_dir is not None:
            # States hold the document's cells at positions after the head, computed by this model file.
            stat = self.model_path.stat()
            ident = f"{self.model_path.name}\0{stat.st_size}\0{llama_cpp.__version__}\0".encode()
            ident += np.asarray(self._head_tokens, dtype=np.int32).tobytes()
            digest = hashlib.blake2b(ident, digest_size=8).hexdigest()
            self._disk_folder = self.memory_dir / f"{self.model_path.stem}-{digest}"

    def _load_vocabulary(self, vocab_only: bool = False) -> None:
        """The model (its vocabulary alone with ``vocab_only``), the prompt's parts and how documents are cut."""
        import llama_cpp
        from llama_cpp._internals import LlamaModel
        from llama_cpp._logger import set_verbose
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        set_verbose(False)  # llama.cpp's load and context logs, as Llama(verbose=False) does
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = vocab_only
        self._model = LlamaModel(path_model=str(self.model_path), params=params, verbose=False)
        template = self._model.metadata().get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{self.model_path.name} carries no chat template")
        self._formatter = Jinja2ChatFormatter(template=template, eos_token="", bos_token="")
        self._n_vocab = self._model.n_vocab()
        # Sequence 0 holds the head; each packed document takes one sequence and each of its labels one more.
        # The last sequence is scratch space for the document memory.
        self._n_seq = min(llama_cpp.llama_max_parallel_sequences(), 2 + self.docs_per_batch * 64)
        self._parts = self._render_parts()  # head, middle, tail: fixed for the teacher's life
        self._head_tokens = self._tokens(self._parts[0], first=True)
        self._head_ready = False

    def _first_token_ids(self, words: tuple[str, ...]) -> np.ndarray:
        ids = {self._model.tokenize(w.encode(), add_bos=False, special=False)[0] for w in words}
        return np.array(sorted(ids))

    def _tokens(self, text: str, first: bool = False) -> list[int]:
        return self._model.tokenize(text.encode("utf-8"), add_bos=first, special=True)

    def _render_parts(self) -> tuple[str, str, str]:
        """The rendered chat prompt around its fields: head (to the document), middle (document to label), tail
        (after the label: the rest of the question and of the turn, what the chat template adds included)."""
        doc_mark, label_mark = "\x00DOC\x00", "\x00LABEL\x00"
        head, middle, tail = self.prompt.pointwise_parts()
        user = head + doc_mark + middle + label_mark + tail
        messages = ([{"role": "system", "content": self.prompt.system}] if self.prompt.system else []) + [
            {"role": "user", "content": user}
        ]
        rendered = self._formatter(messages=messages).prompt
        if rendered.count(doc_mark) != 1 or rendered.count(label_mark) != 1:
            raise TeacherError("the chat template changed the prompt's fields; use a plain PromptTemplate")
        head, rest = rendered.split(doc_mark)
        middle, tail = rest.split(label_mark)
        return head, middle, tail

    def _cut(self, item: PendingDocument) -> _Doc:
        _, middle, tail = self._parts
        doc_tokens = self._tokens(self.prompt.truncate(item.doc) + middle)
        suffixes = [self._tokens(item.labels[j] + tail) for j in item.positions]
        room = self.n_ctx - len(self._head_tokens) - sum(len(s) for s in suffixes) - 1
        if room < 16:
            raise TeacherError(f"n_ctx={self.n_ctx} cannot hold one document with {len(suffixes)} labels")
        if len(doc_tokens) > room:
            # Keep the document's start and the text that leads to the label.
            keep = self._tokens(middle)
            doc_tokens = doc_tokens[: room - len(keep)] + keep
        return _Doc(item, doc_tokens, suffixes)

    # ------------------------------------------------------------------ decoding

    def _decode(self, rows: list[tuple[int, int, int, bool]]) -> list[int]:
        """Decode ``(token, position, sequence, wants_logits)`` rows in ``n_batch`` chunks; the rows' indices of
        their logits in the last chunk (callers read logits right after, so wanted rows go in one chunk)."""
        import llama_cpp

        out: list[int] = []
        for start in range(0, len(rows), self.n_batch):
            chunk = rows[start : start + self.n_batch]
            batch = self._batch.batch
            batch.n_tokens = len(chunk)
            out = []
            for i, (token, pos, seq, logits) in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = pos
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = logits
                if logits:
                    out.append(i)
            code = llama_cpp.llama_decode(self._ctx.ctx, batch)
            if code != 0:
                raise TeacherError(
                    f"llama_decode returned {code} (KV cache full? lower docs_per_batch or raise n_ctx)"
                )
        return out

    def _logits(self, i: int) -> np.ndarray:
        import llama_cpp

        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._ctx.ctx, i), shape=(self._n_vocab,))

    def _judge_documents(self, pending: list[PendingDocument], emit: Emit, run: TeacherUsage) -> None:
        self._load()
        # A document with more labels than free sequences is judged in parts (same prefix, fewer labels).
        most = self._n_seq - 3
        parts = (
            PendingDocument(item.index, item.doc, item.labels, item.positions[i : i + most])
            for item in pending
            for i in range(0, len(item.positions), most)
        )
        docs = (self._cut(item) for item in parts)
        for pack in self._packs(docs):
            self._judge_pack(pack, emit, run)

    def _packs(self, docs):
        """Group documents while the pack fits the documents, the KV cells, the sequences and the budget."""
        free = self.n_ctx - len(self._head_tokens)
        pack: list[_Doc] = []
        for doc in docs:
            group = [*pack, doc]
            cells = sum(d.cells for d in group)
            seqs = 2 + sum(1 + len(d.suffixes) for d in group)
            suffix_tokens = sum(len(s) for d in group for s in d.suffixes)
            too_big = cells > free or seqs > self._n_seq or suffix_tokens > self.n_batch
            if pack and (len(pack) >= self.docs_per_batch or too_big):
                yield pack
                pack = []
            pack.append(doc)
        if pack:
            yield pack

    def _ensure_head(self, run: TeacherUsage) -> None:
        if not self._head_ready:
            self._ctx.kv_cache_clear()
            self._decode([(t, p, _ROOT, False) for p, t in enumerate(self._head_tokens)])
            run.prompt_tokens += len(self._head_tokens)
            self._head_ready = True

    def _judge_pack(self, pack: list[_Doc], emit: Emit, run: TeacherUsage) -> None:
        # A pack is judged whole: stop before one that would overrun the budget.
        self.check_budget(run, next_pairs=sum(len(d.suffixes) for d in pack))
        self._ensure_head(run)
        n_head = len(self._head_tokens)
        mem = self._ctx
        # Documents: one sequence each, starting from the head.
        seq = _ROOT + 1
        doc_seqs, rows, fresh = [], [], []
        for doc in pack:
            if self._restore(doc, seq):
                doc.restored = True
                run.restored_docs += 1
            else:
                mem.kv_cache_seq_cp(_ROOT, seq, -1, -1)
                rows += [(t, n_head + p, seq, False) for p, t in enumerate(doc.doc_tokens)]
                fresh.append((doc, seq))
            doc_seqs.append(seq)
            seq += 1
        if rows:
            self._decode(rows)
        for doc, doc_seq in fresh:
            self._remember(doc, doc_seq)
        # Labels: one sequence each, starting from their document; every suffix of the pack in one decode.
        rows, owners = [], []
        for doc, doc_seq in zip(pack, doc_seqs):
            start = n_head + len(doc.doc_tokens)
            for n, tokens in enumerate(doc.suffixes):
                mem.kv_cache_seq_cp(doc_seq, seq, -1, -1)
                rows += [(t, start + p, seq, p == len(tokens) - 1) for p, t in enumerate(tokens)]
                owners.append((doc, n))
                seq += 1
        if len(rows) > self.n_batch:
            raise TeacherError(f"a pack's label suffixes ({len(rows)} tokens) exceed n_batch={self.n_batch}")
        try:
            indices = self._decode(rows)
            for i, (doc, n) in zip(indices, owners):
                j = doc.item.positions[n]
                tokens = doc.suffixes[n]
                # The document's tokens go on its first pair, unless its state came from memory.
                evaluated = len(tokens) + (len(doc.doc_tokens) if n == 0 and not doc.restored else 0)
                run.calls += 1
                run.prompt_tokens += evaluated
                emit([Answered(doc.item, j, self._judgment(doc.item.labels[j], self._logits(i)), evaluated)])
        finally:
            for s in range(_ROOT + 1, seq):  # drop the pack's sequences; the head stays
                mem.kv_cache_seq_rm(s, -1, -1)

    def _remember(self, doc: _Doc, seq: int) -> None:
        """Copy a freshly evaluated document's cells (without the head, which sequence 0 keeps) out of the KV
        cache, into RAM and onto disk (``memory_dir``), each within its own budget. Kept first come, first kept:
        a run judges its documents in the same order every round, and least recently used eviction would drop
        each one just before it comes back."""
        import llama_cpp

        in_ram = bool(self.memory_bytes) and not self._memory_full and doc.key not in self._memory
        path = self._state_path(doc.key)
        on_disk = path is not None and not path.exists()
        if not (in_ram or on_disk):
            return
        ctx, scratch = self._ctx.ctx, self._scratch
        self._ctx.kv_cache_seq_cp(seq, scratch, len(self._head_tokens), -1)  # metadata only: the document's cells
        try:
            size = llama_cpp.llama_state_seq_get_size(ctx, scratch)
            if in_ram and self._memory_used + size > self.memory_bytes:
                in_ram, self._memory_full = False, True  # first come, first kept: no later document is tried
                logger.info(
                    "The teacher's document memory is full (%d documents, %.0f MB): later documents are "
                    "evaluated again when they come back; raise memory_mb to keep more",
                    len(self._memory),
                    self._memory_used / 2**20,
                )
            # Checked before the copy: once the disk budget is spent, a state would be copied only to be refused.
            on_disk = on_disk and self._disk_room(path, size)
            if not (in_ram or on_disk):
                return
            state = (ctypes.c_uint8 * size)()
            if llama_cpp.llama_state_seq_get_data(ctx, state, size, scratch) == size:
                if in_ram:
                    self._memory[doc.key] = state
                    self._memory_used += size
                if on_disk:
                    self._write_state(path, state)
        finally:
            self._ctx.kv_cache_seq_rm(scratch, -1, -1)

    def _state_path(self, key: bytes) -> Path | None:
        return self._disk_folder / f"{key.hex()}.kv" if self._disk_folder is not None else None

    def _disk_room(self, path: Path, size: int) -> bool:
        """Whether a state of ``size`` bytes fits in the disk budget (``memory_disk_mb``) of ``path``'s folder."""
        if self._disk_used is None:
            self._disk_used = _folder_bytes(path.parent, "*.kv")
        return self._disk_used + size <= self.memory_disk_bytes

    def _write_state(self, path: Path, state: ctypes.Array) -> None:
        """Keep a state on disk (``memory_dir``); the caller checked the budget (`_disk_room`). A failed
        write only loses the saving: the document is evaluated again when it comes back in another process."""
        try:
            with atomic_path(path) as tmp:
                tmp.write_bytes(memoryview(state))
            self._disk_used += len(state)
        except OSError as e:
            logger.warning("could not write the document state %s (%s): kept in RAM only", path, e)

    def _read_state(self, key: bytes) -> ctypes.Array | None:
        """A state written by this or an earlier process (``memory_dir``), kept in RAM too while the budget lasts."""
        path = self._state_path(key)
        if path is None or not path.exists():
            return None
        try:
            data = path.read_bytes()
        except OSError as e:
            logger.warning("could not read the document state %s (%s): evaluating the document again", path, e)
            return None
        state = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if not self._memory_full and self._memory_used + len(state) <= self.memory_bytes:
            self._memory[key] = state
            self._memory_used += len(state)
        return state

    def _restore(self, doc: _Doc, seq: int) -> bool:
        """Give ``seq`` the head and a remembered document's cells; False if there is none or it fails to load
        (then it is forgotten and the document evaluated again)."""
        import llama_cpp

        state = self._memory.get(doc.key)
        if state is None:
            state = self._read_state(doc.key)
        if state is None:
            return False
        scratch = self._scratch
        try:
            if llama_cpp.llama_state_seq_set_data(self._ctx.ctx, state, len(state), scratch) == 0:
                logger.warning("a remembered document state did not load; evaluating the document again")
                if doc.key in self._memory:
                    self._memory_used -= len(self._memory.pop(doc.key))
                path = self._state_path(doc.key)
                if path is not None:
                    path.unlink(missing_ok=True)  # written by another llama.cpp, say: the next process writes anew
                return False
            self._ctx.kv_cache_seq_cp(_ROOT, seq, -1, -1)
            self._ctx.kv_cache_seq_cp(scratch, seq, -1, -1)
        finally:
            self._ctx.kv_cache_seq_rm(scratch, -1, -1)
        return True

    def _judgment(self, label: str, logits: np.ndarray) -> Judgment:
        top = int(np.argmax(logits))
        verdict = "yes" if top in self._yes_ids else "no" if top in self._no_ids else "unparseable"
        shift = logits.max()
        p_yes = np.exp(logits[self._yes_ids] - shift).sum()
        p_no = np.exp(logits[self._no_ids] - shift).sum()
        score = float(p_yes / (p_yes + p_no)) if p_yes + p_no > 0 else (1.0 if verdict == "yes" else 0.0)
        # llama-cpp-python returns the piece in a 32-byte buffer, NUL-padded.
        token = self._model.token_to_piece(top, special=True).rstrip(b"\x00").decode("utf-8", errors="replace")
        return Judgment(label, verdict, score, graded=True, answer=token)

    def close(self) -> None:
        self._memory.clear()
        self._memory_used, self._memory_full = 0, False
        for name in ("_batch", "_ctx", "_model"):
            part = getattr(self, name, None)
            if part is not None:
                part.close()
                setattr(self, name, None)
