"""The organism's lexicon: an inventory of 519 English words, and the subset the model speaks.

``INVENTORY`` is every word the shipped speech-unit table covers (synthesised once, so the units
do not depend on the installed espeak-ng). A model's lexicon (a
:class:`~speech_interp.organism.world.World`) is the first words of each inventory category
(the v2 organism's sizes in ``LEXICON_SIZES``) plus the function words; the categories drive the
grammar (:mod:`grammar`), the knowledge (:mod:`world`) and the matched controls of the lens (a
control word is another word of the same category).
"""

from __future__ import annotations

# Function words, relation words of the knowledge clauses included (all in the inventory).
FUNCTION_WORDS = "the a and in near is saw then lives eats works holds".split()
INVENTORY_FUNCTION_WORDS = (
    "the a and in on near under with is was very not yes i saw it this that some every again "
    "then so lives by"
).split()

INVENTORY: dict[str, tuple[str, ...]] = {
    "animal": tuple(
        "cat dog horse mouse rabbit tiger lion zebra monkey donkey camel goat sheep pig cow "
        "duck goose eagle owl parrot pigeon crow swan frog toad snake lizard turtle whale "
        "dolphin shark salmon otter beaver badger fox wolf bear moose deer squirrel hamster "
        "ferret weasel panda koala kangaroo giraffe hippo rhino gorilla beetle spider bee "
        "wasp ant moth lobster crab oyster penguin falcon".split()
    ),
    "object": tuple(
        "table chair lamp clock mirror window door basket bottle bucket candle carpet "
        "blanket pillow kettle teapot spoon fork knife plate bowl cup jar box bag coat hat "
        "scarf glove boot shoe sock shirt button needle thread ribbon rope ladder hammer "
        "nail shovel rake wheel wagon bicycle boat anchor sail paddle drum flute violin "
        "guitar piano trumpet whistle bell pencil crayon paper letter envelope stamp book "
        "map compass camera radio rocket kite balloon puzzle marble feather pebble shell "
        "crystal coin key lock".split()
    ),
    "food": tuple(
        "apple banana cherry grape lemon melon orange peach pear plum bread butter cheese "
        "honey jam soup rice pasta pizza salad carrot potato tomato onion pepper pumpkin "
        "cookie cake pie muffin pancake waffle candy cereal yogurt noodle sandwich walnut "
        "almond peanut".split()
    ),
    "person": tuple(
        "teacher farmer doctor nurse baker butcher painter sailor pilot driver pirate "
        "knight king queen prince princess wizard witch giant dwarf soldier captain "
        "dancer singer drummer poet writer builder miner hunter fisher gardener tailor "
        "plumber waiter chef clown judge priest student".split()
    ),
    "place": tuple(
        "harbor meadow forest desert canyon valley island jungle swamp marsh cave cliff "
        "glacier volcano prairie orchard vineyard garden park village city castle palace "
        "tower bridge temple market library museum school church barn cottage cabin "
        "kitchen cellar attic stable pond lake river".split()
    ),
    "adjective": tuple(
        "big small tall short long wide narrow heavy light warm cold hot cool soft hard "
        "smooth rough sharp dull bright dark quiet loud fast slow young old new happy sad "
        "angry brave shy calm busy lazy clever silly kind rude proud gentle wild tame "
        "clean dirty wet dry empty full rich poor strong weak sweet sour bitter salty "
        "fresh stale round flat tiny huge funny strange pretty ugly lucky noisy sleepy "
        "hungry thirsty friendly lonely curious".split()
    ),
    "color": tuple(
        "red blue green yellow purple pink brown black white gray golden silver".split()
    ),
    "verb_t": tuple(
        "sees finds likes loves hates wants needs takes brings carries holds pushes pulls "
        "drops throws catches kicks hits paints draws builds breaks fixes cleans washes "
        "cooks bakes eats drinks buys sells hides shows opens closes fills empties follows "
        "chases watches helps visits meets greets hugs tickles feeds counts touches "
        "smells tastes hears remembers forgets picks lifts wraps ties cuts folds".split()
    ),
    "verb_i": tuple(
        "sleeps runs walks jumps swims flies sings dances laughs cries smiles waits sits "
        "stands rests plays works hums whistles shouts whispers hops crawls climbs floats "
        "sinks wanders hurries snores yawns".split()
    ),
    "adverb": tuple(
        "quickly slowly quietly loudly happily sadly gently softly carefully bravely "
        "calmly proudly lazily boldly neatly nicely warmly sweetly often rarely".split()
    ),
    "name": tuple(
        "anna ben clara david emma felix grace henry iris jack kate leo mia noah olive "
        "paul rosa sam tina victor".split()
    ),
    "number": tuple("one two three four five six seven eight nine ten eleven twelve".split()),
}

LEXICON_SIZES: dict[str, int] = {
    "animal": 24, "person": 12, "object": 12, "food": 12, "place": 16, "color": 8,
    "adjective": 12, "verb_t": 10, "verb_i": 8, "name": 8,
}  # fmt: skip


def inventory_words() -> list[str]:
    """Every word of the speech-unit table (the v1 lexicon), in its fixed order."""
    words = list(INVENTORY_FUNCTION_WORDS)
    for cat_words in INVENTORY.values():
        words += [w for w in cat_words if w not in words]
    return words
