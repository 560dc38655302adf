"""Words for captions: per class, noun phrases, clauses and the adjectives each parameter earns.

Placeholders in the phrase templates:

* ``{A}`` an article followed by the chosen adjectives ("a high-pitched", "an");
* ``{J}`` the adjectives alone, for mass and plural nouns ("heavy", "");
* ``{ADV}`` an adverb the parameters earn ("rapidly"), or nothing.

``adjectives[tag][value]`` lists synonyms for a tag value from the class's sampler (see the
``tags`` in the event modules); ``special[(tag, value)]`` lists whole phrases that already say
that value ("a downpour"), used now and then instead of a plain adjective. Phrases are shared
by the train and held-out splits; what the held-out split never sees are the sentence frames
(:mod:`training.data.synth.captions`).
"""

from __future__ import annotations

PITCH = {"high": ["high-pitched", "high", "shrill"], "low": ["low-pitched", "low", "deep"]}
RATE = {"fast": ["rapid", "quick", "fast"], "slow": ["slow", "unhurried"]}

VOCAB: dict[str, dict] = {
    "siren": {
        "np": ["{A} siren", "{A} emergency siren", "{A} police siren", "{A} siren wailing", "{A} ambulance siren",
               "{A} fire engine siren", "the {J} wail of a siren"],
        "clause": ["{A} siren wails", "{A} police siren blares", "{A} siren sounds", "{A} emergency siren wails {ADV}",
                   "{A} siren goes off"],
        "adjectives": {"pitch": PITCH, "style": {"yelp": ["yelping", "fast warbling"], "hilo": ["two-tone", "hi-lo"],
                                                  "wail": ["wailing", "slowly rising and falling"]}},
        "adverbs": {"style": {"yelp": ["rapidly"], "wail": ["slowly"]}},
        "special": {("style", "hilo"): ["a European two-tone siren", "a nee-naw siren"]},
    },
    "dog_bark": {
        "np": ["{A} dog barking", "{A} dog barking {ADV}", "barking from {A} dog", "{A} barking dog", "{A} dog's barks"],
        "clause": ["{A} dog barks", "{A} dog barks {ADV}", "{A} dog barks several times", "{A} dog yaps"],
        "adjectives": {"size": {"small": ["small", "little"], "big": ["big", "large"]},
                       "pitch": {"high": ["high-pitched", "yappy"], "low": ["deep-voiced", "gruff"]}},
        "adverbs": {},
        "special": {("size", "big"): ["a big dog woofing", "a large hound barking"],
                    ("size", "small"): ["a small dog yapping", "a puppy yapping"]},
    },
    "bell": {
        "np": ["{A} bell ringing", "{A} bell", "{A} bell tolling", "the {J} ringing of a bell", "{A} church bell",
               "{A} bell being struck"],
        "clause": ["{A} bell rings", "{A} bell tolls {ADV}", "{A} bell is struck repeatedly", "{A} bell chimes"],
        "adjectives": {"pitch": {"high": ["high-pitched", "small", "bright"], "low": ["deep", "low", "large"]},
                       "rate": RATE},
        "adverbs": {"rate": {"fast": ["rapidly", "quickly"], "slow": ["slowly"]}},
        "special": {("pitch", "low"): ["a large church bell tolling", "a heavy bell booming"],
                    ("pitch", "high"): ["a little hand bell ringing", "a small bell tinkling"]},
    },
    "clock_tick": {
        "np": ["{A} clock ticking", "{A} ticking clock", "the {J} ticking of a clock", "{A} clock ticking {ADV}",
               "{J} clock ticks", "{A} tick-tock of a clock"],
        "clause": ["{A} clock ticks", "{A} clock ticks {ADV}", "{A} clock is ticking", "{A} wall clock ticks"],
        "adjectives": {"rate": RATE, "pitch": {"high": ["crisp", "bright"], "low": ["dull"]}},
        "adverbs": {"rate": {"fast": ["quickly", "rapidly"], "slow": ["slowly", "steadily"]}},
        "special": {("rate", "slow"): ["a slow, steady tick-tock", "a grandfather clock ticking slowly"]},
    },
    "rain": {
        "np": ["{J} rain", "{J} rain falling", "{J} rainfall", "the sound of {J} rain pattering", "{J} rain on the ground"],
        "clause": ["{J} rain falls", "{J} rain is falling {ADV}", "{J} rain patters down", "it is raining {ADV}"],
        "adjectives": {"intensity": {"heavy": ["heavy", "pouring", "torrential"], "light": ["light", "gentle", "soft"]}},
        "adverbs": {"intensity": {"heavy": ["hard", "heavily"], "light": ["lightly", "softly"]}},
        "special": {("intensity", "heavy"): ["a heavy downpour", "a rainstorm"],
                    ("intensity", "light"): ["a light drizzle", "drizzling rain"]},
    },
    "wind": {
        "np": ["{J} wind", "{J} wind blowing", "{J} gusts of wind", "{J} wind rushing", "the {J} sound of wind"],
        "clause": ["{J} wind blows", "{J} wind blows {ADV}", "{J} wind gusts", "{J} wind rushes past"],
        "adjectives": {"strength": {"strong": ["strong", "gusty", "fierce"], "gentle": ["gentle", "soft", "light"]},
                       "howl": {"howling": ["howling"]}},
        "adverbs": {"strength": {"strong": ["hard", "fiercely"], "gentle": ["softly", "gently"]}},
        "special": {("strength", "gentle"): ["a gentle breeze", "a soft breeze blowing"],
                    ("howl", "howling"): ["a howling gale", "wind howling"]},
    },
    "engine": {
        "np": ["{A} engine humming", "{A} engine running", "the {J} hum of an engine", "{A} motor running",
               "{A} engine", "{A} humming engine"],
        "clause": ["{A} engine hums", "{A} engine runs", "{A} motor drones", "{A} engine rumbles {ADV}"],
        "adjectives": {"pitch": {"high": ["high-pitched", "whining"], "low": ["low", "deep", "rumbling"]},
                       "style": {"idle": ["idling"], "rev": ["revving"], "steady": ["steady", "constant"]}},
        "adverbs": {"style": {"steady": ["steadily"], "idle": ["quietly", "steadily"]}},
        "special": {("style", "rev"): ["an engine revving up", "a motor revving"],
                    ("style", "idle"): ["an engine idling", "a car idling"]},
    },
    "footsteps": {
        "np": ["{J} footsteps", "{J} footsteps on a {SURFACE}", "the sound of {J} steps", "{J} steps on a {SURFACE}",
               "[pace!=run]someone walking", "[pace=run]someone running {ADV}"],
        "clause": ["{J} footsteps approach", "[pace!=run]someone walks {ADV}", "[pace!=run]a person walks on a {SURFACE}",
                   "{J} footsteps pass by", "[pace=run]someone runs on a {SURFACE}"],
        "adjectives": {"pace": {"fast": ["quick", "hurried"], "slow": ["slow", "measured"], "run": ["running"]},
                       "weight": {"heavy": ["heavy"], "light": ["light", "soft"]}},
        "adverbs": {"pace": {"fast": ["briskly", "quickly"], "slow": ["slowly"], "run": ["quickly"]}},
        "special": {("pace", "run"): ["someone running", "a person running on a {SURFACE}"],
                    ("surface", "gravel"): ["footsteps crunching on gravel", "someone walking on gravel"]},
        "surfaces": {"hard": ["hard floor", "concrete floor", "tiled floor"], "wood": ["wooden floor", "wooden deck"],
                     "gravel": ["gravel path", "gravel road"]},
    },
    "birds": {
        "np": ["[count=one]{A} bird chirping", "[count=several]{J} birds chirping", "{J} birdsong",
               "[count=one]{A} bird singing", "[count=several]{J} chirping birds", "[count=one]{A} bird tweeting"],
        "clause": ["[count=one]{A} bird chirps {ADV}", "[count=several]{J} birds chirp {ADV}", "[count=one]{A} bird sings",
                   "[count=one]{A} bird tweets", "[count=several]{J} birds sing"],
        "adjectives": {"pitch": {"high": ["high-pitched", "shrill"], "low": ["mellow"]}, "rate": RATE},
        "adverbs": {"rate": {"fast": ["rapidly", "busily"]}},
        "special": {("count", "several"): ["several birds chirping", "a chorus of birds"],
                    ("rate", "fast"): ["a bird trilling rapidly", "rapid bird trills"]},
    },
    "thunder": {
        "np": ["{J} thunder", "{J} thunder rumbling", "{A} clap of thunder", "{J} rumbling thunder",
               "{A} thunderclap"],
        "clause": ["{J} thunder rumbles", "{J} thunder rolls", "{J} thunder crashes", "{J} thunder booms {ADV}"],
        "adjectives": {"distance": {"distant": ["distant", "faraway"], "close": ["nearby", "close"]},
                       "intensity": {"loud": ["loud", "booming"]}},
        "adverbs": {"distance": {"distant": ["in the distance", "far away"], "close": ["overhead", "loudly"]}},
        "special": {("distance", "distant"): ["thunder rumbling far away", "a low distant rumble of thunder"],
                    ("distance", "close"): ["a sharp crack of thunder", "thunder cracking overhead"]},
        "no_loudness": True,
    },
    "knocking": {
        "np": ["{J} knocking", "{J} knocking on a {SURFACE}", "someone knocking on a {SURFACE}", "{J} knocks on a {SURFACE}",
               "[material=wood]{A} knock at the door"],
        "clause": ["someone knocks on a {SURFACE}", "someone knocks {ADV}", "a {SURFACE} is knocked on {ADV}",
                   "[material=wood]a visitor knocks at the door"],
        "adjectives": {"force": {"hard": ["hard", "loud", "forceful"], "gentle": ["gentle", "soft", "light"]}},
        "adverbs": {"force": {"hard": ["loudly", "forcefully"], "gentle": ["gently", "softly", "lightly"]}},
        "special": {("force", "hard"): ["someone banging on a {SURFACE}", "loud pounding on a {SURFACE}"],
                    ("force", "gentle"): ["gentle tapping on a {SURFACE}", "a soft tap-tap on a {SURFACE}"]},
        "surfaces": {"wood": ["wooden door", "door", "wooden table"], "metal": ["metal door", "metal gate"]},
        "surface_tag": "material",
        "no_loudness": True,
    },
    "whistle": {
        "np": ["someone whistling", "{A} whistle", "a person whistling {ADV}", "{J} whistling", "{A} whistled tune"],
        "clause": ["someone whistles", "a man whistles {ADV}", "a person whistles {ADV}", "a woman whistles",
                   "{A} whistle sounds"],
        "adjectives": {"pitch": PITCH},
        "adverbs": {"style": {"tune": ["a cheerful tune", "a melody", "a little tune"]}},
        "special": {("style", "tune"): ["someone whistling a tune", "a person whistling a melody"],
                    ("style", "glide"): ["a wolf whistle", "someone giving a wolf whistle"]},
    },
    "applause": {
        "np": ["{J} applause", "{J} clapping", "{A} audience applauding", "people clapping", "{J} hand claps",
               "{A} round of applause"],
        "clause": ["{A} crowd applauds", "people clap {ADV}", "{A} audience claps", "{A} crowd claps"],
        "adjectives": {"crowd": {"large": ["large", "big"], "small": ["small", "sparse"]},
                       "energy": {"enthusiastic": ["enthusiastic", "thunderous"]}},
        "adverbs": {"energy": {"enthusiastic": ["enthusiastically", "wildly"]}},
        "special": {("crowd", "small"): ["a few people clapping", "scattered clapping"],
                    ("crowd", "large"): ["a large crowd applauding", "a big audience clapping"]},
    },
    "dripping": {
        "np": ["{J} water dripping", "{J} dripping water", "{J} drops of water", "{A} tap dripping", "{A} dripping faucet",
               "water drops falling {ADV}"],
        "clause": ["water drips {ADV}", "{A} tap drips", "{J} water drops fall", "water is dripping {ADV}"],
        "adjectives": {"rate": RATE, "pitch": {"high": ["high", "bright"], "low": ["low", "hollow"]}},
        "adverbs": {"rate": {"fast": ["quickly", "rapidly"], "slow": ["slowly"]}},
        "special": {("rate", "slow"): ["a slow drip of water", "an occasional drip"],
                    ("rate", "fast"): ["water dripping quickly", "a fast, steady drip"]},
    },
    "alarm": {
        "np": ["{A} alarm beeping", "{J} beeps", "{A} beeping alarm", "{J} electronic beeping", "{A} alarm going off"],
        "clause": ["{A} alarm beeps", "{A} alarm beeps {ADV}", "{A} device beeps repeatedly", "{A} alarm goes off"],
        "adjectives": {"pitch": PITCH, "rate": RATE},
        "adverbs": {"rate": {"fast": ["rapidly", "urgently"], "slow": ["slowly"]}},
        "special": {("style", "groups"): ["a smoke alarm beeping", "a smoke detector going off"],
                    ("style", "two_tone"): ["a two-tone beeping alarm", "an alarm alternating between two beeps"]},
    },
    "drums": {
        "np": ["{J} drums", "{J} drum hits", "{A} drum beat", "someone playing drums", "{J} drumming"],
        "clause": ["drums play {ADV}", "{A} drummer plays", "someone hits a drum", "{J} drums are played"],
        "adjectives": {"tempo": {"fast": ["fast", "quick"], "slow": ["slow"]},
                       "style": {"toms": ["booming", "tom"], "beat": ["rhythmic", "steady"]}},
        "adverbs": {"tempo": {"fast": ["quickly", "at a fast tempo"], "slow": ["slowly", "at a slow tempo"]}},
        "special": {("style", "beat"): ["a drum kit playing a beat", "a steady rock drum beat"],
                    ("style", "toms"): ["loud tom drum hits", "someone pounding on toms"]},
    },
}

#: Loudness of the whole clip, as said about its main event.
LOUDNESS = {"loud": ["loud", "very loud"], "quiet": ["quiet", "faint", "soft"]}
#: Clip-level sentence endings: the room and the background noise.
ROOM_ENDINGS = {"hall": ["in a large hall", "echoing in a big hall", "in a reverberant space", "with lots of echo"],
                "room": ["in a small room", "indoors", "in a room"]}
NOISE_ENDINGS = {"noisy": ["with background noise", "over a noisy background", "with some hiss"]}
