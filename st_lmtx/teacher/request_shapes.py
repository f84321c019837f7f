"""How an endpoint teacher asks: the request shapes, and what a server tells about itself once, before the first.

- `PromptList`: many pairs in one ``/v1/completions`` request, a list of prompts (vLLM and llama.cpp's server
  take one), each the chat turn rendered by the server's own chat template: the template is rendered once with
  markers in place of the document and the label (llama.cpp's ``POST /apply-template``, or vLLM's
  ``POST /tokenize`` with the messages and ``POST /detokenize``), so every prompt is exactly what the chat
  endpoint would have built, and a pair costs the client a few string joins.
- `ChatPair`: one ``/v1/chat/completions`` request a pair, for any other server (a hosted API,
  llama-cpp-python's server).

Both ask for one answer token and its top logprobs. Where the server gives the first token ids of "yes" and "no"
(its ``/tokenize``), a ``logit_bias`` forces the answer to be one of them: the same bias on every yes and no
token leaves p(yes) = P(yes) / (P(yes) + P(no)) as it was, and no answer is unparseable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import openai

from st_lmtx.teacher.prompts import PromptTemplate, p_yes, parse_verdict

logger = logging.getLogger(__name__)

# The first tokens of the answers a yes/no question gets, with and without a leading space.
YES_WORDS = ("Yes", "yes", " Yes", " yes", "YES")
NO_WORDS = ("No", "no", " No", " no", "NO")
# A bias that makes every other token all but impossible (the OpenAI API's largest).
FORCE = 100
_DOC, _LABEL = "LMTXDOCMARK", "LMTXLABELMARK"


@dataclass(frozen=True)
class Answer:
    """One pair's answer: its text, and the answer token's (token, logprob) alternatives (None: none sent)."""

    text: str
    alternatives: list[tuple[str, float]] | None

    def judged(self) -> tuple[str, float, bool]:
        """(verdict, score, graded): p(yes) from the alternatives when they name yes or no, else 1/0."""
        verdict = parse_verdict(self.text)
        score = p_yes(self.alternatives) if self.alternatives else None
        if score is None:
            return verdict, 1.0 if verdict == "yes" else 0.0, False
        return verdict, score, True


@dataclass(frozen=True)
class ServerTraits:
    """What one server told about itself: whether pairs go as a list of prompts to ``/v1/completions``
    (``lists``), its rendered chat prompt around the fields (``template``: head, middle, tail), the first token
    ids of yes and no (empty: nothing forced) and what else its completions requests need (``extra``)."""

    lists: bool = False
    template: tuple[str, str, str] | None = None
    answer_ids: tuple[int, ...] = ()
    source: str = "chat endpoint, a pair a request"
    extra: dict[str, Any] = field(default_factory=dict)


def server_root(base_url: str) -> str:
    """The server's root, where vLLM and llama.cpp keep their own routes: the base URL without a final ``/v1``."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    path = path[: -len("/v1")] if path.endswith("/v1") else path
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def chat_messages(prompt: PromptTemplate, user: str) -> list[dict[str, str]]:
    return ([{"role": "system", "content": prompt.system}] if prompt.system else []) + [
        {"role": "user", "content": user}
    ]


def split_rendered(rendered: str) -> tuple[str, str, str] | None:
    """A chat prompt rendered with the markers, cut around them; None unless each occurs once, in order."""
    if rendered.count(_DOC) != 1 or rendered.count(_LABEL) != 1 or rendered.index(_DOC) > rendered.index(_LABEL):
        return None
    head, rest = rendered.split(_DOC)
    middle, tail = rest.split(_LABEL)
    return head, middle, tail


