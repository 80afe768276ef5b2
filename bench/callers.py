"""Callers for the turn-taking benchmark: voices that are not the agent's, pauses, digit strings.

Voices come from espeak-ng (Debian's ``espeak-ng``; a formant synthesizer, so
nothing like the agent's piper voice) with its accent and speaker variants,
at several speaking rates. A caller *item* is one turn made of one or more
*parts* separated by a mid-turn pause: a plain question (one part), a
sentence paused mid-way ("I'd like to change ... the address on my
account"), or a number read out in groups ("my order number is ... 4 2 7
... 9 1 5"). ``phone()`` gives the 8 kHz μ-law round trip of the phone path.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from peripherals import g711
from peripherals.resample import resample

AUDIBLE = 0.01  # |sample| above this is audible (full scale 1.0)

QUESTIONS = [
    "Hi, I would like to check on my delivery.",
    "Can you tell me when the store opens tomorrow?",
    "I need to change the address on my account.",
    "What is your return policy for shoes?",
    "My package arrived damaged yesterday.",
    "Can I speak to someone about a refund?",
    "Do you have this jacket in a larger size?",
    "How long does shipping usually take?",
    "I forgot my password and cannot log in.",
    "Thank you, that is all I needed today.",
    "Is there a fee for cancelling my subscription?",
    "Where can I find my invoice from last month?",
]
# Parts of one turn, said with a pause between them (the caller thinks mid-sentence).
PAUSING = [
    ("I would like to change", "the delivery address for my order."),
    ("Can you check whether", "my refund has been processed?"),
    ("I ordered a blue jacket and", "it has not arrived yet."),
    ("So the thing is,", "my card was charged twice."),
    ("I was wondering if", "you could send me a new invoice."),
    ("My question is about", "the warranty on my laptop."),
]
DIGITS = [
    ("My order number is", "four two seven", "nine one five."),
    ("The code on the card is", "three three eight", "one zero two."),
    ("My phone number is", "five five five", "two one eight", "six six four zero."),
    ("The tracking number is", "eight one", "seven seven", "two nine."),
]
# A long statement with a number, a comma pause after it, and more to say: the early
# transcript ends in a number after a lead word, the model often hears a finished clause.
CLAUSES = [
    ("I'm ringing about invoice 2281,", "the amount on it is higher than what we agreed."),
    ("We moved to flat 12 last month,", "so the parcels keep going to the old address."),
    ("Booking 318 was for two nights,", "but I was charged for three of them."),
    ("I paid 45 dollars for express delivery,", "yet the package still took a whole week."),
]
# A whole question that ends in a number: finished, though its last words are digits.
NUMBER_QUESTIONS = [
    "Can you check the status of order 5180?",
    "Is there a refund pending on ticket 8842?",
    "What is the balance on the card ending 6621?",
    "Could you look up my booking 904?",
]
# espeak-ng voices (language+variant) for the callers; HELD_OUT are for re-measuring only.
VOICES = ["en-us+m3", "en-gb+f3", "en-gb-scotland+m1", "en-us+f4"]
HELD_OUT_VOICES = ["en-029+m4", "en-gb-x-rp+f2", "en-us+m7"]
SPEEDS_WPM = (165, 140)  # espeak words per minute: brisk and slower
# Item kinds; a pause inside a "pausing", "digits" or "clause" item is not the end of the turn.
KINDS = ("question", "pausing", "digits", "clause", "number_question")

# The lead's re-check callers (session 4): sentences, voices and speeds written
# before that session's turn-taking changes and never used to tune them.
RECHECK_QUESTIONS = [
    "Hello, I am calling because my parcel never showed up.",
    "Could you tell me if you deliver on Sundays?",
    "I would like to cancel the order I placed this morning.",
    "Why was I charged a delivery fee?",
    "Is it possible to pick the order up in a store instead?",
    "My discount code does not seem to work.",
    "Can I add another item to an order that has already shipped?",
    "What time do you close today?",
]
RECHECK_PAUSING = [
    ("I bought a kettle last week and", "the lid is already broken."),
    ("Hang on, let me see,", "the email on the account is my work one."),
    ("I'm calling about order 4417,", "it was supposed to arrive on Monday."),
    ("What I need is", "a copy of my receipt."),
]
RECHECK_DIGITS = [
    ("The account number is", "six one", "four four", "zero eight."),
    ("It is order", "three nine nine", "two two."),
    ("Call me back on", "four one five", "five five five", "zero one nine nine."),
]
RECHECK_VOICES = ["en-gb-x-gbclan+f1", "en-us-nyc+m2", "en-gb-x-gbcwmd+f4"]
RECHECK_SPEEDS_WPM = (180, 150)

# The lead's session-5 re-check callers: written before that session's changes,
# never run by anyone tuning the turn-taking.
RECHECK5_QUESTIONS = [
    "Good afternoon, I have a question about my bill.",
    "Do you still have the red trainers in size nine?",
    "Why has my order been stuck at the depot for a week?",
    "Can I change the delivery day to Thursday?",
    "Who do I talk to about a faulty charger?",
    "I think somebody else used my account.",
    "Are you open on bank holidays?",
    "How do I get a refund for a gift?",
]
RECHECK5_PAUSING = [
    ("The thing I wanted to ask was", "whether the sofa comes assembled."),
    ("Right, so yesterday", "a courier left a card but no parcel."),
    ("If I return the boots,", "do I have to pay for the postage?"),
    ("Honestly I'm not sure", "which of the two orders it was."),
]
RECHECK5_DIGITS = [
    ("My postcode is", "four five", "one one two."),
    ("The last four digits are", "nine nine", "three seven."),
    ("The reference I got was", "seven two", "zero zero", "eight six."),
]
RECHECK5_CLAUSES = [
    ("I ordered 3 lamps on Friday,", "but only two of them were in the box."),
    ("The parcel for order 7065 came today,", "and the screen is cracked."),
    ("I've rung 4 times already,", "and nobody has called me back."),
]
RECHECK5_NUMBER_QUESTIONS = [
    "Has the refund gone through on order 3326?",
    "Can you tell me where parcel 5071 is?",
    "Is there anything owed on account 8190?",
]
RECHECK5_VOICES = ["en-us+f2", "en-gb-x-gbclan+m4", "en-029+f3"]
RECHECK5_SPEEDS_WPM = (170, 145)

# The lead's session-6 re-check callers: written before that session's changes,
# never run by anyone tuning the turn-taking.
RECHECK6_QUESTIONS = [
    "Hello, is this the right number for returns?",
    "Could you check if my payment went through?",
    "What happens if I'm not home when it arrives?",
    "I never got an email confirming the order.",
    "Is it too late to add something to my basket?",
    "Which courier are you using for my parcel?",
    "My discount code didn't work at checkout.",
    "Can somebody come and collect the old fridge?",
]
RECHECK6_PAUSING = [
    ("So what happened was", "the box arrived completely soaked."),
    ("I'm calling because", "my neighbour signed for something of mine."),
    ("Before you do that,", "can you tell me the total again?"),
    ("I've been waiting since", "the middle of last month for this."),
]
RECHECK6_DIGITS = [
    ("The card ends in", "four four", "zero nine."),
    ("My account number is", "six one", "three three", "five."),
    ("It's flat", "twenty", "two B."),
]
RECHECK6_CLAUSES = [
    ("I paid for 2 day delivery,", "but it took over a week."),
    ("Order 4129 arrived this morning,", "but the lid was missing."),
    ("I spoke to Karen on Monday,", "and she promised a refund."),
]
RECHECK6_NUMBER_QUESTIONS = [
    "Can you look up the return for order 6684?",
    "When is the next payment due on account 1937?",
    "Did the courier try to deliver parcel 2058?",
]
RECHECK6_VOICES = ["en-gb-x-rp+m5", "en-us-nyc+f5", "en-gb-scotland+f2"]
RECHECK6_SPEEDS_WPM = (185, 150)
RECHECK7_QUESTIONS = [
    "Hi, I'm ringing about a delivery that never showed up.",
    "Can you tell me when your store closes on Sundays?",
    "Why was I charged twice for the same thing?",
    "Is there any way to speed up my shipping?",
    "I think you sent me the wrong colour.",
    "Do I need the receipt to return this jacket?",
    "Who do I talk to about a damaged sofa?",
    "Could you send the invoice to my work email instead?",
]
RECHECK7_PAUSING = [
    ("The thing is,", "I ordered it as a birthday present."),
    ("I was hoping that", "someone could explain these fees."),
    ("If it doesn't come by Friday,", "I'll have to cancel the whole thing."),
    ("What I really need is", "a replacement for the broken handle."),
]
RECHECK7_DIGITS = [
    ("My postcode is", "two one", "four oh", "seven."),
    ("The reference is", "nine nine", "one", "eight two."),
    ("My phone number is", "five five five", "three one", "two two."),
]
RECHECK7_CLAUSES = [
    ("I returned the kettle last week,", "but nobody has been in touch."),
    ("The courier left it at number 12,", "so I never got it."),
    ("My card was declined twice,", "although the bank says it's fine."),
]
RECHECK7_NUMBER_QUESTIONS = [
    "Is there an update on order 5823?",
    "Can you check the delivery date for order 3416?",
    "How much is still owed on invoice 7270?",
]
RECHECK7_VOICES = ["en-gb-x-gbcwmd+m6", "en-us+f1", "en-029+m2"]
RECHECK7_SPEEDS_WPM = (190, 155)


@dataclass(frozen=True)
class Item:
    """One caller turn: its parts, the pause between them (s), voice and rate."""

    kind: str  # one of KINDS
    parts: tuple[str, ...]
    voice: str
    wpm: int
    pause_s: float = 0.0

    @property
    def text(self) -> str:
        return " ".join(self.parts)


@dataclass
class Placed:
    """An item on the recording's timeline (seconds): first and last audible sample,
    and where each later part starts (an end of turn before that cuts the caller off)."""

    item: Item
    start_s: float
    end_s: float
    part_starts_s: list[float]


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, voice: str, wpm: int, rate: int) -> np.ndarray:
    """espeak-ng's speech for ``text`` at ``rate`` Hz, trimmed to its audible part, peak 0.5."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(path), text],
            check=True,
            capture_output=True,
        )
        with wave.open(str(path)) as w:
            sr = w.getframerate()
            x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32)
    x = resample(x / 32768.0, sr, rate)
    idx = np.nonzero(np.abs(x) > AUDIBLE * np.abs(x).max() * 2)[0]
    x = x[idx[0] : idx[-1] + 1]
    return (0.5 * x / max(1e-6, float(np.abs(x).max()))).astype(np.float32)


