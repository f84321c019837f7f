"""Your own labels and documents, as plain Python lists: a support-ticket tagger with no annotation.

What it shows: labels as a `{id: text}` dict (a plain list of texts works too: each text is then its id) and
documents as a list of strings go straight into `LMTXTrainer`; with no `teacher=` the trainer picks the default
teacher ($LMTX_TEACHER_URL / $OPENAI_BASE_URL if set, else the embedded local model from `st-lmtx fetch-model`)
and closes it when done; the zero-shot and the trained tagger's tags of new tickets are printed side by side.
With a few labels the shortlist is short (shortlist_k=3) and the rounds are tiny: 24 tickets, 2 rounds.

    python examples/06_own_data.py                                    # the embedded local teacher
    python examples/06_own_data.py --teacher http://127.0.0.1:8080/v1  # or any OpenAI-compatible server

Time on this 2-core CPU: 8.5 minutes with the embedded local teacher, measured while a benchmark kept both cores
busy (98 teacher calls took 6 of them); alone expect about 3 (01's teacher ran 2.5x slower under the same load).
"""

import argparse

from st_lmtx import LMTXArguments, LMTXTagger, LMTXTrainer
from st_lmtx.teacher import make_teacher

LABELS = {
    "billing": "Billing and invoices",
    "refund": "Refund request",
    "login": "Password reset and login problems",
    "shipping": "Shipping delay",
    "damaged": "Damaged or wrong item",
    "bug": "Software bug or crash",
    "feature": "Feature request",
    "cancel": "Cancel subscription",
    "privacy": "Privacy and personal data",
    "pricing": "Pricing question",
}
DOCUMENTS = [
    "I was charged twice on my last invoice, please fix the billing.",
    "My order was supposed to arrive on Monday and it is still not here.",
    "I forgot my password and the reset link never arrives in my inbox.",
    "The app crashes every time I open the settings page.",
    "Could you add a dark mode? It would help a lot at night.",
    "Please cancel my subscription at the end of this month.",
    "The blender I received has a cracked jar.",
    "I returned the shoes two weeks ago and still have no refund.",
    "How much does the team plan cost for 20 users?",
    "Delete all the personal data you hold about me, as the GDPR allows.",
    "You sent me a blue sweater but I ordered a red one.",
    "The tracking number shows the parcel stuck in customs for ten days.",
    "After the last update the export button does nothing.",
    "Why does my invoice show VAT when I entered a company VAT number?",
    "I cannot log in: it says my account is locked.",
    "It would be great if the calendar could sync with Outlook.",
    "Is there a discount for annual payment instead of monthly?",
    "I want my money back, the product does not do what was advertised.",
    "Stop renewing my plan, I no longer need it.",
    "Which third parties do you share my email address with?",
    "The package arrived with the box crushed and the lamp broken.",
    "The delivery was promised in 3 days, it has been two weeks.",
    "The page freezes when I upload a file larger than 10 MB.",
    "My card was billed after I had already cancelled.",
]
NEW_TICKETS = [
    "Where is my parcel? It is a week late.",
    "The app shuts down when I tap Save.",
    "Can I get my money back for the unused months?",
]


def main(argv=None):
    p = argparse.ArgumentParser(description="LMTX on labels and documents given as Python lists")
    p.add_argument(
        "--teacher", default=None, help="an OpenAI-compatible URL or local (default: $LMTX_TEACHER_URL, else local)"
    )
    p.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    p.add_argument("--output", default="runs/own-data")
    args = p.parse_args(argv)

    lmtx_args = LMTXArguments(
        output_dir=args.output, shortlist_k=3, max_rounds=2, patience=2, dev_size=8, batch_size=8, warmup_steps=0.1
    )
    teacher = None  # the default teacher, built (and closed) by the trainer
    if args.teacher:
        teacher = make_teacher(args.teacher, cache=f"{args.output}/lmtx-work/teacher_cache.sqlite")
    try:
        LMTXTrainer(args.model, LABELS, teacher=teacher, args=lmtx_args).fit(DOCUMENTS)
    finally:
        if teacher is not None:  # a teacher we made is ours to close; the trainer closes the one it made
            teacher.close()

    before = LMTXTagger(args.model, LABELS).predict(NEW_TICKETS, top_k=1)
    after = LMTXTagger.load(args.output).predict(NEW_TICKETS, top_k=1)
    for text, b, a in zip(NEW_TICKETS, before, after):
        print(f"{text!r}\n    zero-shot: {b[0].text} ({b[0].score:.2f})    LMTX: {a[0].text} ({a[0].score:.2f})")
    return after


if __name__ == "__main__":
    main()
