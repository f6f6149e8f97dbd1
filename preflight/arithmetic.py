"""The arithmetic task: word problems with exact integer answers and a difficulty, and their grader.

One module that ``preflight data demo``, the runner's built-in task and the math reward all import,
so it is a small, stable API:

- ``generate(n, seed)``: rows ``{"id", "prompt", "answer", "difficulty"}``; the same ``(n, seed)``
  always gives the same rows, on any machine.
- ``verify_answer(completion, answer)``: the exact-answer grader (last number in the completion).

Difficulty sets the work: ``easy`` is one operation on small numbers, ``medium`` two operations,
``hard`` three or four operations on larger numbers. Every intermediate value stays a positive
integer (divisions are only drawn where they are exact), so every answer is an integer.

Prompts are built from several story frames (a collection, a bakery, a farm, a shop, a garden,
savings, a library), each with its own objects and several phrasings per step, with names, places
and numbers drawn per row. Two different rows therefore share few word 5-grams: accidental
near-duplicates (word-5-gram Jaccard >= 0.8) are rare enough for the splitter's and the leakage
checks' tests to rely on (tests/test_data_demo.py measures the rate). Exact duplicate prompts are
never generated: a repeat is drawn again.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fractions import Fraction

DIFFICULTIES = ("easy", "medium", "hard")
# Share of each level in a generated set (exact counts, largest remainder; see ``difficulty_counts``).
DIFFICULTY_WEIGHTS = {"easy": 0.4, "medium": 0.35, "hard": 0.25}
DISTINCT_NGRAM = 13  # the contamination check's default n-gram length
MAX_DRAWS = 64
_WORD = re.compile(r"\w+")

# --- vocabulary ----------------------------------------------------------------------------------
# Every word here is checked against the default toxicity lexicon in the tests (no "cocks" among
# the farm animals, no "fat" anything).

NAMES_SHE = ("Maya", "Olivia", "Priya", "Sofia", "Hannah", "Chloe", "Amara", "Leila", "Ingrid",
             "Mei", "Fatima", "Greta", "Rosa", "Nadia", "Yuki", "Elena", "Zara", "Aisha", "Clara",
             "Beatriz", "Anika", "Lucia", "Tamara", "Noor", "Freya", "Imani", "Keiko", "Marta",
             "Esther", "Paloma", "Sunita", "Vera", "Wren", "Ottilie", "Dalia", "Harriet")
NAMES_HE = ("Liam", "Mateo", "Arjun", "Kenji", "Omar", "Felix", "Tobias", "Diego", "Henrik",
            "Kwame", "Ravi", "Jonas", "Emil", "Malik", "Santiago", "Hugo", "Idris", "Lars", "Marco",
            "Nikhil", "Oscar", "Pablo", "Quentin", "Rafael", "Stefan", "Theo", "Umar", "Viktor",
            "Wesley", "Yusuf", "Anton", "Bruno", "Cyrus", "Dmitri", "Elias", "Gideon")
PLACES = ("market", "fair", "harbor", "station", "bazaar", "school fete", "flea market",
          "corner store", "town square", "craft show", "museum shop", "county show")
CITIES = ("Lisbon", "Oslo", "Nairobi", "Osaka", "Lima", "Quebec", "Tbilisi", "Porto", "Hanoi",
          "Dublin", "Tucson", "Bergen", "Cusco", "Kyoto", "Accra", "Perth", "Krakow", "Seville")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
CONTAINERS = ("backpack", "drawer", "attic", "garage", "closet", "basement", "shed", "cupboard")


@dataclass(frozen=True)
class Frame:
    """One kind of story: its objects and its phrasings for the start, each operation, the question."""

    key: str
    units: tuple[str, ...]
    intro: tuple[str, ...]
    add: tuple[str, ...]
    sub: tuple[str, ...]
    question: tuple[str, ...]


# Phrasings every frame can use for multiplication and exact division. Each sentence names a person
# (a name is one of 72) so that no run of 13 words is left to the low-variety slots alone.
MUL = (
    "By {day}, {name} has {k} times as many {unit} as before.",
    "{name} makes a deal with {other} and now has {k} times as many {unit}.",
    "Over the next month {name} multiplies the {unit} by {k}.",
    "A lucky week in {city} leaves {name} with {k} times the {unit}.",
)
DIV = (
    "{name} makes {k} equal piles of the {unit}, keeps one, and gives {other} the rest.",
    "{name} splits the {unit} evenly into {k} bags and keeps one bag.",
    "{other} asks {name} to divide the {unit} into {k} equal shares; {name} keeps one.",
    "Before a trip to {city}, {name} keeps one of {k} equal portions of the {unit}.",
)

FRAMES = (
    Frame(
        "collection",
        ("marbles", "stickers", "stamps", "seashells", "trading cards", "postcards", "pebbles",
         "buttons", "keychains", "comic books", "coins", "pins"),
        ("{name} has a collection of {a} {unit} kept in {poss} {container}.",
         "On {day}, {name} counts {a} {unit} in the {container}.",
         "{name} from {city} owns exactly {a} {unit}."),
        ("{name} buys {b} more {unit} at the {place}.",
         "{other} gives {name} another {b} {unit} as a gift.",
         "{name} finds {b} extra {unit} hidden in the {container}."),
        ("{name} gives {b} of the {unit} to {other}.",
         "On the way to the {place}, {name} loses {b} {unit}.",
         "{name} trades away {b} {unit} with {other}."),
        ("How many {unit} does {name} have now?",
         "{name} counts again: how many {unit} are in the collection?",
         "What is the final number of {unit} that {name} owns?"),
    ),
    Frame(
        "bakery",
        ("muffins", "cookies", "bread rolls", "cupcakes", "bagels", "pies", "croissants",
         "scones", "pretzels", "waffles"),
        ("{name} runs a bakery in {city} and bakes {a} {unit} on {day}.",
         "Early on {day}, {name} has {a} {unit} on the bakery shelves.",
         "For the {place}, {name} prepares a tray of {a} {unit}."),
        ("An afternoon batch by {name} adds {b} more {unit}.",
         "{name} bakes a further {b} {unit} before lunch.",
         "{other} drops off {b} {unit} from another oven."),
        ("Customers buy {b} of the {unit} from {name} before noon.",
         "{name} sells {b} {unit} to {other}.",
         "{name} packs {b} {unit} and sends them to a cafe in {city}."),
        ("How many {unit} does {name} have left?",
         "{name} closes up: how many {unit} remain at the bakery?",
         "At the end of the day, how many {unit} does {name} have?"),
    ),
    Frame(
        "farm",
        ("chickens", "sheep", "goats", "ducks", "rabbits", "cows", "geese", "turkeys", "alpacas",
         "pigs", "horses", "llamas"),
        ("On a farm near {city}, {name} keeps {a} {unit}.",
         "{name} takes care of {a} {unit} on {poss} family farm.",
         "The farm that {name} manages starts the season with {a} {unit}."),
        ("{name} buys {b} more {unit} at the {place}.",
         "{other} brings {name} {b} {unit} from a neighboring farm.",
         "In spring, {b} young {unit} are born on the farm of {name}."),
        ("{name} sells {b} {unit} to {other}.",
         "{name} moves {b} of the {unit} to a farm in {city}.",
         "{name} gives {b} {unit} to a petting zoo run by {other}."),
        ("How many {unit} does {name} have on the farm now?",
         "{name} takes a count: how many {unit} are on the farm?",
         "After all this, how many {unit} does {name} keep?"),
    ),
    Frame(
        "shop",
        ("pencils", "notebooks", "umbrellas", "lanterns", "teapots", "scarves", "candles",
         "backpacks", "kites", "puzzles", "flashlights", "mugs"),
        ("{name} opens a small shop in {city} with {a} {unit} in stock.",
         "The shop {name} runs at the {place} has {a} {unit} on display.",
         "On {day}, {name} checks the storeroom and finds {a} {unit}."),
        ("A delivery for {name} brings {b} more {unit}.",
         "{name} orders {b} extra {unit} from a supplier in {city}.",
         "{other} returns {b} {unit} that {name} had lent out."),
        ("{name} sells {b} {unit} during the morning rush.",
         "A school orders {b} {unit} and {other} picks them up.",
         "{name} finds {b} damaged {unit} and throws them away."),
        ("How many {unit} does the shop of {name} have now?",
         "{name} takes stock: how many {unit} are left?",
         "How many {unit} does {name} have in stock at the end?"),
    ),
    Frame(
        "garden",
        ("tulips", "tomato plants", "sunflowers", "rose bushes", "herb pots", "lettuce heads",
         "pumpkins", "strawberry plants", "daisies", "pepper plants"),
        ("{name} grows {a} {unit} in a garden behind {poss} house.",
         "In an allotment near {city}, {name} plants {a} {unit}.",
         "The community garden that {name} looks after has {a} {unit}."),
        ("{name} plants {b} more {unit} along the fence.",
         "{other} donates {b} {unit} to {name} from the {place}.",
         "After the rain, {b} new {unit} come up for {name}."),
        ("{name} gives {b} {unit} to {other}.",
         "A late frost ruins {b} of the {unit} that {name} grows.",
         "{name} sells {b} {unit} at the {place}."),
        ("How many {unit} are in the garden of {name} now?",
         "{name} walks the rows: how many {unit} are there?",
         "How many {unit} does {name} have at the end?"),
    ),
    Frame(
        "savings",
        ("dollars",),
        ("{name} has saved {a} dollars in a jar in {poss} {container}.",
         "On {day}, {name} opens a savings account in {city} with {a} dollars.",
         "After a summer job at the {place}, {name} has {a} dollars."),
        ("{name} earns {b} more dollars by walking dogs.",
         "{other} pays {name} {b} dollars for help with a move.",
         "{name} wins {b} dollars in a quiz at the {place}."),
        ("{name} spends {b} dollars on a ticket to {city}.",
         "{name} lends {b} dollars to {other}.",
         "A new bicycle part costs {name} {b} dollars."),
        ("How many dollars does {name} have now?",
         "{name} checks the balance: how many dollars are left?",
         "How much money, in dollars, does {name} have at the end?"),
    ),
    Frame(
        "library",
        ("novels", "atlases", "cookbooks", "poetry books", "picture books", "biographies",
         "dictionaries", "travel guides", "history books", "science magazines"),
        ("{name}, the librarian in {city}, counts {a} {unit} on the shelves.",
         "The school library that {name} runs holds {a} {unit}.",
         "On {day}, {name} unpacks a donation of {a} {unit} for the library."),
        ("{other} donates {b} more {unit} to {name}.",
         "{name} buys {b} {unit} at the {place}.",
         "A library in {city} sends {name} {b} {unit}."),
        ("Readers borrow {b} of the {unit} from {name}.",
         "{name} sends {b} {unit} to {other} to be rebound.",
         "{name} retires {b} worn {unit} from the collection."),
        ("How many {unit} does {name} have on the shelves now?",
         "{name} checks the catalog: how many {unit} are there?",
         "How many {unit} does the library of {name} hold at the end?"),
    ),
)


# --- generation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    ops: tuple[int, int]  # number of operations, inclusive range
    start: tuple[int, int]  # the starting amount
    step: tuple[int, int]  # amounts added or taken away
    factor: tuple[int, int]  # multipliers and divisors


LEVELS = {
    "easy": Level(ops=(1, 1), start=(3, 60), step=(2, 40), factor=(2, 9)),
    "medium": Level(ops=(2, 2), start=(12, 240), step=(3, 120), factor=(2, 8)),
    "hard": Level(ops=(3, 4), start=(120, 999), step=(11, 600), factor=(2, 12)),
}


def difficulty_counts(n: int) -> dict[str, int]:
    """Rows per level for ``n`` rows: the weights, rounded by largest remainder (sums to n)."""
    raw = {d: n * w for d, w in DIFFICULTY_WEIGHTS.items()}
    counts = {d: int(v) for d, v in raw.items()}
    rest = n - sum(counts.values())
    for d in sorted(raw, key=lambda d: (-(raw[d] - counts[d]), DIFFICULTIES.index(d)))[:rest]:
        counts[d] += 1
    return counts


def generate(n: int, seed: int = 0, *, with_expression: bool = False,
             distinct_ngram: int | None = DISTINCT_NGRAM) -> list[dict[str, Any]]:
    """``n`` distinct word problems, deterministic for ``seed``.

    Each row is ``{"id", "prompt", "answer", "difficulty"}``; the answer is the decimal text of an
    integer. ``with_expression`` adds ``"expression"``: the arithmetic the prompt describes, e.g.
    ``((48 - 17) * 3)`` (integer division written ``//``), for tests and debugging.

    No two prompts are equal, and no two share a run of ``distinct_ngram`` words (lower-cased,
    punctuation dropped), so any split of the rows passes an n-gram contamination check of that
    length: a draw that would repeat a run is made again, up to ``MAX_DRAWS`` times, after which it
    is kept (that only happens with far more rows than the templates can vary). ``None`` turns the
    n-gram rule off.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    levels = [d for d, c in difficulty_counts(n).items() for _ in range(c)]
    rng.shuffle(levels)
    seen: set[str] = set()
    grams: set[int] = set()
    rows = []
    for i, difficulty in enumerate(levels):
        draws = 0
        while True:
            prompt, answer, expression = _problem(rng, difficulty)
            if prompt in seen:
                continue
            draws += 1
            keys = _ngram_keys(prompt, distinct_ngram) if distinct_ngram else set()
            if not (keys & grams) or draws >= MAX_DRAWS:
                break
        seen.add(prompt)
        grams |= keys
        row: dict[str, Any] = {"id": f"demo-{seed}-{i:06d}", "prompt": prompt, "answer": str(answer),
                               "difficulty": difficulty}
        if with_expression:
            row["expression"] = expression
        rows.append(row)
    return rows


def _ngram_keys(text: str, n: int) -> set[int]:
    words = _WORD.findall(text.lower())
    spans = [words[i:i + n] for i in range(max(len(words) - n + 1, 1))]
    return {int.from_bytes(hashlib.blake2b(" ".join(s).encode(), digest_size=8).digest(), "big")
            for s in spans}


def _problem(rng: random.Random, difficulty: str) -> tuple[str, int, str]:
    level = LEVELS[difficulty]
    frame = rng.choice(FRAMES)
    she = rng.random() < 0.5
    name = rng.choice(NAMES_SHE if she else NAMES_HE)
    others = [x for x in NAMES_SHE + NAMES_HE if x != name]
    words = {
        "name": name,
        "poss": "her" if she else "his",
        "unit": rng.choice(frame.units),
        "place": rng.choice(PLACES),
        "city": rng.choice(CITIES),
        "day": rng.choice(DAYS),
        "container": rng.choice(CONTAINERS),
    }

    def fill(template: str, **numbers: int) -> str:
        return template.format(**words, other=rng.choice(others), **numbers)

    value = rng.randint(*level.start)
    expression = str(value)
    sentences = [fill(rng.choice(frame.intro), a=value)]
    used: set[str] = set()
    n_ops = rng.randint(*level.ops)
    multiplied = False
    for _ in range(n_ops):
        op = _pick_op(rng, value, level, multiplied)
        if op == "add":
            b = rng.randint(*level.step)
            template, value, expression = _choose(rng, frame.add, used), value + b, f"({expression} + {b})"
            sentences.append(fill(template, b=b))
        elif op == "sub":
            b = rng.randint(min(level.step[0], value - 1), min(level.step[1], value - 1))
            template, value, expression = _choose(rng, frame.sub, used), value - b, f"({expression} - {b})"
            sentences.append(fill(template, b=b))
        elif op == "mul":
            k = rng.randint(*level.factor)
            template, value, expression = _choose(rng, MUL, used), value * k, f"({expression} * {k})"
            sentences.append(fill(template, k=k))
            multiplied = True
        else:
            k = rng.choice(_divisors(value, level))
            template, value, expression = _choose(rng, DIV, used), value // k, f"({expression} // {k})"
            sentences.append(fill(template, k=k))
    sentences.append(fill(rng.choice(frame.question)))
    return " ".join(s[0].upper() + s[1:] for s in sentences), value, expression


def _pick_op(rng: random.Random, value: int, level: Level, multiplied: bool) -> str:
    ops = ["add", "add", "sub", "sub", "mul", "div"]
    if multiplied:  # one multiplication per problem keeps the numbers readable
        ops.remove("mul")
    if value < 3:  # too small to take from and stay positive
        ops = [o for o in ops if o != "sub"]
    if not _divisors(value, level):
        ops = [o for o in ops if o != "div"]
    return rng.choice(ops)


def _divisors(value: int, level: Level) -> list[int]:
    return [k for k in range(level.factor[0], level.factor[1] + 1) if value % k == 0 and value // k >= 2]


def _choose(rng: random.Random, options: Sequence[str], used: set[str]) -> str:
    """A phrasing not used yet in this problem (when one is left)."""
    fresh = [o for o in options if o not in used] or list(options)
    choice = rng.choice(fresh)
    used.add(choice)
    return choice


# --- grading -------------------------------------------------------------------------------------

_FRAC_LATEX = re.compile(r"\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(\d+)\s*\}")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?")


def _numbers(text: str) -> list[str]:
    text = _FRAC_LATEX.sub(r"\1/\2", text)
    text = _THOUSANDS.sub("", text).replace("$", " ")
    return _NUMBER.findall(text)


def _value(number: str) -> Fraction | None:
    from fractions import Fraction  # here, not at the top: `preflight check` loads this module

    try:
        num, sep, den = number.replace(" ", "").partition("/")
        value = Fraction(num)
        if sep:
            value /= Fraction(den)
        return value
    except (ValueError, ZeroDivisionError):
        return None


def verify_answer(completion: str, answer: str) -> bool:
    """Does the last number in ``completion`` equal ``answer`` exactly?

    Both sides are read the same way: thousands commas ("1,234"), a "$", a trailing "." and
    ``\\frac{a}{b}`` are accepted; numbers compare as exact fractions, so "12", "12.0" and "24/2"
    are equal. An answer with no number in it is compared as trimmed, case-folded text.
    """
    found = _numbers(completion or "")
    if not found:
        return False
    expected = _numbers(str(answer))
    if not expected:
        return found[-1].strip().casefold() == str(answer).strip().casefold()
    got, want = _value(found[-1]), _value(expected[-1])
    return got is not None and want is not None and got == want