def render(item: Item, rate: int, speak_fn=speak) -> tuple[np.ndarray, list[int]]:  # type: ignore[no-untyped-def]
    """The item's audio and the sample where each part starts."""
    pieces: list[np.ndarray] = []
    starts: list[int] = []
    n = 0
    for i, part in enumerate(item.parts):
        if i:
            gap = np.zeros(int(item.pause_s * rate), dtype=np.float32)
            pieces.append(gap)
            n += len(gap)
        x = speak_fn(part, item.voice, item.wpm, rate)
        starts.append(n)
        pieces.append(x)
        n += len(x)
    return np.concatenate(pieces), starts


def build_recording(
    items: list[Item], rate: int, gap_s: float, lead_s: float = 0.5
) -> tuple[np.ndarray, list[Placed]]:
    """All items one after another with ``gap_s`` of silence after each (room for the answer)."""
    chunks = [np.zeros(int(lead_s * rate), dtype=np.float32)]
    placed: list[Placed] = []
    t = lead_s
    for item in items:
        x, starts = render(item, rate)
        audible = np.nonzero(np.abs(x) > AUDIBLE)[0]
        placed.append(
            Placed(
                item,
                t + audible[0] / rate,
                t + audible[-1] / rate,
                [t + s / rate for s in starts[1:]],
            )
        )
        chunks += [x, np.zeros(int(gap_s * rate), dtype=np.float32)]
        t += len(x) / rate + gap_s
    return np.concatenate(chunks), placed


