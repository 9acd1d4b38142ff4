"""The prompts a benchmark sends: the i-th request's text, for each workload."""

from __future__ import annotations

from collections.abc import Callable

Workload = Callable[[int], str]

SUBJECTS = [
    "a lighthouse keeper",
    "a lost robot",
    "a clever fox",
    "an old sailor",
    "a young baker",
    "a sleepy dragon",
    "a brave mouse",
    "a city pigeon",
    "a retired astronaut",
    "a kind giant",
    "a curious otter",
    "a street musician",
    "a night-shift nurse",
    "a tiny snail",
    "a grumpy cat",
    "a forgetful wizard",
    "a mountain goat",
    "a river ferryman",
    "a chess champion",
    "a beekeeper",
]
TWISTS = [
    "who finds a map",
    "who learns to whistle",
    "who misses the last train",
    "who plants a strange seed",
    "who meets a talking stone",
    "who builds a tiny boat",
]

# What an application puts before every user question: its rules and some reference text.
# About 350 tokens with Gemma 3's tokenizer.
INSTRUCTIONS = (
    "You are the help desk of the Riverside Public Library. Answer the visitor's question in "
    "one or two short sentences, politely and without speculation. Rules: never give out "
    "personal data about other visitors; never promise a book is available before the "
    "catalogue says so; refer questions about fines, lost cards and damaged items to the front "
    "desk; when you do not know, say so and suggest asking a librarian. Reference: the library "
    "opens Monday to Friday from 9:00 to 20:00 and on Saturday from 10:00 to 16:00; it is "
    "closed on Sundays and public holidays. Loans last three weeks and can be renewed twice "
    "online or at the desk, unless another visitor has reserved the item. Children's books are "
    "on the ground floor, fiction and poetry on the first floor, non-fiction, maps and atlases "
    "on the second floor, and the quiet reading room with the newspaper archive on the third "
    "floor. Printing costs ten cents a page in black and white and fifty cents in colour; the "
    "printers take cards and coins. Wireless internet is free: the network is called "
    "Riverside-Guest and needs no password. Meeting rooms for up to twelve people can be booked "
    "a month ahead, for at most three hours a day. Guide dogs are welcome everywhere; other "
    "animals are not. Food is allowed only in the café on the ground floor, drinks in closed "
    "bottles everywhere except the reading room. Lost property is kept at the front desk for "
    "one month. Volunteers who read aloud to children meet every Wednesday at 15:00.\n\n"
)


def distinct(i: int) -> str:
    """Distinct short prompts (about 15-20 tokens): no two requests share one."""
    subject = SUBJECTS[i % len(SUBJECTS)]
    twist = TWISTS[(i // len(SUBJECTS)) % len(TWISTS)]
    return f"Request {i}. Here is a short story about {subject} {twist}. Once upon a time,"


def shared_instructions(i: int) -> str:
    """The instructions every request shares, then a distinct question (about 20 tokens)."""
    subject = SUBJECTS[i % len(SUBJECTS)]
    twist = TWISTS[(i // len(SUBJECTS)) % len(TWISTS)]
    return f"{INSTRUCTIONS}Visitor {i}: Do you have a book about {subject} {twist}?\nAnswer:"


def mixed_long(i: int) -> str:
    """Every 4th request a long document to summarize (~1,300 tokens, nothing shared with any
    other request: its number comes first), the others distinct short prompts: long prompts
    arriving while other users stream."""
    if i % 4 != 3:
        return distinct(i)
    return f"Document {i}.\n{INSTRUCTIONS * 4}Summarize document {i} in one sentence:"


WORKLOADS: dict[str, Workload] = {
    "distinct": distinct,
    "shared-instructions": shared_instructions,
    "mixed-long": mixed_long,
}
