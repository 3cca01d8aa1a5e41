"""Generate the sample data the bundled DAGs read: support tickets and monthly user content.

Deterministic: the same seed writes byte-identical files, so the committed samples can be checked
against this script (``python dags/data/make_samples.py --check``). Texts are assembled from
hand-written fragments so that they read like real tickets and posts, vary in length and tone, and
cover the label set and the moderation categories in realistic proportions (most content is benign).

    python dags/data/make_samples.py            # rewrite the samples next to this file
    python dags/data/make_samples.py --check    # exit 1 if a committed sample differs
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20261102
TICKET_COUNT = 3000
# Tickets span the 24 hours before the nightly 18:00 cutoff of this day.
TICKET_CUTOFF = datetime(2026, 11, 2, 18, tzinfo=timezone.utc)
CONTENT_MONTHS = {"2026-08": 320, "2026-09": 360, "2026-10": 400}

PRODUCTS = ["Harbor Pro", "Harbor Lite", "the mobile app", "the web dashboard", "Harbor Teams", "the API"]
PLANS = ["Starter", "Growth", "Business", "Enterprise"]
DEVICES = ["iPhone 15", "Pixel 8", "a Windows 11 laptop", "a MacBook Air", "an iPad", "Chrome on Linux"]
CARRIERS = ["UPS", "FedEx", "DHL", "USPS", "Royal Mail"]
FEATURES = [
    "dark mode",
    "CSV export of reports",
    "two-factor login with a hardware key",
    "bulk editing of contacts",
    "a Slack integration",
    "recurring invoices",
    "custom fields on tickets",
    "an offline mode for the mobile app",
    "SSO with Okta",
    "keyboard shortcuts",
]
ERRORS = ["Error 500", "ERR_TIMEOUT", "error code 0x80070005", "a blank white screen", "'Unexpected token'"]
NAMES = ["Maria", "James", "Aiko", "Omar", "Lena", "Priya", "Tom", "Sofia", "Chen", "Fatima", "Lucas", "Eva"]
GREETINGS = ["Hi,", "Hello team,", "Hey there,", "Good morning,", "Hi support,", "", "", "Dear support,"]
SIGN_OFFS = ["Thanks", "Thank you!", "Regards", "Cheers", "Best", "", "Thanks in advance"]

TICKET_TEMPLATES: dict[str, list[str]] = {
    "billing": [
        "I was charged twice for my {plan} subscription this month ({amount} each). Please refund the "
        "duplicate charge.",
        "The invoice for {month} shows {amount} but our plan is {plan}, which should be cheaper. Can you "
        "explain the difference?",
        "My payment keeps getting declined even though the card works everywhere else. Invoice {invoice} "
        "is now overdue.",
        "We downgraded to {plan} last week but were still billed at the old price. I'd like a refund for "
        "the difference.",
        "Can you send a corrected invoice with our VAT number? The current one ({invoice}) is missing it.",
        "Why did the price go up from {amount} without any notice? I never agreed to a new rate.",
        "I cancelled in {month} and there's still a charge of {amount} on my statement.",
    ],
    "bug": [
        "{product} crashes every time I open the reports tab on {device}. Started after the last update.",
        "Getting {error} when saving a contact in {product}. Tried two browsers, same result.",
        "The export button is broken: it spins forever and the file never downloads.",
        "Sync fails with {error} whenever a note has an attachment bigger than a few MB.",
        "Notifications stopped working on {device}. Settings look right, nothing arrives.",
        "Search returns results from the wrong workspace. Looks like a bug in the filter.",
        "{product} freezes and then crashes when I paste a long table. Reproducible every time.",
        "Dates in the calendar view are off by one day for anyone in UTC-5. Screenshot attached.",
    ],
    "feature_request": [
        "It would be great to have {feature}. We'd use it daily.",
        "Please add {feature} to {product}. Our team has been asking for it for months.",
        "Feature idea: {feature}. Right now we work around it with spreadsheets.",
        "We would like {feature} before we roll out to the rest of the company.",
        "I suggest adding {feature}; most tools we compared already have it.",
        "Any plans for {feature}? Happy to beta test.",
    ],
    "account": [
        "I can't sign in: it says my password is wrong, but I just reset it.",
        "My account got locked after too many login attempts. Can you unlock it? The user is {email}.",
        "How do I transfer ownership of the account to {name}? I'm leaving the company.",
        "Password reset emails never arrive at {email}. Checked spam already.",
        "I need to change the email on my account from {email} to a new address.",
        "Two-factor codes from my old phone no longer work and I'm locked out of my account.",
        "Please delete my account and all associated data under GDPR.",
    ],
    "shipping": [
        "My package with order {order} was supposed to arrive on {weekday} and the tracking hasn't "
        "updated since.",
        "The {carrier} tracking number for order {order} says delivered, but nothing came.",
        "Delivery was left at the wrong address. Order {order}, can you reroute or resend?",
        "The hardware kit arrived damaged: the box was crushed. Order {order}.",
        "Can I change the delivery address for order {order}? It hasn't shipped yet.",
        "Is there express shipping to Canada? The standard delivery estimate is three weeks.",
    ],
    "other": [
        "Do you have a status page I can subscribe to?",
        "We're a nonprofit. Do you offer any discounts for charities?",
        "Just wanted to say the new onboarding is much clearer. Nice work.",
        "Is {product} compliant with SOC 2? Our security team is asking.",
        "Who should I talk to about a partnership for our agency?",
        "Where can I find your terms of service in German?",
    ],
}
# Rough shares seen in a support queue: bugs and billing dominate, shipping is smaller.
EVAL_CASES = 300
TICKET_WEIGHTS = {"billing": 26, "bug": 28, "feature_request": 14, "account": 16, "shipping": 9, "other": 7}
EXTRAS = [
    "This is blocking our whole team.",
    "Not urgent, but would appreciate a reply this week.",
    "I already contacted you about this last week.",
    "We're on the {plan} plan.",
    "Our workspace is called {workspace}.",
    "Screenshots attached.",
    "",
    "",
    "",
]

CONTENT_TEMPLATES: dict[str, list[str]] = {
    "none": [
        "Does anyone know if the {place} trail is open after the storm?",
        "Great write-up, the part about sourdough hydration finally made it click for me.",
        "I switched to the {gadget} last month and battery life is way better.",
        "Anyone else watching the match tonight? {team} needs this win.",
        "Thanks for the recipe! I swapped the butter for olive oil and it still worked.",
        "Selling my old bike, barely used. Message me if you're in {place}.",
        "The new library hours are posted on the door, open till 8 on weekdays now.",
        "Can someone recommend a beginner camera under $500?",
        "Our meetup is moving to the café on Main Street next Thursday.",
        "I disagree with the review, the second season was much stronger than the first.",
        "Lost a grey cat near {place}, answers to Miso. Please message if you see her.",
        "Pro tip: freeze the herbs in olive oil in ice cube trays.",
        "The farmers market in {place} had the best peaches this weekend.",
        "Has anyone tried the new ramen place? Worth the queue?",
        "Five stars, the delivery was quick and the fit is perfect.",
        "Two stars. Works, but the battery drains overnight.",
        "My kid built a birdhouse from the tutorial, thank you for posting it.",
        "Reminder: the community cleanup in {place} starts at 9 on Saturday.",
        "Is the {gadget} worth the upgrade if I mostly read and browse?",
        "That last goal from {team} was unreal.",
        "Anyone have tips for keeping basil alive indoors in winter?",
        "The bus route through {place} is detoured until Friday.",
    ],
    "spam": [
        "BUY CHEAP FOLLOWERS NOW!!! 10,000 followers for $5, click here: bit.ly/{code}",
        "Make $5000 a week from home, free money, no experience needed, DM me for the secret",
        "Limited offer: free crypto giveaway, send 0.1 ETH to get 1 ETH back, visit {code}.win",
        "Hot singles in {place} want to meet you, click here to see who",
        "Best replica watches, 90% off with discount code {code}, order at {code}-deals.shop",
    ],
    "harassment": [
        "You're an idiot and everyone here knows it. Nobody wants you in this group.",
        "Go back to where you came from, people like you ruin everything.",
        "{name} is a worthless loser, stop posting your garbage.",
        "Shut up already, you pathetic clown. Nobody asked.",
    ],
    "violence": [
        "If I see that guy from {place} again I'll kill him.",
        "Someone should attack their office and burn it down, they deserve it.",
        "I know where you live and I'm going to hurt you.",
    ],
    "self_harm": [
        "I don't see the point anymore, I've been thinking about how to end my life.",
        "Some nights I just want to hurt myself so the feeling goes away.",
    ],
}
CONTENT_WEIGHTS = {"none": 93, "spam": 3, "harassment": 2, "violence": 1, "self_harm": 1}
POST_ENDINGS = ["", "", "", " Thoughts?", " lol", " Edit: typo.", " Thanks in advance!", " 🙂"]
PLACES = ["Riverside", "Oak Park", "Lakeview", "the north end", "Millbrook", "Cedar Hill"]
TEAMS = ["Rovers", "United", "the Hawks", "City"]


def _fill(rng: random.Random, template: str) -> str:
    slots: dict[str, Callable[[], str]] = {
        "plan": lambda: rng.choice(PLANS),
        "amount": lambda: f"${rng.choice([9, 19, 29, 49, 99, 149, 299])}.{rng.choice(['00', '99'])}",
        "month": lambda: rng.choice(["August", "September", "October", "November"]),
        "invoice": lambda: f"INV-{rng.randint(10000, 99999)}",
        "product": lambda: rng.choice(PRODUCTS),
        "device": lambda: rng.choice(DEVICES),
        "error": lambda: rng.choice(ERRORS),
        "feature": lambda: rng.choice(FEATURES),
        "email": lambda: f"{rng.choice(NAMES).lower()}.{rng.randint(1, 99)}@example.com",
        "name": lambda: rng.choice(NAMES),
        "order": lambda: f"#{rng.randint(100000, 999999)}",
        "weekday": lambda: rng.choice(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]),
        "carrier": lambda: rng.choice(CARRIERS),
        "workspace": lambda: rng.choice(["acme-ops", "northwind", "blue-harbor", "tailspin"]),
        "place": lambda: rng.choice(PLACES),
        "team": lambda: rng.choice(TEAMS),
        "gadget": lambda: rng.choice(["Pixel 8", "Galaxy S24", "Kindle Paperwhite", "iPad mini"]),
        "code": lambda: "".join(rng.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(6)),
    }
    text = template
    for key, make in slots.items():
        while "{" + key + "}" in text:
            text = text.replace("{" + key + "}", make(), 1)
    return text


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def make_ticket(rng: random.Random, number: int, category: str | None = None) -> dict[str, object]:
    """Return one ticket record: ``id``, ``created_at``, ``channel``, ``plan`` and ``text``."""
    category = category or _pick(rng, TICKET_WEIGHTS)
    body = _fill(rng, rng.choice(TICKET_TEMPLATES[category]))
    extra = _fill(rng, rng.choice(EXTRAS))
    greeting, sign_off = rng.choice(GREETINGS), rng.choice(SIGN_OFFS)
    parts = [greeting, body, extra, f"{sign_off}\n{rng.choice(NAMES)}" if sign_off else ""]
    created = TICKET_CUTOFF - timedelta(seconds=rng.randint(0, 24 * 3600 - 1))
    return {
        "id": f"tkt-{number:06d}",
        "created_at": created.isoformat().replace("+00:00", "Z"),
        "channel": rng.choice(["email", "email", "chat", "web_form"]),
        "plan": rng.choice(PLANS),
        "text": "\n\n".join(part for part in parts if part),
    }


def make_post(rng: random.Random, month: str, number: int) -> dict[str, object]:
    """Return one piece of user content: ``id``, ``posted_at``, ``kind`` and ``text``."""
    category = _pick(rng, CONTENT_WEIGHTS)
    year, month_number = (int(part) for part in month.split("-"))
    posted = datetime(year, month_number, rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59))
    return {
        "id": f"post-{month}-{number:05d}",
        "posted_at": posted.replace(tzinfo=timezone.utc).isoformat().replace("+00:00", "Z"),
        "kind": rng.choice(["comment", "comment", "forum_post", "review"]),
        "text": _post_text(rng, category),
    }


def _post_text(rng: random.Random, category: str) -> str:
    sentences = [_fill(rng, rng.choice(CONTENT_TEMPLATES[category]))]
    if category == "none" and rng.random() < 0.35:
        sentences.append(_fill(rng, rng.choice(CONTENT_TEMPLATES["none"])))
    ending = rng.choice(POST_ENDINGS) if category == "none" else ""
    return " ".join(sentences) + ending


def render_samples() -> dict[Path, bytes]:
    """Return every sample file's relative path and its exact bytes."""
    rng = random.Random(SEED)
    files: dict[Path, bytes] = {}
    tickets = [make_ticket(rng, number) for number in range(1, TICKET_COUNT + 1)]
    files[Path("tickets/sample.jsonl")] = _jsonl(tickets)
    for month, count in CONTENT_MONTHS.items():
        posts = [make_post(rng, month, number) for number in range(1, count + 1)]
        files[Path(f"content/{month}.jsonl")] = _jsonl(posts)
    # The eval sweep's regression set: tickets of every queue with the queue they were written for.
    eval_rng = random.Random(SEED + 1)
    labelled = []
    for number in range(1, EVAL_CASES + 1):
        category = _pick(eval_rng, TICKET_WEIGHTS)
        case = make_ticket(eval_rng, number, category)
        labelled.append({"id": f"case-{number:04d}", "text": case["text"], "expected_label": category})
    files[Path("eval/labelled_tickets.jsonl")] = _jsonl(labelled)
    return files


def _jsonl(rows: list[dict[str, object]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write into (default: here)")
    args = parser.parse_args(argv)
    stale = []
    for relative, content in render_samples().items():
        target = args.out / relative
        if args.check:
            if not target.exists() or target.read_bytes() != content:
                stale.append(str(relative))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    if stale:
        print(f"samples differ from make_samples.py: {', '.join(stale)}; rerun it", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