# ---------------------------------------------------------------- the phone path
def phone(x: np.ndarray, rate: int) -> np.ndarray:
    """The caller as a phone line carries them: 8 kHz, G.711 μ-law encoded and decoded."""
    y = resample(x, rate, 8000) if rate != 8000 else x
    return g711.round_trip(y, "mulaw")


def items_for(
    voices: list[str],
    speeds: tuple[int, ...] = SPEEDS_WPM,
    questions: list[str] = QUESTIONS,
    pausing: Sequence[tuple[str, ...]] = PAUSING,
    digits: Sequence[tuple[str, ...]] = DIGITS,
    clauses: Sequence[tuple[str, ...]] = CLAUSES,
    number_questions: list[str] = NUMBER_QUESTIONS,
) -> list[Item]:
    """Every question, pausing sentence, digit string, number-and-comma statement and question
    ending in a number, voices and speeds rotated through."""
    combos = [(v, s) for s in speeds for v in voices]
    items: list[Item] = []
    k = 0
    for q in questions:
        v, s = combos[k % len(combos)]
        items.append(Item("question", (q,), v, s))
        k += 1
    for i, parts in enumerate(pausing):
        v, s = combos[k % len(combos)]
        items.append(Item("pausing", parts, v, s, pause_s=(0.55, 0.8)[i % 2]))
        k += 1
    for i, parts in enumerate(digits):
        v, s = combos[k % len(combos)]
        items.append(Item("digits", parts, v, s, pause_s=(0.6, 0.9)[i % 2]))
        k += 1
    for i, parts in enumerate(clauses):
        v, s = combos[k % len(combos)]
        # a comma pause: shorter than a thinking pause (s)
        items.append(Item("clause", parts, v, s, pause_s=(0.35, 0.5)[i % 2]))
        k += 1
    for q in number_questions:
        v, s = combos[k % len(combos)]
        items.append(Item("number_question", (q,), v, s))
        k += 1
    return items