async def discover(client: openai.AsyncOpenAI, base_url: str, model: str, prompt: PromptTemplate) -> ServerTraits:
    """Ask the server, once, how to render its chat prompt and which tokens answer yes and no. A server that has
    none of these routes (a hosted API) is asked pair by pair on its chat endpoint, as it always could be."""
    if prompt.kind != "chat":  # a plain completion prompt: any completions endpoint takes a list of them
        return ServerTraits(lists=True, source="completions endpoint, a prompt a pair")
    root = server_root(base_url)
    head, middle, tail = prompt.pointwise_parts()
    messages = chat_messages(prompt, head + _DOC + middle + _LABEL + tail)
    for probe in (_llama_cpp, _vllm):
        try:
            traits = await probe(client, root, model, messages)
        except (openai.OpenAIError, KeyError, IndexError, TypeError, ValueError) as e:
            logger.debug("%s: %s", probe.__name__, e)
            continue
        if traits is not None:
            logger.info("Teacher endpoint: many pairs a request, the %s", traits.source)
            return traits
    try:
        ids = await _answer_ids(client, f"{root}/extras/tokenize", lambda w: {"input": w, "model": model})
    except (openai.OpenAIError, KeyError, IndexError, TypeError, ValueError):
        ids = ()
    return ServerTraits(answer_ids=ids)


async def _post(client: openai.AsyncOpenAI, url: str, body: dict) -> Any:
    return await client.post(url, cast_to=object, body=body, options={"max_retries": 1})


async def _llama_cpp(client, root: str, model: str, messages: list[dict]) -> ServerTraits | None:
    rendered = await _post(client, f"{root}/apply-template", {"messages": messages})
    template = split_rendered(rendered["prompt"])
    if template is None:
        return None
    ids = await _answer_ids(client, f"{root}/tokenize", lambda w: {"content": w, "add_special": False})
    return ServerTraits(True, template, ids, "chat template rendered by llama.cpp's /apply-template")


async def _vllm(client, root: str, model: str, messages: list[dict]) -> ServerTraits | None:
    tokens = await _post(
        client, f"{root}/tokenize", {"model": model, "messages": messages, "add_generation_prompt": True}
    )
    rendered = await _post(client, f"{root}/detokenize", {"model": model, "tokens": tokens["tokens"]})
    template = split_rendered(rendered["prompt"])
    if template is None:
        return None
    ids = await _answer_ids(
        client, f"{root}/tokenize", lambda w: {"model": model, "prompt": w, "add_special_tokens": False}
    )
    # The rendered template carries its own special tokens: the server must not add a second BOS.
    return ServerTraits(
        True, template, ids, "chat template rendered by vLLM's /tokenize", extra={"add_special_tokens": False}
    )


async def _answer_ids(client, url: str, body) -> tuple[int, ...]:
    """The first token ids of the yes and no words; empty when a yes word and a no word share one (a tokenizer
    that splits off the leading space), since forcing those would force nothing."""
    yes = {(await _post(client, url, body(w)))["tokens"][0] for w in YES_WORDS}
    no = {(await _post(client, url, body(w)))["tokens"][0] for w in NO_WORDS}
    return () if yes & no else tuple(sorted(yes | no))


@dataclass(frozen=True)
class PromptList:
    """Many pairs in one ``/v1/completions`` request, a prompt each: the chat turn the server's template renders,
    or a plain completion prompt (`PromptTemplate` of kind ``completion``)."""

    prompt: PromptTemplate
    traits: ServerTraits
    max_tokens: int = 1

    def render(self, doc: str, label: str) -> str:
        if self.traits.template is None:
            return self.prompt.render_pointwise(doc, label) + self.prompt.completion_suffix
        head, middle, tail = self.traits.template
        return head + self.prompt.truncate(doc) + middle + label + tail

    async def ask(
        self, client, model: str, texts: list[str], logprobs: int | None, temperature: float
    ) -> tuple[list[Answer], Any]:
        body: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": temperature, **self.traits.extra}
        if logprobs:
            body["logprobs"] = logprobs
        if self.traits.answer_ids:
            body["logit_bias"] = {str(i): FORCE for i in self.traits.answer_ids}
        # The generic post: the prompts go as they are, and the answer comes back as parsed JSON (the typed
        # create would walk every prompt to transform it and build a model of every choice: most of a client's
        # cost a pair).
        payload = await client.post("/completions", cast_to=object, body={"model": model, "prompt": texts, **body})
        if not isinstance(payload, dict):
            raise MalformedResponse(f"not a completion: {str(payload)[:200]!r}")
        try:
            choices = sorted(payload["choices"], key=lambda c: c.get("index", 0))
            if len(choices) != len(texts):
                raise MalformedResponse(f"{len(choices)} answers to {len(texts)} prompts")
            answers = [Answer(c.get("text") or "", _completion_alternatives(c.get("logprobs"))) for c in choices]
        except (KeyError, TypeError, AttributeError) as e:
            raise MalformedResponse(f"not a completion: {str(payload)[:200]!r}") from e
        return answers, payload.get("usage")


