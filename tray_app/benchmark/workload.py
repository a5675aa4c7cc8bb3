"""What the benchmark asks the model: a realistic avatar conversation in French, always the same.

The character is Kira, the avatar on the user's desktop: a system prompt that describes her, a few turns
of conversation and a last question. Every request is sent with a fixed seed, temperature 0 and
``min_tokens = max_tokens`` (llama_cpp.server's ``MinTokensLogitsProcessor`` forbids the end-of-sequence
token until that count): every run generates exactly the same number of tokens, whatever the model says.

Why several variants
--------------------
llama-cpp-python keeps the last conversation in its cache and only reads the part of a new prompt that
differs (« prefix-match hit »). Sending the same prompt twice would measure nothing on the second
request. Each variant therefore starts differently (the day and time Kira is told at the top of her
system prompt), so a repetition re-reads the whole conversation — that is the time to first token of an
avatar that was just started, and what ``n_batch``/``n_threads_batch`` change. (The quick workload,
``prompt_once``, times the reading on its first request only and asks the same conversation again.)

The warm-up is a short exchange (:func:`warmup_conversation`): it touches every weight once (the model
file is mapped, not read, at load time) without paying for a long prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

SEED = 42

_MOMENTS: tuple[tuple[str, str], ...] = (
    ("lundi", "matin"),
    ("mardi", "après-midi"),
    ("mercredi", "soir"),
    ("jeudi", "matin"),
    ("vendredi", "soir"),
    ("samedi", "après-midi"),
    ("dimanche", "matin"),
)

_CHARACTER = (
    "Tu es Kira, une jeune femme joyeuse et curieuse qui vit sur le bureau de l'ordinateur de "
    "l'utilisateur, sous la forme d'un petit personnage animé. Tu parles toujours en français, avec "
    "chaleur et un peu d'humour, en deux ou trois phrases courtes. Tu aimes les jeux vidéo, la cuisine "
    "et les chats. Tu ne dis jamais que tu es un programme ; si on te demande quelque chose que tu ne "
    "sais pas, tu le dis simplement et tu proposes une idée."
)

_HISTORY: tuple[tuple[str, str], ...] = (
    ("user", "Salut Kira ! Tu as bien dormi ?"),
    (
        "assistant",
        "Coucou ! Oui, j'ai rêvé que je courais après un chat sur ton écran. Et toi, tu es en forme ?",
    ),
    ("user", "Ça va, un peu fatigué. J'ai beaucoup travaillé sur mon projet hier."),
    (
        "assistant",
        "Oh, tu as bien mérité une pause alors ! Ton projet avance comme tu veux ?",
    ),
)

_QUESTIONS: tuple[str, ...] = (
    "Tu peux me donner une idée de recette simple pour ce soir ?",
    "Raconte-moi une petite histoire drôle pour me détendre.",
    "Quel jeu vidéo tu me conseilles pour jouer à deux ?",
    "Comment je peux mieux organiser ma journée de demain ?",
    "Tu connais une astuce pour mieux dormir ?",
    "Si on partait en vacances, tu irais où ?",
    "Qu'est-ce que tu ferais avec un chat qui griffe le canapé ?",
)


def warmup_conversation() -> list[dict[str, str]]:
    return [{"role": "system", "content": "Tu es Kira."}, {"role": "user", "content": "Coucou Kira !"}]


def conversation(variant: int) -> list[dict[str, str]]:
    """The messages of one variant. Deterministic; variants differ from their first line."""
    day, moment = _MOMENTS[variant % len(_MOMENTS)]
    system = f"Nous sommes {day} {moment}. {_CHARACTER}"
    messages = [{"role": "system", "content": system}]
    messages += [{"role": role, "content": text} for role, text in _HISTORY]
    messages.append({"role": "user", "content": _QUESTIONS[variant % len(_QUESTIONS)]})
    return messages


@dataclass(frozen=True)
class Workload:
    """How much is measured for one configuration (one runner process).

    ``warmup_tokens`` are generated once, unmeasured, then ``repetitions`` measured requests of exactly
    ``max_tokens`` tokens each. ``prompt_once``: the later requests ask the first conversation again, so
    the runner reuses the prompt it has just read: only the first request measures the reading (and
    the time to first token), the others only the generation — quicker, as « Optimiser rapide » needs.
    """

    repetitions: int = 3
    max_tokens: int = 64
    warmup_tokens: int = 8
    request_timeout_s: float = 180.0
    prompt_once: bool = False

    def __post_init__(self) -> None:
        if self.repetitions < 1 or self.max_tokens < 2 or self.warmup_tokens < 1:
            raise ValueError("a workload needs at least 1 repetition, 2 tokens and 1 warm-up token")
        if self.repetitions >= len(_MOMENTS):
            raise ValueError(f"at most {len(_MOMENTS) - 1} repetitions (one distinct prompt each)")

    @property
    def variants(self) -> tuple[int, ...]:
        """The conversation variant of each measured request, in order."""
        if self.prompt_once:
            return (1,) * self.repetitions
        return tuple(range(1, self.repetitions + 1))

    def reads_prompt(self, request: int) -> bool:
        """Whether measured request ``request`` (from 1) reads a new prompt (its first word is timed)."""
        return request == 1 or not self.prompt_once

    def request_fields(self, max_tokens: int | None = None, *, reuse_prompt: bool = False) -> dict[str, object]:
        """The request fields besides ``messages`` that make every run generate the same count.

        ``reuse_prompt``: no seed — our runner reads the whole prompt again for a seeded request (same seed,
        same answer); at temperature 0 the answer is the same without one.
        """
        n = self.max_tokens if max_tokens is None else max_tokens
        fields: dict[str, object] = {"max_tokens": n, "min_tokens": n, "temperature": 0.0}
        return fields if reuse_prompt else {**fields, "seed": SEED}

    def estimated_generated_tokens(self) -> int:
        return self.warmup_tokens + self.repetitions * self.max_tokens


NORMAL = Workload(repetitions=3, max_tokens=64)
QUICK = Workload(repetitions=2, max_tokens=48, prompt_once=True)