def recheck_items() -> list[Item]:
    """The lead's re-check callers: new sentences, voices and speeds."""
    return items_for(
        RECHECK_VOICES,
        RECHECK_SPEEDS_WPM,
        RECHECK_QUESTIONS,
        RECHECK_PAUSING,
        RECHECK_DIGITS,
        clauses=[],  # the re-check set stays as the lead froze it
        number_questions=[],
    )


def recheck5_items() -> list[Item]:
    """The lead's session-5 re-check callers: new sentences, voices and speeds."""
    return items_for(
        RECHECK5_VOICES,
        RECHECK5_SPEEDS_WPM,
        RECHECK5_QUESTIONS,
        RECHECK5_PAUSING,
        RECHECK5_DIGITS,
        clauses=RECHECK5_CLAUSES,
        number_questions=RECHECK5_NUMBER_QUESTIONS,
    )


def recheck6_items() -> list[Item]:
    """The lead's session-6 re-check callers: new sentences, voices and speeds."""
    return items_for(
        RECHECK6_VOICES,
        RECHECK6_SPEEDS_WPM,
        RECHECK6_QUESTIONS,
        RECHECK6_PAUSING,
        RECHECK6_DIGITS,
        clauses=RECHECK6_CLAUSES,
        number_questions=RECHECK6_NUMBER_QUESTIONS,
    )


def recheck7_items() -> list[Item]:
    """The lead's session-7 re-check callers: new sentences, voices and speeds."""
    return items_for(
        RECHECK7_VOICES,
        RECHECK7_SPEEDS_WPM,
        RECHECK7_QUESTIONS,
        RECHECK7_PAUSING,
        RECHECK7_DIGITS,
        clauses=RECHECK7_CLAUSES,
        number_questions=RECHECK7_NUMBER_QUESTIONS,
    )
