"""Generated container names, docker-style `adjective_surname` (our own word lists)."""

from __future__ import annotations

import os

ADJECTIVES = (
    "agile",
    "amazing",
    "bold",
    "brave",
    "calm",
    "clever",
    "cool",
    "crisp",
    "daring",
    "eager",
    "elated",
    "epic",
    "fervent",
    "festive",
    "friendly",
    "gallant",
    "gentle",
    "happy",
    "hardy",
    "jolly",
    "keen",
    "kind",
    "lively",
    "lucid",
    "merry",
    "modest",
    "nimble",
    "noble",
    "patient",
    "plucky",
    "proud",
    "quiet",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "snappy",
    "steady",
    "sturdy",
    "sunny",
    "swift",
    "tender",
    "tidy",
    "upbeat",
    "vibrant",
    "vivid",
    "wise",
    "witty",
    "zealous",
    "zen",
)
SURNAMES = (
    "agnesi",
    "babbage",
    "bardeen",
    "bohr",
    "boole",
    "cerf",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euler",
    "faraday",
    "fermi",
    "feynman",
    "gauss",
    "goldberg",
    "hamilton",
    "hopper",
    "hypatia",
    "johnson",
    "kepler",
    "knuth",
    "lamarr",
    "lamport",
    "liskov",
    "lovelace",
    "maxwell",
    "meitner",
    "mirzakhani",
    "morse",
    "napier",
    "newton",
    "noether",
    "pascal",
    "perlman",
    "poincare",
    "ritchie",
    "shannon",
    "sinoussi",
    "stallman",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "wiles",
    "wozniak",
    "yalow",
    "yonath",
)


def generate_name(taken: set[str]) -> str:
    for attempt in range(1000):
        name = f"{_choice(ADJECTIVES)}_{_choice(SURNAMES)}"
        if attempt > 10:  # docker's trick once the plain names run short: a numeric suffix
            name += str(_choice(range(10)))
        if name not in taken:
            return name
    return f"{_choice(ADJECTIVES)}_{os.urandom(4).hex()}"


def _choice(options):
    # os.urandom, not the secrets module: that one pulls in hmac and hashlib on the run path
    return options[int.from_bytes(os.urandom(4), "little") % len(options)]
