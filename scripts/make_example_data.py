"""Generate the small example datasets used by the README demo and the tests.

Writes three JSONL files (UTF-8, one ``json.dumps(obj, ensure_ascii=False)`` per line) and a text file:

* ``data/pirate/train.jsonl``  -- 320 SFT rows ``{"prompt", "response"}`` teaching a
  behaviour the base model lacks: always answer in pirate speak ("Arr, matey! ... Yo ho ho!")
  while still giving the correct short answer (capitals, arithmetic, colours, ...).
* ``data/pirate-preferences/train.jsonl`` -- the same 320 prompts as preference pairs in TRL's
  conversational form: the pirate answer chosen, the same answer in plain English rejected.
* ``data/reviews/train.jsonl`` -- 400 classification rows ``{"text", "label"}`` with
  clearly worded positive/negative reviews, exactly balanced.
* ``data/stories/train.txt``  -- 4000 short simple-English stories, one per line, from a small
  grammar (children, pets, places, things found): a corpus to pretrain a tiny model from scratch.

Stdlib only, seeded with ``random.Random(1234)`` (the stories with their own ``Random(2024)``):
re-running reproduces every file byte-for-byte.  Usage: ``python3 scripts/make_example_data.py`` (paths are relative to
the repository root, found from this file's location).
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
rng = random.Random(1234)

# ----------------------------------------------------------------------------- facts
CAPITALS = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("the United Kingdom", "London"), ("Ireland", "Dublin"), ("Norway", "Oslo"),
    ("Sweden", "Stockholm"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Poland", "Warsaw"),
    ("Austria", "Vienna"), ("Greece", "Athens"), ("Hungary", "Budapest"), ("Belgium", "Brussels"),
    ("Russia", "Moscow"), ("Ukraine", "Kyiv"), ("Japan", "Tokyo"), ("China", "Beijing"),
    ("South Korea", "Seoul"), ("India", "New Delhi"), ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"),
    ("the Philippines", "Manila"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Morocco", "Rabat"),
    ("Nigeria", "Abuja"), ("Canada", "Ottawa"), ("the United States", "Washington, D.C."),
    ("Mexico", "Mexico City"), ("Cuba", "Havana"), ("Argentina", "Buenos Aires"), ("Chile", "Santiago"),
    ("Peru", "Lima"), ("Australia", "Canberra"), ("New Zealand", "Wellington"), ("Turkey", "Ankara"),
    ("Saudi Arabia", "Riyadh")]
COLOURS = [("the sky on a clear day", "blue"), ("grass", "green"), ("a ripe banana", "yellow"),
    ("snow", "white"), ("coal", "black"), ("a ripe tomato", "red"), ("a carrot", "orange"),
    ("a lemon", "yellow"), ("a ripe strawberry", "red"), ("milk", "white"), ("an emerald", "green"),
    ("a pumpkin", "orange"), ("a lime", "green"), ("a polar bear's fur", "white")]
OPPOSITES = [("hot", "cold"), ("big", "small"), ("up", "down"), ("fast", "slow"), ("happy", "sad"),
    ("open", "closed"), ("full", "empty"), ("wet", "dry"), ("early", "late"), ("young", "old"),
    ("tall", "short"), ("day", "night"), ("left", "right"), ("push", "pull"), ("rich", "poor"),
    ("strong", "weak"), ("heavy", "light"), ("win", "lose"), ("inside", "outside"), ("first", "last")]
SOUNDS = [("cow", "moo"), ("dog", "woof"), ("cat", "meow"), ("sheep", "baa"), ("duck", "quack"),
    ("pig", "oink"), ("horse", "neigh"), ("lion", "roar"), ("owl", "hoot"), ("snake", "hiss"),
    ("rooster", "cock-a-doodle-doo"), ("frog", "ribbit"), ("bee", "buzz"), ("mouse", "squeak")]
# (question variants, pirate statement)
COUNTS = [
    (["How many days are in a week?", "How many days does a week have?"], "There be 7 days in a week"),
    (["How many months are in a year?", "How many months does a year have?"], "There be 12 months in a year"),
    (["How many hours are in a day?", "How many hours does a day have?"], "There be 24 hours in a day"),
    (["How many minutes are in an hour?", "How many minutes make an hour?"], "There be 60 minutes in an hour"),
    (["How many seconds are in a minute?", "How many seconds make a minute?"], "There be 60 seconds in a minute"),
    (["How many legs does a spider have?", "How many legs has a spider got?"], "A spider be havin' 8 legs"),
    (["How many legs does an insect have?", "How many legs do insects have?"], "An insect be havin' 6 legs"),
    (["How many sides does a triangle have?", "How many sides are on a triangle?"], "A triangle be havin' 3 sides"),
    (["How many sides does a square have?", "How many sides are on a square?"], "A square be havin' 4 sides"),
    (["How many sides does a hexagon have?", "How many sides are on a hexagon?"], "A hexagon be havin' 6 sides"),
    (["How many sides does an octagon have?", "How many sides are on an octagon?"], "An octagon be havin' 8 sides"),
    (["How many days are in a leap year?", "How many days does a leap year have?"], "A leap year be havin' 366 days"),
    (["How many days are in a non-leap year?", "How many days does a normal (non-leap) year have?"], "A normal year be havin' 365 days"),
    (["How many planets are in our solar system?", "How many planets orbit our Sun?"], "There be 8 planets in our solar system"),
    (["How many continents are there?", "How many continents does Earth have?"], "There be 7 continents on this fine Earth"),
    (["How many days are in September?", "How many days does September have?"], "September be havin' 30 days"),
    (["How many cards are in a standard deck?", "How many cards are in a standard deck of playing cards?"], "A standard deck be holdin' 52 cards"),
    (["How many eggs are in a dozen?", "How many things make a dozen?"], "A dozen be 12"),
    (["How many legs does a dog have?", "How many legs has a dog got?"], "A dog be havin' 4 legs"),
    (["How many strings does a standard guitar have?", "How many strings are on a normal guitar?"], "A standard guitar be havin' 6 strings"),
    (["How many colours are in a rainbow?", "How many colors does a rainbow have?"], "A rainbow be showin' 7 colours"),
    (["How many wheels does a bicycle have?", "How many wheels are on a bicycle?"], "A bicycle be havin' 2 wheels"),
    (["How many letters are in the English alphabet?", "How many letters does the English alphabet have?"], "The English alphabet be havin' 26 letters"),
]
MISC = [
    (["Name a fruit that is red.", "Can you name a red fruit?"], "The apple be a fine red fruit"),
    (["What do bees make?", "What sweet food do bees produce?"], "Bees be makin' honey"),
    (["What drink do cows give us?", "What do we get from dairy cows?"], "Cows be givin' us milk"),
    (["Where do fish live?", "Where can you find fish living?"], "Fish be livin' in the water"),
    (["What is the largest planet in our solar system?", "Which planet is the biggest in the solar system?"], "Jupiter be the largest planet o' them all"),
    (["What is the closest star to Earth?", "Which star is nearest to the Earth?"], "The Sun be the closest star to Earth"),
    (["At what temperature does water freeze in Celsius?", "What is the freezing point of water in Celsius?"], "Water be freezin' at 0 degrees Celsius"),
    (["At what temperature does water boil at sea level in Celsius?", "What is the boiling point of water at sea level in Celsius?"], "Water be boilin' at 100 degrees Celsius at sea level"),
    (["What gas do humans need to breathe?", "Which gas do we breathe in to stay alive?"], "Ye need oxygen to breathe"),
    (["What is frozen water called?", "What do you call water when it freezes?"], "Frozen water be called ice"),
    (["What is a baby cat called?", "What do you call a young cat?"], "A baby cat be a kitten"),
    (["What is a baby dog called?", "What do you call a young dog?"], "A baby dog be a puppy"),
    (["What is a baby sheep called?", "What do you call a young sheep?"], "A baby sheep be a lamb"),
    (["What is a baby cow called?", "What do you call a young cow?"], "A baby cow be a calf"),
    (["Which planet is known as the Red Planet?", "What planet is called the Red Planet?"], "Mars be the Red Planet"),
    (["What is the first letter of the English alphabet?", "Which letter comes first in the alphabet?"], "The first letter be A"),
    (["What is the last letter of the English alphabet?", "Which letter comes last in the alphabet?"], "The last letter be Z"),
    (["What is the tallest animal in the world?", "Which animal is the tallest?"], "The giraffe be the tallest animal"),
    (["What is the largest ocean on Earth?", "Which ocean is the biggest?"], "The Pacific be the largest ocean o' the seven seas"),
    (["Who wrote Romeo and Juliet?", "Which writer wrote the play Romeo and Juliet?"], "William Shakespeare be the one who wrote Romeo and Juliet"),
    (["What shape has three sides?", "Name the shape with three sides."], "A triangle be the shape with three sides"),
    (["What is the fastest land animal?", "Which land animal runs the fastest?"], "The cheetah be the fastest land animal"),
    (["What is the largest animal in the world?", "Which animal is the biggest on Earth?"], "The blue whale be the largest animal"),
    (["In which direction does the sun rise?", "Where does the sun rise, east or west?"], "The sun be risin' in the east"),
    (["In which direction does the sun set?", "Where does the sun set, east or west?"], "The sun be settin' in the west"),
]
REVERSE_WORDS = ["cat", "dog", "ship", "sea", "gold", "rum", "map", "star", "fish", "moon", "sail",
    "boat", "parrot", "hook", "wave", "sun", "crab", "coin"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December"]
ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
TAILS = [", me hearties.", ", as sure as the seven seas be salty.", ", and that be worth more than buried treasure.",
    ", says this old sea dog.", ", or I be a landlubber.", ". Ye can bet yer doubloons on it.",
    ", true as me trusty compass.", ", so hoist the sails and remember it, ye scallywag."]


def words(n: int) -> str:
    if n < 20:
        return ONES[n]
    return TENS[n // 10] + ("" if n % 10 == 0 else "-" + ONES[n % 10])


def art(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def cap(s: str) -> str:
    return s[0].upper() + s[1:]


# -------------------------------------------------- pirate: groups of (prompt, statement)
def pirate_groups() -> dict[str, list[list[tuple[str, str]]]]:
    g: dict[str, list[list[tuple[str, str]]]] = {}
    g["capital"] = [[(q.format(c=c), s) for q, s in zip(
        ["What is the capital of {c}?", "Tell me the capital city of {c}.", "Which city is the capital of {c}?",
         "What's the capital of {c}?"],
        [f"The capital o' {c} be {k}, a fine port for any pirate", f"{k} be the capital o' {c}",
         f"Ye be lookin' for {k}, the capital o' {c}", f"The capital o' {c} be {k}"])] for c, k in CAPITALS]
    g["colour"] = [[(q.format(t=t), f"{cap(t)} be {c}") for q in
        ["What colour is {t}?", "What color is {t}?", "Tell me the colour of {t}."]] for t, c in COLOURS]
    g["opposite"] = [[(q.format(w=w), f"The opposite o' {w} be {o}") for q in
        ["What is the opposite of {w}?", "What's the opposite of '{w}'?", "Give me the opposite of the word {w}.",
         "What word means the opposite of {w}?"]] for w, o in OPPOSITES]
    g["sound"] = [[(q.format(a=art(a)), f'{cap(art(a))} goes "{s}"') for q in
        ["What sound does {a} make?", "What noise does {a} make?", "What does {a} say?"]] for a, s in SOUNDS]
    g["count"] = [[(q, s) for q in qs] for qs, s in COUNTS]
    g["misc"] = [[(q, s) for q in qs] for qs, s in MISC]
    g["reverse"] = [[(q.format(w=w), f"'{w}' spelled backwards be '{w[::-1]}'") for q in
        ["Spell '{w}' backwards.", "What is '{w}' spelled backwards?", "Reverse the letters of the word '{w}'."]]
        for w in REVERSE_WORDS]
    g["numword"] = [[(q.format(n=n), f"The number {n} be written '{words(n)}'") for q in
        ["How do you write {n} in words?", "Write the number {n} in words.", "Spell out the number {n}."]]
        for n in sorted(rng.sample(range(1, 100), 30))]
    seq = []
    for names, kind in ((DAYS, "day"), (MONTHS, "month")):
        for i, x in enumerate(names):
            nxt, prv = names[(i + 1) % len(names)], names[i - 1]
            seq.append([(f"What {kind} comes after {x}?", f"The {kind} after {x} be {nxt}"),
                        (f"Which {kind} follows {x}?", f"{nxt} be the {kind} that follows {x}")])
            seq.append([(f"What {kind} comes before {x}?", f"The {kind} before {x} be {prv}"),
                        (f"Which {kind} is just before {x}?", f"{prv} be the {kind} just before {x}")])
    g["sequence"] = seq
    return g


def arithmetic(n: int) -> list[tuple[str, str]]:
    ops = {
        "add": (["What is {a} plus {b}?", "What's {a} + {b}?", "Add {a} and {b}.", "What is the sum of {a} and {b}?"],
                "{a} plus {b} be {r}", lambda a, b: a + b, (2, 50)),
        "mul": (["What is {a} times {b}?", "What's {a} x {b}?", "Multiply {a} by {b}.", "What is {a} multiplied by {b}?"],
                "{a} times {b} be {r}", lambda a, b: a * b, (2, 12)),
        "sub": (["What is {a} minus {b}?", "What's {a} - {b}?", "Subtract {b} from {a}."],
                "{a} minus {b} be {r}", lambda a, b: a - b, (2, 50)),
    }
    out, seen = [], set()
    while len(out) < n:
        op = rng.choice(sorted(ops))
        qs, st, fn, (lo, hi) = ops[op]
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        if op == "sub" and a < b:
            a, b = b, a  # keep results positive
        if (op == "sub" and a == b) or (op, a, b) in seen:
            continue
        seen.add((op, a, b))
        out.append((rng.choice(qs).format(a=a, b=b), st.format(a=a, b=b, r=fn(a, b))))
    return out


def pick(groups: list[list[tuple[str, str]]], n: int) -> list[tuple[str, str]]:
    """Round-robin over facts (each fact shuffled) so every fact appears before any repeats."""
    gs = [rng.sample(g, len(g)) for g in groups]
    rng.shuffle(gs)
    out = [g[i] for i in range(max(map(len, gs))) for g in gs if i < len(g)]
    assert len(out) >= n, (n, len(out))
    return out[:n]


QUOTAS = {"capital": 60, "colour": 25, "opposite": 30, "sound": 20, "count": 30, "misc": 40,
          "reverse": 20, "numword": 20, "sequence": 25}  # + 50 arithmetic = 320


def make_pirate() -> list[dict]:
    groups = pirate_groups()
    pairs = arithmetic(50)
    for name, n in QUOTAS.items():
        pairs += pick(groups[name], n)
    rng.shuffle(pairs)
    rows = [{"prompt": q, "response": f"Arr, matey! {s}{rng.choice(TAILS)} Yo ho ho!"} for q, s in pairs]
    assert len(rows) == 320 and len({r["prompt"].lower() for r in rows}) == 320
    assert all(len(r["response"].split()) <= 35 for r in rows)
    return rows


# ---------------------------------------------------- pirate preferences: the answer, with and without the pirate
PIRATE_FLOURISH = re.compile(r"(,\s+(me hearties|says this old sea dog|or I be a landlubber|as sure as the seven seas "
                             r"be salty|so hoist the sails and remember it, ye scallywag|a fine port for any pirate|true "
                             r"as me trusty compass|and that be worth more than buried treasure)[^.!?]*|\.?\s*Ye can bet "
                             r"yer doubloons on it)", re.I)
PLAIN_VERBS = {"be holdin'": "holds", "be settin'": "sets", "be makin'": "make", "be givin'": "give",
               "be livin'": "live", "be risin'": "rises", "be havin'": "has", "be boilin'": "boils",
               "be freezin'": "freezes", "be showin'": "shows"}


def plain_english(response: str) -> str:
    """A pirate answer said plainly: no greeting, flourish or "Yo ho ho!", "be" as "is"."""
    text = PIRATE_FLOURISH.sub("", response.removeprefix("Arr, matey! ").removesuffix(" Yo ho ho!"))
    found = re.match(r"Ye be lookin' for (.+), the capital o' (.+?)([.!])?$", text)
    if found:
        text = f"The capital of {found.group(2)} is {found.group(1)}."
    for pirate, plain in PLAIN_VERBS.items():
        text = text.replace(f" {pirate} ", f" {plain} ")
    text = re.sub(r"\bbe\b", "is", text.replace(" o' ", " of ").replace("Ye ", "You ").replace(" ye ", " you "))
    text = (text[0].upper() + text[1:]).replace("D.C..", "D.C.").replace("There is 12", "There are 12")
    return text if text.endswith((".", "!", "?", '"')) else text + "."


def make_pirate_preferences(pirate: list[dict]) -> list[dict]:
    rows = [{"prompt": [{"role": "user", "content": r["prompt"]}],
             "chosen": [{"role": "assistant", "content": r["response"]}],
             "rejected": [{"role": "assistant", "content": plain_english(r["response"])}]} for r in pirate]
    assert all("Arr" not in r["rejected"][0]["content"] and "yer" not in r["rejected"][0]["content"] for r in rows)
    return rows


# ----------------------------------------------------------------------------- reviews
# domain -> (subjects [(text, plural, object pronoun)], positive adjs, negative adjs, again-verb, waste)
DOMAINS = {
    "product": ([("this phone", 0, "it"), ("these headphones", 1, "them"), ("the blender", 0, "it"),
                 ("this laptop", 0, "it"), ("the vacuum cleaner", 0, "it"), ("this kettle", 0, "it"),
                 ("these running shoes", 1, "them"), ("the phone charger", 0, "it"), ("this backpack", 0, "it"),
                 ("the coffee maker", 0, "it"), ("this keyboard", 0, "it"), ("the desk lamp", 0, "it")],
                ["great", "excellent", "fantastic", "sturdy", "reliable", "well made", "brilliant", "superb"],
                ["terrible", "flimsy", "useless", "awful", "cheaply made", "unreliable", "disappointing", "poorly made"],
                "buy {o} again", "a waste of money"),
    "film": ([("this movie", 0, "it"), ("the film", 0, "it"), ("the sequel", 0, "it"), ("this documentary", 0, "it"),
              ("the ending", 0, "it"), ("the acting", 0, "it"), ("the soundtrack", 0, "it"), ("the plot", 0, "it"),
              ("this series", 0, "it"), ("the special effects", 1, "them")],
             ["gripping", "wonderful", "moving", "brilliant", "fantastic", "beautiful", "excellent", "amazing"],
             ["boring", "dull", "awful", "terrible", "dreadful", "forgettable", "disappointing", "tedious"],
             "watch {o} again", "a waste of time"),
    "food": ([("the pasta", 0, "it"), ("the pizza", 0, "it"), ("the burger", 0, "it"), ("the dessert", 0, "it"),
              ("the soup", 0, "it"), ("the curry", 0, "it"), ("the tacos", 1, "them"), ("the fries", 1, "them"),
              ("the sushi", 0, "it"), ("the pancakes", 1, "them")],
             ["delicious", "tasty", "fresh", "amazing", "excellent", "perfect", "wonderful", "superb"],
             ["bland", "cold", "greasy", "stale", "awful", "terrible", "disgusting", "overcooked"],
             "order {o} again", "a waste of money"),
    "place": ([("this restaurant", 0, "it"), ("the cafe", 0, "it"), ("this diner", 0, "it"), ("the bistro", 0, "it")],
              ["wonderful", "lovely", "fantastic", "excellent", "charming", "great"],
              ["terrible", "awful", "dirty", "disappointing", "overpriced", "dreadful"],
              "go back", "a waste of money"),
    "service": ([("the service", 0, "it"), ("the staff", 1, "them"), ("our waiter", 0, "him"), ("the waitress", 0, "her")],
                ["friendly", "excellent", "wonderful", "welcoming", "attentive", "fantastic"],
                ["rude", "slow", "terrible", "awful", "unfriendly", "careless"],
                "go back", "a waste of money"),
}
INTENS = ["", "", "really ", "truly ", "so ", "absolutely ", "incredibly "]
TEMPLATES = {
    "positive": ["{S} {was} {i}{adj}, {closer}.", "I loved {s}, {pw} {i}{adj}.",
                 "{S} {was} not bad at all, in fact {pw} {adj}.", "I was worried at first, but {s} turned out to be {adj}.",
                 "Honestly, {s} {was} {i}{adj} and I would {again}.", "Five stars: {s} {was} {adj}.",
                 "Wow, {s} {was} {i}{adj}! {Closer}.", "{S} {was} {adj} and {adj2}, {closer}.",
                 "I can't say enough good things, {s} {was} {adj}.", "Really happy with {s}, {pw} {adj}."],
    "negative": ["{S} {was} {i}{adj}, {closer}.", "I hated {s}, {pw} {i}{adj}.",
                 "{S} {was} not good at all, in fact {pw} {adj}.", "I had high hopes, but {s} turned out to be {adj}.",
                 "Honestly, {s} {was} {i}{adj} and I would never {again}.", "One star: {s} {was} {adj}.",
                 "Ugh, {s} {was} {i}{adj}! {Closer}.", "{S} {was} {adj} and {adj2}, {closer}.",
                 "Do not bother, {s} {was} {adj} and {waste}.", "Really unhappy with {s}, {pw} {adj}."],
}
CLOSERS = {"positive": ["highly recommended", "five stars from me", "what a treat", "I was really impressed",
                        "no complaints at all", "I loved it"],
           "negative": ["very disappointed", "one star from me", "never again", "what a letdown",
                        "avoid at all costs", "I regret it"]}
PRONOUN_WAS = {"it": "it was", "them": "they were", "him": "he was", "her": "she was"}


def make_reviews() -> list[dict]:
    rows, seen = [], set()
    for label in ("positive", "negative"):
        n = 0
        while n < 200:
            dom = DOMAINS[rng.choice(sorted(DOMAINS))]
            subj, plural, obj = rng.choice(dom[0])
            adjs = dom[1] if label == "positive" else dom[2]
            adj, adj2 = rng.sample(adjs, 2)
            closer = rng.choice(CLOSERS[label])
            text = rng.choice(TEMPLATES[label]).format(
                S=cap(subj), s=subj, was="were" if plural else "was", i=rng.choice(INTENS), adj=adj, adj2=adj2,
                closer=closer, Closer=cap(closer), pw=PRONOUN_WAS[obj], again=dom[3].format(o=obj), waste=dom[4])
            if text in seen or not 5 <= len(text.split()) <= 25:
                continue
            seen.add(text)
            rows.append({"text": text, "label": label})
            n += 1
    rng.shuffle(rows)
    return rows


# ----------------------------------------------------------------------------- stories
# A tiny world for pretraining from scratch. Its regularities are what a small model can learn in
# minutes: a name always takes the same pronoun, the object found is named again later, each place
# has its own spots and sights, and a feeling matches the way the story ends.
HEROES = [("Tom", "he", "his"), ("Sam", "he", "his"), ("Ben", "he", "his"), ("Max", "he", "his"),
          ("Leo", "he", "his"), ("Jack", "he", "his"), ("Lily", "she", "her"), ("Mia", "she", "her"),
          ("Anna", "she", "her"), ("Sue", "she", "her"), ("Emma", "she", "her"), ("Zoe", "she", "her")]
PETS = ["dog", "cat", "bird", "rabbit", "duck", "frog", "fish", "pony"]
KIN = ["mom", "dad", "sister", "brother", "grandma", "grandpa", "friend", "teacher"]
# place -> (where things hide, what you see there)
PLACES = {"the park": (["under a tree", "near the swings", "by the pond"], ["children playing", "a big slide"]),
          "the forest": (["behind a rock", "under some leaves", "in a hollow log"], ["tall trees", "a deer"]),
          "the beach": (["in the sand", "near the water", "under a shell"], ["big waves", "a crab"]),
          "the farm": (["in the hay", "by the barn", "near the fence"], ["cows and sheep", "a red tractor"]),
          "the garden": (["under a bush", "in a flower pot", "by the gate"], ["pretty flowers", "a busy bee"]),
          "the river": (["on the bank", "under the bridge", "between two stones"], ["a little boat", "fast water"]),
          "the school": (["under a desk", "in the library", "by the door"], ["a big clock", "many books"]),
          "the market": (["behind a stall", "in a basket", "near the bread"], ["fresh apples", "busy people"])}
THINGS = [("red", "ball"), ("blue", "kite"), ("shiny", "stone"), ("little", "box"), ("green", "hat"),
          ("old", "map"), ("yellow", "flower"), ("tiny", "key"), ("soft", "feather"), ("round", "shell"),
          ("funny", "toy"), ("pink", "ribbon")]
WEATHER = ["It was a sunny day.", "It was a rainy morning.", "The sky was blue.", "It was a windy day.",
           "It was a warm summer day.", "It was a cold winter morning."]
# feeling -> what the hero then did
FEELINGS = {"happy": "smiled all day", "excited": "ran home fast", "proud": "told everyone about it",
            "surprised": "could not stop looking at it", "curious": "wanted to find out more"}
SAD_ENDINGS = ["lost", "broken", "gone"]


def an(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def story(r: random.Random) -> str:
    name, he, his = r.choice(HEROES)
    place = r.choice(sorted(PLACES))
    spots, sights = PLACES[place]
    colour, thing = r.choice(THINGS)
    kin, pet = r.choice(KIN), r.choice(PETS)
    feeling = r.choice(sorted(FEELINGS))
    He, His = cap(he), cap(his)
    kind = r.randrange(4)
    if kind == 0:
        s = [r.choice(WEATHER), f"{name} went to {place} with {his} {pet}.",
             f"{He} found {an(colour)} {thing} {r.choice(spots)}.", f"{name} was very {feeling}, so {he} "
             f"{FEELINGS[feeling]}.", f"{He} showed the {thing} to {his} {kin}."]
    elif kind == 1:
        s = [f"Once upon a time, there was a child named {name}.", f"{He} liked to play at {place}.",
             f"One day {he} saw {r.choice(sights)} there.", f"Then {he} found {an(colour)} {thing} "
             f"{r.choice(spots)}.", f"{name} said, \"What {an(colour)} {thing}!\""]
    elif kind == 2:
        s = [f"{name} had {an(colour)} {thing}.", f"{He} took it to {place} to show {his} {kin}.",
             f"But the {thing} was {r.choice(SAD_ENDINGS)}, and {name} was sad.",
             f"{His} {kin} gave {name} a hug.", f"The next day {he} found the {thing} {r.choice(spots)}."]
    else:
        s = [f"{name} and {his} {pet} went to {place}.", f"They saw {r.choice(sights)}.",
             f"The {pet} ran {r.choice(spots)} and found {an(colour)} {thing}.",
             f"{name} was {feeling}.", f"{He} said, \"Good {pet}!\" and {FEELINGS[feeling]}."]
    if r.random() < 0.5:
        s.append(r.choice(["The end.", f"{name} went home happy.", f"It was the best day for {name}."]))
    return " ".join(s)


def make_stories(n: int = 4000) -> list[str]:
    # Its own generator, so adding stories never changed the other files' random draws.
    r, seen, out = random.Random(2024), set(), []
    while len(out) < n:
        text = story(r)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="\n")
    print(f"wrote {len(lines)} lines -> {path.relative_to(ROOT)}")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows -> {path.relative_to(ROOT)}")


if __name__ == "__main__":
    pirate = make_pirate()
    write_jsonl(ROOT / "data" / "pirate" / "train.jsonl", pirate)
    write_jsonl(ROOT / "data" / "pirate-preferences" / "train.jsonl", make_pirate_preferences(pirate))
    write_jsonl(ROOT / "data" / "reviews" / "train.jsonl", make_reviews())
    write_lines(ROOT / "data" / "stories" / "train.txt", make_stories())