@dataclass(frozen=True)
class ChatPair:
    """One pair in one ``/v1/chat/completions`` request."""

    prompt: PromptTemplate
    traits: ServerTraits
    max_tokens: int = 1

    def render(self, doc: str, label: str) -> str:
        return self.prompt.render_pointwise(doc, label)

    async def ask(
        self, client, model: str, texts: list[str], logprobs: int | None, temperature: float
    ) -> tuple[list[Answer], Any]:
        (text,) = texts
        body = self.body(model, text, logprobs, temperature)
        if self.traits.answer_ids:
            body["logit_bias"] = {str(i): FORCE for i in self.traits.answer_ids}
        payload = await client.post("/chat/completions", cast_to=object, body=body)
        return [chat_answer(payload)], payload.get("usage")

    def body(self, model: str, text: str, logprobs: int | None, temperature: float) -> dict[str, Any]:
        """The request body for one pair's ``text``, as a batch request line carries it."""
        body: dict[str, Any] = {"model": model, "messages": chat_messages(self.prompt, text)}
        body.update(max_tokens=self.max_tokens, temperature=temperature)
        if logprobs:
            body.update(logprobs=True, top_logprobs=logprobs)
        return body


def chat_answer(payload: Any) -> Answer:
    """The answer of a chat completion's JSON body (from a server, or a batch job's output line)."""
    try:
        choice = payload["choices"][0]
        answer = choice["message"].get("content") or ""
        content = (choice.get("logprobs") or {}).get("content")
    except (KeyError, IndexError, TypeError, AttributeError) as e:
        raise MalformedResponse(f"not a chat completion: {str(payload)[:200]!r}") from e
    return Answer(answer, _content_alternatives(content))


class MalformedResponse(Exception):
    """The server answered 200 with something that is not a completion."""


def _content_alternatives(content: list[dict] | None) -> list[tuple[str, float]] | None:
    """The answer token's alternatives from chat-style logprobs (also llama.cpp's completions): a list of tokens,
    each with its ``top_logprobs``."""
    if not content:
        return None
    position = answer_position([t.get("token", "") for t in content])
    return [(t["token"], t["logprob"]) for t in content[position].get("top_logprobs") or []] or None


def _completion_alternatives(logprobs: dict | None) -> list[tuple[str, float]] | None:
    """The answer token's alternatives from completions logprobs: OpenAI's and vLLM's (``tokens`` and
    ``top_logprobs``, a dict a position) or llama.cpp's (``content``, as chat)."""
    if not logprobs:
        return None
    if logprobs.get("content"):
        return _content_alternatives(logprobs["content"])
    top = logprobs.get("top_logprobs")
    if not top:
        return None
    position = answer_position(logprobs.get("tokens") or [])
    return list((top[position] or {}).items()) or None


def answer_position(tokens: list[str]) -> int:
    """The first generated token that spells a word (skips "**", quotes and spaces before "Yes")."""
    for i, token in enumerate(tokens):
        if any(ch.isalnum() for ch in token):
            return i
    return 0
